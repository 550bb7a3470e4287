//! The kernel checks that run where Chrome's WebGPU runs them (wasm32, wgpu's WebGPU backend,
//! Tint compiling the WGSL): in headless Chromium on SwiftShader (tests/browser.rs: f32, subgroups
//! of 4) and in Node on Dawn over Mesa 25's lavapipe (tests/dawn.rs: f16 or f32, subgroups of 8).
//! Each check takes the variant to build the kernels for and fails if the device does not give
//! it. Bounds as natively: tests/gpu_matmul.rs, tests/gpu_ops.rs.
#![allow(dead_code)]

use super::draw;
use super::int_dot;
use super::random::{quant_weights as weights, Draws, Rng};
use llama_webgpu::gpu::ops::{
    int_dot_supported, step_buffer, ActivationBlocks, ArgmaxOp, DecodeInput, DrawOp, DrawParams, AttentionOp, AttentionScratch, KvCache, MatmulConfig, MatmulOp, QuantizeOp,
    RmsNormOp, Scores, Step, TopKOp, XQ_UNIT_BYTES,
};
use llama_webgpu::decode::sampling::Draw;
use llama_webgpu::model::Gate;
use llama_webgpu::gpu::weights::GpuWeight;
use llama_webgpu::gpu::{GpuContext, GpuOptions};
use llama_webgpu::quant::{dequantize, GgmlType};
use llama_webgpu::reference::ops;

/// Which kernels: f16 (KV cache and arithmetic where the kernels have it) or f32, and subgroup
/// operations or the workgroup-memory fallbacks.
#[derive(Clone, Copy, Debug)]
pub struct Variant {
    pub f16: bool,
    pub subgroups: bool,
}

/// A context for `v`; fails unless the device gives exactly that.
pub async fn context(v: Variant, max_storage_binding: Option<u64>) -> GpuContext {
    let ctx = GpuContext::new(GpuOptions { allow_f16: v.f16, allow_subgroups: v.subgroups, max_storage_binding, ..Default::default() })
        .await
        .unwrap();
    assert_eq!((ctx.features.f16, ctx.features.subgroups), (v.f16, v.subgroups), "the device does not offer {v:?}");
    ctx
}

pub async fn matmul(ctx: &GpuContext, w: &GpuWeight, x: &[f32], n: usize, config: Option<MatmulConfig>) -> Vec<f32> {
    let xb = ctx.upload("x", bytemuck::cast_slice(x)).unwrap();
    let yb = ctx.upload("y", bytemuck::cast_slice(&vec![f32::NAN; n * w.rows])).unwrap();
    let step = step_buffer(ctx).unwrap();
    let op = match config {
        Some(c) => MatmulOp::with_config(ctx, w, &xb, &yb, &step, c).unwrap(),
        None => MatmulOp::new(ctx, w, &xb, &yb, &step).unwrap(),
    };
    run(ctx, &step, n as u32, |p| op.record(p, n as u32));
    read_f32(ctx, &yb, n * w.rows).await
}

/// Writes the step uniform, records `f` into one compute pass and submits it.
pub fn run(ctx: &GpuContext, step: &wgpu::Buffer, n: u32, f: impl FnOnce(&mut wgpu::ComputePass<'_>)) {
    ctx.write(step, 0, bytemuck::bytes_of(&Step { n_tokens: n, pos: 0, _pad: [0; 2] }));
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        f(&mut pass);
    }
    ctx.queue.submit([enc.finish()]);
}

pub async fn read_f32(ctx: &GpuContext, b: &wgpu::Buffer, n: usize) -> Vec<f32> {
    let bytes = ctx.read(b, 0, (n * 4) as u64).await.unwrap();
    ctx.check().unwrap();
    bytemuck::pod_collect_to_vec(&bytes[..n * 4])
}

