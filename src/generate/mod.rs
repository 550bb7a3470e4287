//! The generation loop, independent of where logits come from: prefill the prompt, then sample
//! and decode one token at a time until a stop token, a stop string, the token limit or the end
//! of the context. Text is streamed as it becomes final.

use crate::sampling::{Sampler, SamplerConfig};
use crate::tokenizer::{StreamDecoder, Tokenizer};
use std::time::Duration;
// std's Instant panics on wasm32-unknown-unknown; web-time is std's natively.
use web_time::Instant;

/// Anything that turns tokens into next-token logits while keeping its own KV state.
pub trait LogitsBackend {
    /// Short name for reports ("cpu", "gpu").
    fn name(&self) -> &'static str;
    /// Positions the KV cache can hold.
    fn context_size(&self) -> usize;
    /// Positions already processed.
    fn position(&self) -> usize;
    /// Processes `tokens` after the current position and returns the last one's logits.
    fn forward_last(&mut self, tokens: &[u32]) -> Result<Vec<f32>, crate::Error>;
    /// Like [`LogitsBackend::forward_last`] but returns only the most likely next token (lowest
    /// id on ties). GPU backends override this to read back 4 bytes instead of the logits.
    fn forward_argmax(&mut self, tokens: &[u32]) -> Result<u32, crate::Error> {
        Ok(crate::sampling::argmax(&self.forward_last(tokens)?))
    }
    /// Like [`LogitsBackend::forward_last`] but returns only the `k` (≤ 64) most likely tokens
    /// as `(id, logit)`, sorted descending with ties by id. GPU backends compute this on the
    /// device so sampling reads back a few numbers, not the whole vocabulary.
    fn forward_top_k(&mut self, tokens: &[u32], k: usize) -> Result<Vec<(u32, f32)>, crate::Error> {
        let logits = self.forward_last(tokens)?;
        let mut c: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
        c.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        c.truncate(k);
        Ok(c)
    }
    /// Clears the KV cache.
    fn reset(&mut self);
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
}

/// The result of one generation.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Generation {
    pub prompt_tokens: Vec<u32>,
    pub tokens: Vec<u32>,
    pub text: String,
    pub finish_reason: FinishReason,
    #[serde(skip)]
    pub prefill_time: Duration,
    #[serde(skip)]
    pub decode_time: Duration,
}

impl Generation {
    pub fn prefill_tokens_per_s(&self) -> f64 {
        self.prompt_tokens.len() as f64 / self.prefill_time.as_secs_f64().max(1e-9)
    }

    /// Decode speed over the tokens after the first (the first comes from the prefill).
    pub fn decode_tokens_per_s(&self) -> f64 {
        let n = self.tokens.len().saturating_sub(1);
        if n == 0 {
            0.0
        } else {
            n as f64 / self.decode_time.as_secs_f64().max(1e-9)
        }
    }
}

/// Errors that stop a generation before it starts.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("the prompt has {prompt} tokens but the context holds {context}")]
    PromptTooLong { prompt: usize, context: usize },
}

/// Holds back text that might be the start of a stop string, so streamed text never contains
/// part of one.
struct StopMatcher<'a> {
    stops: &'a [String],
    pending: String,
}

