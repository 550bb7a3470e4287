//! Unquantized element types (F32, F16, BF16), and the f16 → f32 conversion every block format
//! uses for its scales.
//!
//! gguf-py converts with numpy, which keeps NaN payloads bit for bit: a signaling f16 NaN stays
//! signaling, and BF16 is a plain 16-bit shift. The `half` crate instead sets the quiet bit on
//! every NaN (both in software and with the F16C instruction), so NaNs are handled here and only
//! the other values go through `half`.

use half::f16;

/// Widens f16 bits to f32 exactly as numpy's `astype(np.float32)` does.
#[inline]
pub(super) fn f16_to_f32(bits: u16) -> f32 {
    let is_nan = bits & 0x7c00 == 0x7c00 && bits & 0x03ff != 0;
    if is_nan {
        let sign = u32::from(bits & 0x8000) << 16;
        let payload = u32::from(bits & 0x03ff) << 13;
        f32::from_bits(sign | 0x7f80_0000 | payload)
    } else {
        f16::from_bits(bits).to_f32()
    }
}

/// The little-endian f16 at `bytes[at..at + 2]`, widened to f32.
#[inline]
pub(super) fn f16_le(bytes: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

/// BF16 is the top half of an f32; widening is a shift, NaN payloads included.
#[inline]
pub(super) fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// `data` holds exactly `out.len()` little-endian f32 values.
pub(super) fn f32_into(data: &[u8], out: &mut [f32]) {
    for (o, b) in out.iter_mut().zip(data.chunks_exact(4)) {
        *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

/// `data` holds exactly `out.len()` little-endian f16 values.
pub(super) fn f16_into(data: &[u8], out: &mut [f32]) {
    for (o, b) in out.iter_mut().zip(data.chunks_exact(2)) {
        *o = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
    }
}

/// `data` holds exactly `out.len()` little-endian bf16 values.
pub(super) fn bf16_into(data: &[u8], out: &mut [f32]) {
    for (o, b) in out.iter_mut().zip(data.chunks_exact(2)) {
        *o = bf16_to_f32(u16::from_le_bytes([b[0], b[1]]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_matches_numpy_bits() {
        // Expected values from numpy 2.4: np.array(x, np.uint16).view(np.float16).astype(np.float32).
        let cases: [(u16, u32); 9] = [
            (0x7c01, 0x7f80_2000), // signaling NaN stays signaling
            (0xfc01, 0xff80_2000),
            (0x7e01, 0x7fc0_2000),
            (0x7c00, 0x7f80_0000),
            (0x0001, 0x3380_0000), // smallest subnormal
            (0x8001, 0xb380_0000),
            (0x03ff, 0x387f_c000), // largest subnormal
            (0x8000, 0x8000_0000),
            (0x3c00, 0x3f80_0000),
        ];
        for (h, f) in cases {
            assert_eq!(f16_to_f32(h).to_bits(), f, "f16 bits {h:#06x}");
        }
    }

    #[test]
    fn bf16_keeps_nan_payload() {
        assert_eq!(bf16_to_f32(0x7f81).to_bits(), 0x7f81_0000);
        assert_eq!(bf16_to_f32(0xbf80), -1.0);
    }
}
