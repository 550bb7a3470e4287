//! `llama-webgpu`: the command-line tool. Its subcommands and output formats are a stable
//! interface that scripts and tests rely on.

use clap::{Args, Parser, Subcommand, ValueEnum};
use llama_webgpu::constrain::{ConstraintEnv, ConstraintError, ConstraintSpec};
use llama_webgpu::generate::{generate_constrained, CpuBackend, GenerateParams, LogitsBackend};
use llama_webgpu::gguf::GgufModel;
use llama_webgpu::gpu::model::{GpuBackend, GpuModel};
use llama_webgpu::gpu::{GpuContext, GpuOptions, KernelTuning};
use llama_webgpu::reference::{ops::log_softmax, Logits, ReferenceModel, ReferenceOptions};
use llama_webgpu::sampling::SamplerConfig;
use llama_webgpu::tokenizer::{chat::ChatMessage, Tokenizer};
use llama_webgpu::{Error, Result};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "llama-webgpu",
    version,
    about = "Llama 3.x inference on GGUF models with WebGPU (wgpu) compute shaders"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
    #[command(flatten)]
    net: NetArgs,
}

/// Models given as http(s) URLs (`-m https://.../model-00001-of-00003.gguf`): where downloads
/// are kept and how hard to retry.
#[derive(Args)]
struct NetArgs {
    /// Download directory for model URLs [default: $LLAMA_WEBGPU_CACHE, else
    /// $XDG_CACHE_HOME/llama-webgpu, else ~/.cache/llama-webgpu].
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Failed attempts in a row allowed per download request (connection cuts, 5xx).
    #[arg(long, global = true, default_value_t = 5, value_name = "N")]
    retries: u32,
    /// No download progress on stderr.
    #[arg(long, global = true)]
    quiet: bool,
}

