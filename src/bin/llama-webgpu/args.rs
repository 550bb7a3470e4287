//! Arguments shared by several commands: model URLs, the device and its tuning, the prompt,
//! generation and structured-output options.

use clap::{Args, ValueEnum};
use llama_webgpu::decode::constrain::{ConstraintError, ConstraintSpec};
use llama_webgpu::gpu::{GpuContext, GpuOptions, KernelTuning};
use llama_webgpu::{Error, Result};
use std::path::PathBuf;
use std::sync::Arc;

/// Models given as http(s) URLs (`-m https://.../model-00001-of-00003.gguf`): where downloads
/// are kept and how hard to retry.
#[derive(Args)]
pub(crate) struct NetArgs {
    /// Download directory for model URLs [default: $LLAMA_WEBGPU_CACHE, else
    /// $XDG_CACHE_HOME/llama-webgpu, else ~/.cache/llama-webgpu].
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) cache_dir: Option<PathBuf>,
    /// Failed attempts in a row allowed per download request (connection cuts, 5xx).
    #[arg(long, global = true, default_value_t = 5, value_name = "N")]
    pub(crate) retries: u32,
    /// No download progress on stderr.
    #[arg(long, global = true)]
    pub(crate) quiet: bool,
}

impl NetArgs {
    /// A local path as it is; a URL downloaded (all shards of a split set) into the cache, and
    /// the path of its first shard there.
    pub(crate) fn resolve(&self, model: PathBuf) -> Result<PathBuf> {
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
        Ok(llama_webgpu::net::fetch_model(url, &opts)?)
    }
}

#[derive(Args)]
pub(crate) struct SynthArgs {
    /// Output file; with --split-max-size, shards OUT-00001-of-0000N.gguf (OUT without .gguf).
    #[arg(short, long)]
    pub(crate) output: PathBuf,
    /// 70b/8b = Llama-3.1-70B/8B-Instruct, 3b/1b = Llama-3.2-3B/1B-Instruct, tiny = 2 small layers;
    /// qwen2.5-*, qwen3-*, gemma3-*, phi3.5-mini = those released models (with their vocabulary
    /// and chat template).
    #[arg(long, default_value = "8b", value_parser = llama_webgpu::tools::synth::SHAPES)]
    pub(crate) shape: String,
    /// Keep only the first N layers (blocks) of the shape: the same per-layer shapes, vocabulary,
    /// output and RoPE scaling, in a smaller file [default: all of them].
    #[arg(long, value_name = "N")]
    pub(crate) layers: Option<usize>,
    /// The family whose block the shape is written in: llama, or qwen2 (Q/K/V biases), qwen3
    /// (per-head Q/K norms), gemma3 (those, post-norms, GELU, local layers, tied output), phi3
    /// (fused QKV and gate/up, long-context RoPE factors).
    #[arg(long, default_value = "llama", value_parser = ["llama", "qwen2", "qwen3", "gemma3", "phi3"])]
    pub(crate) arch: String,
    /// llama.cpp quantization mix.
    #[arg(long = "type", default_value = "q4_k_m", value_parser = ["q4_k_m", "q4_0", "q8_0", "iq3_xxs", "iq2_m", "iq2_s", "iq2_xs", "iq2_xxs", "iq1_m", "iq1_s"])]
    pub(crate) ty: String,
    /// Write gguf-split shards of at most this much tensor data each: bytes, or K/M/G
    /// (decimal, as gguf-split: 2G = 2e9 bytes).
    #[arg(long)]
    pub(crate) split_max_size: Option<String>,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// The context length key (default: the real model's, 131072 for Llama 3.1).
    #[arg(long)]
    pub(crate) context: Option<usize>,
    /// GGUF with the model's vocabulary [default: the shape's in .cache/models, e.g.
    /// ggml-vocab-llama-bpe.gguf].
    #[arg(long)]
    pub(crate) vocab: Option<PathBuf>,
    /// Jinja chat template file [default: the shape's family's beside the vocabulary, e.g.
    /// meta-llama-Llama-3.1-8B-Instruct.jinja, if present].
    #[arg(long)]
    pub(crate) chat_template: Option<PathBuf>,
}

