//! Quantized weights on the GPU (lavapipe): upload with repacking and splitting, matrix × vector
//! (decode), tiled matrix × matrix (prefill) and the embedding gather, for every supported type,
//! against the CPU dequantization (`llama_webgpu::quant`, bit-exact with gguf-py) and f64 dot
//! products.
//!
//! Real tensors come from the SmolLM2 requantizations made by `scripts/setup`; synthetic ones
//! (random values, random quant blocks with sane f16 scales) add shapes that are not multiples of
//! the workgroup or tile sizes. Timings: `cargo test --release --test gpu_matmul -- --nocapture`.
//!
//! Tolerance of a product y = Σ_k w_k·x_k: the GPU multiplies the same f32 weights (decoded with
//! the CPU's f32 operations; a fused `d*q + m` may differ by one rounding, 2^-24 relative to the
//! terms) by the same f32 activations and adds in f32. Every kernel adds along chains no deeper
//! than cols/4 + 24: running sums of 4-element dot products (or of sums of eight of them), then
//! at most 15 more additions reducing a row shared by up to 16 invocations. Recursive summation
//! bounds the error by (depth + 2)·2^-24·Σ_k |w_k·x_k|, which is what `check` allows: a rigorous
//! bound rather than a fudge factor, and far below what a decoding mistake causes (one wrong
//! element of a 576-long row is ~1e-3 of Σ|w·x|; observed errors are ~1e-7 of it). Embedding rows
//! are compared bit for bit, up to that one rounding of a fused `d*q + m`.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use llama_webgpu::gguf::GgufFile;
use llama_webgpu::model::Gate;
use llama_webgpu::gpu::ops::{int_dot_supported, step_buffer, ActivationBlocks, DecodeInput, EmbeddingOp, MatmulConfig, MatmulOp, QuantizeOp, RmsNormOp, Step, XQ_UNIT_BYTES};
use llama_webgpu::gpu::weights::GpuWeight;
use llama_webgpu::gpu::{GpuContext, GpuError, GpuOptions};
use llama_webgpu::quant::{dequantize, GgmlType};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

#[path = "common/random.rs"]
mod random;
#[path = "common/int_dot.rs"]
mod int_dot;

use random::{quant_weights, Draws, Rng};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const TOKEN_COUNTS: [usize; 4] = [1, 3, 17, 64 + 5];

fn model(quant: &str) -> GgufFile {
    let path =
        PathBuf::from(ROOT).join(format!(".cache/models/SmolLM2-135M-Instruct.{quant}.gguf"));
    assert!(
        path.is_file(),
        "missing test model {}: run scripts/setup",
        path.display()
    );
    GgufFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}; run scripts/setup", path.display()))
}

/// A weight matrix on the CPU: GGUF bytes plus its dequantized values.
struct Tensor {
    label: String,
    ty: GgmlType,
    cols: usize,
    rows: usize,
    data: Vec<u8>,
    values: Vec<f32>,
}

impl Tensor {
    fn new(label: String, ty: GgmlType, cols: usize, rows: usize, data: Vec<u8>) -> Tensor {
        let values = dequantize(&label, ty, &data, cols * rows).unwrap();
        Tensor {
            label,
            ty,
            cols,
            rows,
            data,
            values,
        }
    }

    fn upload(&self, ctx: &GpuContext) -> GpuWeight {
        GpuWeight::upload(ctx, &self.label, self.ty, self.cols, self.rows, &self.data).unwrap()
    }
}

/// Rows `rows` (all if None) of tensor `name` of the `quant` requantization.
fn real(quant: &str, name: &str, ty: GgmlType, rows: Option<Range<usize>>) -> Tensor {
    let m = model(quant);
    let t = m
        .tensor(name)
        .unwrap_or_else(|| panic!("{quant}: no tensor {name}"));
    assert_eq!(
        t.info.ggml_type, ty,
        "{quant} {name}: the test expects this type; has scripts/requant.py changed?"
    );
    let (cols, all_rows) = (t.info.dims[0] as usize, t.info.dims[1] as usize);
    let rows = rows.unwrap_or(0..all_rows);
    let row_bytes = t.data.len() / all_rows;
    let data = t.data[rows.start * row_bytes..rows.end * row_bytes].to_vec();
    Tensor::new(
        format!("{quant}:{name}[{rows:?}]"),
        ty,
        cols,
        rows.len(),
        data,
    )
}

/// Random weights of any supported type (`random::quant_weights`).
fn synthetic(ty: GgmlType, cols: usize, rows: usize, seed: u64) -> Tensor {
    let data = quant_weights(ty, cols, rows, seed);
    Tensor::new(
        format!("synthetic {ty} {cols}x{rows}"),
        ty,
        cols,
        rows,
        data,
    )
}

/// Every test tensor: each supported type from the real models (where possible two shapes, with
/// row counts that are not multiples of the tile or workgroup sizes) and synthetic shapes.
fn cases() -> &'static [Tensor] {
    static CASES: OnceLock<Vec<Tensor>> = OnceLock::new();
    CASES.get_or_init(|| {
        use GgmlType::*;
        let mut v = Vec::new();
        for (quant, ty) in [
            ("Q4_0", Q4_0),
            ("Q4_1", Q4_1),
            ("Q5_0", Q5_0),
            ("Q5_1", Q5_1),
            ("Q8_0", Q8_0),
            ("F16", F16),
        ] {
            v.push(real(quant, "blk.0.attn_k.weight", ty, None));
            v.push(real(quant, "blk.0.ffn_down.weight", ty, Some(7..90)));
        }
        v.push(real("Q4_K_M", "blk.3.ffn_down.weight", Q4_K, Some(11..111)));
        v.push(real("Q5_K_M", "blk.3.ffn_down.weight", Q5_K, Some(0..75)));
        v.push(real("Q6_K", "blk.0.ffn_down.weight", Q6_K, Some(501..576)));
        v.push(real("BF16", "blk.0.attn_k.weight", BF16, None));
        v.push(real("Q2_K_pure", "blk.3.ffn_down.weight", Q2_K, Some(11..111)));
        // llama.cpp's Q2_K mix gives SmolLM2's ffn_down Q3_K.
        v.push(real("Q2_K", "blk.3.ffn_down.weight", Q3_K, Some(0..75)));
        v.push(real("IQ4_NL", "blk.0.attn_k.weight", IQ4_NL, None));
        v.push(real("IQ4_NL", "blk.5.ffn_down.weight", IQ4_NL, Some(7..90)));
        v.push(real("IQ4_XS", "blk.5.ffn_down.weight", IQ4_XS, Some(0..75)));
        // llama.cpp's IQ3_S mix gives SmolLM2's ffn_down IQ3_S (the only tensor of that type).
        v.push(real("IQ3_S", "blk.3.ffn_down.weight", IQ3_S, Some(11..111)));
        v.push(synthetic(F32, 333, 101, 1));
        v.push(synthetic(F32, 100, 70, 2));
        v.push(synthetic(F32, 64, 7, 3));
        v.push(synthetic(F16, 333, 101, 4));
        v.push(synthetic(F16, 98, 66, 5));
        v.push(synthetic(BF16, 333, 101, 6));
        for (i, ty) in [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL].into_iter().enumerate() {
            v.push(synthetic(ty, 160, 37, 10 + i as u64));
        }
        for (i, ty) in [Q4_K, Q5_K, Q6_K, Q2_K, Q3_K, IQ4_XS].into_iter().enumerate() {
            v.push(synthetic(ty, 512, 37, 20 + i as u64));
        }
        // The lattice types (no file: llama.cpp makes them only with an importance matrix).
        for (i, ty) in LATTICE.into_iter().enumerate() {
            v.push(synthetic(ty, 512, 37, 30 + i as u64));
        }
        v
    })
}

