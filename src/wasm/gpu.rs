//! The WebGPU device for JS ([`Gpu`]): the features and limits the kernels use.

use super::{js_error, set};
use crate::gpu::{GpuContext, GpuOptions};
use js_sys::Object;
use std::sync::Arc;
use wasm_bindgen::prelude::*;

/// A WebGPU device with the features and limits the kernels use.
#[wasm_bindgen]
pub struct Gpu {
    pub(super) ctx: Arc<GpuContext>,
}

/// Requests a WebGPU adapter and device. `options`: `{allowF16, allowSubgroups,
/// maxStorageBinding, intDot, tuning}` (all optional; forcing features off selects the fallback
/// kernels; `intDot` forces the packed-integer products on or off, see `KernelTuning::int_dot`;
/// `tuning: {norm, swiglu, join, chain, matvecThreads, matvecRows}` overrides the kernel choices
/// made from the adapter as the CLI's flags of those names do: `'fused'` or `'separate'`, `'on'`
/// or `'off'`, and powers of two; the package validates them).
#[wasm_bindgen(js_name = createGpu)]
pub async fn create_gpu(options: JsValue) -> Result<Gpu, JsValue> {
    let get = |k: &str| js_sys::Reflect::get(&options, &k.into()).ok().filter(|v| !v.is_undefined() && !v.is_null());
    let opts = GpuOptions {
        allow_f16: get("allowF16").and_then(|v| v.as_bool()).unwrap_or(true),
        allow_subgroups: get("allowSubgroups").and_then(|v| v.as_bool()).unwrap_or(true),
        max_storage_binding: get("maxStorageBinding").and_then(|v| v.as_f64()).map(|v| v as u64),
        tuning: tuning(get("tuning"), get("intDot").and_then(|v| v.as_bool())),
    };
    let ctx = GpuContext::new(opts).await.map_err(js_error)?;
    Ok(Gpu { ctx: Arc::new(ctx) })
}

/// [`crate::gpu::KernelTuning`] from the `tuning` option.
fn tuning(t: Option<JsValue>, int_dot: Option<bool>) -> crate::gpu::KernelTuning {
    let get = |k: &str| t.as_ref().and_then(|t| js_sys::Reflect::get(t, &k.into()).ok()).filter(|v| !v.is_undefined() && !v.is_null());
    let fused = |k: &str| get(k).and_then(|v| v.as_string()).map(|v| v == "fused");
    let number = |k: &str| get(k).and_then(|v| v.as_f64()).map(|v| v as u32);
    crate::gpu::KernelTuning {
        int_dot,
        fuse_norm: fused("norm"),
        fuse_swiglu: fused("swiglu"),
        join_products: fused("join"),
        chain_steps: get("chain").and_then(|v| v.as_string()).map(|v| v == "on"),
        matvec_threads_per_row: number("matvecThreads"),
        matvec_rows_per_invocation: number("matvecRows"),
        ..Default::default()
    }
}

#[wasm_bindgen]
impl Gpu {
    /// `{adapter: {name, vendor, architecture, description, backend}, features: {shaderF16,
    /// subgroups, subgroupMinSize, subgroupMaxSize, intDotAvailable, intDot, timestampQuery},
    /// kernels: {norm, swiglu, join, chain}, limits: {maxBufferSize, maxStorageBufferBindingSize, ...}}`
    pub fn info(&self) -> JsValue {
        let c = &self.ctx;
        let i = &c.adapter_info;
        let adapter = Object::new();
        set(&adapter, "name", i.name.as_str());
        set(&adapter, "vendor", i.vendor);
        set(&adapter, "driver", i.driver.as_str());
        set(&adapter, "backend", format!("{:?}", i.backend));
        let features = Object::new();
        set(&features, "shaderF16", c.features.f16);
        set(&features, "subgroups", c.features.subgroups);
        set(&features, "subgroupMinSize", c.features.subgroup_min_size);
        set(&features, "subgroupMaxSize", c.features.subgroup_max_size);
        set(&features, "intDotAvailable", c.features.int_dot);
        set(&features, "intDot", c.tuning.int_dot_for(&c.features));
        set(&features, "timestampQuery", c.features.timestamps);
        let how = |fused: bool| if fused { "fused" } else { "separate" };
        let kernels = Object::new();
        set(&kernels, "norm", how(c.fuse_norm()));
        set(&kernels, "swiglu", how(c.fuse_swiglu()));
        set(&kernels, "join", how(c.join_products()));
        set(&kernels, "chain", if c.chain_steps() { "on" } else { "off" });
        let limits = Object::new();
        let l = &c.limits;
        set(&limits, "maxBufferSize", l.max_buffer_size as f64);
        set(&limits, "maxStorageBufferBindingSize", l.max_storage_buffer_binding_size as f64);
        set(&limits, "maxComputeInvocationsPerWorkgroup", l.max_compute_invocations_per_workgroup);
        set(&limits, "maxComputeWorkgroupStorageSize", l.max_compute_workgroup_storage_size);
        set(&limits, "maxStorageBuffersPerShaderStage", l.max_storage_buffers_per_shader_stage);
        let o = Object::new();
        set(&o, "adapter", adapter);
        set(&o, "features", features);
        set(&o, "kernels", kernels);
        set(&o, "limits", limits);
        o.into()
    }
}
