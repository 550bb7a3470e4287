//! The generation loop, independent of where logits come from: prefill the prompt, then sample
//! and decode one token at a time until a stop token, a stop string, the token limit or the end
//! of the context. Text is streamed as it becomes final.

use crate::constrain::Constraint;
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
    /// Report each token's log-probability and this many alternatives (OpenAI `top_logprobs`).
    /// Needs the full logits each step, so it is off (`None`) unless asked for.
    pub logprobs: Option<usize>,
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
    /// Time spent on the constraint's token masks (zero without one), and how many were made.
    #[serde(skip)]
    pub mask_time: Duration,
    #[serde(skip)]
    pub masks: u32,
    /// Backend steps after the prompt's: fewer than `tokens` when a constraint forced some.
    #[serde(skip)]
    pub steps: u32,
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
struct StopMatcher {
    stops: Vec<String>,
    pending: String,
}

impl StopMatcher {
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
        for s in &self.stops {
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

/// What the backend must compute for the next token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Only the most likely token (plain greedy decoding).
    Argmax,
    /// The `k` most likely `(id, logit)` pairs (sampling that looks at no more than those).
    TopK(usize),
    /// The whole vocabulary's logits (penalties, logit bias, top-p over everything, logprobs).
    Logits,
}

/// A backend's answer to a [`Need`].
#[derive(Clone, Debug)]
pub enum StepOutput {
    Argmax(u32),
    TopK(Vec<(u32, f32)>),
    Logits(Vec<f32>),
}

/// The log-probability of a generated token and of the most likely alternatives.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TokenLogprobs {
    pub token: u32,
    pub logprob: f32,
    /// `(id, logprob)`, most likely first.
    pub top: Vec<(u32, f32)>,
}

/// The result of feeding one step to a [`Decoding`].
#[derive(Clone, Debug, Default)]
pub struct TokenStep {
    /// The token generated; `None` when the step ended generation with a stop token.
    pub token: Option<u32>,
    /// Text that became final with this step (may be empty: a partial character or a possible
    /// stop-string prefix is held back).
    pub text: String,
    /// Set when generation is over.
    pub finish: Option<FinishReason>,
    pub logprobs: Option<TokenLogprobs>,
    /// Tokens after `token` that a constraint forced (generated without sampling; the next
    /// backend step processes them together). Their text is in `text`.
    pub forced: Vec<u32>,
}

/// One generation as a state machine, independent of how the backend is driven: ask
/// [`Decoding::need`], run the backend on [`Decoding::feed`] to get it, hand the result to
/// [`Decoding::accept`], repeat until a step has `finish`. The blocking [`generate`] and the
/// browser's async step loop are both this.
pub struct Decoding {
    sampler: Sampler,
    params: GenerateParams,
    decoder: StreamDecoder,
    stops: StopMatcher,
    /// Prompt then generated tokens: the penalties' history.
    history: Vec<u32>,
    prompt_len: usize,
    /// Tokens the next backend step must process.
    feed: Vec<u32>,
    text: String,
    finish: Option<FinishReason>,
    /// Structured output: masks every step's logits before sampling.
    constraint: Option<Constraint>,
}

impl Decoding {
    /// Starts generating after `prompt`, which the backend has not processed yet.
    pub fn new(tokenizer: &Tokenizer, prompt: &[u32], params: GenerateParams) -> Result<Self, crate::Error> {
        if prompt.is_empty() {
            return Err(GenerateError::EmptyPrompt.into());
        }
        if let Some(n) = params.logprobs {
            if n > 20 {
                return Err(crate::Error::InvalidArgument(format!(
                    "top_logprobs must be between 0 and 20, got {n}"
                )));
            }
        }
        Ok(Decoding {
            sampler: Sampler::new(params.sampler.clone())?,
            decoder: StreamDecoder::new(tokenizer, false),
            stops: StopMatcher {
                stops: params.stop_strings.clone(),
                pending: String::new(),
            },
            params,
            history: prompt.to_vec(),
            prompt_len: prompt.len(),
            feed: prompt.to_vec(),
            text: String::new(),
            finish: None,
            constraint: None,
        })
    }

