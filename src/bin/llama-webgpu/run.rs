//! Running a model: `tokenize`, `generate` (streamed, optionally chat-templated and
//! constrained) and `score` (teacher-forced top tokens).

use crate::args::{Backend, DeviceArgs, GenerateArgs, PromptInput, ScoreInput};
use llama_webgpu::decode::constrain::ConstraintEnv;
use llama_webgpu::decode::sampling::SamplerConfig;
use llama_webgpu::decode::{generate_constrained, CpuBackend, GenerateParams, GpuBackend, LogitsBackend};
use llama_webgpu::gguf::GgufFile;
use llama_webgpu::gpu::loader::load_gguf;
use llama_webgpu::reference::{ops::log_softmax, Logits, ReferenceModel, ReferenceOptions};
use llama_webgpu::tokenizer::{ChatMessage, Tokenizer};
use llama_webgpu::{Error, Result};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;

/// Prints the token ids of `text` as a JSON array.
pub(crate) fn tokenize(model: &PathBuf, special: bool, text: &str) -> Result<()> {
    let (_, tok) = load(model)?;
    println!("{}", serde_json::to_string(&tok.encode(text, special)?).expect("ids serialize"));
    Ok(())
}

/// Prompt ids: `--tokens` as given, or `-p` text with BOS when the model wants it.
pub(crate) fn prompt_ids(tok: &Tokenizer, input: &PromptInput, parse_special: bool) -> Result<Vec<u32>> {
    if let Some(ids) = &input.tokens {
        return Ok(ids.clone());
    }
    let text = input.prompt.as_deref().unwrap_or_default();
    Ok(tok.encode_prompt(text, parse_special)?)
}

pub(crate) fn load(model: &PathBuf) -> Result<(GgufFile, Tokenizer)> {
    let model = GgufFile::open(model)?;
    let tok = Tokenizer::from_gguf(model.metadata())?;
    Ok((model, tok))
}

pub(crate) fn generate(a: GenerateArgs) -> Result<()> {
    let (model, mut tok) = load(&a.model)?;
    if let Some(path) = &a.chat_template {
        let template = std::fs::read_to_string(path).map_err(|e| Error::InvalidArgument(format!("--chat-template {}: {e}", path.display())))?;
        tok = tok.with_chat_template(template)?;
    }
    let mut input = PromptInput {
        prompt: a.input.prompt.clone(),
        tokens: a.input.tokens.clone(),
    };
    if a.chat {
        let text = a
            .input
            .prompt
            .clone()
            .ok_or_else(|| Error::InvalidArgument("--chat needs -p TEXT".into()))?;
        let mut messages = Vec::new();
        if let Some(s) = &a.system {
            messages.push(ChatMessage::system(s.clone()));
        }
        messages.push(ChatMessage::user(text));
        let rendered = tok.apply_chat_template(&messages, true).ok_or_else(|| {
            Error::InvalidArgument(
                "this model has no chat template (tokenizer.chat_template); give one with --chat-template FILE".into(),
            )
        })??;
        input.prompt = Some(rendered);
    }
    let prompt = prompt_ids(&tok, &input, a.chat)?;
    // Compiled before the model loads: a bad schema or grammar fails fast.
    let constraint = match a.constraint.spec()? {
        Some(spec) => Some(ConstraintEnv::new(&tok)?.compile(&spec, &tok.stop_ids())?),
        None => None,
    };
    let ctx = a.ctx.unwrap_or(prompt.len() + a.n);
    let mut backend = make_backend(&model, ctx, &a.device)?;
    let backend = backend.as_mut();
    let seed = a.seed.unwrap_or_else(|| {
        web_time::SystemTime::now()
            .duration_since(web_time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let params = GenerateParams {
        max_tokens: a.n,
        sampler: SamplerConfig {
            temperature: a.temp,
            top_k: a.top_k,
            top_p: a.top_p,
            min_p: a.min_p,
            repeat_penalty: a.repeat_penalty,
            seed,
            ..SamplerConfig::default()
        },
        stop_tokens: tok.stop_ids(),
        stop_strings: a.stop.clone(),
        logprobs: None,
    };
    let mut out = std::io::stdout().lock();
    let g = generate_constrained(backend, &tok, &prompt, &params, constraint, |piece| {
        let _ = out.write_all(piece.as_bytes());
        let _ = out.flush();
        true
    })?;
    drop(out);
    println!();
    if a.json {
        let line = json!({
            "prompt_tokens": g.prompt_tokens,
            "tokens": g.tokens,
            "text": g.text,
            "finish_reason": g.finish_reason,
            "prefill_tokens_per_s": g.prefill_tokens_per_s(),
            "decode_tokens_per_s": g.decode_tokens_per_s(),
            "backend": backend.name(),
            "seed": seed,
            "mask_ms_per_token": (g.masks > 0).then(|| g.mask_time.as_secs_f64() * 1e3 / g.masks as f64),
        });
        println!("{line}");
    }
    Ok(())
}

/// A CPU reference or GPU backend holding the model. The CPU reference is leaked on purpose:
/// it lives for the whole (short-lived) process and the backend borrows it.
pub(crate) fn make_backend(
    model: &GgufFile,
    ctx: usize,
    device: &DeviceArgs,
) -> Result<Box<dyn LogitsBackend>> {
    Ok(match device.backend {
        Backend::Cpu => {
            let reference: &'static ReferenceModel = Box::leak(Box::new(
                ReferenceModel::from_gguf(model, ReferenceOptions::default())?,
            ));
            Box::new(CpuBackend::new(reference, ctx))
        }
        Backend::Gpu => Box::new(GpuBackend(load_gguf(device.gpu()?, model, ctx)?)),
    })
}

/// The sequences `score` reads: the one prompt, or every line of `--tokens-file`.
fn score_sequences(tok: &Tokenizer, input: &ScoreInput) -> Result<Vec<Vec<u32>>> {
    let Some(path) = &input.tokens_file else {
        let one = PromptInput {
            prompt: input.prompt.clone(),
            tokens: input.tokens.clone(),
        };
        return Ok(vec![prompt_ids(tok, &one, false)?]);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::InvalidArgument(format!("--tokens-file {}: {e}", path.display())))?;
    let mut sequences = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let ids = line
            .split(',')
            .map(|t| t.trim().parse::<u32>())
            .collect::<std::result::Result<Vec<u32>, _>>()
            .map_err(|e| {
                Error::InvalidArgument(format!(
                    "--tokens-file {} line {}: not comma-separated token ids ({e})",
                    path.display(),
                    n + 1
                ))
            })?;
        sequences.push(ids);
    }
    if sequences.is_empty() {
        return Err(Error::InvalidArgument(format!("--tokens-file {} has no sequence", path.display())));
    }
    Ok(sequences)
}

