//! Where logits come from: the [`LogitsBackend`] trait the generation loop runs over, and the
//! two models adapted to it. The CPU reference and the GPU graph come earlier on the data path
//! and know nothing of generation; these adapters give them the trait's blocking shape.

use super::sampling::{self, Draw};
use super::DecodeError;
use crate::reference::{KvCache, Logits, ReferenceModel};

/// Anything that turns tokens into next-token logits while keeping its own KV state.
pub trait LogitsBackend {
    /// Short name for reports ("cpu", "gpu").
    fn name(&self) -> &'static str;
    /// Positions the KV cache can hold.
    fn context_size(&self) -> usize;
    /// Positions already processed.
    fn position(&self) -> usize;
    /// Processes `tokens` after the current position and returns the last one's logits.
    fn forward_last(&mut self, tokens: &[u32]) -> Result<Vec<f32>, DecodeError>;
    /// Like [`LogitsBackend::forward_last`] but returns only the most likely next token (lowest
    /// id on ties). GPU backends override this to read back 4 bytes instead of the logits.
    fn forward_argmax(&mut self, tokens: &[u32]) -> Result<u32, DecodeError> {
        Ok(sampling::argmax(&self.forward_last(tokens)?))
    }
    /// Like [`LogitsBackend::forward_last`] but returns only the `k` (≤ 64) most likely tokens
    /// as `(id, logit)`, sorted descending with ties by id. GPU backends compute this on the
    /// device so sampling reads back a few numbers, not the whole vocabulary.
    fn forward_top_k(&mut self, tokens: &[u32], k: usize) -> Result<Vec<(u32, f32)>, DecodeError> {
        Ok(top_k(&self.forward_last(tokens)?, k))
    }
    /// [`LogitsBackend::forward_argmax`] in greedy generation: with `may_continue` (the
    /// generation goes on from the token unless it is a stop), a GPU backend whose device
    /// chains steps queues the step on that token before reading it back; the next call on
    /// exactly that token takes it, anything else gives it back first.
    fn greedy_step(&mut self, tokens: &[u32], may_continue: bool) -> Result<u32, DecodeError> {
        let _ = may_continue;
        self.forward_argmax(tokens)
    }
    /// The token `draw` picks from the step's top candidates. With `next` (the generation goes
    /// on from the token unless it is a stop), a GPU backend whose device chains steps queues
    /// the step on that token, drawing with `next`, before reading the token back, as
    /// [`LogitsBackend::greedy_step`] does.
    fn sample_step(&mut self, tokens: &[u32], draw: Draw, next: Option<Draw>) -> Result<u32, DecodeError> {
        let _ = next;
        Ok(draw.pick(&self.forward_top_k(tokens, draw.k)?))
    }
    /// Gives back a step [`LogitsBackend::greedy_step`] or [`LogitsBackend::sample_step`]
    /// queued (the generation ended at its token).
    fn drop_queued(&mut self) {}
    /// Runs `n` greedy steps, the first on `token`, and returns their tokens, as generation
    /// runs them.
    fn decode_greedy(&mut self, token: u32, n: usize) -> Result<Vec<u32>, DecodeError> {
        let mut tokens = Vec::with_capacity(n);
        let mut t = token;
        for i in 0..n {
            t = self.greedy_step(&[t], i + 1 < n)?;
            tokens.push(t);
        }
        Ok(tokens)
    }
    /// Clears the KV cache.
    fn reset(&mut self);
    /// GPU compute dispatches in the last forward call (one decode step after a one-token
    /// call); `None` for backends that do not dispatch.
    fn last_dispatches(&self) -> Option<u64> {
        None
    }
}

/// A draw in the form the GPU's draw kernel takes.
impl From<Draw> for crate::gpu::ops::DrawParams {
    fn from(d: Draw) -> Self {
        crate::gpu::ops::DrawParams::new(d.k, d.temperature, d.top_p, d.min_p, d.r)
    }
}

/// The `k` largest logits as `(id, logit)`, descending, ties by id.
fn top_k(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut c: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
    c.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    c.truncate(k);
    c
}

/// The CPU reference model as a [`LogitsBackend`].
pub struct CpuBackend<'a> {
    model: &'a ReferenceModel,
    cache: KvCache,
}

impl<'a> CpuBackend<'a> {
    pub fn new(model: &'a ReferenceModel, context_size: usize) -> Self {
        CpuBackend { cache: model.new_cache(context_size), model }
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
    fn forward_last(&mut self, tokens: &[u32]) -> Result<Vec<f32>, DecodeError> {
        Ok(self.model.forward(&mut self.cache, tokens, Logits::Last)?)
    }
    fn reset(&mut self) {
        self.cache.truncate(0);
    }
}

/// The GPU model as a [`LogitsBackend`] (native: blocks on each step; the browser awaits the
/// model's async steps itself).
#[cfg(not(target_arch = "wasm32"))]
pub struct GpuBackend(pub crate::gpu::GpuModel);

#[cfg(not(target_arch = "wasm32"))]
impl LogitsBackend for GpuBackend {
    fn name(&self) -> &'static str {
        "gpu"
    }
    fn context_size(&self) -> usize {
        self.0.context_size()
    }
    fn position(&self) -> usize {
        self.0.position()
    }
    fn forward_last(&mut self, tokens: &[u32]) -> Result<Vec<f32>, DecodeError> {
        Ok(pollster::block_on(self.0.forward_last(tokens))?)
    }
    fn forward_argmax(&mut self, tokens: &[u32]) -> Result<u32, DecodeError> {
        Ok(pollster::block_on(self.0.forward_argmax(tokens))?)
    }
    fn forward_top_k(&mut self, tokens: &[u32], k: usize) -> Result<Vec<(u32, f32)>, DecodeError> {
        if k > crate::model::memory::TOP_K as usize {
            return Ok(top_k(&self.forward_last(tokens)?, k));
        }
        Ok(pollster::block_on(self.0.forward_top_k(tokens, k))?)
    }
    fn greedy_step(&mut self, tokens: &[u32], may_continue: bool) -> Result<u32, DecodeError> {
        Ok(pollster::block_on(self.0.greedy_step(tokens, may_continue))?)
    }
    fn sample_step(&mut self, tokens: &[u32], draw: Draw, next: Option<Draw>) -> Result<u32, DecodeError> {
        Ok(pollster::block_on(self.0.sample_step(tokens, draw.into(), next.map(Into::into)))?)
    }
    fn drop_queued(&mut self) {
        self.0.drop_queued()
    }
    fn reset(&mut self) {
        self.0.reset()
    }
    fn last_dispatches(&self) -> Option<u64> {
        Some(self.0.last_step_dispatches())
    }
}
