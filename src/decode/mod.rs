//! Logits → tokens → text: sampling, structured-output constraints, stop handling and the
//! generation loop, independent of where logits come from.
//!
//! [`Decoding`] is one generation as a state machine (ask [`Decoding::need`], run a backend on
//! [`Decoding::feed`], hand the result to [`Decoding::accept`]); the blocking [`generate`] loop
//! drives it over a [`LogitsBackend`] natively, and the wasm engine drives it with an awaited GPU
//! step per token. The two backends, the CPU reference and the GPU graph, are adapted to the
//! trait in [`backend`]: they come earlier on the data path and do not know this module.

pub mod backend;
pub mod constrain;
mod decoding;
mod generate;
pub mod sampling;
mod stop;

pub use backend::{CpuBackend, LogitsBackend};
#[cfg(not(target_arch = "wasm32"))]
pub use backend::GpuBackend;
pub use decoding::Decoding;
pub use generate::{generate, generate_constrained, Generation};

use constrain::ConstraintError;
use sampling::{SamplerConfig, SamplerError};

/// Why a generation could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("the prompt has {prompt} tokens but the context holds {context}")]
    PromptTooLong { prompt: usize, context: usize },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Sampler(#[from] SamplerError),
    #[error(transparent)]
    Constraint(#[from] ConstraintError),
    /// The CPU reference backend failed (a bad token, a full context).
    #[error(transparent)]
    Reference(#[from] crate::reference::ReferenceError),
    /// The GPU backend failed (a bad token, a full context, a lost device).
    #[error(transparent)]
    Gpu(#[from] crate::gpu::GpuModelError),
}

impl DecodeError {
    /// The stable code JS sees as `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::EmptyPrompt => "INVALID_PROMPT",
            DecodeError::PromptTooLong { .. } => "PROMPT_TOO_LONG",
            DecodeError::InvalidArgument(_) => "INVALID_ARGUMENT",
            DecodeError::Sampler(e) => e.code(),
            DecodeError::Constraint(e) => e.code(),
            DecodeError::Reference(e) => e.code(),
            DecodeError::Gpu(e) => e.code(),
        }
    }
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A stop token or stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The context window is full.
    ContextFull,
    /// The caller's callback asked to stop.
    Aborted,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateParams {
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    /// Token ids that end generation (not included in the output).
    pub stop_tokens: Vec<u32>,
    /// Strings that end generation; the text is cut before them.
    pub stop_strings: Vec<String>,
    /// Report each token's log-probability and this many alternatives (OpenAI `top_logprobs`).
    /// Needs the full logits each step, so it is off (`None`) unless asked for.
    pub logprobs: Option<usize>,
}


/// What the backend must compute for the next token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Need {
    /// Only the most likely token (plain greedy decoding).
    Argmax,
    /// A token drawn from the most likely few ([`sampling::Draw`]: sampling that looks at no
    /// more than the top 64), with the next step's draw for a backend that queues that step
    /// before reading the token back.
    Draw { now: sampling::Draw, next: sampling::Draw },
    /// The whole vocabulary's logits (penalties, logit bias, top-p over everything, logprobs).
    Logits,
}

/// A backend's answer to a [`Need`].
#[derive(Clone, Debug)]
pub enum StepOutput {
    Argmax(u32),
    /// The token of a [`Need::Draw`].
    Drawn(u32),
    Logits(Vec<f32>),
}

/// The log-probability of a generated token and of the most likely alternatives.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TokenLogprobs {
    pub token: u32,
    pub logprob: f32,
    /// `(id, logprob)`, most likely first.
    pub top: Vec<(u32, f32)>,
}

/// The result of feeding one step to a [`Decoding`].
#[derive(Clone, Debug, Default)]
pub struct TokenStep {
    /// The token generated; `None` when the step ended generation with a stop token.
    pub token: Option<u32>,
    /// Text that became final with this step (may be empty: a partial character or a possible
    /// stop-string prefix is held back).
    pub text: String,
    /// Set when generation is over.
    pub finish: Option<FinishReason>,
    pub logprobs: Option<TokenLogprobs>,
    /// Tokens after `token` that a constraint forced (generated without sampling; the next
    /// backend step processes them together). Their text is in `text`.
    pub forced: Vec<u32>,
}

