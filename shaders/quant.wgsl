// Quantized weights on the GPU: the per-type decode of one 32-element "unit" of a weight row.
// Included by matvec.wgsl, matmul.wgsl and embedding.wgsl, which declare the bindings used here:
// `w: array<vec4<u32>>` (one part of the weight, see below) and `params: Params`.
//
// Exactly one type define selects the format: TYPE_F32, TYPE_F16, TYPE_BF16, TYPE_Q4_0, TYPE_Q4_1,
// TYPE_Q5_0, TYPE_Q5_1, TYPE_Q8_0, TYPE_Q2_K, TYPE_Q3_K, TYPE_Q4_K, TYPE_Q5_K, TYPE_Q6_K,
// TYPE_IQ4_NL, TYPE_IQ4_XS, TYPE_IQ2_XXS, TYPE_IQ2_XS, TYPE_IQ2_S, TYPE_IQ3_XXS, TYPE_IQ3_S,
// TYPE_IQ1_S, TYPE_IQ1_M (`F16` alone means shader-f16 is on; `IQ4` comes with either IQ4 type,
// `LATTICE` with the lattice types, `IQ1` with either IQ1 type).
// `dequant_unit(r, u)` returns elements 32u .. 32u+31 of row r of the part as 8 vec4s, computed
// with the same f32 operations as the CPU reference (src/quant); only an FMA contraction of
// `d * q + m` may round differently (by one ulp).
//
// Precision: every variant decodes and accumulates in f32, with or without shader-f16 (`F16`).
// f16 values are widened with unpack2x16float, which is exact; f16 arithmetic would not be
// accurate enough for the sums (and naga 30 mistypes `bitcast` from u32 to vec2/vec4<f16>).
//
// GPU layout (src/gpu/weights.rs makes it while uploading). A tensor is split by rows into parts
// of at most the storage-binding limit; each part is one buffer. Every segment starts on a
// 16-byte boundary (the host pads segments to 16 bytes), so quants are read with vec4<u32> loads.
// `params.seg1`/`params.seg2` are the u32-word offsets of the second/third segment.
//   Q4_0: [qs 16 B/block]           [d  f16/block]                  (GGUF: d qs, 18 B)
//   Q4_1: [qs 16 B/block]           [d,m 2×f16/block]               (GGUF: d m qs, 20 B)
//   Q5_0: [qs 16 B/block] [qh u32/block] [d f16/block]              (GGUF: d qh qs, 22 B)
//   Q5_1: [qs 16 B/block] [qh u32/block] [d,m 2×f16/block]          (GGUF: d m qh qs, 24 B)
//   Q8_0: [qs 32 B/block]           [d  f16/block]                  (GGUF: d qs, 34 B)
//   Q4_K: GGUF blocks unchanged, 144 B = 9 vec4 (d dmin scales[12] qs[128])
//   Q5_K: GGUF blocks unchanged, 176 B = 11 vec4 (d dmin scales[12] qh[32] qs[128])
//   Q6_K: [ql[128] qh[64] scales[16]: 208 B = 13 vec4 /block] [d f16/block]   (GGUF: 210 B)
//   Q2_K: [scales[16] qs[64]: 80 B = 5 vec4 /block] [d,dmin 2×f16/block]     (GGUF: 84 B)
//   Q3_K: [hmask[32] qs[64]: 96 B = 6 vec4 /block] [scales 12 B/block] [d f16/block] (GGUF: 110 B)
//   IQ4_NL: [qs 16 B/block]         [d  f16/block]                  (GGUF: d qs, 18 B)
//   IQ4_XS: [qs[128]: 8 vec4 /block] [d f16, scales_h u16, scales_l[4]: 8 B/block] (GGUF: 136 B)
//   IQ2_XXS: [qs: 64 B = 4 vec4 /block] [d f16/block]                (GGUF: d qs, 66 B)
//   IQ2_XS: [qs 64 B /block] [scales 8 B/block] [d f16/block]        (GGUF: d qs scales, 74 B)
//   IQ2_S: [qs[32] signs[32] qh[8] scales[8]: 80 B /block] [d f16/block] (GGUF: 82 B)
//   IQ3_XXS: [qs[64] scales_signs[32]: 96 B /block] [d f16/block]    (GGUF: 98 B)
//   IQ3_S: [qs[64] qh[8] signs[32] scales[4]: 108 B = 27 words /block] [d f16/block] (GGUF: 110 B)
//   IQ1_S: [qs[32] qh[16]: 48 B /block] [d f16/block]                (GGUF: d qs qh, 50 B)
//   IQ1_M: GGUF blocks unchanged, 56 B = 14 words (qs[32] qh[16] scales[8])
//   The lattice types' parts end with their table of points (see LATTICE below).
//   F32, F16, BF16: rows zero-padded to a multiple of 32 elements (no padding for model tensors).
// Blocks are in row-major order (row r's blocks are r*bpr .. r*bpr+bpr-1, bpr blocks per row).
// A legacy block is one unit; a k-quant super-block holds 8 units.

struct Params {
    // Row length in elements (ggml dims[0]); the row stride of the activations.
    cols: u32,
    // 32-element units per row: ceil(cols / 32).
    units: u32,
    // Rows in this part, and the first of them in the whole tensor.
    rows: u32,
    row0: u32,
    // Row stride of the output (the whole tensor's row count for matmul, cols for embedding).
    out_stride: u32,
    seg1: u32,
    seg2: u32,
    // 1 for the tensor's last part.
    last: u32,
}

