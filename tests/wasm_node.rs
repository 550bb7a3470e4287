//! The library compiled to wasm32, run in Node (`cargo test --target wasm32-unknown-unknown
//! --test wasm_node`; wasm-bindgen-test-runner runs a file without `run_in_browser` in Node): the
//! browser's tokenizer is this build, with fancy-regex and no threads, so it is checked against
//! the same llama.cpp fixtures as natively, along with the streaming header parser the browser
//! loads through and the error codes JS sees. No GPU is involved; tests/browser.rs covers that.
#![cfg(target_arch = "wasm32")]

use llama_webgpu::gguf::{GgufHeader, HeaderParser, Progress, TensorRouter};
use llama_webgpu::tokenizer::{ChatMessage, Tokenizer};
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// `len` bytes of the file at `offset` (fewer at its end), through Node's fs: the wasm has no
/// file system of its own.
fn read_at(path: &str, offset: u64, len: usize) -> Vec<u8> {
    let read = js_sys::Function::new_with_args(
        "path, offset, len",
        "const fs = process.getBuiltinModule('fs');
         const fd = fs.openSync(path, 'r');
         try {
           const buf = new Uint8Array(len);
           const n = fs.readSync(fd, buf, 0, len, offset);
           return buf.subarray(0, n);
         } finally { fs.closeSync(fd); }",
    );
    let out = read
        .call3(&JsValue::NULL, &path.into(), &(offset as f64).into(), &(len as f64).into())
        .unwrap_or_else(|e| panic!("reading {path}: {e:?}"));
    js_sys::Uint8Array::from(out).to_vec()
}

fn read_all(path: &str) -> Vec<u8> {
    let read = js_sys::Function::new_with_args("path", "return process.getBuiltinModule('fs').readFileSync(path);");
    let out = read.call1(&JsValue::NULL, &path.into()).unwrap_or_else(|e| panic!("reading {path}: {e:?}"));
    js_sys::Uint8Array::from(out).to_vec()
}

fn fixture(name: &str) -> serde_json::Value {
    serde_json::from_slice(&read_all(&format!("{ROOT}/tests/fixtures/{name}"))).unwrap()
}

fn smollm2_path() -> String {
    format!("{ROOT}/.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Streams the SmolLM2 file's header through the incremental parser in odd-sized chunks, as a
/// download arrives: the header, and how many bytes were fed.
fn streamed_header() -> (GgufHeader, u64, HeaderParser) {
    let path = smollm2_path();
    let mut parser = HeaderParser::new(None);
    let mut at = 0u64;
    loop {
        let chunk = read_at(&path, at, 50_001);
        assert!(!chunk.is_empty(), "the file ended inside its header");
        at += chunk.len() as u64;
        if let Progress::Done(h) = parser.feed(&chunk).unwrap() {
            return (*h, at, parser);
        }
    }
}

#[wasm_bindgen_test]
fn the_header_streams_in_odd_chunks_and_routes_tensor_bytes() {
    let (h, fed, mut parser) = streamed_header();
    assert_eq!(h.metadata.str("general.architecture").unwrap(), "llama");
    assert_eq!(h.tensors.len(), 272);
    let (offset, rest) = parser.take_remainder();
    assert_eq!(offset + rest.len() as u64, fed, "the remainder ends where feeding stopped");

    let t = h.tensors.iter().find(|t| t.name == "output_norm.weight").unwrap();
    let start = h.tensor_range(t).start;
    let piece = read_at(&smollm2_path(), start - 32, t.size as usize + 64);
    let router = TensorRouter::new(&h);
    let mine: Vec<_> = router.route(start - 32, &piece).into_iter().filter(|p| h.tensors[p.tensor].name == t.name).collect();
    assert_eq!(mine.len(), 1, "one piece");
    assert!(mine[0].last, "complete");
    assert_eq!(mine[0].bytes.len() as u64, t.size);
}

#[wasm_bindgen_test]
fn smollm2_tokenizes_and_renders_its_template_like_llama_cpp() {
    let tok = Tokenizer::from_gguf(&streamed_header().0.metadata).unwrap();
    let fx = fixture("tokenize-smollm2.json");
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() > 20);
    let ids = |v: &serde_json::Value| -> Vec<u32> { serde_json::from_value(v.clone()).unwrap() };
    for c in cases {
        let text = c["text"].as_str().unwrap();
        assert_eq!(tok.encode(text, false).unwrap(), ids(&c["ids"]), "{text:?}");
        assert_eq!(tok.encode(text, true).unwrap(), ids(&c["ids_special"]), "{text:?} (special)");
    }
    let mut stops = tok.stop_ids();
    stops.sort_unstable();
    assert_eq!(stops, ids(&fx["eog"]));

    let chat = fixture("chat-smollm2.json");
    let messages: Vec<ChatMessage> = serde_json::from_value(chat["messages"].clone()).unwrap();
    for c in chat["cases"].as_array().unwrap() {
        let add = c["add_generation_prompt"].as_bool().unwrap();
        let prompt = tok.apply_chat_template(&messages, add).expect("a template").unwrap();
        assert_eq!(prompt, c["prompt"].as_str().unwrap());
    }
}

#[wasm_bindgen_test]
fn the_llama3_tokenizer_json_tokenizes_like_llama_cpp() {
    let tok = Tokenizer::from_json_bytes(&read_all(&format!("{ROOT}/.cache/models/llama3.1-tokenizer.json"))).unwrap();
    let fx = fixture("tokenize-llama3.json");
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() > 20);
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let want: Vec<u32> = serde_json::from_value(c["ids_special"].clone()).unwrap();
        assert_eq!(tok.encode(text, true).unwrap(), want, "{text:?}");
    }
}

