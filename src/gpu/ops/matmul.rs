//! Weight products and the embedding lookup on quantized weights (`shaders/matvec.wgsl`,
//! `shaders/matmul.wgsl`, `shaders/embedding.wgsl`; decoders in `shaders/quant.wgsl`), and the
//! 8-bit activations of the packed-integer products (`shaders/quantize.wgsl`).

use super::uniform;
use crate::gpu::weights::{with_type, GpuWeight};
use crate::gpu::{dispatch_1d, kernels, GpuContext, GpuError, ShaderDefs};
use crate::model::Gate;
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

/// How a [`MatmulOp`] runs. [`MatmulConfig::for_device`] is what [`MatmulOp::new`] uses; other
/// values exist for tests and tuning, and every value computes the same products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulConfig {
    /// Invocations sharing one row in the matrix-vector kernel: a power of two up to 64, lowered
    /// to the smallest subgroup size. 1 with subgroups selects the variant that broadcasts the
    /// activations across the subgroup (`XBCAST` in matvec.wgsl; `XBCAST4` for subgroups of 4).
    pub threads_per_row: u32,
    /// Run all prefill through the matrix-vector kernel (8 tokens per weight decode) instead
    /// of the tiled kernel.
    pub matvec_prefill: bool,
    /// Consecutive rows each group of `threads_per_row` invocations takes in the matrix-vector
    /// kernel, sharing every activation load among them (1, 2 or 4; `RPI` in matvec.wgsl).
    /// Ignored (1) by the broadcasting variant.
    pub rows_per_invocation: u32,
    /// Batches of 2 up to this many tokens run the matrix-vector kernel 8 tokens per weight
    /// decode rather than the tiled kernel, whose 32-token tiles cost nearly as much for a few
    /// tokens as for 32 (SwiftShader: 12.7 s for 2 tokens, 14.9 s for 16, 1.1 s per decode
    /// step). Such batches are short prompts and follow-up turns, and tokens a grammar forces.
    pub small_batch: u32,
}

impl MatmulConfig {
    /// On a GPU: rows shared by a power of two of invocations giving each at least eight units
    /// where the row is long enough (at most 16), so that neighbouring invocations read
    /// neighbouring blocks, two rows per group, and the tiled kernel for prefill. On a CPU
    /// device (lavapipe, SwiftShader) invocations are SIMD lanes and every load is a gather:
    /// one row per invocation, so that the activations can be broadcast (with subgroups), for
    /// decode and prefill alike; without subgroups four rows per invocation share each
    /// activation load (SmolLM2 Q4_1 on lavapipe: decode 8.7 → 10.6 tok/s, and prefill through
    /// it 36 tok/s against the tiled kernel's 29). The context's
    /// [`KernelTuning`](crate::gpu::KernelTuning) overrides each choice.
    pub fn for_device(ctx: &GpuContext, w: &GpuWeight) -> Self {
        let mut c = if ctx.adapter_info.device_type == wgpu::DeviceType::Cpu {
            MatmulConfig {
                threads_per_row: 1,
                rows_per_invocation: 4,
                matvec_prefill: true,
                small_batch: SMALL_BATCH,
            }
        } else {
            let mut tpr = 1u32;
            while tpr < 16 && w.units() >= 8 * tpr as usize {
                tpr *= 2;
            }
            // Two rows per group halve the activation loads; more would cut the invocations
            // (and so the loads in flight) of the smaller projections too far. Unmeasured on a
            // GPU so far: see KernelTuning.
            MatmulConfig {
                threads_per_row: tpr,
                rows_per_invocation: 2,
                matvec_prefill: false,
                small_batch: SMALL_BATCH,
            }
        };
        if let Some(t) = ctx.tuning.matvec_threads_per_row {
            c.threads_per_row = t;
        }
        if let Some(r) = ctx.tuning.matvec_rows_per_invocation {
            c.rows_per_invocation = r;
        }
        if let Some(m) = ctx.tuning.matvec_prefill {
            c.matvec_prefill = m;
        }
        c
    }
}

/// See [`MatmulConfig::small_batch`].
const SMALL_BATCH: u32 = 16;

/// Defines for the activation-reading kernels.
fn activation_defs(ctx: &GpuContext, w: &GpuWeight) -> ShaderDefs {
    let mut d = with_type(ctx.base_defs(), w.ty).with("ACTIVATIONS", 1);
    if w.cols.is_multiple_of(4) {
        d.set("X_VEC4", 1);
    }
    if !w.cols.is_multiple_of(32) {
        d.set("XMASK", 1);
    }
    d
}