/// The types whose values index a table of points.
const LATTICE: [GgmlType; 7] = {
    use GgmlType::*;
    [IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M]
};

fn activations(cols: usize, n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n * cols).map(|_| rng.f() * 2.0).collect()
}

/// The CPU reference: y[t][r] in f64 and Σ_k |w·x| (the scale of the rounding error).
fn reference(t: &Tensor, x: &[f32], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut want = Vec::with_capacity(n * t.rows);
    let mut scale = Vec::with_capacity(n * t.rows);
    for tok in 0..n {
        let xr = &x[tok * t.cols..(tok + 1) * t.cols];
        for r in 0..t.rows {
            let wr = &t.values[r * t.cols..(r + 1) * t.cols];
            let (mut s, mut a) = (0f64, 0f64);
            for (w, x) in wr.iter().zip(xr) {
                let p = *w as f64 * *x as f64;
                s += p;
                a += p.abs();
            }
            want.push(s);
            scale.push(a);
        }
    }
    (want, scale)
}

fn set_step(ctx: &GpuContext, step: &wgpu::Buffer, n: usize) {
    ctx.write(
        step,
        0,
        bytemuck::bytes_of(&Step {
            n_tokens: n as u32,
            pos: 0,
            _pad: [0; 2],
        }),
    );
}

/// Records `f` into one compute pass and submits it.
fn submit_pass(ctx: &GpuContext, f: impl FnOnce(&mut wgpu::ComputePass<'_>)) {
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        f(&mut pass);
    }
    ctx.queue.submit([enc.finish()]);
}

/// Outputs of `rows` rows each, starting as `y0` (NaN where none), with one NaN more that the
/// product must leave.
fn guarded_outputs(ctx: &GpuContext, rows: &[usize], y0: Option<&[f32]>) -> Vec<wgpu::Buffer> {
    rows.iter()
        .map(|&r| {
            let mut init = y0.map_or(vec![f32::NAN; r], |y| y.to_vec());
            init.push(f32::NAN);
            ctx.upload("y", bytemuck::cast_slice(&init)).unwrap()
        })
        .collect()
}

/// Each output's `rows`, after checking that the NaN past them stayed.
fn read_guarded(ctx: &GpuContext, ys: &[wgpu::Buffer], rows: &[usize], what: &str) -> Vec<Vec<f32>> {
    ys.iter()
        .zip(rows)
        .map(|(b, &r)| {
            let mut y = ctx.read_f32(b, 0, r + 1).unwrap();
            assert!(y[r].is_nan(), "{what} wrote past an output's rows");
            y.truncate(r);
            y
        })
        .collect()
}

/// Runs the op API as the model graph does. Buffers hold two tokens more than used, filled with
/// NaN: the kernels must neither read those inputs nor write those outputs.
fn gpu_matmul(ctx: &GpuContext, w: &GpuWeight, x: &[f32], n: usize) -> Vec<f32> {
    gpu_matmul_with(ctx, w, x, n, None)
}

/// [`gpu_matmul`], optionally with a chosen kernel configuration.
fn gpu_matmul_with(
    ctx: &GpuContext,
    w: &GpuWeight,
    x: &[f32],
    n: usize,
    config: Option<MatmulConfig>,
) -> Vec<f32> {
    let (cols, rows) = (w.cols, w.rows);
    let mut xin = x.to_vec();
    xin.resize((n + 2) * cols, f32::NAN);
    let xb = ctx.upload("x", bytemuck::cast_slice(&xin)).unwrap();
    let yb = ctx
        .upload("y", bytemuck::cast_slice(&vec![f32::NAN; (n + 2) * rows]))
        .unwrap();
    let step = step_buffer(ctx).unwrap();
    set_step(ctx, &step, n);
    let op = match config {
        None => MatmulOp::new(ctx, w, &xb, &yb, &step),
        Some(c) => MatmulOp::with_config(ctx, w, &xb, &yb, &step, c),
    }
    .unwrap();
    submit_pass(ctx, |p| op.record(p, n as u32));
    let mut y = ctx.read_f32(&yb, 0, (n + 2) * rows).unwrap();
    assert!(
        y[n * rows..].iter().all(|v| v.is_nan()),
        "{n} tokens: outputs past the last token were written"
    );
    y.truncate(n * rows);
    y
}

/// Checks `got` against the f64 reference with the bound explained at the top; returns the
/// largest error relative to Σ|w·x|.
/// One token through [`MatmulOp::with_glu_input`]: the product of `w` with g(gate) ⊙ up.
fn gpu_glu_matmul(ctx: &GpuContext, w: &GpuWeight, gate: &[f32], up: &[f32], g: Gate, config: Option<MatmulConfig>) -> Vec<f32> {
    let (gb, ub) = (ctx.upload("gate", bytemuck::cast_slice(gate)).unwrap(), ctx.upload("up", bytemuck::cast_slice(up)).unwrap());
    let yb = ctx.upload("y", bytemuck::cast_slice(&vec![f32::NAN; w.rows])).unwrap();
    let step = step_buffer(ctx).unwrap();
    set_step(ctx, &step, 1);
    let op = MatmulOp::with_glu_input(ctx, w, &gb, &ub, g, &yb, &step, config).unwrap();
    submit_pass(ctx, |p| op.record(p, 1));
    let gate_after = ctx.read_f32(&gb, 0, gate.len()).unwrap();
    assert!(gate_after == gate, "the fused product wrote its gate input");
    ctx.read_f32(&yb, 0, w.rows).unwrap()
}

