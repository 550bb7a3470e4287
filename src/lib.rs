//! llama-webgpu: Llama 3.x inference for the browser (WebGPU through wgpu) and natively.
//!
//! One module per stage of the data path, in order; each imports only the ones before it
//! (`tests/layering.rs` checks this):
//! bytes → [`quant`] (block formats) → [`gguf`] (header, metadata, tensor ranges, shards) →
//! [`model`] (hyperparameters, tensor names, the memory plan) → [`tokenizer`] (text ↔ ids, chat
//! template) → [`reference`] (the CPU forward pass, the test oracle) → [`gpu`] (device, weights,
//! kernels, the graph, the streaming loader) → logits → [`decode`] (sampling, constraints, the
//! generation loop) → tokens → [`net`] (native downloads) → [`wasm`] (JS bindings).
//! Above them: [`error`] (every stage's error, for the callers at the top), [`tools`] (synthetic
//! models) and the CLI (`src/bin/llama-webgpu/`).

pub mod quant;
pub mod gguf;
pub mod model;
pub mod tokenizer;
pub mod reference;
pub mod gpu;
pub mod decode;
/// Model URLs for the CLI: resumable downloads into a cache (native, `cli` feature).
#[cfg(all(feature = "cli", not(target_arch = "wasm32")))]
pub mod net;
#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub mod error;
#[cfg(not(target_arch = "wasm32"))]
pub mod tools;

pub use error::{Error, Result};