/// Each weight type's matrix × vector (one and five tokens, the device's choice of threads per
/// row and 4 and 16 of them, and SwiGLU in the loads) and tiled matrix × matrix, from a weight
/// split by 16 KiB bindings, against the CPU dequantization.
pub async fn every_weight_type(v: Variant) {
    use GgmlType::*;
    // 16 KiB bindings split each weight into several parts.
    let ctx = context(v, Some(16 << 10)).await;
    // The device's choice, and (for one token) rows shared by 4 and by 16 invocations: with
    // subgroups both reduce by shuffles within subgroups (SwiftShader's 4, lavapipe's 8).
    let shared = |tpr| MatmulConfig { threads_per_row: tpr, rows_per_invocation: 2, matvec_prefill: false, small_batch: 0 };
    let mut rng = Rng::new(99);
    for (i, (ty, cols, rows)) in [
        (F32, 96, 70),
        (F16, 160, 301),
        (BF16, 160, 301),
        (IQ4_NL, 160, 301),
        (Q4_0, 160, 301),
        (Q4_1, 160, 301),
        (Q5_0, 160, 301),
        (Q5_1, 160, 301),
        (Q8_0, 160, 301),
        (Q4_K, 512, 77),
        (Q5_K, 512, 77),
        (Q6_K, 512, 77),
        (Q2_K, 512, 150),
        (Q3_K, 512, 77),
        (IQ4_XS, 512, 77),
        (IQ2_XXS, 512, 150),
        (IQ2_XS, 512, 150),
        (IQ2_S, 512, 150),
        (IQ3_XXS, 512, 150),
        (IQ3_S, 512, 150),
        (IQ1_S, 512, 150),
        (IQ1_M, 512, 150),
    ]
    .into_iter()
    .enumerate()
    {
        let data = weights(ty, cols, rows, i as u64);
        let values = dequantize("w", ty, &data, cols * rows).unwrap();
        let w = GpuWeight::upload(&ctx, "w", ty, cols, rows, &data).unwrap();
        assert!(w.parts().len() > 1, "{ty}: expected a split weight");
        // A decode step's down projection on a GPU: the gate formed as the activations load.
        let (gate, up): (Vec<f32>, Vec<f32>) = ((0..cols).map(|_| rng.f() * 4.0).collect(), (0..cols).map(|_| rng.f() * 2.0).collect());
        for g in [Gate::Silu, Gate::GeluTanh] {
            let mut glu = gate.clone();
            ops::glu(&mut glu, &up, g);
            let got = glu_matmul(&ctx, &w, &gate, &up, g).await;
            check(&format!("{ty} {g:?} input, {v:?}"), &values, &glu, cols, rows, 1, &got);
        }
        // The decode step's products with the block's RMSNorm in their loads and the residual
        // add in their writes (MatmulOp::for_decode), on rows shared by 2 invocations.
        let two = Some(MatmulConfig { threads_per_row: 2, rows_per_invocation: 2, matvec_prefill: false, small_batch: 0 });
        let norm_w: Vec<f32> = (0..cols).map(|_| rng.f() * 2.0).collect();
        let resid: Vec<f32> = (0..rows).map(|_| rng.f()).collect();
        let inv = 1.0 / (gate.iter().map(|&a| a as f64 * a as f64).sum::<f64>() / cols as f64 + 1e-5).sqrt();
        let h: Vec<f32> = gate.iter().zip(&norm_w).map(|(&a, &b)| (a as f64 * b as f64 * inv) as f32).collect();
        let nb = ctx.upload("norm weight", bytemuck::cast_slice(&norm_w)).unwrap();
        let got = decode_matmul(&ctx, &w, &gate, DecodeInput::Norm { weight: &nb, eps: 1e-5 }, &resid, true, two).await;
        let got: Vec<f32> = got.iter().zip(&resid).map(|(g, r)| g - r).collect();
        check_loose(&format!("{ty} RMSNorm input, residual add, {v:?}"), &values, &h, cols, rows, &got, &resid);
        for (n, config) in [(1usize, None), (5, None), (1, Some(shared(4))), (1, Some(shared(16)))] {
            let x: Vec<f32> = (0..n * cols).map(|_| rng.f() * 2.0).collect();
            let got = matmul(&ctx, &w, &x, n, config).await;
            check(&format!("{ty}, {n} tokens, {config:?}, {v:?}"), &values, &x, cols, rows, n, &got);
        }
    }
}

