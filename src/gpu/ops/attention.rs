//! The GPU KV cache and causal grouped-query attention (`shaders/attention.wgsl`).

use super::uniform;
use crate::model::memory::{attention_splits, split_attention_rows};
use crate::gpu::{dispatch_1d, kernels, GpuContext, GpuError};
use std::sync::Arc;

/// Keys and values of every processed position, one K and one V buffer per layer, each
/// `[capacity][n_kv][head_dim]`: f16 when the context uses `shader-f16` (rounded on entry, as
/// llama.cpp's default cache does), f32 otherwise.
pub struct KvCache {
    pub k: Vec<wgpu::Buffer>,
    pub v: Vec<wgpu::Buffer>,
    pub capacity: u32,
    pub n_kv: u32,
    pub head_dim: u32,
    /// Whether elements are f16 (else f32).
    pub f16: bool,
}

impl KvCache {
    pub fn new(
        ctx: &GpuContext,
        n_layer: usize,
        capacity: u32,
        n_kv: u32,
        head_dim: u32,
    ) -> Result<Self, GpuError> {
        if !head_dim.is_multiple_of(4)
            || head_dim == 0
            || head_dim > 256
            || n_kv == 0
            || capacity == 0
        {
            return Err(GpuError::Validation {
                what: "kv cache".into(),
                message: format!("need head_dim a multiple of 4 in 4..=256 (got {head_dim}), n_kv > 0 and capacity > 0"),
            });
        }
        let f16 = ctx.features.f16;
        let row = n_kv as u64 * head_dim as u64 * if f16 { 2 } else { 4 };
        let size = row * capacity as u64;
        if size > ctx.limits.max_storage_buffer_binding_size {
            return Err(ctx.over_limit("each KV cache layer (K or V)", size, "maxStorageBufferBindingSize"));
        }
        let (mut k, mut v) = (Vec::with_capacity(n_layer), Vec::with_capacity(n_layer));
        for l in 0..n_layer {
            k.push(ctx.storage(&format!("k cache {l}"), size, wgpu::BufferUsages::empty())?);
            v.push(ctx.storage(&format!("v cache {l}"), size, wgpu::BufferUsages::empty())?);
        }
        Ok(KvCache {
            k,
            v,
            capacity,
            n_kv,
            head_dim,
            f16,
        })
    }

    /// Bytes per cached position (one layer, K or V).
    pub fn row_bytes(&self) -> u64 {
        self.n_kv as u64 * self.head_dim as u64 * if self.f16 { 2 } else { 4 }
    }
}

/// Partial results of split attention, shared by every layer (their dispatches
/// run one after another): per (token, head, split) the unnormalized output and its softmax
/// maximum and sum.
pub struct AttentionScratch {
    acc: wgpu::Buffer,
    ml: wgpu::Buffer,
    /// Steps of up to this many tokens use the split kernels (0: none do).
    tokens: u32,
    max_split: u32,
}

impl AttentionScratch {
    /// Scratch for attention over `cache` with `n_head` query heads, splitting steps of up to
    /// `max_tokens` tokens (0: never split).
    pub fn new(ctx: &GpuContext, cache: &KvCache, n_head: u32, max_tokens: u32) -> Result<Self, GpuError> {
        let limit = ctx.memory_limits().binding_limit();
        let (tokens, rows) = split_attention_rows(n_head, cache.head_dim, cache.capacity, max_tokens, limit);
        Ok(AttentionScratch {
            acc: ctx.storage("attention partials", rows * cache.head_dim as u64 * 4, wgpu::BufferUsages::empty())?,
            ml: ctx.storage("attention partial max/sum", rows * 8, wgpu::BufferUsages::empty())?,
            tokens,
            max_split: attention_splits(cache.capacity),
        })
    }
}

