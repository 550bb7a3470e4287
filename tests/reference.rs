//! The CPU reference forward pass against llama.cpp: teacher-forced top-1 agreement on
//! llama.cpp's own greedy continuations (fixtures from scripts/ref-generate.mjs), plus model
//! validation errors.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use llama_webgpu::gguf::{GgufFile, TensorInfo};
use llama_webgpu::model::{ModelConfig, ModelError, ModelShape, RopeScaling};
use llama_webgpu::reference::{
    ops::log_softmax, KvCache, Logits, ReferenceModel, ReferenceOptions,
};
use llama_webgpu::decode::sampling::argmax;

use common::ids;

#[test]
fn teacher_forced_top1_agrees_with_llama_cpp() {
    let fx = common::fixture("smollm2-greedy.json");
    let model = GgufFile::open(common::smollm2()).unwrap();
    let reference = ReferenceModel::from_gguf(&model, ReferenceOptions::default()).unwrap();
    let n_vocab = reference.cfg.shape.n_vocab;
    let (mut agree, mut total, mut lp_diff_sum) = (0usize, 0usize, 0f64);
    for case in fx["cases"].as_array().unwrap() {
        let prompt = ids(&case["prompt_tokens"]);
        let cont = ids(&case["continuation"]);
        let positions = case["positions"].as_array().unwrap();
        let all: Vec<u32> = prompt.iter().chain(&cont).copied().collect();
        let mut cache = reference.new_cache(all.len());
        let logits = reference.forward(&mut cache, &all, Logits::All).unwrap();
        let mut case_agree = 0;
        for (i, &want) in cont.iter().enumerate() {
            let p = prompt.len() - 1 + i;
            let row = &logits[p * n_vocab..(p + 1) * n_vocab];
            if argmax(row) == want {
                case_agree += 1;
            }
            // llama.cpp's logprob of the token it chose, vs ours.
            let theirs = positions[i]["top"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e[0].as_u64() == Some(want as u64))
                .map(|e| e[1].as_f64().unwrap());
            let ours = log_softmax(row)[want as usize] as f64;
            lp_diff_sum += (ours - theirs.expect("chosen token is in llama.cpp's top list")).abs();
        }
        eprintln!(
            "case {:>10}: top-1 agreement {case_agree}/{}",
            case["name"].as_str().unwrap_or("?"),
            cont.len()
        );
        agree += case_agree;
        total += cont.len();
    }
    let rate = agree as f64 / total as f64;
    let mean_diff = lp_diff_sum / total as f64;
    eprintln!(
        "teacher-forced top-1 agreement with llama.cpp CPU: {agree}/{total} = {:.1}%",
        rate * 100.0
    );
    eprintln!("mean |logprob difference| of llama.cpp's chosen token: {mean_diff:.4}");
    assert!(total >= 256, "fixture should hold 4 × 64 positions");
    assert!(rate >= 0.97, "agreement {:.1}% < 97%", rate * 100.0);
    assert!(mean_diff < 0.1, "mean |Δ logprob| {mean_diff} is too large");
}

/// With llama.cpp's own f32 conversion of the same weights and an f32 KV cache, llama.cpp has no
/// quantized-activation noise, so the f32 reference must match it closely at every position.
#[test]
fn matches_llama_cpp_f32_logprobs_tightly() {
    let fx = common::fixture("smollm2-greedy.json");
    let model = GgufFile::open(common::smollm2()).unwrap();
    let reference = ReferenceModel::from_gguf(&model, ReferenceOptions { kv_f16: false }).unwrap();
    let n_vocab = reference.cfg.shape.n_vocab;
    let (mut max_diff, mut n, mut top1) = (0f64, 0usize, 0usize);
    for case in fx["cases"].as_array().unwrap() {
        let prompt = ids(&case["prompt_tokens"]);
        let all: Vec<u32> = prompt
            .iter()
            .chain(&ids(&case["continuation"]))
            .copied()
            .collect();
        let mut cache = reference.new_cache(all.len());
        let logits = reference.forward(&mut cache, &all, Logits::All).unwrap();
        for (i, pos) in case["positions_f32"].as_array().unwrap().iter().enumerate() {
            let p = prompt.len() - 1 + i;
            let row = &logits[p * n_vocab..(p + 1) * n_vocab];
            let lp = log_softmax(row);
            let top = pos["top"].as_array().unwrap();
            if argmax(row) as u64 == top[0][0].as_u64().unwrap() {
                top1 += 1;
            }
            for e in top {
                let d = (lp[e[0].as_u64().unwrap() as usize] as f64 - e[1].as_f64().unwrap()).abs();
                max_diff = max_diff.max(d);
            }
            n += 1;
        }
    }
    eprintln!("vs llama.cpp f32: top-1 {top1}/{n}, max |Δ logprob| over the top-5 {max_diff:.2e}");
    // Fixture values are rounded to 1e-6; what remains is f32 summation order over 30 layers
    // (measured 2.4e-5).
    assert!(max_diff < 1e-4, "max |Δ logprob| {max_diff}");
    assert!(top1 as f64 >= 0.99 * n as f64, "top-1 {top1}/{n}");
}

