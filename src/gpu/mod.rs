//! The GPU stage: the forward pass as WGSL compute shaders through wgpu, natively and in the
//! browser.
//!
//! - [`device`]: adapter and device bring-up with feature detection (`shader-f16`, subgroups,
//!   binding limits) and the device's asynchronous errors;
//! - [`memory`]: buffers, out-of-memory accounting and reports; [`readback`]: staging buffers;
//! - [`pipelines`]: the kernel families of `shaders/`, compiled per variant and cached (with the
//!   `#ifdef`/`#include` [`preprocess`]or);
//! - [`weights`]: the GPU layout of quantized weights; [`ops`]: one op per kernel family;
//! - [`graph`]: the Llama forward pass over the ops, one submission per step;
//! - [`loader`]: the one way in, shard bytes streamed straight into GPU buffers;
//! - [`bench`]: the fixed workload and per-kernel profile that measure a device.

pub mod bench;
pub mod device;
pub mod graph;
pub mod loader;
pub mod memory;
pub mod ops;
pub mod pipelines;
mod preprocess;
pub mod readback;
pub mod weights;
#[cfg(target_arch = "wasm32")]
mod web_subgroups;

pub use device::{GpuContext, GpuFeatures, GpuOptions, KernelTuning};
pub use graph::{GpuModel, GpuModelError};
pub use memory::{format_bytes, MemoryReport};
pub use pipelines::{dispatch_1d, kernels, Kernel};
pub use preprocess::{preprocess, ShaderDefs};

/// GPU failures, with enough detail to act on.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no WebGPU adapter available: {0}")]
    NoAdapter(String),
    #[error("could not create the GPU device: {0}")]
    RequestDevice(String),
    /// A buffer could not be created: the device refused it, or it is over one of the device's
    /// size limits (so it could never be created here). The report says what the model needs.
    #[error("{0}")]
    OutOfMemory(Box<MemoryReport>),
    #[error("GPU validation error in {what}: {message}")]
    Validation { what: String, message: String },
    #[error("shader '{kernel}' failed to compile: {message}")]
    Shader { kernel: String, message: String },
    #[error("reading back a GPU buffer failed: {0}")]
    Readback(String),
    #[error("the GPU device was lost: {0}")]
    DeviceLost(String),
    #[error("the GPU ran out of memory: {0}")]
    DeviceOutOfMemory(String),
    #[error("tensor '{tensor}' has type {ty}, which the GPU kernels do not support (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS, IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M; the ternary TQ1_0 and TQ2_0 and MXFP4 are not supported yet)")]
    UnsupportedType {
        tensor: String,
        ty: crate::quant::GgmlType,
    },
    /// An option forced a feature on that this device (or its WGSL compiler) does not have.
    #[error("{0} was asked for, but this device does not offer it")]
    FeatureUnavailable(String),
}

impl GpuError {
    /// The stable code JS sees as `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            GpuError::NoAdapter(_) | GpuError::RequestDevice(_) => "NO_WEBGPU",
            GpuError::OutOfMemory { .. } | GpuError::DeviceOutOfMemory(_) => "OUT_OF_MEMORY",
            GpuError::DeviceLost(_) => "DEVICE_LOST",
            GpuError::UnsupportedType { .. } => "UNSUPPORTED_TENSOR_TYPE",
            GpuError::FeatureUnavailable(_) => "INVALID_ARGUMENT",
            _ => "GPU_ERROR",
        }
    }
}
