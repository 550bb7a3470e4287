//! The "i-quants" (importance-matrix quantizations): values are indices into fixed non-linear
//! tables rather than evenly spaced integers.
//!
//! IQ4_NL and IQ4_XS map each 4-bit index through [`IQ4_VALUES`]; IQ4_NL is a 32-element block
//! with one f16 scale, IQ4_XS a 256-element super-block whose eight 32-element sub-blocks each
//! have a 6-bit scale (biased by 32) relative to the f16 `d`.
//!
//! The lattice types index groups of weights into fixed tables of points (src/quant/iq_grids.rs):
//! IQ3_XXS and IQ3_S 4 weights per index, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S and IQ1_M 8. The IQ2 and
//! IQ3 points are positive, each weight has a sign (stored bit by bit, or as a 7-bit index into
//! [`KSIGNS`] for 8 weights); IQ1 points are -1, 0 or 1, shifted by a signed delta of 1/8.
//!
//! As elsewhere, the f32 operations follow gguf-py's, in its order: `d * value`, for IQ4_XS
//! `(d * (scale - 32)) * value`, for IQ3_S `(d * (1 + 2 * scale)) * point`, for IQ2 and IQ3_XXS
//! `((d * (0.5 + scale)) * k) * point` (k = 1/4 or 1/2), for IQ1 `(d * (2 * scale + 1)) *
//! (point + delta)`. A sign is a multiplication by ±1, which is exact.

use super::float::f16_le;
use super::iq_grids::{IQ1_S_GRID, IQ2_S_GRID, IQ2_XS_GRID, IQ2_XXS_GRID, IQ3_S_GRID, IQ3_XXS_GRID, KSIGNS};
use super::{packed, QK_K};

/// The 16 non-linear levels of IQ4_NL and IQ4_XS (ggml's `kvalues_iq4nl`): denser near zero,
/// where trained weights cluster.
pub const IQ4_VALUES: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// `scale * IQ4_VALUES[q]` for the 32 nibbles of `qs` (16 bytes: element `j` is the low nibble of
/// byte `j`, element `j + 16` the high nibble, as in Q4_0).
fn nonlinear_32(scale: f32, qs: &[u8], out: &mut [f32]) {
    for (j, o) in out.iter_mut().enumerate() {
        *o = scale * f32::from(IQ4_VALUES[packed::<4, 16>(qs, j) as usize]);
    }
}

/// IQ4_NL (18 bytes): d: f16, qs: [u8; 16].
pub(super) fn iq4_nl(b: &[u8; 18], out: &mut [f32; 32]) {
    nonlinear_32(f16_le(b, 0), &b[2..], out);
}

/// IQ4_XS (136 bytes): d: f16, scales_h: u16 (the top 2 bits of sub-block `i`'s scale at bits
/// 2i..2i+2), scales_l: [u8; 4] (the low 4 bits, two sub-blocks per byte, low nibble first),
/// qs: [u8; 128] (16 bytes per sub-block, laid out as IQ4_NL's).
pub(super) fn iq4_xs(b: &[u8; 136], out: &mut [f32; QK_K]) {
    let d = f16_le(b, 0);
    let scales_h = u16::from_le_bytes([b[2], b[3]]);
    let (scales_l, qs) = (&b[4..8], &b[8..]);
    for (i, sub) in out.chunks_exact_mut(32).enumerate() {
        let low = (scales_l[i / 2] >> (4 * (i % 2))) & 0x0f;
        let high = ((scales_h >> (2 * i)) & 3) as u8;
        let scale = (low | (high << 4)) as i8 - 32;
        nonlinear_32(d * f32::from(scale), &qs[16 * i..16 * i + 16], sub);
    }
}

