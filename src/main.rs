//! `llama-webgpu`: the command-line tool. Its subcommands and output formats are a stable
//! interface that scripts and tests rely on.

use clap::{Args, Parser, Subcommand, ValueEnum};
use llama_webgpu::generate::{generate, CpuBackend, GenerateParams, LogitsBackend};
use llama_webgpu::gguf::GgufModel;
use llama_webgpu::reference::{ops::log_softmax, Logits, ReferenceModel, ReferenceOptions};
use llama_webgpu::sampling::SamplerConfig;
use llama_webgpu::tokenizer::{chat::ChatMessage, Tokenizer};
use llama_webgpu::{Error, Result};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "llama-webgpu", version, about = "Llama 3.x inference on GGUF models (CPU reference; WebGPU coming)")]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the token ids of TEXT as a JSON array (no BOS is added).
    Tokenize {
        #[arg(short, long)]
        model: PathBuf,
        /// Parse special-token text such as <|eot_id|> into their ids.
        #[arg(long)]
        special: bool,
        text: String,
    },
    /// Generate text, streaming it to stdout.
    Generate(GenerateArgs),
    /// Teacher-forced scoring: the top next tokens after every prefix.
    Score {
        #[arg(short, long)]
        model: PathBuf,
        #[command(flatten)]
        input: PromptInput,
        /// How many top tokens to report per position.
        #[arg(long, default_value_t = 5)]
        top: usize,
        /// Print JSON (the only format).
        #[arg(long)]
        json: bool,
    },
    /// Describe a model: architecture, sizes, tensor types, parameters, file size.
    Info {
        #[arg(short, long)]
        model: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct PromptInput {
    /// Prompt text; BOS is added when the model asks for it.
    #[arg(short, long)]
    prompt: Option<String>,
    /// Comma-separated token ids, used as they are.
    #[arg(long, value_delimiter = ',')]
    tokens: Option<Vec<u32>>,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Backend {
    Cpu,
    Gpu,
}

#[derive(Args)]
struct GenerateArgs {
    #[arg(short, long)]
    model: PathBuf,
    #[command(flatten)]
    input: PromptInput,
    /// Tokens to generate at most.
    #[arg(short = 'n', long = "max-tokens", default_value_t = 32)]
    n: usize,
    #[arg(long, default_value_t = 0.8)]
    temp: f32,
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// RNG seed; random when omitted.
    #[arg(long)]
    seed: Option<u64>,
    /// Wrap -p in the model's chat template as a user message.
    #[arg(long)]
    chat: bool,
    /// System message for --chat.
    #[arg(long)]
    system: Option<String>,
    /// Stop when this text appears (repeatable).
    #[arg(long = "stop")]
    stop: Vec<String>,
    /// Context size (default: the prompt plus -n, capped at the model's context length).
    #[arg(long)]
    ctx: Option<usize>,
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    backend: Backend,
    /// After the streamed text, print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = std::io::stdout().flush();
            eprintln!("error [{}]: {e}", e.code());
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Command::Tokenize { model, special, text } => {
            let model = GgufModel::open(&model)?;
            let tok = Tokenizer::from_gguf(model.metadata())?;
            println!("{}", serde_json::to_string(&tok.encode(&text, special)?).expect("ids serialize"));
            Ok(())
        }
        Command::Info { model, json } => info(&model, json),
        Command::Score { model, input, top, json: _ } => score(&model, &input, top),
        Command::Generate(args) => run_generate(args),
    }
}

/// Prompt ids: `--tokens` as given, or `-p` text with BOS when the model wants it.
fn prompt_ids(tok: &Tokenizer, input: &PromptInput, parse_special: bool) -> Result<Vec<u32>> {
    if let Some(ids) = &input.tokens {
        return Ok(ids.clone());
    }
    let text = input.prompt.as_deref().unwrap_or_default();
    let mut ids = tok.encode(text, parse_special)?;
    if tok.add_bos() {
        if let Some(bos) = tok.bos_id() {
            // A chat template may already have written the BOS text.
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
    }
    Ok(ids)
}

fn load(model: &PathBuf) -> Result<(GgufModel, Tokenizer)> {
    let model = GgufModel::open(model)?;
    let tok = Tokenizer::from_gguf(model.metadata())?;
    Ok((model, tok))
}

fn run_generate(a: GenerateArgs) -> Result<()> {
    if a.backend == Backend::Gpu {
        return Err(Error::BackendUnavailable("the GPU backend is not built yet; use --backend cpu".into()));
    }
    let (model, tok) = load(&a.model)?;
    let mut input = PromptInput { prompt: a.input.prompt.clone(), tokens: a.input.tokens.clone() };
    if a.chat {
        let text = a.input.prompt.clone().ok_or_else(|| Error::InvalidArgument("--chat needs -p TEXT".into()))?;
        let mut messages = Vec::new();
        if let Some(s) = &a.system {
            messages.push(ChatMessage::system(s.clone()));
        }
        messages.push(ChatMessage::user(text));
        let rendered = tok
            .apply_chat_template(&messages, true)
            .ok_or_else(|| Error::InvalidArgument("this model has no chat template (tokenizer.chat_template)".into()))??;
        input.prompt = Some(rendered);
    }
    let prompt = prompt_ids(&tok, &input, a.chat)?;
    let reference = ReferenceModel::from_gguf(&model, ReferenceOptions::default())?;
    let ctx = a.ctx.unwrap_or(prompt.len() + a.n).min(reference.cfg.context_length);
    let mut backend = CpuBackend::new(&reference, ctx);
    let seed = a.seed.unwrap_or_else(|| web_time::SystemTime::now().duration_since(web_time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64));
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
    };
    let mut out = std::io::stdout().lock();
    let g = generate(&mut backend, &tok, &prompt, &params, |piece| {
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
        });
        println!("{line}");
    }
    Ok(())
}