/// Where to run, and which GPU features to allow (turning them off exercises the fallbacks
/// that browsers without them get).
#[derive(Args, Clone)]
pub(crate) struct DeviceArgs {
    #[arg(long, value_enum, default_value_t = Backend::Gpu)]
    pub(crate) backend: Backend,
    /// Do not use shader-f16 even if the adapter has it.
    #[arg(long)]
    pub(crate) no_f16: bool,
    /// Do not use subgroup operations even if the adapter has them.
    #[arg(long)]
    pub(crate) no_subgroups: bool,
    /// Cap the storage-binding size in bytes (e.g. 134217728 for WebGPU's default).
    #[arg(long)]
    pub(crate) max_binding: Option<u64>,
    /// Tuning: invocations sharing one weight row in the decode matrix-vector kernel (1-64, a
    /// power of two; default: chosen for the device).
    #[arg(long, value_name = "N", value_parser = power_of_two::<64>)]
    pub(crate) matvec_threads: Option<u32>,
    /// Tuning: weight rows each group of those invocations takes, sharing its activation loads
    /// (1, 2 or 4; default: chosen for the device).
    #[arg(long, value_name = "N", value_parser = power_of_two::<4>)]
    pub(crate) matvec_rows: Option<u32>,
    /// Tuning: let naga guard every shader loop with an iteration counter, as it does for
    /// untrusted shaders (native only; off by default).
    #[arg(long)]
    pub(crate) naga_loop_bounding: bool,
    /// Tuning: the kernel for prompts past 16 tokens: the tiled matrix-matrix kernel, or the
    /// matrix-vector kernel 8 tokens per weight decode (default: chosen for the device).
    #[arg(long, value_name = "KERNEL")]
    pub(crate) prefill_kernel: Option<PrefillKernel>,
    /// Tuning: SwiGLU in a decode step: its own kernel, or formed as the down projection loads
    /// its activations, one dispatch fewer per layer (default: fused on GPUs, separate on CPU
    /// devices).
    #[arg(long, value_name = "HOW")]
    pub(crate) swiglu: Option<Swiglu>,
    /// Tuning: the RMSNorm before each block and the residual add after it in a decode step:
    /// kernels of their own, or folded into the products (normalized as Q, K, V, gate, up and
    /// the output load their activations, added as O and down write), two dispatches fewer
    /// per layer (default: fused on GPUs, separate on CPU devices).
    #[arg(long, value_name = "HOW")]
    pub(crate) norm: Option<Swiglu>,
    /// Tuning: with the norms folded in, a layer's Q, K and V in one product and its gate and up
    /// in one (where the loader put each set in one buffer), or one product per matrix
    /// (default: fused).
    #[arg(long, value_name = "HOW")]
    pub(crate) join: Option<Swiglu>,
    /// Decode steps and prompts of up to 16 tokens multiply 8-bit activations with
    /// packed-integer dot products (dot4I8Packed), or in f32 (default: off until a GPU has
    /// measured them; `on` fails where the device lacks them).
    #[arg(long, value_name = "ON|OFF")]
    pub(crate) int_dot: Option<OnOff>,
    /// Greedy decoding queues each step on the GPU before the last step's token is read back,
    /// or waits for each token (default: on for GPUs, off on CPU devices, where the driver's
    /// threads share the cores that record the next step).
    #[arg(long, value_name = "ON|OFF")]
    pub(crate) chain: Option<OnOff>,
    /// The context made from these options, made once: `bench` asks for it three times (model,
    /// adapter facts, profile), and each new one would be another device.
    #[arg(skip)]
    pub(crate) context: std::cell::OnceCell<Arc<GpuContext>>,
}