/// IQ3_S (110 bytes): d: f16, qs: [u8; 64] (the low 8 bits of 64 grid indices, one per 4
/// weights), qh: [u8; 8] (their ninth bits, index `m` at bit m%8 of byte m/8), signs: [u8; 32]
/// (weight `i` negative where bit i%8 of byte i/8 is set), scales: [u8; 4] (a 4-bit scale per 32
/// weights, low nibble first).
pub(super) fn iq3_s(b: &[u8; 110], out: &mut [f32; QK_K]) {
    let d = f16_le(b, 0);
    let (qs, qh, signs, scales) = (&b[2..66], &b[66..74], &b[74..106], &b[106..110]);
    for (j, sub) in out.chunks_exact_mut(32).enumerate() {
        let scale = (scales[j / 2] >> (4 * (j % 2))) & 0x0f;
        let db = d * f32::from(1 + 2 * scale);
        for (e, o) in sub.iter_mut().enumerate() {
            let (i, m) = (32 * j + e, 8 * j + e / 4);
            let index = usize::from(qs[m]) | (usize::from((qh[m / 8] >> (m % 8)) & 1) << 8);
            let point = (IQ3_S_GRID[index] >> (8 * (e % 4))) as u8;
            let v = db * f32::from(point);
            *o = if (signs[i / 8] >> (i % 8)) & 1 == 1 { -v } else { v };
        }
    }
}

/// Byte `k` of a table entry: point coordinate `k`.
fn coord(entry: u64, k: usize) -> f32 {
    f32::from((entry >> (8 * k)) as u8)
}

/// `v`, negative where bit `k` of `signs` is set.
fn signed(v: f32, signs: u8, k: usize) -> f32 {
    if (signs >> k) & 1 == 1 {
        -v
    } else {
        v
    }
}

/// Eight weights: `db` times the point `entry` of an 8-value lattice, signed by `signs`.
fn point8(db: f32, entry: u64, signs: u8, out: &mut [f32]) {
    for (k, o) in out.iter_mut().enumerate() {
        *o = signed(db * coord(entry, k), signs, k);
    }
}

