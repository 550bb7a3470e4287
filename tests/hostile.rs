//! Hostile GGUF files (issue 7): a generated corpus of lying headers and broken models. Each case
//! must end in a typed error that names what is wrong, within 1 s, having allocated at most the
//! file's size plus a small constant — counts and lengths from the file are never trusted for
//! allocation. Every case goes through the three ways a file is read: `parse_header` on the bytes,
//! the incremental parser fed a stream of unknown length (the browser without Content-Length), and
//! `GgufFile::open` on a file; model-level cases then go through `ModelConfig`.
//!
//! Memory is measured by a counting global allocator, per thread (tests run in parallel).
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::tiny::{Tiny, N_EMBD, N_FF, N_VOCAB};
use common::Raw;

use llama_webgpu::gguf::{
    parse_header, GgufError, GgufHeader, GgufFile, GgufWriter, HeaderParser, Progress, Value,
    ValueType,
};
use llama_webgpu::model::ModelConfig;
use llama_webgpu::tokenizer::Tokenizer;
use llama_webgpu::Error;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

// ---- a per-thread counting allocator ---------------------------------------------------------------

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn account(delta: isize) {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            account(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            account(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        account(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Counted as if old and new coexisted for a moment, as a moving realloc does.
            account(new_size as isize);
            account(-(layout.size() as isize));
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns its result with the most bytes it had allocated at once on this thread.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    let peak = PEAK.with(Cell::get);
    (out, (peak - base).max(0) as usize)
}

/// The memory a hostile file may cost beyond its own size.
const SLACK: usize = 16 << 20;
const TIME_LIMIT: Duration = Duration::from_secs(1);

// ---- running a case ------------------------------------------------------------------------------

/// The incremental parser on a stream of unknown length, in 4 KiB chunks.
fn parse_unsized(bytes: &[u8]) -> Result<GgufHeader, GgufError> {
    let mut p = HeaderParser::new(None);
    for chunk in bytes.chunks(4096) {
        if let Progress::Done(h) = p.feed(chunk)? {
            return Ok(*h);
        }
    }
    p.finish().map(|h| *h)
}

/// Reads the file every way a file is read and, for a header that parses, builds the model
/// config and the tokenizer from it, as a loader does. The first error wins.
fn load(bytes: &[u8], path: &std::path::Path) -> Result<(), Error> {
    let whole = parse_header(bytes, None);
    let unsized_ = parse_unsized(bytes);
    let opened = GgufFile::open(path);
    match (&whole, &unsized_, &opened) {
        (Ok(_), Ok(_), Ok(_)) => {}
        (Err(_), _, Err(_)) => {
            // Unsized streams cannot know where the data must end; the loader checks that when
            // the stream ends. Everything else they must reject on their own.
            if !matches!(whole, Err(GgufError::TensorOutOfRange { .. })) {
                assert!(
                    unsized_.is_err(),
                    "an unsized stream accepted it: {:?}",
                    whole.as_ref().err()
                );
            }
            let (a, b) = (whole.as_ref().unwrap_err(), opened.as_ref().err().unwrap());
            assert_eq!(
                a.to_string(),
                b.to_string(),
                "parse_header and GgufFile::open disagree"
            );
        }
        _ => panic!(
            "the readers disagree: parse_header {:?}, unsized stream {:?}, open {:?}",
            whole.as_ref().err(),
            unsized_.as_ref().err(),
            opened.as_ref().err()
        ),
    }
    let h = whole?;
    let cfg = ModelConfig::from_gguf(&h.metadata, |n| h.tensor(n))?;
    cfg.validate_tensors(|n| h.tensor(n))?;
    if h.metadata.get("tokenizer.ggml.model").is_some() {
        Tokenizer::from_gguf(&h.metadata)?;
    }
    Ok(())
}

/// One hostile file: it must fail with `code`, with a message containing every one of `names`,
/// in time and within the memory bound.
fn hostile(case: &str, bytes: Vec<u8>, code: &str, names: &[&str]) {
    let path = std::env::temp_dir().join(format!(
        "llama-webgpu-hostile-{}-{}.gguf",
        std::process::id(),
        case.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    ));
    std::fs::write(&path, &bytes).unwrap();
    let t = Instant::now();
    let (result, peak) = peak_during(|| load(&bytes, &path));
    let took = t.elapsed();
    std::fs::remove_file(&path).unwrap();
    let e = match result {
        Ok(()) => panic!("{case}: a hostile file was accepted"),
        Err(e) => e,
    };
    let msg = e.to_string();
    eprintln!(
        "{case}: [{}] {msg} ({} bytes, peak {peak} bytes allocated, {took:?})",
        e.code(),
        bytes.len()
    );
    assert_eq!(e.code(), code, "{case}: {msg}");
    for name in names {
        assert!(
            msg.contains(name),
            "{case}: the error does not name '{name}': {msg}"
        );
    }
    assert!(took < TIME_LIMIT, "{case}: took {took:?}");
    assert!(
        peak < bytes.len() + SLACK,
        "{case}: allocated {peak} bytes for a {}-byte file",
        bytes.len()
    );
}

// ---- the corpus ----------------------------------------------------------------------------------

#[test]
fn the_tiny_model_is_valid() {
    // So each hostile variant below fails for its own defect only.
    let bytes = Tiny::new().bytes();
    let path = std::env::temp_dir().join(format!("llama-webgpu-tiny-{}.gguf", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    let (r, peak) = peak_during(|| load(&bytes, &path));
    std::fs::remove_file(&path).unwrap();
    r.unwrap();
    assert!(peak < bytes.len() + SLACK);
}

#[test]
fn counts_of_2_pow_60() {
    hostile(
        "tensor count",
        Raw::new(1 << 60, 0).bytes(),
        "BAD_GGUF",
        &["tensor count", "1152921504606846976"],
    );
    hostile(
        "kv count",
        Raw::new(0, 1 << 60).bytes(),
        "BAD_GGUF",
        &["metadata count", "1152921504606846976"],
    );
    // Both, after a real header's worth of bytes: still refused before anything is allocated.
    let mut b = Raw::new(1 << 60, 1 << 60).bytes();
    b.resize(1 << 20, 0);
    hostile("both counts, 1 MiB file", b, "BAD_GGUF", &["tensor count"]);
    // Just under the unsized-stream ceilings, with a file far too short for them.
    hostile(
        "kv count 2^20",
        Raw::new(0, 1 << 20).data(4096),
        "BAD_GGUF",
        &["metadata count"],
    );
    hostile(
        "tensor count 2^20",
        Raw::new(1 << 20, 0).data(4096),
        "BAD_GGUF",
        &["tensor count"],
    );
}

#[test]
fn string_and_array_lengths_past_the_end() {
    let key_len = Raw::new(0, 1).u64(1 << 40).data(64);
    hostile("key length 2^40", key_len, "BAD_GGUF", &["metadata key"]);
    hostile(
        "key length u64::MAX",
        Raw::new(0, 1).u64(u64::MAX).data(64),
        "BAD_GGUF",
        &["metadata key"],
    );
    // A string value one byte longer than what is left.
    let b = Raw::new(0, 1)
        .str("general.name")
        .u32(ValueType::String as u32)
        .u64(1 << 20)
        .data(64);
    hostile("string value past EOF", b, "BAD_GGUF", &["general.name"]);
    let b = Raw::new(1, 0).u64(1 << 62).data(64);
    hostile("tensor name length 2^62", b, "BAD_GGUF", &["tensor name"]);
    // Arrays: more elements than bytes left, of every element size.
    for (ty, size) in [
        (ValueType::U8, 1u64),
        (ValueType::U32, 4),
        (ValueType::F64, 8),
        (ValueType::String, 8),
    ] {
        let b = Raw::new(0, 1)
            .str("tokenizer.ggml.tokens")
            .u32(ValueType::Array as u32)
            .u32(ty as u32)
            .u64(8192 / size + 1)
            .data(4096);
        hostile(
            &format!("{ty:?} array past EOF"),
            b,
            "BAD_GGUF",
            &["tokenizer.ggml.tokens"],
        );
    }
    let b = Raw::new(0, 1)
        .str("a")
        .u32(ValueType::Array as u32)
        .u32(ValueType::U64 as u32)
        .u64(1 << 60)
        .data(64);
    hostile(
        "array of 2^60",
        b,
        "BAD_GGUF",
        &["a of 1152921504606846976"],
    );
    // Strings inside an array that claim more than is left.
    let b = Raw::new(0, 1)
        .str("tokenizer.ggml.merges")
        .u32(ValueType::Array as u32)
        .u32(ValueType::String as u32)
        .u64(2)
        .str("a b")
        .u64(1 << 50)
        .data(256);
    hostile(
        "string in an array past EOF",
        b,
        "BAD_GGUF",
        &["tokenizer.ggml.merges"],
    );
    // Nested arrays: the inner count lies, after the outer count already allocated its slots.
    let b = Raw::new(0, 1)
        .str("nested")
        .u32(ValueType::Array as u32)
        .u32(ValueType::Array as u32)
        .u64(1000)
        .u32(ValueType::U8 as u32)
        .u64(1 << 40)
        .data(12 * 1000);
    hostile("nested array past EOF", b, "BAD_GGUF", &["nested"]);
    // Arrays nested deeper than any real file.
    let mut r = Raw::new(0, 1).str("deep").u32(ValueType::Array as u32);
    for _ in 0..64 {
        r = r.u32(ValueType::Array as u32).u64(1);
    }
    hostile(
        "arrays nested 64 deep",
        r.data(64),
        "BAD_GGUF",
        &["deep", "nested too deeply"],
    );
    // Cuts of a valid model's header: a truncation, never a panic.
    let full = Tiny::new().bytes();
    let data_offset = parse_header(&full, None).unwrap().data_offset as usize;
    for cut in (0..data_offset).step_by(7) {
        let t = Instant::now();
        let (e, peak) = peak_during(|| parse_header(&full[..cut], None).unwrap_err());
        assert!(
            matches!(
                e,
                GgufError::Truncated { .. }
                    | GgufError::CountTooLarge { .. }
                    | GgufError::TensorOutOfRange { .. }
            ),
            "cut at {cut}: {e}"
        );
        assert!(t.elapsed() < TIME_LIMIT && peak < cut + SLACK);
    }
}

#[test]
fn tensor_offsets_out_of_range_or_overlapping() {
    let b = Raw::new(1, 0).tensor("w", &[16], 0, 1 << 20).data(64);
    hostile(
        "offset past EOF",
        b,
        "BAD_GGUF",
        &["'w'", "outside the file"],
    );
    let b = Raw::new(1, 0).tensor("w", &[16], 0, u64::MAX - 31).data(64);
    hostile("offset near u64::MAX", b, "BAD_GGUF", &["'w'"]);
    let b = Raw::new(1, 0).tensor("w", &[64], 0, 32).data(64);
    hostile(
        "data runs past EOF",
        b,
        "BAD_GGUF",
        &["'w'", "outside the file"],
    );
    let b = Raw::new(1, 0).tensor("w", &[8], 0, 4).data(64);
    hostile("misaligned offset", b, "BAD_GGUF", &["'w'", "alignment"]);
    let b = Raw::new(2, 0)
        .tensor("a", &[16], 0, 0)
        .tensor("b", &[16], 0, 0)
        .data(128);
    hostile("same offset", b, "BAD_GGUF", &["'a'", "'b'", "overlap"]);
    let b = Raw::new(2, 0)
        .tensor("a", &[16], 0, 0)
        .tensor("b", &[16], 0, 32)
        .data(128);
    hostile("partial overlap", b, "BAD_GGUF", &["'a'", "'b'", "overlap"]);
    // A tensor inside another, listed first.
    let b = Raw::new(2, 0)
        .tensor("inner", &[8], 0, 32)
        .tensor("outer", &[64], 0, 0)
        .data(256);
    hostile("tensor inside another", b, "BAD_GGUF", &["overlap"]);
    // An empty tensor between two overlapping ones must not hide the overlap.
    let b = Raw::new(3, 0)
        .tensor("big", &[64], 0, 0)
        .tensor("empty", &[0], 0, 64)
        .tensor("small", &[8], 0, 128)
        .data(512);
    hostile(
        "overlap across an empty tensor",
        b,
        "BAD_GGUF",
        &["'big'", "'small'", "overlap"],
    );
}

#[test]
fn dims_whose_product_overflows() {
    let b = Raw::new(1, 0)
        .tensor("w", &[1 << 32, 1 << 32, 1 << 32], 0, 0)
        .data(64);
    hostile("dims 2^96", b, "BAD_GGUF", &["'w'", "overflow"]);
    let b = Raw::new(1, 0).tensor("w", &[u64::MAX, 2], 0, 0).data(64);
    hostile("dims u64::MAX x 2", b, "BAD_GGUF", &["'w'", "overflow"]);
    let b = Raw::new(1, 0).tensor("w", &[1 << 62, 2], 0, 0).data(64);
    hostile(
        "elements past i64::MAX",
        b,
        "BAD_GGUF",
        &["'w'", "overflow"],
    );
    let b = Raw::new(1, 0).tensor("w", &[1 << 62], 0, 0).data(64);
    hostile(
        "byte size overflows",
        b,
        "BAD_GGUF",
        &["'w'", "byte size overflows"],
    );
    let b = Raw::new(1, 0)
        .tensor("w", &[1 << 40, 1 << 20], 0, 0)
        .data(64);
    hostile(
        "size fits u64, not the file",
        b,
        "BAD_GGUF",
        &["'w'", "outside the file"],
    );
    let b = Raw::new(1, 0).tensor("w", &[1, 1, 1, 1, 1], 0, 0).data(64);
    hostile("five dims", b, "BAD_GGUF", &["'w'", "5 dimensions"]);
    let b = Raw::new(1, 0).tensor("w", &[], 0, 0).data(64);
    hostile("zero dims", b, "BAD_GGUF", &["'w'", "0 dimensions"]);
    let b = Raw::new(1, 0)
        .str("dims-cut-off-here")
        .u32(2)
        .u64(8)
        .bytes();
    hostile("dims cut off", b, "BAD_GGUF", &["truncated"]);
}

#[test]
fn unknown_types() {
    for ty in [4u32, 5, 31, 40, 1234, u32::MAX] {
        let b = Raw::new(1, 0)
            .tensor("blk.0.attn_q.weight", &[32], ty, 0)
            .data(256);
        hostile(
            &format!("tensor type {ty}"),
            b,
            "UNSUPPORTED_TENSOR_TYPE",
            &["blk.0.attn_q.weight", &ty.to_string()],
        );
    }
    let b = Raw::new(0, 1).str("general.name").u32(13).data(64);
    hostile("value type 13", b, "BAD_GGUF", &["general.name", "13"]);
    let b = Raw::new(0, 1)
        .str("k")
        .u32(ValueType::Array as u32)
        .u32(u32::MAX)
        .u64(1)
        .data(64);
    hostile(
        "array element type u32::MAX",
        b,
        "BAD_GGUF",
        &["'k'", "4294967295"],
    );
    let b = Raw::new(0, 1)
        .str("general.alignment")
        .u32(ValueType::U32 as u32)
        .u32(0)
        .data(64);
    hostile("alignment 0", b, "BAD_GGUF", &["general.alignment"]);
    let mut b = Raw::new(0, 0).data(64);
    b[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    hostile("version u32::MAX", b, "BAD_GGUF", &["version 4294967295"]);
}

#[test]
fn unsupported_architectures() {
    // The error names the architecture and every one we run.
    for arch in ["gpt2", "phi2", "gemma2", "", "llama\0"] {
        let b = Tiny::new()
            .set("general.architecture", Value::String(arch.into()))
            .bytes();
        hostile(
            &format!("architecture {arch:?}"),
            b,
            "UNSUPPORTED_ARCHITECTURE",
            &[&format!("'{arch}'"), "supported: llama, qwen2, qwen3, gemma3, phi3"],
        );
    }
    let b = Tiny::new().unset("general.architecture").bytes();
    hostile(
        "no architecture",
        b,
        "BAD_MODEL",
        &["general.architecture", "missing"],
    );
    let b = Tiny::new()
        .set("general.architecture", Value::U32(1))
        .bytes();
    hostile(
        "architecture not a string",
        b,
        "BAD_MODEL",
        &["general.architecture"],
    );
    let b = Tiny::new()
        .set("tokenizer.ggml.model", Value::String("bert".into()))
        .bytes();
    hostile(
        "WordPiece tokenizer",
        b,
        "TOKENIZER_ERROR",
        &["'bert'", "tokenizer.ggml.model"],
    );
}

#[test]
fn missing_tensors_and_wrong_shapes() {
    for name in [
        "token_embd.weight",
        "output_norm.weight",
        "blk.1.ffn_down.weight",
        "blk.0.attn_k.weight",
    ] {
        let b = Tiny::new().without(name).bytes();
        hostile(
            &format!("missing {name}"),
            b,
            "BAD_MODEL",
            &[name, "missing"],
        );
    }
    for (name, dims) in [
        ("blk.0.attn_q.weight", &[N_EMBD, N_EMBD / 2][..]),
        ("blk.1.attn_k.weight", &[N_EMBD, N_EMBD][..]),
        ("blk.0.ffn_down.weight", &[N_EMBD, N_FF][..]), // transposed
        ("output_norm.weight", &[N_EMBD, 2][..]),
        ("blk.1.ffn_norm.weight", &[N_EMBD * 2][..]),
        ("token_embd.weight", &[N_EMBD, N_VOCAB * 2][..]),
    ] {
        let b = Tiny::new().reshape(name, dims).bytes();
        hostile(
            &format!("{name} shaped {dims:?}"),
            b,
            "BAD_MODEL",
            &[name, &format!("{dims:?}")],
        );
    }
    // Hyperparameters that would size the graph from untrusted numbers.
    for (key, v) in [
        ("llama.block_count", 1u64 << 60),
        ("llama.embedding_length", 1 << 60),
        ("llama.context_length", 1 << 40),
        ("llama.vocab_size", 1 << 40),
        ("llama.attention.head_count_kv", 0),
        ("llama.attention.head_count", 3),
    ] {
        let b = Tiny::new().set(key, Value::U64(v)).bytes();
        hostile(
            &format!("{key} = {v}"),
            b,
            "BAD_MODEL",
            &["hyperparameters"],
        );
    }
}

/// Not a lie, but the other side of the memory bound: a header's real contents cost memory in
/// proportion to their bytes. Parsed metadata values are `Value`s of 32 bytes each, so an array
/// of u8 costs 32 times its encoded size, and 50 times at the peak while its `Vec` grows (u64:
/// 8x, strings as in a real vocabulary: 6x). This pins that factor, so a regression to anything
/// worse (quadratic re-parsing, per-element allocations) fails here; compact typed arrays would
/// bring it down to about 1x.
#[test]
fn honest_metadata_costs_memory_in_proportion_to_its_bytes() {
    let n = 1 << 20;
    for (ty, elem) in [
        (ValueType::U8, Value::U8(7)),
        (ValueType::U64, Value::U64(7)),
        (ValueType::String, Value::String("tok".into())),
    ] {
        let mut w = GgufWriter::default();
        w.kv("big", Value::Array(ty, vec![elem; n]));
        let bytes = w.to_bytes();
        let t = Instant::now();
        let (h, peak) = peak_during(|| parse_unsized(&bytes).unwrap());
        let took = t.elapsed();
        drop(h);
        let factor = peak as f64 / bytes.len() as f64;
        eprintln!(
            "{ty:?} array of {n}: {} bytes, peak {peak} bytes allocated ({factor:.1}x), {took:?}",
            bytes.len()
        );
        assert!(peak < 64 * bytes.len() + SLACK, "{ty:?}: {factor:.1}x");
        assert!(took < TIME_LIMIT, "{ty:?}: {took:?}");
    }
}