/// Joints (Q, K and V in one buffer, as the loader makes them where it can): each weight type's
/// one decode product for the three (MatmulOp::for_decode_into, the RMSNorm in its loads), each
/// output against the CPU and untouched past its rows, and a member alone (bound at its offset
/// in the joint's buffer) as a product of its own.
pub async fn joint_products(v: Variant) {
    use GgmlType::*;
    let ctx = context(v, None).await;
    let mut rng = Rng::new(7);
    let rows = [64usize, 32, 32];
    for (i, (ty, cols)) in [(F32, 96), (F16, 160), (BF16, 160), (Q4_0, 160), (Q4_1, 160), (Q5_0, 160), (Q5_1, 160), (Q8_0, 160), (IQ4_NL, 160), (Q2_K, 512), (Q3_K, 512), (Q4_K, 512), (Q5_K, 512), (Q6_K, 512), (IQ4_XS, 512), (IQ2_XXS, 512), (IQ2_XS, 512), (IQ2_S, 512), (IQ3_XXS, 512), (IQ3_S, 512), (IQ1_S, 512), (IQ1_M, 512)]
        .into_iter()
        .enumerate()
    {
        let data = weights(ty, cols, 128, 50 + i as u64);
        let values = dequantize("w", ty, &data, cols * 128).unwrap();
        let row_bytes = data.len() / 128;
        let pieces = [("q", 64, &data[..64 * row_bytes]), ("k", 32, &data[64 * row_bytes..96 * row_bytes]), ("v", 32, &data[96 * row_bytes..])];
        let members = GpuWeight::upload_joint(&ctx, ty, cols, &pieces).unwrap().unwrap_or_else(|| panic!("{ty}: members at multiples of 256 bytes join"));
        let whole = GpuWeight::join(&members.iter().collect::<Vec<_>>()).expect("a whole joint");
        let x: Vec<f32> = (0..cols).map(|_| rng.f() * 4.0).collect();
        let norm_w: Vec<f32> = (0..cols).map(|_| rng.f() * 2.0).collect();
        let inv = 1.0 / (x.iter().map(|&a| a as f64 * a as f64).sum::<f64>() / cols as f64 + 1e-5).sqrt();
        let h: Vec<f32> = x.iter().zip(&norm_w).map(|(&a, &b)| (a as f64 * b as f64 * inv) as f32).collect();
        let (xb, nb) = (ctx.upload("x", bytemuck::cast_slice(&x)).unwrap(), ctx.upload("norm", bytemuck::cast_slice(&norm_w)).unwrap());
        let ys: Vec<wgpu::Buffer> = rows.iter().map(|&r| ctx.upload("y", bytemuck::cast_slice(&vec![f32::NAN; r + 1])).unwrap()).collect();
        let outputs: Vec<(&wgpu::Buffer, usize)> = ys.iter().zip(rows).collect();
        let step = step_buffer(&ctx).unwrap();
        let op = MatmulOp::for_decode_into(&ctx, &whole, &xb, DecodeInput::Norm { weight: &nb, eps: 1e-5 }, &outputs, &step, None).unwrap();
        run(&ctx, &step, 1, |p| op.record(p, 1));
        let mut row0 = 0;
        for (b, &r) in ys.iter().zip(&rows) {
            let got = read_f32(&ctx, b, r + 1).await;
            assert!(got[r].is_nan(), "{ty}: the joint product wrote past an output's rows");
            let part = &values[row0 * cols..(row0 + r) * cols];
            check_loose(&format!("{ty} joint output at row {row0}, {v:?}"), part, &h, cols, r, &got[..r], &vec![0.0; r]);
            row0 += r;
        }
        let got = matmul(&ctx, &members[1], &x, 1, None).await;
        check(&format!("{ty} joint member at row 64, {v:?}"), &values[64 * cols..96 * cols], &x, cols, 32, 1, &got);
    }
}

