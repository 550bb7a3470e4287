//! GGUF reader: whole-file and incremental parsing agree, split shards load, and hostile files
//! give typed errors (never a panic, a hang or a huge allocation).
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::Raw;

use llama_webgpu::gguf::*;
use llama_webgpu::quant::GgmlType;
use std::time::Instant;

/// Streams `bytes` in chunks of the given sizes and checks that the bytes past the header are
/// handed back intact.
fn parse_chunked(
    bytes: &[u8],
    total_len: Option<u64>,
    sizes: &mut dyn FnMut() -> usize,
) -> Result<GgufHeader, GgufError> {
    let mut p = HeaderParser::new(total_len);
    let mut at = 0;
    loop {
        if at == bytes.len() {
            return p.finish().map(|h| *h);
        }
        let n = sizes().max(1).min(bytes.len() - at);
        let chunk = &bytes[at..at + n];
        at += n;
        if let Progress::Done(h) = p.feed(chunk)? {
            let (from, rest) = p.take_remainder();
            assert_eq!(from, at as u64 - rest.len() as u64);
            assert_eq!(&bytes[from as usize..at], rest.as_slice());
            return Ok(*h);
        }
    }
}

fn small_model() -> Vec<u8> {
    let data: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let mut w = common::every_value_type();
    w.tensor("t.f32", &[4, 8], GgmlType::F32, &data[..128])
        .tensor("t.q4_0", &[64, 2], GgmlType::Q4_0, &data[..72])
        .tensor("t.f16", &[3], GgmlType::F16, &data[..6]);
    w.to_bytes()
}

#[test]
fn every_value_type_round_trips() {
    let bytes = small_model();
    let h = parse_header(&bytes, None).unwrap();
    assert_eq!(h.version, 3);
    assert_eq!(h.alignment, 64);
    assert_eq!(h.data_offset % 64, 0);
    let m = &h.metadata;
    assert_eq!(m.get("a.u8"), Some(&Value::U8(7)));
    assert_eq!(m.get("a.i8"), Some(&Value::I8(-7)));
    assert_eq!(m.get("a.u16"), Some(&Value::U16(65535)));
    assert_eq!(m.get("a.i16"), Some(&Value::I16(-300)));
    assert_eq!(m.get("a.i32"), Some(&Value::I32(-1)));
    assert_eq!(m.get("a.bool"), Some(&Value::Bool(true)));
    assert_eq!(m.str("a.str").unwrap(), "héllo");
    assert_eq!(m.u64("a.u64").unwrap(), u64::MAX);
    assert_eq!(m.get("a.i64"), Some(&Value::I64(i64::MIN)));
    assert_eq!(m.f32("a.f64").unwrap(), -2.25);
    assert_eq!(m.str_array("a.strs").unwrap(), vec!["a", "bb", ""]);
    let nested = m.get("a.nested").unwrap().as_array().unwrap();
    assert_eq!(
        nested[0],
        Value::Array(ValueType::I32, vec![Value::I32(1), Value::I32(2)])
    );
    assert!(matches!(
        m.u64("a.i32"),
        Err(MetadataError::WrongType { .. })
    ));
    assert!(matches!(m.str("nope"), Err(MetadataError::Missing(_))));
    let t = h.tensor("t.q4_0").unwrap();
    assert_eq!(
        (t.ggml_type, t.size, t.n_elements()),
        (GgmlType::Q4_0, 72, 128)
    );
    assert_eq!(
        h.tensor_range(h.tensor("t.f16").unwrap()).end,
        h.expected_file_len()
    );
    assert_eq!(h.expected_file_len(), bytes.len() as u64 - 58); // last tensor's padding
}

#[test]
fn version_2_files_parse_like_version_3() {
    let mut bytes = small_model();
    let v3 = parse_header(&bytes, None).unwrap();
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    let v2 = parse_header(&bytes, None).unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.tensors, v3.tensors);
    assert_eq!(v2.metadata.len(), v3.metadata.len());
}

#[test]
fn incremental_parse_matches_whole_parse_for_any_chunking() {
    let bytes = std::fs::read(common::smollm2()).unwrap();
    let whole = parse_header(&bytes, None).unwrap();
    // A deterministic spread of chunk sizes: single bytes, odd sizes, large reads.
    let mut seed = 0x1234_5678u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for pattern in 0..6 {
        let mut next: Box<dyn FnMut() -> usize> = match pattern {
            0 => Box::new(|| 1),
            1 => Box::new(|| 7),
            2 => Box::new(|| 4096),
            3 => Box::new(|| 1 << 20),
            _ => Box::new(|| (rnd() % 70_000) as usize),
        };
        let t = Instant::now();
        // Single-byte feeding of a 1.8 MB header is the worst case for re-parsing.
        let h = parse_chunked(&bytes, Some(bytes.len() as u64), &mut *next);
        let h = match h {
            Ok(h) => h,
            Err(e) => panic!("pattern {pattern}: {e}"),
        };
        assert_eq!(h.data_offset, whole.data_offset);
        assert_eq!(h.tensors, whole.tensors);
        assert_eq!(h.metadata.len(), whole.metadata.len());
        for (k, v) in whole.metadata.iter() {
            assert_eq!(h.metadata.get(k), Some(v), "key {k}");
        }
        eprintln!("chunk pattern {pattern}: {:?}", t.elapsed());
    }
}

