// Matrix × vector: y[t][row0 + r] = Σ_k w[r][k] · x[t][k] for the rows r of one weight part.
// Decode (one token) everywhere; on CPU devices also prefill, NT tokens per dispatch z slice.
//
// A workgroup of WG invocations handles WG / TPR * RPI rows; the TPR invocations of a row take its
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
// XBCAST (CPU devices such as lavapipe and SwiftShader, with subgroups): one row per invocation
// (TPR = 1), and all invocations walk the units in step, so lanes 0..7 of a subgroup load the
// unit's 8 activation vec4s once and broadcast them (with XBCAST4, for subgroups of 4, lanes 0..3
// load two each); on a CPU every per-invocation load is a gather, and gathering the activations
// cost as much as decoding the weights. Each decoded unit
// is used for NT tokens (wid.z selects tokens wid.z*NT ..), which makes this the faster prefill
// there too (about 4× the tiled kernel on lavapipe).
//
// RPI (not with XBCAST): each group of TPR invocations takes RPI consecutive rows, and every
// activation vec4 it loads serves all of them. With one row per group, each weight element costs
// a 4-byte activation load (from cache) beside its 0.5–1 byte of quantized weight. That may be
// why decode time on the H200 tracked parameters more than weight bytes (8B Q4_K_M took 2.8× as
// long as 3B Q8_0 with 1.4× the bytes); on lavapipe without subgroups, 4 rows gave +23%.
//
// INT_DOT (not with XBCAST): the activations come quantized to 8 bits per unit (quantize.wgsl)
// and each unit's product is one packed-integer dot product per four elements (quant.wgsl's
// w_unit and idot) instead of a decode to f32 and eight vec4 products.
//
// X_NORM, Y_ADD (one token, not with XBCAST; X_NORM not with INT_DOT; see matmul_io.wgsl): the
// RMSNorm before a block and the residual add after it, done by the products so that neither is
// a dispatch of its own. The norm's sum of squares comes free with the activation loads: a row's
// TPR invocations load the whole row between them, and reduce the squares with the products.
// (With INT_DOT the quantize of the block's input does the norm: quantize.wgsl's X_NORM.)
//
// Y_SPLIT (one token, not with XBCAST or Y_ADD, with INT_DOT or without; see matmul_io.wgsl): a
// joint's product, each member's rows written to its own output.
//
// Defines: one TYPE_* (quant.wgsl), WG, TPR, RPI, NT, XBCAST, XBCAST4, X_VEC4 (cols % 4 == 0),
// XMASK (cols % 32 != 0), INT_DOT, X_NORM (with NORM_EPS), Y_ADD, Y_SPLIT (with SPLIT1),
// Y_SPLIT3 (with SPLIT2).

#include "matmul_io.wgsl"

const WG: u32 = {{WG}}u;
const TPR: u32 = {{TPR}}u;
const RPI: u32 = {{RPI}}u;
const ROWS: u32 = WG / TPR * RPI;
// Tokens per dispatch z slice.
const NT: u32 = {{NT}}u;

#ifndef SUBGROUPS
var<workgroup> partial: array<f32, WG>;
#endif

// `v` summed over the TPR invocations of invocation `li`'s row, complete in (at least) the
// row's first invocation: a butterfly of shuffles within the subgroup, or through workgroup
// memory. Every invocation of the workgroup must reach each call.
fn row_sum(v: f32, li: u32) -> f32 {
    var acc = v;
#ifdef SUBGROUPS
    for (var off = TPR / 2u; off > 0u; off >>= 1u) {
        acc += subgroupShuffleXor(acc, off);
    }
#else
    if (TPR > 1u) {
        partial[li] = acc;
        workgroupBarrier();
        if (li % TPR == 0u) {
            for (var l = 1u; l < TPR; l++) {
                acc += partial[li + l];
            }
        }
        workgroupBarrier();
    }
#endif
    return acc;
}

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
    // The first of this invocation's rows (RPI = 1 with XBCAST).
    let r = (wid.x + wid.y * nwg.x) * ROWS + li / TPR * RPI;
    // Tokens t0 .. t0 + nt of this dispatch's z slice, NT at most.
    let t0 = wid.z * NT;
    let nt = min(NT, step.n_tokens - t0);
#ifdef XBCAST
    // Invocations past the part's rows recompute its last row and do not write it, so that
    // control flow stays uniform.
    let rr = min(r, params.rows - 1u);
    var accs: array<f32, NT>;
#ifdef XBCAST4
    let xlane = 4u * (sg_lane & 3u);
#else
    let xlane = 4u * (sg_lane & 7u);
