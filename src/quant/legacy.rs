//! The original ggml block formats: 32 elements per block, one f16 scale `d` (and for the `_1`
//! variants an f16 offset `m`), 4, 5 or 8 bits per element.
//!
//! The arithmetic mirrors gguf-py's numpy code operation by operation, in f32, so that results
//! are bit-identical: `d * q` for the symmetric formats, `(d * q) + m` for the `_1` formats.

use super::float::f16_le;
use super::packed;

/// Elements per block.
pub(super) const QK: usize = 32;

/// The 4-bit values of a block: element `j` is the low nibble of byte `j`, element `j + 16` the
/// high nibble.
fn nibbles(qs: &[u8]) -> [u8; QK] {
    std::array::from_fn(|j| packed::<4, 16>(qs, j))
}

/// The 5-bit values of a Q5 block: the nibbles plus bit `j` of the little-endian `qh` word as
/// bit 4 of element `j`.
fn nibbles_5bit(qh: &[u8], qs: &[u8]) -> [u8; QK] {
    let high = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    std::array::from_fn(|j| packed::<4, 16>(qs, j) | ((((high >> j) & 1) as u8) << 4))
}

/// Symmetric quantization: `d * (q - offset)`, the subtraction done in integers as numpy does.
fn scale_signed(d: f32, q: &[u8; QK], offset: i8, out: &mut [f32; QK]) {
    for (o, &q) in out.iter_mut().zip(q) {
        *o = d * f32::from(q as i8 - offset);
    }
}

/// Asymmetric quantization: `(d * q) + m`.
fn scale_offset(d: f32, m: f32, q: &[u8; QK], out: &mut [f32; QK]) {
    for (o, &q) in out.iter_mut().zip(q) {
        *o = d * f32::from(q) + m;
    }
}

/// Q4_0 (18 bytes): d: f16, qs: [u8; 16].
pub(super) fn q4_0(b: &[u8; 18], out: &mut [f32; QK]) {
    scale_signed(f16_le(b, 0), &nibbles(&b[2..]), 8, out);
}

/// Q4_1 (20 bytes): d: f16, m: f16, qs: [u8; 16].
pub(super) fn q4_1(b: &[u8; 20], out: &mut [f32; QK]) {
    scale_offset(f16_le(b, 0), f16_le(b, 2), &nibbles(&b[4..]), out);
}

/// Q5_0 (22 bytes): d: f16, qh: [u8; 4], qs: [u8; 16].
pub(super) fn q5_0(b: &[u8; 22], out: &mut [f32; QK]) {
    scale_signed(f16_le(b, 0), &nibbles_5bit(&b[2..6], &b[6..]), 16, out);
}

/// Q5_1 (24 bytes): d: f16, m: f16, qh: [u8; 4], qs: [u8; 16].
pub(super) fn q5_1(b: &[u8; 24], out: &mut [f32; QK]) {
    scale_offset(
        f16_le(b, 0),
        f16_le(b, 2),
        &nibbles_5bit(&b[4..8], &b[8..]),
        out,
    );
}

/// Q8_0 (34 bytes): d: f16, qs: [i8; 32].
pub(super) fn q8_0(b: &[u8; 34], out: &mut [f32; QK]) {
    let d = f16_le(b, 0);
    for (o, &q) in out.iter_mut().zip(&b[2..]) {
        *o = f32::from(q as i8) * d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: [u8; 2] = [0x00, 0x3c]; // f16 1.0
    const HALF: [u8; 2] = [0x00, 0x38]; // f16 0.5

    #[test]
    fn q4_0_nibble_order_and_offset() {
        let mut b = [0u8; 18];
        b[..2].copy_from_slice(&ONE);
        b[2] = 0xf1; // element 0 = 1, element 16 = 15
        let mut out = [0f32; QK];
        q4_0(&b, &mut out);
        assert_eq!(out[0], -7.0);
        assert_eq!(out[16], 7.0);
        assert_eq!(out[1], -8.0);
    }

    #[test]
    fn q5_1_high_bits_and_min() {
        let mut b = [0u8; 24];
        b[..2].copy_from_slice(&ONE);
        b[2..4].copy_from_slice(&HALF);
        b[4..8].copy_from_slice(&(1u32 << 17 | 1).to_le_bytes());
        b[8] = 0x21; // element 0 = 1, element 16 = 2
        let mut out = [0f32; QK];
        q5_1(&b, &mut out);
        assert_eq!(out[0], 17.5);
        assert_eq!(out[16], 2.5);
        assert_eq!(out[17], 16.5);
        assert_eq!(out[1], 0.5);
    }

    #[test]
    fn q8_0_signed() {
        let mut b = [0u8; 34];
        b[..2].copy_from_slice(&HALF);
        b[2] = 0x80;
        b[33] = 0x7f;
        let mut out = [0f32; QK];
        q8_0(&b, &mut out);
        assert_eq!((out[0], out[31]), (-64.0, 63.5));
    }
}