#[test]
fn router_reassembles_every_tensor_from_a_stream() {
    let path = common::smollm2();
    let bytes = std::fs::read(&path).unwrap();
    let model = GgufFile::open(&path).unwrap();
    let h = model.header();
    let router = TensorRouter::new(h);
    let mut got: Vec<Vec<u8>> = vec![Vec::new(); h.tensors.len()];
    let mut done = vec![false; h.tensors.len()];
    let mut at = 0usize;
    for (i, chunk) in bytes.chunks(65_537).enumerate() {
        let _ = i;
        for piece in router.route(at as u64, chunk) {
            assert_eq!(
                piece.offset as usize,
                got[piece.tensor].len(),
                "pieces arrive in order"
            );
            got[piece.tensor].extend_from_slice(piece.bytes);
            if piece.last {
                done[piece.tensor] = true;
            }
        }
        at += chunk.len();
    }
    assert!(done.iter().all(|&d| d));
    for (t, data) in h.tensors.iter().zip(&got) {
        assert_eq!(
            data.as_slice(),
            model.tensor(&t.name).unwrap().data,
            "{}",
            t.name
        );
    }
}

#[test]
fn split_model_loads_from_first_shard_and_errors_name_the_problem() {
    let src = common::smollm2();
    let model = GgufFile::open(&src).unwrap();
    let dir = std::env::temp_dir().join(format!("llama-webgpu-split-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prefix = dir.join("smol").display().to_string();
    let shards = split_into_shards(
        model.header(),
        |n| model.tensor(n).unwrap().data,
        &prefix,
        40 << 20,
    );
    assert!(
        shards.len() >= 3,
        "expected at least 3 shards, got {}",
        shards.len()
    );
    for (name, bytes) in &shards {
        std::fs::write(name, bytes).unwrap();
    }
    let split = GgufFile::open(&shards[0].0).unwrap();
    assert_eq!(split.shard_paths().len(), shards.len());
    assert_eq!(split.tensors().count(), model.tensors().count());
    for t in model.tensors() {
        assert_eq!(split.tensor(&t.info.name).unwrap().data, t.data);
    }
    assert_eq!(
        split.metadata().str("general.architecture").unwrap(),
        "llama"
    );

    // Opening a later shard directly is refused.
    let e = GgufFile::open(&shards[1].0).err().unwrap();
    assert!(e.to_string().contains("open the first shard"), "{e}");
    // A missing sibling is named.
    std::fs::rename(&shards[2].0, dir.join("moved.gguf")).unwrap();
    let e = GgufFile::open(&shards[0].0).err().unwrap();
    assert!(
        matches!(e, GgufError::Split(_)) && e.to_string().contains(&shards[2].0),
        "{e}"
    );
    // A shard from another set (wrong split.no) is rejected.
    std::fs::copy(&shards[1].0, &shards[2].0).unwrap();
    let e = GgufFile::open(&shards[0].0).err().unwrap();
    assert!(e.to_string().contains("should be shard 3"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- hostile files ------------------------------------------------------------------------------

/// Parses hostile bytes both whole and streamed (without a known length), checking the time
/// bound, and returns the whole-file error.
fn must_fail(bytes: &[u8]) -> GgufError {
    let t = Instant::now();
    let e = parse_header(bytes, None).expect_err("hostile input parsed");
    let streamed = parse_chunked(bytes, Some(bytes.len() as u64), &mut || 3);
    assert!(streamed.is_err(), "streamed parse accepted hostile input");
    // Without a known length, data bounds can only be checked once the stream ends (the
    // loader does that); everything else must still be caught.
    let no_len = parse_chunked(bytes, None, &mut || 3);
    assert!(
        no_len.is_err() || matches!(e, GgufError::TensorOutOfRange { .. }),
        "unsized stream accepted: {e}"
    );
    assert!(t.elapsed().as_secs_f32() < 1.0, "took {:?}", t.elapsed());
    e
}

#[test]
fn hostile_counts_and_lengths() {
    let e = must_fail(&Raw::new(1 << 60, 0).bytes());
    assert!(
        matches!(e, GgufError::CountTooLarge { ref what, .. } if what == "tensor count"),
        "{e}"
    );
    let e = must_fail(&Raw::new(0, 1 << 60).bytes());
    assert!(
        matches!(e, GgufError::CountTooLarge { ref what, .. } if what == "metadata count"),
        "{e}"
    );

    // A string longer than the file.
    let e = must_fail(&Raw::new(0, 1).u64(1 << 40).bytes());
    assert!(matches!(e, GgufError::CountTooLarge { .. }), "{e}");

    // An array claiming 2^60 elements.
    let e = must_fail(&Raw::new(0, 1).key("arr", 9).u32(4).u64(1 << 60).bytes());
    assert!(
        matches!(e, GgufError::CountTooLarge { ref what, .. } if what == "arr"),
        "{e}"
    );

    // Unknown value type, invalid bool, bad UTF-8, duplicate key.
    assert!(matches!(
        must_fail(&Raw::new(0, 1).key("k", 99).bytes()),
        GgufError::InvalidValueType { type_id: 99, .. }
    ));
    let b = Raw::new(0, 1).key("k", 7).raw(&[2]).bytes();
    assert!(matches!(must_fail(&b), GgufError::InvalidValue { .. }));
    let b = Raw::new(0, 1).u64(2).raw(&[0xff, 0xfe]).raw(&[0; 16]).bytes();
    assert!(matches!(must_fail(&b), GgufError::InvalidUtf8 { .. }));
    let b = Raw::new(0, 2).key("dup", 4).u32(1).key("dup", 4).u32(1).bytes();
    assert!(matches!(must_fail(&b), GgufError::DuplicateKey(ref k) if k == "dup"));
}

#[test]
fn hostile_magic_version_alignment() {
    assert!(matches!(
        must_fail(b"GGML\x03\0\0\0"),
        GgufError::BadMagic(_)
    ));
    let mut b = Raw::new(0, 0).bytes();
    b[4..8].copy_from_slice(&1u32.to_le_bytes());
    assert!(matches!(must_fail(&b), GgufError::UnsupportedVersion(1)));
    b[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert!(matches!(must_fail(&b), GgufError::BigEndian));
    let b = Raw::new(0, 1).key("general.alignment", 4).u32(48).bytes();
    assert!(matches!(must_fail(&b), GgufError::BadAlignment(_)));
}

#[test]
fn hostile_tensor_infos() {
    // One tensor info, then 64 data bytes.
    let one = |dims: &[u64], ty: u32, offset: u64| Raw::new(1, 0).tensor("w", dims, ty, offset).data(64);
    let e = must_fail(&one(&[32, 1], 1234, 0));
    assert!(
        matches!(e, GgufError::UnknownTensorType { ref tensor, type_id: 1234 } if tensor == "w"),
        "{e}"
    );
    let e = must_fail(&one(&[1 << 32, 1 << 32, 1 << 32], 0, 0));
    assert!(
        matches!(e, GgufError::BadTensor { ref detail, .. } if detail.contains("overflow")),
        "{e}"
    );
    let e = must_fail(&one(&[1, 1, 1, 1, 1], 0, 0));
    assert!(matches!(e, GgufError::BadTensor { .. }), "{e}");
    let e = must_fail(&one(&[33], 2, 0));
    assert!(
        matches!(e, GgufError::BadTensor { ref detail, .. } if detail.contains("block size")),
        "{e}"
    );
    let e = must_fail(&one(&[64], 0, 0));
    assert!(
        matches!(e, GgufError::TensorOutOfRange { ref tensor, .. } if tensor == "w"),
        "{e}"
    );
    let e = must_fail(&one(&[8], 0, u64::MAX - 7));
    assert!(
        matches!(
            e,
            GgufError::TensorMisaligned { .. } | GgufError::TensorOutOfRange { .. }
        ),
        "{e}"
    );
    let e = must_fail(&one(&[8], 0, 4));
    assert!(matches!(e, GgufError::TensorMisaligned { .. }), "{e}");
    let two = |a: (&str, &[u64], u64), b: (&str, &[u64], u64)| {
        Raw::new(2, 0).tensor(a.0, a.1, 0, a.2).tensor(b.0, b.1, 0, b.2).data(128)
    };
    let e = must_fail(&two(("a", &[16], 0), ("b", &[16], 32)));
    assert!(matches!(e, GgufError::TensorOverlap { .. }), "{e}");
    let e = must_fail(&two(("a", &[8], 0), ("a", &[8], 32)));
    assert!(matches!(e, GgufError::DuplicateTensor(_)), "{e}");
}

#[test]
fn every_truncation_of_a_real_header_is_a_typed_error() {
    let bytes = small_model();
    let h = parse_header(&bytes, None).unwrap();
    for cut in 0..h.data_offset as usize {
        match parse_header(&bytes[..cut], None) {
            Err(
                GgufError::Truncated { .. }
                | GgufError::CountTooLarge { .. }
                | GgufError::TensorOutOfRange { .. },
            ) => {}
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    // Header complete but the data section cut short.
    let e = parse_header(&bytes[..bytes.len() - 100], None).unwrap_err();
    assert!(matches!(e, GgufError::TensorOutOfRange { .. }), "{e}");
    // The same through the native file API, with the error naming the tensor.
    let p = std::env::temp_dir().join(format!("trunc-{}.gguf", std::process::id()));
    std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
    let e = GgufFile::open(&p).err().unwrap();
    assert!(e.to_string().contains("t.f16"), "{e}");
    std::fs::remove_file(p).unwrap();
}

#[test]
fn vocab_only_gguf_has_no_tensors() {
    let h = GgufFile::open(common::model("ggml-vocab-llama-bpe.gguf")).unwrap();
    assert_eq!(h.tensors().count(), 0);
    assert_eq!(
        h.metadata()
            .str_array("tokenizer.ggml.tokens")
            .unwrap()
            .len(),
        128256
    );
}
