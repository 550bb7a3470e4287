// Prefill (several tokens): y[t][row0 + r] = Σ_k x[t][k] · w[r][k] for the rows r of one weight
// part, x f32 [n_tokens][cols], y f32 [n_tokens][out_stride].
//
// Tiled: a workgroup computes a tile of BM tokens × BN rows. For each 32-element unit of the rows
// it stages the dequantized weights (BN units, decoded once each by the first BN invocations)
// and the activations (the other invocations) in workgroup memory, then every invocation
// accumulates 4 tokens × 4 rows in f32. Tiles past n_tokens or the part's rows are zero-filled
// and not written. Workgroup arrays have a padded row stride (9 vec4) against bank conflicts.
//
// Defines: one TYPE_* (quant.wgsl), X_VEC4 (cols % 4 == 0), XMASK (cols % 32 != 0).

#include "matmul_io.wgsl"

// Rows (BN) and tokens (BM) per tile; each invocation owns 8 rows × 4 tokens: rows tx + 8i and
// tokens ty + 8j.
const BN: u32 = 64u;
const BM: u32 = 32u;
const WG: u32 = 64u;
const STRIDE: u32 = 9u;

var<workgroup> ws: array<vec4<f32>, 576>; // BN * STRIDE
var<workgroup> xs: array<vec4<f32>, 288>; // BM * STRIDE

@compute @workgroup_size(64)
fn matmul(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let n_tokens = step.n_tokens;
    let row_base = wid.x * BN;
    let tok_base = wid.y * BM;
    let tx = li % 8u;
    let ty = li / 8u;
    var acc: array<array<f32, 8>, 4>;
    for (var u = 0u; u < params.units; u++) {
        // Each invocation: one dequantized unit of row row_base + li, and 4 activation vec4s.
        let r = row_base + li;
        // Rows past the part stage zeros. (Nested declarations spell out their initializer:
        // tests/shader_lint.rs says why.)
        var v = array<vec4<f32>, 8>();
        if (r < params.rows) {
            v = dequant_unit(r, u);
        }
        for (var i = 0u; i < 8u; i++) {
            ws[li * STRIDE + i] = v[i];
        }
        for (var m = 0u; m < 4u; m++) {
            let e = li + m * WG;
            let tt = e / 8u;
            let k4 = e % 8u;
            var xv = vec4<f32>(0.0);
            if (tok_base + tt < n_tokens) {
                xv = x4(tok_base + tt, u * 32u + k4 * 4u);
            }
            xs[tt * STRIDE + k4] = xv;
        }
        workgroupBarrier();
        for (var k4 = 0u; k4 < 8u; k4++) {
            var wv = array<vec4<f32>, 8>();
            for (var i = 0u; i < 8u; i++) {
                wv[i] = ws[(tx + 8u * i) * STRIDE + k4];
            }
            for (var j = 0u; j < 4u; j++) {
                let xv = xs[(ty + 8u * j) * STRIDE + k4];
                for (var i = 0u; i < 8u; i++) {
                    acc[j][i] += dot(xv, wv[i]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var j = 0u; j < 4u; j++) {
        let t = tok_base + ty + 8u * j;
        if (t < n_tokens) {
            for (var i = 0u; i < 8u; i++) {
                let r = row_base + tx + 8u * i;
                if (r < params.rows) {
                    y[t * params.out_stride + params.row0 + r] = acc[j][i];
                }
            }
        }
    }
}
