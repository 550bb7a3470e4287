//! Tokenizer and chat template against llama.cpp.
//!
//! Reference data: llama.cpp's own vocabulary tests (`.cache/models/ggml-vocab-llama-bpe.gguf.inp/.out`)
//! and the fixtures written by `scripts/ref-tokenize.mjs` and `scripts/ref-chat.py` from the llama.cpp
//! build pinned in scripts/package.json. The models live in `.cache/models` (run `scripts/setup`).
#![cfg(not(target_arch = "wasm32"))]

use llama_webgpu::gguf::{GgufFile, Metadata, Value, ValueType};
use llama_webgpu::tokenizer::chat::{
    apply_chat_template, apply_chat_template_with_tools, ChatMessage, TemplateError, MAX_TEMPLATE_OUTPUT,
};
use llama_webgpu::tokenizer::{StreamDecoder, Tokenizer, TokenizerError};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file from `.cache/models`; fails (never skips) when it is missing.
fn model_file(name: &str) -> PathBuf {
    let p = root().join(".cache/models").join(name);
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup to download the test models",
        p.display()
    );
    p
}

fn fixture(name: &str) -> serde_json::Value {
    let p = root().join("tests/fixtures").join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn load_gguf(name: &str) -> Tokenizer {
    let model = GgufFile::open(model_file(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    Tokenizer::from_gguf(model.metadata()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn llama3() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let start = Instant::now();
        let t = load_gguf("ggml-vocab-llama-bpe.gguf");
        eprintln!(
            "loaded the Llama 3 vocabulary (128,256 tokens, 280,147 merges) in {:?}",
            start.elapsed()
        );
        t
    })
}

fn smollm2() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| load_gguf("SmolLM2-135M-Instruct.Q4_1.gguf"))
}

fn gemma3() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| load_gguf("gemma-3-270m-q4_k_m.gguf"))
}

fn llama31_json() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let bytes = std::fs::read(model_file("llama3.1-tokenizer.json")).unwrap();
        Tokenizer::from_json_bytes(&bytes).unwrap()
    })
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("id array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn s(v: &serde_json::Value) -> &str {
    v.as_str().expect("string")
}

/// llama.cpp's tests/test-tokenizer-0 cases: inputs separated by "\n__ggml_vocab_test__\n", one line of
/// space-separated ids per input in the .out file.
fn vocab_cases(name: &str) -> Vec<(String, Vec<u32>)> {
    let inp = std::fs::read_to_string(model_file(&format!("{name}.inp"))).unwrap();
    let out = std::fs::read_to_string(model_file(&format!("{name}.out"))).unwrap();
    let sep = "\n__ggml_vocab_test__\n";
    let mut inputs = Vec::new();
    let mut pos = 0;
    while pos < inp.len() {
        match inp[pos..].find(sep) {
            Some(i) => {
                inputs.push(inp[pos..pos + i].to_string());
                pos += i + sep.len();
            }
            None => {
                inputs.push(inp[pos..].to_string());
                break;
            }
        }
    }
    let outputs: Vec<Vec<u32>> = out
        .lines()
        .map(|l| {
            l.split_whitespace()
                .map(|t| t.parse().expect("token id"))
                .collect()
        })
        .collect();
    assert_eq!(
        inputs.len(),
        outputs.len(),
        "{name}: .inp and .out disagree on the number of cases"
    );
    inputs.into_iter().zip(outputs).collect()
}

#[test]
fn llama_cpp_vocab_tests_llama_bpe() {
    check_vocab_cases(llama3(), "ggml-vocab-llama-bpe.gguf");
}

/// Qwen2's vocabulary (`tokenizer.ggml.pre = qwen2`: Qwen2, Qwen2.5 and Qwen3), every digit a
/// token of its own.
#[test]
fn llama_cpp_vocab_tests_qwen2() {
    let tok = load_gguf("ggml-vocab-qwen2.gguf");
    assert_eq!(tok.pre_tokenizer(), "qwen2");
    check_vocab_cases(&tok, "ggml-vocab-qwen2.gguf");
    assert_eq!(tok.encode("2026", false).unwrap().len(), 4);
}