#[wasm_bindgen_test]
fn bad_and_truncated_headers_carry_their_codes() {
    let e = HeaderParser::new(Some(16)).feed(b"not a gguf file!").err().expect("not a GGUF file");
    assert!(e.to_string().contains("not a GGUF file"), "{e}");
    assert_eq!(llama_webgpu::Error::from(e).code(), "BAD_GGUF");
    let mut p = HeaderParser::new(None);
    assert!(matches!(p.feed(&[0x47, 0x47, 0x55, 0x46, 3, 0, 0, 0]).unwrap(), Progress::NeedMore));
    let e = p.finish().err().expect("a truncated header");
    assert_eq!(llama_webgpu::Error::from(e).code(), "BAD_GGUF");
}

/// `memoryPlan`, as the JS API and the demo call it: the model's shape and the adapter's limits
/// as JS objects, answered with the loader's own arithmetic.
#[wasm_bindgen_test]
fn the_memory_plan_binding_answers_with_the_loaders_arithmetic() {
    use llama_webgpu::model::memory::{DeviceLimits, MemoryPlan, DEFAULT_CONTEXT};
    use llama_webgpu::model::ModelShape;
    let js = |s: &str| js_sys::JSON::parse(s).unwrap();
    // Llama 3.1 8B, without `headDim` (4096 / 32 = 128), on a device with 1 GiB bindings.
    let shape = js(r#"{"nLayer": 32, "nEmbd": 4096, "nHead": 32, "nHeadKv": 8, "nFf": 14336, "nVocab": 128256, "contextLength": 131072}"#);
    let device = js(r#"{"shaderF16": true, "maxBufferSize": 4294967296, "maxStorageBufferBindingSize": 1073741824}"#);
    let weights = 4_920_734_016u64;
    let get = |o: &JsValue, k: &str| js_sys::Reflect::get(o, &k.into()).unwrap().as_f64().unwrap() as u64;

    let s = ModelShape { n_vocab: 128256, n_embd: 4096, n_layer: 32, n_head: 32, n_head_kv: 8, head_dim: 128, n_ff: 14336, context_length: 131072 };
    let limits = DeviceLimits { kv_f16: true, max_buffer_size: 4 << 30, max_storage_buffer_binding_size: 1 << 30 };
    for context in [None, Some(1000u32)] {
        let plan = llama_webgpu::wasm::memory_plan(shape.clone(), weights as f64, context, device.clone()).unwrap();
        let want = MemoryPlan::new(&limits, &s, weights, context.map_or(DEFAULT_CONTEXT, |c| c as usize));
        assert_eq!(get(&plan, "contextSize"), want.context_size);
        assert_eq!(get(&plan, "kvCacheBytes"), want.kv_cache);
        assert_eq!(get(&plan, "activationsBytes"), want.activations);
        assert_eq!(get(&plan, "totalBytes"), want.total());
        assert_eq!(get(&plan, "maxContextSize"), want.max_context_size);
    }
    // 4096 positions of f16 K and V over 32 layers of 8 heads of 128: 512 MiB.
    assert_eq!(get(&llama_webgpu::wasm::memory_plan(shape.clone(), 0.0, None, device.clone()).unwrap(), "kvCacheBytes"), 1 << 29);

    let bad = llama_webgpu::wasm::memory_plan(js(r#"{"nLayer": 0}"#), 0.0, None, device).err().expect("a bad shape");
    let code = js_sys::Reflect::get(&bad, &"code".into()).unwrap();
    assert_eq!(code.as_string().as_deref(), Some("INVALID_ARGUMENT"));
}
