//! The k-quants: 256-element super-blocks split into 16- or 32-element sub-blocks, each with a
//! small integer scale (and for Q2_K, Q4_K, Q5_K a min) relative to the super-block's f16 `d`
//! (and `dmin`).
//!
//! The order of f32 operations follows gguf-py, which first forms the sub-block factors
//! `d * scale` and `dmin * min` and then computes `factor * q - min_factor`; any other grouping
//! rounds differently.

use super::float::f16_le;
use super::{packed, QK_K};

/// A sub-block's 6-bit scale and min in Q4_K/Q5_K: 8 pairs packed into 12 bytes. Sub-blocks 0..4
/// use the low 6 bits of bytes `j` and `j + 4`; sub-blocks 4..8 take their low 4 bits from byte
/// `j + 4` and their top 2 bits from the spare high bits of the first 8 bytes.
fn scale_min_k4(s: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (s[j] & 0x3f, s[j + 4] & 0x3f)
    } else {
        (
            (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// Q2_K (84 bytes): scales: [u8; 16] (low nibble scale, high nibble min, per 16 elements),
/// qs: [u8; 64] (2 bits each), d: f16, dmin: f16.
pub(super) fn q2_k(b: &[u8; 84], out: &mut [f32; QK_K]) {
    let (scales, qs) = (&b[..16], &b[16..80]);
    let (d, dmin) = (f16_le(b, 80), f16_le(b, 82));
    for (g, (sub, &sc)) in out.chunks_exact_mut(16).zip(scales).enumerate() {
        let dl = d * f32::from(sc & 0x0f);
        let ml = dmin * f32::from(sc >> 4);
        for (k, o) in sub.iter_mut().enumerate() {
            *o = dl * f32::from(packed::<2, 32>(qs, g * 16 + k)) - ml;
        }
    }
}

/// Q3_K (110 bytes): hmask: [u8; 32] (bit 2 of each value, inverted), qs: [u8; 64] (bits 0-1),
/// scales: [u8; 12] (16 6-bit scales biased by 32), d: f16.
pub(super) fn q3_k(b: &[u8; 110], out: &mut [f32; QK_K]) {
    let (hmask, qs, scales) = (&b[..32], &b[32..96], &b[96..108]);
    let d = f16_le(b, 108);
    for (g, sub) in out.chunks_exact_mut(16).enumerate() {
        // Low 4 bits of the 16 scales are nibbles of bytes 0..8, the top 2 bits crumbs of 8..12.
        let sc = packed::<4, 8>(&scales[..8], g) | (packed::<2, 4>(&scales[8..], g) << 4);
        let dl = d * f32::from(sc as i8 - 32);
        for (k, o) in sub.iter_mut().enumerate() {
            let i = g * 16 + k;
            // A clear hmask bit means the value is 4 lower.
            let q =
                packed::<2, 32>(qs, i) as i8 - if packed::<1, 32>(hmask, i) == 0 { 4 } else { 0 };
            *o = dl * f32::from(q);
        }
    }
}

/// Q4_K and Q5_K share everything but the fifth bit: d: f16, dmin: f16, scales: [u8; 12]
/// (see [`scale_min_k4`]), then `high` (Q5_K's qh: [u8; 32], empty for Q4_K) and qs: [u8; 128].
fn q4_5_k(b: &[u8], high: Option<&[u8]>, qs: &[u8], out: &mut [f32; QK_K]) {
    let (d, dmin) = (f16_le(b, 0), f16_le(b, 2));
    let scales = &b[4..16];
    for (g, sub) in out.chunks_exact_mut(32).enumerate() {
        let (sc, m) = scale_min_k4(scales, g);
        let dl = d * f32::from(sc);
        let ml = dmin * f32::from(m);
        for (k, o) in sub.iter_mut().enumerate() {
            let i = g * 32 + k;
            let q = packed::<4, 32>(qs, i) | high.map_or(0, |qh| packed::<1, 32>(qh, i) << 4);
            *o = dl * f32::from(q) - ml;
        }
    }
}

/// Q4_K (144 bytes): d: f16, dmin: f16, scales: [u8; 12], qs: [u8; 128].
pub(super) fn q4_k(b: &[u8; 144], out: &mut [f32; QK_K]) {
    q4_5_k(b, None, &b[16..], out);
}

/// Q5_K (176 bytes): d: f16, dmin: f16, scales: [u8; 12], qh: [u8; 32], qs: [u8; 128].
pub(super) fn q5_k(b: &[u8; 176], out: &mut [f32; QK_K]) {
    q4_5_k(b, Some(&b[16..48]), &b[48..], out);
}

/// Q6_K (210 bytes): ql: [u8; 128] (bits 0-3), qh: [u8; 64] (bits 4-5), scales: [i8; 16],
/// d: f16. Values are biased by 32.
pub(super) fn q6_k(b: &[u8; 210], out: &mut [f32; QK_K]) {
    let (ql, qh, scales) = (&b[..128], &b[128..192], &b[192..208]);
    let d = f16_le(b, 208);
    for (g, (sub, &sc)) in out.chunks_exact_mut(16).zip(scales).enumerate() {
        let dl = d * f32::from(sc as i8);
        for (k, o) in sub.iter_mut().enumerate() {
            let i = g * 16 + k;
            let q = (packed::<4, 64>(ql, i) | (packed::<2, 32>(qh, i) << 4)) as i8 - 32;
            *o = dl * f32::from(q);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: [u8; 2] = [0x00, 0x3c];

    #[test]
    fn scale_min_k4_unpacks_high_sub_blocks() {
        let mut s = [0u8; 12];
        s[0] = 0b11_000001; // scale 0 = 1, top bits of scale 4 = 3
        s[4] = 0b10_000010; // min 0 = 2, top bits of min 4 = 2
        s[8] = 0x5a; // scale 4 low = 0xa, min 4 low = 0x5
        assert_eq!(scale_min_k4(&s, 0), (1, 2));
        assert_eq!(scale_min_k4(&s, 4), (0x3a, 0x25));
    }

    #[test]
    fn q3_k_hmask_and_scale_bias() {
        let mut b = [0u8; 110];
        b[108..].copy_from_slice(&ONE);
        // Every scale 33 (→ 1): low nibbles 1, top crumbs 2.
        b[96..104].fill(0x11);
        b[104..108].fill(0xaa);
        b[32] = 0b11; // element 0: low bits 3
        b[0] = 0b10; // hmask bit set for element 32 only
        let mut out = [0f32; QK_K];
        q3_k(&b, &mut out);
        assert_eq!(out[0], -1.0); // 3 - 4
        assert_eq!(out[32], 0.0); // 0, bit set
        assert_eq!(out[1], -4.0);
    }

    #[test]
    fn q6_k_layout() {
        let mut b = [0u8; 210];
        b[208..].copy_from_slice(&ONE);
        b[192..208].fill(2);
        b[0] = 0x0f; // element 0 low bits 15
        b[128] = 0b01; // element 0 high bits 1 → 31
        b[64] = 0x30; // element 128 + 64 = 192: high nibble of ql[64] is 3
        let mut out = [0f32; QK_K];
        q6_k(&b, &mut out);
        assert_eq!(out[0], 2.0 * (31 - 32) as f32);
        assert_eq!(out[192], 2.0 * (3 - 32) as f32);
    }
}
