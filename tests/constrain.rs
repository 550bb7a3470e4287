//! Structured output on the GPU (lavapipe, f16 kernels): JSON Schema, Lark and GBNF
//! grammars and regexes constrain a real model (SmolLM2) at temperature 1.0, and every output is
//! checked by an independent validator (the `jsonschema` crate, Rust's `regex`-free checks
//! below), not by the engine that produced it. Bad schemas and grammars fail before generation.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use llama_webgpu::decode::constrain::{ConstraintEnv, ConstraintSpec};
use llama_webgpu::decode::{generate_constrained, FinishReason, GenerateParams, LogitsBackend};
use llama_webgpu::gguf::GgufFile;
use llama_webgpu::decode::GpuBackend;
use llama_webgpu::gpu::loader::load_gguf;
use llama_webgpu::gpu::{GpuContext, GpuOptions};
use llama_webgpu::decode::sampling::SamplerConfig;
use llama_webgpu::tokenizer::{ChatMessage, Tokenizer};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

struct Setup {
    tok: Tokenizer,
    env: Arc<ConstraintEnv>,
    gpu: GpuBackend,
}

fn setup() -> Setup {
    let file = GgufFile::open(common::smollm2()).unwrap();
    let tok = Tokenizer::from_gguf(file.metadata()).unwrap();
    // The default native path (f16 + subgroups); the browser test runs the f32 kernels without
    // subgroups under the same masks.
    let opts = GpuOptions::default();
    let ctx = Arc::new(GpuContext::new_blocking(opts).unwrap());
    let gpu = GpuBackend(load_gguf(ctx, &file, 512).unwrap());
    let env = ConstraintEnv::new(&tok).unwrap();
    Setup { tok, env, gpu }
}

fn chat_prompt(tok: &Tokenizer, user: &str) -> Vec<u32> {
    let text = tok.apply_chat_template(&[ChatMessage::user(user)], true).unwrap().unwrap();
    tok.encode_prompt(&text, true).unwrap()
}

fn params(tok: &Tokenizer, seed: u64, temperature: f32, max_tokens: usize) -> GenerateParams {
    GenerateParams {
        max_tokens,
        sampler: SamplerConfig { temperature, seed, top_k: 0, top_p: 1.0, min_p: 0.0, ..Default::default() },
        stop_tokens: tok.stop_ids(),
        stop_strings: vec![],
        logprobs: None,
    }
}

/// Nested objects, an array of objects, enums, bounded numbers and integers, a boolean.
fn person_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 12},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "role": {"enum": ["engineer", "artist", "doctor", "teacher"]},
            "height_m": {"type": "number", "minimum": 0.5, "maximum": 2.5},
            "address": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 12},
                    "zip": {"type": "string", "pattern": "^[0-9]{5}$"}
                },
                "required": ["city", "zip"],
                "additionalProperties": false
            },
            "skills": {
                "type": "array",
                "minItems": 1,
                "maxItems": 2,
                "items": {
                    "type": "object",
                    "properties": {
                        "skill": {"type": "string", "maxLength": 10},
                        "level": {"enum": [1, 2, 3]}
                    },
                    "required": ["skill", "level"],
                    "additionalProperties": false
                }
            },
            "active": {"type": "boolean"}
        },
        "required": ["name", "age", "role", "height_m", "address", "skills", "active"],
        "additionalProperties": false
    })
}

/// One GPU model serves every case (loading SmolLM2 is the slow part); cases run in sequence.
#[test]
fn constrained_generation() {
    let mut s = setup();
    schema_samples_all_validate(&mut s);
    json_object_mode(&mut s);
    lark_date_grammar(&mut s);
    gbnf_arithmetic_grammar(&mut s);
    regex_constraint(&mut s);
    bad_constraints_fail_before_generation(&mut s);
}

/// 12 seeded samples at temperature 1.0 over the full vocabulary: all parse and validate.
/// Each sample walks the whole schema (strings, patterns, nested objects) from a fresh seed, so
/// every sample exercises every kind of mask; more of them cost CI time (about 5 s each on
/// lavapipe) for little more coverage.
const SCHEMA_SAMPLES: u64 = 12;

