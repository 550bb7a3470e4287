//! What a model is, before any weight is touched: its hyperparameters from GGUF metadata
//! ([`ModelConfig`]), the tensors a Llama GGUF must contain ([`names`], validated up front so a
//! bad file fails early), the inputs a backend accepts ([`check_input`]) and what the model takes
//! in GPU memory ([`memory`]: pure arithmetic, shared by the GPU loader, `info`, the JS API and
//! the demo).

pub mod arch;
mod config;
pub mod memory;
pub mod names;
pub use arch::{Arch, BlockGraph, Gate, RopeStyle, SlidingWindow};
pub use config::{LayerRope, ModelConfig, RopeScaling};
pub use memory::ModelShape;

/// A model file that does not describe a Llama model we can run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unsupported architecture '{0}' (supported: {list})", list = crate::model::Arch::list())]
    UnsupportedArchitecture(String),
    #[error("invalid model hyperparameters: {0}")]
    BadHparams(String),
    #[error("model is missing tensor '{0}'")]
    MissingTensor(String),
    #[error("tensor '{name}' has shape {found:?}, expected {expected:?}")]
    BadShape {
        name: String,
        expected: Vec<u64>,
        found: Vec<u64>,
    },
    #[error(transparent)]
    Metadata(#[from] crate::gguf::MetadataError),
    /// A tensor whose type the CPU cannot dequantize.
    #[error(transparent)]
    Quant(#[from] crate::quant::QuantError),
}

impl ModelError {
    /// The stable code JS sees as `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            ModelError::UnsupportedArchitecture(_) => "UNSUPPORTED_ARCHITECTURE",
            ModelError::Quant(e) => e.code(),
            _ => "BAD_MODEL",
        }
    }
}

/// Tokens a backend cannot process: shared by the CPU reference and the GPU model so both
/// reject the same inputs with the same errors.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("token id {id} is outside the vocabulary of {n_vocab}")]
    BadToken { id: u32, n_vocab: usize },
    #[error("context is full: {used} + {new} tokens exceed the context size of {capacity}")]
    ContextFull { used: usize, new: usize, capacity: usize },
}

impl InputError {
    /// The stable code JS sees as `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            InputError::ContextFull { .. } => "CONTEXT_FULL",
            InputError::BadToken { .. } => "BAD_TOKEN",
        }
    }
}

/// Checks that `tokens`, appended after `used` cached positions, fit in `capacity` and the
/// vocabulary.
pub fn check_input(tokens: &[u32], n_vocab: usize, used: usize, capacity: usize) -> Result<(), InputError> {
    if used + tokens.len() > capacity {
        return Err(InputError::ContextFull { used, new: tokens.len(), capacity });
    }
    match tokens.iter().find(|&&t| t as usize >= n_vocab) {
        Some(&id) => Err(InputError::BadToken { id, n_vocab }),
        None => Ok(()),
    }
}