/// The IQ2/IQ3_XXS scale: `(d * (0.5 + scale)) * k`.
fn half_step(d: f32, scale: u32, k: f32) -> f32 {
    d * (0.5 + scale as f32) * k
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// IQ2_XXS (66 bytes): d: f16, then per 32 weights two u32 words: the first holds four grid
/// indices (a byte per 8 weights), the second four 7-bit [`KSIGNS`] indices (bits 7k..7k+7) and
/// a 4-bit scale (bits 28..32).
pub(super) fn iq2_xxs(b: &[u8; 66], out: &mut [f32; QK_K]) {
    let d = f16_le(b, 0);
    for (g, group) in out.chunks_exact_mut(32).enumerate() {
        let (grid, aux) = (u32_at(b, 2 + 8 * g), u32_at(b, 6 + 8 * g));
        let db = half_step(d, aux >> 28, 0.25);
        for (k, eight) in group.chunks_exact_mut(8).enumerate() {
            let entry = IQ2_XXS_GRID[((grid >> (8 * k)) & 0xff) as usize];
            point8(db, entry, KSIGNS[((aux >> (7 * k)) & 0x7f) as usize], eight);
        }
    }
}

/// IQ2_XS (74 bytes): d: f16, qs: [u16; 32] (per 8 weights: a 9-bit grid index and a 7-bit
/// [`KSIGNS`] index above it), scales: [u8; 8] (a 4-bit scale per 16 weights, low nibble first).
pub(super) fn iq2_xs(b: &[u8; 74], out: &mut [f32; QK_K]) {
    let d = f16_le(b, 0);
    for (m, eight) in out.chunks_exact_mut(8).enumerate() {
        let q = u16_at(b, 2 + 2 * m);
        let scale = (b[66 + m / 4] >> (4 * ((m / 2) % 2))) & 0x0f;
        let db = half_step(d, scale.into(), 0.25);
        point8(db, IQ2_XS_GRID[usize::from(q & 511)], KSIGNS[usize::from(q >> 9)], eight);
    }
}

/// IQ2_S (82 bytes): d: f16, qs: [u8; 32] (the low 8 bits of a grid index per 8 weights),
/// signs: [u8; 32] (a bit per weight), qh: [u8; 8] (the indices' top 2 bits, four per byte),
/// scales: [u8; 8] (a 4-bit scale per 16 weights, low nibble first).
pub(super) fn iq2_s(b: &[u8; 82], out: &mut [f32; QK_K]) {
    let d = f16_le(b, 0);
    let (qs, signs, qh, scales) = (&b[2..34], &b[34..66], &b[66..74], &b[74..82]);
    for (m, eight) in out.chunks_exact_mut(8).enumerate() {
        let index = usize::from(qs[m]) | (usize::from((qh[m / 4] >> (2 * (m % 4))) & 3) << 8);
        let scale = (scales[m / 4] >> (4 * ((m / 2) % 2))) & 0x0f;
        point8(half_step(d, scale.into(), 0.25), IQ2_S_GRID[index], signs[m], eight);
    }
}

/// IQ3_XXS (98 bytes): d: f16, qs: [u8; 64] (a grid index per 4 weights), then per 32 weights
/// a u32 of four 7-bit [`KSIGNS`] indices (one per 8 weights) and a 4-bit scale (bits 28..32).
pub(super) fn iq3_xxs(b: &[u8; 98], out: &mut [f32; QK_K]) {
    let d = f16_le(b, 0);
    let qs = &b[2..66];
    for (g, group) in out.chunks_exact_mut(32).enumerate() {
        let aux = u32_at(b, 66 + 4 * g);
        let db = half_step(d, aux >> 28, 0.5);
        for (e, o) in group.iter_mut().enumerate() {
            let entry = IQ3_XXS_GRID[usize::from(qs[8 * g + e / 4])];
            let signs = KSIGNS[((aux >> (7 * (e / 8))) & 0x7f) as usize];
            *o = signed(db * coord(entry.into(), e % 4), signs, e % 8);
        }
    }
}

/// The IQ1 delta: 1/8, negative where its bit is set.
fn iq1_delta(negative: bool) -> f32 {
    if negative {
        -0.125
    } else {
        0.125
    }
}

/// Eight IQ1 weights: `dl * (point + delta)` for the point `entry` (stored plus one).
fn iq1_point8(dl: f32, entry: u64, delta: f32, out: &mut [f32]) {
    for (k, o) in out.iter_mut().enumerate() {
        *o = dl * ((coord(entry, k) - 1.0) + delta);
    }
}

/// IQ1_S (50 bytes): d: f16, qs: [u8; 32] (the low 8 bits of a grid index per 8 weights), qh:
/// [u16; 8] (per 32 weights: the four indices' top 3 bits at bits 3k..3k+3, a 3-bit scale at
/// 12..15, the delta's sign at 15).
pub(super) fn iq1_s(b: &[u8; 50], out: &mut [f32; QK_K]) {
    let d = f16_le(b, 0);
    for (m, eight) in out.chunks_exact_mut(8).enumerate() {
        let qh = u16_at(b, 34 + 2 * (m / 4));
        let index = usize::from(b[2 + m]) | (usize::from((qh >> (3 * (m % 4))) & 7) << 8);
        let dl = d * f32::from(2 * ((qh >> 12) & 7) + 1);
        iq1_point8(dl, IQ1_S_GRID[index], iq1_delta(qh & 0x8000 != 0), eight);
    }
}

/// IQ1_M (56 bytes): qs: [u8; 32] (as IQ1_S), qh: [u8; 16] (a nibble per 8 weights, low
/// first: the index's top 3 bits and the delta's sign), scales: [u16; 4] (a 3-bit scale per 16
/// weights, four per word at bits 3k..3k+3; the f16 `d` in the words' top nibbles, word 0's
/// lowest).
pub(super) fn iq1_m(b: &[u8; 56], out: &mut [f32; QK_K]) {
    let sc: [u16; 4] = std::array::from_fn(|i| u16_at(b, 48 + 2 * i));
    let d_bits = (sc[0] >> 12) | ((sc[1] >> 12) << 4) | ((sc[2] >> 12) << 8) | (sc[3] & 0xf000);
    let d = half::f16::from_bits(d_bits).to_f32();
    for (m, eight) in out.chunks_exact_mut(8).enumerate() {
        let nibble = (b[32 + m / 2] >> (4 * (m % 2))) & 0x0f;
        let index = usize::from(b[m]) | (usize::from(nibble & 7) << 8);
        let s = m / 2;
        let dl = d * f32::from(2 * ((sc[s / 4] >> (3 * (s % 4))) & 7) + 1);
        iq1_point8(dl, IQ1_S_GRID[index], iq1_delta(nibble & 8 != 0), eight);
    }
}
