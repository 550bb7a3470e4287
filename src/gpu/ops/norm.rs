//! RMSNorm (`shaders/norm.wgsl`), optionally after a residual add: one 256-invocation
//! workgroup per row (a token's, or a head's).

use super::uniform;
use crate::gpu::{kernels, GpuContext, GpuError};
use std::sync::Arc;

/// `out[t] = x[t] / sqrt(mean(x[t]²) + eps) * w` over `[n_tokens][dim]`; `w` is f32 `[dim]`.
/// `out` may be `x` itself (normalized in place) or another buffer.
pub struct RmsNormOp {
    pipeline: Arc<wgpu::ComputePipeline>,
    bind: wgpu::BindGroup,
    /// Rows per token.
    rows: u32,
}

impl RmsNormOp {
    pub fn new(ctx: &GpuContext, x: &wgpu::Buffer, w: &wgpu::Buffer, out: &wgpu::Buffer, dim: u32, eps: f32, step: &wgpu::Buffer) -> Result<Self, GpuError> {
        Self::build(ctx, x, None, w, out, dim, 1, eps, step)
    }

    /// Normalizes every head of `x` (`[n_tokens][heads][dim]`) in place by its own RMS, with the
    /// weight `w` (f32 `[dim]`) shared by the heads: Qwen3's and Gemma 3's norms of Q and K.
    #[allow(clippy::too_many_arguments)]
    pub fn per_head(ctx: &GpuContext, x: &wgpu::Buffer, w: &wgpu::Buffer, dim: u32, heads: u32, eps: f32, step: &wgpu::Buffer) -> Result<Self, GpuError> {
        if heads == 0 {
            return Err(GpuError::Validation { what: "rms_norm".into(), message: "heads must be > 0".into() });
        }
        Self::build(ctx, x, None, w, x, dim, heads, eps, step)
    }

    /// `x[t] += r[t] / sqrt(mean(r[t]²) + eps) * w`: a block output `r` through its post-norm
    /// (Gemma 3's) and into the residual stream `x` in one pass, as the separate norm and add
    /// compute it.
    pub fn add_normed(ctx: &GpuContext, x: &wgpu::Buffer, r: &wgpu::Buffer, w: &wgpu::Buffer, dim: u32, eps: f32, step: &wgpu::Buffer) -> Result<Self, GpuError> {
        if dim == 0 || x == r {
            return Err(GpuError::Validation { what: "rms_norm".into(), message: "dim must be > 0, and the output another buffer than x".into() });
        }
        let mut defs = ctx.base_defs();
        defs.set("ADD_NORMED", 1);
        let pipeline = ctx.pipeline(kernels::NORM, "rms_norm", &defs)?;
        let params = uniform(ctx, "rms_norm params", bytemuck::cast_slice(&[dim, eps.to_bits(), 1, 0]))?;
        let bind = ctx.bind_numbered(&pipeline, &[(0, x), (1, w), (2, &params), (3, step), (5, r)]);
        Ok(RmsNormOp { pipeline, bind, rows: 1 })
    }

    /// [`per_head`](Self::per_head) on two buffers in one dispatch, each `(x, w, heads)` with
    /// heads of `dim` values: a layer's Q and K, whose norms run back to back before RoPE.
    #[allow(clippy::too_many_arguments)]
    pub fn per_head_pair(
        ctx: &GpuContext,
        (x, w, heads): (&wgpu::Buffer, &wgpu::Buffer, u32),
        (x2, w2, heads2): (&wgpu::Buffer, &wgpu::Buffer, u32),
        dim: u32,
        eps: f32,
        step: &wgpu::Buffer,
    ) -> Result<Self, GpuError> {
        if heads == 0 || heads2 == 0 || dim == 0 {
            return Err(GpuError::Validation { what: "rms_norm".into(), message: "heads and dim must be > 0".into() });
        }
        if x == x2 {
            return Err(GpuError::Validation { what: "rms_norm".into(), message: "the two buffers of a pair must differ".into() });
        }
        let mut defs = ctx.base_defs();
        defs.set("IN_PLACE", 1);
        defs.set("PAIR", 1);
        let pipeline = ctx.pipeline(kernels::NORM, "rms_norm", &defs)?;
        let params = uniform(ctx, "rms_norm params", bytemuck::cast_slice(&[dim, eps.to_bits(), heads, heads2]))?;
        let bind = ctx.bind_numbered(&pipeline, &[(0, x), (1, w), (2, &params), (3, step), (6, x2), (7, w2)]);
        Ok(RmsNormOp { pipeline, bind, rows: heads + heads2 })
    }

    /// `x[t] += r[t]` (kept in `x`), then `out[t] = x[t] / sqrt(mean(x[t]²) + eps) * w`: a
    /// block's residual add fused with the next norm. `out` must not be `x`.
    #[allow(clippy::too_many_arguments)]
    pub fn with_residual(
        ctx: &GpuContext,
        x: &wgpu::Buffer,
        r: &wgpu::Buffer,
        w: &wgpu::Buffer,
        out: &wgpu::Buffer,
        dim: u32,
        eps: f32,
        step: &wgpu::Buffer,
    ) -> Result<Self, GpuError> {
        if x == out || x == r {
            return Err(GpuError::Validation {
                what: "rms_norm".into(),
                message: "with a residual, the output and the residual must be other buffers than x".into(),
            });
        }
        Self::build(ctx, x, Some(r), w, out, dim, 1, eps, step)
    }

    #[allow(clippy::too_many_arguments)]
    fn build(ctx: &GpuContext, x: &wgpu::Buffer, r: Option<&wgpu::Buffer>, w: &wgpu::Buffer, out: &wgpu::Buffer, dim: u32, rows: u32, eps: f32, step: &wgpu::Buffer) -> Result<Self, GpuError> {
        if dim == 0 {
            return Err(GpuError::Validation {
                what: "rms_norm".into(),
                message: "dim must be > 0".into(),
            });
        }
        let in_place = x == out;
        let mut defs = ctx.base_defs();
        if r.is_some() {
            defs.set("RESIDUAL", 1);
        } else if in_place {
            defs.set("IN_PLACE", 1);
        }
        let pipeline = ctx.pipeline(kernels::NORM, "rms_norm", &defs)?;
        let params = uniform(ctx, "rms_norm params", bytemuck::cast_slice(&[dim, eps.to_bits(), rows, 0]))?;
        let bind = if in_place {
            ctx.bind(
                &pipeline,
                &[
                    x.as_entire_binding(),
                    w.as_entire_binding(),
                    params.as_entire_binding(),
                    step.as_entire_binding(),
                ],
            )
        } else {
            let mut entries = vec![
                x.as_entire_binding(),
                w.as_entire_binding(),
                out.as_entire_binding(),
                params.as_entire_binding(),
                step.as_entire_binding(),
            ];
            entries.extend(r.map(|r| r.as_entire_binding()));
            ctx.bind(&pipeline, &entries)
        };
        Ok(RmsNormOp { pipeline, bind, rows })
    }

    /// `n_tokens` must equal the step uniform's value for this submission.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, n_tokens: u32) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind, &[]);
        // One workgroup per row, in a 2-D grid past the 65535 a dimension allows.
        let (a, b, c) = crate::gpu::dispatch_1d(n_tokens * self.rows, 1);
        super::dispatch(pass, a, b, c);
    }
}
