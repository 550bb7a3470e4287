//! What a model takes in GPU memory, as pure arithmetic over its hyperparameters and the device's
//! limits. This is the one definition: the GPU graph and loader allocate by it (and
//! `tests/gpu_limits.rs` checks that what they hold matches it), `info` prints it, and the wasm
//! bindings export it so the JS API and the demo can plan before any byte is downloaded.

use crate::gguf::TensorInfo;
use serde::Deserialize;

/// The context size when the caller names none (and the model and device allow it): enough
/// for long chats, while an 8B model's KV cache stays at 512 MiB in f16.
pub const DEFAULT_CONTEXT: usize = 4096;

/// Candidates the GPU top-k returns; samplers use at most this many.
pub const TOP_K: u32 = 64;

/// Keys per split of the GPU attention, and per chunk of its online softmax (`KPS` in
/// shaders/attention.wgsl).
pub const KEYS_PER_SPLIT: u32 = 256;
/// Steps of at most this many tokens split long contexts across workgroups; longer ones
/// (prefill) already have a workgroup per tile of their tokens.
pub const SPLIT_TOKENS: u32 = 16;
/// The split kernels' partial results are kept to about this size (very long contexts lower
/// the tokens per step that use them).
pub const SPLIT_SCRATCH_BYTES: u64 = 16 << 20;

/// A model's sizes: all that the memory plan needs, from a [`ModelConfig`] or (through wasm)
/// from JS before the file is read, where `headDim` may be left out (0: `nEmbd / nHead`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelShape {
    pub n_vocab: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    #[serde(default)]
    pub head_dim: usize,
    pub n_ff: usize,
    pub context_length: usize,
}

impl ModelShape {
    /// Sizes a plan can be made for, with a left-out head size filled in: every count positive,
    /// and products that stay far from overflow (the figures of the largest models are below
    /// 2^20 each).
    pub fn check(&mut self) -> Result<(), String> {
        if self.head_dim == 0 && self.n_head > 0 {
            self.head_dim = self.n_embd / self.n_head;
        }
        let all = [
            ("nVocab", self.n_vocab),
            ("nEmbd", self.n_embd),
            ("nLayer", self.n_layer),
            ("nHead", self.n_head),
            ("nHeadKv", self.n_head_kv),
            ("headDim", self.head_dim),
            ("nFf", self.n_ff),
            ("contextLength", self.context_length),
        ];
        match all.iter().find(|(_, v)| *v == 0 || *v > 1 << 24) {
            Some((k, v)) => Err(format!("{k} must be from 1 to 2^24, got {v}")),
            None => Ok(()),
        }
    }
}

/// What the plan needs to know of a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceLimits {
    /// The KV cache is f16 (with `shader-f16`), else f32.
    #[serde(rename = "shaderF16")]
    pub kv_f16: bool,
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
}

impl DeviceLimits {
    /// The largest buffer a kernel can bind whole.
    pub fn binding_limit(&self) -> u64 {
        self.max_storage_buffer_binding_size.min(self.max_buffer_size)
    }

    /// The limit that binds first, by its WebGPU name.
    pub fn binding_limit_name(&self) -> &'static str {
        if self.max_storage_buffer_binding_size <= self.max_buffer_size {
            "maxStorageBufferBindingSize"
        } else {
            "maxBufferSize"
        }
    }

    /// Bytes of one cached position in one layer's K (or V) buffer.
    pub fn kv_row_bytes(&self, cfg: &ModelShape) -> u64 {
        (cfg.n_head_kv * cfg.head_dim) as u64 * if self.kv_f16 { 2 } else { 4 }
    }

    /// Tokens per prefill submission: bounded by the activation buffers and by all-position
    /// logits fitting one binding.
    pub fn max_batch(&self, cfg: &ModelShape, context_size: u64) -> u64 {
        (self.max_storage_buffer_binding_size / (cfg.n_vocab as u64 * 4)).clamp(1, 128).min(context_size)
    }
}

/// The splits a context of `n_ctx` keys is cut into (the attention shader's `n_splits()`).
pub fn attention_splits(n_ctx: u32) -> u32 {
    n_ctx.div_ceil(KEYS_PER_SPLIT)
}

/// Split attention's partial results, shared by every layer: `(tokens, rows)`, the largest step
/// (at most `max_tokens` and [`SPLIT_TOKENS`]) whose partials stay within
/// [`SPLIT_SCRATCH_BYTES`] and the binding limit, and the (token, head, split) rows kept for it,
/// at least one even when no step splits (the kernel binds the buffers anyway). Each row holds
/// `head_dim` f32 sums and an f32 max and sum.
pub fn split_attention_rows(n_head: u32, head_dim: u32, capacity: u32, max_tokens: u32, binding_limit: u64) -> (u32, u64) {
    let per_token = n_head as u64 * attention_splits(capacity) as u64;
    let cap = SPLIT_SCRATCH_BYTES.min(binding_limit) / split_row_bytes(head_dim);
    let tokens = (cap / per_token.max(1)).min(max_tokens.min(SPLIT_TOKENS) as u64) as u32;
    (tokens, (tokens as u64 * per_token).max(1))
}

