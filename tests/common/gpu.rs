//! GPU contexts for the native kernel and model tests, on whichever adapter wgpu finds (lavapipe
//! here and in CI).

use llama_webgpu::gpu::{GpuContext, GpuOptions};

/// The four kernel paths: (shader-f16, subgroups), each on or off.
pub const PATHS: [(bool, bool); 4] = [(true, true), (true, false), (false, true), (false, false)];

/// Options for one path, with the storage-binding limit capped when `max_binding` is given.
pub fn options(f16: bool, subgroups: bool, max_binding: Option<u64>) -> GpuOptions {
    GpuOptions { allow_f16: f16, allow_subgroups: subgroups, max_storage_binding: max_binding, tuning: Default::default() }
}

/// A context for one path. On lavapipe, which offers both features, the path must be exactly
/// the one asked for; elsewhere a missing feature falls back, and `name` says what ran.
pub fn context(f16: bool, subgroups: bool, max_binding: Option<u64>) -> GpuContext {
    let ctx = GpuContext::new_blocking(options(f16, subgroups, max_binding)).expect("a GPU context");
    if ctx.adapter_info.name.contains("llvmpipe") {
        assert_eq!((ctx.features.f16, ctx.features.subgroups), (f16, subgroups), "lavapipe offers both features");
    }
    ctx
}

/// What a context runs, for test messages: `f16=true subgroups=false`.
pub fn name(ctx: &GpuContext) -> String {
    format!("f16={} subgroups={}", ctx.features.f16, ctx.features.subgroups)
}