    /// Restricts the output to `constraint`'s grammar (before the first step). Each step then
    /// needs the full logits, to mask them.
    pub fn constrain(&mut self, constraint: Constraint) {
        self.constraint = Some(constraint);
    }

    /// The constraint, if any (for its timing figures).
    pub fn constraint(&self) -> Option<&Constraint> {
        self.constraint.as_ref()
    }

    /// What the backend must return for the next step.
    pub fn need(&self) -> Need {
        if self.params.logprobs.is_some() || self.constraint.is_some() {
            Need::Logits
        } else if self.sampler.is_plain_greedy() {
            Need::Argmax
        } else if let Some(k) = self.sampler.candidates_needed() {
            Need::TopK(k)
        } else {
            Need::Logits
        }
    }

    /// The backend already holds the first `n` prompt tokens (a reused KV-cache prefix), so the
    /// first step feeds only the rest. `n` must leave at least one token.
    pub fn skip_cached(&mut self, n: usize) {
        if self.generated() == 0 && n < self.prompt_len {
            self.feed = self.history[n..self.prompt_len].to_vec();
        }
    }

    /// Tokens the backend must process in the next step: the prompt first, then each new token.
    pub fn feed(&self) -> &[u32] {
        &self.feed
    }

    /// Takes the backend's output for [`Decoding::feed`]; `position` and `context_size` are the
    /// backend's after that step. Fails only when a constraint cannot continue.
    pub fn accept(&mut self, out: StepOutput, position: usize, context_size: usize) -> Result<TokenStep, crate::Error> {
        if let Some(f) = self.finish {
            return Ok(TokenStep { finish: Some(f), ..Default::default() });
        }
        let mut logprobs = None;
        let next = match out {
            StepOutput::Argmax(t) if self.constraint.is_none() => t,
            StepOutput::TopK(top) if self.constraint.is_none() => self.sampler.sample_top(&top),
            StepOutput::Argmax(_) | StepOutput::TopK(_) => {
                return Err(crate::Error::InvalidArgument(
                    "a constrained generation needs the full logits each step".into(),
                ))
            }
            StepOutput::Logits(mut logits) => {
                if let Some(c) = self.constraint.as_mut() {
                    if let Err(e) = c.apply(&mut logits) {
                        self.end(TokenStep::default(), FinishReason::Aborted);
                        return Err(e.into());
                    }
                }
                let t = if self.sampler.is_plain_greedy() {
                    crate::sampling::argmax(&logits)
                } else {
                    self.sampler.sample(&logits, &self.history)
                };
                if let Some(n) = self.params.logprobs {
                    logprobs = Some(token_logprobs(&logits, t, n));
                }
                t
            }
        };
        let mut step = TokenStep { logprobs, ..Default::default() };
        if self.generated() >= self.params.max_tokens {
            return Ok(self.end(step, FinishReason::Length));
        }
        if self.params.stop_tokens.contains(&next) {
            return Ok(self.end(step, FinishReason::Stop));
        }
        let mut grammar_done = false;
        if let Some(c) = self.constraint.as_mut() {
            if let Err(e) = c.consume(next) {
                self.end(TokenStep::default(), FinishReason::Aborted);
                return Err(e.into());
            }
            // A complete grammar allows only the end: stop now instead of spending a step on it.
            grammar_done = c.is_finished();
        }
        step.token = Some(next);
        self.history.push(next);
        let (piece, stopped) = self.stops.push(&self.decoder.push(next));
        self.text.push_str(&piece);
        step.text = piece;
        if stopped {
            return Ok(self.end_at_stop_string(step));
        }
        if grammar_done {
            // A complete grammar's text cannot be part of a stop string it has yet to see.
            return Ok(self.end(step, FinishReason::Stop));
        }
        if self.generated() >= self.params.max_tokens {
            return Ok(self.end(step, FinishReason::Length));
        }
        // Prompt plus completion (the `position` cached tokens and `next`) fill the context:
        // stop, so that they never exceed it, as OpenAI-style APIs count it.
        if position + 1 >= context_size {
            return Ok(self.end(step, FinishReason::ContextFull));
        }
        let mut feed = vec![next];
        // Tokens the grammar forces are taken without sampling and fed with `next` in one step.
        // Not with logprobs, which are reported per sampled token.
        let room = (self.params.max_tokens - self.generated()).min(context_size - position - 1);
        if let (Some(c), None) = (self.constraint.as_mut(), self.params.logprobs) {
            let forced = c.forced_tokens(room).map(|f| (f, c.is_finished()));
            let (forced, done) = match forced {
                Ok(x) => x,
                Err(e) => {
                    self.end(TokenStep::default(), FinishReason::Aborted);
                    return Err(e.into());
                }
            };
            for &t in &forced {
                self.history.push(t);
                let (piece, stopped) = self.stops.push(&self.decoder.push(t));
                self.text.push_str(&piece);
                step.text.push_str(&piece);
                if stopped {
                    step.forced = forced;
                    return Ok(self.end_at_stop_string(step));
                }
            }
            feed.extend_from_slice(&forced);
            step.forced = forced;
            if done {
                // A complete grammar's text cannot be part of a stop string it has yet to see.
                return Ok(self.end(step, FinishReason::Stop));
            }
            if self.generated() >= self.params.max_tokens {
                return Ok(self.end(step, FinishReason::Length));
            }
            if position + feed.len() >= context_size {
                return Ok(self.end(step, FinishReason::ContextFull));
            }
        }
        self.feed = feed;
        Ok(step)
    }

