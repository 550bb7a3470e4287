//! The whole forward pass on the GPU (lavapipe) against the CPU reference and llama.cpp, on
//! both kernel paths: f16 + subgroups (native) and f32 without subgroups (what browsers
//! without those features get), and with a small binding limit that forces split weights.
#![cfg(not(target_arch = "wasm32"))]

mod common;
#[path = "common/draw.rs"]
mod draw;

use llama_webgpu::gguf::GgufFile;
use llama_webgpu::gpu::loader::load_gguf;
use llama_webgpu::gpu::GpuModel;
use llama_webgpu::gpu::{GpuContext, GpuOptions};
use llama_webgpu::reference::{ops::log_softmax, Logits, ReferenceModel, ReferenceOptions};
use llama_webgpu::decode::sampling::argmax;
use std::sync::{Arc, RwLock};

/// Resident memory is the whole process's: the memory test measures it with no other test of
/// this file running (it takes the lock to write; the others hold it to read).
static MEASURING_RSS: RwLock<()> = RwLock::new(());

use common::ids;

fn paths() -> Vec<(&'static str, GpuOptions)> {
    vec![
        ("f16+subgroups", GpuOptions::default()),
        (
            "f32, no subgroups, 16 MiB bindings",
            common::gpu::options(false, false, Some(16 << 20)),
        ),
    ]
}

/// Teacher-forced top-1 agreement with llama.cpp (same bar as the CPU reference), and logits
/// close to the CPU reference with the same KV-cache precision.
#[test]
fn gpu_forward_matches_reference_and_llama_cpp() {
    let _shared = MEASURING_RSS.read().unwrap_or_else(|e| e.into_inner());
    let fx = common::fixture("smollm2-greedy.json");
    let file = GgufFile::open(common::smollm2()).unwrap();
    for (label, opts) in paths() {
        let ctx = Arc::new(common::gpu::new_context(opts));
        let kv_f16 = ctx.features.f16;
        let reference = ReferenceModel::from_gguf(&file, ReferenceOptions { kv_f16 }).unwrap();
        let mut gpu = load_gguf(ctx.clone(), &file, 256).unwrap();
        let nv = reference.cfg.shape.n_vocab;
        let (mut agree, mut total, mut max_err, mut worst) = (0, 0, 0f32, (0, 0));
        for case in fx["cases"].as_array().unwrap() {
            let prompt = ids(&case["prompt_tokens"]);
            let cont = ids(&case["continuation"]);
            let all: Vec<u32> = prompt.iter().chain(&cont).copied().collect();
            gpu.reset();
            let g = pollster::block_on(gpu.forward_all(&all)).unwrap();
            let mut cache = reference.new_cache(all.len());
            let r = reference.forward(&mut cache, &all, Logits::All).unwrap();
            for (p, (gr, rr)) in g.chunks_exact(nv).zip(r.chunks_exact(nv)).enumerate() {
                // Compare log-probabilities (logits may shift by a constant without effect) over
                // the whole vocabulary, so a wrong block of rows of a split output matrix fails
                // even where it holds no likely token.
                let (gl, rl) = (log_softmax(gr), log_softmax(rr));
                for (t, (a, b)) in gl.iter().zip(&rl).enumerate() {
                    let d = (a - b).abs();
                    assert!(d.is_finite(), "{label}: position {p}, token {t}: {a} vs {b}");
                    if d > max_err {
                        max_err = d;
                        worst = (p, t);
                    }
                }
                if p + 1 >= prompt.len() && p + 1 < all.len() {
                    total += 1;
                    if argmax(gr) == all[p + 1] {
                        agree += 1;
                    }
                }
            }
        }
        let rate = agree as f64 / total as f64;
        eprintln!("{label} on {}: top-1 agreement with llama.cpp {agree}/{total} = {:.1}%, max |Δ logprob| vs CPU reference over the whole vocabulary {max_err:.2e} (position {}, token {})", ctx.adapter_info.name, rate * 100.0, worst.0, worst.1);
        assert!(rate >= 0.97, "{label}: {:.1}%", rate * 100.0);
        // Both sides compute in f32 and round the KV cache alike, so the difference is summation
        // order. With an f32 cache that stays ~1e-4 (measured 1.1e-4 over the whole vocabulary,
        // 2026-12-06): the bound is 1e-3. With an f16 cache a last-bit difference before rounding
        // becomes an f16 ulp (1e-3 relative) in a key or value, which 30 layers grow to ~1e-2
        // (measured 1.8e-2): the bound is 5e-2. A wrong block of output rows moves whole nats.
        let bound = if kv_f16 { 5e-2 } else { 1e-3 };
        assert!(max_err < bound, "{label}: max |Δ logprob| {max_err} over the vocabulary (bound {bound})");
    }
}

