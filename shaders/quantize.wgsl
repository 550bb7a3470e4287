// Activations quantized to 8 bits, the input of the packed-integer matrix-vector kernel
// (matvec.wgsl with INT_DOT). The rounding is llama.cpp's for the weight type that reads them, so
// that where llama.cpp's results sit near a tie ours move with them rather than independently:
//   - (default) Q8_0, for the legacy types: per 32 values, q = the nearest integer (ties to
//     even) of x · 127 / max|x|, and the scale d = max|x| / 127 rounded to f16, as llama.cpp's
//     Q8_0 and Q8_1 blocks store it;
//   - BLOCK_256: Q8_K, for the k-quants: one scale per 256 values, from the value of largest
//     magnitude m with its sign: q = min(127, nearest(x · -127 / m)), d = 1 / (-127 / m).
// Each 32-value unit becomes three vec4 words whatever the blocks: q packed four to a word
// (element 4i+k in byte k of word i), then d, d · Σ q over elements 0..15 and over 16..31 (the
// weight offsets and mins multiply these), and a zero word.
//
// One invocation per 32-value unit (per 256-value block with BLOCK_256); a row of `cols` values
// has `units` = ceil(cols / 32) units, the tail zero-padded (BLOCK_256 needs cols % 256 == 0, as
// k-quant rows have). Each layer input is quantized once for every product that takes it.
//
// X_GLU (the down projection's input): x is the gate projection and x_up the up projection, and
// the value quantized is gate(x) · x_up (SiLU, or GELU with GELU: gate.wgsl), so the gated product
// needs no dispatch of its own.
//
// X_NORM (a block's input in a decode step): x is the residual stream and the value quantized is
// its RMSNorm with weight norm_w, so the norm needs no dispatch of its own. One workgroup per token
// (a token's row is a few thousand values): the workgroup sums the squares as norm.wgsl does, with
// the same invocations, order and reduction, and scales each value as it does, so the integers are
// those that norm.wgsl's output would quantize to, bit for bit.

struct QuantizeParams {
    cols: u32,
    units: u32,
    // The RMSNorm's epsilon (X_NORM).
    eps: f32,
}

struct Step {
    n_tokens: u32,
    pos: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> xq: array<vec4<u32>>;
@group(0) @binding(2) var<uniform> qp: QuantizeParams;
@group(0) @binding(3) var<uniform> step: Step;
#ifdef X_GLU
@group(0) @binding(4) var<storage, read> x_up: array<f32>;
#include "gate.wgsl"
#endif
#ifdef X_NORM
@group(0) @binding(5) var<storage, read> norm_w: array<f32>;
// norm.wgsl's workgroup, so that the sum of squares is reduced in its order.
const WG: u32 = 256u;
#include "reduce.wgsl"
// The token's RMSNorm scale, set before any value is read.
var<private> norm_scale: f32;
#else
const WG: u32 = 64u;
#endif

// Element k of row t; 0 past the row's end.
fn value(t: u32, k: u32) -> f32 {
    if (k >= qp.cols) {
        return 0.0;
    }
    let e = t * qp.cols + k;
    var v = x[e];
#ifdef X_GLU
    // The gated product, as the CPU reference and quant.wgsl's x4 write it: gate(gate) · up.
    v = gate4(vec4<f32>(v)).x * x_up[e];
#endif
#ifdef X_NORM
    // norm.wgsl's order: v * scale * w.
    v = v * norm_scale * norm_w[k];
#endif
    return v;
}

// Writes unit u of row t: the values scaled by `scale` and rounded, with the block scale d.
fn write_unit(t: u32, u: u32, scale: f32, d: f32) {
    var words: array<u32, 8>;
    var sums = vec2<i32>(0);
    for (var w = 0u; w < 8u; w++) {
        let k = u * 32u + 4u * w;
        let v = vec4<f32>(value(t, k), value(t, k + 1u), value(t, k + 2u), value(t, k + 3u));
        let q = clamp(vec4<i32>(round(v * scale)), vec4<i32>(-127), vec4<i32>(127));
        words[w] = pack4xI8(q);
        let s = q.x + q.y + q.z + q.w;
        if (w < 4u) {
            sums.x += s;
        } else {
            sums.y += s;
        }
    }
    let i = 3u * (t * qp.units + u);
    xq[i] = vec4<u32>(words[0], words[1], words[2], words[3]);
    xq[i + 1u] = vec4<u32>(words[4], words[5], words[6], words[7]);
    xq[i + 2u] = vec4<u32>(bitcast<u32>(d), bitcast<u32>(d * f32(sums.x)), bitcast<u32>(d * f32(sums.y)), 0u);
}

// Quantizes unit `i` of token t's row, or with BLOCK_256 its 256-value block `i`.
fn quantize_at(t: u32, i: u32) {
#ifdef BLOCK_256
    let u0 = i * 8u;
    // The value of largest magnitude, with its sign (the first of equal magnitudes).
    var m = 0.0;
    for (var k = 0u; k < 256u; k++) {
        let v = value(t, u0 * 32u + k);
        if (abs(v) > abs(m)) {
            m = v;
        }
    }
    let iscale = select(0.0, -127.0 / m, m != 0.0);
    let d = select(0.0, 1.0 / iscale, m != 0.0);
    for (var u = u0; u < u0 + 8u; u++) {
        write_unit(t, u, iscale, d);
    }
#else
    var amax = 0.0;
    for (var k = 0u; k < 32u; k++) {
        amax = max(amax, abs(value(t, i * 32u + k)));
    }
    // The integers from the exact scale, the stored scale rounded to f16 (llama.cpp's order).
    let scale = select(0.0, 127.0 / amax, amax > 0.0);
    write_unit(t, i, scale, quantizeToF16(amax / 127.0));
#endif
}

// What quantize_at takes per token: units, or 256-value blocks.
fn per_token() -> u32 {
#ifdef BLOCK_256
    return qp.units / 8u;
#else
    return qp.units;
#endif
}

#ifdef X_NORM
@compute @workgroup_size(WG)
fn quantize(
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
    let row = t * qp.cols;
    var ss = 0.0;
    for (var k = lid; k < qp.cols; k += WG) {
        let v = x[row + k];
        ss += v * v;
    }
#ifdef SUBGROUPS
    ss = wg_sum(ss, lid, size);
#else
    ss = wg_sum(ss, lid, 0u);
#endif
    norm_scale = 1.0 / sqrt(ss / f32(qp.cols) + qp.eps);
    for (var i = lid; i < per_token(); i += WG) {
        quantize_at(t, i);
    }
}
#else
@compute @workgroup_size(WG)
fn quantize(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= step.n_tokens * per_token()) {
        return;
    }
    quantize_at(i / per_token(), i % per_token());
}
#endif