/// One token through [`MatmulOp::for_decode`]: `y` starts as `y0` (NaN for a plain write).
#[allow(clippy::too_many_arguments)]
fn gpu_decode_matmul(ctx: &GpuContext, w: &GpuWeight, x: &[f32], input: DecodeInput<'_>, y0: &[f32], accumulate: bool, config: Option<MatmulConfig>) -> Vec<f32> {
    let xb = ctx.upload("x", bytemuck::cast_slice(x)).unwrap();
    let yb = ctx.upload("y", bytemuck::cast_slice(y0)).unwrap();
    let step = step_buffer(ctx).unwrap();
    set_step(ctx, &step, 1);
    let op = MatmulOp::for_decode(ctx, w, &xb, input, &yb, accumulate, &step, config).unwrap();
    submit_pass(ctx, |p| op.record(p, 1));
    assert!(ctx.read_f32(&xb, 0, x.len()).unwrap() == x, "the fused product wrote its input");
    ctx.read_f32(&yb, 0, w.rows).unwrap()
}

/// The decode step's products with the work around them folded in (MatmulOp::for_decode):
/// the RMSNorm of the input in its loads (Q, K, V, gate, up, the output), the residual add in
/// its writes (O), and both SwiGLU and the add (down), against the f64 reference on the
/// device's configuration and on rows for 1 (never broadcasting), 2 and 16 invocations. The
/// bound adds to the product's what the norm's own arithmetic may contribute: the f32 sum of
/// squares (at most cols·2^-24 relative, halved by the square root), inverseSqrt (2 ulp) and
/// the rounding of x·weight, each relative to the result (≤ Σ|w·h|), and one rounding of the
/// add. Returns the worst error relative to the bound's scale.
fn decode_fusion_cases(ctx: &GpuContext, t: &Tensor, w: &GpuWeight, seed: u64) -> f64 {
    let cols = t.cols;
    let depth = (cols.div_ceil(4) + 24) as f64 + 2.0;
    let factor = (depth + cols as f64 / 2.0 + 4.0) / depth;
    let x = activations(cols, 1, seed);
    let norm_w = activations(cols, 1, seed + 1);
    let resid = activations(t.rows, 1, seed + 2);
    // Large enough that an epsilon left out or misplaced is far outside the bound.
    let eps = 0.25f32;
    let ms = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / cols as f64;
    let inv = 1.0 / (ms + eps as f64).sqrt();
    let h: Vec<f32> = x.iter().zip(&norm_w).map(|(&a, &b)| (a as f64 * b as f64 * inv) as f32).collect();
    let (gate, up) = (activations(cols, 1, seed + 3), activations(cols, 1, seed + 4));
    let mut glu = gate.clone();
    llama_webgpu::reference::ops::swiglu(&mut glu, &up);
    let mut geglu = gate.clone();
    llama_webgpu::reference::ops::glu(&mut geglu, &up, Gate::GeluTanh);
    let nb = ctx.upload("norm weight", bytemuck::cast_slice(&norm_w)).unwrap();
    let ub = ctx.upload("up", bytemuck::cast_slice(&up)).unwrap();
    let nan = vec![f32::NAN; t.rows];
    let shared = |tpr, rpi| MatmulConfig { threads_per_row: tpr, rows_per_invocation: rpi, matvec_prefill: false, small_batch: 0 };
    let mut worst = 0f64;
    for config in [None, Some(shared(1, 4)), Some(shared(2, 1)), Some(shared(16, 2))] {
        for (what, input, acts, add) in [
            ("RMSNorm input", DecodeInput::Norm { weight: &nb, eps }, &x, false),
            ("RMSNorm input, residual add", DecodeInput::Norm { weight: &nb, eps }, &x, true),
            ("residual add", DecodeInput::Plain, &x, true),
            ("SwiGLU input, residual add", DecodeInput::Glu { up: &ub, gate: Gate::Silu }, &gate, true),
            ("GeGLU input, residual add", DecodeInput::Glu { up: &ub, gate: Gate::GeluTanh }, &gate, true),
        ] {
            let reference_input = match input {
                DecodeInput::Norm { .. } => &h,
                DecodeInput::Glu { gate: Gate::Silu, .. } => &glu,
                DecodeInput::Glu { gate: Gate::GeluTanh, .. } => &geglu,
                DecodeInput::Plain => &x,
            };
            let (mut want, scale) = reference(t, reference_input, 1);
            let mut scale: Vec<f64> = scale.iter().map(|s| s * if matches!(input, DecodeInput::Norm { .. }) { factor } else { 1.0 }).collect();
            if add {
                for ((wv, s), r) in want.iter_mut().zip(scale.iter_mut()).zip(&resid) {
                    *wv += *r as f64;
                    *s += wv.abs() / depth;
                }
            }
            let got = gpu_decode_matmul(ctx, w, acts, input, if add { &resid } else { &nan }, add, config);
            worst = worst.max(check(&format!("{} {what}, {config:?}", t.label), cols, &got, &want, &scale));
        }
    }
    worst
}

/// One token through [`MatmulOp::for_decode_into`] with the RMSNorm input: each output as
/// long as its rows plus one NaN that must stay.
fn gpu_decode_into(ctx: &GpuContext, w: &GpuWeight, x: &[f32], norm: &wgpu::Buffer, rows: &[usize], config: Option<MatmulConfig>) -> Vec<Vec<f32>> {
    let xb = ctx.upload("x", bytemuck::cast_slice(x)).unwrap();
    let ys = guarded_outputs(ctx, rows, None);
    let outputs: Vec<(&wgpu::Buffer, usize)> = ys.iter().zip(rows).map(|(b, &r)| (b, r)).collect();
    let step = step_buffer(ctx).unwrap();
    set_step(ctx, &step, 1);
    let op = MatmulOp::for_decode_into(ctx, w, &xb, DecodeInput::Norm { weight: norm, eps: 0.25 }, &outputs, &step, config).unwrap();
    submit_pass(ctx, |p| op.record(p, 1));
    read_guarded(ctx, &ys, rows, "the joint product")
}