struct Step {
    n_tokens: u32,
    pos: u32,
}

fn wword(i: u32) -> u32 {
    return w[i >> 2u][i & 3u];
}

// Half `i` (0 = low) of a word holding two f16 values, widened exactly.
fn half_of(v: u32, i: u32) -> f32 {
    return unpack2x16float(v)[i];
}

// Both f16 values of a word, widened exactly.
fn halves(v: u32) -> vec2<f32> {
    return unpack2x16float(v);
}

// The f16 at index `i` of a segment of packed f16 values starting at word `seg`.
fn seg_half(seg: u32, i: u32) -> f32 {
    return half_of(wword(seg + (i >> 1u)), i & 1u);
}

// Bits `shift .. shift+width` of each byte of `v` (byte 0 first).
fn byte_bits(v: u32, shift: u32, mask: u32) -> vec4<u32> {
    return (vec4<u32>(v) >> (vec4<u32>(0u, 8u, 16u, 24u) + shift)) & vec4<u32>(mask);
}

// Bit `shift + k` of `v` for k = 0..3 (consecutive bits, for the Q5 legacy high bits).
fn bits4(v: u32, shift: u32) -> vec4<u32> {
    return (vec4<u32>(v) >> (vec4<u32>(0u, 1u, 2u, 3u) + shift)) & vec4<u32>(1u);
}

// The four bytes of `v` as signed values.
fn sbytes(v: u32) -> vec4<f32> {
    return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(v) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
}

// Byte `i` of a k-quant header vec4 (word 0 is d/dmin, bytes 0..11 of words 1..3 the scales).
fn kscale_byte(h: vec4<u32>, i: u32) -> u32 {
    return (h[1u + (i >> 2u)] >> ((i & 3u) * 8u)) & 255u;
}

// Scale and min of sub-block j (0..7) of a Q4_K/Q5_K super-block, from its header.
fn kscale_min(h: vec4<u32>, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(kscale_byte(h, j) & 63u), f32(kscale_byte(h, j + 4u) & 63u));
    }
    let sc = (kscale_byte(h, j + 4u) & 15u) | ((kscale_byte(h, j - 4u) >> 6u) << 4u);
    let m = (kscale_byte(h, j + 4u) >> 4u) | ((kscale_byte(h, j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

// One `dequant_unit` per format below. The formats of a family (Q4_0/Q5_0, Q4_1/Q5_1, Q4_K/Q5_K)
// read alike on purpose: each function is its format's bit layout written out, side by side with
// its siblings so that they can be checked against each other and against src/quant, rather than
// one function generalized over layouts.
#ifdef TYPE_F32
fn dequant_unit(r: u32, u: u32) -> array<vec4<f32>, 8> {
    let base = (r * params.units + u) * 8u;
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        o[i] = bitcast<vec4<f32>>(w[base + i]);
    }
    return o;
}
#endif

#ifdef TYPE_F16
fn dequant_unit(r: u32, u: u32) -> array<vec4<f32>, 8> {
    let base = (r * params.units + u) * 4u;
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        let v = w[base + i];
        o[2u * i] = vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y));
        o[2u * i + 1u] = vec4<f32>(unpack2x16float(v.z), unpack2x16float(v.w));
    }
    return o;
}
#endif

#ifdef TYPE_Q4_0
fn dequant_unit(r: u32, u: u32) -> array<vec4<f32>, 8> {
    let b = r * params.units + u;
    let q = w[b];
    let d = seg_half(params.seg1, b);
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        o[i] = d * (vec4<f32>(byte_bits(q[i], 0u, 15u)) - 8.0);
        o[i + 4u] = d * (vec4<f32>(byte_bits(q[i], 4u, 15u)) - 8.0);
    }
    return o;
}
#endif

#ifdef TYPE_Q4_1
fn dequant_unit(r: u32, u: u32) -> array<vec4<f32>, 8> {
    let b = r * params.units + u;
    let q = w[b];
    let dm = halves(wword(params.seg1 + b));
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        o[i] = dm.x * vec4<f32>(byte_bits(q[i], 0u, 15u)) + dm.y;
        o[i + 4u] = dm.x * vec4<f32>(byte_bits(q[i], 4u, 15u)) + dm.y;
    }
    return o;
}
#endif

#ifdef TYPE_Q5_0
fn dequant_unit(r: u32, u: u32) -> array<vec4<f32>, 8> {
    let b = r * params.units + u;
    let q = w[b];
    let qh = wword(params.seg1 + b);
    let d = seg_half(params.seg2, b);
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        // Element e's fifth bit is bit e of qh.
        let lo = byte_bits(q[i], 0u, 15u) | (bits4(qh, 4u * i) << vec4<u32>(4u));
        let hi = byte_bits(q[i], 4u, 15u) | (bits4(qh, 16u + 4u * i) << vec4<u32>(4u));
        o[i] = d * (vec4<f32>(lo) - 16.0);
        o[i + 4u] = d * (vec4<f32>(hi) - 16.0);
    }
    return o;
}
#endif

#ifdef TYPE_Q5_1
fn dequant_unit(r: u32, u: u32) -> array<vec4<f32>, 8> {
    let b = r * params.units + u;
    let q = w[b];
    let qh = wword(params.seg1 + b);
    let dm = halves(wword(params.seg2 + b));
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        let lo = byte_bits(q[i], 0u, 15u) | (bits4(qh, 4u * i) << vec4<u32>(4u));
        let hi = byte_bits(q[i], 4u, 15u) | (bits4(qh, 16u + 4u * i) << vec4<u32>(4u));
        o[i] = dm.x * vec4<f32>(lo) + dm.y;
        o[i + 4u] = dm.x * vec4<f32>(hi) + dm.y;
    }
    return o;
}
#endif

