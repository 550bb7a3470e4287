//! Quantized weight formats: type geometry and CPU dequantization, bit-exact with ggml/gguf-py.

mod types;
pub use types::{GgmlType, QK_K};

/// A tensor that cannot be dequantized.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    #[error("tensor '{tensor}' has type {ty}, which is not supported (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)")]
    Unsupported { tensor: String, ty: GgmlType },
    #[error("tensor '{tensor}': {got} bytes of {ty} data, but {n_elements} elements need {expected}")]
    SizeMismatch { tensor: String, ty: GgmlType, n_elements: u64, expected: u64, got: u64 },
}

/// Dequantizes `data` (whole blocks of `ty`) into `out`, whose length gives the element count.
/// `tensor` names the tensor in errors.
pub fn dequantize_into(tensor: &str, ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    let _ = (tensor, ty, data, out);
    todo!("quant helper")
}

/// Dequantizes a whole tensor to a new f32 vector.
pub fn dequantize(tensor: &str, ty: GgmlType, data: &[u8], n_elements: usize) -> Result<Vec<f32>, QuantError> {
    let mut out = vec![0f32; n_elements];
    dequantize_into(tensor, ty, data, &mut out)?;
    Ok(out)
}
