//! The streaming model loader for JS ([`ModelLoader`]): shard bytes pushed as they download,
//! each tensor uploaded to the GPU as its bytes arrive, then the [`Engine`].

use super::engine::Engine;
use super::gpu::Gpu;
use super::{invalid, js_error, set};
use crate::gpu::loader::StreamLoader;
use crate::gpu::GpuContext;
use crate::tokenizer::Tokenizer;
use js_sys::Object;
use std::sync::Arc;
use wasm_bindgen::prelude::*;

/// Receives a model's shards as they download and uploads each tensor to the GPU as its bytes
/// arrive. Call `beginShard`, `push` (pieces of any size, in order), `endShard` per shard, then
/// `finish`. Wasm memory holds one pending row group per tensor, never the file.
#[wasm_bindgen]
pub struct ModelLoader {
    ctx: Arc<GpuContext>,
    loader: Option<StreamLoader>,
    /// The chat template given at load, in place of the GGUF's.
    chat_template: Option<String>,
}

#[wasm_bindgen]
impl ModelLoader {
    /// `contextSize`: the context to build for. Without it the memory plan made at the first
    /// header picks the model's context length, at most 4096 and at most what the device's
    /// limits allow; a context over those limits is refused there, before the weights download.
    #[wasm_bindgen(constructor)]
    pub fn new(gpu: &Gpu, context_size: Option<u32>) -> Result<ModelLoader, JsValue> {
        if context_size == Some(0) {
            return Err(invalid("contextSize must be at least 1".into()));
        }
        let mut loader = StreamLoader::new(gpu.ctx.clone());
        loader.set_context_size(context_size.map(|c| c as usize));
        Ok(ModelLoader {
            ctx: gpu.ctx.clone(),
            loader: Some(loader),
            chat_template: None,
        })
    }

    /// A Jinja chat template to use in place of the GGUF's `tokenizer.chat_template` (or where
    /// the file has none, as base models do). Checked here, before any model bytes arrive:
    /// `INVALID_ARGUMENT` when it does not compile.
    #[wasm_bindgen(js_name = setChatTemplate)]
    pub fn set_chat_template(&mut self, template: String) -> Result<(), JsValue> {
        crate::tokenizer::check_chat_template(&template).map_err(bad_chat_template)?;
        self.chat_template = Some(template);
        Ok(())
    }

    /// All shards' sizes together, when known before the download: the first header then
    /// reserves GPU memory for the shards still to come, so a split model that does not fit
    /// fails before they download.
    #[wasm_bindgen(js_name = setExpectedBytes)]
    pub fn set_expected_bytes(&mut self, bytes: f64) -> Result<(), JsValue> {
        self.loader()?.set_expected_bytes(bytes as u64);
        Ok(())
    }

    /// Adds the model's memory figures to an out-of-memory error.
    fn annotate(&self, e: crate::gpu::GpuError) -> JsValue {
        match &self.loader {
            Some(l) => js_error(l.oom_figures().annotate(&self.ctx, e)),
            None => js_error(e),
        }
    }

    fn loader(&mut self) -> Result<&mut StreamLoader, JsValue> {
        self.loader
            .as_mut()
            .ok_or_else(|| invalid("the loader has already finished".into()))
    }

    /// Starts the next shard; `totalLength` is its byte size when known.
    #[wasm_bindgen(js_name = beginShard)]
    pub fn begin_shard(&mut self, total_length: Option<f64>) -> Result<(), JsValue> {
        self.loader()?.begin_shard(total_length.map(|t| t as u64)).map_err(js_error)
    }

    /// Feeds the next bytes of the current shard. Keep pieces to a few MiB: each is copied
    /// into wasm memory.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), JsValue> {
        let l = self.loader()?;
        l.push(bytes).map_err(js_error)?;
        self.ctx.check().map_err(|e| self.annotate(e))
    }

    #[wasm_bindgen(js_name = endShard)]
    pub fn end_shard(&mut self) -> Result<(), JsValue> {
        self.loader()?.end_shard().map_err(js_error)?;
        self.ctx.check().map_err(|e| self.annotate(e))
    }

    /// `{tensorsLoaded, tensorsTotal, bytesUploaded, shardCount}` (`shardCount` is null until
    /// the first header has been read).
    pub fn progress(&self) -> JsValue {
        let o = Object::new();
        if let Some(l) = &self.loader {
            let p = l.progress();
            set(&o, "tensorsLoaded", p.tensors_loaded as u32);
            set(&o, "tensorsTotal", p.tensors_total as u32);
            set(&o, "bytesUploaded", p.bytes_uploaded as f64);
            set(&o, "headersParsed", p.headers);
            set(&o, "shardCount", l.shard_count().map_or(JsValue::NULL, JsValue::from));
        }
        o.into()
    }

    /// Waits for the GPU to report on the buffers allocated so far (each shard's header
    /// allocates all of that shard's tensors): rejects with `OUT_OF_MEMORY` when they did not
    /// fit, so a model too big for the device fails before the rest of it downloads.
    #[wasm_bindgen(js_name = checkMemory)]
    pub async fn check_memory(&self) -> Result<(), JsValue> {
        self.ctx.sync().await.map_err(|e| self.annotate(e))
    }

    /// Validates the whole model, compiles its kernels and returns the engine, at the context
    /// the memory plan fixed.
    pub async fn finish(&mut self) -> Result<Engine, JsValue> {
        let loader = self
            .loader
            .take()
            .ok_or_else(|| invalid("the loader has already finished".into()))?;
        // Built here rather than at the first header: it takes a few hundred milliseconds for
        // a large vocabulary, which would stall progress reports mid-download.
        let meta = loader
            .metadata()
            .ok_or_else(|| invalid("no model bytes were loaded".into()))?;
        let mut tokenizer = Tokenizer::from_gguf(meta).map_err(js_error)?;
        if let Some(t) = self.chat_template.take() {
            tokenizer = tokenizer.with_chat_template(t).map_err(bad_chat_template)?;
        }
        let figures = loader.oom_figures();
        let plan = loader.memory_plan();
        let ctx = self.ctx.clone();
        // On an error the loader's and the model's buffers are dropped here, and the device
        // when JS frees the loader and the Gpu (see `GpuContext`'s Drop on the web).
        let model = loader.finish().map_err(js_error)?;
        // Compile errors and allocation failures arrive asynchronously on the web: wait for
        // the queue so they are in before the model is declared loaded.
        model.ctx.sync().await.map_err(|e| js_error(figures.annotate(&ctx, e)))?;
        let mut engine = Engine::new(model, tokenizer);
        engine.plan = plan;
        Ok(engine)
    }
}

/// A chat template given at load that does not compile, as the option's `INVALID_ARGUMENT`.
fn bad_chat_template(e: crate::tokenizer::TemplateError) -> JsValue {
    invalid(format!("chatTemplate: {e}"))
}
