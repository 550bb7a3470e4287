//! GPU operations: each one prepares its pipeline, parameter uniform and bind groups once (at
//! model load), then `record`s its dispatches into the token's single compute pass. Nothing is
//! allocated or read back while a token is being computed.
//!
//! Conventions shared by every kernel:
//! - activations are f32, row-major `[token][features]`;
//! - binding order is: the op's buffers, then its `Params` uniform, then the shared [`Step`]
//!   uniform (written once per submission with `queue.write_buffer`).

mod elementwise;
pub use elementwise::{AddOp, GluOp};
mod matmul;
pub use matmul::{int_dot_supported, ActivationBlocks, DecodeInput, EmbeddingOp, MatmulConfig, MatmulOp, QuantizeOp, XQ_UNIT_BYTES};
mod norm;
pub use norm::RmsNormOp;
mod rope;
pub use rope::{QkNorm, RopeOp, RopeParams};
mod attention;
pub use attention::{AttentionOp, AttentionScratch, KvCache, Scores};
mod sample;
pub use sample::{ArgmaxOp, DrawOp, DrawParams, TopKOp};

use super::{GpuContext, GpuError, ShaderDefs};
use crate::model::Gate;

/// Selects `shaders/gate.wgsl`'s gate in a kernel that forms the gated product.
fn set_gate(defs: &mut ShaderDefs, gate: Gate) {
    if gate == Gate::GeluTanh {
        defs.set("GELU", 1);
    }
}

thread_local! {
    /// Dispatches recorded on this thread. The ops decide at record time how many dispatches
    /// they need (a weight split at the binding limit, attention split over key chunks), so a
    /// count taken where they dispatch is the only one that cannot drift from what runs.
    static DISPATCHES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// `pass.dispatch_workgroups`, counted (see [`dispatches_recorded`]).
fn dispatch(pass: &mut wgpu::ComputePass<'_>, x: u32, y: u32, z: u32) {
    DISPATCHES.with(|c| c.set(c.get() + 1));
    pass.dispatch_workgroups(x, y, z);
}

/// How many dispatches the ops have recorded on this thread so far; the difference across a
/// recording is that recording's dispatch count.
pub fn dispatches_recorded() -> u64 {
    DISPATCHES.with(|c| c.get())
}

/// Per-submission values every kernel can read: how many tokens this step processes and the
/// position of the first one. Mirrors `struct Step` in the WGSL files.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Step {
    pub n_tokens: u32,
    /// Position (in the KV cache) of the first token of this step.
    pub pos: u32,
    pub _pad: [u32; 2],
}

/// A uniform buffer holding `bytes` (padded to 16 bytes).
pub fn uniform(ctx: &GpuContext, what: &str, bytes: &[u8]) -> Result<wgpu::Buffer, GpuError> {
    let size = (bytes.len() as u64).next_multiple_of(16).max(16);
    let buf = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(what),
        size,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut padded = bytes.to_vec();
    padded.resize(size as usize, 0);
    ctx.queue.write_buffer(&buf, 0, &padded);
    Ok(buf)
}

/// The shared step uniform.
pub fn step_buffer(ctx: &GpuContext) -> Result<wgpu::Buffer, GpuError> {
    uniform(ctx, "step", bytemuck::bytes_of(&Step::default()))
}
