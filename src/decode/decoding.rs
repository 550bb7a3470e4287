//! One generation as a state machine, whoever drives the backend.

use super::constrain::Constraint;
use super::sampling::{self, Sampler};
use super::stop::StopMatcher;
use super::{DecodeError, FinishReason, GenerateParams, Need, StepOutput, TokenLogprobs, TokenStep};
use crate::tokenizer::{StreamDecoder, Tokenizer};

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
    pub fn new(tokenizer: &Tokenizer, prompt: &[u32], params: GenerateParams) -> Result<Self, DecodeError> {
        if prompt.is_empty() {
            return Err(DecodeError::EmptyPrompt);
        }
        if let Some(n) = params.logprobs {
            if n > 20 {
                return Err(DecodeError::InvalidArgument(format!(
                    "top_logprobs must be between 0 and 20, got {n}"
                )));
            }
        }
        Ok(Decoding {
            sampler: Sampler::new(params.sampler.clone())?,
            decoder: StreamDecoder::new(tokenizer, false),
            stops: StopMatcher::new(params.stop_strings.clone()),
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
        } else if let Some((now, next)) = self.sampler.draws() {
            Need::Draw { now, next }
        } else {
            Need::Logits
        }
    }

    /// Whether the step after the one on [`Decoding::feed`] will be the greedy step, or the
    /// draw ([`Need::Draw`]'s `next`), on the token this one yields, unless that token is a stop
    /// token or completes a stop string: neither the length limit nor the context (`position`, the backend's position after this
    /// step) ends the generation at it. A GPU can then queue that step before reading the
    /// token, and discard it if the token ends the generation after all.
    pub fn may_continue(&self, position: usize, context_size: usize) -> bool {
        self.finish.is_none()
            && matches!(self.need(), Need::Argmax | Need::Draw { .. })
            && self.generated() + 1 < self.params.max_tokens
            && position + 1 < context_size
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
    pub fn accept(&mut self, out: StepOutput, position: usize, context_size: usize) -> Result<TokenStep, DecodeError> {
        if let Some(f) = self.finish {
            return Ok(TokenStep { finish: Some(f), ..Default::default() });
        }
        let mut logprobs = None;
        let next = match out {
            StepOutput::Argmax(t) if self.constraint.is_none() => t,
            StepOutput::Drawn(t) if self.constraint.is_none() => {
                self.sampler.take_draw();
                t
            }
            StepOutput::Argmax(_) | StepOutput::Drawn(_) => {
                return Err(DecodeError::InvalidArgument(
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
                    sampling::argmax(&logits)
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


#[cfg(test)]
mod tests {
    use super::token_logprobs;

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
}
