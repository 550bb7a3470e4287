//! The GPU kernels inside a real browser: `cargo test --target wasm32-unknown-unknown` runs this
//! file in headless Chromium (wasm-bindgen-test-runner + chromedriver; see webdriver.json), where
//! WebGPU is Dawn on SwiftShader: no shader-f16 and no wgpu subgroups, so these are the f32,
//! workgroup-reduction kernels as Chrome's WGSL compiler (Tint) builds them. Each weight type's
//! matrix × vector and tiled matrix × matrix, with a binding limit small enough to split the
//! weight, is checked against the CPU dequantization with the error bound of tests/gpu_matmul.rs.
#![cfg(target_arch = "wasm32")]

use llama_webgpu::gpu::ops::{step_buffer, MatmulOp, Step};
use llama_webgpu::gpu::weights::GpuWeight;
use llama_webgpu::gpu::{GpuContext, GpuOptions};
use llama_webgpu::quant::{dequantize, GgmlType};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[path = "common/random.rs"]
mod random;

use random::{quant_weights as weights, Rng};


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
    let mut rng = Rng(99);
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