/// That `outputs` (buffers with the rows each takes) are `counts` in number and take all of
/// `w`'s rows between them, each some.
fn check_outputs(what: &str, w: &GpuWeight, outputs: &[(&wgpu::Buffer, usize)], counts: std::ops::RangeInclusive<usize>) -> Result<(), GpuError> {
    let rows: usize = outputs.iter().map(|o| o.1).sum();
    if !counts.contains(&outputs.len()) || rows != w.rows || outputs.iter().any(|o| o.1 == 0) {
        return Err(GpuError::Validation {
            what: what.into(),
            message: format!(
                "{} outputs of {rows} rows for a weight of {} rows ({} to {} outputs of all its rows)",
                outputs.len(),
                w.rows,
                counts.start(),
                counts.end()
            ),
        });
    }
    Ok(())
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

/// Bytes of one 32-element unit of quantized activations (`shaders/quantize.wgsl`): 32 signed
/// bytes, the scale and two half sums, padded to three vec4 words.
pub const XQ_UNIT_BYTES: u64 = 48;
/// Invocations per quantize workgroup (`WG` in quantize.wgsl).
const QUANTIZE_WG: u32 = 64;

/// Whether the packed-integer products can run for weights of type `ty` on this device: the
/// device's WGSL has `dot4I8Packed` (the `packed_4x8_integer_dot_product` language feature;
/// naga has it natively, browsers since Chrome 123), and `ty` is a quantized type with an
/// integer decoder in quant.wgsl (not F32/F16).
pub fn int_dot_supported(ctx: &GpuContext, ty: crate::quant::GgmlType) -> bool {
    use crate::quant::GgmlType::*;
    ctx.features.int_dot && matches!(ty, Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q4_K | Q5_K | Q6_K)
}

/// How activations are rounded to 8 bits: as llama.cpp rounds them for the weight type that
/// reads them (see shaders/quantize.wgsl), so that our results move with its near-ties. Every
/// packed-integer kernel reads either correctly; only the rounding differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationBlocks {
    /// Per 32 values, the scale stored as f16 (llama.cpp's Q8_0/Q8_1): for the legacy types.
    Q8_0,
    /// One scale per 256 values, from the signed largest value (llama.cpp's Q8_K): for the
    /// k-quants, whose rows are multiples of 256.
    Q8K,
}

impl ActivationBlocks {
    /// The rounding llama.cpp pairs with weights of type `ty`.
    pub fn for_type(ty: crate::quant::GgmlType) -> Self {
        use crate::quant::GgmlType::*;
        match ty {
            Q4_K | Q5_K | Q6_K => ActivationBlocks::Q8K,
            _ => ActivationBlocks::Q8_0,
        }
    }
}

/// `xq[t] = quantize(x[t])` for the packed-integer products: each 32-element unit of an f32
/// activation row `[max_tokens][cols]` to 8-bit integers and a scale ([`XQ_UNIT_BYTES`] each, in
/// `xq`, `[max_tokens][ceil(cols / 32)]` units), rounded as `blocks` says. With an `up` buffer
/// the row quantized is silu(x) ⊙ up (the down projection's input, SwiGLU formed as it
/// quantizes); [`QuantizeOp::normed`] quantizes the row's RMSNorm.
pub struct QuantizeOp {
    pipeline: Arc<wgpu::ComputePipeline>,
    bind: wgpu::BindGroup,
    /// Invocations per token: one per unit, or per 256-value block; `None` for one workgroup
    /// per token (the normed rows).
    per_token: Option<u32>,
}

impl QuantizeOp {
    pub fn new(
        ctx: &GpuContext,
        cols: usize,
        x: &wgpu::Buffer,
        up: Option<(&wgpu::Buffer, Gate)>,
        xq: &wgpu::Buffer,
        step: &wgpu::Buffer,
        blocks: ActivationBlocks,
    ) -> Result<Self, GpuError> {
        let input = match up {
            Some((up, gate)) => DecodeInput::Glu { up, gate },
            None => DecodeInput::Plain,
        };
        Self::build(ctx, cols, x, input, xq, step, blocks)
    }