/// The longest step that runs the packed-integer products (the matrix-vector kernel); longer
/// prompts are faster through the tiled f32 kernel.
pub const INT_DOT_MAX_TOKENS: u32 = 16;

/// Bytes of one row of split attention's partials.
pub fn split_row_bytes(head_dim: u32) -> u64 {
    head_dim as u64 * 4 + 8
}

/// GPU bytes of the tensors the graph reads, as the loader uploads them: matrices stay
/// quantized, 1-D tensors become f32.
pub fn uploaded_bytes<'a>(tensors: impl IntoIterator<Item = &'a TensorInfo>) -> u64 {
    tensors
        .into_iter()
        .filter(|t| super::names::is_graph_tensor(&t.name))
        .map(|t| if t.dims.len() >= 2 { t.size } else { t.n_elements() * 4 })
        .sum()
}

/// What a model takes in GPU memory at a context size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MemoryPlan {
    /// The weights as uploaded (1-D tensors as f32).
    pub weights: u64,
    /// K and V for every layer and position.
    pub kv_cache: u64,
    /// Activation buffers, logits of a prefill chunk included.
    pub activations: u64,
    /// The context the KV cache is sized for (capped at the model's context length).
    pub context_size: u64,
    /// The largest context whose KV cache layers fit this device's buffer limits.
    pub max_context_size: u64,
}

/// A requested context whose KV cache layers are over the device's buffer limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvOverLimit {
    /// One layer's K (or V) buffer at the requested context.
    pub layer_bytes: u64,
    /// The limit it is over (`maxStorageBufferBindingSize` or `maxBufferSize`).
    pub limit: &'static str,
}

impl MemoryPlan {
    pub fn new(limits: &DeviceLimits, cfg: &ModelShape, weights: u64, context_size: usize) -> MemoryPlan {
        let context = context_size.clamp(1, cfg.context_length) as u64;
        let row = limits.kv_row_bytes(cfg);
        let mb = limits.max_batch(cfg, context);
        let (e, nq, nkv, ff, nv) = (
            cfg.n_embd as u64,
            (cfg.n_head * cfg.head_dim) as u64,
            (cfg.n_head_kv * cfg.head_dim) as u64,
            cfg.n_ff as u64,
            cfg.n_vocab as u64,
        );
        // As the GPU graph allocates them: ids, x h o, q attn, k v, gate up, logits, the last
        // row's x and h, argmax, top-k, two step uniforms, the split attention's partials and the
        // quantized activations.
        let (_, split_rows) = split_attention_rows(
            cfg.n_head as u32,
            cfg.head_dim as u32,
            context as u32,
            mb as u32,
            limits.binding_limit(),
        );
        let split = split_rows * split_row_bytes(cfg.head_dim as u32);
        // The 8-bit activations of the packed-integer products (48 bytes per 32 values, for the
        // widest input and steps of up to 16 tokens), counted whether or not the device runs them.
        let quantized = e.max(nq).max(ff).div_ceil(32) * mb.min(INT_DOT_MAX_TOKENS as u64) * 48;
        let activations = 4 * (mb + mb * (3 * e + 2 * nq + 2 * nkv + 2 * ff + nv) + 2 * e) + 16 + TOP_K as u64 * 8 + 32 + split + quantized;
        MemoryPlan {
            weights,
            kv_cache: 2 * cfg.n_layer as u64 * row * context,
            activations,
            context_size: context,
            max_context_size: (limits.binding_limit() / row).min(cfg.context_length as u64),
        }
    }

    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache + self.activations
    }

    /// The context to build for: `requested` (capped at the model's context length), or by
    /// default the model's, at most [`DEFAULT_CONTEXT`] and at most what the device's buffer
    /// limits allow. A requested context whose KV cache layers exceed those limits is refused,
    /// so that the loader can fail before any weight is downloaded, naming the largest that fits.
    pub fn resolve_context(limits: &DeviceLimits, cfg: &ModelShape, requested: Option<usize>) -> Result<usize, KvOverLimit> {
        let probe = MemoryPlan::new(limits, cfg, 0, 1);
        let Some(c) = requested else {
            return Ok(cfg.context_length.min(DEFAULT_CONTEXT).min(probe.max_context_size.max(1) as usize));
        };
        let c = c.clamp(1, cfg.context_length);
        if c as u64 > probe.max_context_size {
            return Err(KvOverLimit { layer_bytes: limits.kv_row_bytes(cfg) * c as u64, limit: limits.binding_limit_name() });
        }
        Ok(c)
    }
}