    /// Ends with `Stop` at a stop string: what followed it is dropped.
    fn end_at_stop_string(&mut self, mut step: TokenStep) -> TokenStep {
        self.finish = Some(FinishReason::Stop);
        step.finish = Some(FinishReason::Stop);
        step
    }

    /// Ends the generation early (the caller stopped it): returns the held-back text.
    pub fn abort(&mut self) -> TokenStep {
        if let Some(f) = self.finish {
            return TokenStep { finish: Some(f), ..Default::default() };
        }
        self.end(TokenStep::default(), FinishReason::Aborted)
    }

    /// Ends with `why` (a stop token, the length or context limit, an abort, a complete
    /// grammar), returning the held-back text: the start of a stop string that never completed,
    /// and bytes of an unfinished UTF-8 character.
    fn end(&mut self, mut step: TokenStep, why: FinishReason) -> TokenStep {
        let (rest, _) = self.stops.push(&self.decoder.finish());
        let rest = rest + &self.stops.flush();
        self.text.push_str(&rest);
        step.text.push_str(&rest);
        self.finish = Some(why);
        step.finish = Some(why);
        step
    }

    /// Tokens generated so far.
    pub fn tokens(&self) -> &[u32] {
        &self.history[self.prompt_len..]
    }

    pub fn generated(&self) -> usize {
        self.history.len() - self.prompt_len
    }

    /// All final text so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }
}

/// Log-softmax of the chosen token and the `n` most likely ones.
fn token_logprobs(logits: &[f32], token: u32, n: usize) -> TokenLogprobs {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = max + logits.iter().map(|&l| (l as f64 - max).exp()).sum::<f64>().ln();
    let lp = |l: f32| (l as f64 - lse) as f32;
    let mut top: Vec<(u32, f32)> = Vec::with_capacity(n + 1);
    for (i, &l) in logits.iter().enumerate() {
        if top.len() < n || top.last().is_some_and(|&(_, m)| l > m) {
            let at = top.partition_point(|&(_, m)| m >= l);
            top.insert(at, (i as u32, l));
            top.truncate(n);
        }
    }
    TokenLogprobs {
        token,
        logprob: lp(logits[token as usize]),
        top: top.into_iter().map(|(i, l)| (i, lp(l))).collect(),
    }
}

