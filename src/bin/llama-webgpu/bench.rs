//! `bench`: prefill and decode speed, the weight bandwidth of decode, the cost of structured
//! output, and with `--profile` each kernel's share of a decode step.

use crate::args::{Backend, DeviceArgs};
use crate::info::gpu_json;
use crate::run::make_backend;
use llama_webgpu::decode::constrain::{ConstraintEnv, ConstraintSpec};
use llama_webgpu::decode::sampling::{Sampler, SamplerConfig};
use llama_webgpu::decode::{generate_constrained, GenerateParams, LogitsBackend};
use llama_webgpu::gguf::GgufFile;
use llama_webgpu::gpu;
use llama_webgpu::gpu::loader::load_gguf;
use llama_webgpu::model::ModelConfig;
use llama_webgpu::tokenizer::Tokenizer;
use llama_webgpu::{Error, Result};
use serde_json::json;
use std::path::PathBuf;

/// `n` sampled decode steps from `first` as chat runs them: each draws its token from the step's
/// top-k with the next seeded number, the step after it queued ahead where the device chains
/// steps.
fn decode_sampled(backend: &mut dyn LogitsBackend, first: u32, n: usize) -> Result<()> {
    let cfg = SamplerConfig { temperature: 0.8, top_k: 40, top_p: 0.95, min_p: 0.05, seed: 0, ..Default::default() };
    let mut sampler = Sampler::new(cfg).map_err(llama_webgpu::decode::DecodeError::from)?;
    let mut t = first;
    for i in 0..n {
        let (now, next) = sampler.draws().expect("top-k 40 with no penalties is drawn from the top candidates");
        t = backend.sample_step(&[t], now, (i + 1 < n).then_some(next))?;
        sampler.take_draw();
    }
    backend.drop_queued();
    Ok(())
}

pub(crate) fn bench(
    path: &PathBuf,
    prompt_len: usize,
    n: usize,
    as_json: bool,
    profile: bool,
    sample: bool,
    device: &DeviceArgs,
) -> Result<()> {
    let model = GgufFile::open(path)?;
    let shape = ModelConfig::from_gguf(model.metadata(), |n| model.tensor(n).map(|t| t.info))?.shape;
    let n_vocab = shape.n_vocab as u32;
    let prompt = gpu::bench::prompt(prompt_len, n_vocab);
    let t_load = web_time::Instant::now();
    let mut backend = make_backend(&model, prompt_len + n + 1, device)?;
    let load_s = t_load.elapsed().as_secs_f64();
    let t0 = web_time::Instant::now();
    let first = backend.forward_argmax(&prompt)?;
    let prefill_s = t0.elapsed().as_secs_f64();
    let t1 = web_time::Instant::now();
    if sample {
        decode_sampled(backend.as_mut(), first, n)?;
    } else {
        backend.decode_greedy(first, n)?;
    }
    let decode_s = t1.elapsed().as_secs_f64();
    // Each dispatch costs a fixed validation and barrier in a browser, whatever its size.
    let dispatches = backend.last_dispatches();
    let mask = mask_overhead(&model, backend.as_mut(), &prompt, n)?;
    // Bytes a decode step must read: every weight except the embedding table, which is only
    // gathered from (unless it doubles as the output projection).
    let tied = model.tensor("output.weight").is_none();
    let weight_bytes: u64 = model
        .tensors()
        .filter(|t| tied || t.info.name != "token_embd.weight")
        .map(|t| t.info.size)
        .sum();
    let decode_tps = n as f64 / decode_s;
    let backend_name = backend.name();
    drop(backend);
    let profile = if profile {
        Some(profile_kernels(&model, &prompt, device)?)
    } else {
        None
    };
    let v = json!({
        "model": path.display().to_string(),
        "backend": backend_name,
        "gpu": gpu_json(device),
        "prompt_tokens": prompt_len,
        "decode_tokens": n,
        "load_s": load_s,
        "prefill_tokens_per_s": prompt_len as f64 / prefill_s,
        "decode_tokens_per_s": decode_tps,
        "decode_weight_gb_per_s": weight_bytes as f64 * decode_tps / 1e9,
        "weight_bytes_per_token": weight_bytes,
        "decode_dispatches_per_token": dispatches,
        "decode_sampled": sample,
        "constrained": mask,
        "profile": profile,
    });
    if as_json {
        println!("{v}");
    } else {
        let t = &v["gpu"]["tuning"];
        let mut tuned: Vec<String> = Vec::new();
        for (k, label) in [("matvec_threads", "matvec threads"), ("matvec_rows", "matvec rows")] {
            if let Some(n) = t[k].as_u64() {
                tuned.push(format!("{label} {n}"));
            }
        }
        if t["naga_loop_bounding"] == true {
            tuned.push("naga loop bounding".into());
        }
        if let Some(k) = t["prefill_kernel"].as_str() {
            tuned.push(format!("{k} prefill"));
        }
        if let Some(k) = t["swiglu"].as_str() {
            tuned.push(format!("{k} SwiGLU"));
        }
        if let Some(k) = t["norm"].as_str() {
            tuned.push(format!("{k} norms"));
        }
        if let Some(k) = t["int_dot"].as_str() {
            tuned.push(format!("int-dot {k}"));
        }
        let tuned = if tuned.is_empty() { String::new() } else { format!(" ({})", tuned.join(", ")) };
        println!(
            "{}{tuned}: prefill {:.1} tok/s ({prompt_len} tokens) · decode {:.2} tok/s ({n} tokens{}) · {:.2} GB/s of weights",
            backend_name,
            v["prefill_tokens_per_s"].as_f64().unwrap_or(0.0),
            decode_tps,
            if sample { ", sampled" } else { "" },
            v["decode_weight_gb_per_s"].as_f64().unwrap_or(0.0)
        );
        if let Some(d) = dispatches {
            let layers = shape.n_layer;
            println!("decode: {d} dispatches per token ({:.1} per layer over {layers} layers, with the output and sampling)", d as f64 / layers as f64);
        }
        let m = &v["constrained"];
        println!(
            "json schema: mask {:.3} ms/token ({:.1}% of a decode step) · constrained decode {:.2} tok/s ({} tokens) · vocabulary index {:.0} ms · schema compile {:.1} ms",
            m["mask_ms_per_token"].as_f64().unwrap_or(0.0),
            m["mask_percent_of_step"].as_f64().unwrap_or(0.0),
            m["decode_tokens_per_s"].as_f64().unwrap_or(0.0),
            m["tokens"],
            m["vocab_index_ms"].as_f64().unwrap_or(0.0),
            m["compile_ms"].as_f64().unwrap_or(0.0),
        );
        if let Some(p) = v["profile"].as_array() {
            println!("{:<12} {:>10} {:>6} {:>9}", "kernel", "µs/token", "%", "GB/s");
            for k in p {
                println!(
                    "{:<12} {:>10.1} {:>5.1}% {:>9}",
                    k["kernel"].as_str().unwrap_or(""),
                    k["us_per_token"].as_f64().unwrap_or(0.0),
                    k["percent"].as_f64().unwrap_or(0.0),
                    k["weight_gb_per_s"].as_f64().map_or(String::new(), |g| format!("{g:.1}"))
                );
            }
        }
    }
    Ok(())
}