/// A tile of the attention kernel: `(query heads, tokens, invocations per row)`. The heads are
/// the largest divisor of `group` that is at most 8 with `heads · head_dim/4 ≤ 256`, and the
/// tokens as many as keep the rows (heads × tokens) within both bounds, so that each K/V row
/// read serves up to 8 rows.
fn tile(group: u32, hd4: u32) -> (u32, u32, u32) {
    let hpw = (1..=8.min(group)).rev().find(|&d| group.is_multiple_of(d) && d * hd4 <= 256).unwrap_or(1);
    let tpw = (8 / hpw).min(256 / (hpw * hd4)).max(1);
    (hpw, tpw, lanes_per_row(hpw * tpw))
}

/// Invocations per row in the kernel's softmax step (`LPH`): its 128 over the rows rounded up
/// to a power of two.
fn lanes_per_row(rows: u32) -> u32 {
    128 / rows.next_power_of_two()
}

/// Writes the step's keys and values into one layer of the cache, then attends:
/// `out[t][h] = Σ_{s ≤ pos+t} softmax_s(q[t][h]·k[s][h/group] / sqrt(head_dim)) v[s][h/group]`
/// (or with the [`Scores`] given: another scale, and a window over s).
/// `q`, `out`: f32 `[n_tokens][n_head][head_dim]`; `k`, `v`: f32 `[n_tokens][n_kv][head_dim]`,
/// already rotated. The caller keeps `step.pos + n_tokens ≤ capacity` (rows past the capacity
/// are not written and not attended to).
pub struct AttentionOp {
    write: Arc<wgpu::ComputePipeline>,
    write_bind: wgpu::BindGroup,
    /// False where RoPE writes the cache ([`super::RopeOp::pair_into_cache`]).
    write_cache: bool,
    /// The attention kernel tiled for one token (decode), and for several.
    split_one: Arc<wgpu::ComputePipeline>,
    split: Arc<wgpu::ComputePipeline>,
    merge: Arc<wgpu::ComputePipeline>,
    split_one_bind: wgpu::BindGroup,
    split_bind: wgpu::BindGroup,
    merge_bind: wgpu::BindGroup,
    /// Workgroups per (split, token tile): KV heads × query-head groups.
    split_groups: u32,
    /// Tokens per workgroup.
    tile_tokens: u32,
    split_tokens: u32,
    capacity: u32,
    kvw4: u32,
    n_head: u32,
}

/// How attention scores are formed: their multiplier and, for local layers, a sliding window
/// (each query sees the last `window` positions up to its own).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scores {
    pub scale: f32,
    pub window: Option<u32>,
}

impl Scores {
    /// 1/√head_dim over every earlier position.
    pub fn standard(head_dim: u32) -> Self {
        Scores { scale: 1.0 / (head_dim as f32).sqrt(), window: None }
    }
}

