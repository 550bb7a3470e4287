//! The crate-wide error type: every failure is typed, carries a clear message, and maps to a
//! stable machine-readable `code` (surfaced to JS as `error.code`).

use crate::constrain::ConstraintError;
use crate::generate::GenerateError;
use crate::gguf::{GgufError, MetadataError};
use crate::gpu::model::GpuModelError;
use crate::gpu::GpuError;
use crate::model::{InputError, ModelError};
use crate::quant::QuantError;
use crate::reference::ReferenceError;
use crate::sampling::SamplerError;
use crate::tokenizer::chat::TemplateError;
use crate::tokenizer::TokenizerError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    Quant(#[from] QuantError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Sampler(#[from] SamplerError),
    #[error(transparent)]
    Generate(#[from] GenerateError),
    #[error(transparent)]
    Constraint(#[from] ConstraintError),
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(transparent)]
    GpuModel(#[from] GpuModelError),
    #[cfg(all(feature = "cli", not(target_arch = "wasm32")))]
    #[error(transparent)]
    Network(#[from] crate::net::NetError),
    #[error("backend unavailable: {0}")]
    BackendUnavailable(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// A stable identifier for programs (JS `error.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Gguf(GgufError::Io { .. }) => "IO_ERROR",
            Error::Gguf(GgufError::Split(_)) => "BAD_SPLIT",
            Error::Gguf(GgufError::UnknownTensorType { .. }) => "UNSUPPORTED_TENSOR_TYPE",
            Error::Gguf(_) | Error::Metadata(_) => "BAD_GGUF",
            Error::Quant(_) => "UNSUPPORTED_TENSOR_TYPE",
            Error::Model(ModelError::UnsupportedArchitecture(_)) => "UNSUPPORTED_ARCHITECTURE",
            Error::Model(_) => "BAD_MODEL",
            Error::Reference(ReferenceError::Input(e)) | Error::GpuModel(GpuModelError::Input(e)) => match e {
                InputError::ContextFull { .. } => "CONTEXT_FULL",
                InputError::BadToken { .. } => "BAD_TOKEN",
            },
            Error::Reference(ReferenceError::Model(ModelError::UnsupportedArchitecture(_))) => {
                "UNSUPPORTED_ARCHITECTURE"
            }
            Error::Reference(ReferenceError::Model(_)) => "BAD_MODEL",
            Error::Reference(ReferenceError::Quant(_)) => "UNSUPPORTED_TENSOR_TYPE",
            Error::Tokenizer(_) => "TOKENIZER_ERROR",
            Error::Template(_) => "TEMPLATE_ERROR",
            Error::Sampler(_) => "INVALID_SAMPLING_PARAMS",
            Error::Generate(GenerateError::PromptTooLong { .. }) => "PROMPT_TOO_LONG",
            Error::Generate(_) => "INVALID_PROMPT",
            Error::Constraint(e) => match e {
                ConstraintError::InvalidSchema(_) => "INVALID_SCHEMA",
                ConstraintError::UnsupportedSchema(_) => "UNSUPPORTED_SCHEMA",
                ConstraintError::InvalidGrammar(_) => "INVALID_GRAMMAR",
                ConstraintError::Failed(_) => "CONSTRAINT_FAILED",
            },
            Error::Gpu(e) | Error::GpuModel(GpuModelError::Gpu(e)) => match e {
                GpuError::NoAdapter(_) | GpuError::RequestDevice(_) => "NO_WEBGPU",
                GpuError::OutOfMemory { .. } | GpuError::DeviceOutOfMemory(_) => "OUT_OF_MEMORY",
                GpuError::DeviceLost(_) => "DEVICE_LOST",
                GpuError::UnsupportedType { .. } => "UNSUPPORTED_TENSOR_TYPE",
                _ => "GPU_ERROR",
            },
            Error::GpuModel(GpuModelError::Model(ModelError::UnsupportedArchitecture(_))) => {
                "UNSUPPORTED_ARCHITECTURE"
            }
            Error::GpuModel(GpuModelError::Model(_)) => "BAD_MODEL",
            Error::GpuModel(GpuModelError::Quant(_)) => "UNSUPPORTED_TENSOR_TYPE",
            Error::GpuModel(GpuModelError::Gguf(e)) => match e {
                GgufError::Split(_) => "BAD_SPLIT",
                GgufError::UnknownTensorType { .. } => "UNSUPPORTED_TENSOR_TYPE",
                GgufError::Io { .. } => "IO_ERROR",
                _ => "BAD_GGUF",
            },
            #[cfg(all(feature = "cli", not(target_arch = "wasm32")))]
            Error::Network(e) => e.code(),
            Error::BackendUnavailable(_) => "BACKEND_UNAVAILABLE",
            Error::InvalidArgument(_) => "INVALID_ARGUMENT",
        }
    }
}