#ifdef TYPE_Q8_0
fn dequant_unit(r: u32, u: u32) -> array<vec4<f32>, 8> {
    let b = r * params.units + u;
    let q0 = w[2u * b];
    let q1 = w[2u * b + 1u];
    let d = seg_half(params.seg1, b);
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        o[i] = sbytes(q0[i]) * d;
        o[i + 4u] = sbytes(q1[i]) * d;
    }
    return o;
}
#endif

#ifdef TYPE_Q4_K
fn dequant_unit(r: u32, u: u32) -> array<vec4<f32>, 8> {
    // Super-block b, sub-block j: qs bytes (j/2)*32 .. +32, low nibbles for even j.
    let b = r * (params.units >> 3u) + (u >> 3u);
    let j = u & 7u;
    let base = b * 9u;
    let h = w[base];
    let dd = halves(h.x);
    let sm = kscale_min(h, j);
    let dl = dd.x * sm.x;
    let ml = dd.y * sm.y;
    let q0 = w[base + 1u + (j >> 1u) * 2u];
    let q1 = w[base + 2u + (j >> 1u) * 2u];
    let s = (j & 1u) * 4u;
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        o[i] = dl * vec4<f32>(byte_bits(q0[i], s, 15u)) - ml;
        o[i + 4u] = dl * vec4<f32>(byte_bits(q1[i], s, 15u)) - ml;
    }
    return o;
}
#endif

#ifdef TYPE_Q5_K
fn dequant_unit(r: u32, u: u32) -> array<vec4<f32>, 8> {
    // As Q4_K, plus the fifth bit: bit j of qh byte k for element k of sub-block j.
    let b = r * (params.units >> 3u) + (u >> 3u);
    let j = u & 7u;
    let base = b * 11u;
    let h = w[base];
    let dd = halves(h.x);
    let sm = kscale_min(h, j);
    let dl = dd.x * sm.x;
    let ml = dd.y * sm.y;
    let qh0 = w[base + 1u];
    let qh1 = w[base + 2u];
    let q0 = w[base + 3u + (j >> 1u) * 2u];
    let q1 = w[base + 4u + (j >> 1u) * 2u];
    let s = (j & 1u) * 4u;
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        let lo = byte_bits(q0[i], s, 15u) | (byte_bits(qh0[i], j, 1u) << vec4<u32>(4u));
        let hi = byte_bits(q1[i], s, 15u) | (byte_bits(qh1[i], j, 1u) << vec4<u32>(4u));
        o[i] = dl * vec4<f32>(lo) - ml;
        o[i + 4u] = dl * vec4<f32>(hi) - ml;
    }
    return o;
}
#endif

#ifdef TYPE_Q6_K
fn dequant_unit(r: u32, u: u32) -> array<vec4<f32>, 8> {
    // Unit j of super-block b is elements 32j..32j+31: ql bytes (j/4)*64 + (j%2)*32 .. +32
    // (high nibbles for j/2 odd), qh bytes 128 + (j/4)*32 .. +32 (bits 2*(j%4)), and the
    // signed scales 2j, 2j+1 (one per 16 elements). Values are biased by 32.
    let b = r * (params.units >> 3u) + (u >> 3u);
    let j = u & 7u;
    let base = b * 13u;
    let ql0 = w[base + (j >> 2u) * 4u + (j & 1u) * 2u];
    let ql1 = w[base + (j >> 2u) * 4u + (j & 1u) * 2u + 1u];
    let qh0 = w[base + 8u + (j >> 2u) * 2u];
    let qh1 = w[base + 9u + (j >> 2u) * 2u];
    let sw = w[base + 12u][j >> 1u] >> ((j & 1u) * 16u);
    let d = seg_half(params.seg1, b);
    let dl0 = d * f32(bitcast<i32>(sw << 24u) >> 24u);
    let dl1 = d * f32(bitcast<i32>(sw << 16u) >> 24u);
    let sl = ((j >> 1u) & 1u) * 4u;
    let sh = (j & 3u) * 2u;
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        let lo = byte_bits(ql0[i], sl, 15u) | (byte_bits(qh0[i], sh, 3u) << vec4<u32>(4u));
        let hi = byte_bits(ql1[i], sl, 15u) | (byte_bits(qh1[i], sh, 3u) << vec4<u32>(4u));
        o[i] = dl0 * vec4<f32>(vec4<i32>(lo) - 32);
        o[i + 4u] = dl1 * vec4<f32>(vec4<i32>(hi) - 32);
    }
    return o;
}
#endif

#ifdef TYPE_BF16
fn dequant_unit(r: u32, u: u32) -> array<vec4<f32>, 8> {
    // A bfloat16 is the top half of an f32: widening is a shift.
    let base = (r * params.units + u) * 4u;
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        let v = w[base + i];
        let lo = bitcast<vec4<f32>>(v << vec4<u32>(16u));
        let hi = bitcast<vec4<f32>>(v & vec4<u32>(0xffff0000u));
        o[2u * i] = vec4<f32>(lo.x, hi.x, lo.y, hi.y);
        o[2u * i + 1u] = vec4<f32>(lo.z, hi.z, lo.w, hi.w);
    }
    return o;
}
#endif

