//! `llama-webgpu`: the command-line tool. Its subcommands and output formats are a stable
//! interface that scripts and tests rely on.
//!
//! `args.rs` holds the shared arguments; each command group has a file: `run.rs` (tokenize,
//! generate, score), `info.rs`, `files.rs` (synth, split) and `bench.rs` (the benchmark and
//! per-kernel profiling harness).

mod args;
mod bench;
mod files;
mod info;
mod run;

use args::{DeviceArgs, GenerateArgs, NetArgs, ScoreInput, SynthArgs};
use clap::{Parser, Subcommand};
use llama_webgpu::Result;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Teacher-forced scoring: the top next tokens after every prefix, and how many of the
    /// position's logits are not finite (`non_finite`).
    Score {
        #[arg(short, long)]
        model: PathBuf,
        #[command(flatten)]
        input: ScoreInput,
        /// How many top tokens to report per position.
        #[arg(long, default_value_t = 5)]
        top: usize,
        /// Tokens per GPU step (default: as many as fit one step). Steps of at most 16 tokens run
        /// the decode kernels (the packed-integer products where they are on), so `--chunk 16`
        /// scores what decoding computes; 1 is exactly token-by-token decoding.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        chunk: Option<u32>,
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
        /// Decode by seeded sampling, as chat does (temperature 0.8, top-k 40, top-p 0.95,
        /// min-p 0.05, seed 0: each token drawn on the GPU), instead of greedily.
        #[arg(long)]
        sample: bool,
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
        } => run::tokenize(&net.resolve(model)?, special, &text),
        Command::Info {
            model,
            json,
            device,
        } => info::info(&net.resolve(model)?, json, &device),
        Command::Score {
            model,
            input,
            top,
            chunk,
            json: _,
            device,
        } => run::score(&net.resolve(model)?, &input, top, chunk, &device),
        Command::Generate(mut args) => {
            args.model = net.resolve(args.model)?;
            run::generate(args)
        }
        Command::Bench {
            model,
            prompt_len,
            n,
            json,
            profile,
            sample,
            device,
        } => bench::bench(&net.resolve(model)?, prompt_len, n, json, profile, sample, &device),
        Command::Synth(args) => files::synth(args),
        Command::Split {
            model,
            prefix,
            split_max_size,
        } => files::split(&net.resolve(model)?, &prefix, &split_max_size),
    }
}