impl NetArgs {
    /// A local path as it is; a URL downloaded (all shards of a split set) into the cache, and
    /// the path of its first shard there.
    fn resolve(&self, model: PathBuf) -> Result<PathBuf> {
        let Some(url) = model.to_str().filter(|s| llama_webgpu::net::is_url(s)) else {
            return Ok(model);
        };
        let opts = llama_webgpu::net::NetOptions {
            cache_dir: self
                .cache_dir
                .clone()
                .unwrap_or_else(llama_webgpu::net::default_cache_dir),
            retries: self.retries,
            progress: !self.quiet,
            ..Default::default()
        };
        llama_webgpu::net::fetch_model(url, &opts)
    }
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
        #[command(flatten)]
        device: DeviceArgs,
        /// Print JSON (the only format).
        #[arg(long)]
        json: bool,
    },
    /// Describe a model: architecture, sizes, tensor types, parameters, file size, and the GPU.
    Info {
        #[arg(short, long)]
        model: PathBuf,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// Measure prefill and decode speed and the effective weight bandwidth of decode.
    Bench {
        #[arg(short, long)]
        model: PathBuf,
        /// Prompt tokens to prefill.
        #[arg(long, default_value_t = 128)]
        prompt_len: usize,
        /// Tokens to decode.
        #[arg(short = 'n', default_value_t = 64)]
        n: usize,
        #[arg(long)]
        json: bool,
        /// Also time each kernel of a decode step with timestamp queries (GPU backend).
        #[arg(long)]
        profile: bool,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// Write a synthetic Llama 3.x GGUF: the tensor names, shapes, types and metadata of the
    /// real model, with random weights (for testing big-model loading without downloads).
    Synth(SynthArgs),
    /// Split a GGUF into llama.cpp's gguf-split layout (PREFIX-00001-of-0000N.gguf: metadata in
    /// the first shard, split.* keys in each), as `llama-gguf-split --split-max-size` does.
    /// Shards are built in memory, so this is for models that fit in RAM.
    Split {
        model: PathBuf,
        /// Output path prefix (shard names get -0000k-of-0000n.gguf appended).
        prefix: String,
        /// Tensor data per shard at most: bytes, or K/M/G (decimal).
        #[arg(long, default_value = "2G")]
        split_max_size: String,
    },
}

#[derive(Args)]
struct SynthArgs {
    /// Output file; with --split-max-size, shards OUT-00001-of-0000N.gguf (OUT without .gguf).
    #[arg(short, long)]
    output: PathBuf,
    /// 8b = Llama-3.1-8B-Instruct, 3b/1b = Llama-3.2-3B/1B-Instruct, tiny = 2 small layers.
    #[arg(long, default_value = "8b", value_parser = llama_webgpu::model::synth::SHAPES)]
    shape: String,
    /// llama.cpp quantization mix.
    #[arg(long = "type", default_value = "q4_k_m", value_parser = ["q4_k_m", "q4_0", "q8_0"])]
    ty: String,
    /// Write gguf-split shards of at most this much tensor data each: bytes, or K/M/G
    /// (decimal, as gguf-split: 2G = 2e9 bytes).
    #[arg(long)]
    split_max_size: Option<String>,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// llama.context_length (default: the real model's, 131072).
    #[arg(long)]
    context: Option<usize>,
    /// GGUF with the Llama 3 vocabulary [default: .cache/models/ggml-vocab-llama-bpe.gguf].
    #[arg(long)]
    vocab: Option<PathBuf>,
    /// Jinja chat template file [default: meta-llama-Llama-3.1-8B-Instruct.jinja beside the
    /// vocabulary, if present].
    #[arg(long)]
    chat_template: Option<PathBuf>,
}

/// Where to run, and which GPU features to allow (turning them off exercises the fallbacks
/// that browsers without them get).
#[derive(Args, Clone)]
struct DeviceArgs {
    #[arg(long, value_enum, default_value_t = Backend::Gpu)]
    backend: Backend,
    /// Do not use shader-f16 even if the adapter has it.
    #[arg(long)]
    no_f16: bool,
    /// Do not use subgroup operations even if the adapter has them.
    #[arg(long)]
    no_subgroups: bool,
    /// Cap the storage-binding size in bytes (e.g. 134217728 for WebGPU's default).
    #[arg(long)]
    max_binding: Option<u64>,
    /// Tuning: invocations sharing one weight row in the decode matrix-vector kernel (1-64, a
    /// power of two; default: chosen for the device).
    #[arg(long, value_name = "N", value_parser = power_of_two::<64>)]
    matvec_threads: Option<u32>,
    /// Tuning: weight rows each group of those invocations takes, sharing its activation loads
    /// (1, 2 or 4; default: chosen for the device).
    #[arg(long, value_name = "N", value_parser = power_of_two::<4>)]
    matvec_rows: Option<u32>,
    /// Tuning: let naga guard every shader loop with an iteration counter, as it does for
    /// untrusted shaders (native only; off by default).
    #[arg(long)]
    naga_loop_bounding: bool,
    /// Tuning: the kernel for prompts past 16 tokens: the tiled matrix-matrix kernel, or the
    /// matrix-vector kernel 8 tokens per weight decode (default: chosen for the device).
    #[arg(long, value_name = "KERNEL")]
    prefill_kernel: Option<PrefillKernel>,
    /// The context made from these options, made once: `bench` asks for it three times (model,
    /// adapter facts, profile), and each new one would be another device.
    #[arg(skip)]
    context: std::cell::OnceCell<Arc<GpuContext>>,
}

#[derive(Clone, Copy, ValueEnum)]
enum PrefillKernel {
    Tiled,
    Matvec,
}

/// A power of two from 1 to `MAX`, for the tuning flags.
fn power_of_two<const MAX: u32>(s: &str) -> std::result::Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if n.is_power_of_two() && n <= MAX => Ok(n),
        _ => Err(format!("expected a power of two from 1 to {MAX}")),
    }
}

impl DeviceArgs {
    fn gpu(&self) -> Result<Arc<GpuContext>> {
        if let Some(ctx) = self.context.get() {
            return Ok(ctx.clone());
        }
        let opts = GpuOptions {
            allow_f16: !self.no_f16,
            allow_subgroups: !self.no_subgroups,
            max_storage_binding: self.max_binding,
            tuning: KernelTuning {
                matvec_threads_per_row: self.matvec_threads,
                matvec_rows_per_invocation: self.matvec_rows,
                naga_loop_bounding: self.naga_loop_bounding,
                matvec_prefill: self.prefill_kernel.map(|k| matches!(k, PrefillKernel::Matvec)),
            },
        };
        let ctx = Arc::new(GpuContext::new_blocking(opts)?);
        Ok(self.context.get_or_init(|| ctx).clone())
    }
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
    #[command(flatten)]
    device: DeviceArgs,
    /// After the streamed text, print one JSON object as the last line.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    constraint: ConstraintArgs,
}