/// SentencePiece-style vocabularies (`tokenizer.ggml.model = llama`): Llama 2's and Phi-3's, with
/// byte fallback for characters outside them.
#[test]
fn llama_cpp_vocab_tests_spm() {
    for name in ["ggml-vocab-llama-spm.gguf", "ggml-vocab-phi-3.gguf"] {
        let tok = load_gguf(name);
        assert_eq!(tok.pre_tokenizer(), "spm", "{name}");
        assert!(tok.add_bos() && tok.bos_id() == Some(1), "{name}");
        check_vocab_cases(&tok, name);
        // A space goes before the text, and a character outside the vocabulary is its bytes.
        let ids = tok.encode("\u{1F996}", false).unwrap();
        assert_eq!(ids.iter().map(|&i| tok.token_text(i).unwrap()).collect::<Vec<_>>(), ["\u{2581}", "<0xF0>", "<0x9F>", "<0xA6>", "<0x96>"], "{name}");
        assert_eq!(tok.decode(&ids, false), " \u{1F996}");
        assert_eq!(tok.token_id("\u{2581}"), ids.first().copied(), "{name}");
    }
}

/// llama.cpp's own cases for a vocabulary: every one must give its ids, and detokenize back to
/// the text (both kinds of vocabulary are lossless, but for the space clean-up llama.cpp's
/// detokenizer does for some BPE vocabularies, which `decode` leaves out).
fn check_vocab_cases(tok: &Tokenizer, name: &str) {
    let cases = vocab_cases(name);
    assert_eq!(cases.len(), 46);
    let mut bad = Vec::new();
    for (text, want) in &cases {
        let got = tok.encode(text, false).unwrap();
        if &got != want {
            bad.push(format!("{text:?}: got {got:?}, llama.cpp {want:?}"));
        }
        let back = if tok.pre_tokenizer() == "spm" { tok.detokenize(&got, false) } else { tok.decode(&got, false) };
        assert_eq!(&back, text, "{name}");
    }
    assert!(
        bad.is_empty(),
        "{} of {} cases differ:\n{}",
        bad.len(),
        cases.len(),
        bad.join("\n")
    );
}

fn check_fixture(tok: &Tokenizer, name: &str) {
    check_fixture_with(tok, name, true)
}