/// Decoding token by token (argmax on the GPU, one submission per token) gives the same tokens
/// as the CPU reference's greedy decode.
#[test]
fn gpu_greedy_decode_matches_reference() {
    let _shared = MEASURING_RSS.read().unwrap_or_else(|e| e.into_inner());
    let file = GgufFile::open(common::smollm2()).unwrap();
    let prompt = [
        1u32, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 30, 2, 198, 1, 4093, 198, 1780, 314,
        260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198,
    ];
    for (label, opts) in paths() {
        let ctx = Arc::new(common::gpu::new_context(opts));
        let reference = ReferenceModel::from_gguf(
            &file,
            ReferenceOptions {
                kv_f16: ctx.features.f16,
            },
        )
        .unwrap();
        let mut gpu = load_gguf(ctx, &file, 64).unwrap();
        let mut cache = reference.new_cache(64);
        let mut want = argmax(
            &reference
                .forward(&mut cache, &prompt, Logits::Last)
                .unwrap(),
        );
        let mut got = pollster::block_on(gpu.forward_argmax(&prompt)).unwrap();
        let t = std::time::Instant::now();
        for i in 0..16 {
            assert_eq!(got, want, "{label}: token {i}");
            want = argmax(
                &reference
                    .forward(&mut cache, &[want], Logits::Last)
                    .unwrap(),
            );
            got = pollster::block_on(gpu.forward_argmax(&[got])).unwrap();
        }
        eprintln!("{label}: 16 GPU decode steps in {:?}", t.elapsed());
        assert_eq!(gpu.position(), prompt.len() + 16);
        // Readback buffers come from a pool: decoding allocates none after the first step.
        assert_eq!(gpu.ctx.staging_buffers_created(), 1, "{label}");
        let e = pollster::block_on(gpu.forward_argmax(&[1; 40]))
            .err()
            .unwrap();
        assert!(e.to_string().contains("context is full"), "{e}");
    }
}