/// Joints (a layer's Q, K and V, or gate and up, in one buffer; WeightWriter::joint): each
/// member, bound at its offset, multiplies exactly as the same rows uploaded apart, on every
/// kernel, and the joint's one decode product (MatmulOp::for_decode_into) gives each output
/// exactly what the member's own fused product gives. Members that would not start at a
/// bindable offset are refused, and only a whole joint in order joins.
fn joint_cases(ctx: &GpuContext, ty: GgmlType, seed: u64) {
    let cols = 512;
    for rows in [&[64usize, 32, 32][..], &[64, 64]] {
        let t = synthetic(ty, cols, rows.iter().sum(), seed);
        let row_bytes = t.data.len() / t.rows;
        let mut at = 0;
        let mut pieces = Vec::new();
        for (i, &r) in rows.iter().enumerate() {
            pieces.push((["q", "k", "v"][i], r, &t.data[at * row_bytes..(at + r) * row_bytes]));
            at += r;
        }
        let members = GpuWeight::upload_joint(ctx, ty, cols, &pieces).unwrap().expect("aligned members join");
        let apart: Vec<GpuWeight> = pieces.iter().map(|p| GpuWeight::upload(ctx, p.0, ty, cols, p.1, p.2).unwrap()).collect();
        for (m, a) in members.iter().zip(&apart) {
            for (n, config) in [(1, None), (3, None), (40, None), (40, Some(MatmulConfig { threads_per_row: 1, rows_per_invocation: 4, matvec_prefill: true, small_batch: 0 }))] {
                let x = activations(cols, n, seed + n as u64);
                assert!(gpu_matmul_with(ctx, m, &x, n, config) == gpu_matmul_with(ctx, a, &x, n, config), "{ty} joint member × {n}, {config:?}");
            }
        }
        let refs: Vec<&GpuWeight> = members.iter().collect();
        let whole = GpuWeight::join(&refs).expect("a whole joint joins");
        assert_eq!((whole.rows, whole.cols), (t.rows, cols));
        let reversed: Vec<&GpuWeight> = members.iter().rev().collect();
        assert!(GpuWeight::join(&reversed).is_none() && GpuWeight::join(&refs[..1]).is_none());
        assert!(GpuWeight::join(&apart.iter().collect::<Vec<_>>()).is_none());
        let x = activations(cols, 1, seed + 9);
        let nb = ctx.upload("norm", bytemuck::cast_slice(&activations(cols, 1, seed + 10))).unwrap();
        let shared = |tpr, rpi| MatmulConfig { threads_per_row: tpr, rows_per_invocation: rpi, matvec_prefill: false, small_batch: 0 };
        for config in [None, Some(shared(1, 4)), Some(shared(2, 1)), Some(shared(16, 2))] {
            let got = gpu_decode_into(ctx, &whole, &x, &nb, rows, config);
            for (g, a) in got.iter().zip(&apart) {
                let input = DecodeInput::Norm { weight: &nb, eps: 0.25 };
                let want = gpu_decode_matmul(ctx, a, &x, input, &vec![f32::NAN; a.rows], false, config);
                assert!(*g == want, "{ty} joint decode product, {config:?}");
            }
        }
        if int_dot_supported(ctx, ty) {
            // The packed-integer joint: each output what the member's own product gives.
            let (xq, _) = gpu_quantize(ctx, cols, &x, None, 1, ActivationBlocks::for_type(ty));
            for config in [None, Some(shared(1, 4)), Some(shared(16, 2))] {
                let got = gpu_int_decode(ctx, &whole, &xq, rows, None, config);
                for (g, a) in got.iter().zip(&apart) {
                    assert!(*g == gpu_int_matmul(ctx, a, &xq, 1, config), "{ty} packed-integer joint decode product, {config:?}");
                }
            }
        }
    }
    // K at row 3 of rows this long starts at no multiple of 256 bytes (the alignment browsers
    // mostly have; lavapipe's is smaller), and for the legacy types, whose scales take 18 bytes
    // per row, at no whole word of the scales: refused, or where the device binds it, exact.
    use GgmlType::*;
    let k_quant = ty.block_geometry().0 == 256;
    let cols = if k_quant { 256 } else { 288 };
    let t = synthetic(ty, cols, 8, seed);
    let row_bytes = t.data.len() / 8;
    let odd = [("q", 3, &t.data[..3 * row_bytes]), ("k", 5, &t.data[3 * row_bytes..])];
    match GpuWeight::upload_joint(ctx, ty, cols, &odd).unwrap() {
        None => {}
        Some(members) => {
            assert!(matches!(ty, Q2_K | Q4_K | Q5_K | Q6_K | IQ4_XS | IQ1_M | F32 | F16 | BF16), "{ty}: a member at no whole word of its scales joined");
            let x = activations(cols, 1, seed);
            let apart = GpuWeight::upload(ctx, "k", ty, cols, 5, odd[1].2).unwrap();
            assert!(gpu_matmul(ctx, &members[1], &x, 1) == gpu_matmul(ctx, &apart, &x, 1));
        }
    }
}

fn check(what: &str, cols: usize, got: &[f32], want: &[f64], scale: &[f64]) -> f64 {
    let depth = (cols.div_ceil(4) + 24) as f64;
    let eps = (2f64).powi(-24);
    let mut worst = 0f64;
    for (i, ((&g, &w), &s)) in got.iter().zip(want).zip(scale).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(
            err <= (depth + 2.0) * eps * s + 1e-30,
            "{what}: output {i}: gpu {g:e}, cpu {w:e}, Σ|w·x| {s:e}, error {:.2e} of Σ|w·x|",
            err / s
        );
        worst = worst.max(if s > 0.0 { err / s } else { 0.0 });
    }
    worst
}

/// Embedding rows against the CPU dequantization: exact, except that a fused `d*q ± m` may
/// differ by a rounding of the terms (bounded by 2^-23 of the row's largest magnitude).
fn check_embedding(what: &str, t: &Tensor, ids: &[u32], got: &[f32]) -> usize {
    let mut inexact = 0;
    for (i, &id) in ids.iter().enumerate() {
        let row = &got[i * t.cols..(i + 1) * t.cols];
        if id as usize >= t.rows {
            assert!(
                row.iter().all(|v| *v == 0.0),
                "{what}: id {id} past the table should give zeros"
            );
            continue;
        }
        let want = &t.values[id as usize * t.cols..(id as usize + 1) * t.cols];
        let max = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (k, (&g, &w)) in row.iter().zip(want).enumerate() {
            if g.to_bits() != w.to_bits() {
                inexact += 1;
                assert!(
                    (g - w).abs() <= max * (2f32).powi(-23),
                    "{what}: token {i} (id {id}) element {k}: gpu {g:e}, cpu {w:e}"
                );
            }
        }
    }
    inexact
}

fn gpu_embedding(ctx: &GpuContext, w: &GpuWeight, ids: &[u32]) -> Vec<f32> {
    let n = ids.len();
    let mut idv = ids.to_vec();
    idv.resize(n + 2, 0);
    let idb = ctx.upload("ids", bytemuck::cast_slice(&idv)).unwrap();
    let out = ctx
        .upload(
            "out",
            bytemuck::cast_slice(&vec![f32::NAN; (n + 2) * w.cols]),
        )
        .unwrap();
    let step = step_buffer(ctx).unwrap();
    set_step(ctx, &step, n);
    let op = EmbeddingOp::new(ctx, w, &idb, &out, &step).unwrap();
    submit_pass(ctx, |p| op.record(p, n as u32));
    let mut got = ctx.read_f32(&out, 0, (n + 2) * w.cols).unwrap();
    assert!(
        got[n * w.cols..].iter().all(|v| v.is_nan()),
        "embedding wrote past the last token"
    );
    got.truncate(n * w.cols);
    got
}

