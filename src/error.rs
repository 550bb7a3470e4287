//! The crate-wide error type: every failure is typed, carries a clear message, and maps to a
//! stable machine-readable `code` (surfaced to JS as `error.code`).

use crate::gguf::GgufError;
use crate::quant::QuantError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Quant(#[from] QuantError),
}

impl Error {
    /// A stable identifier for programs (JS `error.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Gguf(_) => "BAD_GGUF",
            Error::Quant(_) => "UNSUPPORTED_TENSOR_TYPE",
        }
    }
}