/// `got` against `values` (rows × cols) times the `n` rows of `x`, within tests/gpu_matmul.rs's bound.
pub fn check(what: &str, values: &[f32], x: &[f32], cols: usize, rows: usize, n: usize, got: &[f32]) {
    for t in 0..n {
        for r in 0..rows {
            let (mut s, mut a) = (0f64, 0f64);
            for k in 0..cols {
                let p = values[r * cols + k] as f64 * x[t * cols + k] as f64;
                s += p;
                a += p.abs();
            }
            let g = got[t * rows + r] as f64;
            let bound = ((cols / 4 + 26) as f64) * 2f64.powi(-24) * a + 1e-30;
            assert!((g - s).abs() <= bound, "{what} ({cols}x{rows}), row {r}: gpu {g}, cpu {s}");
        }
    }
}

/// One token through [`MatmulOp::for_decode`]; `y` starts as `y0`.
pub async fn decode_matmul(ctx: &GpuContext, w: &GpuWeight, x: &[f32], input: DecodeInput<'_>, y0: &[f32], add: bool, config: Option<MatmulConfig>) -> Vec<f32> {
    let xb = ctx.upload("x", bytemuck::cast_slice(x)).unwrap();
    let yb = ctx.upload("y", bytemuck::cast_slice(y0)).unwrap();
    let step = step_buffer(ctx).unwrap();
    let op = MatmulOp::for_decode(ctx, w, &xb, input, &yb, add, &step, config).unwrap();
    run(ctx, &step, 1, |p| op.record(p, 1));
    read_f32(ctx, &yb, w.rows).await
}

/// [`check`] for a product with the norm folded in, after the residual was subtracted again:
/// the bound of tests/gpu_matmul.rs's decode_fusion_cases (the norm's sum of squares, its
/// inverse square root and the rounding of x·weight add cols/2 + 4 roundings of the result),
/// plus the add's rounding and the subtraction's, relative to |residual| + |result|.
fn check_loose(what: &str, values: &[f32], x: &[f32], cols: usize, rows: usize, got: &[f32], resid: &[f32]) {
    for r in 0..rows {
        let (mut s, mut a) = (0f64, 0f64);
        for k in 0..cols {
            let p = values[r * cols + k] as f64 * x[k] as f64;
            s += p;
            a += p.abs();
        }
        let g = got[r] as f64;
        let eps = 2f64.powi(-24);
        let bound = ((cols / 4 + 26) as f64 + cols as f64 / 2.0 + 4.0) * eps * a + 2.0 * eps * (resid[r].abs() as f64 + s.abs()) * 2.0 + 1e-30;
        assert!((g - s).abs() <= bound, "{what} ({cols}x{rows}), row {r}: gpu {g}, cpu {s}");
    }
}

/// One token through the down projection with the gate `g` in its loads (MatmulOp::with_glu_input).
pub async fn glu_matmul(ctx: &GpuContext, w: &GpuWeight, gate: &[f32], up: &[f32], g: Gate) -> Vec<f32> {
    let gb = ctx.upload("gate", bytemuck::cast_slice(gate)).unwrap();
    let ub = ctx.upload("up", bytemuck::cast_slice(up)).unwrap();
    let yb = ctx.upload("y", bytemuck::cast_slice(&vec![f32::NAN; w.rows])).unwrap();
    let step = step_buffer(ctx).unwrap();
    let op = MatmulOp::with_glu_input(ctx, w, &gb, &ub, g, &yb, &step, None).unwrap();
    run(ctx, &step, 1, |p| op.record(p, 1));
    read_f32(ctx, &yb, w.rows).await
}

