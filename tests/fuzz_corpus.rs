//! The fuzz targets' committed inputs: every input that once crashed a target is replayed
//! through that target's checks (shared with fuzz/ so a found crash replays here exactly), and
//! the GGUF seeds of the `gguf_stream` target are regenerated from here.
// Reads fixture files and the fuzz corpus from disk, and uses the native GPU context.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::tiny::{Tiny, N_EMBD};
use common::Raw;
use llama_webgpu::gguf::{GgufWriter, Value, ValueType};
use llama_webgpu::quant::GgmlType;
use std::time::{Duration, Instant};

// The fuzz targets' checks, shared with fuzz/ so a found crash is replayed here exactly.
#[path = "../fuzz/checks/chat_template.rs"]
mod chat_template_check;
#[path = "../fuzz/checks/gguf_stream.rs"]
mod gguf_stream_check;
#[path = "../fuzz/checks/tokenizer.rs"]
mod tokenizer_check;

/// Every input under tests/fixtures/fuzz-regressions/TARGET/ that once crashed a fuzz target
/// passes that target's checks now. (Sampler inputs need the fuzz crate's `arbitrary` decoding:
/// they are replayed by scripts/fuzz, and each has a unit test in src/sampling.)
#[test]
fn fuzz_regressions_replay() {
    let dir = common::root().join("tests/fixtures/fuzz-regressions");
    // Time allowed per input. The fuzz smoke run allows 5 s in its ASan build, which runs a
    // template about 10× slower than this one: templates that burn their whole budget (a
    // runaway loop) must stay well under that.
    type Target = (&'static str, fn(&[u8]), Duration);
    let targets: [Target; 3] = [
        ("gguf_stream", gguf_stream_check::run, Duration::from_secs(5)),
        ("tokenizer", tokenizer_check::run, Duration::from_secs(5)),
        ("chat_template", chat_template_check::run, Duration::from_millis(500)),
    ];
    let mut n = 0;
    for (target, run, limit) in targets {
        let Ok(entries) = std::fs::read_dir(dir.join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for path in paths
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        {
            eprintln!("{target}: {}", path.display());
            let t = Instant::now();
            run(&std::fs::read(path).unwrap());
            assert!(
                t.elapsed() < limit,
                "{}: took {:?} (limit {limit:?})",
                path.display(),
                t.elapsed()
            );
            n += 1;
        }
    }
    eprintln!("{n} regression inputs replayed");
}

// ---- fuzz seeds ----------------------------------------------------------------------------------

/// GPT-2's byte-level alphabet: the character each byte is written as in a BPE vocabulary.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    if printable(b) {
        return b as char;
    }
    let rank = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + rank).unwrap()
}

/// Regenerates the GGUF seeds of the `gguf_stream` fuzz target (fuzz/corpus/gguf_stream): small
/// valid files of every kind the parser and its consumers see, plus a few lying ones. Each seed is
/// 8 bytes of chunking seed followed by the file.
/// `cargo test --release --test fuzz_corpus -- --ignored write_fuzz_seeds`
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let dir = common::root().join("fuzz/corpus/gguf_stream");
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, seed: u64, file: &[u8]| {
        let mut b = seed.to_le_bytes().to_vec();
        b.extend_from_slice(file);
        std::fs::write(dir.join(format!("{name}.bin")), b).unwrap();
    };

    write("tiny-llama", 1, &Tiny::new().bytes());

    // A tiny model with a byte-level BPE vocabulary, merges, specials and a chat template.
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
    let merges = ["Ġ t", "h e", "Ġt he", "l l", "e ll", "Ġ a"];
    for m in merges {
        tokens.push(m.replace(' ', ""));
    }
    let specials = [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|eot_id|>",
        "<|im_start|>",
        "<|im_end|>",
    ];
    tokens.extend(specials.iter().map(|s| s.to_string()));
    let mut types = vec![Value::I32(1); tokens.len()];
    for t in types.iter_mut().rev().take(specials.len()) {
        *t = Value::I32(3);
    }
    let n = tokens.len() as u64;
    let vocab = Tiny::new()
        .set("llama.vocab_size", Value::U32(n as u32))
        .reshape("token_embd.weight", &[N_EMBD, n])
        .set("tokenizer.ggml.model", Value::String("gpt2".into()))
        .set("tokenizer.ggml.pre", Value::String("llama-bpe".into()))
        .set("tokenizer.ggml.tokens", llama_webgpu::gguf::str_array(&tokens))
        .set("tokenizer.ggml.token_type", Value::Array(ValueType::I32, types))
        .set("tokenizer.ggml.merges", llama_webgpu::gguf::str_array(&merges))
        .set("tokenizer.ggml.bos_token_id", Value::U32(n as u32 - 5))
        .set("tokenizer.ggml.eos_token_id", Value::U32(n as u32 - 3))
        .set(
            "tokenizer.chat_template",
            Value::String("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}".into()),
        );
    write("tiny-llama-vocab", 4, &vocab.bytes()); // seed % 4 == 0: the check builds the tokenizer

    // Every value type, nested arrays, quantized tensors, a larger alignment.
    let data: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let mut w = common::every_value_type();
    w.tensor("t.f32", &[4, 8], GgmlType::F32, &data[..128])
        .tensor("t.q4_0", &[64, 2], GgmlType::Q4_0, &data[..72])
        .tensor("t.q8_0", &[32], GgmlType::Q8_0, &data[..34])
        .tensor("t.q4_k", &[256], GgmlType::Q4_K, &data[..144])
        .tensor("t.f16", &[3], GgmlType::F16, &data[..6])
        .tensor("t.empty", &[0, 4], GgmlType::F32, &[]);
    write("all-types", 3, &w.to_bytes());

    // The first shard of a split model.
    let mut w = GgufWriter::default();
    w.kv("general.architecture", Value::String("llama".into()))
        .kv("split.no", Value::U16(0))
        .kv("split.count", Value::U16(3))
        .kv("split.tensors.count", Value::I32(7))
        .tensor("token_embd.weight", &[8, 4], GgmlType::F32, &data[..128]);
    write("split-shard", 4, &w.to_bytes());

    // A real header's start (llama.cpp's writer), cut inside the vocabulary. 16 KiB rather than
    // more: the parse stops at the vocabulary's count check either way, and libFuzzer sizes its
    // inputs after the largest seed.
    let smol = std::fs::read(common::smollm2()).unwrap();
    write("smollm2-first-16k", 5, &smol[..16 << 10]);

    // Lies, for the mutator to start from.
    write("count-2-pow-60", 6, &Raw::new(1 << 60, 1 << 60).bytes());
    let b = Raw::new(3, 0)
        .tensor("big", &[64], 0, 0)
        .tensor("empty", &[0], 0, 64)
        .tensor("small", &[8], 0, 128)
        .data(512);
    write("overlap-across-empty", 7, &b);
    let b = Raw::new(1, 0)
        .tensor("w", &[1 << 32, 1 << 32, 1 << 32], 0, 0)
        .data(64);
    write("dims-overflow", 8, &b);
}