/// Ids for a table of `rows` rows: the first and last rows, repeats, and random ones.
fn embedding_ids(rows: usize, n: usize, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    let mut ids = vec![0, rows as u32 - 1, 1, rows as u32 - 1];
    while ids.len() < n {
        ids.push((rng.next_u64() % rows as u64) as u32);
    }
    ids.truncate(n);
    ids
}

/// Quantizes `x` (`n` rows of `cols`; with `up`, gate(x)·up) on the GPU and reads the units back.
fn gpu_quantize(ctx: &GpuContext, cols: usize, x: &[f32], up: Option<(&[f32], Gate)>, n: usize, blocks: ActivationBlocks) -> (wgpu::Buffer, Vec<int_dot::XUnit>) {
    let units = cols.div_ceil(32);
    let xb = ctx.upload("x", bytemuck::cast_slice(x)).unwrap();
    let ub = up.map(|(u, g)| (ctx.upload("up", bytemuck::cast_slice(u)).unwrap(), g));
    // One token more than used, filled with a pattern the kernel must leave alone.
    let xq = ctx.upload("xq", &vec![0xA5u8; (n + 1) * units * XQ_UNIT_BYTES as usize]).unwrap();
    let step = step_buffer(ctx).unwrap();
    set_step(ctx, &step, n);
    let op = QuantizeOp::new(ctx, cols, &xb, ub.as_ref().map(|(b, g)| (b, *g)), &xq, &step, blocks).unwrap();
    submit_pass(ctx, |p| op.record(p, n as u32));
    let bytes = pollster::block_on(ctx.read(&xq, 0, ((n + 1) * units) as u64 * XQ_UNIT_BYTES)).unwrap();
    let (used, rest) = bytes.split_at(n * units * XQ_UNIT_BYTES as usize);
    assert!(rest.iter().all(|&b| b == 0xA5), "quantize wrote past the last token");
    (xq, int_dot::parse(used))
}

/// Runs the packed-integer product of `w` with the quantized activations in `xq`.
fn gpu_int_matmul(ctx: &GpuContext, w: &GpuWeight, xq: &wgpu::Buffer, n: usize, config: Option<MatmulConfig>) -> Vec<f32> {
    let yb = ctx.upload("y", bytemuck::cast_slice(&vec![f32::NAN; (n + 1) * w.rows])).unwrap();
    let step = step_buffer(ctx).unwrap();
    set_step(ctx, &step, n);
    let op = MatmulOp::with_int_dot(ctx, w, xq, &yb, &step, config).unwrap();
    submit_pass(ctx, |p| op.record(p, n as u32));
    let mut y = ctx.read_f32(&yb, 0, (n + 1) * w.rows).unwrap();
    assert!(y[n * w.rows..].iter().all(|v| v.is_nan()), "{n} tokens: outputs past the last token were written");
    y.truncate(n * w.rows);
    y
}

/// The RMSNorm (weight `norm_w`, epsilon 0.25) of `n` rows of `x` quantized on the GPU, in one
/// dispatch ([`QuantizeOp::normed`]) and, with `apart`, as the norm kernel's output quantized:
/// the bytes of each (xq holds one token more than used, which must stay untouched).
fn gpu_quantize_normed(ctx: &GpuContext, cols: usize, x: &[f32], norm_w: &[f32], n: usize, blocks: ActivationBlocks) -> (Vec<u8>, Vec<u8>) {
    let units = cols.div_ceil(32);
    let xb = ctx.upload("x", bytemuck::cast_slice(x)).unwrap();
    let nb = ctx.upload("norm", bytemuck::cast_slice(norm_w)).unwrap();
    let hb = ctx.storage("h", 4 * x.len() as u64, wgpu::BufferUsages::empty()).unwrap();
    let step = step_buffer(ctx).unwrap();
    set_step(ctx, &step, n);
    let len = (n + 1) * units * XQ_UNIT_BYTES as usize;
    let run = |apart: bool| {
        let xq = ctx.upload("xq", &vec![0xA5u8; len]).unwrap();
        if apart {
            let norm = RmsNormOp::new(ctx, &xb, &nb, &hb, cols as u32, 0.25, &step).unwrap();
            let quantize = QuantizeOp::new(ctx, cols, &hb, None, &xq, &step, blocks).unwrap();
            submit_pass(ctx, |p| {
                norm.record(p, n as u32);
                quantize.record(p, n as u32);
            });
        } else {
            let op = QuantizeOp::normed(ctx, cols, &xb, &nb, 0.25, &xq, &step, blocks).unwrap();
            submit_pass(ctx, |p| op.record(p, n as u32));
        }
        let mut bytes = pollster::block_on(ctx.read(&xq, 0, len as u64)).unwrap();
        assert!(bytes[n * units * XQ_UNIT_BYTES as usize..].iter().all(|&b| b == 0xA5), "quantize wrote past the last token");
        bytes.truncate(n * units * XQ_UNIT_BYTES as usize);
        bytes
    };
    (run(false), run(true))
}

/// One token's packed-integer decode product ([`MatmulOp::int_dot_decode`]) into outputs of
/// `rows` rows that start as `y0` (NaN for a plain write) and hold one NaN more that must stay.
fn gpu_int_decode(ctx: &GpuContext, w: &GpuWeight, xq: &wgpu::Buffer, rows: &[usize], y0: Option<&[f32]>, config: Option<MatmulConfig>) -> Vec<Vec<f32>> {
    let ys = guarded_outputs(ctx, rows, y0);
    let outputs: Vec<(&wgpu::Buffer, usize)> = ys.iter().zip(rows).map(|(b, &r)| (b, r)).collect();
    let step = step_buffer(ctx).unwrap();
    set_step(ctx, &step, 1);
    let op = MatmulOp::int_dot_decode(ctx, w, xq, &outputs, y0.is_some(), &step, config).unwrap();
    submit_pass(ctx, |p| op.record(p, 1));
    read_guarded(ctx, &ys, rows, "the packed-integer decode product")
}