#ifdef TYPE_Q2_K
fn dequant_unit(r: u32, u: u32) -> array<vec4<f32>, 8> {
    // Unit j of super-block b: 2-bit values at bits 2*(j%4) of qs bytes (j/4)*32 .. +32; scale
    // byte 2j (elements 0..15) and 2j+1 (16..31), each a 4-bit scale and a 4-bit min.
    let b = r * (params.units >> 3u) + (u >> 3u);
    let j = u & 7u;
    let base = b * 5u;
    let sc = w[base][j >> 1u] >> ((j & 1u) * 16u);
    let dm = halves(wword(params.seg1 + b));
    let s0 = sc & 255u;
    let s1 = (sc >> 8u) & 255u;
    let dl = vec2<f32>(dm.x * f32(s0 & 15u), dm.x * f32(s1 & 15u));
    let ml = vec2<f32>(dm.y * f32(s0 >> 4u), dm.y * f32(s1 >> 4u));
    let q0 = w[base + 1u + (j >> 2u) * 2u];
    let q1 = w[base + 2u + (j >> 2u) * 2u];
    let sh = (j & 3u) * 2u;
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        o[i] = dl.x * vec4<f32>(byte_bits(q0[i], sh, 3u)) - ml.x;
        o[i + 4u] = dl.y * vec4<f32>(byte_bits(q1[i], sh, 3u)) - ml.y;
    }
    return o;
}
#endif

#ifdef TYPE_Q3_K
// Byte `n` of super-block b's 12 scale bytes (the second segment, 3 words per block).
fn q3_scale_byte(b: u32, n: u32) -> u32 {
    return (wword(params.seg1 + 3u * b + (n >> 2u)) >> ((n & 3u) * 8u)) & 255u;
}

// The signed scale of 16-element group g (0..15): its low 4 bits are nibble g/8 of byte g%8,
// its top 2 bits crumb g/4 of byte 8 + g%4; stored biased by 32.
fn q3_scale(b: u32, g: u32) -> f32 {
    let lo = (q3_scale_byte(b, g & 7u) >> ((g >> 3u) * 4u)) & 15u;
    let hi = (q3_scale_byte(b, 8u + (g & 3u)) >> ((g >> 2u) * 2u)) & 3u;
    return f32(i32(lo | (hi << 4u)) - 32);
}

fn dequant_unit(r: u32, u: u32) -> array<vec4<f32>, 8> {
    // Unit j: 2-bit values as in Q2_K (qs after the 32 hmask bytes), minus 4 where bit j of
    // hmask byte k (element k) is clear.
    let b = r * (params.units >> 3u) + (u >> 3u);
    let j = u & 7u;
    let base = b * 6u;
    let d = seg_half(params.seg2, b);
    let dl = vec2<f32>(d * q3_scale(b, 2u * j), d * q3_scale(b, 2u * j + 1u));
    let m0 = w[base];
    let m1 = w[base + 1u];
    let q0 = w[base + 2u + (j >> 2u) * 2u];
    let q1 = w[base + 3u + (j >> 2u) * 2u];
    let sh = (j & 3u) * 2u;
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        let lo = vec4<i32>(byte_bits(q0[i], sh, 3u)) - 4 * vec4<i32>(vec4<u32>(1u) - byte_bits(m0[i], j, 1u));
        let hi = vec4<i32>(byte_bits(q1[i], sh, 3u)) - 4 * vec4<i32>(vec4<u32>(1u) - byte_bits(m1[i], j, 1u));
        o[i] = dl.x * vec4<f32>(lo);
        o[i + 4u] = dl.y * vec4<f32>(hi);
    }
    return o;
}
#endif

#ifdef IQ4
// The 16 non-linear levels (src/quant/iquants.rs IQ4_VALUES).
var<private> IQ4_VALUES: array<f32, 16> = array<f32, 16>(-127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0, 1.0, 13.0, 25.0, 38.0, 53.0, 69.0, 89.0, 113.0);

// The levels of four 4-bit indices.
fn iq4_levels(n: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(IQ4_VALUES[n.x], IQ4_VALUES[n.y], IQ4_VALUES[n.z], IQ4_VALUES[n.w]);
}

// A unit of 16 bytes of indices (element k: low nibble of byte k, k + 16: high nibble), scaled.
fn iq4_unit(q: vec4<u32>, scale: f32) -> array<vec4<f32>, 8> {
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        o[i] = scale * iq4_levels(byte_bits(q[i], 0u, 15u));
        o[i + 4u] = scale * iq4_levels(byte_bits(q[i], 4u, 15u));
    }
    return o;
}
#endif

#ifdef TYPE_IQ4_NL
fn dequant_unit(r: u32, u: u32) -> array<vec4<f32>, 8> {
    let b = r * params.units + u;
    return iq4_unit(w[b], seg_half(params.seg1, b));
}
#endif

#ifdef TYPE_IQ4_XS
fn dequant_unit(r: u32, u: u32) -> array<vec4<f32>, 8> {
    // Unit j of super-block b: qs bytes 16j .. +16; its 6-bit scale (biased by 32) from nibble
    // j%2 of scales_l byte j/2 and bits 2j..2j+2 of scales_h.
    let b = r * (params.units >> 3u) + (u >> 3u);
    let j = u & 7u;
    let h = wword(params.seg1 + 2u * b);
    let l = wword(params.seg1 + 2u * b + 1u);
    let ls = ((l >> (4u * j)) & 15u) | (((h >> (16u + 2u * j)) & 3u) << 4u);
    return iq4_unit(w[b * 8u + j], half_of(h, 0u) * f32(i32(ls) - 32));
}
#endif

