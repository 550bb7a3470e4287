//! llama-webgpu: Llama 3.x inference for the browser (WebGPU through wgpu) and natively.
//!
//! The data path, one module per stage:
//! bytes → [`gguf`] (header, metadata, tensor ranges) → [`quant`] (block formats) →
//! [`model`] (hyperparameters, tensor validation) → [`reference`] (CPU forward pass, the test
//! oracle) → logits → [`sampling`] → tokens → [`generate`] (the loop) → [`tokenizer`] (text,
//! chat template) → [`web`] (JS bindings, wasm only).

pub mod constrain;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod gpu;
pub mod model;
/// Model URLs for the CLI: resumable downloads into a cache (native, `cli` feature).
#[cfg(all(feature = "cli", not(target_arch = "wasm32")))]
pub mod net;
pub mod quant;
pub mod reference;
pub mod sampling;
pub mod tokenizer;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, Result};