/// A decode step's packed-integer products with the work around them folded in: the norm done
/// by the quantize gives the norm kernel's output quantized, byte for byte (one token and
/// three, each rounding the row allows), and near the CPU's rounding of the f64 norm; the
/// residual add in the product's writes gives the plain product plus the residual, to the bit.
fn int_decode_fusion_cases(ctx: &GpuContext, t: &Tensor, w: &GpuWeight, seed: u64) {
    let blocks: &[ActivationBlocks] = if t.cols.is_multiple_of(256) { &[ActivationBlocks::Q8_0, ActivationBlocks::Q8K] } else { &[ActivationBlocks::Q8_0] };
    let norm_w = activations(t.cols, 1, seed + 1);
    for &b in blocks {
        for n in [1, 3] {
            let x = activations(t.cols, n, seed + n as u64);
            let (folded, apart) = gpu_quantize_normed(ctx, t.cols, &x, &norm_w, n, b);
            assert!(folded == apart, "{}: the normed quantize ({b:?}, {n} tokens) differs from the norm kernel's output quantized", t.label);
            let h: Vec<f32> = x
                .chunks_exact(t.cols)
                .flat_map(|row| {
                    let inv = 1.0 / (row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / t.cols as f64 + 0.25).sqrt();
                    row.iter().zip(&norm_w).map(move |(&v, &g)| (v as f64 * inv * g as f64) as f32)
                })
                .collect();
            int_dot::check_quantized(&format!("{} normed, {b:?}, {n} tokens", t.label), &h, t.cols, &int_dot::parse(&folded), b == ActivationBlocks::Q8K, 1e-5);
        }
    }
    let x = activations(t.cols, 1, seed + 7);
    let (xq, _) = gpu_quantize(ctx, t.cols, &x, None, 1, ActivationBlocks::for_type(t.ty));
    let resid = activations(t.rows, 1, seed + 8);
    let shared = |tpr, rpi| MatmulConfig { threads_per_row: tpr, rows_per_invocation: rpi, matvec_prefill: false, small_batch: 0 };
    for config in [None, Some(shared(1, 4)), Some(shared(16, 2))] {
        let plain = gpu_int_matmul(ctx, w, &xq, 1, config);
        assert!(gpu_int_decode(ctx, w, &xq, &[t.rows], None, config)[0] == plain, "{}: packed-integer decode product, {config:?}", t.label);
        let want: Vec<f32> = plain.iter().zip(&resid).map(|(a, b)| a + b).collect();
        assert!(gpu_int_decode(ctx, w, &xq, &[t.rows], Some(&resid), config)[0] == want, "{}: packed-integer residual add, {config:?}", t.label);
    }
    // Outputs that do not take the weight's rows, or an add into several: typed errors.
    let step = step_buffer(ctx).unwrap();
    let y = ctx.storage("y", 4 * t.rows as u64, wgpu::BufferUsages::empty()).unwrap();
    for (outputs, add) in [(vec![(&y, t.rows - 1)], false), (vec![], false), (vec![(&y, 1), (&y, t.rows - 1)], true)] {
        let e = MatmulOp::int_dot_decode(ctx, w, &xq, &outputs, add, &step, None).err().expect("refused");
        assert!(matches!(e, GpuError::Validation { .. }), "{e}");
    }
}

/// The packed-integer path for one weight: activations quantized on the GPU (plain, and
/// silu(gate)·up), then products through the device's configuration and the others.
fn int_dot_cases(ctx: &GpuContext, t: &Tensor, w: &GpuWeight, seed: u64) -> f64 {
    let mut worst = 0f64;
    let own = ActivationBlocks::for_type(t.ty);
    // The other rounding too, where the row allows it: every kernel must read either.
    let other = match own {
        ActivationBlocks::Q8K => ActivationBlocks::Q8_0,
        ActivationBlocks::Q8_0 if t.cols.is_multiple_of(256) => ActivationBlocks::Q8K,
        ActivationBlocks::Q8_0 => ActivationBlocks::Q8_0,
    };
    for (n, blocks) in [(1usize, own), (5, own), (17, own), (3, other)] {
        let x = activations(t.cols, n, seed + n as u64);
        let (xq, units) = gpu_quantize(ctx, t.cols, &x, None, n, blocks);
        let k_blocks = blocks == ActivationBlocks::Q8K;
        int_dot::check_quantized(&format!("{} × {n} tokens, {blocks:?}", t.label), &x, t.cols, &units, k_blocks, 1e-6);
        let configs: &[Option<(u32, u32)>] = if n == 1 {
            &[None, Some((1, 1)), Some((1, 4)), Some((2, 2)), Some((16, 2))]
        } else {
            &[None, Some((1, 4)), Some((16, 1))]
        };
        for &c in configs {
            let config = c.map(|(threads_per_row, rows_per_invocation)| MatmulConfig {
                threads_per_row,
                rows_per_invocation,
                matvec_prefill: true,
                small_batch: 16,
            });
            let got = gpu_int_matmul(ctx, w, &xq, n, config);
            worst = worst.max(int_dot::check_int(&format!("{} int × {n} tokens, {blocks:?}, {config:?}", t.label), &t.values, t.cols, t.rows, &units, n, &got));
        }
    }
    // The down projection's input: gate(gate)·up, formed as it quantizes.
    let gate = activations(t.cols, 1, seed + 50);
    let up = activations(t.cols, 1, seed + 60);
    for g in [Gate::Silu, Gate::GeluTanh] {
        let mut glu = gate.clone();
        llama_webgpu::reference::ops::glu(&mut glu, &up, g);
        let (xq, units) = gpu_quantize(ctx, t.cols, &gate, Some((&up, g)), 1, own);
        int_dot::check_quantized(&format!("{} {g:?} input", t.label), &glu, t.cols, &units, own == ActivationBlocks::Q8K, 4e-6);
        let got = gpu_int_matmul(ctx, w, &xq, 1, None);
        worst = worst.max(int_dot::check_int(&format!("{} int {g:?} input", t.label), &t.values, t.cols, t.rows, &units, 1, &got));
    }
    worst
}

