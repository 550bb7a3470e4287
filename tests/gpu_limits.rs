//! Running out of GPU memory and out of context, natively on lavapipe:
//!
//! - a KV cache layer over the device's storage-binding limit fails with `OUT_OF_MEMORY` and the
//!   model's figures (what it needs in all, what was allocated, the device's limits, the largest
//!   context that fits), and the same context loads the model at a small context afterwards;
//! - a genuine refusal by the device: in a child process whose address space is capped a little
//!   above what it uses (`prlimit --as`; lavapipe's GPU memory is host memory, so nothing is
//!   actually consumed), a model that needs more fails in a buffer creation; every buffer of the
//!   failed load is released, because a smaller load then fits under the same cap;
//! - the memory plan at the first header: the default context is the largest the limits allow
//!   (at most 4096), a requested context over them fails before any weight byte is pushed, the
//!   KV cache and (for split models) a reservation for the shards still to come are allocated
//!   there, and the reservation is handed back as the real buffers are made; in the capped child,
//!   a reservation the device refuses fails at the first header, and so does Llama 3.1 70B
//!   (`synth --shape 70b`'s header alone), with the whole model's figures;
//! - generation that reaches the end of the context stops there: prompt + completion = context.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use llama_webgpu::gguf::{parse_header, split_into_shards, GgufFile};
use llama_webgpu::gpu::loader::{load_files, StreamLoader};
use llama_webgpu::gpu::GpuModelError;
use llama_webgpu::model::memory::DEFAULT_CONTEXT;
use llama_webgpu::gpu::{GpuContext, GpuError, GpuOptions, MemoryReport};
use llama_webgpu::tools::synth::{self, QuantMix, Shape, SynthOptions};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// Context length of the synthetic model: large enough for KV cache layers past any limit.
const CONTEXT_LENGTH: usize = 1 << 21;

fn tiny_model(tag: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("llama-webgpu-limits-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny.gguf");
    let opts = SynthOptions {
        context_length: Some(CONTEXT_LENGTH),
        ..SynthOptions::new(Shape::tiny(), QuantMix::Q4_0, common::model("ggml-vocab-llama-bpe.gguf"))
    };
    synth::write(&opts, &path).unwrap();
    (dir, path)
}

fn report(e: GpuModelError) -> MemoryReport {
    match e {
        GpuModelError::Gpu(GpuError::OutOfMemory(r)) => *r,
        e => panic!("expected OUT_OF_MEMORY, got {e}"),
    }
}

/// Loads at a small context and decodes a token: the device is usable after a failure.
fn small_load_works(ctx: &Arc<GpuContext>, path: &Path) {
    let mut m = load_files(ctx.clone(), &[path], Some(64)).unwrap();
    let t = pollster::block_on(m.forward_argmax(&[128000, 9906, 1917])).unwrap();
    assert!(t < 128256);
}

