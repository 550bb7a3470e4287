//! Quantized weight formats: type geometry and CPU dequantization, bit-exact with ggml/gguf-py.
//!
//! The reference is `gguf.quants.dequantize` from gguf-py (the `gguf` package on PyPI), which
//! does its arithmetic in numpy float32. Each format here repeats that arithmetic operation by
//! operation, so outputs match bit for bit (tests/quant.rs checks real tensors of every type).
//! Layouts live with their formats: `float.rs` (F32, F16, BF16), `legacy.rs` (32-element blocks),
//! `kquants.rs` (256-element super-blocks), `iquants.rs` (indices into non-linear tables).

mod float;
pub mod iq_grids;
mod iquants;
pub use iquants::IQ4_VALUES;
mod kquants;
mod legacy;
mod types;
pub use types::{GgmlType, QK_K};

use std::ops::Range;

/// A tensor that cannot be dequantized.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    #[error("tensor '{tensor}' has type {ty}, which is not supported (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS, IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M)")]
    Unsupported { tensor: String, ty: GgmlType },
    /// The data is not exactly `n_elements` values of `ty`. `expected` is 0 when `n_elements` is
    /// not a whole number of blocks.
    #[error("tensor '{tensor}': {}", size_mismatch_detail(*.ty, *.n_elements, *.expected, *.got))]
    SizeMismatch {
        tensor: String,
        ty: GgmlType,
        n_elements: u64,
        expected: u64,
        got: u64,
    },
    /// Rows requested from [`dequantize_rows`] that the data does not hold.
    #[error("tensor '{tensor}': rows {rows:?} requested, but its data holds {n_rows} rows")]
    RowsOutOfRange {
        tensor: String,
        rows: Range<usize>,
        n_rows: usize,
    },
}

impl QuantError {
    /// The stable code JS sees as `error.code`.
    pub fn code(&self) -> &'static str {
        "UNSUPPORTED_TENSOR_TYPE"
    }
}

fn size_mismatch_detail(ty: GgmlType, n_elements: u64, expected: u64, got: u64) -> String {
    let block = ty.block_size() as u64;
    if !n_elements.is_multiple_of(block) {
        format!("{n_elements} elements are not a whole number of {ty} blocks of {block}")
    } else {
        format!("{got} bytes of {ty} data, but {n_elements} elements need {expected}")
    }
}

/// Dequantizes `data` (whole blocks of `ty`) into `out`, whose length gives the element count.
/// `tensor` names the tensor in errors.
pub fn dequantize_into(
    tensor: &str,
    ty: GgmlType,
    data: &[u8],
    out: &mut [f32],
) -> Result<(), QuantError> {
    let kernel = kernel(tensor, ty)?;
    check_len(tensor, ty, data.len(), out.len())?;
    kernel(data, out);
    Ok(())
}

/// Dequantizes a whole tensor to a new f32 vector.
pub fn dequantize(
    tensor: &str,
    ty: GgmlType,
    data: &[u8],
    n_elements: usize,
) -> Result<Vec<f32>, QuantError> {
    // Checked before allocating, so a bogus element count cannot ask for more memory than the
    // data could describe.
    kernel(tensor, ty)?;
    check_len(tensor, ty, data.len(), n_elements)?;
    let mut out = vec![0f32; n_elements];
    dequantize_into(tensor, ty, data, &mut out)?;
    Ok(out)
}

/// Dequantizes rows `rows` of a 2-D tensor whose rows are `row_len` elements
/// (`ty.bytes_for(row_len)` bytes) into `out`, which must hold exactly `rows.len() * row_len`
/// values. `data` is the whole tensor, or at least its first `rows.end` rows.
pub fn dequantize_rows(
    tensor: &str,
    ty: GgmlType,
    data: &[u8],
    row_len: usize,
    rows: Range<usize>,
    out: &mut [f32],
) -> Result<(), QuantError> {
    kernel(tensor, ty)?;
    let row_bytes = match ty.bytes_for(row_len as u64).map(usize::try_from) {
        Some(Ok(b)) => b,
        _ => return Err(size_mismatch(tensor, ty, row_len, data.len())),
    };
    // Zero-length rows fit any number of times.
    let n_rows = data.len().checked_div(row_bytes).unwrap_or(usize::MAX);
    if rows.start > rows.end || rows.end > n_rows {
        return Err(QuantError::RowsOutOfRange {
            tensor: tensor.to_string(),
            rows,
            n_rows,
        });
    }
    dequantize_into(
        tensor,
        ty,
        &data[rows.start * row_bytes..rows.end * row_bytes],
        out,
    )
}

