//! The fixed workload that measures a device, the same for the CLI's `bench` and the page's
//! benchmark (`engine.benchmark()` in JS): prefill and greedy decode of a pseudo-random prompt,
//! timed as generation runs them (one submission and a 4-byte readback per token; on GPUs each
//! step queued before the last one's token is read), the weight bandwidth that decode reaches,
//! and each kernel's share of a decode step from timestamp queries.

use super::{GpuModel, GpuModelError};
use web_time::Instant;

/// A fixed pseudo-random prompt of `len` tokens below `n_vocab`: speed does not depend on
/// the text, and a fixed one makes runs comparable.
pub fn prompt(len: usize, n_vocab: u32) -> Vec<u32> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 7) % n_vocab.max(1))
        .collect()
}

/// What [`measure`] timed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Speed {
    pub prompt_tokens: usize,
    pub decode_tokens: usize,
    pub prefill_s: f64,
    pub decode_s: f64,
    /// Compute dispatches of the last decode step, the output and the sampling included.
    pub dispatches_per_token: u64,
    /// Weight bytes one decode step reads ([`GpuModel::decode_weight_reads`]).
    pub weight_bytes_per_token: u64,
}

impl Speed {
    pub fn prefill_tokens_per_s(&self) -> f64 {
        self.prompt_tokens as f64 / self.prefill_s.max(1e-9)
    }
    pub fn decode_tokens_per_s(&self) -> f64 {
        self.decode_tokens as f64 / self.decode_s.max(1e-9)
    }
    /// The weight bandwidth decode reached: compare it with the device's memory bandwidth.
    pub fn decode_weight_gb_per_s(&self) -> f64 {
        self.weight_bytes_per_token as f64 * self.decode_tokens_per_s() / 1e9
    }
}

/// Forgets the KV cache, prefills [`prompt`]`(prompt_tokens)` and decodes `decode_tokens` tokens
/// greedily as generation runs them: each step queued on the GPU before the last one's token is
/// read back where the device chains steps ([`super::GpuContext::chain_steps`]), else one at a
/// time. Needs `prompt_tokens + decode_tokens` positions of context.
pub async fn measure(model: &mut GpuModel, prompt_tokens: usize, decode_tokens: usize) -> Result<(Speed, u32), GpuModelError> {
    model.reset();
    let p = prompt(prompt_tokens.max(1), model.cfg.shape.n_vocab as u32);
    let t0 = Instant::now();
    let first = model.forward_argmax(&p).await?;
    let prefill_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let next = model.decode_greedy(first, decode_tokens).await?.last().copied().unwrap_or(first);
    let decode_s = t1.elapsed().as_secs_f64();
    let speed = Speed {
        prompt_tokens: p.len(),
        decode_tokens,
        prefill_s,
        decode_s,
        dispatches_per_token: model.last_step_dispatches(),
        weight_bytes_per_token: model.decode_weight_reads().iter().map(|r| r.1).sum(),
    };
    Ok((speed, next))
}

/// One op's share of a decode step.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelTime {
    /// The op's name in the graph (`attn_q`, `attention`, `ffn_down`, `output`, …), summed over
    /// the layers.
    pub kernel: &'static str,
    pub us_per_token: f64,
    /// Share of the profiled step's time.
    pub percent: f64,
    /// Bytes of weights the op reads per token (the products and the norms).
    pub weight_bytes: Option<u64>,
}

impl KernelTime {
    /// The weight bandwidth the op reached (none for an op below the timer's resolution).
    pub fn weight_gb_per_s(&self) -> Option<f64> {
        self.weight_bytes
            .filter(|_| self.us_per_token > 0.0)
            .map(|b| b as f64 / (self.us_per_token * 1e3))
    }
}

/// Each op's mean time over `steps` decode steps from `first` on, after whatever the cache
/// holds (each op runs in a timed pass of its own, so their sum exceeds a normal step: the
/// split is what this is for). Needs [`super::GpuFeatures::timestamps`] and `steps` free
/// positions of context.
pub async fn profile(model: &mut GpuModel, first: u32, steps: usize) -> Result<Vec<KernelTime>, GpuModelError> {
    let steps = steps.max(1);
    let n_vocab = model.cfg.shape.n_vocab as u32;
    let mut total: Vec<(&'static str, f64)> = Vec::new();
    let mut next = first;
    for _ in 0..steps {
        for (name, ns) in model.profile_decode(next).await? {
            match total.iter_mut().find(|(n, _)| *n == name) {
                Some(e) => e.1 += ns,
                None => total.push((name, ns)),
            }
        }
        // The profiled step reads back no token; any valid one keeps the work the same.
        next = (next + 1) % n_vocab;
    }
    let sum: f64 = total.iter().map(|t| t.1).sum();
    let reads = model.decode_weight_reads();
    Ok(total
        .into_iter()
        .map(|(kernel, ns)| KernelTime {
            kernel,
            us_per_token: ns / steps as f64 / 1e3,
            percent: 100.0 * ns / sum.max(1e-9),
            weight_bytes: reads.iter().find(|r| r.0 == kernel).map(|r| r.1),
        })
        .collect())
}
