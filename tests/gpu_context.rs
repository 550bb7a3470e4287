//! The GPU context on lavapipe: feature detection, forced fallbacks, pipeline cache, and the
//! element-wise kernels against a CPU reference.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use llama_webgpu::gpu::ops::{step_buffer, AddOp, Step, GluOp};
use llama_webgpu::gpu::{kernels, GpuContext, GpuOptions};
use llama_webgpu::model::Gate;

/// Runs add (no gate) or the gated product over `[n_tokens][width]` through the op API, as the
/// model graph does.
fn run_elementwise(ctx: &GpuContext, gate: Option<Gate>, x: &[f32], y: &[f32]) -> Vec<f32> {
    // Split into "tokens" of a width that does not divide the workgroup size.
    let width = if x.len().is_multiple_of(7) {
        7
    } else {
        x.len() as u32 as usize
    };
    let n_tokens = (x.len() / width) as u32;
    let xb = ctx.upload("x", bytemuck::cast_slice(x)).unwrap();
    let yb = ctx.upload("y", bytemuck::cast_slice(y)).unwrap();
    let step = step_buffer(ctx).unwrap();
    ctx.write(
        &step,
        0,
        bytemuck::bytes_of(&Step {
            n_tokens,
            pos: 0,
            _pad: [0; 2],
        }),
    );
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        match gate {
            None => AddOp::new(ctx, &xb, &yb, width as u32, &step).unwrap().record(&mut pass, n_tokens),
            Some(g) => GluOp::new(ctx, &xb, &yb, width as u32, g, &step).unwrap().record(&mut pass, n_tokens),
        }
    }
    ctx.queue.submit([enc.finish()]);
    ctx.read_f32(&xb, 0, x.len()).unwrap()
}

#[test]
fn context_detects_features_and_honours_fallbacks() {
    let full = GpuContext::new_blocking(GpuOptions::default()).unwrap();
    eprintln!(
        "adapter: {} ({:?}), features {:?}",
        full.adapter_info.name, full.adapter_info.backend, full.features
    );
    let bare = GpuContext::new_blocking(common::gpu::options(false, false, Some(128 << 20))).unwrap();
    assert!(!bare.features.f16 && !bare.features.subgroups);
    assert_eq!(bare.limits.max_storage_buffer_binding_size, 128 << 20);
    // lavapipe offers both; if this runs elsewhere, say what was found rather than fail.
    if full.adapter_info.name.contains("llvmpipe") {
        assert!(
            full.features.f16 && full.features.subgroups,
            "{:?}",
            full.features
        );
    }
}

#[test]
fn elementwise_kernels_match_cpu() {
    for opts in [
        GpuOptions::default(),
        common::gpu::options(false, false, None),
    ] {
        let ctx = GpuContext::new_blocking(opts).unwrap();
        for n in [1usize, 255, 256, 1001, 70_001] {
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect();
            let y: Vec<f32> = (0..n)
                .map(|i| ((i * 13 % 97) as f32 - 40.0) / 11.0)
                .collect();
            let got = run_elementwise(&ctx, None, &x, &y);
            for i in 0..n {
                assert_eq!(got[i], x[i] + y[i]);
            }
            // Gates over ±7, and over ±57 for GELU, whose tanh must saturate without overflow.
            let wide: Vec<f32> = x.iter().map(|v| v * 8.0).collect();
            for (gate, x) in [(Gate::Silu, &x), (Gate::GeluTanh, &x), (Gate::GeluTanh, &wide)] {
                let got = run_elementwise(&ctx, Some(gate), x, &y);
                for i in 0..n {
                    let want = gate.apply(x[i]) * y[i];
                    assert!(
                        (got[i] - want).abs() <= 1e-5 * want.abs().max(1.0),
                        "{gate:?} n={n} i={i} x={}: {} vs {want}",
                        x[i],
                        got[i]
                    );
                }
            }
        }
        let before = ctx.pipeline_count();
        ctx.pipeline(kernels::ELEMENTWISE, "add", &ctx.base_defs())
            .unwrap();
        assert_eq!(ctx.pipeline_count(), before, "pipelines are cached");
    }
}

#[test]
fn shader_errors_and_oversized_buffers_are_typed() {
    let ctx = GpuContext::new_blocking(GpuOptions::default()).unwrap();
    let bad = llama_webgpu::gpu::Kernel {
        name: "broken",
        source: "@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }",
    };
    let e = ctx.pipeline(bad, "main", &ctx.base_defs()).err().unwrap();
    assert!(e.to_string().contains("broken"), "{e}");
    let e = ctx
        .storage(
            "huge",
            ctx.limits.max_buffer_size + 4,
            wgpu::BufferUsages::empty(),
        )
        .err()
        .unwrap();
    assert!(
        matches!(e, llama_webgpu::gpu::GpuError::OutOfMemory(_)),
        "{e}"
    );
}