/// Structured output: at most one of these restricts what `generate` may write.
#[derive(Args)]
#[group(multiple = false)]
struct ConstraintArgs {
    /// The output is JSON that validates against this JSON Schema file.
    #[arg(long, value_name = "FILE")]
    json_schema: Option<PathBuf>,
    /// The output is any JSON object.
    #[arg(long)]
    json_object: bool,
    /// The output matches this grammar file: Lark (llguidance's dialect) or GBNF (`root ::= ...`).
    #[arg(long, value_name = "FILE")]
    grammar: Option<PathBuf>,
    /// The output fully matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    regex: Option<String>,
}

impl ConstraintArgs {
    fn spec(&self) -> Result<Option<ConstraintSpec>> {
        let read = |p: &PathBuf| {
            std::fs::read_to_string(p)
                .map_err(|e| Error::InvalidArgument(format!("cannot read {}: {e}", p.display())))
        };
        Ok(if let Some(p) = &self.json_schema {
            let schema = serde_json::from_str(&read(p)?).map_err(|e| {
                Error::from(ConstraintError::InvalidSchema(format!("{} is not JSON: {e}", p.display())))
            })?;
            Some(ConstraintSpec::JsonSchema { schema })
        } else if self.json_object {
            Some(ConstraintSpec::JsonObject)
        } else if let Some(p) = &self.grammar {
            Some(ConstraintSpec::Lark { grammar: read(p)? })
        } else {
            self.regex.clone().map(|pattern| ConstraintSpec::Regex { pattern })
        })
    }
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
    let net = &cli.net;
    match cli.cmd {
        Command::Tokenize {
            model,
            special,
            text,
        } => {
            let model = GgufModel::open(net.resolve(model)?)?;
            let tok = Tokenizer::from_gguf(model.metadata())?;
            println!(
                "{}",
                serde_json::to_string(&tok.encode(&text, special)?).expect("ids serialize")
            );
            Ok(())
        }
        Command::Info {
            model,
            json,
            device,
        } => info(&net.resolve(model)?, json, &device),
        Command::Score {
            model,
            input,
            top,
            json: _,
            device,
        } => score(&net.resolve(model)?, &input, top, &device),
        Command::Generate(mut args) => {
            args.model = net.resolve(args.model)?;
            run_generate(args)
        }
        Command::Bench {
            model,
            prompt_len,
            n,
            json,
            profile,
            device,
        } => bench(&net.resolve(model)?, prompt_len, n, json, profile, &device),
        Command::Synth(args) => synth(args),
        Command::Split {
            model,
            prefix,
            split_max_size,
        } => split(&net.resolve(model)?, &prefix, &split_max_size),
    }
}

fn split(model: &PathBuf, prefix: &str, max: &str) -> Result<()> {
    let max = llama_webgpu::model::synth::parse_size(max)
        .ok_or_else(|| Error::InvalidArgument(format!("bad --split-max-size '{max}'")))?;
    let m = GgufModel::open(model)?;
    let shards = llama_webgpu::gguf::split_into_shards(
        m.header(),
        |n| m.tensor(n).expect("tensor listed in the header").data,
        prefix,
        max,
    );
    for (name, bytes) in &shards {
        std::fs::write(name, bytes).map_err(|e| Error::InvalidArgument(format!("writing {name}: {e}")))?;
        println!("{name}  {} bytes", bytes.len());
    }
    Ok(())
}