#[test]
fn kv_cache_over_the_binding_limit_is_out_of_memory_with_the_figures() {
    let (dir, path) = tiny_model("limit");
    let ctx = Arc::new(GpuContext::new_blocking(GpuOptions::default()).unwrap());
    let elem = if ctx.features.f16 { 2u64 } else { 4 };
    let row = 2 * 64 * elem; // tiny: 2 KV heads of 64
    let binding = ctx.limits.max_storage_buffer_binding_size.min(ctx.limits.max_buffer_size);
    assert!(row * CONTEXT_LENGTH as u64 > binding, "the test needs a KV layer over the limit");
    let e = load_files(ctx.clone(), &[&path], Some(CONTEXT_LENGTH)).err().expect("must not fit");
    let msg = e.to_string();
    let r = report(e);
    assert_eq!(llama_webgpu::Error::from(GpuError::OutOfMemory(Box::new(r.clone()))).code(), "OUT_OF_MEMORY");
    eprintln!("{msg}");
    assert_eq!(r.over_limit, Some("maxStorageBufferBindingSize"));
    assert_eq!(r.request_bytes, row * CONTEXT_LENGTH as u64);
    assert_eq!(r.kv_cache_bytes, Some(2 * 2 * row * CONTEXT_LENGTH as u64));
    assert_eq!(r.context_size, Some(CONTEXT_LENGTH as u64));
    assert_eq!(r.max_context_size, Some(binding / row));
    let (w, k, a) = (r.weights_bytes.unwrap(), r.kv_cache_bytes.unwrap(), r.activations_bytes.unwrap());
    assert_eq!(r.needed_bytes, Some(w + k + a));
    assert!(!r.needed_is_lower_bound);
    let file = std::fs::metadata(&path).unwrap().len();
    // The file also holds the Llama 3 vocabulary (~8 MB of metadata).
    assert!(w > file - (16 << 20) && w < file, "weights {w} of a {file}-byte file");
    // Refused at the header, by the memory plan: the weights' buffers were made (all but the
    // norm vectors, uploaded as their bytes arrive), nothing else.
    assert!(r.allocated_bytes <= w && r.allocated_bytes + (1 << 20) > w, "{r:?}");
    assert_eq!(r.max_storage_buffer_binding_size, ctx.limits.max_storage_buffer_binding_size);
    for part in ["GiB", "KV cache", "maxStorageBufferBindingSize", "maxBufferSize", "smaller contextSize", &format!("at most {}", binding / row)] {
        assert!(msg.contains(part), "'{part}' missing from: {msg}");
    }
    small_load_works(&ctx, &path);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Headroom above the warmed-up process's address space: more than a load at context 64 takes,
/// less than the big load's weights + activations + KV cache.
const HEADROOM: u64 = 320 << 20;

/// Runs in a child process (see [`the_device_refusing_a_buffer_leaves_nothing_behind`]).
#[test]
#[ignore = "run by the_device_refusing_a_buffer_leaves_nothing_behind in a capped child process"]
fn oom_child() {
    let path = PathBuf::from(std::env::var("LLAMA_OOM_CHILD_MODEL").expect("run by the parent test"));
    let ctx = Arc::new(GpuContext::new_blocking(GpuOptions::default()).unwrap());
    // Warm up: compile every pipeline, start lavapipe's threads.
    small_load_works(&ctx, &path);
    let elem = if ctx.features.f16 { 2u64 } else { 4 };
    // The largest context whose KV layers are within the limits: only the device can refuse.
    let big = (ctx.limits.max_storage_buffer_binding_size / (2 * 64 * elem)).min(CONTEXT_LENGTH as u64) as usize;
    // The split copy for the last check is made before the cap, which it must not count on.
    let file = GgufFile::open(&path).unwrap();
    let shards = split_into_shards(file.header(), |n| file.tensor(n).unwrap().data, "m", 16 << 20);
    let first_header = {
        let h = parse_header(&shards[0].1, None).unwrap();
        shards[0].1[..h.data_offset as usize].to_vec()
    };
    drop((shards, file));
    let cap = common::proc_status_bytes("VmSize") + HEADROOM;
    let st = Command::new("prlimit")
        .args(["--pid", &std::process::id().to_string(), &format!("--as={cap}")])
        .status()
        .unwrap();
    assert!(st.success());
    let e = load_files(ctx.clone(), &[&path], Some(big)).err().expect("must not fit under the cap");
    let msg = e.to_string();
    let r = report(e);
    // The same cap holds a small load again: the failed load's buffers were all released.
    small_load_works(&ctx, &path);
    small_load_works(&ctx, &path);
    println!("OOM-REPORT {}", serde_json::to_string(&r).unwrap());
    println!("OOM-MESSAGE {msg}");
    println!("OOM-CAP {cap} {}", big);

    // Shards announced as 4 GiB in all: the first header reserves their weights, which the
    // capped device refuses there, before any weight byte; then a small load still fits.
    let mut l = StreamLoader::new(ctx.clone());
    l.set_context_size(Some(64));
    l.set_expected_bytes(4 << 30);
    l.begin_shard(None).unwrap();
    let e = l.push(&first_header).expect_err("the reservation must not fit under the cap");
    drop(l);
    let msg = e.to_string();
    let r = report(e);
    small_load_works(&ctx, &path);
    println!("RESERVE-REPORT {}", serde_json::to_string(&r).unwrap());
    println!("RESERVE-MESSAGE {msg}");

    // Llama 3.1 70B in Q4_K_M, its header alone (synth --shape 70b; the file would be 42.5 GB):
    // the device refuses its buffers at that header, and the report has the whole model's
    // figures; then a small load still fits.
    let (head, len) = synth::header(&SynthOptions::new(Shape::llama31_70b(), QuantMix::Q4KM, common::model("ggml-vocab-llama-bpe.gguf"))).unwrap();
    let mut l = StreamLoader::new(ctx.clone());
    l.set_expected_bytes(len);
    l.begin_shard(Some(len)).unwrap();
    let e = l.push(&head).expect_err("a 70B must not fit under the cap");
    drop(l);
    let msg = e.to_string();
    let r = report(e);
    small_load_works(&ctx, &path);
    println!("70B-REPORT {}", serde_json::to_string(&r).unwrap());
    println!("70B-MESSAGE {msg}");
}

#[test]
fn the_device_refusing_a_buffer_leaves_nothing_behind() {
    let (dir, path) = tiny_model("device");
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "oom_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env("LLAMA_OOM_CHILD_MODEL", &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    let line = |tag: &str| {
        stdout
            .lines()
            .find_map(|l| l.split_once(tag).map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("no {tag} in:\n{stdout}\n{stderr}"))
            .to_string()
    };
    let r: Value = serde_json::from_str(&line("OOM-REPORT ")).unwrap();
    let msg = line("OOM-MESSAGE ");
    eprintln!("{msg}");
    assert!(r["overLimit"].is_null(), "{r}");
    assert!(r["deviceMessage"].as_str().is_some_and(|m| !m.is_empty()), "{r}");
    let needed = r["neededBytes"].as_u64().unwrap();
    let allocated = r["allocatedBytes"].as_u64().unwrap();
    let request = r["requestBytes"].as_u64().unwrap();
    assert!(allocated + request > HEADROOM - (64 << 20), "{r}");
    assert!(allocated < needed && allocated <= HEADROOM, "{r}");
    assert_eq!(
        needed,
        ["weightsBytes", "kvCacheBytes", "activationsBytes"].iter().map(|k| r[k].as_u64().unwrap()).sum::<u64>()
    );
    for part in ["the device refused", "had been allocated before the device refused", "maxBufferSize", "smaller contextSize"] {
        assert!(msg.contains(part), "'{part}' missing from: {msg}");
    }
    let r: Value = serde_json::from_str(&line("RESERVE-REPORT ")).unwrap();
    let msg = line("RESERVE-MESSAGE ");
    eprintln!("{msg}");
    assert!(r["deviceMessage"].as_str().is_some_and(|m| !m.is_empty()), "{r}");
    assert!(r["what"].as_str().unwrap().contains("reservation"), "{r}");
    assert_eq!(r["contextSize"], 64, "{r}");
    assert!(r["weightsBytes"].as_u64().unwrap() > (4 << 30) - (16 << 20), "the plan counts the announced shards: {r}");
    assert!(msg.contains("not yet downloaded"), "{msg}");
    let r: Value = serde_json::from_str(&line("70B-REPORT ")).unwrap();
    let msg = line("70B-MESSAGE ");
    eprintln!("{msg}");
    assert!(r["deviceMessage"].as_str().is_some_and(|m| !m.is_empty()), "{r}");
    // The plan of tests/synth.rs's llama31_70b_plans_from_its_header, at the default context.
    assert_eq!(r["weightsBytes"], 42_512_531_712u64, "{r}");
    // An f16 cache (lavapipe has shader-f16): 80 layers of K and V, 4096 positions of 8 heads of 128.
    assert_eq!(r["kvCacheBytes"], 2 * 80 * 4096 * 1024 * 2, "{r}");
    assert!(r["neededBytes"].as_u64().unwrap() > 43_000_000_000 && r["neededIsLowerBound"] == false, "{r}");
    assert!(r["allocatedBytes"].as_u64().unwrap() < HEADROOM + (64 << 20), "{r}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Pushes `shard` up to the end of its header (no tensor data).
fn push_header(l: &mut StreamLoader, shard: &[u8]) -> Result<(), GpuModelError> {
    let h = parse_header(shard, Some(shard.len() as u64)).unwrap();
    l.begin_shard(Some(shard.len() as u64))?;
    l.push(&shard[..h.data_offset as usize])
}

#[test]
fn the_memory_plan_is_made_at_the_first_header() {
    let (dir, path) = tiny_model("plan");
    let bytes = std::fs::read(&path).unwrap();
    // A binding limit that holds 1024 positions of a KV layer in f16 (512 in f32): under the
    // default of 4096, so the default context is what the limit allows.
    let ctx = Arc::new(GpuContext::new_blocking(GpuOptions { max_storage_binding: Some(256 << 10), ..GpuOptions::default() }).unwrap());
    let row = 2 * 64 * if ctx.features.f16 { 2u64 } else { 4 };
    let fit = (256 << 10) / row;
    assert!(fit < DEFAULT_CONTEXT as u64);

    // Default context: fixed at the header, with the KV cache and the activations allocated.
    let base = ctx.allocated_bytes();
    let mut l = StreamLoader::new(ctx.clone());
    l.set_expected_bytes(bytes.len() as u64);
    push_header(&mut l, &bytes).unwrap();
    let plan = l.memory_plan().expect("planned at the header");
    assert_eq!(plan.context_size, fit);
    assert_eq!(plan.max_context_size, fit);
    assert_eq!(plan.kv_cache, 2 * 2 * row * fit, "tiny: 2 layers");
    let held = ctx.allocated_bytes() - base;
    // Everything but the norm vectors, which are uploaded when their bytes arrive.
    assert!(held + (1 << 20) >= plan.total() && held <= plan.total(), "{held} of {plan:?}");
    let h = parse_header(&bytes, None).unwrap();
    l.push(&bytes[h.data_offset as usize..]).unwrap();
    l.end_shard().unwrap();
    let mut m = l.finish().unwrap();
    assert_eq!(m.context_size() as u64, fit);
    assert!(pollster::block_on(m.forward_argmax(&[128000, 9906])).unwrap() < 128256);
    // The reserved activations were handed back before the real ones were made.
    let held = ctx.allocated_bytes() - base;
    assert!(held <= plan.total() + (1 << 20), "{held} of {plan:?}");
    drop(m);

    // A requested context over the limit: refused at the header, naming the largest that fits.
    let mut l = StreamLoader::new(ctx.clone());
    l.set_context_size(Some(4 * fit as usize));
    let e = push_header(&mut l, &bytes).expect_err("over the limit");
    let msg = e.to_string();
    let r = report(e);
    assert_eq!(r.over_limit, Some("maxStorageBufferBindingSize"));
    assert_eq!(r.max_context_size, Some(fit));
    assert_eq!(r.context_size, Some(4 * fit));
    assert!(msg.contains(&format!("at most {fit}")), "{msg}");

    // A split model: the first header reserves the later shards' weights, so what is held
    // right after it is the whole plan; each later header trades reservation for real buffers.
    let file = GgufFile::open(&path).unwrap();
    let shards = split_into_shards(file.header(), |n| file.tensor(n).unwrap().data, "m", 16 << 20);
    assert!(shards.len() >= 3, "{} shards", shards.len());
    let total: u64 = shards.iter().map(|(_, b)| b.len() as u64).sum();
    let base = ctx.allocated_bytes();
    let mut l = StreamLoader::new(ctx.clone());
    l.set_context_size(Some(64));
    l.set_expected_bytes(total);
    let first = &shards[0].1;
    push_header(&mut l, first).unwrap();
    let plan = l.memory_plan().unwrap();
    assert_eq!(plan.context_size, 64);
    assert!(plan.weights >= total - first.len() as u64 && plan.weights <= total + (1 << 20), "{plan:?} of {total} bytes");
    let held = ctx.allocated_bytes() - base;
    assert!(held + (1 << 20) >= plan.total() && held <= plan.total(), "{held} of {plan:?}");
    let h = parse_header(first, None).unwrap();
    l.push(&first[h.data_offset as usize..]).unwrap();
    l.end_shard().unwrap();
    for (_, s) in &shards[1..] {
        l.begin_shard(Some(s.len() as u64)).unwrap();
        l.push(s).unwrap();
        l.end_shard().unwrap();
        let held = ctx.allocated_bytes() - base;
        assert!(held <= plan.total() + (1 << 20), "never more than the plan: {held} of {plan:?}");
    }
    let exact = l.memory_plan().unwrap();
    assert!(exact.weights <= plan.weights, "the estimate was an upper bound: {exact:?} {plan:?}");
    let mut m = l.finish().unwrap();
    assert!(pollster::block_on(m.forward_argmax(&[128000, 9906])).unwrap() < 128256);
    std::fs::remove_dir_all(dir).unwrap();
}

/// `generate --ctx C` with a prompt of P tokens and a large `-n` stops after C - P tokens.
#[test]
fn generation_stops_at_the_end_of_the_context() {
    let m = common::smollm2();
    let prompt: Vec<String> = (0..20).map(|i| (1000 + 37 * i).to_string()).collect();
    let prompt = prompt.join(",");
    for backend in ["gpu", "cpu"] {
        let out = Command::new(env!("CARGO_BIN_EXE_llama-webgpu"))
            .args(["generate", "-m", m.to_str().unwrap(), "--tokens", &prompt, "--ctx", "32", "-n", "100"])
            .args(["--temp", "0", "--json", "--backend", backend])
            .env("WGPU_BACKEND", std::env::var("WGPU_BACKEND").unwrap_or_else(|_| "vulkan".into()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).unwrap();
        let j: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        assert_eq!(j["finish_reason"], "context_full", "{backend}: {j}");
        assert_eq!(j["prompt_tokens"].as_array().unwrap().len(), 20);
        assert_eq!(j["tokens"].as_array().unwrap().len(), 32 - 20, "{backend}: {j}");
    }
    // A prompt that fills the context leaves no room.
    let out = Command::new(env!("CARGO_BIN_EXE_llama-webgpu"))
        .args(["generate", "-m", m.to_str().unwrap(), "--tokens", &prompt, "--ctx", "20"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("PROMPT_TOO_LONG"));
}