/// Runs a generation. `on_text` receives each piece of final text as it is produced and may
/// return `false` to stop early (finish reason `Aborted`).
pub fn generate(
    backend: &mut dyn LogitsBackend,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    params: &GenerateParams,
    on_text: impl FnMut(&str) -> bool,
) -> Result<Generation, crate::Error> {
    generate_constrained(backend, tokenizer, prompt, params, None, on_text)
}

/// [`generate`] with the output restricted to `constraint`'s grammar.
pub fn generate_constrained(
    backend: &mut dyn LogitsBackend,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    params: &GenerateParams,
    constraint: Option<Constraint>,
    mut on_text: impl FnMut(&str) -> bool,
) -> Result<Generation, crate::Error> {
    let ctx = backend.context_size();
    // A prompt that fills the context leaves no room for a completion (as in the browser).
    if backend.position() + prompt.len() >= ctx {
        return Err(GenerateError::PromptTooLong {
            prompt: backend.position() + prompt.len(),
            context: ctx,
        }
        .into());
    }
    let mut d = Decoding::new(tokenizer, prompt, params.clone())?;
    if let Some(c) = constraint {
        d.constrain(c);
    }
    let mut prefill_time = Duration::ZERO;
    let t0 = Instant::now();
    let mut t1 = t0;
    let mut steps = 0u32;
    loop {
        if d.generated() > 0 {
            steps += 1;
        }
        let out = match d.need() {
            Need::Argmax => StepOutput::Argmax(backend.forward_argmax(d.feed())?),
            Need::TopK(k) => StepOutput::TopK(backend.forward_top_k(d.feed(), k)?),
            Need::Logits => StepOutput::Logits(backend.forward_last(d.feed())?),
        };
        if d.generated() == 0 {
            prefill_time = t0.elapsed();
            t1 = Instant::now();
        }
        let step = d.accept(out, backend.position(), ctx)?;
        let keep_going = step.text.is_empty() || on_text(&step.text);
        if step.finish.is_some() {
            break;
        }
        if !keep_going {
            let rest = d.abort();
            if !rest.text.is_empty() {
                on_text(&rest.text);
            }
            break;
        }
    }
    Ok(Generation {
        prompt_tokens: prompt.to_vec(),
        tokens: d.tokens().to_vec(),
        text: d.text().to_string(),
        finish_reason: d.finish_reason().expect("loop ends with a finish"),
        prefill_time,
        decode_time: t1.elapsed(),
        mask_time: d.constraint().map_or(Duration::ZERO, |c| c.mask_time()),
        masks: d.constraint().map_or(0, |c| c.masks()),
        steps,
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
    use super::{token_logprobs, StopMatcher};

    #[test]
    fn logprobs_are_log_softmax_with_sorted_alternatives() {
        let logits = [1.0f32, 3.0, 2.0, 3.0, -1.0];
        let lp = token_logprobs(&logits, 2, 3);
        let lse = logits.iter().map(|&l| (l as f64).exp()).sum::<f64>().ln();
        assert!((lp.logprob as f64 - (2.0 - lse)).abs() < 1e-6);
        let ids: Vec<u32> = lp.top.iter().map(|t| t.0).collect();
        assert_eq!(ids, [1, 3, 2], "descending, ties by lower id");
        assert_eq!(token_logprobs(&logits, 0, 0).top.len(), 0);
    }

    #[test]
    fn stop_strings_are_held_back_and_cut() {
        let stops = vec!["</s>".to_string(), "STOP".to_string()];
        let mut m = StopMatcher {
            stops,
            pending: String::new(),
        };
        assert_eq!(m.push("hello <"), ("hello ".to_string(), false));
        assert_eq!(m.push("/"), (String::new(), false));
        assert_eq!(m.push("x"), ("</x".to_string(), false));
        assert_eq!(m.push("ab ST"), ("ab ".to_string(), false));
        assert_eq!(m.push("OP tail"), (String::new(), true));
    }
}
