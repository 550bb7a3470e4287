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
        let kvw4 = cache.n_kv * hd4;
        let scale = 1.0 / (cache.head_dim as f32).sqrt();
        let words: [u32; 8] = [
            n_head,
            n_head / cache.n_kv,
            hd4,
            kvw4,
            cache.capacity,
            scale.to_bits(),
            0,
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
        Ok(AttentionOp {
            write,
            attend,
            write_bind,
            attend_bind,
            kvw4,
            n_head,
        })
    }

    /// Two dispatches: the cache write, then attention (wgpu puts a barrier between them).
    /// `n_tokens` must equal the step uniform's value for this submission (≤ 65535).
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, n_tokens: u32) {
        pass.set_pipeline(&self.write);
        pass.set_bind_group(0, &self.write_bind, &[]);
        let (a, b, c) = dispatch_1d(self.kvw4 * n_tokens, 256);
        pass.dispatch_workgroups(a, b, c);
        pass.set_pipeline(&self.attend);
        pass.set_bind_group(0, &self.attend_bind, &[]);
        pass.dispatch_workgroups(self.n_head, n_tokens, 1);
    }
}
