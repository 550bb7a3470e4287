//! wasm-bindgen bindings (wasm32 only): the low-level building blocks the npm package's JS
//! API is made of. Every error reaches JS as an `Error` whose `code` is [`crate::Error::code`].

use crate::gguf::{GgufHeader, HeaderParser, Progress, TensorRouter};
use crate::tokenizer::{ChatMessage, Tokenizer as RustTokenizer};
use js_sys::{Array, Object, Reflect};
use wasm_bindgen::prelude::*;

mod engine;
pub use engine::{create_gpu, Engine, Gpu, ModelLoader};

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

/// Incremental GGUF header parser for `fetch()` streams: feed chunks in order until `feed`
/// returns true, then read `header()` and route the following bytes with `route()`.
#[wasm_bindgen]
pub struct GgufStream {
    parser: HeaderParser,
    header: Option<GgufHeader>,
    router: Option<TensorRouter>,
}

#[wasm_bindgen]
impl GgufStream {
    /// `totalLength` (e.g. from Content-Length) lets hostile counts be rejected early.
    #[wasm_bindgen(constructor)]
    pub fn new(total_length: Option<f64>) -> GgufStream {
        GgufStream {
            parser: HeaderParser::new(total_length.map(|t| t as u64)),
            header: None,
            router: None,
        }
    }

    /// Feeds the next chunk; returns true once the header is complete. Bytes beyond the header
    /// that were already fed are returned by `takeRemainder()`.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<bool, JsValue> {
        if self.header.is_some() {
            return Ok(true);
        }
        match self.parser.feed(chunk).map_err(js_error)? {
            Progress::NeedMore => Ok(false),
            Progress::Done(h) => {
                self.router = Some(TensorRouter::new(&h));
                self.header = Some(*h);
                Ok(true)
            }
        }
    }

    /// Signals end of stream; errors if the header is incomplete (a truncated file).
    pub fn finish(&mut self) -> Result<(), JsValue> {
        if self.header.is_none() {
            let h = self.parser.finish().map_err(js_error)?;
            self.router = Some(TensorRouter::new(&h));
            self.header = Some(*h);
        }
        Ok(())
    }

    /// Data-section bytes fed before the header was recognized complete: `{offset, bytes}`.
    #[wasm_bindgen(js_name = takeRemainder)]
    pub fn take_remainder(&mut self) -> JsValue {
        let (offset, bytes) = self.parser.take_remainder();
        let o = Object::new();
        set(&o, "offset", offset as f64);
        set(&o, "bytes", js_sys::Uint8Array::from(bytes.as_slice()));
        o.into()
    }

    /// `{version, alignment, dataOffset, metadataCount, tensors: [{name, dims, type, offset, size}]}`
    /// (offsets absolute); `null` until the header is complete.
    pub fn header(&self) -> JsValue {
        let Some(h) = &self.header else {
            return JsValue::NULL;
        };
        let o = Object::new();
        set(&o, "version", h.version);
        set(&o, "alignment", h.alignment as f64);
        set(&o, "dataOffset", h.data_offset as f64);
        set(&o, "metadataCount", h.metadata.len() as u32);
        set(
            &o,
            "architecture",
            h.metadata
                .str_opt("general.architecture")
                .ok()
                .flatten()
                .unwrap_or(""),
        );
        let tensors = Array::new();
        for t in &h.tensors {
            let to = Object::new();
            set(&to, "name", t.name.as_str());
            set(
                &to,
                "dims",
                t.dims
                    .iter()
                    .map(|&d| JsValue::from(d as f64))
                    .collect::<Array>(),
            );
            set(&to, "type", t.ggml_type.name());
            set(&to, "offset", h.tensor_range(t).start as f64);
            set(&to, "size", t.size as f64);
            tensors.push(&to);
        }
        set(&o, "tensors", tensors);
        o.into()
    }

    /// Splits a chunk starting at absolute `offset` into `[{tensor, offset, bytes, last}]`.
    pub fn route(&self, offset: f64, chunk: &[u8]) -> Result<Array, JsValue> {
        let router = self
            .router
            .as_ref()
            .ok_or_else(|| JsValue::from(js_sys::Error::new("GGUF header is not complete yet")))?;
        let out = Array::new();
        for p in router.route(offset as u64, chunk) {
            let o = Object::new();
            set(&o, "tensor", p.tensor as u32);
            set(&o, "offset", p.offset as f64);
            set(&o, "bytes", js_sys::Uint8Array::from(p.bytes));
            set(&o, "last", p.last);
            out.push(&o);
        }
        Ok(out)
    }

    /// Builds the tokenizer (and chat template) from the parsed header's metadata.
    pub fn tokenizer(&self) -> Result<Tokenizer, JsValue> {
        let h = self
            .header
            .as_ref()
            .ok_or_else(|| JsValue::from(js_sys::Error::new("GGUF header is not complete yet")))?;
        Ok(Tokenizer {
            inner: RustTokenizer::from_gguf(&h.metadata).map_err(js_error)?,
        })
    }
}

/// A llama.cpp-exact BPE tokenizer with the model's chat template.
#[wasm_bindgen]
pub struct Tokenizer {
    inner: RustTokenizer,
}

#[wasm_bindgen]
impl Tokenizer {
    /// From a Hugging Face `tokenizer.json`.
    #[wasm_bindgen(js_name = fromJson)]
    pub fn from_json(bytes: &[u8]) -> Result<Tokenizer, JsValue> {
        Ok(Tokenizer {
            inner: RustTokenizer::from_json_bytes(bytes).map_err(js_error)?,
        })
    }

    /// Token ids of `text` (no BOS). `special` parses special-token text like `<|eot_id|>`.
    pub fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>, JsValue> {
        self.inner.encode(text, special).map_err(js_error)
    }

    /// Text of `ids`; control tokens are rendered only with `renderSpecial`.
    pub fn decode(&self, ids: &[u32], render_special: bool) -> String {
        self.inner.decode(ids, render_special)
    }

    /// Renders `[{role, content}, ...]` with the model's chat template.
    #[wasm_bindgen(js_name = applyChatTemplate)]
    pub fn apply_chat_template(
        &self,
        messages: JsValue,
        add_generation_prompt: bool,
    ) -> Result<String, JsValue> {
        let json: String = js_sys::JSON::stringify(&messages)
            .map(String::from)
            .unwrap_or_default();
        let messages: Vec<ChatMessage> = serde_json::from_str(&json).map_err(|e| {
            js_error(crate::Error::InvalidArgument(format!(
                "messages must be an array of {{role, content}}: {e}"
            )))
        })?;
        match self
            .inner
            .apply_chat_template(&messages, add_generation_prompt)
        {
            None => Err(js_error(crate::Error::InvalidArgument(
                "this model has no chat template".into(),
            ))),
            Some(r) => r.map_err(js_error),
        }
    }

    #[wasm_bindgen(getter, js_name = bosId)]
    pub fn bos_id(&self) -> Option<u32> {
        self.inner.bos_id()
    }

    #[wasm_bindgen(getter, js_name = addBos)]
    pub fn add_bos(&self) -> bool {
        self.inner.add_bos()
    }

    /// Ids that end generation (EOS, EOT, ...).
    #[wasm_bindgen(getter, js_name = stopIds)]
    pub fn stop_ids(&self) -> Vec<u32> {
        self.inner.stop_ids()
    }

    #[wasm_bindgen(getter, js_name = vocabSize)]
    pub fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }
}