impl AttentionOp {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ctx: &GpuContext,
        q: &wgpu::Buffer,
        k: &wgpu::Buffer,
        v: &wgpu::Buffer,
        out: &wgpu::Buffer,
        cache: &KvCache,
        layer: usize,
        n_head: u32,
        scratch: &AttentionScratch,
        step: &wgpu::Buffer,
    ) -> Result<Self, GpuError> {
        Self::with_scores(ctx, q, k, v, out, cache, layer, n_head, scratch, Scores::standard(cache.head_dim), step)
    }

    /// [`AttentionOp::new`] with the scores' scale and window given.
    #[allow(clippy::too_many_arguments)]
    pub fn with_scores(
        ctx: &GpuContext,
        q: &wgpu::Buffer,
        k: &wgpu::Buffer,
        v: &wgpu::Buffer,
        out: &wgpu::Buffer,
        cache: &KvCache,
        layer: usize,
        n_head: u32,
        scratch: &AttentionScratch,
        scores: Scores,
        step: &wgpu::Buffer,
    ) -> Result<Self, GpuError> {
        if n_head == 0 || !n_head.is_multiple_of(cache.n_kv) || layer >= cache.k.len() {
            return Err(GpuError::Validation {
                what: "attention".into(),
                message: format!(
                    "n_head {n_head} must be a multiple of n_kv {}, layer {layer} < {}",
                    cache.n_kv,
                    cache.k.len()
                ),
            });
        }
        let hd4 = cache.head_dim / 4;
        let group = n_head / cache.n_kv;
        let (hpw, tpw, lph) = tile(group, hd4);
        let defs = ctx.base_defs().with("HPW", hpw).with("TPW", tpw).with("LPH", lph);
        let write = ctx.pipeline(kernels::ATTENTION, "kv_write", &defs)?;
        let split = ctx.pipeline(kernels::ATTENTION, "attend_split", &defs)?;
        // A decode step has one token: rows for more would be idle.
        let one_defs = ctx.base_defs().with("HPW", hpw).with("TPW", 1).with("LPH", lanes_per_row(hpw));
        let split_one = ctx.pipeline(kernels::ATTENTION, "attend_split", &one_defs)?;
        let merge = ctx.pipeline(kernels::ATTENTION, "attend_merge", &defs)?;
        let kvw4 = cache.n_kv * hd4;
        let words: [u32; 8] = [
            n_head,
            group,
            hd4,
            kvw4,
            cache.capacity,
            scores.scale.to_bits(),
            scratch.max_split,
            scores.window.unwrap_or(0),
        ];
        let params = uniform(ctx, "attention params", bytemuck::cast_slice(&words))?;
        let (kc, vc) = (&cache.k[layer], &cache.v[layer]);
        // The entry points use different subsets of the module's bindings.
        let write_bind = ctx.bind_numbered(
            &write,
            &[(1, k), (2, v), (3, kc), (4, vc), (6, &params), (7, step)],
        );
        let split_entries = [(0, q), (3, kc), (4, vc), (5, out), (6, &params), (7, step), (8, &scratch.acc), (9, &scratch.ml)];
        let split_bind = ctx.bind_numbered(&split, &split_entries);
        let split_one_bind = ctx.bind_numbered(&split_one, &split_entries);
        let merge_bind = ctx.bind_numbered(
            &merge,
            &[(5, out), (6, &params), (7, step), (8, &scratch.acc), (9, &scratch.ml)],
        );
        Ok(AttentionOp {
            write,
            write_bind,
            write_cache: true,
            split_one,
            split,
            merge,
            split_one_bind,
            split_bind,
            merge_bind,
            split_groups: n_head / hpw,
            tile_tokens: tpw,
            split_tokens: scratch.tokens,
            capacity: cache.capacity,
            kvw4,
            n_head,
        })
    }

    /// Leaves the cache write to the layer's RoPE ([`super::RopeOp::pair_into_cache`]), which
    /// rotates K straight into the cache: one dispatch fewer per layer and step.
    pub fn without_cache_write(mut self) -> Self {
        self.write_cache = false;
        self
    }

    /// The cache write, then attention (wgpu puts barriers between them). Steps of up to 16
    /// tokens over more than 256 keys attend split-K (split, then merge); others in one pass.
    /// `n_tokens` and `pos` must equal the step uniform's values for this submission
    /// (`n_tokens` ≤ 65535).
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, n_tokens: u32, pos: u32) {
        if n_tokens == 0 {
            return;
        }
        if self.write_cache {
            pass.set_pipeline(&self.write);
            pass.set_bind_group(0, &self.write_bind, &[]);
            let (a, b, c) = dispatch_1d(self.kvw4 * n_tokens, 256);
            super::dispatch(pass, a, b, c);
        }
        let n_split = attention_splits(pos.saturating_add(n_tokens).min(self.capacity));
        let split = n_tokens <= self.split_tokens && n_split > 1;
        let (pipeline, bind, tile_tokens) = if n_tokens == 1 {
            (&self.split_one, &self.split_one_bind, 1)
        } else {
            (&self.split, &self.split_bind, self.tile_tokens)
        };
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, bind, &[]);
        super::dispatch(pass, self.split_groups, if split { n_split } else { 1 }, n_tokens.div_ceil(tile_tokens));
        if split {
            pass.set_pipeline(&self.merge);
            pass.set_bind_group(0, &self.merge_bind, &[]);
            super::dispatch(pass, self.n_head, n_tokens, 1);
        }
    }
}
