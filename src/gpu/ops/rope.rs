//! Rotary position embedding (`shaders/rope.wgsl`), llama.cpp's "normal" style (adjacent
//! pairs) or its NEOX style (halves), at positions `step.pos + t`: in place, or for a layer's K
//! straight into the KV cache (with Q's, K's and V's biases added first where a model has them).

use super::{uniform, KvCache};
use crate::gpu::{dispatch_1d, kernels, GpuContext, GpuError};
use crate::model::{ModelConfig, RopeStyle};
use std::sync::Arc;

/// Invocations per workgroup (rope.wgsl's `@workgroup_size`).
const WG: u32 = 256;

/// The RoPE hyper-parameters shared by Q and K.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RopeParams {
    pub head_dim: u32,
    /// Leading dimensions of each head that are rotated (usually `head_dim`).
    pub rope_dim: u32,
    /// `rope_theta`.
    pub base: f32,
    /// Position multiplier for linear scaling (1 when unscaled).
    pub freq_scale: f32,
    pub style: RopeStyle,
    /// Multiplier of cos and sin (Phi-3's `rope.scaling.attn_factor`; 1 elsewhere).
    pub mscale: f32,
}

impl RopeParams {
    /// Layer `layer`'s RoPE (Gemma 3's local layers have a base of their own).
    pub fn for_layer(c: &ModelConfig, layer: usize) -> Self {
        let r = c.layer_rope(layer);
        RopeParams {
            head_dim: c.shape.head_dim as u32,
            rope_dim: c.rope_dim as u32,
            base: r.base,
            freq_scale: r.freq_scale,
            style: c.graph.rope_style,
            mscale: c.rope_attn_factor,
        }
    }
}

/// Per-head RMSNorms of Q and K before the rotation (Qwen3's and Gemma 3's), for
/// [`RopeOp::pair_into_cache`]: each weight f32 `[head_dim]`, shared by the heads.
#[derive(Clone, Copy)]
pub struct QkNorm<'a> {
    pub q: &'a wgpu::Buffer,
    pub k: &'a wgpu::Buffer,
    pub eps: f32,
}

/// Where [`RopeOp::pair_into_cache`] puts K and V.
struct KvTarget<'a> {
    v: &'a wgpu::Buffer,
    k_cache: &'a wgpu::Buffer,
    v_cache: &'a wgpu::Buffer,
    capacity: u32,
    /// Q's, K's and V's biases.
    bias: Option<[&'a wgpu::Buffer; 3]>,
    norm: Option<QkNorm<'a>>,
}

/// Rotates `x` (`[n_tokens][n_heads][head_dim]` f32) in place; [`RopeOp::pair`] rotates a
/// layer's Q and K in one dispatch.
pub struct RopeOp {
    pipeline: Arc<wgpu::ComputePipeline>,
    bind: wgpu::BindGroup,
    per_token: u32,
}

impl RopeOp {
    /// `freq_factors`, when given, is an f32 buffer of `rope_dim / 2` per-pair divisors
    /// (Llama 3.1 scaling); without it the divisors are 1.
    pub fn new(
        ctx: &GpuContext,
        x: &wgpu::Buffer,
        n_heads: u32,
        p: &RopeParams,
        freq_factors: Option<&wgpu::Buffer>,
        step: &wgpu::Buffer,
    ) -> Result<Self, GpuError> {
        Self::build(ctx, x, n_heads, None, None, p, freq_factors, step)
    }

    /// Rotates `x` (`n_heads` heads) and `x2` (`n_heads2` heads, same head size and positions)
    /// in one dispatch: a layer's Q and K.
    #[allow(clippy::too_many_arguments)]
    pub fn pair(
        ctx: &GpuContext,
        x: &wgpu::Buffer,
        n_heads: u32,
        x2: &wgpu::Buffer,
        n_heads2: u32,
        p: &RopeParams,
        freq_factors: Option<&wgpu::Buffer>,
        step: &wgpu::Buffer,
    ) -> Result<Self, GpuError> {
        if n_heads2 == 0 || x == x2 {
            return Err(GpuError::Validation {
                what: "rope".into(),
                message: "the second buffer needs heads of its own".into(),
            });
        }
        Self::build(ctx, x, n_heads, Some((x2, n_heads2)), None, p, freq_factors, step)
    }

