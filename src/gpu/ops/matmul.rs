//! Weight products and the embedding lookup on quantized weights (`shaders/matvec.wgsl`,
//! `shaders/matmul.wgsl`, `shaders/embedding.wgsl`; decoders in `shaders/quant.wgsl`).

use super::uniform;
use crate::gpu::weights::{type_define, GpuWeight};
use crate::gpu::{dispatch_1d, kernels, GpuContext, GpuError, ShaderDefs};
use std::sync::Arc;

/// Invocations per matvec workgroup.
const MATVEC_WG: u32 = 64;
/// Tile of the prefill kernel: rows × tokens (`BN`, `BM` in matmul.wgsl).
const MATMUL_ROWS: u32 = 64;
const MATMUL_TOKENS: u32 = 32;
/// Invocations per embedding workgroup.
const EMBED_WG: u32 = 64;

/// The largest power of two not above `n` (n ≥ 1).
fn pow2_floor(n: u32) -> u32 {
    1 << (31 - n.max(1).leading_zeros())
}

/// Invocations that share one row in matvec. On a GPU: a power of two giving each at least
/// eight units where the row is long enough (at most 16), so that neighbouring invocations read
/// neighbouring blocks. On a CPU device (lavapipe) invocations are SIMD lanes and loads are
/// gathers: one row per invocation, which lets the activations be broadcast (see matvec.wgsl).
fn matvec_threads_per_row(ctx: &GpuContext, units: usize) -> u32 {
    if ctx.adapter_info.device_type == wgpu::DeviceType::Cpu {
        return 1;
    }
    let mut tpr = 1u32;
    while tpr < 16 && units >= 8 * tpr as usize {
        tpr *= 2;
    }
    tpr
}

/// Defines for the activation-reading kernels.
fn activation_defs(ctx: &GpuContext, w: &GpuWeight) -> ShaderDefs {
    let mut d = ctx
        .base_defs()
        .with(type_define(w.ty), 1)
        .with("ACTIVATIONS", 1);
    if w.cols % 4 == 0 {
        d.set("X_VEC4", 1);
    }
    if w.cols % 32 != 0 {
        d.set("XMASK", 1);
    }
    d
}

fn check_size(what: &str, buf: &wgpu::Buffer, needed: u64) -> Result<(), GpuError> {
    if buf.size() < needed {
        return Err(GpuError::Validation {
            what: what.into(),
            message: format!("buffer holds {} bytes, needs at least {needed}", buf.size()),
        });
    }
    Ok(())
}

struct MatmulPart {
    vec_bind: wgpu::BindGroup,
    mat_bind: wgpu::BindGroup,
    rows: u32,
    vec_groups: (u32, u32, u32),
}

/// `y[t] = W · x[t]` for a weight `W` of `rows` rows × `cols` columns: x is f32
/// `[max_tokens][cols]`, y f32 `[max_tokens][rows]`. One token runs the matrix-vector kernel, more
/// the tiled matrix-matrix kernel; both dispatch once per weight part.
pub struct MatmulOp {
    vec: Arc<wgpu::ComputePipeline>,
    mat: Arc<wgpu::ComputePipeline>,
    parts: Vec<MatmulPart>,
}

impl MatmulOp {
    pub fn new(
        ctx: &GpuContext,
        w: &GpuWeight,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        step: &wgpu::Buffer,
    ) -> Result<Self, GpuError> {
        Self::with_threads_per_row(ctx, w, x, y, step, matvec_threads_per_row(ctx, w.units()))
    }

