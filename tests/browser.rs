//! The GPU kernels inside a real browser: `cargo test --target wasm32-unknown-unknown` runs this
//! file in headless Chromium (wasm-bindgen-test-runner + chromedriver; see webdriver.json), where
//! WebGPU is Dawn on SwiftShader: no shader-f16 and no wgpu subgroups, so these are the f32,
//! workgroup-reduction kernels as Chrome's WGSL compiler (Tint) builds them. Each weight type's
//! matrix × vector and tiled matrix × matrix, with a binding limit small enough to split the
//! weight, is checked against the CPU dequantization with the error bound of tests/gpu_matmul.rs.
#![cfg(target_arch = "wasm32")]

use llama_webgpu::gpu::ops::{step_buffer, AttentionOp, AttentionScratch, KvCache, MatmulOp, Step};
use llama_webgpu::reference::ops;
use llama_webgpu::gpu::weights::GpuWeight;
use llama_webgpu::gpu::{GpuContext, GpuOptions};
use llama_webgpu::quant::{dequantize, GgmlType};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[path = "common/random.rs"]
mod random;

use random::{quant_weights as weights, Draws, Rng};


async fn matmul(ctx: &GpuContext, w: &GpuWeight, x: &[f32], n: usize) -> Vec<f32> {
    let xb = ctx.upload("x", bytemuck::cast_slice(x)).unwrap();
    let yb = ctx.upload("y", bytemuck::cast_slice(&vec![f32::NAN; n * w.rows])).unwrap();
    let step = step_buffer(ctx).unwrap();
    ctx.write(&step, 0, bytemuck::bytes_of(&Step { n_tokens: n as u32, pos: 0, _pad: [0; 2] }));
    let op = MatmulOp::new(ctx, w, &xb, &yb, &step).unwrap();
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        op.record(&mut pass, n as u32);
    }
    ctx.queue.submit([enc.finish()]);
    let bytes = ctx.read(&yb, 0, (n * w.rows * 4) as u64).await.unwrap();
    ctx.check().unwrap();
    bytemuck::pod_collect_to_vec(&bytes[..n * w.rows * 4])
}

#[wasm_bindgen_test]
async fn browser_adapter_is_the_f32_no_subgroup_path() {
    let ctx = GpuContext::new(GpuOptions::default()).await.unwrap();
    assert!(!ctx.features.f16, "SwiftShader in Chromium has no shader-f16");
    assert!(!ctx.features.subgroups, "wgpu's web backend exposes no subgroups");
}

#[wasm_bindgen_test]
async fn every_weight_type_multiplies_like_the_cpu_in_the_browser() {
    use GgmlType::*;
    // 16 KiB bindings split each weight into several parts.
    let ctx = GpuContext::new(GpuOptions { max_storage_binding: Some(16 << 10), ..Default::default() })
        .await
        .unwrap();
    let mut rng = Rng::new(99);
    for (i, (ty, cols, rows)) in [
        (F32, 96, 70),
        (F16, 160, 301),
        (Q4_0, 160, 301),
        (Q4_1, 160, 301),
        (Q5_0, 160, 301),
        (Q5_1, 160, 301),
        (Q8_0, 160, 301),
        (Q4_K, 512, 77),
        (Q5_K, 512, 77),
        (Q6_K, 512, 77),
    ]
    .into_iter()
    .enumerate()
    {
        let data = weights(ty, cols, rows, i as u64);
        let values = dequantize("w", ty, &data, cols * rows).unwrap();
        let w = GpuWeight::upload(&ctx, "w", ty, cols, rows, &data).unwrap();
        assert!(w.parts().len() > 1, "{ty}: expected a split weight");
        for n in [1usize, 5] {
            let x: Vec<f32> = (0..n * cols).map(|_| rng.f() * 2.0).collect();
            let got = matmul(&ctx, &w, &x, n).await;
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
                    assert!((g - s).abs() <= bound, "{ty} {cols}x{rows}, {n} tokens, row {r}: gpu {g}, cpu {s}");
                }
            }
        }
    }
}

/// Attention through Tint and SwiftShader, which once did not give a `var` declared inside a
/// loop a fresh zero value on each iteration (the WGSL rule naga follows): a 300-token prefill
/// walks two 256-key chunks, then one decode token over 301 keys splits across workgroups.
#[wasm_bindgen_test]
async fn attention_over_several_key_chunks_matches_the_cpu() {
    let ctx = GpuContext::new(GpuOptions::default()).await.unwrap();
    let (n_head, n_kv, hd) = (4usize, 2usize, 64usize);
    let (qw, kw) = (n_head * hd, n_kv * hd);
    let prompt = 300usize;
    let cache = KvCache::new(&ctx, 1, 320, n_kv as u32, hd as u32).unwrap();
    assert!(!cache.f16, "SwiftShader: f32 cache");
    let buf = |n: usize| ctx.storage("attn io", (n * 4) as u64, wgpu::BufferUsages::empty()).unwrap();
    let (q, k, v, out) = (buf(prompt * qw), buf(prompt * kw), buf(prompt * kw), buf(prompt * qw));
    let step = step_buffer(&ctx).unwrap();
    let scratch = AttentionScratch::new(&ctx, &cache, n_head as u32, prompt as u32).unwrap();
    let op = AttentionOp::new(&ctx, &q, &k, &v, &out, &cache, 0, n_head as u32, &scratch, &step).unwrap();
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
        all_k.extend_from_slice(&kv);
        all_v.extend_from_slice(&vv);
        let mut want = vec![0f32; n * qw];
        ops::attention(&qv, &all_k, &all_v, pos, n_head, n_kv, hd, &mut want);
        // Outputs are convex combinations of values in [-1, 1): an absolute bound.
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() < 1e-4, "{n} tokens at {pos}: output {i} (token {}): gpu {g}, cpu {w}", i / qw);
        }
    }
}