/// [`check_fixture`]; `round_trip`: the ids' raw pieces also spell the text exactly (not so for an
/// SPM vocabulary with a space prefix, whose first piece starts with the added space; llama.cpp's
/// detokenization, which drops it, is checked either way).
fn check_fixture_with(tok: &Tokenizer, name: &str, round_trip: bool) {
    let f = fixture(name);
    let mut bad = Vec::new();
    let cases = f["cases"].as_array().unwrap();
    assert!(cases.len() >= 40);
    for c in cases {
        let text = s(&c["text"]);
        for (parse_special, key) in [(false, "ids"), (true, "ids_special")] {
            let want = ids(&c[key]);
            let got = tok.encode(text, parse_special).unwrap();
            if got != want {
                bad.push(format!(
                    "{text:?} parse_special={parse_special}: got {got:?}, llama.cpp {want:?}"
                ));
            }
        }
        let special = ids(&c["ids_special"]);
        for (render, key) in [(false, "detok"), (true, "detok_special")] {
            let got = tok.detokenize(&special, render);
            if got != s(&c[key]) {
                bad.push(format!(
                    "detokenize({special:?}, {render}): got {got:?}, llama.cpp {:?}",
                    s(&c[key])
                ));
            }
        }
        // Exact round trips: plain ids decode to the text; with special tokens parsed, rendering them does.
        if round_trip {
            assert_eq!(tok.decode(&ids(&c["ids"]), false), text, "{name}: {text:?}");
            assert_eq!(tok.decode(&special, true), text, "{name}: {text:?}");
        }
    }
    for e in f["extra"].as_array().unwrap() {
        let seq = ids(&e["ids"]);
        for (render, key) in [(false, "detok"), (true, "detok_special")] {
            let got = tok.detokenize(&seq, render);
            if got != s(&e[key]) {
                bad.push(format!(
                    "detokenize({seq:?}, {render}): got {got:?}, llama.cpp {:?}",
                    s(&e[key])
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{name}: {} mismatches with llama.cpp:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn llama3_matches_llama_cpp_fixture() {
    check_fixture(llama3(), "tokenize-llama3.json");
}

#[test]
fn smollm2_matches_llama_cpp_fixture() {
    check_fixture(smollm2(), "tokenize-smollm2.json");
    // SmolLM has no space clean-up, so llama.cpp's detokenization is the exact pieces.
    let f = fixture("tokenize-smollm2.json");
    for c in f["cases"].as_array().unwrap() {
        assert_eq!(
            smollm2().decode(&ids(&c["ids_special"]), true),
            s(&c["detok_special"])
        );
    }
}

/// Gemma 3's SentencePiece-style vocabulary of 262,144 tokens: user-defined tokens (newline
/// runs, HTML tags, runs of spaces) that llama.cpp matches before merging, no space prefix, and
/// its end-of-generation set (`<eos>`, `<end_of_turn>` and `</s>`).
#[test]
fn gemma3_matches_llama_cpp_fixture() {
    let t = gemma3();
    check_fixture(t, "tokenize-gemma3.json");
    check_special_ids(t, &fixture("tokenize-gemma3.json"));
}

/// The vocabulary size, BOS and EOS, whether they are added, and the end-of-generation set are
/// llama.cpp's (a `tokenize-*.json` fixture).
fn check_special_ids(t: &Tokenizer, f: &serde_json::Value) {
    assert_eq!(t.vocab_size() as u64, f["n_vocab"].as_u64().unwrap());
    assert_eq!(t.bos_id(), Some(f["bos"].as_u64().unwrap() as u32));
    assert_eq!(t.eos_id(), Some(f["eos"].as_u64().unwrap() as u32));
    assert_eq!(t.add_bos(), f["add_bos"].as_bool().unwrap());
    assert_eq!(t.add_eos(), f["add_eos"].as_bool().unwrap());
    assert_eq!(t.stop_ids(), ids(&f["eog"]));
}

/// Phi-3's SPM vocabulary (llama.cpp's ggml-vocab-phi-3.gguf): whitespace after its special
/// tokens is dropped (RSTRIP, which llama.cpp sets by `general.name`), but after BOS, UNK and
/// `<|endoftext|>`, as in its chat prompts.
#[test]
fn phi3_matches_llama_cpp_fixture() {
    let t = load_gguf("ggml-vocab-phi-3.gguf");
    check_fixture_with(&t, "tokenize-phi3.json", false);
    check_special_ids(&t, &fixture("tokenize-phi3.json"));
    // The strip is what the chat case needs: without it, `\n` after `<|user|>` would be tokens.
    let chat = t.encode("<|user|>\nHi<|end|>\n<|assistant|>\n", true).unwrap();
    assert_eq!(chat[0], 32010);
    assert!(!chat.contains(&13), "{chat:?}");
}

#[test]
fn special_ids_match_llama_cpp() {
    let f = fixture("tokenize-llama3.json");
    let t = llama3();
    assert_eq!(t.vocab_size() as u64, f["n_vocab"].as_u64().unwrap());
    assert_eq!(t.bos_id(), Some(f["bos"].as_u64().unwrap() as u32));
    assert_eq!(t.eos_id(), Some(f["eos"].as_u64().unwrap() as u32));
    assert_eq!(t.eot_id(), Some(f["eot"].as_u64().unwrap() as u32));
    assert_eq!(
        t.add_bos(),
        f["add_bos"].as_bool().unwrap(),
        "llama-bpe defaults add_bos to true"
    );
    assert_eq!(t.add_eos(), f["add_eos"].as_bool().unwrap());
    assert_eq!(t.stop_ids(), ids(&f["eog"]));
    assert_eq!(t.stop_ids(), vec![128001, 128009]);
    assert_eq!(t.pre_tokenizer(), "llama-bpe");
    assert!(
        t.chat_template().is_none(),
        "the vocab-only file has no chat template"
    );

    let f = fixture("tokenize-smollm2.json");
    let t = smollm2();
    check_special_ids(t, &f);
    // <|endoftext|>, <|im_end|>, and <reponame> (llama.cpp's FIM repo token, also end of generation).
    assert_eq!(t.stop_ids(), vec![0, 2, 4]);
    assert_eq!(t.pad_id(), Some(2));
    assert_eq!(t.unk_id(), Some(0));
    // Known difference: llama.cpp's EOT is whichever end-of-turn-looking token its unordered_map yields
    // first (0, <|endoftext|>); here the first name in llama.cpp's list wins (<|im_end|>). Both are stops.
    assert_eq!(f["eot"].as_u64(), Some(0));
    assert_eq!(t.eot_id(), Some(2));
    assert!(t.is_eog(0) && t.is_eog(2));
    assert!(t.chat_template().unwrap().contains("<|im_start|>"));
}

#[test]
fn tokenizer_json_gives_the_gguf_ids() {
    let json = llama31_json();
    let gguf = llama3();
    assert_eq!(json.vocab_size(), 128_256);
    assert_eq!(json.bos_id(), Some(128_000));
    assert!(json.add_bos());
    assert_eq!(json.eos_id(), Some(128_001));
    assert_eq!(json.eot_id(), Some(128_009));
    assert_eq!(json.stop_ids(), gguf.stop_ids());
    let mut texts: Vec<String> = vocab_cases("ggml-vocab-llama-bpe.gguf")
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    let f = fixture("tokenize-llama3.json");
    texts.extend(
        f["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| s(&c["text"]).to_string()),
    );
    for text in &texts {
        for parse_special in [false, true] {
            let a = json.encode(text, parse_special).unwrap();
            let b = gguf.encode(text, parse_special).unwrap();
            assert_eq!(a, b, "{text:?} parse_special={parse_special}");
            assert_eq!(json.decode(&a, true), gguf.decode(&b, true));
        }
    }
    for id in [0u32, 220, 128_000, 128_009, 128_255] {
        assert_eq!(json.token_text(id), gguf.token_text(id));
        assert_eq!(json.token_piece(id, true), gguf.token_piece(id, true));
    }
}

#[test]
fn control_tokens_need_parse_special_and_render_special() {
    let t = llama3();
    let text = "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
    let special = t.encode(text, true).unwrap();
    assert_eq!(special, vec![128006, 882, 128007, 271, 13347, 128009]);
    assert!(!t.encode(text, false).unwrap().contains(&128006));
    assert_eq!(t.decode(&special, false), "user\n\nHi");
    assert_eq!(t.decode(&special, true), text);
    assert_eq!(t.token_piece(128009, false), b"");
    assert_eq!(t.token_piece(128009, true), b"<|eot_id|>");
    assert!(t.is_control(128009) && !t.is_control(882));
    assert_eq!(t.token_text(220), Some("Ġ"));
    assert_eq!(t.token_id("<|eot_id|>"), Some(128009));
    assert_eq!(t.token_text(200_000), None);
    assert_eq!(t.token_piece(200_000, true), b"");
    assert_eq!(t.encode("", true).unwrap(), Vec::<u32>::new());
}

#[test]
fn stream_decoder_holds_back_split_characters() {
    let t = llama3();
    // 🦙 is three tokens in Llama 3: F0 9F, A6, 99 (split inside the character).
    let text = "llama 🦙 and 👨‍👩‍👧 ok";
    let text_ids = t.encode(text, false).unwrap();
    let llama = t.encode("🦙", false).unwrap();
    assert_eq!(llama.len(), 3);
    let mut dec: StreamDecoder = t.stream_decoder(false);
    assert_eq!(dec.push(llama[0]), "");
    assert_eq!(dec.push(llama[1]), "");
    assert!(!dec.pending_bytes().is_empty());
    assert_eq!(dec.push(llama[2]), "🦙");
    assert_eq!(dec.finish(), "");

    let mut dec = StreamDecoder::new(t, false);
    let mut out = String::new();
    for &id in &text_ids {
        let piece = dec.push(id);
        assert!(
            !piece.contains('\u{FFFD}'),
            "partial character leaked: {piece:?}"
        );
        out.push_str(&piece);
    }
    out.push_str(&dec.finish());
    assert_eq!(out, text);

    // An unfinished character at the end comes out as one U+FFFD, like decode's lossy UTF-8; bytes that
    // can never be UTF-8 come out at once.
    let mut dec = t.stream_decoder(false);
    assert_eq!(dec.push(llama[0]), "");
    assert_eq!(dec.finish(), "\u{FFFD}");
    assert_eq!(t.decode(&llama[..1], false), "\u{FFFD}");
    let mut dec = t.stream_decoder(false);
    assert_eq!(dec.push(llama[1]), "\u{FFFD}"); // a lone continuation byte
    assert_eq!(dec.push(9906), "Hello");

    // Control tokens: nothing, or their text.
    let mut dec = t.stream_decoder(true);
    assert_eq!(dec.push(128009), "<|eot_id|>");
    let mut dec = t.stream_decoder(false);
    assert_eq!(dec.push(128009), "");

    // Streaming equals decode on every fixture string, both vocabularies.
    for (tok, name) in [
        (llama3(), "tokenize-llama3.json"),
        (smollm2(), "tokenize-smollm2.json"),
    ] {
        for c in fixture(name)["cases"].as_array().unwrap() {
            let seq = ids(&c["ids_special"]);
            let mut dec = tok.stream_decoder(true);
            let streamed: String =
                seq.iter().map(|&id| dec.push(id)).collect::<String>() + &dec.finish();
            assert_eq!(streamed, tok.decode(&seq, true));
        }
    }
}

fn chat_messages(f: &serde_json::Value) -> Vec<ChatMessage> {
    serde_json::from_value(f["messages"].clone()).unwrap()
}

#[test]
fn chat_template_smollm2_matches_llama_cpp() {
    let f = fixture("chat-smollm2.json");
    let messages = chat_messages(&f);
    assert_eq!(
        messages.iter().map(|m| m.role.as_str()).collect::<Vec<_>>(),
        ["system", "user", "assistant", "user"]
    );
    let t = smollm2();
    let template = t
        .chat_template()
        .expect("SmolLM2 has tokenizer.chat_template");
    for c in f["cases"].as_array().unwrap() {
        let add = c["add_generation_prompt"].as_bool().unwrap();
        let got =
            apply_chat_template(template, &messages, add, "<|im_start|>", "<|im_end|>").unwrap();
        assert_eq!(got, s(&c["prompt"]), "add_generation_prompt={add}");
        assert_eq!(t.apply_chat_template(&messages, add).unwrap().unwrap(), got);
        // The prompt tokenizes with its control tokens.
        let ids = t.encode(&got, true).unwrap();
        assert_eq!(ids[0], 1);
        assert_eq!(ids.iter().filter(|&&i| i == 2).count(), 4);
    }
    // Without a system message the template adds its own.
    let got = apply_chat_template(template, &messages[1..2], true, "", "").unwrap();
    assert!(got.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"));
}

#[test]
fn chat_template_llama31_matches_llama_cpp_up_to_the_date_header() {
    let f = fixture("chat-llama31.json");
    let messages = chat_messages(&f);
    let template =
        std::fs::read_to_string(model_file("meta-llama-Llama-3.1-8B-Instruct.jinja")).unwrap();
    // What the official template adds and llama.cpp's built-in llama3 formatter does not: BOS in front,
    // and a knowledge-cutoff/date preamble at the top of the system turn (date_string defaults to 26 Jul 2024).
    let bos = "<|begin_of_text|>";
    let preamble = "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n";
    let header = "<|start_header_id|>system<|end_header_id|>\n\n";
    for c in f["cases"].as_array().unwrap() {
        let add = c["add_generation_prompt"].as_bool().unwrap();
        let got = apply_chat_template(&template, &messages, add, bos, "<|eot_id|>").unwrap();
        let want = s(&c["prompt"]);
        let rest = got.strip_prefix(bos).expect("starts with BOS");
        let rest = rest.strip_prefix(header).expect("system header");
        let rest = rest.strip_prefix(preamble).expect("date preamble");
        let llama_cpp_rest = want.strip_prefix(header).expect("llama.cpp system header");
        assert_eq!(rest, llama_cpp_rest, "add_generation_prompt={add}");
        // Both trim message contents (the assistant message has surrounding whitespace).
        assert!(want.contains("\n\nThe capital of France is Paris.<|eot_id|>"));
        // And it tokenizes to the Llama 3 control tokens.
        let ids = llama3().encode(&got, true).unwrap();
        assert_eq!(ids[..2], [128000, 128006]);
        assert_eq!(ids.iter().filter(|&&i| i == 128009).count(), 4);
    }
}

/// The sandbox's budgets leave room for real use: the official Llama 3.1 template, with a tool
/// and 2,000 messages (more turns than a 128k context holds), renders within them.
#[test]
fn chat_template_budgets_fit_long_conversations() {
    let template =
        std::fs::read_to_string(model_file("meta-llama-Llama-3.1-8B-Instruct.jinja")).unwrap();
    let mut messages = vec![ChatMessage::system("You are terse.")];
    for i in 0..1000 {
        messages.push(ChatMessage::user(format!("Question {i}: what is {i} squared?")));
        messages.push(ChatMessage::assistant(format!("{}", i * i)));
    }
    let tools = serde_json::json!([{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
        }
    }]);
    let got = apply_chat_template_with_tools(&template, &messages, Some(&tools), true, "<|begin_of_text|>", "<|eot_id|>")
        .unwrap();
    assert!(got.contains("get_weather") && got.contains("Question 999: what is 999 squared?"));
    assert_eq!(got.matches("<|eot_id|>").count(), 2001);
}

fn assert_fast(start: Instant) {
    assert_within(start, Duration::from_secs(1));
}

fn assert_within(start: Instant, limit: Duration) {
    assert!(
        start.elapsed() < limit,
        "took {:?} (limit {limit:?})",
        start.elapsed()
    );
}

#[test]
fn hostile_templates_fail_fast_with_typed_errors() {
    let msgs = [ChatMessage::user("hi")];
    let run = |t: &str| apply_chat_template(t, &msgs, true, "<s>", "</s>");

    let start = Instant::now();
    let e = run(
        "{% for i in range(999999999) %}{% for j in range(999999999) %}x{% endfor %}{% endfor %}",
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            TemplateError::FuelExhausted { .. } | TemplateError::OutputTooLarge { .. }
        ),
        "{e}"
    );
    assert_fast(start);

    let start = Instant::now();
    let e = run("{% for i in range(999999999) %}{% endfor %}done").unwrap_err();
    assert!(matches!(e, TemplateError::FuelExhausted { .. }), "{e}");
    assert!(e.to_string().contains("fuel"), "{e}");
    assert_fast(start);

    let start = Instant::now();
    let e = run("{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}").unwrap_err();
    assert!(
        matches!(e, TemplateError::OutputTooLarge { limit } if limit == MAX_TEMPLATE_OUTPUT),
        "{e}"
    );
    assert!(e.to_string().contains("1048576"), "{e}");
    assert_fast(start);

    // Instructions without output or ranges: all 2M units of fuel get burnt (about 0.15 s natively
    // on one core; the bound leaves room for a loaded machine).
    let start = Instant::now();
    let e = run("{% for m in messages * 100000 %}{% for n in messages * 100000 %}{% set x = 1 %}{% endfor %}{% endfor %}").unwrap_err();
    assert!(matches!(e, TemplateError::FuelExhausted { .. }), "{e}");
    assert_within(start, Duration::from_secs(5));

    let start = Instant::now();
    let e = run("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").unwrap_err();
    assert!(matches!(e, TemplateError::RecursionLimit { .. }), "{e}");
    assert_fast(start);

    let e = run("{% for m in messages %}{{ m.content }").unwrap_err();
    assert!(matches!(e, TemplateError::Syntax(_)), "{e}");
    assert!(e.to_string().contains("syntax error"), "{e}");

    let e = run("{% if messages|length < 2 %}{{ raise_exception('Conversation roles must alternate!') }}{% endif %}").unwrap_err();
    assert!(
        matches!(&e, TemplateError::Raised(m) if m == "Conversation roles must alternate!"),
        "{e}"
    );

    let e = run("{{ messages.nope.deeper }}").unwrap_err();
    assert!(matches!(e, TemplateError::Render(_)), "{e}");

    // Ordinary templates still work: Python methods, loop controls, strftime_now, tojson.
    let ok = run(
        "{% for m in messages %}{% if loop.first %}{{ bos_token }}{% endif %}[{{ m.role|upper }}] {{ m['content'].strip().title() }}{% break %}{% endfor %}\
         {{ strftime_now('%Y')|length }}{{ {'a': 1}|tojson }}{% if add_generation_prompt %}>{% endif %}",
    )
    .unwrap();
    assert_eq!(ok, "<s>[USER] Hi4{\"a\": 1}>");
}

fn meta(pairs: &[(&str, Value)]) -> Metadata {
    let mut m = Metadata::default();
    for (k, v) in pairs {
        assert!(m.insert(k.to_string(), v.clone()));
    }
    m
}

fn strs(items: &[&str]) -> Value {
    Value::Array(
        ValueType::String,
        items.iter().map(|s| Value::String(s.to_string())).collect(),
    )
}

#[test]
fn metadata_errors_name_the_key_and_value() {
    // WordPiece (BERT) and Unigram (T5) vocabularies are not run.
    for model in ["bert", "t5"] {
        let e = Tokenizer::from_gguf(&meta(&[("tokenizer.ggml.model", Value::String(model.into()))])).unwrap_err();
        assert!(matches!(&e, TokenizerError::UnsupportedModel(m) if m == model), "{e}");
        assert!(e.to_string().contains(&format!("'{model}'")) && e.to_string().contains("tokenizer.ggml.model"), "{e}");
    }
    // An SPM vocabulary without tokens names the key.
    let e = Tokenizer::from_gguf(&meta(&[("tokenizer.ggml.model", Value::String("llama".into()))])).unwrap_err();
    assert!(e.to_string().contains("tokenizer.ggml.tokens"), "{e}");

    let e = Tokenizer::from_gguf(&meta(&[
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("qwen35".into())),
    ]))
    .unwrap_err();
    assert!(
        matches!(&e, TokenizerError::UnsupportedPreTokenizer(p) if p == "qwen35"),
        "{e}"
    );
    assert!(
        e.to_string().contains("'qwen35'") && e.to_string().contains("tokenizer.ggml.pre"),
        "{e}"
    );

    let e = Tokenizer::from_gguf(&meta(&[])).unwrap_err();
    assert!(e.to_string().contains("tokenizer.ggml.model"), "{e}");

    let e = Tokenizer::from_gguf(&meta(&[
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("smollm".into())),
        ("tokenizer.ggml.tokens", Value::U32(3)),
    ]))
    .unwrap_err();
    assert!(
        matches!(e, TokenizerError::Metadata(_)) && e.to_string().contains("tokenizer.ggml.tokens"),
        "{e}"
    );

    let e = Tokenizer::from_gguf(&meta(&[
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.tokens", strs(&["a", "b"])),
    ]))
    .unwrap_err();
    assert!(e.to_string().contains("tokenizer.ggml.merges"), "{e}");

    let e = Tokenizer::from_json_bytes(b"{\"model\": {\"type\": \"Unigram\"}}").unwrap_err();
    assert!(
        matches!(e, TokenizerError::Json(_)) && e.to_string().contains("Unigram"),
        "{e}"
    );
}

#[test]
fn a_tiny_synthetic_vocab() {
    // The whole byte alphabet plus a few merges, a user-defined and a control token.
    let mut tokens: Vec<String> = (0u8..=255).map(|b| byte_char(b).to_string()).collect();
    tokens.extend(["he", "ll", "hell", "hello", "Ġhello", "<tool>", "<|end|>"].map(String::from));
    let n = tokens.len();
    let mut types = vec![Value::I32(1); n];
    types[n - 2] = Value::I32(4); // user-defined
    types[n - 1] = Value::I32(3); // control
    let token_refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let m = meta(&[
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("gpt2".into())),
        ("tokenizer.ggml.tokens", strs(&token_refs)),
        (
            "tokenizer.ggml.token_type",
            Value::Array(ValueType::I32, types),
        ),
        (
            "tokenizer.ggml.merges",
            strs(&["h e", "l l", "he ll", "hell o", "Ġ hello", "x y"]),
        ),
        ("tokenizer.ggml.eos_token_id", Value::U32(n as u32 - 1)),
    ]);
    let t = Tokenizer::from_gguf(&m).unwrap();
    let hello = 259;
    assert_eq!(t.token_text(hello), Some("hello"));
    assert_eq!(t.encode("hello", false).unwrap(), vec![hello]);
    // " hello" is "Ġhello" after the byte-level mapping: the "Ġ hello" merge makes it one token.
    assert_eq!(t.encode(" hello", false).unwrap(), vec![260]);
    // User-defined tokens are always split out; control tokens only with parse_special.
    assert_eq!(t.encode("hello<tool>", false).unwrap(), vec![hello, 261]);
    assert_eq!(t.encode("<|end|>", true).unwrap(), vec![262]);
    assert_eq!(t.encode("<|end|>", false).unwrap().len(), 7); // one byte token per character: no merges apply
    assert_eq!(t.decode(&[hello, 261, 262], false), "hello<tool>");
    assert_eq!(t.decode(&[hello, 261, 262], true), "hello<tool><|end|>");
    // gpt2-type vocab defaults: BOS 11 (llama.cpp's default), no add_bos; <|end|> ends generation.
    assert_eq!(t.bos_id(), Some(11));
    assert!(!t.add_bos());
    assert_eq!(t.stop_ids(), vec![262]);
}

/// GPT-2's byte-to-character mapping (for building the synthetic vocabulary).
fn byte_char(b: u8) -> char {
    let printable = |b: u8| matches!(b, 0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff);
    if printable(b) {
        b as char
    } else {
        char::from_u32(0x100 + (0..b).filter(|&x| !printable(x)).count() as u32).unwrap()
    }
}

#[test]
fn long_text_encodes_quickly() {
    let t = llama3();
    let text = "The quick brown fox jumps over the lazy dog. 1234567 🦙 <|eot_id|>\n".repeat(2000);
    let start = Instant::now();
    let a = t.encode(&text, true).unwrap();
    let b = t.encode(&text, false).unwrap();
    assert!(a.len() > 20_000 && b.len() > a.len());
    assert_eq!(t.decode(&b, false), text);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
}

/// The other families' official chat templates through our renderer against llama.cpp's built-in
/// formatter for each (tests/fixtures/chat-{qwen25,qwen3,gemma3,phi35}.json, from
/// scripts/ref-chat.py): the same prompt, but for what the Jinja template itself adds. Gemma 3's
/// starts with `bos_token` (the tokenizer then adds no second one: `encode_prompt`), and Phi-3.5's
/// ends a conversation without a generation prompt with `eos_token`, where llama.cpp's phi3
/// formatter writes nothing.
#[test]
fn family_chat_templates_match_llama_cpp() {
    // (fixture, template file, bos, eos, what the template adds in front, what it adds at the end
    // without a generation prompt)
    let families = [
        ("chat-qwen25.json", "Qwen-Qwen2.5-7B-Instruct.jinja", "", "<|im_end|>", "", ""),
        ("chat-qwen3.json", "Qwen-Qwen3-0.6B.jinja", "", "<|im_end|>", "", ""),
        ("chat-gemma3.json", "google-gemma-3-it.jinja", "<bos>", "<eos>", "<bos>", ""),
        ("chat-phi35.json", "microsoft-Phi-3.5-mini-instruct.jinja", "<s>", "<|endoftext|>", "", "<|endoftext|>"),
    ];
    for (fx, file, bos, eos, front, end) in families {
        let f = fixture(fx);
        let messages = chat_messages(&f);
        let template = std::fs::read_to_string(model_file(file)).unwrap();
        for c in f["cases"].as_array().unwrap() {
            let add = c["add_generation_prompt"].as_bool().unwrap();
            let got = apply_chat_template(&template, &messages, add, bos, eos).unwrap();
            let want = format!("{front}{}{}", s(&c["prompt"]), if add { "" } else { end });
            assert_eq!(got, want, "{file}, add_generation_prompt={add}");
        }
    }
    // Gemma 3's turn markers are tokens of its vocabulary, and BOS stays single.
    let t = gemma3();
    let template = std::fs::read_to_string(model_file("google-gemma-3-it.jinja")).unwrap();
    let prompt = apply_chat_template(&template, &chat_messages(&fixture("chat-gemma3.json")), true, "<bos>", "<eos>").unwrap();
    let ids = t.encode_prompt(&prompt, true).unwrap();
    assert_eq!(ids[..2], [2, 105], "<bos><start_of_turn>");
    assert_eq!(ids.iter().filter(|&&i| i == 2).count(), 1);
    assert_eq!(ids.iter().filter(|&&i| i == 106).count(), 3, "three <end_of_turn>");
}

/// A chat template given at load replaces the file's (or fills in for a file without one, as
/// Gemma 3 270M's base GGUF is): checked when given, the vocabulary untouched, other clones
/// keeping the file's.
#[test]
fn a_chat_template_given_at_load_replaces_the_files() {
    let base = gemma3().clone();
    assert!(base.chat_template().is_none(), "Gemma 3 270M is a base model without a template");
    let template = std::fs::read_to_string(model_file("google-gemma-3-it.jinja")).unwrap();
    let tok = base.clone().with_chat_template(template.clone()).unwrap();
    assert_eq!(tok.chat_template(), Some(template.as_str()));
    assert!(base.chat_template().is_none(), "the clone it came from keeps the file's");
    let rendered = tok.apply_chat_template(&[ChatMessage::user("Hello")], true).unwrap().unwrap();
    assert_eq!(rendered, "<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n");
    assert_eq!(tok.encode("Hello world", false).unwrap(), base.encode("Hello world", false).unwrap());
    for bad in ["{% if %}", "{{ messages[0].content ", "{% import 'x' as y %}"] {
        assert!(matches!(base.clone().with_chat_template(bad.into()), Err(TemplateError::Syntax(_))), "{bad}");
    }
}
