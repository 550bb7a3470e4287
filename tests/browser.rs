//! The GPU kernels inside a real browser: `cargo test --target wasm32-unknown-unknown` runs this
//! file in headless Chromium (wasm-bindgen-test-runner + chromedriver; see webdriver.json), where
//! WebGPU is Dawn on SwiftShader: no shader-f16, and subgroups of 4, which wgpu cannot ask for
//! itself (the engine adds them: src/gpu/web_subgroups.rs). So these are the f32 kernels as
//! Chrome's WGSL compiler (Tint) builds them, with subgroup operations and with the
//! workgroup-memory fallbacks: the checks of tests/common/web_kernels.rs (every weight type's
//! products from split weights, the packed-integer products, RMSNorm, token selection,
//! attention), which tests/dawn.rs runs with f16 as well.
#![cfg(target_arch = "wasm32")]

use llama_webgpu::gpu::{GpuContext, GpuOptions};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[path = "common/random.rs"]
mod random;
#[path = "common/int_dot.rs"]
mod int_dot;
#[path = "common/draw.rs"]
mod draw;
#[path = "common/web_kernels.rs"]
mod web_kernels;

use web_kernels::Variant;

/// SwiftShader's two paths: f32 with subgroups, and f32 without.
const WITH: Variant = Variant { f16: false, subgroups: true };
const WITHOUT: Variant = Variant { f16: false, subgroups: false };

#[wasm_bindgen_test]
async fn the_engine_gets_subgroups_in_the_browser() {
    let ctx = GpuContext::new(GpuOptions::default()).await.unwrap();
    assert!(!ctx.features.f16, "SwiftShader in Chromium has no shader-f16");
    assert!(ctx.features.subgroups, "the device request asks for subgroups (web_subgroups.rs)");
    assert_eq!((ctx.features.subgroup_min_size, ctx.features.subgroup_max_size), (4, 4), "SwiftShader's subgroups");
    let off = GpuContext::new(GpuOptions { allow_subgroups: false, ..Default::default() }).await.unwrap();
    assert!(!off.features.subgroups);
    // The wrapper is gone again: a device this page requests itself gets only what it asks for.
    let gpu = web_sys_gpu();
    let adapter = awaited(call(&gpu, "requestAdapter", &[])).await;
    let device = awaited(call(&adapter, "requestDevice", &[])).await;
    let features = js_sys::Reflect::get(&device, &"features".into()).unwrap();
    let has = call(&features, "has", &["subgroups".into()]);
    assert_eq!(has.as_bool(), Some(false), "requestDevice was left wrapped");
}

async fn awaited(promise: wasm_bindgen::JsValue) -> wasm_bindgen::JsValue {
    use wasm_bindgen::JsCast;
    let p: js_sys::Promise = promise.dyn_into().unwrap();
    wasm_bindgen_futures::JsFuture::from(p).await.unwrap()
}

fn web_sys_gpu() -> wasm_bindgen::JsValue {
    let nav = js_sys::Reflect::get(&js_sys::global(), &"navigator".into()).unwrap();
    js_sys::Reflect::get(&nav, &"gpu".into()).unwrap()
}

fn call(this: &wasm_bindgen::JsValue, method: &str, args: &[wasm_bindgen::JsValue]) -> wasm_bindgen::JsValue {
    use wasm_bindgen::JsCast;
    let f: js_sys::Function = js_sys::Reflect::get(this, &method.into()).unwrap().dyn_into().unwrap();
    f.apply(this, &args.iter().collect::<js_sys::Array>()).unwrap()
}

#[wasm_bindgen_test]
async fn every_weight_type_multiplies_like_the_cpu_with_subgroups() {
    web_kernels::every_weight_type(WITH).await;
}

#[wasm_bindgen_test]
async fn every_weight_type_multiplies_like_the_cpu_without_subgroups() {
    web_kernels::every_weight_type(WITHOUT).await;
}

#[wasm_bindgen_test]
async fn joint_products_match_the_cpu_on_both_paths() {
    web_kernels::joint_products(WITH).await;
    web_kernels::joint_products(WITHOUT).await;
}

#[wasm_bindgen_test]
async fn packed_integer_products_match_the_cpu_on_both_paths() {
    web_kernels::packed_integer_products(WITH).await;
    web_kernels::packed_integer_products(WITHOUT).await;
}

#[wasm_bindgen_test]
async fn rms_norm_matches_the_cpu_on_both_paths() {
    web_kernels::rms_norm(WITH).await;
    web_kernels::rms_norm(WITHOUT).await;
}

#[wasm_bindgen_test]
async fn argmax_and_top_k_match_the_cpu_on_both_paths() {
    web_kernels::argmax_and_top_k(WITH).await;
    web_kernels::argmax_and_top_k(WITHOUT).await;
}

#[wasm_bindgen_test]
async fn attention_over_several_key_chunks_matches_the_cpu() {
    web_kernels::attention(WITH).await;
}