impl<'a> StopMatcher<'a> {
    /// Adds text; returns (text now safe to emit, whether a stop string was found).
    fn push(&mut self, text: &str) -> (String, bool) {
        self.pending.push_str(text);
        if let Some(cut) = self
            .stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.pending.find(s.as_str()))
            .min()
        {
            let out = self.pending[..cut].to_string();
            self.pending.clear();
            return (out, true);
        }
        // Longest suffix of pending that is a proper prefix of some stop string.
        let mut keep = 0;
        for s in self.stops {
            for (i, _) in s.char_indices().skip(1) {
                if self.pending.ends_with(&s[..i]) {
                    keep = keep.max(i);
                }
            }
        }
        let split = self.pending.len() - keep;
        let out = self.pending[..split].to_string();
        self.pending.drain(..split);
        (out, false)
    }

    fn flush(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

/// Runs a generation. `on_text` receives each piece of final text as it is produced and may
/// return `false` to stop early (finish reason `Aborted`).
pub fn generate(
    backend: &mut dyn LogitsBackend,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    params: &GenerateParams,
    mut on_text: impl FnMut(&str) -> bool,
) -> Result<Generation, crate::Error> {
    if prompt.is_empty() {
        return Err(GenerateError::EmptyPrompt.into());
    }
    let ctx = backend.context_size();
    if backend.position() + prompt.len() > ctx {
        return Err(GenerateError::PromptTooLong {
            prompt: backend.position() + prompt.len(),
            context: ctx,
        }
        .into());
    }
    let mut sampler = Sampler::new(params.sampler.clone())?;
    let mut history: Vec<u32> = prompt.to_vec();
    let mut decoder = StreamDecoder::new(tokenizer, false);
    let mut stops = StopMatcher {
        stops: &params.stop_strings,
        pending: String::new(),
    };
    let mut text = String::new();
    let mut tokens = Vec::new();

    // Greedy decoding and plain top-k sampling need no full logits on the CPU: the backend
    // picks the token or the few candidates.
    let greedy = sampler.is_plain_greedy();
    let top_k = sampler.candidates_needed();
    let mut step = |backend: &mut dyn LogitsBackend, toks: &[u32], history: &[u32]| -> Result<u32, crate::Error> {
        if greedy {
            backend.forward_argmax(toks)
        } else if let Some(k) = top_k {
            Ok(sampler.sample_top(&backend.forward_top_k(toks, k)?))
        } else {
            Ok(sampler.sample(&backend.forward_last(toks)?, history))
        }
    };
    let t0 = Instant::now();
    let mut next = step(backend, prompt, &history)?;
    let prefill_time = t0.elapsed();
    let t1 = Instant::now();
    let finish = loop {
        if tokens.len() >= params.max_tokens {
            break FinishReason::Length;
        }
        if params.stop_tokens.contains(&next) {
            break FinishReason::Stop;
        }
        tokens.push(next);
        history.push(next);
        let (piece, stopped) = stops.push(&decoder.push(next));
        text.push_str(&piece);
        let keep_going = piece.is_empty() || on_text(&piece);
        if stopped {
            break FinishReason::Stop;
        }
        if !keep_going {
            break FinishReason::Aborted;
        }
        if tokens.len() >= params.max_tokens {
            break FinishReason::Length;
        }
        if backend.position() >= ctx {
            break FinishReason::ContextFull;
        }
        next = step(backend, &[next], &history)?;
    };
    if finish != FinishReason::Stop {
        let (rest, _) = stops.push(&decoder.finish());
        let rest = rest + &stops.flush();
        if !rest.is_empty() {
            text.push_str(&rest);
            on_text(&rest);
        }
    }
    Ok(Generation {
        prompt_tokens: prompt.to_vec(),
        tokens,
        text,
        finish_reason: finish,
        prefill_time,
        decode_time: t1.elapsed(),
    })
}

/// The CPU reference model as a [`LogitsBackend`].
pub struct CpuBackend<'a> {
    model: &'a crate::reference::ReferenceModel,
    cache: crate::reference::KvCache,
}

impl<'a> CpuBackend<'a> {
    pub fn new(model: &'a crate::reference::ReferenceModel, context_size: usize) -> Self {
        CpuBackend {
            cache: model.new_cache(context_size),
            model,
        }
    }
}

impl LogitsBackend for CpuBackend<'_> {
    fn name(&self) -> &'static str {
        "cpu"
    }
    fn context_size(&self) -> usize {
        self.cache.capacity()
    }
    fn position(&self) -> usize {
        self.cache.len()
    }
    fn forward_last(&mut self, tokens: &[u32]) -> Result<Vec<f32>, crate::Error> {
        Ok(self
            .model
            .forward(&mut self.cache, tokens, crate::reference::Logits::Last)?)
    }
    fn reset(&mut self) {
        self.cache.truncate(0);
    }
}

#[cfg(test)]
mod tests {
    use super::StopMatcher;

    #[test]
    fn stop_strings_are_held_back_and_cut() {
        let stops = vec!["</s>".to_string(), "STOP".to_string()];
        let mut m = StopMatcher {
            stops: &stops,
            pending: String::new(),
        };
        assert_eq!(m.push("hello <"), ("hello ".to_string(), false));
        assert_eq!(m.push("/"), (String::new(), false));
        assert_eq!(m.push("x"), ("</x".to_string(), false));
        assert_eq!(m.push("ab ST"), ("ab ".to_string(), false));
        assert_eq!(m.push("OP tail"), (String::new(), true));
    }
}
