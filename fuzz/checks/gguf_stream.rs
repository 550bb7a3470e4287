//! The incremental GGUF header parser, fed the same bytes in many chunkings.
//!
//! Input: 8 bytes of seed for the chunk sizes, then the file. Checks that
//! - every chunking (with the file length known) gives exactly what one-shot `parse_header`
//!   gives: the same header, or the same error (message included);
//! - an unsized stream (no Content-Length) agrees too, except that it cannot know the data bounds;
//! - the bytes fed past the header are handed back intact by `take_remainder`;
//! - an accepted header has every tensor inside the file and no two tensors overlapping;
//! - `TensorRouter` delivers each tensor's bytes exactly once, in order, and ends each one;
//! - the metadata consumers (`ModelConfig`, `Tokenizer::from_gguf`, split keys) never panic.
//!
//! Shared by the fuzz target (fuzz/fuzz_targets/gguf_stream.rs) and the replay of
//! tests/fixtures/fuzz-regressions/gguf_stream/ in tests/fuzz_corpus.rs, so a crash found by the
//! fuzzer is checked the same way in the normal test suite.
use llama_webgpu::gguf::{
    parse_header, GgufError, GgufHeader, HeaderParser, Progress, TensorRouter,
};
use llama_webgpu::model::ModelConfig;
use llama_webgpu::tokenizer::Tokenizer;

/// xorshift64*: chunk sizes from the input's own seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A chunk-size pattern: single bytes, small odd sizes, medium, powers of two, or anything.
fn sizes(seed: u64, pattern: u64, len: usize) -> impl FnMut() -> usize {
    let mut rng = Rng(seed | 1);
    move || {
        let r = rng.next();
        let n = match pattern % 5 {
            0 => 1,
            1 => 1 + (r % 16) as usize,
            2 => 1 + (r % 4096) as usize,
            3 => 1usize << (r % 17),
            _ => 1 + (r % (len as u64 + 1)) as usize,
        };
        n.max(1)
    }
}

struct Streamed {
    result: Result<GgufHeader, GgufError>,
    /// After a header: the absolute offset of the first byte not yet routed, and the bytes fed
    /// past the header.
    remainder: Option<(u64, Vec<u8>)>,
    /// How many input bytes were fed.
    fed: usize,
}

fn stream(data: &[u8], total_len: Option<u64>, next: &mut dyn FnMut() -> usize) -> Streamed {
    let mut p = HeaderParser::new(total_len);
    let mut at = 0usize;
    loop {
        if at == data.len() {
            let result = p.finish().map(|h| *h);
            let remainder = result.is_ok().then(|| p.take_remainder());
            return Streamed {
                result,
                remainder,
                fed: at,
            };
        }
        let n = next().min(data.len() - at);
        let chunk = &data[at..at + n];
        at += n;
        assert_eq!(p.position(), (at - n) as u64, "position counts fed bytes");
        match p.feed(chunk) {
            Ok(Progress::NeedMore) => {}
            Ok(Progress::Done(h)) => {
                let rem = p.take_remainder();
                return Streamed {
                    result: Ok(*h),
                    remainder: Some(rem),
                    fed: at,
                };
            }
            Err(e) => {
                return Streamed {
                    result: Err(e),
                    remainder: None,
                    fed: at,
                }
            }
        }
    }
}

fn same_header(a: &GgufHeader, b: &GgufHeader, what: &str) {
    assert_eq!(a.version, b.version, "{what}: version");
    assert_eq!(a.alignment, b.alignment, "{what}: alignment");
    assert_eq!(a.data_offset, b.data_offset, "{what}: data offset");
    assert_eq!(a.tensors, b.tensors, "{what}: tensors");
    assert_eq!(a.metadata.len(), b.metadata.len(), "{what}: metadata count");
    for ((ka, va), (kb, vb)) in a.metadata.iter().zip(b.metadata.iter()) {
        assert_eq!(ka, kb, "{what}: metadata order");
        // Debug, not ==, so NaN floats compare equal to themselves.
        assert_eq!(
            format!("{va:?}"),
            format!("{vb:?}"),
            "{what}: value of {ka}"
        );
    }
}

/// Properties of a header accepted for a file of `len` bytes.
fn check_layout(h: &GgufHeader, len: u64) {
    let mut spans: Vec<(u64, u64)> = h
        .tensors
        .iter()
        .map(|t| {
            let r = h.tensor_range(t);
            assert!(
                r.end <= len,
                "tensor {} ends at {} past the file's {len} bytes",
                t.name,
                r.end
            );
            assert_eq!(r.start % h.alignment, h.data_offset % h.alignment);
            (r.start, r.end)
        })
        .filter(|(s, e)| s < e)
        .collect();
    spans.sort_unstable();
    for w in spans.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "accepted overlapping tensors: {:?} and {:?}",
            w[0],
            w[1]
        );
    }
    assert!(h.expected_file_len() <= len);
    assert!(h.data_offset >= h.tensors.len() as u64 * 24);
}

