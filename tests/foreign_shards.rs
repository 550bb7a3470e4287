//! Split shards across tools. Every other split model the tests load comes from our own writers
//! (`split`, `split_into_shards`, `synth`); here the shards come from, or go to, llama.cpp's tools:
//!
//! - the `gguf` package's `GGUFWriter` in split mode (gguf==0.19.0 in `.cache/venv`: the writer
//!   behind llama.cpp's `convert_hf_to_gguf.py --split-max-size`), driven by
//!   `scripts/gguf-py-split.py`, re-writes SmolLM2 into shards by size and by tensor count with a
//!   metadata-only first shard. We open them as the CLI does (first shard → the rest), and the
//!   logits of every position and the greedy tokens equal the unsplit file's bit for bit (same
//!   kernels, same weights); mixed-up sets fail with `BAD_SPLIT`.
//! - llama.cpp (the pinned node-llama-cpp, `scripts/llama-cpp-split-check.mjs`) opens the first
//!   shard of what `llama-webgpu split` and `synth --split-max-size` write and gives the same
//!   next-token distributions, over the whole vocabulary, as for the unsplit file.
//!
//! The shards are derived at test time into `.cache/foreign-shards/` and deleted afterwards.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use llama_webgpu::gguf::{parse_header, shard_name, GgufFile, GgufHeader, SplitInfo, Value};
use llama_webgpu::gpu::loader::{load_gguf, StreamLoader};
use llama_webgpu::gpu::{GpuContext, GpuModel, GpuOptions};
use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// "The capital of France is" with SmolLM2's BOS (`<|im_start|>` = 1) in front.
const PROMPT: [u32; 6] = [1, 504, 3575, 282, 4649, 314];
const GREEDY: usize = 4;
const CONTEXT: usize = 64;

