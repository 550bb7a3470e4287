//! The Llama model graph's shape: hyperparameters from GGUF metadata and the tensors a Llama
//! GGUF must contain, validated up front so a bad file fails before any weight is touched.

mod config;
#[cfg(not(target_arch = "wasm32"))]
pub mod synth;
pub use config::{LlamaConfig, RopeScaling};

/// A model file that does not describe a Llama model we can run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unsupported architecture '{0}' (only 'llama' is supported)")]
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

/// Names of the per-layer tensors, in one place for the CPU reference and the GPU graph.
pub mod names {
    pub const TOKEN_EMBD: &str = "token_embd.weight";
    pub const OUTPUT_NORM: &str = "output_norm.weight";
    pub const OUTPUT: &str = "output.weight";
    pub const ROPE_FREQS: &str = "rope_freqs.weight";
    pub fn blk(layer: usize, what: &str) -> String {
        format!("blk.{layer}.{what}.weight")
    }
}
