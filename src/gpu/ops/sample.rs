//! Argmax, top-k and the seeded draw over the logits on the GPU (`shaders/sample.wgsl`), so a
//! decoding step reads back its token's 4 bytes (greedy or sampled), or `8·K` bytes for the top
//! K, instead of the whole vocabulary. Ranking is by logit, descending, ties to the lowest id.

use super::uniform;
use crate::gpu::{kernels, GpuContext, GpuError, ShaderDefs};
use std::sync::Arc;

/// Logits per pass-1 workgroup (`BLOCK` in the shader).
const BLOCK: u32 = 2048;
/// Pass-2 workgroup size: the most pass-1 blocks it can merge.
const MAX_PARTS: u32 = 256;
/// The largest K supported.
pub const MAX_TOP_K: u32 = 64;

/// The dispatches shared by argmax (K = 1) and top-k: for argmax each block's best, then the
/// merge; for top-k each block's top M, the threshold T that they give, each block's best
/// down to T, then the merge (see sample.wgsl).
struct Select {
    /// (pipeline, bind group, workgroups) in order.
    passes: Vec<(Arc<wgpu::ComputePipeline>, wgpu::BindGroup, u32)>,
}

impl Select {
    fn new(
        ctx: &GpuContext,
        logits: &wgpu::Buffer,
        n: u32,
        k: u32,
        out: &wgpu::Buffer,
        argmax: bool,
    ) -> Result<Self, GpuError> {
        let n_parts = n.div_ceil(BLOCK);
        if n == 0 || n_parts > MAX_PARTS || k == 0 || k > MAX_TOP_K || k > n {
            return Err(GpuError::Validation {
                what: "top-k".into(),
                message: format!(
                    "need 1 ≤ k ≤ min({MAX_TOP_K}, n) and 1 ≤ n ≤ {} (k {k}, n {n})",
                    BLOCK * MAX_PARTS
                ),
            });
        }
        let out_bytes = if argmax { 4 } else { k as u64 * 8 };
        if logits.size() < n as u64 * 4 || out.size() < out_bytes {
            return Err(GpuError::Validation {
                what: "top-k".into(),
                message: format!(
                    "logits buffer {} bytes (needs {}), output buffer {} bytes (needs {out_bytes})",
                    logits.size(),
                    n as u64 * 4,
                    out.size()
                ),
            });
        }
        let mut defs = ctx.base_defs();
        if argmax {
            defs.set("ARGMAX", 1);
        }
        let parts = ctx.storage(
            "top-k partials",
            n_parts as u64 * k as u64 * 8,
            wgpu::BufferUsages::empty(),
        )?;
        // Candidates per block for the threshold: about twice a fair share of K.
        let m = if argmax { k } else { (2 * k.div_ceil(n_parts)).min(k) };
        let params = uniform(
            ctx,
            "top-k params",
            bytemuck::cast_slice(&[n, k, n_parts, m]),
        )?;
        // The passes use different subsets of the module's bindings.
        let mut passes = Vec::new();
        let mut add = |entry: &str, defs: &ShaderDefs, entries: &[(u32, &wgpu::Buffer)], groups: u32| -> Result<(), GpuError> {
            let p = ctx.pipeline(kernels::SAMPLE, entry, defs)?;
            let b = ctx.bind_numbered(&p, entries);
            passes.push((p, b, groups));
            Ok(())
        };
        // The passes are one entry point, compiled per pass (see shaders/sample.wgsl).
        let merge = defs.clone().with("MERGE", 1);
        add("topk", &defs, &[(0, logits), (1, &parts), (3, &params)], n_parts)?;
        if !argmax {
            let thresh = ctx.storage("top-k threshold", 4, wgpu::BufferUsages::empty())?;
            add("topk", &merge.clone().with("THRESHOLD", 1), &[(1, &parts), (3, &params), (4, &thresh)], 1)?;
            add("topk", &defs.clone().with("PRUNED", 1), &[(0, logits), (1, &parts), (3, &params), (4, &thresh)], n_parts)?;
        }
        // Argmax merges the blocks' winners in one workgroup; top-k ranks each of the
        // n_parts·K candidates in an invocation of its own.
        let merge_groups = if argmax { 1 } else { (n_parts * k).div_ceil(MAX_PARTS) };
        add("topk", &merge, &[(1, &parts), (2, out), (3, &params)], merge_groups)?;
        Ok(Select { passes })
    }

    fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        for (pipeline, bind, groups) in &self.passes {
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, bind, &[]);
            super::dispatch(pass, *groups, 1, 1);
        }
    }
}

/// The id of the largest of `n_vocab` f32 logits (the lowest such id on ties), written as a u32
/// at the start of `out` (4 bytes).
pub struct ArgmaxOp(Select);

impl ArgmaxOp {
    /// `logits`: f32 `[n_vocab]` (the first `n_vocab` elements are used; at most 524288).
    pub fn new(
        ctx: &GpuContext,
        logits: &wgpu::Buffer,
        n_vocab: u32,
        out: &wgpu::Buffer,
    ) -> Result<Self, GpuError> {
        Select::new(ctx, logits, n_vocab, 1, out, true).map(ArgmaxOp)
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.0.record(pass)
    }
}

/// The `k` largest logits, sorted descending (ties by ascending id), written to `out` as `k`
/// pairs of u32 words `(id, f32 bits of the logit)`: `8·k` bytes, see [`TopKOp::parse`].
pub struct TopKOp {
    select: Select,
    k: u32,
}