#ifdef LATTICE
// The lattice types (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M) index groups of 4 or
// 8 weights into a table of points, which the host appends to every part (src/gpu/weights.rs
// `lattice_table`): its LATTICE words end the binding. Scales are formed in gguf-py's order, as
// in src/quant/iquants.rs, and a sign multiplies by ±1, which is exact; so every value equals
// the CPU reference's.
const LATTICE_WORDS: u32 = {{LATTICE}}u;

fn lattice(i: u32) -> u32 {
    return wword(arrayLength(&w) * 4u - LATTICE_WORDS + i);
}

// The four bytes of a table word as values.
fn coords(v: u32) -> vec4<f32> {
    return vec4<f32>(byte_bits(v, 0u, 255u));
}

// `v`, negated where bit k of `signs` is set (k = 0..3).
fn signed4(v: vec4<f32>, signs: u32) -> vec4<f32> {
    return select(v, -v, bits4(signs, 0u) == vec4<u32>(1u));
}

// The sign byte of a 7-bit sign index (src/quant/iq_grids.rs KSIGNS): the eighth sign makes the
// count of negative signs even.
fn ksigns(i: u32) -> u32 {
    return i | ((countOneBits(i) & 1u) << 7u);
}

// The IQ2/IQ3_XXS scale: (d * (0.5 + scale)) * k.
fn half_step(d: f32, scale: u32, k: f32) -> f32 {
    return d * (0.5 + f32(scale)) * k;
}

// Eight weights of an IQ2 point (two table words from word 2 * index): db times its coordinates,
// signed by the 8 bits of `signs`; into o[at], o[at + 1].
fn point8(o: ptr<function, array<vec4<f32>, 8>>, at: u32, db: f32, index: u32, signs: u32) {
    (*o)[at] = signed4(db * coords(lattice(2u * index)), signs);
    (*o)[at + 1u] = signed4(db * coords(lattice(2u * index + 1u)), signs >> 4u);
}

// Half `i` of a word.
fn half_word(v: u32, i: u32) -> u32 {
    return (v >> (16u * i)) & 0xffffu;
}
#endif

#ifdef TYPE_IQ2_XXS
fn dequant_unit(r: u32, u: u32) -> array<vec4<f32>, 8> {
    // Unit j of block b is two words: four grid indices (a byte per 8 weights), then four 7-bit
    // sign indices (bits 7k..) and the scale (bits 28..).
    let b = r * (params.units >> 3u) + (u >> 3u);
    let j = u & 7u;
    let q = w[b * 4u + (j >> 1u)];
    let grid = q[(j & 1u) * 2u];
    let aux = q[(j & 1u) * 2u + 1u];
    let db = half_step(seg_half(params.seg1, b), aux >> 28u, 0.25);
    var o: array<vec4<f32>, 8>;
    for (var k = 0u; k < 4u; k++) {
        point8(&o, 2u * k, db, (grid >> (8u * k)) & 255u, ksigns((aux >> (7u * k)) & 127u));
    }
    return o;
}
#endif

#ifdef TYPE_IQ2_XS
fn dequant_unit(r: u32, u: u32) -> array<vec4<f32>, 8> {
    // Unit j: four u16 (a 9-bit grid index, a 7-bit sign index above it) in words 2j, 2j+1 of
    // the block's 16; scale byte j (low nibble: the first 16 weights).
    let b = r * (params.units >> 3u) + (u >> 3u);
    let j = u & 7u;
    let q = w[b * 4u + (j >> 1u)];
    let qw = vec2<u32>(q[(j & 1u) * 2u], q[(j & 1u) * 2u + 1u]);
    let sc = (wword(params.seg1 + 2u * b + (j >> 2u)) >> (8u * (j & 3u))) & 255u;
    let d = seg_half(params.seg2, b);
    let db = vec2<f32>(half_step(d, sc & 15u, 0.25), half_step(d, sc >> 4u, 0.25));
    var o: array<vec4<f32>, 8>;
    for (var k = 0u; k < 4u; k++) {
        let v = half_word(qw[k >> 1u], k & 1u);
        point8(&o, 2u * k, db[k >> 1u], v & 511u, ksigns(v >> 9u));
    }
    return o;
}
#endif

#ifdef TYPE_IQ2_S
fn dequant_unit(r: u32, u: u32) -> array<vec4<f32>, 8> {
    // A block is 20 words: qs (low index bits, a byte per 8 weights), signs (a bit per weight),
    // qh (the indices' top 2 bits, a byte per unit), scales (a byte per unit).
    let b = r * (params.units >> 3u) + (u >> 3u);
    let j = u & 7u;
    let base = b * 20u;
    let qs = wword(base + j);
    let signs = wword(base + 8u + j);
    let qh = (wword(base + 16u + (j >> 2u)) >> (8u * (j & 3u))) & 255u;
    let sc = (wword(base + 18u + (j >> 2u)) >> (8u * (j & 3u))) & 255u;
    let d = seg_half(params.seg1, b);
    let db = vec2<f32>(half_step(d, sc & 15u, 0.25), half_step(d, sc >> 4u, 0.25));
    var o: array<vec4<f32>, 8>;
    for (var k = 0u; k < 4u; k++) {
        let index = ((qs >> (8u * k)) & 255u) | (((qh >> (2u * k)) & 3u) << 8u);
        point8(&o, 2u * k, db[k >> 1u], index, signs >> (8u * k));
    }
    return o;
}
#endif