fn schema_samples_all_validate(s: &mut Setup) {
    let schema = person_schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let spec = ConstraintSpec::JsonSchema { schema: schema.clone() };
    let prompt = chat_prompt(&s.tok, "Invent a person and describe them as JSON.");
    let (mut mask, mut masks, mut decode, mut tokens, mut steps) = (Duration::ZERO, 0u32, Duration::ZERO, 0usize, 0u32);
    let mut distinct = std::collections::HashSet::new();
    for seed in 0..SCHEMA_SAMPLES {
        s.gpu.reset();
        let c = s.env.compile(&spec, &s.tok.stop_ids()).unwrap();
        let g = generate_constrained(&mut s.gpu, &s.tok, &prompt, &params(&s.tok, seed, 1.0, 200), Some(c), |_| true)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&g.text)
            .unwrap_or_else(|e| panic!("seed {seed}: output does not parse ({e}): {:?}", g.text));
        let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "seed {seed}: {errors:?} in {}", g.text);
        assert_eq!(g.finish_reason, FinishReason::Stop, "seed {seed}: the grammar ended it: {}", g.text);
        assert!(g.masks as usize <= g.tokens.len(), "one mask per sampled token; forced tokens need none");
        distinct.insert(g.text.clone());
        mask += g.mask_time;
        masks += g.masks;
        steps += g.steps;
        decode += g.decode_time;
        tokens += g.tokens.len();
        if seed < 3 {
            eprintln!("seed {seed}: {}", g.text);
        }
    }
    assert!(
        distinct.len() as u64 >= SCHEMA_SAMPLES * 3 / 4,
        "temperature 1.0 gives varied outputs: {} distinct of {SCHEMA_SAMPLES}",
        distinct.len()
    );
    assert!(steps < tokens as u32, "forced tokens share steps: {steps} steps for {tokens} tokens");
    eprintln!(
        "schema: {tokens} tokens in {steps} steps ({masks} sampled, the rest forced), mask {:.3} ms per sampled token, {:.1} ms per generated token",
        mask.as_secs_f64() * 1e3 / masks as f64,
        decode.as_secs_f64() * 1e3 / tokens as f64
    );
}

fn json_object_mode(s: &mut Setup) {
    let prompt = chat_prompt(&s.tok, "Give me a JSON object about cats.");
    for seed in 0..2 {
        s.gpu.reset();
        let c = s.env.compile(&ConstraintSpec::JsonObject, &s.tok.stop_ids()).unwrap();
        let g = generate_constrained(&mut s.gpu, &s.tok, &prompt, &params(&s.tok, seed, 0.7, 60), Some(c), |_| true)
            .unwrap();
        if g.finish_reason == FinishReason::Stop {
            let v: serde_json::Value = serde_json::from_str(&g.text).unwrap_or_else(|e| panic!("{e}: {:?}", g.text));
            assert!(v.is_object(), "{}", g.text);
        } else {
            // Cut by max_tokens: still a prefix of an object.
            assert!(g.text.starts_with('{'), "{}", g.text);
        }
    }
}

fn is_date(t: &str) -> bool {
    let b = t.as_bytes();
    t.len() == 10
        && b.iter().enumerate().all(|(i, c)| if i == 4 || i == 7 { *c == b'-' } else { c.is_ascii_digit() })
        && (1..=12).contains(&t[5..7].parse::<u32>().unwrap())
        && (1..=31).contains(&t[8..10].parse::<u32>().unwrap())
}

fn lark_date_grammar(s: &mut Setup) {
    let grammar = r#"
start: year "-" month "-" day
year: /(19|20)[0-9][0-9]/
month: /0[1-9]|1[0-2]/
day: /0[1-9]|[12][0-9]|3[01]/
"#;
    let spec = ConstraintSpec::Lark { grammar: grammar.into() };
    let prompt = chat_prompt(&s.tok, "When did the first person walk on the moon?");
    for seed in 0..3 {
        s.gpu.reset();
        let c = s.env.compile(&spec, &s.tok.stop_ids()).unwrap();
        let g = generate_constrained(&mut s.gpu, &s.tok, &prompt, &params(&s.tok, seed, 1.0, 20), Some(c), |_| true)
            .unwrap();
        assert!(is_date(&g.text), "seed {seed}: {:?}", g.text);
        assert_eq!(g.finish_reason, FinishReason::Stop);
    }
}