/// The packed-integer products as Chrome compiles `dot4I8Packed` and `pack4xI8`: activations
/// quantized on the GPU (plain, silu(gate)·up, and a block input's RMSNorm), then every
/// quantized type's product from a split weight, one and five tokens, against the CPU as in
/// tests/gpu_matmul.rs, and with the residual add in its writes.
pub async fn packed_integer_products(v: Variant) {
    use GgmlType::*;
    let mut rng = Rng::new(17);
    {
        let subgroups = v.subgroups;
        let ctx = context(v, Some(16 << 10)).await;
        assert!(ctx.features.int_dot, "Chrome's WGSL has packed_4x8_integer_dot_product");
        let step = step_buffer(&ctx).unwrap();
        for (i, (ty, cols, rows)) in
            [(Q4_0, 160, 301), (Q4_1, 160, 301), (Q5_0, 160, 301), (Q5_1, 160, 301), (Q8_0, 160, 301), (Q4_K, 512, 77), (Q5_K, 512, 77), (Q6_K, 512, 77)]
                .into_iter()
                .enumerate()
        {
            assert!(int_dot_supported(&ctx, ty));
            let data = weights(ty, cols, rows, 40 + i as u64);
            let values = dequantize("w", ty, &data, cols * rows).unwrap();
            let w = GpuWeight::upload(&ctx, "w", ty, cols, rows, &data).unwrap();
            assert!(w.parts().len() > 1, "{ty}: expected a split weight");
            for (n, glu) in [(1usize, None), (5, None), (1, Some(Gate::Silu)), (1, Some(Gate::GeluTanh))] {
                let x: Vec<f32> = (0..n * cols).map(|_| rng.f() * 2.0).collect();
                let up: Vec<f32> = (0..n * cols).map(|_| rng.f() * 2.0).collect();
                let units = cols.div_ceil(32);
                let xb = ctx.upload("x", bytemuck::cast_slice(&x)).unwrap();
                let ub = ctx.upload("up", bytemuck::cast_slice(&up)).unwrap();
                let xq = ctx.storage("xq", (n * units) as u64 * XQ_UNIT_BYTES, wgpu::BufferUsages::empty()).unwrap();
                let blocks = ActivationBlocks::for_type(ty);
                let op = QuantizeOp::new(&ctx, cols, &xb, glu.map(|g| (&ub, g)), &xq, &step, blocks).unwrap();
                run(&ctx, &step, n as u32, |p| op.record(p, n as u32));
                let q = int_dot::parse(&ctx.read(&xq, 0, (n * units) as u64 * XQ_UNIT_BYTES).await.unwrap());
                let what = format!("{ty}, {n} tokens, gated input {glu:?}, {v:?}, subgroups {subgroups}");
                let mut input = x.clone();
                if let Some(g) = glu {
                    ops::glu(&mut input, &up, g);
                }
                int_dot::check_quantized(&what, &input, cols, &q, blocks == ActivationBlocks::Q8K, if glu.is_some() { 4e-6 } else { 1e-6 });
                let yb = ctx.upload("y", bytemuck::cast_slice(&vec![f32::NAN; n * rows])).unwrap();
                let op = MatmulOp::with_int_dot(&ctx, &w, &xq, &yb, &step, None).unwrap();
                run(&ctx, &step, n as u32, |p| op.record(p, n as u32));
                let got = read_f32(&ctx, &yb, n * rows).await;
                int_dot::check_int(&what, &values, cols, rows, &q, n, &got);
            }
            // A decode step's block input: the norm done by the quantize gives the norm kernel's
            // output quantized, byte for byte; the residual add in the product's writes gives the
            // plain product plus the residual, to the bit.
            let n = 3;
            let blocks = ActivationBlocks::for_type(ty);
            let up = |v: &[f32]| ctx.upload("in", bytemuck::cast_slice(v)).unwrap();
            let (xb, nb) = (up(&rng.vec(n * cols, 3.0)), up(&rng.vec(cols, 2.0)));
            let hb = ctx.storage("h", (n * cols * 4) as u64, wgpu::BufferUsages::empty()).unwrap();
            let xq_bytes = (n * cols.div_ceil(32)) as u64 * XQ_UNIT_BYTES;
            let [xq, xq_apart] = ["xq", "xq apart"].map(|l| ctx.storage(l, xq_bytes, wgpu::BufferUsages::empty()).unwrap());
            let norm = RmsNormOp::new(&ctx, &xb, &nb, &hb, cols as u32, 1e-5, &step).unwrap();
            let quantize = QuantizeOp::new(&ctx, cols, &hb, None, &xq_apart, &step, blocks).unwrap();
            let normed = QuantizeOp::normed(&ctx, cols, &xb, &nb, 1e-5, &xq, &step, blocks).unwrap();
            run(&ctx, &step, n as u32, |p| {
                norm.record(p, n as u32);
                quantize.record(p, n as u32);
                normed.record(p, n as u32);
            });
            let folded = ctx.read(&xq, 0, xq_bytes).await.unwrap();
            assert!(folded == ctx.read(&xq_apart, 0, xq_bytes).await.unwrap(), "{ty}, {v:?}: the normed quantize differs from the norm kernel's output quantized");
            let resid = rng.vec(rows, 3.0);
            let (yb, yr) = (up(&vec![f32::NAN; rows]), up(&resid));
            let plain = MatmulOp::with_int_dot(&ctx, &w, &xq, &yb, &step, None).unwrap();
            let add = MatmulOp::int_dot_decode(&ctx, &w, &xq, &[(&yr, rows)], true, &step, None).unwrap();
            run(&ctx, &step, 1, |p| {
                plain.record(p, 1);
                add.record(p, 1);
            });
            let want: Vec<f32> = read_f32(&ctx, &yb, rows).await.iter().zip(&resid).map(|(a, b)| a + b).collect();
            assert!(read_f32(&ctx, &yr, rows).await == want, "{ty}, {v:?}: the packed-integer residual add");
        }
    }
}