#ifdef TYPE_IQ3_XXS
fn dequant_unit(r: u32, u: u32) -> array<vec4<f32>, 8> {
    // A block is 24 words: 64 grid indices (a byte per 4 weights), then a word per unit of
    // four 7-bit sign indices (one per 8 weights) and the scale (bits 28..).
    let b = r * (params.units >> 3u) + (u >> 3u);
    let j = u & 7u;
    let base = b * 24u;
    let qs = vec2<u32>(wword(base + 2u * j), wword(base + 2u * j + 1u));
    let aux = wword(base + 16u + j);
    let db = half_step(seg_half(params.seg1, b), aux >> 28u, 0.5);
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        let point = lattice((qs[i >> 2u] >> (8u * (i & 3u))) & 255u);
        let signs = ksigns((aux >> (7u * (i >> 1u))) & 127u) >> (4u * (i & 1u));
        o[i] = signed4(db * coords(point), signs);
    }
    return o;
}
#endif

#ifdef TYPE_IQ3_S
fn dequant_unit(r: u32, u: u32) -> array<vec4<f32>, 8> {
    // A block is 27 words: qs (low index bits, a byte per 4 weights), qh (the ninth bits, a
    // byte per unit), signs (a bit per weight), scales (a nibble per unit).
    let b = r * (params.units >> 3u) + (u >> 3u);
    let j = u & 7u;
    let base = b * 27u;
    let qs = vec2<u32>(wword(base + 2u * j), wword(base + 2u * j + 1u));
    let qh = wword(base + 16u + (j >> 2u)) >> (8u * (j & 3u));
    let signs = wword(base + 18u + j);
    let sc = (wword(base + 26u) >> (4u * j)) & 15u;
    let db = seg_half(params.seg1, b) * f32(1u + 2u * sc);
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        let index = ((qs[i >> 2u] >> (8u * (i & 3u))) & 255u) | (((qh >> i) & 1u) << 8u);
        o[i] = signed4(db * coords(lattice(index)), signs >> (4u * i));
    }
    return o;
}
#endif

#ifdef IQ1
// Eight IQ1 weights, dl * (point + delta), of point `index` (2-bit fields, stored plus one);
// into o[at], o[at + 1].
fn iq1_point8(o: ptr<function, array<vec4<f32>, 8>>, at: u32, dl: f32, index: u32, delta: f32) {
    let p = half_word(lattice(index >> 1u), index & 1u);
    let lo = vec4<f32>((vec4<u32>(p) >> vec4<u32>(0u, 2u, 4u, 6u)) & vec4<u32>(3u));
    let hi = vec4<f32>((vec4<u32>(p) >> vec4<u32>(8u, 10u, 12u, 14u)) & vec4<u32>(3u));
    (*o)[at] = dl * ((lo - 1.0) + delta);
    (*o)[at + 1u] = dl * ((hi - 1.0) + delta);
}

// The delta: 1/8, negative where `negative` is set.
fn iq1_delta(negative: bool) -> f32 {
    return select(0.125, -0.125, negative);
}
#endif

#ifdef TYPE_IQ1_S
fn dequant_unit(r: u32, u: u32) -> array<vec4<f32>, 8> {
    // A block is 12 words: qs (low index bits, a byte per 8 weights), then a u16 per unit: the
    // top 3 index bits of each point (bits 3k..), the scale (12..15), the delta's sign (15).
    let b = r * (params.units >> 3u) + (u >> 3u);
    let j = u & 7u;
    let base = b * 12u;
    let qs = wword(base + j);
    let qh = half_word(wword(base + 8u + (j >> 1u)), j & 1u);
    let dl = seg_half(params.seg1, b) * f32(2u * ((qh >> 12u) & 7u) + 1u);
    let delta = iq1_delta((qh & 0x8000u) != 0u);
    var o: array<vec4<f32>, 8>;
    for (var k = 0u; k < 4u; k++) {
        let index = ((qs >> (8u * k)) & 255u) | (((qh >> (3u * k)) & 7u) << 8u);
        iq1_point8(&o, 2u * k, dl, index, delta);
    }
    return o;
}
#endif

#ifdef TYPE_IQ1_M
fn dequant_unit(r: u32, u: u32) -> array<vec4<f32>, 8> {
    // A block is 14 words: qs (low index bits, a byte per 8 weights), qh (a nibble per point:
    // its top 3 index bits and the delta's sign), then four u16 scale words (a 3-bit scale per
    // 16 weights at bits 3k..; the f16 d in their top nibbles, word 0's lowest).
    let b = r * (params.units >> 3u) + (u >> 3u);
    let j = u & 7u;
    let base = b * 14u;
    let qs = wword(base + j);
    let qh = half_word(wword(base + 8u + (j >> 1u)), j & 1u);
    let s01 = wword(base + 12u);
    let s23 = wword(base + 13u);
    let d_bits = ((s01 >> 12u) & 0xfu) | ((s01 >> 24u) & 0xf0u) | ((s23 >> 4u) & 0xf00u) | ((s23 >> 16u) & 0xf000u);
    let d = half_of(d_bits, 0u);
    let sc = half_word(select(s01, s23, j >= 4u), (j >> 1u) & 1u) >> (6u * (j & 1u));
    let dl = vec2<f32>(d * f32(2u * (sc & 7u) + 1u), d * f32(2u * ((sc >> 3u) & 7u) + 1u));
    var o: array<vec4<f32>, 8>;
    for (var k = 0u; k < 4u; k++) {
        let nibble = (qh >> (4u * k)) & 15u;
        let index = ((qs >> (8u * k)) & 255u) | ((nibble & 7u) << 8u);
        iq1_point8(&o, 2u * k, dl[k >> 1u], index, iq1_delta((nibble & 8u) != 0u));
    }
    return o;
}
#endif