fn synth(a: SynthArgs) -> Result<()> {
    use llama_webgpu::model::synth::{self, QuantMix, Shape, SynthOptions};
    let shape = Shape::preset(&a.shape)
        .ok_or_else(|| Error::InvalidArgument(format!("unknown shape '{}'", a.shape)))?;
    let mix = QuantMix::parse(&a.ty)
        .ok_or_else(|| Error::InvalidArgument(format!("unknown type '{}'", a.ty)))?;
    let vocab = a.vocab.unwrap_or_else(synth::default_vocab_path);
    let template_path = a.chat_template.clone().or_else(|| {
        let p = synth::default_chat_template_path(&vocab);
        p.exists().then_some(p)
    });
    let read_template = |p: &PathBuf| {
        std::fs::read_to_string(p)
            .map_err(|e| Error::InvalidArgument(format!("chat template {}: {e}", p.display())))
    };
    let chat_template = template_path.as_ref().map(read_template).transpose()?;
    if chat_template.is_none() {
        eprintln!("note: no chat template found; the file will have none");
    }
    let split_max_bytes = match &a.split_max_size {
        Some(s) => Some(synth::parse_size(s).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "--split-max-size '{s}': expected bytes or a number with K, M or G"
            ))
        })?),
        None => None,
    };
    let opts = SynthOptions {
        seed: a.seed,
        context_length: a.context,
        chat_template,
        split_max_bytes,
        ..SynthOptions::new(shape, mix, vocab)
    };
    let t0 = web_time::Instant::now();
    let mb = |b: u64| b as f64 / 1e6;
    let report = synth::write_with(&opts, &a.output, |path, bytes| {
        println!("wrote {} ({:.1} MB)", path.display(), mb(bytes));
    })?;
    println!(
        "{} {}: {} tensors, {} parameters ({:.2} B), {} file{}, {} bytes ({:.2} GiB) in {:.1} s",
        opts.shape.name,
        mix.label(),
        report.n_tensors,
        report.n_params,
        report.n_params as f64 / 1e9,
        report.files.len(),
        if report.files.len() == 1 { "" } else { "s" },
        report.total_bytes(),
        report.total_bytes() as f64 / (1u64 << 30) as f64,
        t0.elapsed().as_secs_f64()
    );
    for (ty, (n, elems, bytes)) in &report.types {
        println!(
            "  {:<5} {n:>4} tensors {elems:>13} elements {:>10.1} MB",
            ty.name(),
            mb(*bytes)
        );
    }
    Ok(())
}

/// Prompt ids: `--tokens` as given, or `-p` text with BOS when the model wants it.
fn prompt_ids(tok: &Tokenizer, input: &PromptInput, parse_special: bool) -> Result<Vec<u32>> {
    if let Some(ids) = &input.tokens {
        return Ok(ids.clone());
    }
    let text = input.prompt.as_deref().unwrap_or_default();
    Ok(tok.encode_prompt(text, parse_special)?)
}

fn load(model: &PathBuf) -> Result<(GgufModel, Tokenizer)> {
    let model = GgufModel::open(model)?;
    let tok = Tokenizer::from_gguf(model.metadata())?;
    Ok((model, tok))
}

fn run_generate(a: GenerateArgs) -> Result<()> {
    let (model, tok) = load(&a.model)?;
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
                "this model has no chat template (tokenizer.chat_template)".into(),
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
fn make_backend(
    model: &GgufModel,
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
        Backend::Gpu => Box::new(GpuBackend(GpuModel::from_gguf(device.gpu()?, model, ctx)?)),
    })
}

fn score(model: &PathBuf, input: &PromptInput, top: usize, device: &DeviceArgs) -> Result<()> {
    let (model, tok) = load(model)?;
    let ids = prompt_ids(&tok, input, false)?;
    let (logits, n_vocab) = match device.backend {
        Backend::Cpu => {
            let reference = ReferenceModel::from_gguf(&model, ReferenceOptions::default())?;
            let mut cache = reference.new_cache(ids.len());
            (
                reference.forward(&mut cache, &ids, Logits::All)?,
                reference.cfg.n_vocab,
            )
        }
        Backend::Gpu => {
            let mut gpu = GpuModel::from_gguf(device.gpu()?, &model, ids.len())?;
            (pollster::block_on(gpu.forward_all(&ids))?, gpu.cfg.n_vocab)
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
            json!({"top": idx.iter().map(|&i| json!([i, lp[i as usize]])).collect::<Vec<_>>()})
        })
        .collect();
    println!("{}", json!({"tokens": ids, "positions": positions}));
    Ok(())
}

/// Adapter, features and limits as JSON, or why there is no GPU.
fn gpu_json(device: &DeviceArgs) -> serde_json::Value {
    if device.backend == Backend::Cpu {
        return json!(null);
    }
    gpu_json_of(&device.gpu())
}