/// The cost of structured output: a greedy decode constrained by a JSON schema (objects, an
/// array, strings, numbers, an enum) after the same prompt. Each step reads back the full
/// logits and masks them on the CPU; the mask time is reported per token and against the
/// unconstrained decode step.
fn mask_overhead(model: &GgufFile, backend: &mut dyn LogitsBackend, prompt: &[u32], n: usize) -> Result<serde_json::Value> {
    let tok = Tokenizer::from_gguf(model.metadata())?;
    let schema = json!({
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "rows": {"type": "array", "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "kind": {"enum": ["alpha", "beta", "gamma"]},
                    "score": {"type": "number"},
                    "tags": {"type": "array", "items": {"type": "string"}}
                },
                "required": ["name", "kind", "score", "tags"]
            }}
        },
        "required": ["title", "rows"]
    });
    let t0 = web_time::Instant::now();
    let env = ConstraintEnv::new(&tok)?;
    let vocab_index_ms = t0.elapsed().as_secs_f64() * 1e3;
    let c = env.compile(&ConstraintSpec::JsonSchema { schema }, &[])?;
    let compile_ms = c.compile_time().as_secs_f64() * 1e3;
    backend.reset();
    let params = GenerateParams {
        max_tokens: n.max(1),
        sampler: SamplerConfig::greedy(),
        stop_tokens: Vec::new(),
        stop_strings: Vec::new(),
        logprobs: None,
    };
    let g = generate_constrained(backend, &tok, prompt, &params, Some(c), |_| true)?;
    let mask_ms = g.mask_time.as_secs_f64() * 1e3 / g.masks.max(1) as f64;
    let step_ms = 1e3 / g.decode_tokens_per_s().max(1e-9);
    Ok(json!({
        "tokens": g.tokens.len(),
        "decode_tokens_per_s": g.decode_tokens_per_s(),
        "mask_ms_per_token": mask_ms,
        "mask_percent_of_step": 100.0 * mask_ms / step_ms,
        "vocab_index_ms": vocab_index_ms,
        "compile_ms": compile_ms,
    }))
}

/// Per-kernel decode times (timestamp queries, mean of 8 steps after prefilling `prompt`),
/// with the weight bandwidth of each matrix × vector.
fn profile_kernels(model: &GgufFile, prompt: &[u32], device: &DeviceArgs) -> Result<serde_json::Value> {
    if device.backend != Backend::Gpu {
        return Err(Error::InvalidArgument("--profile needs the GPU backend".into()));
    }
    const STEPS: usize = 8;
    let mut m = load_gguf(device.gpu()?, model, prompt.len() + STEPS + 1)?;
    let next = pollster::block_on(m.forward_argmax(prompt))?;
    let kernels = pollster::block_on(gpu::bench::profile(&mut m, next, STEPS))?;
    Ok(json!(kernels
        .iter()
        .map(|k| {
            json!({
                "kernel": k.kernel,
                "us_per_token": k.us_per_token,
                "percent": k.percent,
                "weight_bytes": k.weight_bytes,
                "weight_gb_per_s": k.weight_gb_per_s(),
            })
        })
        .collect::<Vec<_>>()))
}
