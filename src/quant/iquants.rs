//! The "i-quants" (importance-matrix quantizations): values are indices into fixed non-linear
//! tables rather than evenly spaced integers.
//!
//! IQ4_NL and IQ4_XS map each 4-bit index through [`IQ4_VALUES`]; IQ4_NL is a 32-element block
//! with one f16 scale, IQ4_XS a 256-element super-block whose eight 32-element sub-blocks each
//! have a 6-bit scale (biased by 32) relative to the f16 `d`. IQ3_S indexes 4 weights at a time
//! into a lattice of 512 points ([`IQ3_S_GRID`]), with a sign bit per weight. As elsewhere, the
//! f32 operations follow gguf-py's: `d * value`, for IQ4_XS `(d * (scale - 32)) * value`, for
//! IQ3_S `(d * (1 + 2 * scale)) * point`, negated by its sign.

use super::float::f16_le;
use super::iq_grids::IQ3_S_GRID;
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
