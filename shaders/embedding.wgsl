// Embedding lookup: out[t][0..cols] = row ids[t] of the weight, dequantized to f32.
//
// One invocation per (token, 32-element unit). The op dispatches once per weight part; each
// dispatch writes the tokens whose id falls in its part's rows, and the last part also writes
// zeros for ids past the end of the table.
//
// Defines: one TYPE_* (quant.wgsl); SCALE, a multiplier of every value (Gemma's √n_embd).

#include "quant.wgsl"

@group(0) @binding(0) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
@group(0) @binding(4) var<uniform> step: Step;

@compute @workgroup_size(64)
fn embed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    let t = i / params.units;
    let u = i % params.units;
    if (t >= step.n_tokens) {
        return;
    }
    let id = ids[t];
    if (id < params.row0) {
        return;
    }
    let r = id - params.row0;
    var v: array<vec4<f32>, 8>;
    if (r < params.rows) {
        v = dequant_unit(r, u);
    } else if (params.last == 0u) {
        return;
    }
    let base = t * params.out_stride + u * 32u;
    let n = min(32u, params.cols - u * 32u);
    for (var k = 0u; k < n; k++) {
#ifdef SCALE
        out[base + k] = v[k >> 2u][k & 3u] * {{SCALE}};
#else
        out[base + k] = v[k >> 2u][k & 3u];
#endif
    }
}