    /// Rotates a layer's Q (`q`, `n_heads` heads) in place, and its K (`k`, the cache's heads)
    /// straight into rows `step.pos + t` of `cache`'s layer `layer` along with V (`v`, f32 like
    /// `k`): what the attention's own cache write did, in the same dispatch (then build the
    /// attention [`without_cache_write`](super::AttentionOp::without_cache_write)). `k` keeps
    /// its unrotated values. With `bias` (f32 Q, K and V biases, one row each), each is added
    /// to its projection first: Q's in place. With `norm`, each head of Q and K is normalized
    /// first, so that the norms need no dispatch of their own (not with `bias`; every pair
    /// rotated, and 256 a multiple of the invocations per head: head_dim a power of two up to
    /// 1024 with halves, 512 with adjacent pairs).
    #[allow(clippy::too_many_arguments)]
    pub fn pair_into_cache(
        ctx: &GpuContext,
        q: &wgpu::Buffer,
        n_heads: u32,
        k: &wgpu::Buffer,
        v: &wgpu::Buffer,
        cache: &KvCache,
        layer: usize,
        p: &RopeParams,
        freq_factors: Option<&wgpu::Buffer>,
        bias: Option<[&wgpu::Buffer; 3]>,
        norm: Option<QkNorm<'_>>,
        step: &wgpu::Buffer,
    ) -> Result<Self, GpuError> {
        if cache.head_dim != p.head_dim || layer >= cache.k.len() || q == k {
            return Err(GpuError::Validation {
                what: "rope".into(),
                message: format!("the cache's head size {} and layers {} do not fit head_dim {} and layer {layer}", cache.head_dim, cache.k.len(), p.head_dim),
            });
        }
        if bias.is_some() && p.rope_dim != p.head_dim {
            return Err(GpuError::Validation {
                what: "rope".into(),
                message: "biases need every pair rotated (rope_dim = head_dim)".into(),
            });
        }
        if let Some(n) = norm {
            // (That a head's invocations fit a workgroup, `build` checks.)
            let fits = bias.is_none() && p.rope_dim == p.head_dim;
            if !fits || n.q.size() < 4 * p.head_dim as u64 || n.k.size() < 4 * p.head_dim as u64 {
                return Err(GpuError::Validation {
                    what: "rope".into(),
                    message: format!("per-head norms need no biases, every pair rotated (rope_dim {} of head_dim {}), and weights of head_dim values", p.rope_dim, p.head_dim),
                });
            }
        }
        let kv = KvTarget { v, k_cache: &cache.k[layer], v_cache: &cache.v[layer], capacity: cache.capacity, bias, norm };
        Self::build(ctx, q, n_heads, Some((k, cache.n_kv)), Some(kv), p, freq_factors, step)
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        ctx: &GpuContext,
        x: &wgpu::Buffer,
        n_heads: u32,
        second: Option<(&wgpu::Buffer, u32)>,
        kv: Option<KvTarget<'_>>,
        p: &RopeParams,
        freq_factors: Option<&wgpu::Buffer>,
        step: &wgpu::Buffer,
    ) -> Result<Self, GpuError> {
        let bad = |m: String| {
            Err(GpuError::Validation {
                what: "rope".into(),
                message: m,
            })
        };
        if !p.head_dim.is_multiple_of(2)
            || !p.rope_dim.is_multiple_of(2)
            || p.rope_dim > p.head_dim
            || p.rope_dim == 0
            || n_heads == 0
        {
            return bad(format!(
                "need even rope_dim ({}) ≤ head_dim ({}) and n_heads > 0",
                p.rope_dim, p.head_dim
            ));
        }
        let mut defs = ctx.base_defs();
        if freq_factors.is_some() {
            defs.set("FREQ_FACTORS", 1);
        }
        if second.is_some() {
            defs.set("PAIR", 1);
        }
        if kv.is_some() {
            defs.set("KV_WRITE", 1);
        }
        if kv.as_ref().is_some_and(|kv| kv.bias.is_some()) {
            defs.set("BIAS", 1);
        }
        let norm = kv.as_ref().and_then(|kv| kv.norm);
        if norm.is_some() {
            defs.set("QK_NORM", 1);
        }
        let halves = p.style == RopeStyle::Halves;
        if halves {
            if !p.rope_dim.is_multiple_of(4) {
                return bad(format!("rotating halves needs rope_dim a multiple of 4, not {}", p.rope_dim));
            }
            defs.set("HALVES", 1);
        }
        let n_pairs = p.rope_dim / 2;
        // Invocations per head of the first buffer and of the second: with the cache write every
        // pair of K has one; with halves every two pairs of a head (rope.wgsl).
        let (first_pairs, second_pairs) = match (halves, kv.is_some()) {
            (true, true) => (n_pairs / 2, n_pairs / 2 + (p.head_dim - p.rope_dim) / 2),
            (true, false) => (n_pairs / 2, n_pairs / 2),
            (false, true) => (n_pairs, p.head_dim / 2),
            (false, false) => (n_pairs, n_pairs),
        };
        // The norms' storage barrier orders only a workgroup: a head's invocations must share one.
        if norm.is_some() && (first_pairs != second_pairs || !WG.is_multiple_of(first_pairs)) {
            return bad(format!("per-head norms need a head's invocations ({first_pairs}) to divide the workgroup's {WG}"));
        }
        let pipeline = ctx.pipeline(kernels::ROPE, "rope", &defs)?;
        // Exactly the reference's expression, so theta_base matches it bit for bit.
        let theta_scale = p.base.powf(-2.0 / p.rope_dim as f32);
        // Padded to a multiple of 16 bytes.
        let words: [u32; 12] = [
            n_heads,
            p.head_dim,
            n_pairs,
            theta_scale.to_bits(),
            p.freq_scale.to_bits(),
            second.map_or(0, |s| s.1),
            kv.as_ref().map_or(0, |kv| kv.capacity),
            p.mscale.to_bits(),
            norm.map_or(0.0, |n| n.eps).to_bits(),
            0,
            0,
            0,
        ];
        let params = uniform(ctx, "rope params", bytemuck::cast_slice(&words))?;
        // Binding numbers as declared in rope.wgsl (the second buffer is binding 4 either way).
        let mut entries: Vec<(u32, &wgpu::Buffer)> = vec![(0, x)];
        match freq_factors {
            Some(ff) => entries.extend([(1, ff), (2, &params), (3, step)]),
            None => entries.extend([(1, &params), (2, step)]),
        }
        entries.extend(second.map(|s| (4, s.0)));
        if let Some(kv) = &kv {
            entries.extend([(5, kv.v), (6, kv.k_cache), (7, kv.v_cache)]);
            if let Some([bq, bk, bv]) = kv.bias {
                entries.extend([(8, bq), (9, bk), (10, bv)]);
            }
            if let Some(n) = kv.norm {
                entries.extend([(11, n.q), (12, n.k)]);
            }
        }
        let bind = ctx.bind_numbered(&pipeline, &entries);
        Ok(RopeOp {
            pipeline,
            bind,
            per_token: n_heads * first_pairs + second.map_or(0, |s| s.1) * second_pairs,
        })
    }

    /// `n_tokens` must equal the step uniform's value for this submission.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, n_tokens: u32) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind, &[]);
        let (a, b, c) = dispatch_1d(self.per_token * n_tokens, WG);
        super::dispatch(pass, a, b, c);
    }
}
