// RMSNorm over f32 rows `[n_tokens][dim]`: y[t] = x[t] / sqrt(mean(x[t]²) + eps) * w.
// (Qwen3's and Gemma 3's per-head norms of Q and K are rope.wgsl's QK_NORM.)
//
// One workgroup of 256 invocations per row. Each invocation sums the squares of a
// strided slice of the row (coalesced loads), the workgroup reduces the 256 partial sums
// (a subgroup shuffle butterfly + one small workgroup-memory step with SUBGROUPS, a shared-memory tree
// otherwise), and every invocation then scales its slice. The sum is f32 (the CPU reference
// accumulates in f64): with 256 partial sums of ≤ dim/256 terms each, the relative error of
// the sum stays around 1e-7·log2(dim).
//
// Variants: IN_PLACE (y is x, so x is bound once, read_write), RESIDUAL (first x += r, the
// residual add of the block before, written back to x: one pass instead of two), SUBGROUPS.
// ADD_NORMED: x += r / sqrt(mean(r²) + eps) * w, the residual add of a block output that a
// post-norm sits on (Gemma 3's), normalized and added in one pass; y is x.

struct Params {
    dim: u32,
    eps: f32,
}

struct Step {
    n_tokens: u32,
    pos: u32,
}

#ifdef ADD_NORMED
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;
@group(0) @binding(3) var<uniform> step: Step;
@group(0) @binding(5) var<storage, read> r: array<f32>;
#else
#ifdef IN_PLACE
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;
@group(0) @binding(3) var<uniform> step: Step;
#else
#ifdef RESIDUAL
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(5) var<storage, read> r: array<f32>;
#else
@group(0) @binding(0) var<storage, read> x: array<f32>;
#endif
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
@group(0) @binding(4) var<uniform> step: Step;
#endif
#endif

const WG: u32 = 256u;

#include "reduce.wgsl"

@compute @workgroup_size(256)
fn rms_norm(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
#ifdef SUBGROUPS
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) size: u32,
#endif
) {
#ifdef SUBGROUPS
    sg_lane = lane;
    sg_size = size;
#endif
    let t = wid.x + wid.y * nwg.x;
    if (t >= step.n_tokens) {
        return;
    }
    let dim = params.dim;
    let row = t * dim;
    var ss = 0.0;
    for (var i = lid; i < dim; i += WG) {
#ifdef ADD_NORMED
        let v = r[row + i];
#else
#ifdef RESIDUAL
        // Each invocation rereads only the elements it wrote itself below.
        let v = x[row + i] + r[row + i];
        x[row + i] = v;
#else
        let v = x[row + i];
#endif
#endif
        ss += v * v;
    }
#ifdef SUBGROUPS
    ss = wg_sum(ss, lid, size);
#else
    ss = wg_sum(ss, lid, 0u);
#endif
    // Same operation order as the reference: 1 / sqrt(mean + eps), then v * scale * w.
    let scale = 1.0 / sqrt(ss / f32(dim) + params.eps);
    for (var i = lid; i < dim; i += WG) {
#ifdef ADD_NORMED
        x[row + i] = x[row + i] + r[row + i] * scale * w[i];
#else
#ifdef IN_PLACE
        x[row + i] = x[row + i] * scale * w[i];
#else
        y[row + i] = x[row + i] * scale * w[i];
#endif
#endif
    }
}