/// A tiny recursive-descent check of the grammar's language, independent of llguidance.
fn is_expr(t: &str) -> bool {
    fn expr(b: &[u8], i: &mut usize) -> bool {
        if !term(b, i) {
            return false;
        }
        while *i < b.len() && matches!(b[*i], b'+' | b'-' | b'*' | b'/') {
            *i += 1;
            if !term(b, i) {
                return false;
            }
        }
        true
    }
    fn term(b: &[u8], i: &mut usize) -> bool {
        if *i < b.len() && b[*i] == b'(' {
            *i += 1;
            if !expr(b, i) || *i >= b.len() || b[*i] != b')' {
                return false;
            }
            *i += 1;
            return true;
        }
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start && *i - start <= 3
    }
    let b = t.as_bytes();
    let mut i = 0;
    expr(b, &mut i) && i == b.len()
}

fn gbnf_arithmetic_grammar(s: &mut Setup) {
    // llama.cpp's GBNF, as WebLLM and llama.cpp users write it.
    let grammar = r#"
# arithmetic over small integers
root   ::= expr
expr   ::= term (op term)*
term   ::= num | "(" expr ")"
op     ::= "+" | "-" | "*" | "/"
num    ::= [0-9] | [1-9] [0-9] | [1-9] [0-9] [0-9]
"#;
    let spec = ConstraintSpec::Lark { grammar: grammar.into() };
    let prompt = chat_prompt(&s.tok, "Write an arithmetic expression that equals 42.");
    for seed in 0..3 {
        s.gpu.reset();
        let c = s.env.compile(&spec, &s.tok.stop_ids()).unwrap();
        let g = generate_constrained(&mut s.gpu, &s.tok, &prompt, &params(&s.tok, seed, 1.0, 24), Some(c), |_| true)
            .unwrap();
        if g.finish_reason == FinishReason::Stop {
            assert!(is_expr(&g.text), "seed {seed}: {:?}", g.text);
        } else {
            // Cut by max_tokens mid-expression: every character is still from the alphabet.
            assert!(g.text.bytes().all(|c| b"0123456789+-*/()".contains(&c)), "seed {seed}: {:?}", g.text);
        }
    }
}

fn regex_constraint(s: &mut Setup) {
    let spec = ConstraintSpec::Regex { pattern: "(yes|no), because [a-z ]{1,30}\\.".into() };
    let prompt = chat_prompt(&s.tok, "Is the sky blue?");
    s.gpu.reset();
    let c = s.env.compile(&spec, &s.tok.stop_ids()).unwrap();
    let g = generate_constrained(&mut s.gpu, &s.tok, &prompt, &params(&s.tok, 7, 0.0, 40), Some(c), |_| true).unwrap();
    let t = &g.text;
    let rest = t.strip_prefix("yes, because ").or_else(|| t.strip_prefix("no, because "));
    let body = rest.and_then(|r| r.strip_suffix('.')).unwrap_or_else(|| panic!("{t:?}"));
    assert!(!body.is_empty() && body.len() <= 30 && body.bytes().all(|c| c == b' ' || c.is_ascii_lowercase()), "{t:?}");
}

fn bad_constraints_fail_before_generation(s: &mut Setup) {
    let stops = s.tok.stop_ids();
    let code = |spec: ConstraintSpec| -> (String, String) {
        let e = llama_webgpu::Error::from(s.env.compile(&spec, &stops).err().expect("must fail"));
        (e.code().to_string(), e.to_string())
    };
    let (c, m) = code(ConstraintSpec::JsonSchema { schema: json!({"type": "objekt"}) });
    assert_eq!(c, "INVALID_SCHEMA", "{m}");
    let (c, m) = code(ConstraintSpec::JsonSchema { schema: json!("not a schema") });
    assert_eq!(c, "INVALID_SCHEMA", "{m}");
    // A keyword llguidance cannot enforce is refused, never ignored.
    let (c, m) = code(ConstraintSpec::JsonSchema {
        schema: json!({"type": "object", "properties": {"a": {"type": "string"}}, "dependentSchemas": {"a": {"required": ["b"]}}}),
    });
    assert_eq!(c, "UNSUPPORTED_SCHEMA", "{m}");
    assert!(m.contains("dependentSchemas"), "{m}");
    let (c, m) = code(ConstraintSpec::Lark { grammar: "start: foo\n".into() });
    assert_eq!(c, "INVALID_GRAMMAR", "{m}");
    let (c, _) = code(ConstraintSpec::Lark { grammar: "  ".into() });
    assert_eq!(c, "INVALID_GRAMMAR");
    let (c, m) = code(ConstraintSpec::Lark { grammar: "root ::= \"a\" | missing-rule".into() });
    assert_eq!(c, "INVALID_GRAMMAR", "{m}");
    let (c, m) = code(ConstraintSpec::Regex { pattern: "(unclosed".into() });
    assert_eq!(c, "INVALID_GRAMMAR", "{m}");
}

