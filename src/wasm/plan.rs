//! The memory plan for JS: what a model of a given shape takes in GPU memory on a device, from
//! the one definition in [`crate::model::memory`], so the JS API and the demo plan before a
//! download with the same arithmetic the loader allocates by.

use super::{invalid, set};
use crate::model::memory::{DeviceLimits, MemoryPlan};
use crate::model::ModelShape;
use js_sys::Object;
use wasm_bindgen::prelude::*;

/// A memory plan as JS sees it.
pub(super) fn plan_js(p: crate::model::memory::MemoryPlan) -> JsValue {
    let o = Object::new();
    set(&o, "weightsBytes", p.weights as f64);
    set(&o, "kvCacheBytes", p.kv_cache as f64);
    set(&o, "activationsBytes", p.activations as f64);
    set(&o, "totalBytes", p.total() as f64);
    set(&o, "contextSize", p.context_size as f64);
    set(&o, "maxContextSize", p.max_context_size as f64);
    o.into()
}

/// What a model of this shape takes in GPU memory on a device, before anything is downloaded.
///
/// `shape`: `{nLayer, nEmbd, nHead, nHeadKv, headDim?, nFf, nVocab, contextLength}` (as
/// `engine.info.model` gives it; `headDim` defaults to `nEmbd / nHead`). `weightsBytes`: the
/// weights as the file holds them. `contextSize`: the context to plan for (capped at the model's
/// context length), or by default the one the loader would pick. `device`: `{shaderF16,
/// maxBufferSize, maxStorageBufferBindingSize}`, the adapter's. Returns `{weightsBytes,
/// kvCacheBytes, activationsBytes, totalBytes, contextSize, maxContextSize}`.
#[wasm_bindgen(js_name = memoryPlan)]
pub fn memory_plan(shape: JsValue, weights_bytes: f64, context_size: Option<u32>, device: JsValue) -> Result<JsValue, JsValue> {
    let parse = |v: &JsValue, what: &str| {
        js_sys::JSON::stringify(v)
            .ok()
            .and_then(|s| s.as_string())
            .ok_or_else(|| invalid(format!("{what} must be an object")))
    };
    let mut shape: ModelShape = serde_json::from_str(&parse(&shape, "shape")?)
        .map_err(|e| invalid(format!("bad model shape: {e}")))?;
    let limits: DeviceLimits = serde_json::from_str(&parse(&device, "device")?)
        .map_err(|e| invalid(format!("bad device limits: {e}")))?;
    shape.check().map_err(|e| invalid(format!("bad model shape: {e}")))?;
    if !weights_bytes.is_finite() || weights_bytes < 0.0 {
        return Err(invalid(format!("weightsBytes must be a byte count, got {weights_bytes}")));
    }
    let context = match context_size {
        Some(c) => c as usize,
        None => MemoryPlan::resolve_context(&limits, &shape, None).unwrap_or(1),
    };
    Ok(plan_js(MemoryPlan::new(&limits, &shape, weights_bytes as u64, context)))
}
