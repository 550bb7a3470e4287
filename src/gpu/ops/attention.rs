//! The GPU KV cache and causal grouped-query attention (`shaders/attention.wgsl`).

use super::uniform;
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

/// Keys per split of the split-K kernels (`KPS` in attention.wgsl).
const KEYS_PER_SPLIT: u32 = 256;
/// Steps of at most this many tokens attend with the split-K kernels; longer ones (prefill)
/// already give every (head, token) a workgroup of its own.
const SPLIT_TOKENS: u32 = 16;
/// The split kernels' partial results are kept to about this size (very long contexts lower
/// the tokens per step that use them).
const SPLIT_SCRATCH_BYTES: u64 = 16 << 20;

/// The splits a context of `n_ctx` keys is cut into (the shaders' `n_splits()`).
fn splits(n_ctx: u32) -> u32 {
    n_ctx.div_ceil(KEYS_PER_SPLIT)
}

/// Partial results of the split-K attention kernels, shared by every layer (their dispatches
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
    /// `(tokens, bytes)`: the largest step (at most `max_tokens` and 16) whose partial results
    /// stay within 16 MiB and the binding limit, and the bytes they take. Also what the memory
    /// plan counts.
    pub fn size(n_head: u32, head_dim: u32, capacity: u32, max_tokens: u32, binding_limit: u64) -> (u32, u64) {
        let per_token = n_head as u64 * splits(capacity) as u64 * (head_dim as u64 * 4 + 8);
        let cap = SPLIT_SCRATCH_BYTES.min(binding_limit);
        let tokens = (cap / per_token.max(1)).min(max_tokens.min(SPLIT_TOKENS) as u64) as u32;
        (tokens, tokens as u64 * per_token)
    }

    /// Scratch for attention over `cache` with `n_head` query heads and steps of up to
    /// `max_tokens` tokens.
    pub fn new(ctx: &GpuContext, cache: &KvCache, n_head: u32, max_tokens: u32) -> Result<Self, GpuError> {
        let limit = ctx.limits.max_storage_buffer_binding_size.min(ctx.limits.max_buffer_size);
        let (tokens, _) = Self::size(n_head, cache.head_dim, cache.capacity, max_tokens, limit);
        let max_split = splits(cache.capacity);
        let rows = (tokens * n_head * max_split) as u64;
        Ok(AttentionScratch {
            acc: ctx.storage("attention partials", rows * cache.head_dim as u64 * 4, wgpu::BufferUsages::empty())?,
            ml: ctx.storage("attention partial max/sum", rows * 8, wgpu::BufferUsages::empty())?,
            tokens,
            max_split,
        })
    }
}

/// Query heads per split workgroup: the largest divisor of `group` that is at most 8 with
/// `heads · head_dim/4 ≤ 256` (the shader's workgroup arrays), and the invocations per head
/// of its softmax step.
fn heads_per_workgroup(group: u32, hd4: u32) -> (u32, u32) {
    let hpw = (1..=8.min(group)).rev().find(|&d| group.is_multiple_of(d) && d * hd4 <= 256).unwrap_or(1);
    (hpw, 128 / hpw.next_power_of_two())
}

