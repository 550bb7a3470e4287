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
    let ctx = new_context(options(f16, subgroups, max_binding));
    if ctx.adapter_info.name.contains("llvmpipe") {
        assert_eq!((ctx.features.f16, ctx.features.subgroups), (f16, subgroups), "lavapipe offers both features");
    }
    ctx
}

/// What a context runs, for test messages: `f16=true subgroups=false`.
pub fn name(ctx: &GpuContext) -> String {
    format!("f16={} subgroups={}", ctx.features.f16, ctx.features.subgroups)
}

/// A context for `opts`. Lavapipe's subgroups are as wide as its vectors, which
/// `LP_NATIVE_VECTOR_WIDTH` sets: scripts/test runs the kernel tests again with 128 and 512 for
/// subgroups of 4 (SwiftShader's size) and 16, and sets `LLAMA_WEBGPU_EXPECT_SUBGROUP_SIZE` so
/// that a run which did not get that size fails instead of testing 8 again.
pub fn new_context(opts: GpuOptions) -> GpuContext {
    let ctx = GpuContext::new_blocking(opts).expect("a GPU context");
    if let Ok(want) = std::env::var("LLAMA_WEBGPU_EXPECT_SUBGROUP_SIZE") {
        if ctx.features.subgroups {
            let want: u32 = want.parse().expect("LLAMA_WEBGPU_EXPECT_SUBGROUP_SIZE is a number");
            let got = (ctx.features.subgroup_min_size, ctx.features.subgroup_max_size);
            assert_eq!(got, (want, want), "subgroup sizes (LP_NATIVE_VECTOR_WIDTH={:?})", std::env::var("LP_NATIVE_VECTOR_WIDTH").ok());
        }
    }
    ctx
}