/// RMSNorm's row sum (subgroupAdd, or a workgroup-memory tree), with and without the residual
/// add, at widths that are not multiples of the workgroup.
pub async fn rms_norm(v: Variant) {
    let mut rng = Rng::new(1);
    {
        let subgroups = v.subgroups;
        let ctx = context(v, None).await;
        let step = step_buffer(&ctx).unwrap();
        for (dim, n) in [(576usize, 1usize), (577, 7), (4096, 3)] {
            let x = rng.vec(n * dim, 3.0);
            let w = rng.vec(dim, 2.0);
            let r = rng.vec(n * dim, 3.0);
            let sum: Vec<f32> = x.iter().zip(&r).map(|(a, b)| a + b).collect();
            let (mut want, mut want_res) = (vec![0f32; n * dim], vec![0f32; n * dim]);
            ops::rms_norm(&x, &w, 1e-5, &mut want);
            ops::rms_norm(&sum, &w, 1e-5, &mut want_res);
            let up = |v: &[f32]| ctx.upload("in", bytemuck::cast_slice(v)).unwrap();
            let (xb, wb, xr, rb) = (up(&x), up(&w), up(&x), up(&r));
            let out = ctx.storage("out", (n * dim * 4) as u64, wgpu::BufferUsages::empty()).unwrap();
            let op = RmsNormOp::new(&ctx, &xb, &wb, &out, dim as u32, 1e-5, &step).unwrap();
            run(&ctx, &step, n as u32, |p| op.record(p, n as u32));
            let got = read_f32(&ctx, &out, n * dim).await;
            let op = RmsNormOp::with_residual(&ctx, &xr, &rb, &wb, &out, dim as u32, 1e-5, &step).unwrap();
            run(&ctx, &step, n as u32, |p| op.record(p, n as u32));
            let got_res = read_f32(&ctx, &out, n * dim).await;
            assert_eq!(read_f32(&ctx, &xr, n * dim).await, sum, "x + r not kept");
            // A post-norm's residual add: x += norm(r) · w in one pass.
            let (xa, ra) = (up(&x), up(&r));
            let op = RmsNormOp::add_normed(&ctx, &xa, &ra, &wb, dim as u32, 1e-5, &step).unwrap();
            run(&ctx, &step, n as u32, |p| op.record(p, n as u32));
            let got_add = read_f32(&ctx, &xa, n * dim).await;
            let mut normed_r = vec![0f32; n * dim];
            ops::rms_norm(&r, &w, 1e-5, &mut normed_r);
            for (i, ((g, a), b)) in got_add.iter().zip(&x).zip(&normed_r).enumerate() {
                assert!((g - (a + b)).abs() <= 1e-5 * (a.abs() + b.abs()), "subgroups {subgroups} dim {dim}: x + norm(r) at {i}: {g} vs {}", a + b);
            }
            // Only the row's scale carries error (tests/gpu_ops.rs): 1e-5 relative.
            for (what, got, want) in [("plain", &got[..], &want[..]), ("residual", &got_res[..], &want_res[..])] {
                for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
                    assert!((g - w).abs() <= 1e-5 * w.abs(), "subgroups {subgroups} dim {dim} {what} {i}: gpu {g}, cpu {w}");
                }
            }
        }
    }
}

