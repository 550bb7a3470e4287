//! The crate-wide error: each stage's own typed error, wrapped for the callers at the top (the
//! CLI and the wasm bindings). Every stage gives its error a stable machine-readable `code()`;
//! this type only delegates, so a code is defined beside the error it names (JS sees it as
//! `error.code`).

use crate::decode::constrain::ConstraintError;
use crate::decode::sampling::SamplerError;
use crate::decode::DecodeError;
use crate::gguf::{GgufError, MetadataError};
use crate::gpu::{GpuError, GpuModelError};
use crate::model::ModelError;
use crate::quant::QuantError;
use crate::reference::ReferenceError;
use crate::tokenizer::{TemplateError, TokenizerError};

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
    Constraint(#[from] ConstraintError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
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
            Error::Gguf(e) => e.code(),
            Error::Metadata(e) => e.code(),
            Error::Quant(e) => e.code(),
            Error::Model(e) => e.code(),
            Error::Reference(e) => e.code(),
            Error::Tokenizer(e) => e.code(),
            Error::Template(e) => e.code(),
            Error::Sampler(e) => e.code(),
            Error::Constraint(e) => e.code(),
            Error::Decode(e) => e.code(),
            Error::Gpu(e) => e.code(),
            Error::GpuModel(e) => e.code(),
            #[cfg(all(feature = "cli", not(target_arch = "wasm32")))]
            Error::Network(e) => e.code(),
            Error::BackendUnavailable(_) => "BACKEND_UNAVAILABLE",
            Error::InvalidArgument(_) => "INVALID_ARGUMENT",
        }
    }

    /// The figures of an out-of-memory failure, wherever it was wrapped.
    pub fn memory_report(&self) -> Option<&crate::gpu::MemoryReport> {
        let gpu = match self {
            Error::Gpu(e) => e,
            Error::GpuModel(GpuModelError::Gpu(e)) | Error::Decode(DecodeError::Gpu(GpuModelError::Gpu(e))) => e,
            _ => return None,
        };
        match gpu {
            GpuError::OutOfMemory(r) => Some(r),
            _ => None,
        }
    }
}