    /// `xq[t] = quantize(rms_norm(x[t]) ⊙ weight)`: a block's input quantized straight from the
    /// residual stream `x`, so that the norm needs no dispatch of its own. The integers and
    /// scales are bit for bit those of [`RmsNormOp`](super::RmsNormOp)'s output quantized by
    /// [`QuantizeOp::new`] (the same reduction order and arithmetic).
    #[allow(clippy::too_many_arguments)]
    pub fn normed(
        ctx: &GpuContext,
        cols: usize,
        x: &wgpu::Buffer,
        weight: &wgpu::Buffer,
        eps: f32,
        xq: &wgpu::Buffer,
        step: &wgpu::Buffer,
        blocks: ActivationBlocks,
    ) -> Result<Self, GpuError> {
        Self::build(ctx, cols, x, DecodeInput::Norm { weight, eps }, xq, step, blocks)
    }

    fn build(
        ctx: &GpuContext,
        cols: usize,
        x: &wgpu::Buffer,
        input: DecodeInput<'_>,
        xq: &wgpu::Buffer,
        step: &wgpu::Buffer,
        blocks: ActivationBlocks,
    ) -> Result<Self, GpuError> {
        if cols == 0 {
            return Err(GpuError::Validation { what: "quantize".into(), message: "rows of 0 values".into() });
        }
        let units = cols.div_ceil(32) as u32;
        check_size("quantize input", x, 4 * cols as u64)?;
        check_size("quantized activations", xq, XQ_UNIT_BYTES * units as u64)?;
        // The normed variant reduces with subgroups where the norm kernel does.
        let normed = matches!(input, DecodeInput::Norm { .. });
        let mut defs = if normed { ctx.base_defs() } else { ShaderDefs::default() };
        let per_token = match blocks {
            ActivationBlocks::Q8_0 => units,
            ActivationBlocks::Q8K if cols.is_multiple_of(256) => {
                defs.set("BLOCK_256", 1);
                units / 8
            }
            ActivationBlocks::Q8K => {
                return Err(GpuError::Validation {
                    what: "quantize".into(),
                    message: format!("256-value blocks need rows of a multiple of 256 values, not {cols}"),
                })
            }
        };
        let mut eps = 0f32;
        let mut entries = vec![(0, x), (1, xq)];
        match input {
            DecodeInput::Plain => {}
            DecodeInput::Glu { up, gate } => {
                check_size("quantize up input", up, 4 * cols as u64)?;
                defs.set("X_GLU", 1);
                super::set_gate(&mut defs, gate);
                entries.push((4, up));
            }
            DecodeInput::Norm { weight, eps: e } => {
                check_size("quantize norm weight", weight, 4 * cols as u64)?;
                defs.set("X_NORM", 1);
                eps = e;
                entries.push((5, weight));
            }
        }
        let pipeline = ctx.pipeline(kernels::QUANTIZE, "quantize", &defs)?;
        let params = uniform(ctx, "quantize params", bytemuck::cast_slice(&[cols as u32, units, eps.to_bits(), 0]))?;
        entries.extend([(2, &params), (3, step)]);
        let bind = ctx.bind_numbered(&pipeline, &entries);
        Ok(QuantizeOp { pipeline, bind, per_token: (!normed).then_some(per_token) })
    }

    /// `n_tokens` must equal the step uniform's value for this submission.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, n_tokens: u32) {
        if n_tokens == 0 {
            return;
        }
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind, &[]);
        let (a, b, c) = match self.per_token {
            Some(per_token) => dispatch_1d(n_tokens * per_token, QUANTIZE_WG),
            // One workgroup per token.
            None => dispatch_1d(n_tokens, 1),
        };
        super::dispatch(pass, a, b, c);
    }
}

/// How a decode step's product loads its activations ([`MatmulOp::for_decode`]).
#[derive(Clone, Copy)]
pub enum DecodeInput<'a> {
    /// `x` as it is.
    Plain,
    /// gate(`x`) ⊙ `up`: the feed-forward down projection's input.
    Glu { up: &'a wgpu::Buffer, gate: Gate },
    /// The RMSNorm of `x` (f32 `[cols]`) with this weight (f32 `[cols]`) and epsilon.
    Norm { weight: &'a wgpu::Buffer, eps: f32 },
}

/// What a product does besides `W · x` (matmul_io.wgsl's X_GLU, X_NORM and Y_ADD).
#[derive(Clone, Copy, Default)]
struct Fusion<'a> {
    up: Option<(&'a wgpu::Buffer, Gate)>,
    norm: Option<(&'a wgpu::Buffer, f32)>,
    accumulate: bool,
    /// Only the one-token pipeline is made.
    one_token: bool,
    /// Outputs after the first, with their rows (`Y_SPLIT`; see [`MatmulOp::for_decode_into`]).
    more_outputs: &'a [(&'a wgpu::Buffer, usize)],
}