/// Routes `rest` (at absolute offset `from`) and the remaining input in random chunks, as the
/// stream loader does, and checks every tensor arrives whole, in order, once.
fn check_router(h: &GgufHeader, data: &[u8], from: u64, rest: &[u8], fed: usize, seed: u64) {
    assert_eq!(
        from as usize + rest.len(),
        fed,
        "remainder ends where feeding stopped"
    );
    assert_eq!(
        &data[from as usize..fed],
        rest,
        "remainder bytes are the file's"
    );
    let router = TensorRouter::new(h);
    let mut got = vec![0u64; h.tensors.len()];
    let mut done = vec![false; h.tensors.len()];
    let mut deliver = |at: u64, chunk: &[u8]| {
        for piece in router.route(at, chunk) {
            let t = &h.tensors[piece.tensor];
            assert!(
                !done[piece.tensor],
                "{}: bytes after the last piece",
                t.name
            );
            assert_eq!(
                piece.offset, got[piece.tensor],
                "{}: pieces in order",
                t.name
            );
            assert!(!piece.bytes.is_empty(), "{}: empty piece", t.name);
            let start = (h.tensor_range(t).start + piece.offset) as usize;
            assert_eq!(
                piece.bytes,
                &data[start..start + piece.bytes.len()],
                "{}: wrong bytes",
                t.name
            );
            got[piece.tensor] += piece.bytes.len() as u64;
            assert!(
                got[piece.tensor] <= t.size,
                "{}: more bytes than its size",
                t.name
            );
            assert_eq!(
                piece.last,
                got[piece.tensor] == t.size,
                "{}: last flag",
                t.name
            );
            done[piece.tensor] = piece.last;
        }
    };
    deliver(from, rest);
    // Single bytes only for small files: routing is per call, and the header feeding already
    // covers one-byte chunks.
    let pattern = if data.len() <= 4096 {
        seed >> 60
    } else {
        1 + (seed >> 60) % 4
    };
    let mut next = sizes(seed.rotate_left(17), pattern, data.len());
    let mut at = fed;
    while at < data.len() {
        let n = next().min(data.len() - at);
        deliver(at as u64, &data[at..at + n]);
        at += n;
    }
    for (i, t) in h.tensors.iter().enumerate() {
        if t.size > 0 {
            assert!(done[i], "{} never completed", t.name);
        }
    }
}

/// The consumers of parsed metadata must give typed errors, never panic. Building a tokenizer
/// compiles its pre-tokenizer regex, the slowest step by far, so only one input in four does.
fn use_metadata(h: &GgufHeader, data: &[u8], build_tokenizer: bool) {
    let _ = h.split();
    if let Ok(cfg) = ModelConfig::from_gguf(&h.metadata, |n| h.tensor(n)) {
        let _ = cfg.validate_tensors(|n| h.tensor(n));
        let _ = cfg.rope_freq_factors();
        let _ = cfg.rope_freq_scale();
    }
    if !build_tokenizer {
        return;
    }
    if let Ok(tok) = Tokenizer::from_gguf(&h.metadata) {
        let text = String::from_utf8_lossy(&data[..data.len().min(64)]);
        for special in [false, true] {
            if let Ok(ids) = tok.encode(&text, special) {
                assert!(ids.iter().all(|&id| (id as usize) < tok.vocab_size()));
                let _ = tok.decode(&ids, special);
                let _ = tok.detokenize(&ids, special);
            }
        }
        let _ = tok.decode(&[0, 1, u32::MAX, tok.vocab_size() as u32], true);
        let _ = tok.apply_chat_template(&[], true);
    }
}

/// Runs every check on one input; panics on a violation.
pub fn run(input: &[u8]) {
    if input.len() < 8 {
        return;
    }
    let seed = u64::from_le_bytes(input[..8].try_into().unwrap());
    let data = &input[8..];
    let len = data.len() as u64;

    let whole = parse_header(data, None);
    if let Ok(h) = &whole {
        check_layout(h, len);
        use_metadata(h, data, seed & 3 == 0);
    }

    // Sized streams: the same answer for every chunking.
    for pattern in 0..3u64 {
        let mut pattern = (seed >> (pattern * 3)) ^ pattern;
        if pattern % 5 == 0 && data.len() > 16384 {
            pattern += 1; // one-byte chunks, but not for the largest inputs
        }
        let mut next = sizes(seed.wrapping_add(pattern), pattern, data.len());
        let s = stream(data, Some(len), &mut next);
        match (&whole, &s.result) {
            (Ok(a), Ok(b)) => {
                same_header(a, b, "sized stream");
                let (from, rest) = s.remainder.as_ref().expect("remainder after a header");
                check_router(b, data, *from, rest, s.fed, seed ^ pattern);
            }
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "sized stream error"),
            (a, b) => panic!(
                "one-shot {:?} but sized stream {:?}",
                a.as_ref().err(),
                b.as_ref().err()
            ),
        }
    }

    // An unsized stream learns the length only at the end: it cannot check counts against the
    // bytes left, or the data bounds, but must accept what one-shot accepts and reject the rest.
    let mut next = sizes(!seed, seed >> 7, data.len());
    let s = stream(data, None, &mut next);
    match (&whole, &s.result) {
        (Ok(a), Ok(b)) => same_header(a, b, "unsized stream"),
        (Ok(_), Err(e)) => panic!("one-shot accepted, unsized stream failed: {e}"),
        (Err(GgufError::TensorOutOfRange { .. }), Ok(b)) => {
            // The header itself is fine; the loader checks the data against the stream's end.
            assert!(
                b.expected_file_len() > len,
                "out of range, yet every tensor fits"
            );
        }
        (Err(e), Ok(_)) => panic!("unsized stream accepted what one-shot rejects: {e}"),
        (Err(_), Err(_)) => {}
    }
}