/// Every case, every token count, matmul and embedding, on a context with `opts`.
fn all_types(opts: GpuOptions) {
    let ctx = common::gpu::new_context(opts);
    eprintln!("{} {:?}", ctx.adapter_info.name, ctx.features);
    assert!(ctx.features.int_dot, "naga has dot4I8Packed");
    let mut types = std::collections::BTreeSet::new();
    let mut int_types = std::collections::BTreeSet::new();
    for (ci, t) in cases().iter().enumerate() {
        let w = t.upload(&ctx);
        assert_eq!(w.parts().len(), 1);
        let mut worst = 0f64;
        for n in TOKEN_COUNTS {
            let x = activations(t.cols, n, 100 + ci as u64 * 7 + n as u64);
            let (want, scale) = reference(t, &x, n);
            let got = gpu_matmul(&ctx, &w, &x, n);
            worst = worst.max(check(
                &format!("{} × {n} tokens", t.label),
                t.cols,
                &got,
                &want,
                &scale,
            ));
            // Every kernel variant besides the device's choice: prefill through the tiled
            // kernel, (with subgroups) through the broadcasting matvec, and through the
            // multi-token matvec with rows handled by 1 invocation or shared by 16; for one
            // token, rows handled by 1 invocation (broadcasting with subgroups) or shared by 2,
            // 8 or 16 (shuffle or workgroup-memory reduction); each matvec with 1, 2 or 4 rows per
            // invocation group (most cases have row counts that are not multiples of 4).
            let configs: &[(u32, u32, bool, u32)] = if n == 1 {
                &[
                    (1, 1, false, 0),
                    (1, 4, false, 0),
                    (2, 2, false, 0),
                    (8, 1, false, 0),
                    (16, 4, false, 0),
                    (16, 2, false, 0),
                ]
            } else {
                &[
                    (1, 1, false, 0),
                    (1, 2, true, 0),
                    (1, 4, false, u32::MAX),
                    (16, 1, false, u32::MAX),
                    (16, 2, false, u32::MAX),
                ]
            };
            for &(threads_per_row, rows_per_invocation, matvec_prefill, small_batch) in configs {
                {
                    let c = MatmulConfig {
                        threads_per_row,
                        rows_per_invocation,
                        matvec_prefill,
                        small_batch,
                    };
                    let got = gpu_matmul_with(&ctx, &w, &x, n, Some(c));
                    worst = worst.max(check(
                        &format!("{} × {n} tokens, {c:?}", t.label),
                        t.cols,
                        &got,
                        &want,
                        &scale,
                    ));
                }
            }
        }
        // The decode step's down projection: the gate formed as the activations load (SwiGLU
        // on the device's configuration, the broadcasting one and rows shared by 16
        // invocations; GeGLU on the first).
        let gate = activations(t.cols, 1, 500 + ci as u64);
        let up = activations(t.cols, 1, 600 + ci as u64);
        let shared = |tpr, rpi| MatmulConfig { threads_per_row: tpr, rows_per_invocation: rpi, matvec_prefill: false, small_batch: 0 };
        for (g, config) in [(Gate::Silu, None), (Gate::Silu, Some(shared(1, 1))), (Gate::Silu, Some(shared(16, 2))), (Gate::GeluTanh, None)] {
            let mut glu = gate.clone();
            llama_webgpu::reference::ops::glu(&mut glu, &up, g);
            let (want, scale) = reference(t, &glu, 1);
            let got = gpu_glu_matmul(&ctx, &w, &gate, &up, g, config);
            worst = worst.max(check(&format!("{} {g:?} input, {config:?}", t.label), t.cols, &got, &want, &scale));
        }
        let fusions = if t.cols.is_multiple_of(32) {
            format!("; with the norm and residual add folded in: {:.1e}", decode_fusion_cases(&ctx, t, &w, 1100 + ci as u64 * 7))
        } else {
            String::new()
        };
        let ids = embedding_ids(t.rows, 7, ci as u64);
        let inexact = check_embedding(&t.label, t, &ids, &gpu_embedding(&ctx, &w, &ids));
        let int = if int_dot_supported(&ctx, t.ty) {
            int_types.insert(t.ty);
            int_decode_fusion_cases(&ctx, t, &w, 1300 + ci as u64 * 13);
            format!("; packed-integer products: worst error {:.1e} of their bound's scale", int_dot_cases(&ctx, t, &w, 700 + ci as u64 * 11))
        } else {
            let xq = ctx.storage("xq", 1 << 16, wgpu::BufferUsages::empty()).unwrap();
            let step = step_buffer(&ctx).unwrap();
            let y = ctx.storage("y", 4 * t.rows as u64, wgpu::BufferUsages::empty()).unwrap();
            let e = MatmulOp::with_int_dot(&ctx, &w, &xq, &y, &step, None).err().expect("no integer products for this type");
            assert!(matches!(e, GpuError::Validation { .. }), "{e}");
            String::new()
        };
        eprintln!(
            "{:<52} worst error {worst:.1e} of Σ|w·x|{fusions}; embedding: {inexact} values not bit-exact{int}",
            t.label
        );
        types.insert(t.ty);
    }
    for (i, ty) in [F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS].into_iter().chain(LATTICE).enumerate() {
        joint_cases(&ctx, ty, 900 + i as u64);
    }
    eprintln!("joints of every type: members and joint products equal to the matrices apart");
    use GgmlType::*;
    assert_eq!(
        types,
        [F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS]
            .into_iter()
            .chain(LATTICE)
            .collect(),
        "every supported type is tested"
    );
    assert_eq!(
        int_types,
        [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K].into_iter().collect(),
        "every quantized type runs the packed-integer products"
    );
}

#[test]
fn every_type_f16_subgroups() {
    all_types(common::gpu::options(true, true, Some(128 << 20)));
}

#[test]
fn every_type_f32_subgroups() {
    all_types(common::gpu::options(false, true, Some(128 << 20)));
}

#[test]
fn every_type_f16_no_subgroups() {
    all_types(common::gpu::options(true, false, Some(128 << 20)));
}

#[test]
fn every_type_f32_no_subgroups() {
    all_types(common::gpu::options(false, false, None));
}

/// Parts cover the rows in order, each a whole number of rows within the binding limit.
fn check_parts(ctx: &GpuContext, w: &GpuWeight) {
    let mut next = 0;
    for p in w.parts() {
        assert_eq!(p.row0, next);
        assert!(p.rows > 0 && p.buffer.size() <= ctx.limits.max_storage_buffer_binding_size);
        next += p.rows;
    }
    assert_eq!(next, w.rows);
}