/// Fused into a neighbouring kernel or a kernel of its own (`--swiglu`, `--norm`, `--join`).
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Swiglu {
    Fused,
    Separate,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub(crate) enum OnOff {
    On,
    Off,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum PrefillKernel {
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
    pub(crate) fn gpu(&self) -> Result<Arc<GpuContext>> {
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
                fuse_swiglu: self.swiglu.map(|s| matches!(s, Swiglu::Fused)),
                fuse_norm: self.norm.map(|s| matches!(s, Swiglu::Fused)),
                join_products: self.join.map(|s| matches!(s, Swiglu::Fused)),
                int_dot: self.int_dot.map(|o| o == OnOff::On),
                chain_steps: self.chain.map(|o| o == OnOff::On),
            },
        };
        let ctx = Arc::new(GpuContext::new_blocking(opts)?);
        Ok(self.context.get_or_init(|| ctx).clone())
    }
}

#[derive(Args)]
#[group(required = true, multiple = false)]
pub(crate) struct PromptInput {
    /// Prompt text; BOS is added when the model asks for it.
    #[arg(short, long)]
    pub(crate) prompt: Option<String>,
    /// Comma-separated token ids, used as they are.
    #[arg(long, value_delimiter = ',')]
    pub(crate) tokens: Option<Vec<u32>>,
}

/// What `score` reads: one prompt, or many sequences scored with one model load.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub(crate) struct ScoreInput {
    /// Prompt text; BOS is added when the model asks for it.
    #[arg(short, long)]
    pub(crate) prompt: Option<String>,
    /// Comma-separated token ids, used as they are.
    #[arg(long, value_delimiter = ',')]
    pub(crate) tokens: Option<Vec<u32>>,
    /// A file of token sequences, one per line (comma-separated ids; empty lines are skipped).
    /// Each is scored from an empty KV cache and printed as its own JSON line, in order; the
    /// model is loaded and its kernels built once for all of them.
    #[arg(long)]
    pub(crate) tokens_file: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub(crate) enum Backend {
    Cpu,
    Gpu,
}

#[derive(Args)]
pub(crate) struct GenerateArgs {
    #[arg(short, long)]
    pub(crate) model: PathBuf,
    #[command(flatten)]
    pub(crate) input: PromptInput,
    /// Tokens to generate at most.
    #[arg(short = 'n', long = "max-tokens", default_value_t = 32)]
    pub(crate) n: usize,
    #[arg(long, default_value_t = 0.8)]
    pub(crate) temp: f32,
    #[arg(long, default_value_t = 40)]
    pub(crate) top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    pub(crate) top_p: f32,
    #[arg(long, default_value_t = 0.05)]
    pub(crate) min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    pub(crate) repeat_penalty: f32,
    /// RNG seed; random when omitted.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Wrap -p in the model's chat template as a user message.
    #[arg(long)]
    pub(crate) chat: bool,
    /// System message for --chat.
    #[arg(long)]
    pub(crate) system: Option<String>,
    /// Jinja chat template file for --chat, in place of the GGUF's `tokenizer.chat_template`
    /// (or where the file has none, as base models do).
    #[arg(long, value_name = "FILE")]
    pub(crate) chat_template: Option<PathBuf>,
    /// Stop when this text appears (repeatable).
    #[arg(long = "stop")]
    pub(crate) stop: Vec<String>,
    /// Context size (default: the prompt plus -n, capped at the model's context length).
    #[arg(long)]
    pub(crate) ctx: Option<usize>,
    #[command(flatten)]
    pub(crate) device: DeviceArgs,
    /// After the streamed text, print one JSON object as the last line.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) constraint: ConstraintArgs,
}

/// Structured output: at most one of these restricts what `generate` may write.
#[derive(Args)]
#[group(multiple = false)]
pub(crate) struct ConstraintArgs {
    /// The output is JSON that validates against this JSON Schema file.
    #[arg(long, value_name = "FILE")]
    pub(crate) json_schema: Option<PathBuf>,
    /// The output is any JSON object.
    #[arg(long)]
    pub(crate) json_object: bool,
    /// The output matches this grammar file: Lark (llguidance's dialect) or GBNF (`root ::= ...`).
    #[arg(long, value_name = "FILE")]
    pub(crate) grammar: Option<PathBuf>,
    /// The output fully matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub(crate) regex: Option<String>,
}

impl ConstraintArgs {
    pub(crate) fn spec(&self) -> Result<Option<ConstraintSpec>> {
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
