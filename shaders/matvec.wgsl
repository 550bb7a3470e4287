// Matrix × vector: y[t][row0 + r] = Σ_k w[r][k] · x[t][k] for the rows r of one weight part.
// Decode (one token) everywhere; on CPU devices also prefill, NT tokens per dispatch z slice.
//
// A workgroup of WG invocations handles WG / TPR rows; the TPR invocations of a row take its
// 32-element units round-robin, so neighbouring invocations read neighbouring blocks (the
// segmented layout of quant.wgsl makes those reads contiguous vec4<u32> loads) and every weight
// byte is read once. Each invocation accumulates in f32, then the row's invocations reduce: with
// SUBGROUPS by a butterfly of subgroupShuffleXor (the host keeps TPR a power of two no larger than
// the smallest subgroup, so a row's invocations share a subgroup — this relies on 1-D workgroups
// filling subgroups in local_invocation_index order, as implementations do); otherwise through
// workgroup memory with a barrier. Each decoded unit is used for NT tokens (wid.z selects
// tokens wid.z*NT ..): NT = 1 for decode, more for short prefill batches, where the tiled
// kernel's 32-token tiles would cost as much for 2 tokens as for 32.
//
// XBCAST (CPU devices such as lavapipe, with subgroups of at least 8): one row per invocation
// (TPR = 1), and all invocations walk the units in step, so lanes 0..7 of a subgroup load the
// unit's 8 activation vec4s once and broadcast them; on a CPU every per-invocation load is a
// gather, and gathering the activations cost as much as decoding the weights. Each decoded unit
// is used for NT tokens (wid.z selects tokens wid.z*NT ..), which makes this the faster prefill
// there too (about 4× the tiled kernel on lavapipe).
//
// Defines: one TYPE_* (quant.wgsl), WG, TPR, NT, XBCAST, X_VEC4 (cols % 4 == 0), XMASK
// (cols % 32 != 0).

#include "quant.wgsl"

@group(0) @binding(0) var<storage, read> w: array<vec4<u32>>;
#ifdef X_VEC4
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
#else
@group(0) @binding(1) var<storage, read> x: array<f32>;
#endif
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
@group(0) @binding(4) var<uniform> step: Step;

const WG: u32 = {{WG}}u;
const TPR: u32 = {{TPR}}u;
const ROWS: u32 = WG / TPR;
// Tokens per dispatch z slice.
const NT: u32 = {{NT}}u;

#ifndef SUBGROUPS
var<workgroup> partial: array<f32, WG>;
#endif

@compute @workgroup_size(WG)
fn matvec(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
#ifdef XBCAST
    @builtin(subgroup_invocation_id) sg_lane: u32,
#endif
) {
    if (step.n_tokens == 0u) {
        return;
    }
    let r = (wid.x + wid.y * nwg.x) * ROWS + li / TPR;
    // Invocations past the part's rows recompute its last row and do not write it, so that
    // control flow stays uniform.
    let rr = min(r, params.rows - 1u);
    // Tokens t0 .. t0 + nt of this dispatch's z slice, NT at most.
    let t0 = wid.z * NT;
    let nt = min(NT, step.n_tokens - t0);
    var accs: array<f32, NT>;
#ifdef XBCAST
    let xlane = 4u * (sg_lane & 7u);
    for (var u = 0u; u < params.units; u++) {
        let v = dequant_unit(rr, u);
        for (var j = 0u; j < NT; j++) {
            // Past the slice's last token, re-reads that token rather than branching: the
            // broadcasts stay in uniform control flow (lavapipe leaked ~124 MiB per dispatch and
            // ran 10× slower with them under the branch).
            let xl = x4(t0 + min(j, nt - 1u), u * 32u + xlane);
            var s = dot(v[0], subgroupBroadcast(xl, 0u));
            s += dot(v[1], subgroupBroadcast(xl, 1u));
            s += dot(v[2], subgroupBroadcast(xl, 2u));
            s += dot(v[3], subgroupBroadcast(xl, 3u));
            s += dot(v[4], subgroupBroadcast(xl, 4u));
            s += dot(v[5], subgroupBroadcast(xl, 5u));
            s += dot(v[6], subgroupBroadcast(xl, 6u));
            s += dot(v[7], subgroupBroadcast(xl, 7u));
            accs[j] += s;
        }
    }
    if (r < params.rows) {
        for (var j = 0u; j < nt; j++) {
            y[(t0 + j) * params.out_stride + params.row0 + r] = accs[j];
        }
    }
#else
    for (var u = li % TPR; u < params.units; u += TPR) {
        let v = dequant_unit(rr, u);
        let k = u * 32u;
        for (var j = 0u; j < NT; j++) {
            if (j < nt) {
                var s = 0.0;
                for (var i = 0u; i < 8u; i++) {
                    s += dot(v[i], x4(t0 + j, k + 4u * i));
                }
                accs[j] += s;
            }
        }
    }
    // The reductions stay outside `j < nt` (uniform anyway) so that every invocation reaches
    // the shuffles and barriers.
    for (var j = 0u; j < NT; j++) {
        var acc = accs[j];
#ifdef SUBGROUPS
        for (var off = TPR / 2u; off > 0u; off >>= 1u) {
            acc += subgroupShuffleXor(acc, off);
        }
#else
        if (TPR > 1u) {
            partial[li] = acc;
            workgroupBarrier();
            if (li % TPR == 0u) {
                for (var i = 1u; i < TPR; i++) {
                    acc += partial[li + i];
                }
            }
            workgroupBarrier();
        }
#endif
        if (j < nt && li % TPR == 0u && r < params.rows) {
            y[(t0 + j) * params.out_stride + params.row0 + r] = acc;
        }
    }
#endif
}
