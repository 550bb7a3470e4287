//! Rules written once in Rust and once in the npm package's JS, because the browser runs them
//! before or without the wasm (the demo page's cache check, downloads in the worker). Each is
//! one definition per language; these tests ask Node for the JS answers and hold them to the
//! Rust ones:
//!
//! - the retry policy: `src/net/retry.rs` and `www/package/src/retry.js`;
//! - the gguf-split shard names: `src/gguf/split.rs` and `www/package/src/shard-name.js`.
// Runs Node as a child process and uses the native download code: native only.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use llama_webgpu::gguf::{shard_name, split_name_parts};
use llama_webgpu::net::retry::{is_retryable_status, RETRY_POLICY};
use serde_json::{json, Value};

/// Runs `body` as an ES module in Node with `m` bound to the package module at `module` (a path
/// under www/package/src) and `input` to `input`; returns what it `print`s as JSON.
fn node(module: &str, input: &Value, body: &str) -> Value {
    let url = format!("file://{}", common::root().join("www/package/src").join(module).display());
    let script = format!(
        "const m = await import({url:?});\nconst input = {input};\nconst print = (v) => process.stdout.write(JSON.stringify(v));\n{body}"
    );
    let out = std::process::Command::new("node")
        .args(["--input-type=module", "-e", &script])
        .output()
        .expect("node runs");
    assert!(out.status.success(), "node failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn the_js_retry_policy_is_the_rust_one() {
    let js = node(
        "retry.js",
        &json!(null),
        "const statuses = [];
         for (let s = 100; s < 600; s++) if (m.isRetryableStatus(s)) statuses.push(s);
         const backoff = [];
         for (let a = 0; a <= 12; a++) backoff.push(m.backoffMs(a));
         print({ policy: m.RETRY_POLICY, statuses, backoff });",
    );
    let statuses: Vec<u16> = (100..600).filter(|&s| is_retryable_status(s)).collect();
    let backoff: Vec<u64> = (0..=12).map(|a| RETRY_POLICY.backoff(a).as_millis() as u64).collect();
    let rust = json!({
        "policy": {
            "backoffStartMs": RETRY_POLICY.backoff_start.as_millis() as u64,
            "backoffCapMs": RETRY_POLICY.backoff_cap.as_millis() as u64,
            "resetBytes": RETRY_POLICY.reset_bytes,
            "retries": RETRY_POLICY.retries,
        },
        "statuses": statuses,
        "backoff": backoff,
    });
    assert_eq!(js, rust);
    // The comparison has something to compare: the policy retries some statuses and not others.
    assert!(statuses.contains(&503) && !statuses.contains(&404), "{statuses:?}");
}

#[test]
fn the_js_shard_names_are_the_rust_ones() {
    let names = [
        "model-00001-of-00003.gguf",
        "a/b/Llama-3.1-8B-Instruct-Q4_K_M-00002-of-00005.gguf",
        "M-00003-of-00003.gguf",
        "M-00004-of-00003.gguf",
        "M-00000-of-00003.gguf",
        "M-0001-of-00003.gguf",
        "M-00001-of-0003.gguf",
        "M-00001_of-00003.gguf",
        "M-0000a-of-00003.gguf",
        "M-00001-of-00003.GGUF",
        "M-00001-of-00003.gguf.part",
        "-00001-of-00001.gguf",
        "00001-of-00001.gguf",
        "model.gguf",
        "x-99999-of-99999.gguf",
        "é-00001-of-00002.gguf",
    ];
    let js = node(
        "shard-name.js",
        &json!(names),
        "print(input.map((n) => {
           const p = m.parseShardName(n);
           return p && [p.prefix, p.index, p.count, m.shardName(p.prefix, p.index, p.count)];
         }));",
    );
    let rust: Vec<Value> = names
        .iter()
        .map(|n| match split_name_parts(n) {
            Some((prefix, index, count, _)) => json!([prefix, index, count, shard_name(&prefix, index, count)]),
            None => Value::Null,
        })
        .collect();
    assert_eq!(js, Value::from(rust.clone()));
    let parsed = rust.iter().filter(|v| !v.is_null()).count();
    assert!(parsed >= 4 && parsed < names.len(), "{rust:?}");
}
