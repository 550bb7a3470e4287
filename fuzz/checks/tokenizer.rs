//! The Llama 3 tokenizer (built once from `.cache/models/ggml-vocab-llama-bpe.gguf`): encode
//! arbitrary text, decode arbitrary ids.
//!
//! Input: one flag byte, a 2-byte text length, the text (lossy UTF-8), then little-endian u32
//! ids. Checks that
//! - `encode` succeeds and gives ids inside the vocabulary;
//! - decoding the ids gives the text back exactly (byte-level BPE is lossless; with
//!   `parse_special` the special-token texts are rendered back with `render_special`);
//! - `decode`, `detokenize`, `token_piece` and friends take any id, in range or not;
//! - `StreamDecoder` pushes plus `finish` equal `decode` of the same ids.
//!
//! Shared by the fuzz target (fuzz/fuzz_targets/tokenizer.rs) and the replay of
//! tests/fixtures/fuzz-regressions/tokenizer/ in tests/fuzz_corpus.rs, so a crash found by the
//! fuzzer is checked the same way in the normal test suite.
use llama_webgpu::gguf::parse_header;
use llama_webgpu::tokenizer::Tokenizer;
use std::sync::LazyLock;

static TOKENIZER: LazyLock<Tokenizer> = LazyLock::new(|| {
    // The crate is the repository (tests) or fuzz/ (the fuzz target).
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let rel = ".cache/models/ggml-vocab-llama-bpe.gguf";
    let path = [root.join(rel), root.join("..").join(rel)]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{rel} is missing: run scripts/setup"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header = parse_header(&bytes, None).expect("vocabulary GGUF parses");
    Tokenizer::from_gguf(&header.metadata).expect("Llama 3 tokenizer builds")
});

fn check_stream(tok: &Tokenizer, ids: &[u32], render_special: bool) {
    let mut d = tok.stream_decoder(render_special);
    let mut text = String::new();
    for &id in ids {
        text.push_str(&d.push(id));
        assert!(
            d.pending_bytes().len() < 4,
            "at most an unfinished character is held back"
        );
    }
    text.push_str(&d.finish());
    assert!(d.pending_bytes().is_empty());
    assert_eq!(
        text,
        tok.decode(ids, render_special),
        "stream decode == decode"
    );
}

/// Runs every check on one input; panics on a violation.
pub fn run(input: &[u8]) {
    let tok = &*TOKENIZER;
    let Some((&flags, rest)) = input.split_first() else {
        return;
    };
    let (text_len, rest) = match rest {
        [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]) as usize, rest),
        _ => (rest.len(), &[][..]),
    };
    let (text_bytes, id_bytes) = rest.split_at(text_len.min(rest.len()));
    let text = String::from_utf8_lossy(text_bytes);
    let parse_special = flags & 1 != 0;
    let n_vocab = tok.vocab_size() as u32;

    // Encode, and round-trip through decode.
    let ids = tok
        .encode(&text, parse_special)
        .expect("encode never fails on valid UTF-8");
    assert!(
        ids.iter().all(|&id| id < n_vocab),
        "id outside the vocabulary"
    );
    assert_eq!(
        tok.decode(&ids, parse_special),
        text,
        "decode(encode(text)) == text"
    );
    let prompt = tok
        .encode_prompt(&text, parse_special)
        .expect("encode_prompt");
    assert!(prompt.len() == ids.len() || prompt.len() == ids.len() + 1);
    check_stream(tok, &ids, parse_special);

    // Arbitrary ids: mostly inside the vocabulary, some just past it, some anywhere.
    let ids: Vec<u32> = id_bytes
        .chunks_exact(4)
        .map(|c| {
            let raw = u32::from_le_bytes(c.try_into().unwrap());
            match raw >> 30 {
                0 | 1 => raw % n_vocab,
                2 => n_vocab.wrapping_add(raw % 16).wrapping_sub(8),
                _ => raw,
            }
        })
        .collect();
    for render_special in [false, true] {
        let decoded = tok.decode(&ids, render_special);
        let bytes = tok.decode_bytes(&ids, render_special);
        assert_eq!(decoded, String::from_utf8_lossy(&bytes));
        let _ = tok.detokenize(&ids, render_special);
        check_stream(tok, &ids, render_special);
    }
    for (i, &id) in ids.iter().enumerate() {
        let piece = tok.token_piece(id, true);
        if id >= n_vocab {
            assert!(piece.is_empty(), "out-of-range id {id} has a piece");
            assert!(tok.token_text(id).is_none());
        }
        let _ = (tok.is_eog(id), tok.is_control(id));
        if let (true, Some(t)) = (i < 4, tok.token_text(id)) {
            // Duplicate texts may map to another id; a text always maps to some id.
            assert!(tok.token_id(t).is_some());
        }
    }
}