/// Dequantizes row `row` of a 2-D tensor whose rows are `row_len` elements into `out`
/// (`row_len` values): an embedding lookup. See [`dequantize_rows`].
pub fn dequantize_row(
    tensor: &str,
    ty: GgmlType,
    data: &[u8],
    row_len: usize,
    row: usize,
    out: &mut [f32],
) -> Result<(), QuantError> {
    dequantize_rows(tensor, ty, data, row_len, row..row.saturating_add(1), out)
}

/// Converts a byte slice of whole blocks into exactly as many values.
type Kernel = fn(&[u8], &mut [f32]);

/// The conversion for `ty`; the single list of what is supported
/// (kept equal to [`GgmlType::is_supported`] by a test).
fn kernel(tensor: &str, ty: GgmlType) -> Result<Kernel, QuantError> {
    use GgmlType::*;
    Ok(match ty {
        F32 => float::f32_into,
        F16 => float::f16_into,
        BF16 => float::bf16_into,
        Q4_0 => |d, o| blocks(d, o, legacy::q4_0),
        Q4_1 => |d, o| blocks(d, o, legacy::q4_1),
        Q5_0 => |d, o| blocks(d, o, legacy::q5_0),
        Q5_1 => |d, o| blocks(d, o, legacy::q5_1),
        Q8_0 => |d, o| blocks(d, o, legacy::q8_0),
        Q2_K => |d, o| blocks(d, o, kquants::q2_k),
        Q3_K => |d, o| blocks(d, o, kquants::q3_k),
        Q4_K => |d, o| blocks(d, o, kquants::q4_k),
        Q5_K => |d, o| blocks(d, o, kquants::q5_k),
        Q6_K => |d, o| blocks(d, o, kquants::q6_k),
        IQ4_NL => |d, o| blocks(d, o, iquants::iq4_nl),
        IQ4_XS => |d, o| blocks(d, o, iquants::iq4_xs),
        IQ3_S => |d, o| blocks(d, o, iquants::iq3_s),
        IQ3_XXS => |d, o| blocks(d, o, iquants::iq3_xxs),
        IQ2_XXS => |d, o| blocks(d, o, iquants::iq2_xxs),
        IQ2_XS => |d, o| blocks(d, o, iquants::iq2_xs),
        IQ2_S => |d, o| blocks(d, o, iquants::iq2_s),
        IQ1_S => |d, o| blocks(d, o, iquants::iq1_s),
        IQ1_M => |d, o| blocks(d, o, iquants::iq1_m),
        _ => {
            return Err(QuantError::Unsupported {
                tensor: tensor.to_string(),
                ty,
            })
        }
    })
}

fn size_mismatch(tensor: &str, ty: GgmlType, n_elements: usize, got: usize) -> QuantError {
    QuantError::SizeMismatch {
        tensor: tensor.to_string(),
        ty,
        n_elements: n_elements as u64,
        expected: ty.bytes_for(n_elements as u64).unwrap_or(0),
        got: got as u64,
    }
}

/// Whether `data_len` bytes are exactly `n_elements` values of `ty`, which is what lets the
/// kernels walk both slices in lockstep without checking.
fn check_len(
    tensor: &str,
    ty: GgmlType,
    data_len: usize,
    n_elements: usize,
) -> Result<(), QuantError> {
    match ty.bytes_for(n_elements as u64) {
        Some(b) if b == data_len as u64 => Ok(()),
        _ => Err(size_mismatch(tensor, ty, n_elements, data_len)),
    }
}