/// Teacher-forced scoring: one JSON line per sequence with the top tokens after every prefix.
pub(crate) fn score(model: &PathBuf, input: &ScoreInput, top: usize, chunk: Option<u32>, device: &DeviceArgs) -> Result<()> {
    let (model, tok) = load(model)?;
    let sequences = score_sequences(&tok, input)?;
    let longest = sequences.iter().map(Vec::len).max().unwrap_or(0);
    // Built once for every sequence: a model load and its kernels cost more than scoring a
    // short sequence.
    enum Scorer {
        Cpu(Box<ReferenceModel>),
        Gpu(Box<llama_webgpu::gpu::graph::GpuModel>),
    }
    let mut scorer = match device.backend {
        Backend::Cpu => Scorer::Cpu(Box::new(ReferenceModel::from_gguf(&model, ReferenceOptions::default())?)),
        Backend::Gpu => Scorer::Gpu(Box::new(load_gguf(device.gpu()?, &model, longest)?)),
    };
    for ids in &sequences {
        let (logits, n_vocab) = match &mut scorer {
            Scorer::Cpu(reference) => {
                let mut cache = reference.new_cache(ids.len());
                (reference.forward(&mut cache, ids, Logits::All)?, reference.cfg.shape.n_vocab)
            }
            Scorer::Gpu(gpu) => {
                gpu.reset();
                let mut logits = Vec::new();
                for part in ids.chunks(chunk.map_or(ids.len().max(1), |c| c as usize)) {
                    logits.extend(pollster::block_on(gpu.forward_all(part))?);
                }
                (logits, gpu.cfg.shape.n_vocab)
            }
        };
        let positions: Vec<_> = logits
            .chunks_exact(n_vocab)
            .map(|row| {
                let lp = log_softmax(row);
                let mut idx: Vec<u32> = (0..n_vocab as u32).collect();
                let k = top.clamp(1, n_vocab);
                idx.select_nth_unstable_by(k - 1, |&a, &b| lp[b as usize].total_cmp(&lp[a as usize]));
                idx.truncate(k);
                idx.sort_by(|&a, &b| lp[b as usize].total_cmp(&lp[a as usize]).then(a.cmp(&b)));
                // NaN or infinite logits poison the softmax silently; counting them lets a caller
                // (scripts/big-native) assert that every logit of the vocabulary is finite.
                let non_finite = row.iter().filter(|l| !l.is_finite()).count();
                json!({"top": idx.iter().map(|&i| json!([i, lp[i as usize]])).collect::<Vec<_>>(), "non_finite": non_finite})
            })
            .collect();
        println!("{}", json!({"tokens": ids, "positions": positions}));
    }
    Ok(())
}
