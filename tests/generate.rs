//! The generation loop's endings with the real SmolLM2 tokenizer and a backend that plays back
//! a fixed token sequence (the loop, not a model, is under test): which text each way of
//! stopping returns.
// Opens the SmolLM2 file from disk (memory-mapped): native only; on wasm32 this file is empty.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use llama_webgpu::decode::{generate, DecodeError, FinishReason, GenerateParams, LogitsBackend};
use llama_webgpu::gguf::GgufFile;
use llama_webgpu::decode::sampling::SamplerConfig;
use llama_webgpu::tokenizer::Tokenizer;

/// Greedy decoding of this backend yields `script`, one token per step.
struct Scripted {
    script: Vec<u32>,
    n_vocab: usize,
    pos: usize,
    step: usize,
}

impl LogitsBackend for Scripted {
    fn name(&self) -> &'static str {
        "scripted"
    }
    fn context_size(&self) -> usize {
        4096
    }
    fn position(&self) -> usize {
        self.pos
    }
    fn forward_last(&mut self, tokens: &[u32]) -> Result<Vec<f32>, DecodeError> {
        self.pos += tokens.len();
        let mut logits = vec![0f32; self.n_vocab];
        logits[self.script[self.step.min(self.script.len() - 1)] as usize] = 10.0;
        self.step += 1;
        Ok(logits)
    }
    fn reset(&mut self) {
        self.pos = 0;
        self.step = 0;
    }
}

fn run(tok: &Tokenizer, script: Vec<u32>, stop_strings: &[&str], max_tokens: usize) -> (String, FinishReason) {
    let mut backend = Scripted { script, n_vocab: tok.vocab_size(), pos: 0, step: 0 };
    let params = GenerateParams {
        max_tokens,
        sampler: SamplerConfig::greedy(),
        stop_tokens: tok.stop_ids(),
        stop_strings: stop_strings.iter().map(|s| s.to_string()).collect(),
        logprobs: None,
    };
    let prompt = tok.encode("Hi", false).unwrap();
    let mut streamed = String::new();
    let g = generate(&mut backend, tok, &prompt, &params, |t| {
        streamed.push_str(t);
        true
    })
    .unwrap();
    assert_eq!(streamed, g.text, "streamed text = final text");
    (g.text, g.finish_reason)
}

#[test]
fn held_back_text_is_returned_unless_a_stop_string_completes() {
    let tok = Tokenizer::from_gguf(GgufFile::open(common::smollm2()).unwrap().metadata()).unwrap();
    let ids = |s: &str| tok.encode(s, false).unwrap();
    let eos = tok.eos_id().unwrap();
    let (a, hash, b) = (ids("a"), ids("#"), ids("b"));
    assert_eq!((a.len(), hash.len(), b.len()), (1, 1, 1));
    let (a, hash, b) = (a[0], hash[0], b[0]);

    // "a#" might begin the stop string "##", so "#" is held back; the end of text releases it.
    assert_eq!(run(&tok, vec![a, hash, eos], &["##"], 10), ("a#".into(), FinishReason::Stop));
    // So does the length limit.
    assert_eq!(run(&tok, vec![a, hash, b], &["##"], 2), ("a#".into(), FinishReason::Length));
    // A completed stop string is cut, with whatever followed it in the same piece.
    assert_eq!(run(&tok, vec![a, hash, hash, b, eos], &["##"], 10), ("a".into(), FinishReason::Stop));
    // Without stop strings nothing is held back.
    assert_eq!(run(&tok, vec![a, b, eos], &[], 10), ("ab".into(), FinishReason::Stop));
}