/// Runs a per-block function over matching blocks of `data` and `out`. The block geometry comes
/// from the function's signature; the sizes were checked against [`GgmlType::block_geometry`].
#[inline]
fn blocks<const BYTES: usize, const N: usize>(
    data: &[u8],
    out: &mut [f32],
    block: impl Fn(&[u8; BYTES], &mut [f32; N]),
) {
    for (b, o) in data.chunks_exact(BYTES).zip(out.chunks_exact_mut(N)) {
        block(
            b.try_into().expect("exact chunk"),
            o.try_into().expect("exact chunk"),
        );
    }
}

/// Value `i` of a plane of `BITS`-bit values, packed the way ggml packs them: in runs of `SPAN`
/// bytes, where the run's first `SPAN` values fill the lowest `BITS` of each byte, the next `SPAN`
/// values the next `BITS`, and so on until the bytes are full and the next run begins.
#[inline(always)]
fn packed<const BITS: usize, const SPAN: usize>(plane: &[u8], i: usize) -> u8 {
    let per_byte = 8 / BITS;
    let byte = i / (SPAN * per_byte) * SPAN + i % SPAN;
    let shift = BITS * (i / SPAN % per_byte);
    (plane[byte] >> shift) & ((1u16 << BITS) - 1) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_cover_exactly_the_supported_types() {
        for id in 0..64 {
            let Some(ty) = GgmlType::from_id(id) else {
                continue;
            };
            assert_eq!(kernel("t", ty).is_ok(), ty.is_supported(), "{ty}");
        }
    }

    #[test]
    fn block_functions_match_the_type_table() {
        // A block function's array sizes must agree with the type table; a mismatch would
        // dequantize garbage rather than fail, so check every supported type on two blocks.
        for id in 0..64 {
            let Some(ty) = GgmlType::from_id(id).filter(|t| t.is_supported()) else {
                continue;
            };
            let (n, bytes) = ty.block_geometry();
            let mut out = vec![f32::NAN; 2 * n];
            dequantize_into("t", ty, &vec![0u8; 2 * bytes], &mut out).unwrap();
            assert!(out.iter().all(|v| *v == 0.0), "{ty}");
        }
    }

    #[test]
    fn packed_layouts() {
        let plane: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37)).collect();
        // 2 bits, runs of 32 bytes: values 32..64 are bits 2-3 of bytes 0..32; 128.. the next run.
        assert_eq!(packed::<2, 32>(&plane, 33), (plane[1] >> 2) & 3);
        assert_eq!(packed::<2, 32>(&plane, 130), plane[34] & 3);
        assert_eq!(packed::<1, 32>(&plane, 69), (plane[5] >> 2) & 1);
        assert_eq!(packed::<4, 16>(&plane, 17), plane[1] >> 4);
    }

    #[test]
    fn errors_instead_of_panics() {
        let mut out = [0f32; 33];
        assert!(matches!(
            dequantize_into("t", GgmlType::Q4_0, &[0; 18], &mut out),
            Err(QuantError::SizeMismatch { expected: 0, .. })
        ));
        assert!(matches!(
            dequantize("t", GgmlType::Q8_0, &[0; 34], usize::MAX),
            Err(QuantError::SizeMismatch { .. })
        ));
        let e = dequantize_rows("t", GgmlType::Q8_0, &[0; 68], 32, 1..3, &mut out).unwrap_err();
        assert!(
            matches!(e, QuantError::RowsOutOfRange { n_rows: 2, .. }),
            "{e}"
        );
        #[allow(clippy::reversed_empty_ranges)]
        let e = dequantize_rows("t", GgmlType::Q8_0, &[0; 68], 32, 2..1, &mut out).unwrap_err();
        assert!(matches!(e, QuantError::RowsOutOfRange { .. }), "{e}");
        let e = dequantize_row("t", GgmlType::Q8_0, &[0; 68], 33, 0, &mut out).unwrap_err();
        assert!(e.to_string().contains("not a whole number"), "{e}");
        let e = dequantize_row("t", GgmlType::F32, &[0; 8], 0, usize::MAX, &mut []);
        assert!(e.is_ok(), "{e:?}");
    }
}