fn score(model: &PathBuf, input: &PromptInput, top: usize) -> Result<()> {
    let (model, tok) = load(model)?;
    let ids = prompt_ids(&tok, input, false)?;
    let reference = ReferenceModel::from_gguf(&model, ReferenceOptions::default())?;
    let mut cache = reference.new_cache(ids.len());
    let logits = reference.forward(&mut cache, &ids, Logits::All)?;
    let n_vocab = reference.cfg.n_vocab;
    let positions: Vec<_> = logits
        .chunks_exact(n_vocab)
        .map(|row| {
            let lp = log_softmax(row);
            let mut idx: Vec<u32> = (0..n_vocab as u32).collect();
            let k = top.clamp(1, n_vocab);
            idx.select_nth_unstable_by(k - 1, |&a, &b| lp[b as usize].total_cmp(&lp[a as usize]));
            idx.truncate(k);
            idx.sort_by(|&a, &b| lp[b as usize].total_cmp(&lp[a as usize]).then(a.cmp(&b)));
            json!({"top": idx.iter().map(|&i| json!([i, lp[i as usize]])).collect::<Vec<_>>()})
        })
        .collect();
    println!("{}", json!({"tokens": ids, "positions": positions}));
    Ok(())
}

fn info(path: &PathBuf, as_json: bool) -> Result<()> {
    let model = GgufModel::open(path)?;
    let meta = model.metadata();
    let mut types: std::collections::BTreeMap<String, (usize, u64, u64)> = Default::default();
    let mut n_params = 0u64;
    for t in model.tensors() {
        let e = types.entry(t.info.ggml_type.name().to_string()).or_default();
        e.0 += 1;
        e.1 += t.info.n_elements();
        e.2 += t.info.size;
        n_params += t.info.n_elements();
    }
    let arch = meta.str_opt("general.architecture")?.unwrap_or("(none)").to_string();
    let cfg = llama_webgpu::model::LlamaConfig::from_gguf(meta, |n| model.tensor(n).map(|t| t.info)).ok();
    let shards: Vec<String> = model.shard_paths().iter().map(|p| p.display().to_string()).collect();
    let value = json!({
        "file": path.display().to_string(),
        "shards": shards,
        "file_size": model.file_size(),
        "gguf_version": model.header().version,
        "architecture": arch,
        "name": meta.str_opt("general.name")?.unwrap_or(""),
        "n_tensors": model.tensors().count(),
        "n_params": n_params,
        "tensor_types": types.iter().map(|(k, v)| (k.clone(), json!({"tensors": v.0, "elements": v.1, "bytes": v.2}))).collect::<serde_json::Map<_, _>>(),
        "hparams": cfg.as_ref().map(|c| json!({
            "n_vocab": c.n_vocab, "n_embd": c.n_embd, "n_layer": c.n_layer, "n_head": c.n_head,
            "n_head_kv": c.n_head_kv, "head_dim": c.head_dim, "n_ff": c.n_ff, "context_length": c.context_length,
            "rope_theta": c.rope_theta, "rms_eps": c.rms_eps, "tied_output": c.tied_output,
            "rope_scaling": format!("{:?}", c.rope_scaling),
        })),
        "tokenizer": meta.str_opt("tokenizer.ggml.model")?.map(|m| json!({
            "model": m,
            "pre": meta.str_opt("tokenizer.ggml.pre").ok().flatten(),
            "n_tokens": meta.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()).map(|a| a.len()),
        })),
    });
    if as_json {
        println!("{value}");
        return Ok(());
    }
    println!("file:         {} ({} shard{})", path.display(), shards.len(), if shards.len() == 1 { "" } else { "s" });
    println!("file size:    {} bytes ({:.1} MiB)", model.file_size(), model.file_size() as f64 / (1 << 20) as f64);
    println!("architecture: {arch}   name: {}", value["name"].as_str().unwrap_or(""));
    println!("parameters:   {n_params} ({:.1} M)", n_params as f64 / 1e6);
    if let Some(c) = &cfg {
        println!(
            "sizes:        vocab {} · embd {} · layers {} · heads {}/{} (dim {}) · ffn {} · ctx {} · rope θ {} {:?}{}",
            c.n_vocab, c.n_embd, c.n_layer, c.n_head, c.n_head_kv, c.head_dim, c.n_ff, c.context_length, c.rope_theta, c.rope_scaling,
            if c.tied_output { " · tied output" } else { "" }
        );
    }
    println!("tensor types:");
    for (k, (n, elems, bytes)) in &types {
        println!("  {k:<8} {n:>5} tensors {elems:>13} elements {:>10.1} MiB", *bytes as f64 / (1 << 20) as f64);
    }
    Ok(())
}