struct MatmulPart {
    vec_bind: wgpu::BindGroup,
    /// For prefill past `small_batch`: the tiled kernel's (none when the multi-token matvec
    /// runs all prefill).
    tiled_bind: Option<wgpu::BindGroup>,
    /// The multi-token matvec's (none for a one-token op).
    multi_bind: Option<wgpu::BindGroup>,
    rows: u32,
    vec_groups: (u32, u32),
}

/// Tokens per dispatch slice of the broadcasting matvec (`NT` in matvec.wgsl).
const MATVEC_TOKENS: u32 = 8;

/// `y[t] = W · x[t]` for a weight `W` of `rows` rows × `cols` columns: x is f32
/// `[max_tokens][cols]`, y f32 `[max_tokens][rows]`. One token runs the matrix-vector kernel,
/// a few tokens the same kernel 8 tokens per weight read, more the tiled matrix-matrix kernel
/// (or, on CPU devices, the matrix-vector kernel 8 tokens at a time); every kernel dispatches
/// once per weight part.
pub struct MatmulOp {
    vec: Arc<wgpu::ComputePipeline>,
    /// None for a one-token op ([`MatmulOp::with_glu_input`]).
    multi: Option<Arc<wgpu::ComputePipeline>>,
    /// None when the multi-token matvec runs all prefill (broadcasting on CPU devices).
    tiled: Option<Arc<wgpu::ComputePipeline>>,
    parts: Vec<MatmulPart>,
    small_batch: u32,
}

impl MatmulOp {
    pub fn new(
        ctx: &GpuContext,
        w: &GpuWeight,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        step: &wgpu::Buffer,
    ) -> Result<Self, GpuError> {
        Self::with_config(ctx, w, x, y, step, MatmulConfig::for_device(ctx, w))
    }

    /// [`MatmulOp::new`] with a chosen [`MatmulConfig`].
    pub fn with_config(
        ctx: &GpuContext,
        w: &GpuWeight,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        step: &wgpu::Buffer,
        config: MatmulConfig,
    ) -> Result<Self, GpuError> {
        Self::build(ctx, w, x, Fusion::default(), y, step, config, false)
    }

    /// `y = W · (silu(gate) ⊙ up)` for one token: the feed-forward down projection of a decode
    /// step with SwiGLU applied as the activations load (`X_GLU` in matmul_io.wgsl), saving a
    /// dispatch and a write and read of the gate activations per layer. `gate` and `up` are
    /// f32 `[cols]`; neither is written. One token only: in a prefill every row group would
    /// compute silu again for every token (lavapipe: prefill 71 → 62 tok/s), so prompts keep
    /// the separate SwiGLU kernel and [`MatmulOp::new`]. [`record`](Self::record) takes
    /// `n_tokens == 1`.
    pub fn with_glu_input(
        ctx: &GpuContext,
        w: &GpuWeight,
        gate: &wgpu::Buffer,
        up: &wgpu::Buffer,
        g: Gate,
        y: &wgpu::Buffer,
        step: &wgpu::Buffer,
        config: Option<MatmulConfig>,
    ) -> Result<Self, GpuError> {
        Self::for_decode(ctx, w, gate, DecodeInput::Glu { up, gate: g }, y, false, step, config)
    }

    /// A decode step's product with the work around it folded in: `input` says how the
    /// activations load (as they are, SwiGLU of `x` and an up projection, or the RMSNorm of
    /// `x`), and with `accumulate` the result is added to `y` (`y += W · input`: the residual
    /// add). With the norm, `x` is the residual stream itself, so a block needs no norm
    /// dispatch and no add dispatch: the norm's sum of squares comes with the loads, and its
    /// scale multiplies each row's sum. One token ([`record`](Self::record) takes
    /// `n_tokens == 1`); never the broadcasting variant of CPU devices. The norm needs rows of
    /// a multiple of 32 values.
    #[allow(clippy::too_many_arguments)]
    pub fn for_decode(
        ctx: &GpuContext,
        w: &GpuWeight,
        x: &wgpu::Buffer,
        input: DecodeInput<'_>,
        y: &wgpu::Buffer,
        accumulate: bool,
        step: &wgpu::Buffer,
        config: Option<MatmulConfig>,
    ) -> Result<Self, GpuError> {
        Self::decode(ctx, w, x, input, y, accumulate, &[], step, config)
    }