/// Greedy steps queued on the GPU before the last token is read back (each feeding the last
/// step's argmax on the device) give the tokens of one-step-at-a-time decoding, on both paths.
/// A queued step that the next call does not take (another token, a truncation, a non-greedy
/// step, a drop) is given back and its position reused, and the context bounds it as any step.
#[test]
fn chained_greedy_steps_equal_one_at_a_time() {
    let _shared = MEASURING_RSS.read().unwrap_or_else(|e| e.into_inner());
    let file = GgufFile::open(common::smollm2()).unwrap();
    let prompt = [1u32, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 30, 2, 198, 1, 4093, 198, 1780, 314];
    let step = |gpu: &mut GpuModel, tokens: &[u32], queue: bool| pollster::block_on(gpu.greedy_step(tokens, queue));
    for (label, mut opts) in paths() {
        // lavapipe is a CPU device, which does not chain steps unless told to.
        opts.tuning.chain_steps = Some(true);
        let ctx = Arc::new(common::gpu::new_context(opts));
        let mut gpu = load_gguf(ctx, &file, 64).unwrap();
        assert!(gpu.ctx.chain_steps());
        let first = pollster::block_on(gpu.forward_argmax(&prompt)).unwrap();
        // One step at a time: each token read back before the next step is recorded.
        let mut serial = vec![first];
        for _ in 0..12 {
            let t = pollster::block_on(gpu.forward_argmax(&[*serial.last().unwrap()])).unwrap();
            serial.push(t);
        }
        let serial = serial.split_off(1);
        assert_eq!(gpu.position(), prompt.len() + 12);
        gpu.reset();
        assert_eq!(pollster::block_on(gpu.forward_argmax(&prompt)).unwrap(), first);
        let created = gpu.ctx.staging_buffers_created();
        let chained = pollster::block_on(gpu.decode_greedy(first, 12)).unwrap();
        assert_eq!(chained, serial, "{label}");
        assert_eq!(gpu.position(), prompt.len() + 12);
        // Two steps in flight (so the steps were chained), never more: one more readback
        // buffer than one at a time.
        assert_eq!(gpu.ctx.staging_buffers_created(), created + 1, "{label}");

        // The prompt's step queues the first decode step; the queued step is not a position yet.
        gpu.reset();
        assert_eq!(step(&mut gpu, &prompt, true).unwrap(), first);
        assert_eq!(gpu.position(), prompt.len());
        // Given back (a stop token), then the same step run afresh.
        gpu.drop_queued();
        assert_eq!(gpu.position(), prompt.len());
        assert_eq!(step(&mut gpu, &[first], true).unwrap(), serial[0], "{label}: after a drop");
        assert_eq!(step(&mut gpu, &[serial[0]], false).unwrap(), serial[1], "{label}: the queued step taken");
        // Not taken: another token (the step on it computes as on a fresh cache), a truncation,
        // a top-k step.
        let other = serial[1] + 1;
        let want_other = {
            gpu.reset();
            pollster::block_on(gpu.forward_argmax(&prompt)).unwrap();
            pollster::block_on(gpu.forward_argmax(&[other])).unwrap()
        };
        gpu.reset();
        step(&mut gpu, &prompt, true).unwrap();
        assert_eq!(step(&mut gpu, &[other], false).unwrap(), want_other, "{label}: another token");
        gpu.reset();
        step(&mut gpu, &prompt, true).unwrap();
        gpu.truncate(prompt.len());
        assert_eq!(gpu.position(), prompt.len());
        assert_eq!(step(&mut gpu, &[first], false).unwrap(), serial[0], "{label}: after a truncation");
        gpu.reset();
        step(&mut gpu, &prompt, true).unwrap();
        let top = pollster::block_on(gpu.forward_top_k(&[first], 4)).unwrap();
        assert_eq!(top[0].0, serial[0], "{label}: a top-k step");
        assert_eq!(gpu.position(), prompt.len() + 1);

        // The context bounds a queued step as any other, with a typed error.
        gpu.reset();
        let long: Vec<u32> = (0..62).map(|i| 100 + i).collect();
        let t = step(&mut gpu, &long, true).unwrap();
        let t = step(&mut gpu, &[t], true).unwrap();
        let e = step(&mut gpu, &[t], true).err().unwrap();
        assert_eq!(e.code(), "CONTEXT_FULL", "{e}");
        let e = step(&mut gpu, &[], false).err().unwrap();
        assert_eq!(e.code(), "INVALID_ARGUMENT", "{e}");
    }
}

