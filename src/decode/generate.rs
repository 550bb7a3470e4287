//! The blocking generation loop over a [`LogitsBackend`] (the CLI and native tests; the browser
//! drives [`Decoding`] itself, one awaited GPU step at a time).

use super::constrain::Constraint;
use super::{Decoding, DecodeError, FinishReason, GenerateParams, LogitsBackend, Need, StepOutput};
use crate::tokenizer::Tokenizer;
use std::time::Duration;
// std's Instant panics on wasm32-unknown-unknown; web-time is std's natively.
use web_time::Instant;

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


/// Runs a generation. `on_text` receives each piece of final text as it is produced and may
/// return `false` to stop early (finish reason `Aborted`).
pub fn generate(
    backend: &mut dyn LogitsBackend,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    params: &GenerateParams,
    on_text: impl FnMut(&str) -> bool,
) -> Result<Generation, DecodeError> {
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
) -> Result<Generation, DecodeError> {
    let ctx = backend.context_size();
    // A prompt that fills the context leaves no room for a completion (as in the browser).
    if backend.position() + prompt.len() >= ctx {
        return Err(DecodeError::PromptTooLong {
            prompt: backend.position() + prompt.len(),
            context: ctx,
        });
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
        let may_continue = d.may_continue(backend.position() + d.feed().len(), ctx);
        let out = match d.need() {
            Need::Argmax => StepOutput::Argmax(backend.greedy_step(d.feed(), may_continue)?),
            Need::Draw { now, next } => StepOutput::Drawn(backend.sample_step(d.feed(), now, may_continue.then_some(next))?),
            Need::Logits => StepOutput::Logits(backend.forward_last(d.feed())?),
        };
        if d.generated() == 0 {
            prefill_time = t0.elapsed();
            t1 = Instant::now();
        }
        let step = match d.accept(out, backend.position(), ctx) {
            Ok(s) => s,
            Err(e) => {
                backend.drop_queued();
                return Err(e);
            }
        };
        let keep_going = step.text.is_empty() || on_text(&step.text);
        if step.finish.is_some() {
            // The token ended the generation: give back the step queued on it.
            backend.drop_queued();
            break;
        }
        if !keep_going {
            backend.drop_queued();
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