#endif
    for (var u = 0u; u < params.units; u++) {
        let v = dequant_unit(rr, u);
        for (var j = 0u; j < NT; j++) {
            // Past the slice's last token, re-reads that token rather than branching: the
            // broadcasts stay in uniform control flow (lavapipe leaked ~124 MiB per dispatch and
            // ran 10× slower with them under the branch).
            let t = t0 + min(j, nt - 1u);
            let xl = x4(t, u * 32u + xlane);
#ifdef XBCAST4
            // Lanes 0..3 hold vec4s 0..3 in xl and 4..7 in xh: the same products, same order.
            let xh = x4(t, u * 32u + 16u + xlane);
#else
            let xh = xl;
#endif
            var s = dot(v[0], subgroupBroadcast(xl, 0u));
            s += dot(v[1], subgroupBroadcast(xl, 1u));
            s += dot(v[2], subgroupBroadcast(xl, 2u));
            s += dot(v[3], subgroupBroadcast(xl, 3u));
#ifdef XBCAST4
            s += dot(v[4], subgroupBroadcast(xh, 0u));
            s += dot(v[5], subgroupBroadcast(xh, 1u));
            s += dot(v[6], subgroupBroadcast(xh, 2u));
            s += dot(v[7], subgroupBroadcast(xh, 3u));
#else
            s += dot(v[4], subgroupBroadcast(xh, 4u));
            s += dot(v[5], subgroupBroadcast(xh, 5u));
            s += dot(v[6], subgroupBroadcast(xh, 6u));
            s += dot(v[7], subgroupBroadcast(xh, 7u));
#endif
            accs[j] += s;
        }
    }
    if (r < params.rows) {
        for (var j = 0u; j < nt; j++) {
            y[(t0 + j) * params.out_stride + params.row0 + r] = accs[j];
        }
    }
#else
    // accs[i * NT + j]: row r + i, token t0 + j.
    var accs: array<f32, RPI * NT>;
    // This invocation's share of the token's sum of squares (X_NORM).
    var sq = 0.0;
#ifdef INT_DOT
    for (var u = li % TPR; u < params.units; u += TPR) {
        // The rows' units decoded to integers once, for every token of the slice.
        var wu = array<WUnit, RPI>();
        for (var i = 0u; i < RPI; i++) {
            wu[i] = w_unit(min(r + i, params.rows - 1u), u);
        }
        for (var j = 0u; j < NT; j++) {
            if (j < nt) {
                // 48 bytes of quantized activations for the unit, shared by the RPI rows.
                let xu = x_unit(t0 + j, u);
                for (var i = 0u; i < RPI; i++) {
                    accs[i * NT + j] += idot(wu[i], xu);
                }
            }
        }
    }
#else
    for (var u = li % TPR; u < params.units; u += TPR) {
        let k = u * 32u;
        // Rows past the part's end recompute its last row and are not written, so that
        // control flow stays uniform.
        if (NT == 1u) {
            // One token: its 32 activations stay in registers while each row's unit is
            // decoded against them, so registers do not grow with RPI.
            var xv = array<vec4<f32>, 8>();
            for (var q = 0u; q < 8u; q++) {
                xv[q] = x4(t0, k + 4u * q);
#ifdef X_NORM
                sq += dot(xv[q], xv[q]);
                xv[q] *= x_norm[(k >> 2u) + q];
#endif
            }
            for (var i = 0u; i < RPI; i++) {
                let v = dequant_unit(min(r + i, params.rows - 1u), u);
                var s = 0.0;
                for (var q = 0u; q < 8u; q++) {
                    s += dot(v[q], xv[q]);
                }
                accs[i] += s;
            }
        } else {
            // Several tokens: the rows' decoded units stay in registers for all the tokens.
            var v = array<array<vec4<f32>, 8>, RPI>();
            for (var i = 0u; i < RPI; i++) {
                v[i] = dequant_unit(min(r + i, params.rows - 1u), u);
            }
            for (var j = 0u; j < NT; j++) {
                if (j < nt) {
                    var s = array<f32, RPI>();
                    for (var q = 0u; q < 8u; q++) {
                        let xv = x4(t0 + j, k + 4u * q);
                        for (var i = 0u; i < RPI; i++) {
                            s[i] += dot(v[i][q], xv);
                        }
                    }
                    for (var i = 0u; i < RPI; i++) {
                        accs[i * NT + j] += s[i];
                    }
                }
            }
        }
    }
#endif
    // The reductions stay outside `j < nt` (uniform anyway) so that every invocation reaches
    // the shuffles and barriers.
#ifdef X_NORM
    // The token's RMSNorm scale, from the squares every invocation of the row loaded.
    let norm_scale = inverseSqrt(row_sum(sq, li) / f32(params.cols) + NORM_EPS);
#endif
    for (var i = 0u; i < RPI; i++) {
        for (var j = 0u; j < NT; j++) {
            var acc = row_sum(accs[i * NT + j], li);
            if (j < nt && li % TPR == 0u && r + i < params.rows) {
                let at = (t0 + j) * params.out_stride + params.row0 + r + i;
#ifdef X_NORM
                acc *= norm_scale;
#endif
#ifdef Y_ADD
                acc += y[at];
#endif
#ifdef Y_SPLIT
                // One token: `at` is the row.
                y_store(at, acc);
#else
                y[at] = acc;
#endif
            }
        }
    }
#endif
}