#[test]
fn incremental_decode_matches_batched_prefill() {
    let model = GgufFile::open(common::smollm2()).unwrap();
    let r = ReferenceModel::from_gguf(&model, ReferenceOptions::default()).unwrap();
    let toks = [1u32, 504, 3458, 282, 4103, 314, 7071, 30, 506, 3820];
    let mut c1 = r.new_cache(16);
    let batched = r.forward(&mut c1, &toks, Logits::All).unwrap();
    let mut c2: KvCache = r.new_cache(16);
    let n = r.cfg.shape.n_vocab;
    let mut last = r.forward(&mut c2, &toks[..4], Logits::Last).unwrap();
    for (i, &t) in toks[4..].iter().enumerate() {
        let p = 3 + i;
        let want = &batched[p * n..(p + 1) * n];
        let max_err = want
            .iter()
            .zip(&last)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max_err < 1e-3, "position {p}: max |Δlogit| {max_err}");
        last = r.forward(&mut c2, &[t], Logits::Last).unwrap();
    }
    assert_eq!(c2.len(), toks.len());
    // The context limit is enforced with a typed error.
    let e = r.forward(&mut c2, &[1; 7], Logits::Last).err().unwrap();
    assert!(e.to_string().contains("context is full"), "{e}");
    let e = r
        .forward(&mut r.new_cache(4), &[u32::MAX], Logits::Last)
        .err()
        .unwrap();
    assert!(e.to_string().contains("outside the vocabulary"), "{e}");
}

#[test]
fn validation_names_missing_and_misshaped_tensors() {
    let model = GgufFile::open(common::smollm2()).unwrap();
    let meta = model.metadata();
    let cfg = ModelConfig::from_gguf(meta, |n| model.tensor(n).map(|t| t.info)).unwrap();
    assert_eq!(
        (
            cfg.shape.n_layer,
            cfg.shape.n_embd,
            cfg.shape.n_head,
            cfg.shape.n_head_kv,
            cfg.shape.n_vocab
        ),
        (30, 576, 9, 3, 49152)
    );
    assert!(cfg.tied_output);
    let hidden = "blk.7.ffn_up.weight";
    let e = cfg
        .validate_tensors(|n| {
            if n == hidden {
                None
            } else {
                model.tensor(n).map(|t| t.info)
            }
        })
        .unwrap_err();
    assert!(
        matches!(e, ModelError::MissingTensor(ref n) if n == hidden),
        "{e}"
    );
    let mut bad: TensorInfo = model.tensor("blk.2.attn_k.weight").unwrap().info.clone();
    bad.dims = vec![576, 100];
    let e = cfg
        .validate_tensors(|n| {
            if n == "blk.2.attn_k.weight" {
                Some(&bad)
            } else {
                model.tensor(n).map(|t| t.info)
            }
        })
        .unwrap_err();
    assert!(
        matches!(e, ModelError::BadShape { ref name, .. } if name == "blk.2.attn_k.weight"),
        "{e}"
    );
    assert!(e.to_string().contains("[576, 192]"), "{e}");
}

#[test]
fn llama3_rope_scaling_factors() {
    // Llama 3.1 8B: theta 500000, factor 8, low 1, high 4, original context 8192, head dim 128.
    let cfg = ModelConfig {
        shape: ModelShape {
            n_vocab: 128256,
            n_embd: 4096,
            n_layer: 32,
            n_head: 32,
            n_head_kv: 8,
            head_dim: 128,
            n_ff: 14336,
            context_length: 131072,
        },
        rms_eps: 1e-5,
        rope_theta: 500000.0,
        rope_dim: 128,
        rope_scaling: RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_context_length: 8192,
        },
        tied_output: false,
        graph: llama_webgpu::model::BlockGraph::llama(128),
        rope_attn_factor: 1.0,
        rope_ctx_orig: 8192,
    };
    let f = cfg.rope_freq_factors().unwrap();
    assert_eq!(f.len(), 64);
    // High frequencies (short wavelengths) are untouched, low ones divided by the full factor,
    // and the band between is a smooth, monotonic blend.
    assert_eq!(f[0], 1.0);
    assert_eq!(f[63], 8.0);
    assert!(f.windows(2).all(|w| w[0] <= w[1]));
    let blended: Vec<_> = f.iter().filter(|&&x| x > 1.0 && x < 8.0).collect();
    assert!(!blended.is_empty() && blended.len() < 20, "{blended:?}");
    // Wavelength of pair i is 2π·θ^(2i/128); pair 40 has ≈ 2π·500000^0.625 ≈ 23k > 8192 → 8.
    assert_eq!(f[40], 8.0);
    // Pair 30: wavelength ≈ 2π·500000^(60/128) ≈ 2983, between 2048 and 8192: blended.
    let wl = 2.0 * std::f32::consts::PI * 500000f32.powf(60.0 / 128.0);
    let smooth = (8192.0 / wl - 1.0) / 3.0;
    assert!((f[30] - 1.0 / ((1.0 - smooth) / 8.0 + smooth)).abs() < 1e-4);
}