/// Writes the step's keys and values into one layer of the cache, then attends:
/// `out[t][h] = Σ_{s ≤ pos+t} softmax_s(q[t][h]·k[s][h/group] / sqrt(head_dim)) v[s][h/group]`.
/// `q`, `out`: f32 `[n_tokens][n_head][head_dim]`; `k`, `v`: f32 `[n_tokens][n_kv][head_dim]`,
/// already rotated. The caller keeps `step.pos + n_tokens ≤ capacity` (rows past the capacity
/// are not written and not attended to).
pub struct AttentionOp {
    write: Arc<wgpu::ComputePipeline>,
    attend: Arc<wgpu::ComputePipeline>,
    write_bind: wgpu::BindGroup,
    attend_bind: wgpu::BindGroup,
    split: Arc<wgpu::ComputePipeline>,
    merge: Arc<wgpu::ComputePipeline>,
    split_bind: wgpu::BindGroup,
    merge_bind: wgpu::BindGroup,
    /// Workgroups per (split, token) of the split kernel: KV heads × query-head groups.
    split_groups: u32,
    split_tokens: u32,
    capacity: u32,
    kvw4: u32,
    n_head: u32,
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
        let defs = ctx.base_defs();
        let write = ctx.pipeline(kernels::ATTENTION, "kv_write", &defs)?;
        let attend = ctx.pipeline(kernels::ATTENTION, "attend", &defs)?;
        let hd4 = cache.head_dim / 4;
        let group = n_head / cache.n_kv;
        let (hpw, lph) = heads_per_workgroup(group, hd4);
        let split_defs = defs.clone().with("SPLIT", 1).with("HPW", hpw).with("LPH", lph);
        let split = ctx.pipeline(kernels::ATTENTION, "attend_split", &split_defs)?;
        let merge = ctx.pipeline(kernels::ATTENTION, "attend_merge", &split_defs)?;
        let kvw4 = cache.n_kv * hd4;
        let scale = 1.0 / (cache.head_dim as f32).sqrt();
        let words: [u32; 8] = [
            n_head,
            group,
            hd4,
            kvw4,
            cache.capacity,
            scale.to_bits(),
            scratch.max_split,
            0,
        ];
        let params = uniform(ctx, "attention params", bytemuck::cast_slice(&words))?;
        let (kc, vc) = (&cache.k[layer], &cache.v[layer]);
        // The two entry points use different subsets of the module's bindings, so their
        // bind groups name binding numbers explicitly.
        let bind = |p: &wgpu::ComputePipeline, entries: &[(u32, &wgpu::Buffer)]| {
            let entries: Vec<wgpu::BindGroupEntry> = entries
                .iter()
                .map(|&(binding, b)| wgpu::BindGroupEntry {
                    binding,
                    resource: b.as_entire_binding(),
                })
                .collect();
            ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("attention"),
                layout: &p.get_bind_group_layout(0),
                entries: &entries,
            })
        };
        let write_bind = bind(
            &write,
            &[(1, k), (2, v), (3, kc), (4, vc), (6, &params), (7, step)],
        );
        let attend_bind = bind(
            &attend,
            &[(0, q), (3, kc), (4, vc), (5, out), (6, &params), (7, step)],
        );
        let split_bind = bind(
            &split,
            &[(0, q), (3, kc), (4, vc), (6, &params), (7, step), (8, &scratch.acc), (9, &scratch.ml)],
        );
        let merge_bind = bind(
            &merge,
            &[(5, out), (6, &params), (7, step), (8, &scratch.acc), (9, &scratch.ml)],
        );
        Ok(AttentionOp {
            write,
            attend,
            write_bind,
            attend_bind,
            split,
            merge,
            split_bind,
            merge_bind,
            split_groups: n_head / hpw,
            split_tokens: scratch.tokens,
            capacity: cache.capacity,
            kvw4,
            n_head,
        })
    }

    /// The cache write, then attention: split-K (split, then merge) for steps of up to 16
    /// tokens, the single-pass kernel for longer ones (wgpu puts barriers between them).
    /// `n_tokens` and `pos` must equal the step uniform's values for this submission
    /// (`n_tokens` ≤ 65535).
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, n_tokens: u32, pos: u32) {
        pass.set_pipeline(&self.write);
        pass.set_bind_group(0, &self.write_bind, &[]);
        let (a, b, c) = dispatch_1d(self.kvw4 * n_tokens, 256);
        pass.dispatch_workgroups(a, b, c);
        if n_tokens <= self.split_tokens {
            let n_split = splits(pos.saturating_add(n_tokens).min(self.capacity));
            pass.set_pipeline(&self.split);
            pass.set_bind_group(0, &self.split_bind, &[]);
            pass.dispatch_workgroups(self.split_groups, n_split, n_tokens);
            pass.set_pipeline(&self.merge);
            pass.set_bind_group(0, &self.merge_bind, &[]);
            pass.dispatch_workgroups(self.n_head, n_tokens, 1);
        } else {
            pass.set_pipeline(&self.attend);
            pass.set_bind_group(0, &self.attend_bind, &[]);
            pass.dispatch_workgroups(self.n_head, n_tokens, 1);
        }
    }
}
