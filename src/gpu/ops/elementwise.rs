//! Residual add and the feed-forward gate (`shaders/elementwise.wgsl`).

use super::uniform;
use crate::gpu::{dispatch_1d, kernels, GpuContext, GpuError};
use crate::model::Gate;
use std::sync::Arc;

/// One element-wise kernel bound to fixed buffers; the element count scales with the step's
/// token count.
struct Elementwise {
    pipeline: Arc<wgpu::ComputePipeline>,
    bind: wgpu::BindGroup,
    width: u32,
}

impl Elementwise {
    fn new(
        ctx: &GpuContext,
        entry: &str,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        width: u32,
        gate: Option<Gate>,
        step: &wgpu::Buffer,
    ) -> Result<Self, GpuError> {
        let mut defs = ctx.base_defs();
        if let Some(gate) = gate {
            super::set_gate(&mut defs, gate);
        }
        let pipeline = ctx.pipeline(kernels::ELEMENTWISE, entry, &defs)?;
        let params = uniform(ctx, entry, bytemuck::cast_slice(&[width, 0, 0, 0]))?;
        let bind = ctx.bind(
            &pipeline,
            &[
                x.as_entire_binding(),
                y.as_entire_binding(),
                params.as_entire_binding(),
                step.as_entire_binding(),
            ],
        );
        Ok(Elementwise {
            pipeline,
            bind,
            width,
        })
    }

    fn record(&self, pass: &mut wgpu::ComputePass<'_>, n_tokens: u32) {
        let n = self.width * n_tokens;
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind, &[]);
        let (a, b, c) = dispatch_1d(n, 256);
        super::dispatch(pass, a, b, c);
    }
}

/// `x += y` over `[n_tokens][width]`.
pub struct AddOp(Elementwise);

impl AddOp {
    pub fn new(
        ctx: &GpuContext,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        width: u32,
        step: &wgpu::Buffer,
    ) -> Result<Self, GpuError> {
        Elementwise::new(ctx, "add", x, y, width, None, step).map(AddOp)
    }

    /// `n_tokens` must equal the step uniform's value for this submission.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, n_tokens: u32) {
        self.0.record(pass, n_tokens)
    }
}

/// `g = gate(g) * up` over `[n_tokens][width]`: SwiGLU, or GeGLU.
pub struct GluOp(Elementwise);

impl GluOp {
    pub fn new(
        ctx: &GpuContext,
        g: &wgpu::Buffer,
        up: &wgpu::Buffer,
        width: u32,
        gate: Gate,
        step: &wgpu::Buffer,
    ) -> Result<Self, GpuError> {
        Elementwise::new(ctx, "glu", g, up, width, Some(gate), step).map(GluOp)
    }

    /// `n_tokens` must equal the step uniform's value for this submission.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, n_tokens: u32) {
        self.0.record(pass, n_tokens)
    }
}
