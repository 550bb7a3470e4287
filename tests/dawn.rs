//! The GPU kernels as Chrome builds them for a GPU with shader-f16 and subgroups: this file runs
//! in Node (wasm-bindgen-test-runner; no `run_in_browser`) with Dawn for Node, Chrome's WebGPU
//! implementation and its Tint compiler, on Mesa 25's lavapipe as `navigator.gpu`
//! (tests/dawn/globals.mjs, which every test imports before it asks for a device). Headless Chromium
//! gives only SwiftShader, without shader-f16, so this is where the f16 kernels that most users'
//! browsers run are compiled by Tint and checked: the checks of tests/common/web_kernels.rs in
//! f16 with subgroups (of 8) and with the workgroup-memory fallbacks, and the packed-integer
//! products, RMSNorm, token selection and attention in f32 with subgroups of 8 as well.
//!
//! `cargo test --release --target wasm32-unknown-unknown --no-default-features --test dawn`
//! (after scripts/setup): each test imports tests/dawn/globals.mjs first.
#![cfg(target_arch = "wasm32")]

use llama_webgpu::gpu::{GpuContext, GpuOptions};
use wasm_bindgen_test::*;

#[path = "common/random.rs"]
mod random;
#[path = "common/int_dot.rs"]
mod int_dot;
#[path = "common/draw.rs"]
mod draw;
#[path = "common/web_kernels.rs"]
mod web_kernels;

use web_kernels::Variant;

/// The f16 kernels with subgroups and without. The f32 ones Tint compiles in headless Chromium
/// (tests/browser.rs, both paths); here they run once more with subgroups of 8.
const F16: [Variant; 2] = [Variant { f16: true, subgroups: true }, Variant { f16: true, subgroups: false }];
const F32_SUBGROUPS: Variant = Variant { f16: false, subgroups: true };

/// Makes Dawn for Node this process's `navigator.gpu` (once; later imports are cached).
async fn dawn() {
    let import = js_sys::Function::new_no_args(&format!("return import('{}/tests/dawn/globals.mjs')", env!("CARGO_MANIFEST_DIR")));
    let promise: js_sys::Promise = import.call0(&wasm_bindgen::JsValue::NULL).unwrap().into();
    if let Err(e) = wasm_bindgen_futures::JsFuture::from(promise).await {
        panic!("Dawn for Node did not start (run scripts/setup): {e:?}");
    }
}

#[wasm_bindgen_test]
async fn dawn_gives_the_engine_f16_subgroups_timestamps_and_integer_dot_products() {
    dawn().await;
    let ua = js_sys::Reflect::get(&js_sys::global(), &"navigator".into())
        .and_then(|n| js_sys::Reflect::get(&n, &"userAgent".into()))
        .ok()
        .and_then(|u| u.as_string())
        .unwrap_or_default();
    assert!(ua.contains("Dawn for Node"), "navigator is not Dawn's ({ua:?})");
    let ctx = GpuContext::new(GpuOptions::default()).await.unwrap();
    let f = ctx.features;
    assert!(f.f16, "Dawn on Mesa 25's lavapipe offers shader-f16");
    assert!(f.subgroups, "the device request asks for subgroups (web_subgroups.rs)");
    assert_eq!((f.subgroup_min_size, f.subgroup_max_size), (8, 8), "lavapipe's subgroups");
    assert!(f.timestamps, "timestamp-query");
    assert!(f.int_dot, "Tint's WGSL has packed_4x8_integer_dot_product");
}

#[wasm_bindgen_test]
async fn every_weight_type_multiplies_like_the_cpu_in_f16_on_both_paths() {
    dawn().await;
    for v in F16 {
        web_kernels::every_weight_type(v).await;
    }
}

#[wasm_bindgen_test]
async fn joint_products_match_the_cpu_in_f16_on_both_paths() {
    dawn().await;
    for v in F16 {
        web_kernels::joint_products(v).await;
    }
}

#[wasm_bindgen_test]
async fn packed_integer_products_match_the_cpu_in_f16_on_both_paths_and_in_f32() {
    dawn().await;
    for v in [F16[0], F16[1], F32_SUBGROUPS] {
        web_kernels::packed_integer_products(v).await;
    }
}

#[wasm_bindgen_test]
async fn rms_norm_and_token_selection_match_the_cpu_on_both_paths() {
    dawn().await;
    for v in [F16[0], F16[1], F32_SUBGROUPS] {
        web_kernels::rms_norm(v).await;
        web_kernels::argmax_and_top_k(v).await;
    }
}

#[wasm_bindgen_test]
async fn attention_matches_the_cpu_with_an_f16_and_an_f32_cache() {
    dawn().await;
    web_kernels::attention(F16[0]).await;
    web_kernels::attention(F32_SUBGROUPS).await;
}