/// The Llama 3.1 template renders OpenAI-shaped tools, an assistant tool call (arguments as an
/// object) and the tool's result as Meta documents: the functions as JSON in the first user
/// turn, the call as `{"name": ..., "parameters": ...}`, the result in an `ipython` turn.
#[test]
fn llama31_template_renders_tools_calls_and_results() {
    let file = GgufFile::open(common::model("ggml-vocab-llama-bpe.gguf")).unwrap();
    let template = std::fs::read_to_string(common::model("meta-llama-Llama-3.1-8B-Instruct.jinja")).unwrap();
    let tools = json!([{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
        }
    }]);
    let messages: Vec<ChatMessage> = serde_json::from_value(json!([
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call-1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
        ]},
        {"role": "tool", "tool_call_id": "call-1", "content": "{\"temp_c\": 21}"}
    ]))
    .unwrap();
    let bos = "<|begin_of_text|>";
    let out = llama_webgpu::tokenizer::apply_chat_template_with_tools(&template, &messages, Some(&tools), true, bos, "<|eot_id|>")
        .unwrap();
    assert!(out.starts_with("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\n"), "{out}");
    assert!(out.contains("Given the following functions"), "{out}");
    assert!(out.contains("    \"type\": \"function\",\n    \"function\": {\n        \"name\": \"get_weather\""), "tools as indented JSON: {out}");
    assert!(out.contains("Weather in Paris?<|eot_id|>"), "{out}");
    assert!(
        out.contains("<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}<|eot_id|>"),
        "{out}"
    );
    assert!(out.contains("<|start_header_id|>ipython<|end_header_id|>\n\n"), "{out}");
    assert!(out.ends_with("<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"), "{out}");
    // Without tools the system turn has no "Environment: ipython" line: the variable is undefined.
    let plain = llama_webgpu::tokenizer::apply_chat_template(&template, &messages[..1], true, bos, "").unwrap();
    assert!(!plain.contains("ipython") && !plain.contains("Given the following functions"), "{plain}");
    // The rendered prompt tokenizes with the real Llama 3 vocabulary (special tokens parsed).
    let tok = Tokenizer::from_gguf(file.metadata()).unwrap();
    let ids = tok.encode(&out, true).unwrap();
    assert!(ids.contains(&tok.token_id("<|start_header_id|>").unwrap()));
}

/// The Llama 3 vocabulary (128k tokens) indexes for masks, and a tool-call schema compiles and
/// admits exactly the call format: the first token must open the object.
#[test]
fn llama3_vocabulary_constrains_tool_calls() {
    let file = GgufFile::open(common::model("ggml-vocab-llama-bpe.gguf")).unwrap();
    let tok = Tokenizer::from_gguf(file.metadata()).unwrap();
    let t0 = std::time::Instant::now();
    let env = ConstraintEnv::new(&tok).unwrap();
    eprintln!("vocabulary index for {} tokens: {:?}", tok.vocab_size(), t0.elapsed());
    let schema = json!({
        "type": "object",
        "properties": {"name": {"const": "get_weather"}, "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
        "required": ["name", "parameters"], "additionalProperties": false
    });
    let mut c = env.compile(&ConstraintSpec::JsonSchema { schema }, &tok.stop_ids()).unwrap();
    let mut logits = vec![0.0f32; tok.vocab_size()];
    c.apply(&mut logits).unwrap();
    let allowed: Vec<u32> = (0..logits.len() as u32).filter(|&i| logits[i as usize] > f32::NEG_INFINITY).collect();
    assert!(!allowed.is_empty());
    for &t in &allowed {
        let piece = tok.decode(&[t], false);
        assert!("{\"name\": \"get_weather\", ".starts_with(&piece), "token {t} {piece:?} is allowed first");
    }
    for &s in &tok.stop_ids() {
        assert!(!allowed.contains(&s), "a stop token cannot end an empty object");
    }
    // Follow the forced text token by token, then the grammar must stay open.
    for t in tok.encode("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", false).unwrap() {
        let mut l = vec![0.0f32; tok.vocab_size()];
        c.apply(&mut l).unwrap();
        assert!(l[t as usize] > f32::NEG_INFINITY, "token {t} {:?} is allowed", tok.decode(&[t], false));
        c.consume(t).unwrap();
    }
    assert!(c.is_finished(), "the call is complete: nothing more is allowed");
}