    /// [`MatmulOp::new`] with the matvec kernel's invocations per row chosen by the caller (tests
    /// and tuning): a power of two up to 64, lowered to the smallest subgroup size.
    pub fn with_threads_per_row(
        ctx: &GpuContext,
        w: &GpuWeight,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        step: &wgpu::Buffer,
        threads_per_row: u32,
    ) -> Result<Self, GpuError> {
        check_size("matmul input", x, 4 * w.cols as u64)?;
        check_size("matmul output", y, 4 * w.rows as u64)?;
        let mut tpr = pow2_floor(threads_per_row.clamp(1, MATVEC_WG));
        let defs = activation_defs(ctx, w);
        let mut vec_defs = defs.clone().with("WG", MATVEC_WG);
        if ctx.features.subgroups {
            // The shuffle reduction stays within one subgroup.
            tpr = tpr.min(pow2_floor(ctx.features.subgroup_min_size));
            if tpr == 1 && ctx.features.subgroup_min_size >= 8 {
                vec_defs.set("XBCAST", 1);
            }
        }
        let vec = ctx.pipeline(kernels::MATVEC, "matvec", &vec_defs.with("TPR", tpr))?;
        let mat = ctx.pipeline(kernels::MATMUL, "matmul", &defs)?;
        let mut parts = Vec::with_capacity(w.parts().len());
        for (i, p) in w.parts().iter().enumerate() {
            let params = uniform(
                ctx,
                "matmul params",
                bytemuck::bytes_of(&w.part_params(i, w.rows)),
            )?;
            let entries = [
                p.buffer.as_entire_binding(),
                x.as_entire_binding(),
                y.as_entire_binding(),
                params.as_entire_binding(),
                step.as_entire_binding(),
            ];
            parts.push(MatmulPart {
                vec_bind: ctx.bind(&vec, &entries),
                mat_bind: ctx.bind(&mat, &entries),
                rows: p.rows as u32,
                vec_groups: dispatch_1d(p.rows as u32, MATVEC_WG / tpr),
            });
        }
        Ok(MatmulOp { vec, mat, parts })
    }

    /// `n_tokens` must equal the step uniform's value for this submission.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, n_tokens: u32) {
        if n_tokens == 0 {
            return;
        }
        if n_tokens == 1 {
            pass.set_pipeline(&self.vec);
            for p in &self.parts {
                pass.set_bind_group(0, &p.vec_bind, &[]);
                pass.dispatch_workgroups(p.vec_groups.0, p.vec_groups.1, p.vec_groups.2);
            }
        } else {
            pass.set_pipeline(&self.mat);
            for p in &self.parts {
                pass.set_bind_group(0, &p.mat_bind, &[]);
                pass.dispatch_workgroups(
                    p.rows.div_ceil(MATMUL_ROWS),
                    n_tokens.div_ceil(MATMUL_TOKENS),
                    1,
                );
            }
        }
    }
}

/// `out[t] = W[ids[t]]` dequantized to f32 `[max_tokens][cols]`; ids are u32 `[max_tokens]`.
/// Ids past the table's last row give zeros.
pub struct EmbeddingOp {
    pipeline: Arc<wgpu::ComputePipeline>,
    binds: Vec<wgpu::BindGroup>,
    units: u32,
}

impl EmbeddingOp {
    pub fn new(
        ctx: &GpuContext,
        w: &GpuWeight,
        ids: &wgpu::Buffer,
        out: &wgpu::Buffer,
        step: &wgpu::Buffer,
    ) -> Result<Self, GpuError> {
        check_size("embedding ids", ids, 4)?;
        check_size("embedding output", out, 4 * w.cols as u64)?;
        let pipeline = ctx.pipeline(
            kernels::EMBEDDING,
            "embed",
            &ctx.base_defs().with(type_define(w.ty), 1),
        )?;
        let mut binds = Vec::with_capacity(w.parts().len());
        for (i, p) in w.parts().iter().enumerate() {
            let params = uniform(
                ctx,
                "embedding params",
                bytemuck::bytes_of(&w.part_params(i, w.cols)),
            )?;
            binds.push(ctx.bind(
                &pipeline,
                &[
                    p.buffer.as_entire_binding(),
                    ids.as_entire_binding(),
                    out.as_entire_binding(),
                    params.as_entire_binding(),
                    step.as_entire_binding(),
                ],
            ));
        }
        Ok(EmbeddingOp {
            pipeline,
            binds,
            units: w.units() as u32,
        })
    }

    /// `n_tokens` must equal the step uniform's value for this submission.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, n_tokens: u32) {
        if n_tokens == 0 {
            return;
        }
        pass.set_pipeline(&self.pipeline);
        let (a, b, c) = dispatch_1d(n_tokens * self.units, EMBED_WG);
        for bind in &self.binds {
            pass.set_bind_group(0, bind, &[]);
            pass.dispatch_workgroups(a, b, c);
        }
    }
}
