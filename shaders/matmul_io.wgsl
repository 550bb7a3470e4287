// The bindings of a weight × activation product, shared by matvec.wgsl (decode) and matmul.wgsl
// (tiled prefill): MatmulOp binds both kernels the same way, so that either can run a layer's
// product. w: one part of a weight in the GPU layout (quant.wgsl); x: f32 activations, as vec4
// when X_VEC4 (cols % 4 == 0); y: f32 outputs. X_GLU (the feed-forward down projection): x is
// the gate projection and x_up the up projection, and the product's input is gate(x) · x_up (gate.wgsl),
// formed as the activations load (quant.wgsl's x4), so the gate needs no dispatch of its own.
// INT_DOT (matvec.wgsl only): binding 1 holds the activations quantized by quantize.wgsl.
// X_NORM (matvec.wgsl, one token, X_VEC4): x is the residual stream and the product's input is
// its RMSNorm with weight x_norm, applied as the activations load (the per-token scale at the
// end). Y_ADD (matvec.wgsl, one token): y += W · x, the residual add of the block's output.
// Y_SPLIT (matvec.wgsl, one token; with Y_SPLIT3 a third output): the weight is a joint of
// matrices that read the same input (Q, K and V; gate and up: src/gpu/weights.rs), and each
// member's rows go to its own output, from that output's row 0 (y_store).

#include "quant.wgsl"

@group(0) @binding(0) var<storage, read> w: array<vec4<u32>>;
#ifdef INT_DOT
// The activations quantized to 8 bits per unit (quantize.wgsl; quant.wgsl's x_unit reads them).
@group(0) @binding(1) var<storage, read> xq: array<vec4<u32>>;
#else
#ifdef X_VEC4
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
#else
@group(0) @binding(1) var<storage, read> x: array<f32>;
#endif
#endif
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
@group(0) @binding(4) var<uniform> step: Step;
#ifdef X_GLU
#ifdef X_VEC4
@group(0) @binding(5) var<storage, read> x_up: array<vec4<f32>>;
#else
@group(0) @binding(5) var<storage, read> x_up: array<f32>;
#endif
#endif
#ifdef X_NORM
@group(0) @binding(6) var<storage, read> x_norm: array<vec4<f32>>;
const NORM_EPS: f32 = {{NORM_EPS}};
#endif
#ifdef Y_SPLIT
@group(0) @binding(7) var<storage, read_write> y1: array<f32>;
const SPLIT1: u32 = {{SPLIT1}}u;
#ifdef Y_SPLIT3
@group(0) @binding(8) var<storage, read_write> y2: array<f32>;
const SPLIT2: u32 = {{SPLIT2}}u;
#endif

// Writes row `row` of a one-token product to the output that takes it.
fn y_store(row: u32, v: f32) {
#ifdef Y_SPLIT3
    if (row >= SPLIT2) {
        y2[row - SPLIT2] = v;
        return;
    }
#endif
    if (row >= SPLIT1) {
        y1[row - SPLIT1] = v;
    } else {
        y[row] = v;
    }
}
#endif