/// Sampled steps chain as greedy ones do: each draws its token on the device and the step on
/// that token, with the next random number, is queued before the token is read back. Chained,
/// they give the tokens of one step at a time; a queued step is taken only by a call with its
/// token and its draw (another draw or a greedy step gives it back), and a draw the kernel
/// cannot make is a typed error that leaves the position as it was.
#[test]
fn chained_sampled_steps_equal_one_at_a_time() {
    let _shared = MEASURING_RSS.read().unwrap_or_else(|e| e.into_inner());
    use llama_webgpu::decode::sampling::Draw;
    use llama_webgpu::gpu::ops::DrawParams;
    let file = GgufFile::open(common::smollm2()).unwrap();
    let prompt = [1u32, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 30, 2, 198, 1, 4093, 198, 1780, 314];
    let mut opts = GpuOptions::default();
    opts.tuning.chain_steps = Some(true);
    let mut gpu = load_gguf(Arc::new(common::gpu::new_context(opts)), &file, 64).unwrap();
    let mut rng = llama_webgpu::decode::sampling::Rng::new(9);
    // A high temperature, so the draws leave the argmax often.
    let draws: Vec<DrawParams> = (0..14).map(|_| DrawParams::new(40, 1.5, 0.98, 0.0, rng.next_f64())).collect();
    let step = |gpu: &mut GpuModel, tokens: &[u32], i: usize, queue: bool| {
        pollster::block_on(gpu.sample_step(tokens, draws[i], queue.then(|| draws[i + 1])))
    };
    let mut serial = vec![step(&mut gpu, &prompt, 0, false).unwrap()];
    for i in 1..13 {
        let t = step(&mut gpu, &[serial[i - 1]], i, false).unwrap();
        serial.push(t);
    }
    gpu.reset();
    // One step at a time needed one readback buffer.
    let created = gpu.ctx.staging_buffers_created();
    let mut chained = vec![step(&mut gpu, &prompt, 0, true).unwrap()];
    for i in 1..13 {
        let t = step(&mut gpu, &[chained[i - 1]], i, i < 12).unwrap();
        chained.push(t);
    }
    assert_eq!(chained, serial);
    assert_eq!(gpu.position(), prompt.len() + 12);
    assert_eq!(gpu.ctx.staging_buffers_created(), created + 1, "two steps in flight");
    gpu.reset();
    let greedy: Vec<u32> = std::iter::once(pollster::block_on(gpu.forward_argmax(&prompt)).unwrap())
        .chain(pollster::block_on(gpu.decode_greedy(serial[0], 3)).unwrap())
        .collect();
    assert_ne!(serial[..4], greedy[..], "the draws never left the argmax: {serial:?}");

    // Not taken: the same token with another draw, or a greedy step; each computes afresh.
    let other = DrawParams::new(40, 1.5, 0.98, 0.0, 0.999);
    let want_other = {
        gpu.reset();
        step(&mut gpu, &prompt, 0, false).unwrap();
        pollster::block_on(gpu.sample_step(&[serial[0]], other, None)).unwrap()
    };
    gpu.reset();
    step(&mut gpu, &prompt, 0, true).unwrap();
    assert_eq!(pollster::block_on(gpu.sample_step(&[serial[0]], other, None)).unwrap(), want_other);
    assert_eq!(gpu.position(), prompt.len() + 1);
    gpu.reset();
    step(&mut gpu, &prompt, 0, true).unwrap();
    assert_eq!(pollster::block_on(gpu.greedy_step(&[serial[0]], false)).unwrap(), greedy[1]);

    // A draw the kernel cannot make: a typed error, nothing queued or counted.
    gpu.reset();
    step(&mut gpu, &prompt, 0, true).unwrap();
    let e = pollster::block_on(gpu.sample_step(&[serial[0]], DrawParams::new(8, 0.0, 0.9, 0.0, 0.5), None)).unwrap_err();
    assert!(e.to_string().contains("draw"), "{e}");
    assert_eq!(gpu.position(), prompt.len());
    assert_eq!(step(&mut gpu, &[serial[0]], 1, false).unwrap(), serial[1], "the queued step after a refused draw");

    // A vocabulary smaller than the top-k list (16 tokens): top-k 40 draws from all of them, as
    // the host's draw does from the candidates it gets.
    let path = std::env::temp_dir().join(format!("llama-webgpu-draw-tiny-{}.gguf", std::process::id()));
    std::fs::write(&path, common::tiny::Tiny::new().bytes()).unwrap();
    let tiny = GgufFile::open(&path).unwrap();
    let mut small = load_gguf(gpu.ctx.clone(), &tiny, 16).unwrap();
    let top = pollster::block_on(small.forward_top_k(&[1, 2, 3], 64)).unwrap();
    assert_eq!(top.len(), common::tiny::N_VOCAB as usize);
    let mut checked = 0;
    for _ in 0..16 {
        let host = Draw { k: 40, temperature: 1.0, top_p: 1.0, min_p: 0.0, r: rng.next_f64() };
        small.reset();
        let got = pollster::block_on(small.sample_step(&[1, 2, 3], DrawParams::new(40, 1.0, 1.0, 0.0, host.r), None)).unwrap();
        assert!(got < 16, "{got}");
        if draw::margin(&top, &Draw { k: top.len(), ..host }) >= draw::NEAR {
            assert_eq!(got, host.pick(&top), "{host:?}");
            checked += 1;
        }
    }
    assert!(checked >= 12, "{checked} of 16 draws away from a boundary");
    std::fs::remove_file(&path).ok();
}

