//! The streaming loader (what the browser uses): shards pushed in pieces of any size give the
//! same model as loading the memory-mapped file, and bad streams fail with typed errors.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use llama_webgpu::gguf::{split_into_shards, GgufError, GgufFile};
use llama_webgpu::gpu::loader::{load_mapped, StreamLoader};
use llama_webgpu::gpu::{GpuModel, GpuModelError};
use llama_webgpu::gpu::{GpuContext, GpuOptions};
use llama_webgpu::Error;
use std::sync::Arc;

fn ctx(opts: GpuOptions) -> Arc<GpuContext> {
    Arc::new(GpuContext::new_blocking(opts).unwrap())
}

/// Pushes `shards` in chunks of `chunk` bytes.
fn stream(ctx: &Arc<GpuContext>, shards: &[&[u8]], chunk: usize) -> Result<GpuModel, Error> {
    let mut l = StreamLoader::new(ctx.clone());
    l.set_context_size(Some(64));
    for s in shards {
        l.begin_shard(Some(s.len() as u64))?;
        for c in s.chunks(chunk) {
            l.push(c)?;
        }
        l.end_shard()?;
    }
    let p = l.progress();
    let model = l.finish()?;
    assert_eq!(p.tensors_loaded, p.tensors_total);
    Ok(model)
}

const PROMPT: [u32; 6] = [1, 9690, 28, 638, 359, 1576];

fn logits(m: &mut GpuModel) -> Vec<f32> {
    m.reset();
    pollster::block_on(m.forward_last(&PROMPT)).unwrap()
}

#[test]
fn streamed_load_equals_file_load_on_both_paths_and_split() {
    let path = common::smollm2();
    let bytes = std::fs::read(&path).unwrap();
    let file = GgufFile::open(&path).unwrap();
    for opts in [
        GpuOptions::default(),
        common::gpu::options(false, false, Some(16 << 20)),
    ] {
        let ctx = ctx(opts);
        // The whole-tensor upload from the memory map is the reference.
        let mapped = load_mapped(ctx.clone(), file.metadata(), |n| file.tensor(n).map(|t| (t.info, t.data)), 64);
        let want = logits(&mut mapped.unwrap());
        // Odd chunk sizes cut headers, blocks and rows anywhere; 1 MiB + 1 is the fast path.
        for chunk in [7_919, (1 << 20) + 1] {
            let got = logits(&mut stream(&ctx, &[&bytes], chunk).unwrap());
            assert_eq!(got, want, "chunk size {chunk}: streamed weights differ");
        }
        // The same model in llama.cpp's split layout.
        let header = file.header();
        let shards = split_into_shards(header, |n| file.tensor(n).unwrap().data, "m", 30 << 20);
        assert!(shards.len() >= 3, "{} shards", shards.len());
        let parts: Vec<&[u8]> = shards.iter().map(|(_, b)| b.as_slice()).collect();
        let got = logits(&mut stream(&ctx, &parts, 65_537).unwrap());
        assert_eq!(got, want, "split shards");
    }
}

#[test]
fn bad_streams_fail_with_typed_errors() {
    let path = common::smollm2();
    let bytes = std::fs::read(&path).unwrap();
    let file = GgufFile::open(&path).unwrap();
    let ctx = ctx(GpuOptions::default());
    let code = |r: Result<GpuModel, Error>| match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => (e.code(), e.to_string()),
    };

    // Truncated mid-tensor.
    let cut = stream(&ctx, &[&bytes[..bytes.len() - 1000]], 1 << 20);
    // The last tensor, the one cut short, is named.
    assert!(
        matches!(&cut, Err(Error::GpuModel(GpuModelError::Gguf(GgufError::TensorOutOfRange { tensor, .. }))) if tensor == "output_norm.weight"),
        "{:?}",
        cut.as_ref().err()
    );
    let (c, m) = code(cut);
    assert_eq!(c, "BAD_GGUF", "{m}");
    // Truncated inside the header.
    let (c, m) = code(stream(&ctx, &[&bytes[..5000]], 1 << 20));
    assert_eq!(c, "BAD_GGUF", "{m}");
    // Longer than the header says.
    let mut long = bytes.clone();
    long.extend(std::iter::repeat_n(0u8, 4096));
    let (c, m) = code(stream(&ctx, &[&long], 1 << 20));
    assert_eq!(c, "BAD_GGUF", "{m}");
    assert!(m.contains("longer than its header"), "{m}");

    let shards = split_into_shards(file.header(), |n| file.tensor(n).unwrap().data, "m", 30 << 20);
    let parts: Vec<&[u8]> = shards.iter().map(|(_, b)| b.as_slice()).collect();
    // Shards out of order, a shard missing, or starting from the second.
    let (c, m) = code(stream(&ctx, &[parts[0], parts[2], parts[1]], 1 << 20));
    assert_eq!(c, "BAD_SPLIT", "{m}");
    assert!(m.contains("mixed up"), "{m}");
    let (c, m) = code(stream(&ctx, &parts[..parts.len() - 1], 1 << 20));
    assert_eq!(c, "BAD_SPLIT", "{m}");
    let (c, _) = code(stream(&ctx, &parts[1..], 1 << 20));
    assert_eq!(c, "BAD_SPLIT");
    // The first shard twice.
    let (c, m) = code(stream(&ctx, &[parts[0], parts[0]], 1 << 20));
    assert_eq!(c, "BAD_SPLIT", "{m}");
    // A shard of another model in its place: the same architecture and tensor names, another
    // quantization (as when shards of two downloads of one model are mixed up), split into as many
    // shards, so only the tensors inside tell them apart.
    let other = GgufFile::open(common::model("SmolLM2-135M-Instruct.Q8_0.gguf")).unwrap();
    let n = parts.len();
    let total: u64 = other.header().tensors.iter().map(|t| t.size).sum();
    let foreign = (0..100)
        .map(|pct| split_into_shards(other.header(), |n| other.tensor(n).unwrap().data, "m", total * (100 + pct) / (100 * n as u64)))
        .find(|f| f.len() == n)
        .expect("a shard size that splits the other model into as many shards");
    for i in 1..n {
        let mut mixed = parts.clone();
        mixed[i] = foreign[i].1.as_slice();
        let (c, m) = code(stream(&ctx, &mixed, 1 << 20));
        assert_eq!(c, "BAD_SPLIT", "another model's shard {}: {m}", i + 1);
    }

    // An architecture we do not run fails at the header, before any tensor is allocated.
    let needle = b"llama";
    let i = bytes.windows(5).position(|w| w == needle).unwrap();
    let mut other = bytes[..i + 5].to_vec();
    other[i..i + 5].copy_from_slice(b"gpt-2"[..5].as_ref());
    other.extend_from_slice(&bytes[i + 5..]);
    let mut l = StreamLoader::new(ctx.clone());
    l.begin_shard(None).unwrap();
    let e: Error = l.push(&other[..8 << 20]).unwrap_err().into();
    assert_eq!(e.code(), "UNSUPPORTED_ARCHITECTURE", "{e}");
}