#ifdef ACTIVATIONS
#ifdef X_GLU
#include "gate.wgsl"
#endif
// Elements k .. k+3 of activation row t (x is f32 [n_tokens][cols]); elements past `cols` (the
// zero padding of F32/F16 rows) read as 0.
fn x4(t: u32, k: u32) -> vec4<f32> {
#ifdef X_VEC4
    var v = x[(t * params.cols + k) >> 2u];
#ifdef X_GLU
    let up = x_up[(t * params.cols + k) >> 2u];
#endif
#else
    let e = t * params.cols + k;
    var v = vec4<f32>(x[e], x[e + 1u], x[e + 2u], x[e + 3u]);
#ifdef X_GLU
    let up = vec4<f32>(x_up[e], x_up[e + 1u], x_up[e + 2u], x_up[e + 3u]);
#endif
#endif
#ifdef X_GLU
    // The gated product, as the CPU reference writes it: gate(gate) · up.
    v = gate4(v) * up;
#endif
#ifdef XMASK
    v = select(vec4<f32>(0.0), v, vec4<u32>(k) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(params.cols));
#endif
    return v;
}
#endif

#ifdef INT_DOT
// Packed-integer products (the `packed_4x8_integer_dot_product` language feature): the
// activations come quantized to 8 bits by quantize.wgsl, the weight's integers are packed four
// to a word as they are stored, and `dot4I8Packed` multiplies four pairs and adds them in one
// instruction. A unit's product is exact in integers, with floating point only for the scales:
// per half of a unit, Σ w·x = a · d_x · Σ q_w·q_x + b · d_x · Σ q_x, where a is the weight's
// scale and b its offset or min (quantize.wgsl stores d_x · Σ q_x for each half). This is how
// llama.cpp's CPU and GPU backends multiply quantized weights; it rounds the activations to 8
// bits, which moves log-probabilities by a few hundredths of a nat against the f32 path.

// A unit of quantized activations: element 4i+k is byte k (signed) of word i of q (q[0..3]:
// elements 0..15, q[4..7]: 16..31); x ≈ d · q; s is d · Σ q over each half.
struct XUnit {
    q: array<u32, 8>,
    d: f32,
    s: vec2<f32>,
}

// Unit u of token t: three vec4 words (quantize.wgsl's layout).
fn x_unit(t: u32, u: u32) -> XUnit {
    let i = 3u * (t * params.units + u);
    let a = xq[i];
    let b = xq[i + 1u];
    let c = xq[i + 2u];
    return XUnit(array<u32, 8>(a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w), bitcast<f32>(c.x), bitcast<vec2<f32>>(c.yz));
}

// A unit of weights as integers: element 4i+k is byte k of lo[i] (elements 0..15) or hi[i]
// (16..31), each 0..63 or signed; a (scale) and b (offset or min) per half.
struct WUnit {
    lo: array<u32, 4>,
    hi: array<u32, 4>,
    a: vec2<f32>,
    b: vec2<f32>,
}

// The unit's product: decoded once (w_unit), it serves every token of a step.
fn idot(w: WUnit, x: XUnit) -> f32 {
    // Written out: constant indices keep the arrays in registers.
    let s = vec2<i32>(
        dot4I8Packed(w.lo[0], x.q[0]) + dot4I8Packed(w.lo[1], x.q[1]) + dot4I8Packed(w.lo[2], x.q[2]) + dot4I8Packed(w.lo[3], x.q[3]),
        dot4I8Packed(w.hi[0], x.q[4]) + dot4I8Packed(w.hi[1], x.q[5]) + dot4I8Packed(w.hi[2], x.q[6]) + dot4I8Packed(w.hi[3], x.q[7]),
    );
    return x.d * dot(w.a, vec2<f32>(s)) + dot(w.b, x.s);
}

// The low bits `shift .. shift+4` of each byte of `v` as a packed word (byte k → byte k).
fn nibbles(v: u32, shift: u32) -> u32 {
    return (v >> shift) & 0x0F0F0F0Fu;
}

// `nibbles` of each word of a vec4 (elements 0..15 or 16..31 of a 4-bit unit).
fn nibbles4(q: vec4<u32>, shift: u32) -> array<u32, 4> {
    return array<u32, 4>(nibbles(q.x, shift), nibbles(q.y, shift), nibbles(q.z, shift), nibbles(q.w, shift));
}

// Bits shift .. shift+3 of `v` (consecutive bits, the Q5 legacy high bits) placed at bit 4 of
// bytes 0..3.
fn fifth_bits(v: u32, shift: u32) -> u32 {
    return pack4xU8(bits4(v, shift) << vec4<u32>(4u));
}

// A legacy 5-bit unit (Q5_0, Q5_1): element e's low nibble from `q`, its fifth bit bit e of `qh`.
fn q5_unit(q: vec4<u32>, qh: u32, a: f32, b: f32) -> WUnit {
    var o = WUnit(array<u32, 4>(), array<u32, 4>(), vec2<f32>(a), vec2<f32>(b));
    for (var i = 0u; i < 4u; i++) {
        o.lo[i] = nibbles(q[i], 0u) | fifth_bits(qh, 4u * i);
        o.hi[i] = nibbles(q[i], 4u) | fifth_bits(qh, 16u + 4u * i);
    }
    return o;
}