/// The token selection kernels (subgroupMax/subgroupMin, or a workgroup-memory tree) pick
/// exactly the CPU's tokens, ties to the lowest id; the seeded draw after the top-k picks the
/// host's token wherever rounding cannot move it (tests/common/draw.rs).
pub async fn argmax_and_top_k(v: Variant) {
    let mut rng = Rng::new(5);
    {
        let subgroups = v.subgroups;
        let ctx = context(v, None).await;
        let out = ctx.storage("out", 64 * 8, wgpu::BufferUsages::empty()).unwrap();
        let step = step_buffer(&ctx).unwrap();
        for n in [5usize, 2049, 128_256] {
            let ties: Vec<f32> = (0..n).map(|_| (rng.f() * 8.0).round() / 4.0).collect();
            let mut last = rng.vec(n, 20.0);
            last[n - 1] = 21.0;
            for (what, logits) in [("random", rng.vec(n, 20.0)), ("ties", ties), ("max last", last)] {
                let lb = ctx.upload("logits", bytemuck::cast_slice(&logits)).unwrap();
                let mut idx: Vec<u32> = (0..n as u32).collect();
                idx.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
                let op = ArgmaxOp::new(&ctx, &lb, n as u32, &out).unwrap();
                run(&ctx, &step, 1, |p| op.record(p));
                let id = ctx.read(&out, 0, 4).await.unwrap();
                assert_eq!(bytemuck::pod_read_unaligned::<u32>(&id[..4]), idx[0], "subgroups {subgroups} n {n} {what}: argmax");
                let k = 40.min(n);
                let op = TopKOp::new(&ctx, &lb, n as u32, k as u32, &out).unwrap();
                run(&ctx, &step, 1, |p| op.record(p));
                let got = TopKOp::parse(&ctx.read(&out, 0, op.out_bytes()).await.unwrap());
                ctx.check().unwrap();
                let want: Vec<(u32, f32)> = idx[..k].iter().map(|&i| (i, logits[i as usize])).collect();
                assert_eq!(got, want, "subgroups {subgroups} n {n} {what}: top-{k}");
                if k < 2 {
                    continue;
                }
                let token = ctx.storage("token", 16, wgpu::BufferUsages::empty()).unwrap();
                let drawer = DrawOp::new(&ctx, &op, &out, &token).unwrap();
                for (temperature, top_p, min_p) in [(0.8, 0.95, 0.05), (2.0, 1.0, 0.0), (0.3, 0.7, 0.1)] {
                    for r in [0.0, rng.next_f64(), rng.next_f64(), 0.999_999] {
                        let d = Draw { k, temperature, top_p, min_p, r };
                        drawer.set(&ctx, &DrawParams::new(k, temperature, top_p, min_p, r)).unwrap();
                        run(&ctx, &step, 1, |p| drawer.record(p));
                        let got = bytemuck::pod_read_unaligned::<u32>(&ctx.read(&token, 0, 4).await.unwrap()[..4]);
                        ctx.check().unwrap();
                        if draw::margin(&want, &d) >= draw::NEAR {
                            assert_eq!(got, d.pick(&want), "subgroups {subgroups} n {n} {what}: {d:?}");
                        } else {
                            assert!(want.iter().any(|c| c.0 == got), "subgroups {subgroups} n {n} {what}: {d:?} drew {got}");
                        }
                    }
                }
            }
        }
    }
}

