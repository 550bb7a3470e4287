//! wasm-bindgen bindings (wasm32 only): the low-level building blocks the npm package's JS API
//! is made of. Every error reaches JS as an `Error` whose `code` is [`crate::Error::code`].
//!
//! - [`Gpu`] (`createGpu`): the WebGPU device;
//! - [`ModelLoader`]: shard bytes pushed as they download, straight into GPU buffers;
//! - [`Engine`]: the loaded model, one awaited `step()` per token;
//! - `memoryPlan`: what a model takes in GPU memory, before a download.
//!
//! Downloading, caching, retries, progress and the OpenAI-style API are the npm package's JS
//! (`www/package/src/`); this side owns everything that touches model bytes or the GPU.

use js_sys::{Object, Reflect};
use wasm_bindgen::prelude::*;

mod engine;
mod gpu;
mod loader;
mod plan;
pub use engine::Engine;
pub use gpu::{create_gpu, Gpu};
pub use loader::ModelLoader;
pub use plan::memory_plan;

/// Converts any crate error into a JS `Error` with a stable `code` property.
fn js_error(e: impl Into<crate::Error>) -> JsValue {
    let e: crate::Error = e.into();
    let err = js_sys::Error::new(&e.to_string());
    let _ = Reflect::set(&err, &"code".into(), &e.code().into());
    // Out of memory: the figures as `details` ({neededBytes, allocatedBytes, ...}).
    let report = e.memory_report();
    if let Some(details) = report
        .and_then(|r| serde_json::to_string(r).ok())
        .and_then(|j| js_sys::JSON::parse(&j).ok())
    {
        let _ = Reflect::set(&err, &"details".into(), &details);
    }
    err.into()
}

fn set(obj: &Object, key: &str, value: impl Into<JsValue>) {
    let _ = Reflect::set(obj, &key.into(), &value.into());
}

fn invalid(msg: String) -> JsValue {
    js_error(crate::Error::InvalidArgument(msg))
}