impl TopKOp {
    /// `logits`: f32 `[n_vocab]`; `1 ≤ k ≤ min(64, n_vocab)`.
    pub fn new(
        ctx: &GpuContext,
        logits: &wgpu::Buffer,
        n_vocab: u32,
        k: u32,
        out: &wgpu::Buffer,
    ) -> Result<Self, GpuError> {
        Ok(TopKOp {
            select: Select::new(ctx, logits, n_vocab, k, out, false)?,
            k,
        })
    }

    pub fn k(&self) -> u32 {
        self.k
    }

    /// Bytes the op writes at the start of `out`.
    pub fn out_bytes(&self) -> u64 {
        self.k as u64 * 8
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.select.record(pass)
    }

    /// Decodes the `(id, logit)` pairs from the bytes read back from `out`.
    pub fn parse(bytes: &[u8]) -> Vec<(u32, f32)> {
        bytes
            .chunks_exact(8)
            .map(|c| {
                (
                    u32::from_le_bytes(c[..4].try_into().unwrap()),
                    f32::from_le_bytes(c[4..].try_into().unwrap()),
                )
            })
            .collect()
    }
}

/// The parameters of one [`DrawOp`] run, in the shader's layout: the host's draw
/// (`decode::sampling::Draw`) in f32.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DrawParams {
    pub k: u32,
    pub temperature: f32,
    pub top_p: f32,
    pub min_p: f32,
    pub r: f32,
    _pad: [u32; 3],
}

impl DrawParams {
    /// A draw over the top `k` at uniform `r` ∈ [0, 1), kept below 1 in f32.
    pub fn new(k: usize, temperature: f32, top_p: f32, min_p: f32, r: f64) -> Self {
        // The largest f32 below 1: rounding r to nearest could give 1.0, which no draw reaches.
        const BELOW_ONE: f32 = 1.0 - f32::EPSILON / 2.0;
        DrawParams {
            k: k.min(u32::MAX as usize) as u32,
            temperature,
            top_p,
            min_p,
            r: (r as f32).min(BELOW_ONE),
            _pad: [0; 3],
        }
    }
}

/// The seeded draw after top-k on the device: reads a [`TopKOp`]'s list and writes
/// the drawn id as a u32 at the start of its output, where an [`ArgmaxOp`] writes its id, so
/// that a sampled step can feed the next one on the GPU as a greedy step does. One dispatch of
/// one invocation; each run's parameters are written with [`DrawOp::set`] before its
/// submission.
pub struct DrawOp {
    pipeline: Arc<wgpu::ComputePipeline>,
    bind: wgpu::BindGroup,
    params: wgpu::Buffer,
    /// Candidates in the top-k list.
    list: u32,
}

impl DrawOp {
    /// `top`: the output of `top_k`; `out`: at least 4 bytes.
    pub fn new(ctx: &GpuContext, top_k: &TopKOp, top: &wgpu::Buffer, out: &wgpu::Buffer) -> Result<Self, GpuError> {
        if top.size() < top_k.out_bytes() || out.size() < 4 {
            return Err(GpuError::Validation {
                what: "draw".into(),
                message: format!(
                    "top-k buffer {} bytes (needs {}), output buffer {} bytes (needs 4)",
                    top.size(),
                    top_k.out_bytes(),
                    out.size()
                ),
            });
        }
        let pipeline = ctx.pipeline(kernels::SAMPLE, "draw", &ctx.base_defs())?;
        let params = uniform(ctx, "draw params", bytemuck::bytes_of(&DrawParams::new(2, 1.0, 1.0, 0.0, 0.0)))?;
        let bind = ctx.bind_numbered(&pipeline, &[(5, top), (6, out), (7, &params)]);
        Ok(DrawOp { pipeline, bind, params, list: top_k.k() })
    }

    /// Writes the parameters of the next run (in queue order: the runs submitted before keep
    /// theirs). A draw the shader cannot make gives a typed error and writes nothing.
    pub fn set(&self, ctx: &GpuContext, params: &DrawParams) -> Result<(), GpuError> {
        self.check(params)?;
        self.write(ctx, params);
        Ok(())
    }

    /// Candidates in the top-k list the draw reads: the most its `k` can be.
    pub fn list_len(&self) -> u32 {
        self.list
    }

    /// Whether the shader can make this draw: `k` within the top-k list, a finite temperature
    /// above 0, `top_p` in (0, 1], `min_p` in [0, 1] and `r` in [0, 1).
    pub fn check(&self, p: &DrawParams) -> Result<(), GpuError> {
        let why = if !(1..=self.list).contains(&p.k) {
            format!("k {} outside 1..={}, the top-k list's length", p.k, self.list)
        } else if !(p.temperature.is_finite() && p.temperature > 0.0) {
            format!("temperature {} is not a finite number > 0", p.temperature)
        } else if !(p.top_p > 0.0 && p.top_p <= 1.0) {
            format!("top_p {} outside (0, 1]", p.top_p)
        } else if !(0.0..=1.0).contains(&p.min_p) {
            format!("min_p {} outside [0, 1]", p.min_p)
        } else if !(0.0..1.0).contains(&p.r) {
            format!("random number {} outside [0, 1)", p.r)
        } else {
            return Ok(());
        };
        Err(GpuError::Validation { what: "draw".into(), message: why })
    }

    /// [`DrawOp::set`] for parameters already checked.
    pub(crate) fn write(&self, ctx: &GpuContext, params: &DrawParams) {
        ctx.write(&self.params, 0, bytemuck::bytes_of(params));
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind, &[]);
        super::dispatch(pass, 1, 1, 1);
    }
}