    #[allow(clippy::too_many_arguments)]
    fn decode(
        ctx: &GpuContext,
        w: &GpuWeight,
        x: &wgpu::Buffer,
        input: DecodeInput<'_>,
        y: &wgpu::Buffer,
        accumulate: bool,
        more_outputs: &[(&wgpu::Buffer, usize)],
        step: &wgpu::Buffer,
        config: Option<MatmulConfig>,
    ) -> Result<Self, GpuError> {
        let config = config.unwrap_or_else(|| MatmulConfig::for_device(ctx, w));
        let one = Fusion { accumulate, one_token: true, more_outputs, ..Fusion::default() };
        let fusion = match input {
            DecodeInput::Plain => one,
            DecodeInput::Glu { up, gate } => Fusion { up: Some((up, gate)), ..one },
            DecodeInput::Norm { weight, eps } => {
                if !w.cols.is_multiple_of(32) {
                    return Err(GpuError::Validation {
                        what: "matmul with RMSNorm input".into(),
                        message: format!("rows of {} values, not a multiple of 32", w.cols),
                    });
                }
                check_size("matmul norm weight", weight, 4 * w.cols as u64)?;
                Fusion { norm: Some((weight, eps)), ..one }
            }
        };
        Self::build(ctx, w, x, fusion, y, step, config, false)
    }

    /// [`for_decode`](Self::for_decode) (without `accumulate`) writing its rows to several
    /// outputs, each from its row 0: the first `outputs[0].1` rows to `outputs[0].0`, the next
    /// `outputs[1].1` to `outputs[1].0`, and so on (two or three outputs, whose rows add up to
    /// `W`'s). This is the product of a joint ([`GpuWeight::join`]): Q, K and V (or gate and up)
    /// in one dispatch, each member's rows computed as its own product computes them and written
    /// where that one writes them.
    #[allow(clippy::too_many_arguments)]
    pub fn for_decode_into(
        ctx: &GpuContext,
        w: &GpuWeight,
        x: &wgpu::Buffer,
        input: DecodeInput<'_>,
        outputs: &[(&wgpu::Buffer, usize)],
        step: &wgpu::Buffer,
        config: Option<MatmulConfig>,
    ) -> Result<Self, GpuError> {
        check_outputs("matmul into several outputs", w, outputs, 2..=3)?;
        Self::decode(ctx, w, x, input, outputs[0].0, false, &outputs[1..], step, config)
    }

    /// `y[t] = W · xq[t]` with packed-integer dot products: `xq` holds the activations as
    /// [`QuantizeOp`] writes them. Needs [`int_dot_supported`]. Every step runs the
    /// matrix-vector kernel (8 tokens per weight decode past one token): the graph takes it for
    /// decode steps and short prompts only, and the tiled f32 kernel for longer ones.
    pub fn with_int_dot(
        ctx: &GpuContext,
        w: &GpuWeight,
        xq: &wgpu::Buffer,
        y: &wgpu::Buffer,
        step: &wgpu::Buffer,
        config: Option<MatmulConfig>,
    ) -> Result<Self, GpuError> {
        Self::int_dot(ctx, w, xq, y, Fusion::default(), step, config)
    }

    /// [`with_int_dot`](Self::with_int_dot) for one token with the work around a decode step's
    /// product folded in, as [`for_decode`](Self::for_decode) and
    /// [`for_decode_into`](Self::for_decode_into) fold it for the f32 products: the rows go to
    /// one output, added to it with `accumulate` (the residual add), or, for a joint
    /// ([`GpuWeight::join`]), each member's to its own output (two or three, without
    /// `accumulate`). The norm before a block is the quantize's ([`QuantizeOp::normed`]).
    /// [`record`](Self::record) takes `n_tokens == 1`.
    #[allow(clippy::too_many_arguments)]
    pub fn int_dot_decode(
        ctx: &GpuContext,
        w: &GpuWeight,
        xq: &wgpu::Buffer,
        outputs: &[(&wgpu::Buffer, usize)],
        accumulate: bool,
        step: &wgpu::Buffer,
        config: Option<MatmulConfig>,
    ) -> Result<Self, GpuError> {
        // An add goes into one output.
        check_outputs("packed-integer decode matmul", w, outputs, if accumulate { 1..=1 } else { 1..=3 })?;
        let fusion = Fusion { accumulate, one_token: true, more_outputs: &outputs[1..], ..Fusion::default() };
        Self::int_dot(ctx, w, xq, outputs[0].0, fusion, step, config)
    }