fn gpu_json_of(gpu: &Result<Arc<GpuContext>>) -> serde_json::Value {
    match gpu {
        Ok(ctx) => json!({
            "adapter": ctx.adapter_info.name,
            "backend": format!("{:?}", ctx.adapter_info.backend),
            "driver": ctx.adapter_info.driver_info,
            "f16": ctx.features.f16,
            "subgroups": ctx.features.subgroups,
            "subgroup_size": [ctx.features.subgroup_min_size, ctx.features.subgroup_max_size],
            "max_buffer_size": ctx.limits.max_buffer_size,
            "max_storage_buffer_binding_size": ctx.limits.max_storage_buffer_binding_size,
            "max_compute_invocations_per_workgroup": ctx.limits.max_compute_invocations_per_workgroup,
            "tuning": {
                "matvec_threads": ctx.tuning.matvec_threads_per_row,
                "matvec_rows": ctx.tuning.matvec_rows_per_invocation,
                "naga_loop_bounding": ctx.tuning.naga_loop_bounding,
                "prefill_kernel": ctx.tuning.matvec_prefill.map(|m| if m { "matvec" } else { "tiled" }),
            },
        }),
        Err(e) => json!({"error": e.to_string(), "code": e.code()}),
    }
}

fn bench(
    path: &PathBuf,
    prompt_len: usize,
    n: usize,
    as_json: bool,
    profile: bool,
    device: &DeviceArgs,
) -> Result<()> {
    let model = GgufModel::open(path)?;
    let n_vocab = llama_webgpu::model::LlamaConfig::from_gguf(model.metadata(), |n| {
        model.tensor(n).map(|t| t.info)
    })?
    .n_vocab as u32;
    // A fixed pseudo-random prompt: speed does not depend on the text.
    let prompt: Vec<u32> = (0..prompt_len as u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 7) % n_vocab)
        .collect();
    let t_load = web_time::Instant::now();
    let mut backend = make_backend(&model, prompt_len + n + 1, device)?;
    let load_s = t_load.elapsed().as_secs_f64();
    let t0 = web_time::Instant::now();
    let mut next = backend.forward_argmax(&prompt)?;
    let prefill_s = t0.elapsed().as_secs_f64();
    let t1 = web_time::Instant::now();
    for _ in 0..n {
        next = backend.forward_argmax(&[next])?;
    }
    let decode_s = t1.elapsed().as_secs_f64();
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
        let tuned = if tuned.is_empty() { String::new() } else { format!(" ({})", tuned.join(", ")) };
        println!(
            "{}{tuned}: prefill {:.1} tok/s ({prompt_len} tokens) · decode {:.2} tok/s ({n} tokens) · {:.2} GB/s of weights",
            backend_name,
            v["prefill_tokens_per_s"].as_f64().unwrap_or(0.0),
            decode_tps,
            v["decode_weight_gb_per_s"].as_f64().unwrap_or(0.0)
        );
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
fn mask_overhead(model: &GgufModel, backend: &mut dyn LogitsBackend, prompt: &[u32], n: usize) -> Result<serde_json::Value> {
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
fn profile_kernels(model: &GgufModel, prompt: &[u32], device: &DeviceArgs) -> Result<serde_json::Value> {
    if device.backend != Backend::Gpu {
        return Err(Error::InvalidArgument("--profile needs the GPU backend".into()));
    }
    const STEPS: usize = 8;
    let mut m = GpuModel::from_gguf(device.gpu()?, model, prompt.len() + STEPS + 1)?;
    let mut next = pollster::block_on(m.forward_argmax(prompt))?;
    let mut total: Vec<(&'static str, f64)> = Vec::new();
    for _ in 0..STEPS {
        for (name, ns) in pollster::block_on(m.profile_decode(next))? {
            match total.iter_mut().find(|(n, _)| *n == name) {
                Some(e) => e.1 += ns,
                None => total.push((name, ns)),
            }
        }
        next = (next + 1) % m.cfg.n_vocab as u32;
    }
    let sum: f64 = total.iter().map(|t| t.1).sum();
    let tied = model.tensor("output.weight").is_none();
    let bytes = |kernel: &str| -> Option<u64> {
        let suffix = format!(".{kernel}.weight");
        let b: u64 = match kernel {
            "output" => model
                .tensor(if tied { "token_embd.weight" } else { "output.weight" })?
                .info
                .size,
            _ => model
                .tensors()
                .filter(|t| t.info.name.starts_with("blk.") && t.info.name.ends_with(&suffix) && t.info.dims.len() >= 2)
                .map(|t| t.info.size)
                .sum(),
        };
        (b > 0).then_some(b)
    };
    Ok(json!(total
        .iter()
        .map(|&(name, ns)| {
            let us = ns / STEPS as f64 / 1e3;
            json!({
                "kernel": name,
                "us_per_token": us,
                "percent": 100.0 * ns / sum.max(1e-9),
                "weight_gb_per_s": bytes(name).map(|b| b as f64 / (us * 1e3)),
            })
        })
        .collect::<Vec<_>>()))
}

fn info(path: &PathBuf, as_json: bool, device: &DeviceArgs) -> Result<()> {
    let model = GgufModel::open(path)?;
    let meta = model.metadata();
    let mut types: std::collections::BTreeMap<String, (usize, u64, u64)> = Default::default();
    let mut n_params = 0u64;
    for t in model.tensors() {
        let e = types
            .entry(t.info.ggml_type.name().to_string())
            .or_default();
        e.0 += 1;
        e.1 += t.info.n_elements();
        e.2 += t.info.size;
        n_params += t.info.n_elements();
    }
    let arch = meta
        .str_opt("general.architecture")?
        .unwrap_or("(none)")
        .to_string();
    let cfg =
        llama_webgpu::model::LlamaConfig::from_gguf(meta, |n| model.tensor(n).map(|t| t.info)).ok();
    let shards: Vec<String> = model
        .shard_paths()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let gpu = (device.backend != Backend::Cpu).then(|| device.gpu());
    // What loading would take on this GPU at the default context (as the loader plans it).
    let memory = match (&cfg, &gpu) {
        (Some(c), Some(Ok(ctx))) => {
            let weights = llama_webgpu::gpu::loader::uploaded_bytes(model.tensors().map(|t| t.info));
            let context = llama_webgpu::gpu::model::MemoryPlan::resolve_context(ctx, c, None)?;
            let p = llama_webgpu::gpu::model::MemoryPlan::new(ctx, c, weights, context);
            json!({
                "weights": p.weights, "kv_cache": p.kv_cache, "activations": p.activations, "total": p.total(),
                "context_size": p.context_size, "max_context_size": p.max_context_size,
            })
        }
        _ => json!(null),
    };
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
        "gpu": gpu.as_ref().map_or(json!(null), gpu_json_of),
        "memory": memory,
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
    println!(
        "file:         {} ({} shard{})",
        path.display(),
        shards.len(),
        if shards.len() == 1 { "" } else { "s" }
    );
    println!(
        "file size:    {} bytes ({:.1} MiB)",
        model.file_size(),
        model.file_size() as f64 / (1 << 20) as f64
    );
    println!(
        "architecture: {arch}   name: {}",
        value["name"].as_str().unwrap_or("")
    );
    println!("parameters:   {n_params} ({:.1} M)", n_params as f64 / 1e6);
    if let Some(c) = &cfg {
        println!(
            "sizes:        vocab {} · embd {} · layers {} · heads {}/{} (dim {}) · ffn {} · ctx {} · rope θ {} {:?}{}",
            c.n_vocab, c.n_embd, c.n_layer, c.n_head, c.n_head_kv, c.head_dim, c.n_ff, c.context_length, c.rope_theta, c.rope_scaling,
            if c.tied_output { " · tied output" } else { "" }
        );
    }
    match &value["gpu"] {
        serde_json::Value::Null => {}
        g if g.get("error").is_some() => println!("gpu:          unavailable: {}", g["error"].as_str().unwrap_or("")),
        g => println!(
            "gpu:          {} ({}) · f16 {} · subgroups {} · max binding {} MiB · max buffer {} MiB",
            g["adapter"].as_str().unwrap_or(""),
            g["backend"].as_str().unwrap_or(""),
            g["f16"],
            g["subgroups"],
            g["max_storage_buffer_binding_size"].as_u64().unwrap_or(0) >> 20,
            g["max_buffer_size"].as_u64().unwrap_or(0) >> 20
        ),
    }
    if !memory.is_null() {
        let b = |k: &str| llama_webgpu::gpu::format_bytes(memory[k].as_u64().unwrap_or(0));
        println!(
            "memory plan:  {} = weights {} + KV cache {} + activations {} at the default context of {} (this device's limits allow up to {})",
            b("total"), b("weights"), b("kv_cache"), b("activations"), memory["context_size"], memory["max_context_size"]
        );
    }
    println!("tensor types:");
    for (k, (n, elems, bytes)) in &types {
        println!(
            "  {k:<8} {n:>5} tensors {elems:>13} elements {:>10.1} MiB",
            *bytes as f64 / (1 << 20) as f64
        );
    }
    Ok(())
}