// One `w_unit` per format, beside its `dequant_unit` above in spirit: the same bits, kept as
// integers.
#ifdef TYPE_Q4_0
fn w_unit(r: u32, u: u32) -> WUnit {
    let b = r * params.units + u;
    let q = w[b];
    let d = seg_half(params.seg1, b);
    // Stored values are q + 8.
    return WUnit(nibbles4(q, 0u), nibbles4(q, 4u), vec2<f32>(d), vec2<f32>(-8.0 * d));
}
#endif

#ifdef TYPE_Q4_1
fn w_unit(r: u32, u: u32) -> WUnit {
    let b = r * params.units + u;
    let q = w[b];
    let dm = halves(wword(params.seg1 + b));
    return WUnit(nibbles4(q, 0u), nibbles4(q, 4u), vec2<f32>(dm.x), vec2<f32>(dm.y));
}
#endif

#ifdef TYPE_Q5_0
fn w_unit(r: u32, u: u32) -> WUnit {
    let b = r * params.units + u;
    let d = seg_half(params.seg2, b);
    // Stored values are q + 16.
    return q5_unit(w[b], wword(params.seg1 + b), d, -16.0 * d);
}
#endif

#ifdef TYPE_Q5_1
fn w_unit(r: u32, u: u32) -> WUnit {
    let b = r * params.units + u;
    let dm = halves(wword(params.seg2 + b));
    return q5_unit(w[b], wword(params.seg1 + b), dm.x, dm.y);
}
#endif

#ifdef TYPE_Q8_0
fn w_unit(r: u32, u: u32) -> WUnit {
    let b = r * params.units + u;
    let q0 = w[2u * b];
    let q1 = w[2u * b + 1u];
    let d = seg_half(params.seg1, b);
    return WUnit(array<u32, 4>(q0.x, q0.y, q0.z, q0.w), array<u32, 4>(q1.x, q1.y, q1.z, q1.w), vec2<f32>(d), vec2<f32>(0.0));
}
#endif

#ifdef TYPE_Q4_K
fn w_unit(r: u32, u: u32) -> WUnit {
    let b = r * (params.units >> 3u) + (u >> 3u);
    let j = u & 7u;
    let base = b * 9u;
    let h = w[base];
    let dd = halves(h.x);
    let sm = kscale_min(h, j);
    let q0 = w[base + 1u + (j >> 1u) * 2u];
    let q1 = w[base + 2u + (j >> 1u) * 2u];
    let sh = (j & 1u) * 4u;
    return WUnit(nibbles4(q0, sh), nibbles4(q1, sh), vec2<f32>(dd.x * sm.x), vec2<f32>(-dd.y * sm.y));
}
#endif

#ifdef TYPE_Q5_K
fn w_unit(r: u32, u: u32) -> WUnit {
    let b = r * (params.units >> 3u) + (u >> 3u);
    let j = u & 7u;
    let base = b * 11u;
    let h = w[base];
    let dd = halves(h.x);
    let sm = kscale_min(h, j);
    let qh0 = w[base + 1u];
    let qh1 = w[base + 2u];
    let q0 = w[base + 3u + (j >> 1u) * 2u];
    let q1 = w[base + 4u + (j >> 1u) * 2u];
    let sh = (j & 1u) * 4u;
    var o = WUnit(array<u32, 4>(), array<u32, 4>(), vec2<f32>(dd.x * sm.x), vec2<f32>(-dd.y * sm.y));
    for (var i = 0u; i < 4u; i++) {
        // Bit j of each qh byte is the fifth bit of that element.
        o.lo[i] = nibbles(q0[i], sh) | (((qh0[i] >> j) & 0x01010101u) << 4u);
        o.hi[i] = nibbles(q1[i], sh) | (((qh1[i] >> j) & 0x01010101u) << 4u);
    }
    return o;
}
#endif

#ifdef TYPE_Q6_K
fn w_unit(r: u32, u: u32) -> WUnit {
    // The layout of dequant_unit's Q6_K; each half of the unit has its own scale.
    let b = r * (params.units >> 3u) + (u >> 3u);
    let j = u & 7u;
    let base = b * 13u;
    let ql0 = w[base + (j >> 2u) * 4u + (j & 1u) * 2u];
    let ql1 = w[base + (j >> 2u) * 4u + (j & 1u) * 2u + 1u];
    let qh0 = w[base + 8u + (j >> 2u) * 2u];
    let qh1 = w[base + 9u + (j >> 2u) * 2u];
    let sw = w[base + 12u][j >> 1u] >> ((j & 1u) * 16u);
    let d = seg_half(params.seg1, b);
    let dl = vec2<f32>(d * f32(bitcast<i32>(sw << 24u) >> 24u), d * f32(bitcast<i32>(sw << 16u) >> 24u));
    let sl = ((j >> 1u) & 1u) * 4u;
    let sh = (j & 3u) * 2u;
    // Stored values are q + 32 (0..63, so they fit a signed byte as they are).
    var o = WUnit(array<u32, 4>(), array<u32, 4>(), dl, -32.0 * dl);
    for (var i = 0u; i < 4u; i++) {
        o.lo[i] = nibbles(ql0[i], sl) | (((qh0[i] >> sh) & 0x03030303u) << 4u);
        o.hi[i] = nibbles(ql1[i], sl) | (((qh1[i] >> sh) & 0x03030303u) << 4u);
    }
    return o;
}
#endif
#endif