/// A fresh scratch directory under `.cache/foreign-shards/`.
fn scratch(name: &str) -> PathBuf {
    let d = common::root().join(".cache/foreign-shards").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every position's logits for `PROMPT`, then `GREEDY` greedy tokens after it.
fn outputs(m: &mut GpuModel) -> (Vec<f32>, Vec<u32>) {
    m.reset();
    let logits = pollster::block_on(m.forward_all(&PROMPT)).unwrap();
    m.reset();
    let mut tokens = vec![pollster::block_on(m.forward_argmax(&PROMPT)).unwrap()];
    while tokens.len() < GREEDY {
        let t = *tokens.last().unwrap();
        tokens.push(pollster::block_on(m.forward_argmax(&[t])).unwrap());
    }
    (logits, tokens)
}

/// Streams `paths` through the browser's loader in `chunk`-byte pushes, as the wasm loader gets
/// them from `fetch`, and reports its progress before `finish`.
fn stream(ctx: &Arc<GpuContext>, paths: &[&Path], chunk: usize) -> Result<(GpuModel, u32, usize), llama_webgpu::Error> {
    let mut l = StreamLoader::new(ctx.clone());
    l.set_context_size(Some(CONTEXT));
    for p in paths {
        let bytes = std::fs::read(p).unwrap();
        l.begin_shard(Some(bytes.len() as u64))?;
        for c in bytes.chunks(chunk) {
            l.push(c)?;
        }
        l.end_shard()?;
    }
    let shards = l.shard_count().unwrap_or(0);
    let p = l.progress();
    let model = l.finish()?;
    assert_eq!(p.tensors_loaded, p.tensors_total, "every announced tensor arrived");
    Ok((model, shards, p.tensors_total))
}

fn header_of(path: &Path) -> GgufHeader {
    let bytes = std::fs::read(path).unwrap();
    parse_header(&bytes, Some(bytes.len() as u64)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Symlinks `targets` into a fresh directory under the names `m-0000k-of-0000n.gguf` (k = 1, 2, …
/// in the order given, n = `count`), leaving out the `None`s; returns the first name.
fn shard_set(dir: &Path, targets: &[Option<&Path>], count: u32) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for (i, t) in targets.iter().enumerate() {
        if let Some(t) = t {
            std::os::unix::fs::symlink(t, shard_name(&dir.join("m").display().to_string(), i as u32, count)).unwrap();
        }
    }
    PathBuf::from(shard_name(&dir.join("m").display().to_string(), 0, count))
}

/// Overwrites the value of metadata `key` (of GGUF value type `type_id`) in a header's bytes.
fn patch_kv(bytes: &mut [u8], key: &str, type_id: u32, value: &[u8]) {
    let mut needle = (key.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(key.as_bytes());
    let at = bytes.windows(needle.len()).position(|w| w == needle).unwrap_or_else(|| panic!("no key {key}")) + needle.len();
    assert_eq!(bytes[at..at + 4], type_id.to_le_bytes(), "{key}'s value type");
    bytes[at + 4..at + 4 + value.len()].copy_from_slice(value);
}

fn open_code(first: &Path) -> &'static str {
    match GgufFile::open(first) {
        Ok(_) => panic!("{} opened", first.display()),
        Err(e) => e.code(),
    }
}

#[test]
fn gguf_py_writer_shards_load_bit_exact_and_mixed_up_sets_fail() {
    let python = common::root().join(".cache/venv/bin/python");
    assert!(python.exists(), "{} is missing: run scripts/setup", python.display());
    let whole = GgufFile::open(common::smollm2()).unwrap();
    let ctx = Arc::new(GpuContext::new_blocking(GpuOptions::default()).unwrap());
    let (want_logits, want_tokens) = outputs(&mut load_gguf(ctx.clone(), &whole, CONTEXT).unwrap());
    assert_eq!(want_logits.len(), PROMPT.len() * 49152);

    let dir = scratch("gguf-py");
    let variants: [(&str, &[&str]); 2] = [
        // convert_hf_to_gguf.py --split-max-size 40M
        ("size", &["--split-max-size", "40000000"]),
        // --split-max-tensors 100 --no-tensor-first-split: the first shard holds only metadata.
        ("tensors", &["--split-max-tensors", "100", "--small-first-shard"]),
    ];
    let mut small_first = Vec::new();
    for (name, args) in variants {
        let t = std::time::Instant::now();
        let prefix = dir.join(name).join("smol");
        std::fs::create_dir_all(prefix.parent().unwrap()).unwrap();
        let manifest: Json = serde_json::from_str(&run(Command::new(&python)
            .arg(common::root().join("scripts/gguf-py-split.py"))
            .arg(common::smollm2())
            .arg(&prefix)
            .args(args)))
        .unwrap();
        let written = t.elapsed();
        let shards = manifest["shards"].as_array().unwrap();
        let n = shards.len() as u32;
        assert!(n >= 3, "{name}: {n} shards");
        assert_eq!(manifest["tensors"], whole.header().tensors.len());
        // The writer's own encoding of the split keys, which we must read as they are.
        assert_eq!(
            manifest["split_kv_types"],
            serde_json::json!({"split.no": "UINT16", "split.count": "UINT16", "split.tensors.count": "INT32"})
        );

        // Each shard as GGUFWriter wrote it: its name, its split keys, its tensors in its order.
        let paths: Vec<PathBuf> = shards.iter().map(|s| PathBuf::from(s["path"].as_str().unwrap())).collect();
        for (i, (s, p)) in shards.iter().zip(&paths).enumerate() {
            assert_eq!(p.display().to_string(), shard_name(&prefix.display().to_string(), i as u32, n));
            let h = header_of(p);
            let split = h.split().unwrap();
            assert_eq!(split, Some(SplitInfo { index: i as u32, count: n, tensors_total: 272 }), "{name} shard {}", i + 1);
            assert_eq!(h.metadata.get("split.no"), Some(&Value::U16(i as u16)));
            assert_eq!(h.metadata.get("split.count"), Some(&Value::U16(n as u16)));
            assert_eq!(h.metadata.get("split.tensors.count"), Some(&Value::I32(272)));
            let names: Vec<&str> = h.tensors.iter().map(|t| t.name.as_str()).collect();
            let planned: Vec<&str> = s["tensors"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
            assert_eq!(names, planned, "{name} shard {}: tensors", i + 1);
            // Model metadata only in the first shard, as in llama.cpp's layout.
            assert_eq!(h.metadata.get("general.architecture").is_some(), i == 0);
        }
        if name == "tensors" {
            assert!(header_of(&paths[0]).tensors.is_empty(), "a metadata-only first shard");
            small_first = paths.clone();
        }

        // Opened from the first shard as the CLI does: every tensor has the unsplit file's type,
        // shape and bytes, in the same order.
        let split = GgufFile::open(&paths[0]).unwrap();
        assert_eq!(split.shard_paths(), paths.iter().map(|p| p.as_path()).collect::<Vec<_>>());
        assert_eq!(split.metadata().iter().filter(|(k, _)| !k.starts_with("split.")).count(), whole.metadata().iter().count());
        for (k, v) in whole.metadata().iter() {
            assert_eq!(split.metadata().get(k), Some(v), "{name}: metadata {k}");
        }
        let (a, b): (Vec<_>, Vec<_>) = (whole.tensors().collect(), split.tensors().collect());
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!((&x.info.name, &x.info.dims, x.info.ggml_type), (&y.info.name, &y.info.dims, y.info.ggml_type));
            assert!(x.data == y.data, "{name}: bytes of {}", x.info.name);
        }

        // On the GPU, through the streaming loader (4 MiB reads, as `generate -m FIRST_SHARD`).
        let (logits, tokens) = outputs(&mut load_gguf(ctx.clone(), &split, CONTEXT).unwrap());
        assert!(logits == want_logits, "{name}: logits differ from the unsplit file's");
        assert_eq!(tokens, want_tokens, "{name}: greedy tokens");
        eprintln!("{name}: {n} shards written by GGUFWriter in {written:.1?}, checked in {:.1?}", t.elapsed() - written);
    }
    eprintln!("greedy tokens {want_tokens:?}");

    // The browser's path: pieces of odd sizes cut the metadata-only shard and every other header
    // anywhere; the loader learns the shard and tensor counts from GGUFWriter's split keys.
    let p: Vec<&Path> = small_first.iter().map(|p| p.as_path()).collect();
    let (mut m, shards, tensors) = stream(&ctx, &p, 65_537).unwrap();
    assert_eq!((shards, tensors), (4, 272));
    assert!(outputs(&mut m) == (want_logits.clone(), want_tokens.clone()), "streamed in pieces");
    drop(m);

    // Mixed-up sets of the same files fail with BAD_SPLIT, whichever way they are opened.
    let bad = dir.join("bad");
    let [s1, s2, s3, s4] = [p[0], p[1], p[2], p[3]];
    let missing = shard_set(&bad.join("missing"), &[Some(s1), Some(s2), None, Some(s4)], 4);
    assert_eq!(open_code(&missing), "BAD_SPLIT", "shard 3 missing");
    let swapped = shard_set(&bad.join("swapped"), &[Some(s1), Some(s3), Some(s2), Some(s4)], 4);
    assert_eq!(open_code(&swapped), "BAD_SPLIT", "shards 2 and 3 swapped");
    let second = shard_set(&bad.join("second"), &[Some(s2), Some(s1), Some(s3), Some(s4)], 4);
    assert_eq!(open_code(&second), "BAD_SPLIT", "shard 2 named as the first");
    let code = |paths: &[&Path]| match stream(&ctx, paths, 1 << 20) {
        Ok(_) => panic!("streamed {paths:?}"),
        Err(e) => e.code(),
    };
    assert_eq!(code(&[s1, s3, s2, s4]), "BAD_SPLIT", "streamed out of order");
    assert_eq!(code(&[s1, s2, s4]), "BAD_SPLIT", "streamed without shard 3");
    assert_eq!(code(&[s2, s3, s4]), "BAD_SPLIT", "streamed from shard 2");

    // Split keys that disagree with the files: the metadata-only first shard, patched.
    let first = std::fs::read(s1).unwrap();
    let mut count5 = first.clone();
    patch_kv(&mut count5, "split.count", 2, &5u16.to_le_bytes());
    let mut total271 = first.clone();
    patch_kv(&mut total271, "split.tensors.count", 5, &271i32.to_le_bytes());
    for (what, bytes) in [("split.count 5", &count5), ("split.tensors.count 271", &total271)] {
        let d = bad.join(what.replace(' ', "-"));
        std::fs::create_dir_all(&d).unwrap();
        let patched = d.join("first.gguf");
        std::fs::write(&patched, bytes).unwrap();
        let set = shard_set(&d.join("set"), &[Some(&patched), Some(s2), Some(s3), Some(s4)], 4);
        assert_eq!(open_code(&set), "BAD_SPLIT", "{what}");
        assert_eq!(code(&[&patched, s2, s3, s4]), "BAD_SPLIT", "{what}, streamed");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn llama_cpp_reads_the_shards_we_write() {
    let dir = scratch("ours");
    let exe = env!("CARGO_BIN_EXE_llama-webgpu");
    let smol = dir.join("smol");
    run(Command::new(exe).arg("split").arg(common::smollm2()).arg(&smol).args(["--split-max-size", "35M"]));
    let vocab = common::model("ggml-vocab-llama-bpe.gguf");
    let synth = |out: &Path, extra: &[&str]| {
        run(Command::new(exe)
            .args(["synth", "--shape", "tiny", "--type", "q4_k_m", "--seed", "7", "-o"])
            .arg(out)
            .arg("--vocab")
            .arg(&vocab)
            .args(extra));
    };
    let tiny = dir.join("tiny.gguf");
    synth(&tiny, &[]);
    let tiny_split = dir.join("tiny-split.gguf");
    synth(&tiny_split, &["--split-max-size", "12M"]);

    let count = |prefix: &Path| {
        let n = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(&*prefix.file_name().unwrap().to_string_lossy()))
            .count() as u32;
        assert!(n >= 3, "{}: {n} shards", prefix.display());
        n
    };
    let n_smol = count(&smol);
    let tiny_prefix = dir.join("tiny-split");
    let n_tiny = count(&tiny_prefix);
    let first = |prefix: &Path, n| PathBuf::from(shard_name(&prefix.display().to_string(), 0, n));
    let shard = |i| PathBuf::from(shard_name(&smol.display().to_string(), i, n_smol));
    // Sets llama.cpp must refuse: so it reads our split keys, and does not just find the files.
    let mut targets: Vec<PathBuf> = (0..n_smol).map(shard).collect();
    targets.swap(1, 2);
    let t: Vec<Option<&Path>> = targets.iter().map(|p| Some(p.as_path())).collect();
    let swapped = shard_set(&dir.join("swapped"), &t, n_smol);
    let mut t = t.clone();
    t[2] = None;
    let missing = shard_set(&dir.join("missing"), &t, n_smol);

    let t0 = std::time::Instant::now();
    let out = run(Command::new("node")
        .arg(common::root().join("scripts/llama-cpp-split-check.mjs"))
        .arg("--must-fail")
        .arg(&swapped)
        .arg("--must-fail")
        .arg(&missing)
        .arg(common::smollm2())
        .arg(first(&smol, n_smol))
        .arg(&tiny)
        .arg(first(&tiny_prefix, n_tiny)));
    eprintln!("llama.cpp: {:.1?}", t0.elapsed());
    let r: Json = serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();
    let pairs = r["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 2);
    for (p, (n, vocab)) in pairs.iter().zip([(n_smol, 49152), (n_tiny, 128256)]) {
        eprintln!("{} vs {}: {} files, {} positions, identical {}", p["whole"], p["split"], p["filesLoaded"]["split"], p["positions"], p["identical"]);
        assert_eq!(p["filesLoaded"], serde_json::json!({"whole": 1, "split": n}), "{p}");
        assert!(p["positions"].as_u64().unwrap() >= 16, "{p}");
        assert_eq!(p["vocab"], vocab, "{p}");
        assert_eq!(p["identical"], true, "llama.cpp's distributions differ between the split and unsplit file: {p}");
        assert_eq!(p["sameTokens"], true, "{p}");
        assert_eq!(p["maxAbsDiff"], 0.0, "{p}");
    }
    for f in r["failures"].as_array().unwrap() {
        assert_eq!(f["loaded"], false, "llama.cpp loaded a mixed-up shard set: {f}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