#[test]
fn tensors_split_over_the_binding_limit() {
    // 1 MiB: the tied embedding / output matrix (576 × 49152 Q8_0, 30 MB) in ~30 parts.
    let ctx = GpuContext::new_blocking(GpuOptions {
        max_storage_binding: Some(1 << 20),
        ..Default::default()
    })
    .unwrap();
    let m = model("Q4_1");
    let t = m.tensor("token_embd.weight").unwrap();
    let (cols, rows) = (t.info.dims[0] as usize, t.info.dims[1] as usize);
    let w = GpuWeight::upload(
        &ctx,
        "token_embd.weight",
        t.info.ggml_type,
        cols,
        rows,
        t.data,
    )
    .unwrap();
    assert!(w.parts().len() > 20, "{} parts", w.parts().len());
    check_parts(&ctx, &w);
    let table = Tensor::new(
        "token_embd".into(),
        t.info.ggml_type,
        cols,
        rows,
        t.data.to_vec(),
    );
    for n in [1, 3] {
        let x = activations(cols, n, 7 + n as u64);
        let (want, scale) = reference(&table, &x, n);
        let e = check(
            &format!("token_embd × {n}"),
            cols,
            &gpu_matmul(&ctx, &w, &x, n),
            &want,
            &scale,
        );
        eprintln!(
            "token_embd in {} parts × {n} tokens: worst error {e:.1e} of Σ|w·x|",
            w.parts().len()
        );
    }
    // Ids at both ends of every part boundary, the last row, and one past the end (zeros).
    let mut ids: Vec<u32> = w
        .parts()
        .iter()
        .flat_map(|p| [p.row0 as u32, (p.row0 + p.rows - 1) as u32])
        .collect();
    ids.push(rows as u32);
    ids.push(rows as u32 - 1);
    check_embedding("token_embd", &table, &ids, &gpu_embedding(&ctx, &w, &ids));

    // 16 KiB, no subgroups, no f16: many small parts whose row counts are not tile multiples.
    let ctx = common::gpu::context(false, false, Some(16 << 10));
    for t in [
        real("Q4_1", "blk.0.attn_k.weight", GgmlType::Q4_1, None),
        real(
            "Q6_K",
            "blk.0.ffn_down.weight",
            GgmlType::Q6_K,
            Some(0..100),
        ),
        real("Q5_0", "blk.0.attn_q.weight", GgmlType::Q5_0, Some(3..203)),
        synthetic(GgmlType::F16, 333, 101, 9),
    ] {
        let w = t.upload(&ctx);
        assert!(
            w.parts().len() > 2,
            "{}: {} parts",
            t.label,
            w.parts().len()
        );
        check_parts(&ctx, &w);
        for n in [1, 17] {
            let x = activations(t.cols, n, 3 + n as u64);
            let (want, scale) = reference(&t, &x, n);
            check(
                &format!("{} × {n} (split)", t.label),
                t.cols,
                &gpu_matmul(&ctx, &w, &x, n),
                &want,
                &scale,
            );
        }
        let ids = embedding_ids(t.rows, 9, 5);
        check_embedding(&t.label, &t, &ids, &gpu_embedding(&ctx, &w, &ids));
        eprintln!("{}: {} parts OK", t.label, w.parts().len());
    }
}

#[test]
fn unsupported_and_malformed_weights_are_typed_errors() {
    let ctx = GpuContext::new_blocking(GpuOptions::default()).unwrap();
    // The ternary types and MXFP4 (no decoders yet), and integer tensors (not weights).
    for ty in [GgmlType::TQ1_0, GgmlType::TQ2_0, GgmlType::MXFP4, GgmlType::I8] {
        let bytes = vec![0u8; ty.bytes_for(256 * 2).unwrap() as usize];
        let e = GpuWeight::upload(&ctx, "blk.0.ffn_down.weight", ty, 256, 2, &bytes).err().unwrap();
        assert!(matches!(e, GpuError::UnsupportedType { .. }), "{ty}: {e}");
        let msg = e.to_string();
        assert!(msg.contains("blk.0.ffn_down.weight") && msg.contains(ty.name()) && msg.contains("IQ1_M"), "{msg}");
    }
    let e = GpuWeight::upload(&ctx, "short", GgmlType::Q8_0, 64, 2, &[0; 100])
        .err()
        .unwrap();
    assert!(
        matches!(e, GpuError::Validation { .. }) && e.to_string().contains("short"),
        "{e}"
    );
    let e = GpuWeight::upload(&ctx, "ragged", GgmlType::Q4_0, 48, 1, &[0; 27])
        .err()
        .unwrap();
    assert!(matches!(e, GpuError::Validation { .. }), "{e}");
    // Activation buffers smaller than one row are refused when the op is made.
    let w = synthetic(GgmlType::Q8_0, 64, 3, 1).upload(&ctx);
    let small = ctx
        .storage("small", 8, wgpu::BufferUsages::empty())
        .unwrap();
    let big = ctx
        .storage("big", 4096, wgpu::BufferUsages::empty())
        .unwrap();
    let step = step_buffer(&ctx).unwrap();
    for (x, y) in [(&small, &big), (&big, &small)] {
        let e = MatmulOp::new(&ctx, &w, x, y, &step).err().unwrap();
        assert!(matches!(e, GpuError::Validation { .. }), "{e}");
    }
    let e = EmbeddingOp::new(&ctx, &w, &big, &small, &step)
        .err()
        .unwrap();
    assert!(matches!(e, GpuError::Validation { .. }), "{e}");
}

/// Seconds per record of `op` at `n` tokens: `reps` records in one pass, after a warm-up; the
/// best of three such passes (the machine may be busy with other work).
fn time_op(ctx: &GpuContext, op: &MatmulOp, n: u32, reps: usize) -> f64 {
    let run = |reps: usize| {
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for _ in 0..reps {
                op.record(&mut pass, n);
            }
        }
        ctx.queue.submit([enc.finish()]);
        ctx.device
            .poll(wgpu::PollType::wait_indefinitely())
            .unwrap();
    };
    run(2);
    (0..3)
        .map(|_| {
            let t0 = Instant::now();
            run(reps);
            t0.elapsed().as_secs_f64() / reps as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// A benchmark that prints figures and checks nothing:
/// `cargo test --release --test gpu_matmul matvec_timing -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: prints timings, asserts nothing"]
fn matvec_timing() {
    let ctx = GpuContext::new_blocking(GpuOptions::default()).unwrap();
    let m = model("Q4_1");
    for (name, reps) in [("token_embd.weight", 10), ("blk.0.ffn_down.weight", 200)] {
        let t = m.tensor(name).unwrap();
        let (cols, rows) = (t.info.dims[0] as usize, t.info.dims[1] as usize);
        let w = GpuWeight::upload(&ctx, name, t.info.ggml_type, cols, rows, t.data).unwrap();
        let x = ctx
            .upload("x", bytemuck::cast_slice(&activations(cols, 69, 1)))
            .unwrap();
        let y = ctx
            .storage("y", 4 * (69 * rows) as u64, wgpu::BufferUsages::empty())
            .unwrap();
        let step = step_buffer(&ctx).unwrap();
        let op = MatmulOp::new(&ctx, &w, &x, &y, &step).unwrap();
        set_step(&ctx, &step, 1);
        let s = time_op(&ctx, &op, 1, reps);
        let gbs = t.data.len() as f64 / s / 1e9;
        eprintln!(
            "timing on {}: {} matvec {cols}×{rows} ({:.1} MB): {:.3} ms ({gbs:.2} GB/s of weights)",
            ctx.adapter_info.name,
            t.info.ggml_type,
            t.data.len() as f64 / 1e6,
            s * 1e3
        );
        set_step(&ctx, &step, 69);
        let s = time_op(&ctx, &op, 69, (reps / 10).max(2));
        eprintln!(
            "timing: {} matmul {cols}×{rows} × 69 tokens: {:.3} ms",
            t.info.ggml_type,
            s * 1e3
        );
    }
}