/// Seeded sampling through the GPU's top-k (64 candidates read back) gives the same tokens as
/// sampling the CPU reference's full logits, on the f32 path whose logits agree to ~1e-5.
#[test]
fn gpu_top_k_sampling_matches_cpu_sampling() {
    let _shared = MEASURING_RSS.read().unwrap_or_else(|e| e.into_inner());
    use llama_webgpu::decode::{generate, CpuBackend, GenerateParams};
    use llama_webgpu::decode::GpuBackend;
    use llama_webgpu::decode::sampling::SamplerConfig;
    use llama_webgpu::tokenizer::Tokenizer;
    let file = GgufFile::open(common::smollm2()).unwrap();
    let tok = Tokenizer::from_gguf(file.metadata()).unwrap();
    let ctx = Arc::new(common::gpu::context(false, false, None));
    let reference = ReferenceModel::from_gguf(&file, ReferenceOptions { kv_f16: false }).unwrap();
    let prompt = tok.encode("Once upon a time, there was a", false).unwrap();
    let params = GenerateParams {
        max_tokens: 24,
        sampler: SamplerConfig { temperature: 0.8, top_k: 40, top_p: 0.95, min_p: 0.05, seed: 1234, ..Default::default() },
        stop_tokens: tok.stop_ids(),
        stop_strings: vec![],
        logprobs: None,
    };
    let mut gpu = GpuBackend(load_gguf(ctx, &file, 64).unwrap());
    let g = generate(&mut gpu, &tok, &prompt, &params, |_| true).unwrap();
    let mut cpu = CpuBackend::new(&reference, 64);
    let c = generate(&mut cpu, &tok, &prompt, &params, |_| true).unwrap();
    eprintln!("sampled: {:?}", g.text);
    assert_eq!(g.tokens, c.tokens);
    assert!(g.tokens.len() >= 8);
}

/// Short multi-token steps (a follow-up turn, grammar-forced tokens) on the default path: each
/// once grew lavapipe's resident memory by ~124 MiB, while its subgroup broadcasts sat under a
/// branch in the multi-token matvec. Several steps must leave the memory flat.
#[test]
fn multi_token_steps_keep_memory_flat() {
    let _alone = MEASURING_RSS.write().unwrap_or_else(|e| e.into_inner());
    let file = GgufFile::open(common::smollm2()).unwrap();
    let ctx = Arc::new(GpuContext::new_blocking(GpuOptions::default()).unwrap());
    let mut m = load_gguf(ctx, &file, 256).unwrap();
    let run = |m: &mut GpuModel, n: u32| {
        m.reset();
        let toks: Vec<u32> = (0..n).map(|i| 1000 + 7 * i).collect();
        pollster::block_on(m.forward_argmax(&toks)).unwrap();
    };
    // Warm up every shape once: pipelines compiled, allocators grown.
    for n in [1, 2, 3, 12] {
        run(&mut m, n);
    }
    let before = common::proc_status_bytes("VmRSS") >> 20;
    for _ in 0..3 {
        for n in [2, 3, 12] {
            run(&mut m, n);
        }
    }
    let after = common::proc_status_bytes("VmRSS") >> 20;
    eprintln!("resident memory across 9 multi-token steps: {before} → {after} MiB");
    assert!(after < before + 64, "resident memory grew from {before} to {after} MiB over 9 multi-token steps");
}