    fn int_dot(
        ctx: &GpuContext,
        w: &GpuWeight,
        xq: &wgpu::Buffer,
        y: &wgpu::Buffer,
        fusion: Fusion<'_>,
        step: &wgpu::Buffer,
        config: Option<MatmulConfig>,
    ) -> Result<Self, GpuError> {
        if !int_dot_supported(ctx, w.ty) {
            return Err(GpuError::Validation {
                what: "packed-integer matmul".into(),
                message: format!(
                    "not available for {} weights on this device (dot4I8Packed: {})",
                    w.ty, ctx.features.int_dot
                ),
            });
        }
        let config = config.unwrap_or_else(|| MatmulConfig::for_device(ctx, w));
        check_size("quantized activations", xq, XQ_UNIT_BYTES * w.units() as u64)?;
        Self::build(ctx, w, xq, fusion, y, step, config, true)
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        ctx: &GpuContext,
        w: &GpuWeight,
        x: &wgpu::Buffer,
        fusion: Fusion<'_>,
        y: &wgpu::Buffer,
        step: &wgpu::Buffer,
        config: MatmulConfig,
        int_dot: bool,
    ) -> Result<Self, GpuError> {
        let x_up = fusion.up;
        if !int_dot {
            check_size("matmul input", x, 4 * w.cols as u64)?;
        }
        let more_rows: usize = fusion.more_outputs.iter().map(|o| o.1).sum();
        check_size("matmul output", y, 4 * (w.rows - more_rows) as u64)?;
        for (i, &(b, rows)) in fusion.more_outputs.iter().enumerate() {
            check_size(&format!("matmul output {}", i + 2), b, 4 * rows as u64)?;
        }
        let mut tpr = pow2_floor(config.threads_per_row.clamp(1, MATVEC_WG));
        let mut defs = if int_dot {
            with_type(ctx.base_defs(), w.ty).with("INT_DOT", 1)
        } else {
            activation_defs(ctx, w)
        };
        if let Some((up, gate)) = x_up {
            check_size("matmul up input", up, 4 * w.cols as u64)?;
            defs.set("X_GLU", 1);
            super::set_gate(&mut defs, gate);
        }
        if let Some((_, eps)) = fusion.norm {
            defs.set("X_NORM", 1);
            defs.set("NORM_EPS", format!("{eps:e}"));
        }
        if fusion.accumulate {
            defs.set("Y_ADD", 1);
        }
        // Rows from SPLIT1 go to the second output, from SPLIT2 to the third.
        let mut split = w.rows - more_rows;
        for (i, &(_, rows)) in fusion.more_outputs.iter().enumerate() {
            defs.set(if i == 0 { "Y_SPLIT" } else { "Y_SPLIT3" }, 1);
            defs.set(if i == 0 { "SPLIT1" } else { "SPLIT2" }, split as u32);
            split += rows;
        }
        let mut vec_defs = defs.clone().with("WG", MATVEC_WG);
        let mut xbcast = false;
        if ctx.features.subgroups {
            // The shuffle reduction stays within one subgroup. One invocation per row selects
            // the broadcasting variant, which the integer products do not have.
            tpr = tpr.min(pow2_floor(ctx.features.subgroup_min_size));
            if tpr == 1 && !int_dot && fusion.norm.is_none() && !fusion.accumulate && fusion.more_outputs.is_empty() {
                vec_defs.set("XBCAST", 1);
                if ctx.features.subgroup_min_size < 8 {
                    vec_defs.set("XBCAST4", 1);
                }
                xbcast = true;
            }
        }
        let rpi = if xbcast {
            1
        } else {
            pow2_floor(config.rows_per_invocation.clamp(1, 4))
        };
        let vec_defs = vec_defs.with("TPR", tpr).with("RPI", rpi);
        let vec = ctx.pipeline(kernels::MATVEC, "matvec", &vec_defs.clone().with("NT", 1))?;
        let one_token = fusion.one_token;
        let multi = if one_token {
            None
        } else {
            Some(ctx.pipeline(kernels::MATVEC, "matvec", &vec_defs.with("NT", MATVEC_TOKENS))?)
        };
        let tiled = if config.matvec_prefill || one_token || int_dot {
            None
        } else {
            Some(ctx.pipeline(kernels::MATMUL, "matmul", &defs)?)
        };
        let mut parts = Vec::with_capacity(w.parts().len());
        for (i, p) in w.parts().iter().enumerate() {
            let params = uniform(
                ctx,
                "matmul params",
                bytemuck::bytes_of(&w.part_params(i, w.rows)),
            )?;
            // Bindings as numbered in matmul_io.wgsl; a norm without SwiGLU leaves 5 unused.
            // (Only one-token ops have 5 or 6, and they make no tiled or multi-token pipeline.)
            let mut entries: Vec<(u32, wgpu::BindingResource)> = vec![(0, p.binding())];
            let mut buffers: Vec<(u32, &wgpu::Buffer)> = vec![(1, x), (2, y), (3, &params), (4, step)];
            buffers.extend(x_up.map(|(b, _)| (5, b)));
            buffers.extend(fusion.norm.map(|(b, _)| (6, b)));
            buffers.extend(fusion.more_outputs.iter().enumerate().map(|(i, o)| (7 + i as u32, o.0)));
            entries.extend(buffers.iter().map(|&(i, b)| (i, b.as_entire_binding())));
            let (gx, gy, _) = dispatch_1d(p.rows as u32, MATVEC_WG / tpr * rpi);
            parts.push(MatmulPart {
                vec_bind: ctx.bind_resources(&vec, &entries),
                tiled_bind: tiled.as_ref().map(|t| ctx.bind_resources(t, &entries)),
                multi_bind: multi.as_ref().map(|m| ctx.bind_resources(m, &entries)),
                rows: p.rows as u32,
                vec_groups: (gx, gy),
            });
        }
        Ok(MatmulOp {
            vec,
            multi,
            tiled,
            parts,
            small_batch: config.small_batch,
        })
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
                super::dispatch(pass, p.vec_groups.0, p.vec_groups.1, 1);
            }
        } else if let (Some(tiled), true) = (&self.tiled, n_tokens > self.small_batch) {
            pass.set_pipeline(tiled);
            for p in &self.parts {
                pass.set_bind_group(0, p.tiled_bind.as_ref().expect("made with the tiled pipeline"), &[]);
                super::dispatch(pass,
                    p.rows.div_ceil(MATMUL_ROWS),
                    n_tokens.div_ceil(MATMUL_TOKENS),
                    1,
                );
            }
        } else {
            let multi = self.multi.as_ref().expect("a one-token op records one token");
            pass.set_pipeline(multi);
            for p in &self.parts {
                pass.set_bind_group(0, p.multi_bind.as_ref().expect("made with the multi-token pipeline"), &[]);
                super::dispatch(pass,
                    p.vec_groups.0,
                    p.vec_groups.1,
                    n_tokens.div_ceil(MATVEC_TOKENS),
                );
            }
        }
    }
}

/// `out[t] = W[ids[t]]` dequantized to f32 `[max_tokens][cols]`; ids are u32 `[max_tokens]`.
/// Ids past the table's last row give zeros. [`EmbeddingOp::scaled`] multiplies the rows.
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
        Self::scaled(ctx, w, ids, out, 1.0, step)
    }

    /// `out[t] = W[ids[t]] · scale`, each value rounded once as the CPU reference rounds it.
    pub fn scaled(
        ctx: &GpuContext,
        w: &GpuWeight,
        ids: &wgpu::Buffer,
        out: &wgpu::Buffer,
        scale: f32,
        step: &wgpu::Buffer,
    ) -> Result<Self, GpuError> {
        check_size("embedding ids", ids, 4)?;
        check_size("embedding output", out, 4 * w.cols as u64)?;
        let mut defs = with_type(ctx.base_defs(), w.ty);
        if scale != 1.0 {
            // `{:e}` prints the shortest decimal that parses back to the same f32.
            defs.set("SCALE", format!("{scale:e}"));
        }
        let pipeline = ctx.pipeline(kernels::EMBEDDING, "embed", &defs)?;
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
                    p.binding(),
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
            super::dispatch(pass, a, b, c);
        }
    }
}