/// Attention through Tint (SwiftShader once did not give a `var` declared inside a loop a fresh
/// zero value on each iteration, the WGSL rule naga follows): a 300-token prefill walks two
/// 256-key chunks, then one decode token over 301 keys splits across workgroups. With f16, the
/// reference rounds K and V to f16 as the cache stores them. Then the same with Gemma 3's local
/// scores: another scale and a 37-position window.
pub async fn attention(v: Variant) {
    attention_with(v, None).await;
    attention_with(v, Some(Scores { scale: 0.1, window: Some(37) })).await;
}

async fn attention_with(v: Variant, scores: Option<Scores>) {
    let ctx = context(v, None).await;
    let (n_head, n_kv, hd) = (4usize, 2usize, 64usize);
    let (qw, kw) = (n_head * hd, n_kv * hd);
    let prompt = 300usize;
    let cache = KvCache::new(&ctx, 1, 320, n_kv as u32, hd as u32).unwrap();
    assert_eq!(cache.f16, v.f16);
    let stored = |x: Vec<f32>| -> Vec<f32> {
        if v.f16 { x.iter().map(|&a| half::f16::from_f32(a).to_f32()).collect() } else { x }
    };
    let buf = |n: usize| ctx.storage("attn io", (n * 4) as u64, wgpu::BufferUsages::empty()).unwrap();
    let (q, k, v, out) = (buf(prompt * qw), buf(prompt * kw), buf(prompt * kw), buf(prompt * qw));
    let step = step_buffer(&ctx).unwrap();
    let scratch = AttentionScratch::new(&ctx, &cache, n_head as u32, prompt as u32).unwrap();
    let scores = scores.unwrap_or(Scores::standard(hd as u32));
    let op = AttentionOp::with_scores(&ctx, &q, &k, &v, &out, &cache, 0, n_head as u32, &scratch, scores, &step).unwrap();
    let mut rng = Rng::new(7);
    let (mut all_k, mut all_v) = (Vec::new(), Vec::new());
    for (pos, n) in [(0usize, prompt), (prompt, 1)] {
        let (qv, kv, vv) = (rng.vec(n * qw, 1.0), rng.vec(n * kw, 2.0), rng.vec(n * kw, 1.0));
        ctx.write(&q, 0, bytemuck::cast_slice(&qv));
        ctx.write(&k, 0, bytemuck::cast_slice(&kv));
        ctx.write(&v, 0, bytemuck::cast_slice(&vv));
        ctx.write(&step, 0, bytemuck::bytes_of(&Step { n_tokens: n as u32, pos: pos as u32, _pad: [0; 2] }));
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            op.record(&mut pass, n as u32, pos as u32);
        }
        ctx.queue.submit([enc.finish()]);
        let bytes = ctx.read(&out, 0, (n * qw * 4) as u64).await.unwrap();
        ctx.check().unwrap();
        let got: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes[..n * qw * 4]);
        all_k.extend_from_slice(&stored(kv));
        all_v.extend_from_slice(&stored(vv));
        let mut want = vec![0f32; n * qw];
        ops::attention_with(&qv, &all_k, &all_v, pos, n_head, n_kv, hd, scores.scale, scores.window, &mut want);
        // Outputs are convex combinations of values in [-1, 1): an absolute bound.
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() < 1e-4, "{scores:?}, {n} tokens at {pos}: output {i} (token {}): gpu {g}, cpu {w}", i / qw);
        }
    }
}
