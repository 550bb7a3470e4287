//! Synthetic Llama 3.x GGUFs: the exact tensor names, shapes, types and metadata of real Llama
//! 3.1 / 3.2 models in llama.cpp's Q4_K_M, Q4_0, Q8_0 and IQ2_M mixes, with random but valid quantized
//! weights, so that loading multi-GB models can be tested without downloading real weights.
//! Any shape can also be written in another family's block (Qwen2, Qwen3, Gemma 3, Phi-3:
//! [`Shape::for_arch`]), with that family's keys and tensors; the other families' released
//! models are presets of their own.
//!
//! The tokenizer (`tokenizer.ggml.*`) is copied from a real Llama 3 vocabulary GGUF, with
//! `<|eot_id|>` as EOS as in the Instruct models and, optionally, a chat template.
//!
//! Output is streamed: the header first, then each tensor generated block by block from its own
//! seeded RNG, so memory stays small for any shape and a tensor's bytes depend only on the seed,
//! its name and its type, not on chunking, order or how the file is split into shards.
//!
//! Weights are scaled like real ones (standard deviation about 0.02, zero-centred) with small
//! finite f16 scales, so a forward pass gives finite logits; norm weights are close to 1.

mod blocks;
use blocks::{generate, CHUNK_BYTES};
mod mix;
mod shape;

pub use mix::{plan, use_more_bits, PlannedTensor, QuantMix, MIXES};
pub use shape::{Shape, SHAPES};

use crate::gguf::{
    header_bytes, padding, shard_name, GgufError, GgufFile, TensorEntry, Value, DEFAULT_ALIGNMENT,
};
use crate::model::RopeScaling;
use crate::quant::GgmlType;
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// What to write.
#[derive(Clone, Debug)]
pub struct SynthOptions {
    pub shape: Shape,
    pub mix: QuantMix,
    pub seed: u64,
    /// Overrides `llama.context_length`.
    pub context_length: Option<usize>,
    /// A GGUF holding the Llama 3 vocabulary (`tokenizer.ggml.*`), e.g. llama.cpp's
    /// `ggml-vocab-llama-bpe.gguf`.
    pub vocab: PathBuf,
    /// `tokenizer.chat_template`; `None` keeps the vocabulary file's (if any).
    pub chat_template: Option<String>,
    /// Write gguf-split shards of at most this many tensor-data bytes each (a tensor is never
    /// split; the first shard holds all metadata), named `OUT-00001-of-0000N.gguf`.
    pub split_max_bytes: Option<u64>,
}

impl SynthOptions {
    pub fn new(shape: Shape, mix: QuantMix, vocab: impl Into<PathBuf>) -> Self {
        SynthOptions {
            shape,
            mix,
            seed: 0,
            context_length: None,
            vocab: vocab.into(),
            chat_template: None,
            split_max_bytes: None,
        }
    }
}

/// What was written.
#[derive(Clone, Debug, Default)]
pub struct SynthReport {
    /// Each file written, with its size in bytes (one, or the shards in order).
    pub files: Vec<(PathBuf, u64)>,
    pub n_tensors: usize,
    pub n_params: u64,
    /// Per type: tensors, elements, data bytes.
    pub types: BTreeMap<GgmlType, (usize, u64, u64)>,
}

impl SynthReport {
    /// Bytes across all files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|(_, s)| s).sum()
    }
}

/// `.cache/models/ggml-vocab-llama-bpe.gguf` (fetched by `scripts/setup`), relative to the
/// working directory if it is there, else to the crate root it was built from.
pub fn default_vocab_path() -> PathBuf {
    cache_model(Shape::tiny().vocab_file)
}

/// `.cache/models/FILE`, as [`default_vocab_path`] finds it.
pub fn cache_model(file: &str) -> PathBuf {
    let rel = Path::new(".cache/models").join(file);
    if rel.exists() {
        return rel;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Llama 3.1 Instruct's chat template as `scripts/setup` puts it beside the vocabulary file.
pub fn default_chat_template_path(vocab: &Path) -> PathBuf {
    vocab.with_file_name(Shape::tiny().chat_template_file)
}

/// A size like `2G`, `500M`, `64K` or `123456` (bytes). Units are decimal, as in llama.cpp's
/// `gguf-split --split-max-size` (`2G` = 2·10⁹ bytes).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 1e3),
        b'M' | b'm' => (&s[..s.len() - 1], 1e6),
        b'G' | b'g' => (&s[..s.len() - 1], 1e9),
        _ => (s, 1.0),
    };
    let v: f64 = num.trim().parse().ok()?;
    let bytes = (v * mult).round();
    (1.0..1e18).contains(&bytes).then_some(bytes as u64)
}

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Gguf(GgufError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// The file's metadata in llama.cpp's key order: `general.*`, the family's (`llama.*`, …), then the tokenizer
/// keys of `opts.vocab`, with EOS set to `<|eot_id|>` (as in the Instruct GGUFs).
pub fn metadata(opts: &SynthOptions) -> Result<Vec<(String, Value)>> {
    let s = &opts.shape;
    let ctx = opts.context_length.unwrap_or(s.context_length);
    if ctx == 0 {
        return Err(Error::InvalidArgument(
            "context length must be positive".into(),
        ));
    }
    let u32v = |x: usize| Value::U32(x as u32);
    let string = |x: &str| Value::String(x.to_string());
    let a = s.arch.name();
    let k = |key: &str| format!("{a}.{key}");
    let mut m: Vec<(String, Value)> = vec![
        ("general.architecture".into(), string(a)),
        ("general.type".into(), string("model")),
        ("general.name".into(), string(&s.name)),
        ("general.finetune".into(), string("Instruct")),
        ("general.basename".into(), string(&s.basename)),
        ("general.size_label".into(), string(&s.size_label)),
        ("general.license".into(), string(&s.license)),
        (
            "general.description".into(),
            string(&format!(
                "Synthetic random weights written by llama-webgpu synth (seed {}); not a trained model",
                opts.seed
            )),
        ),
        (k("block_count"), u32v(s.n_layer)),
        (k("context_length"), u32v(ctx)),
        (k("embedding_length"), u32v(s.n_embd)),
        (k("feed_forward_length"), u32v(s.n_ff)),
        (k("attention.head_count"), u32v(s.n_head)),
        (k("attention.head_count_kv"), u32v(s.n_head_kv)),
        (k("rope.freq_base"), Value::F32(s.rope_theta)),
        (k("attention.layer_norm_rms_epsilon"), Value::F32(s.rms_eps)),
    ];
    if s.head_dim_keys {
        m.push((k("attention.key_length"), u32v(s.head_dim)));
        m.push((k("attention.value_length"), u32v(s.head_dim)));
    }
    if let Some((ctx_orig, attn_factor)) = s.phi_rope {
        m.push((k("rope.scaling.original_context_length"), u32v(ctx_orig)));
        m.push((k("rope.scaling.attn_factor"), Value::F32(attn_factor)));
    }
    if let Some(w) = s.sliding {
        m.push((k("attention.sliding_window"), Value::U32(w.window)));
        m.push((k("attention.sliding_window_pattern"), Value::U32(w.period)));
        m.push((k("rope.freq_base_swa"), Value::F32(w.rope_base)));
    }
    m.push(("general.file_type".into(), Value::U32(opts.mix.file_type())));
    m.push((k("vocab_size"), u32v(s.n_vocab)));
    m.push((k("rope.dimension_count"), u32v(s.head_dim)));
    // Llama 3's scaling is the rope_freqs tensor; only linear scaling has keys.
    if let RopeScaling::Linear { factor } = s.rope_scaling {
        m.push((k("rope.scaling.type"), string("linear")));
        m.push((k("rope.scaling.factor"), Value::F32(factor)));
    }

    let vocab = GgufFile::open(&opts.vocab)?;
    let vm = vocab.metadata();
    let n_tokens = vm.str_array("tokenizer.ggml.tokens")?.len();
    // A model may pad its embedding past its tokens (Qwen2.5-7B: 152,064 rows for 151,936
    // tokens); llama.cpp's converter fills the gap with unused `[PADn]` tokens, and so do we.
    if n_tokens > s.n_vocab || n_tokens + 1024 < s.n_vocab {
        return Err(Error::InvalidArgument(format!(
            "{} has {n_tokens} tokens but the model's vocabulary is {}",
            opts.vocab.display(),
            s.n_vocab
        )));
    }
    let pad = |k: &str, v: &Value| -> Value {
        let Value::Array(ty, items) = v else {
            return v.clone();
        };
        let mut items = items.clone();
        for i in n_tokens..s.n_vocab {
            items.push(match k {
                "tokenizer.ggml.tokens" => Value::String(format!("[PAD{i}]")),
                // llama.cpp's token type UNUSED.
                "tokenizer.ggml.token_type" => Value::I32(5),
                _ => Value::F32(0.0),
            });
        }
        Value::Array(*ty, items)
    };
    let eot = vm
        .get("tokenizer.ggml.tokens")
        .and_then(|v| v.as_array())
        .and_then(|a| a.iter().position(|t| t.as_str() == Some("<|eot_id|>")));
    let mut has_eos = false;
    for (k, v) in vm.iter() {
        if !k.starts_with("tokenizer.") {
            continue;
        }
        if k == "tokenizer.chat_template" && opts.chat_template.is_some() {
            continue;
        }
        let v = match (k, eot) {
            ("tokenizer.ggml.eos_token_id", Some(id)) => {
                has_eos = true;
                Value::U32(id as u32)
            }
            ("tokenizer.ggml.tokens" | "tokenizer.ggml.token_type" | "tokenizer.ggml.scores", _) => pad(k, v),
            _ => v.clone(),
        };
        m.push((k.to_string(), v));
    }
    if let (false, Some(id)) = (has_eos, eot) {
        m.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(id as u32)));
    }
    if let Some(t) = &opts.chat_template {
        m.push(("tokenizer.chat_template".into(), Value::String(t.clone())));
    }
    m.push(("general.quantization_version".into(), Value::U32(2)));
    Ok(m)
}

/// Groups tensors into shards as llama.cpp's `gguf-split --split-max-size` does: a new shard
/// starts when the current one's aligned tensor data plus the next tensor would exceed `max`.
pub fn split_groups(tensors: &[PlannedTensor], max: u64) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let (mut start, mut size) = (0usize, 0u64);
    for (i, t) in tensors.iter().enumerate() {
        let n = t.size + padding(t.size, DEFAULT_ALIGNMENT);
        if i > 0 && size + n > max {
            groups.push(start..i);
            start = i;
            size = n;
        } else {
            size += n;
        }
    }
    groups.push(start..tensors.len());
    groups
}


/// The header [`write`] would give the model as one file (its metadata and tensor infos, up to
/// the aligned start of the data) and the length of that file: what a loader sees first, for a
/// model too large to write, such as `70b`.
pub fn header(opts: &SynthOptions) -> Result<(Vec<u8>, u64)> {
    let tensors = plan(&opts.shape, opts.mix)?;
    let entries: Vec<TensorEntry> = tensors
        .iter()
        .map(|t| TensorEntry { name: &t.name, dims: &t.dims, ggml_type: t.ggml_type, size: t.size })
        .collect();
    let (head, alignment) = header_bytes(&metadata(opts)?, &entries, DEFAULT_ALIGNMENT);
    let data: u64 = tensors.iter().map(|t| t.size + padding(t.size, alignment)).sum();
    let len = head.len() as u64 + data;
    Ok((head, len))
}

/// Writes the model to `out`, or with `split_max_bytes` to gguf-split shards named after `out`
/// (`x.gguf` → `x-00001-of-0000N.gguf`). See [`write_with`].
pub fn write(opts: &SynthOptions, out: &Path) -> Result<SynthReport> {
    write_with(opts, out, |_, _| {})
}

/// [`write`], calling `done(path, bytes)` after each file is complete.
pub fn write_with(
    opts: &SynthOptions,
    out: &Path,
    mut done: impl FnMut(&Path, u64),
) -> Result<SynthReport> {
    let tensors = plan(&opts.shape, opts.mix)?;
    let mut meta = Some(metadata(opts)?);
    let freq_factors = opts.shape.config().rope_freq_factors().unwrap_or_default();
    let groups = match opts.split_max_bytes {
        None => std::iter::once(0..tensors.len()).collect(),
        Some(0) => {
            return Err(Error::InvalidArgument(
                "--split-max-size must be positive".into(),
            ))
        }
        Some(max) => split_groups(&tensors, max),
    };
    if groups.len() > u16::MAX as usize {
        return Err(Error::InvalidArgument(format!(
            "{} shards are more than split.count (a u16) can hold",
            groups.len()
        )));
    }
    let prefix = {
        let s = out.to_string_lossy();
        s.strip_suffix(".gguf").unwrap_or(&s).to_string()
    };
    let mut report = SynthReport {
        n_tensors: tensors.len(),
        ..Default::default()
    };
    for t in &tensors {
        report.n_params += t.n_elements();
        let e = report.types.entry(t.ggml_type).or_default();
        e.0 += 1;
        e.1 += t.n_elements();
        e.2 += t.size;
    }
    let mut buf = Vec::with_capacity(CHUNK_BYTES);
    let count = groups.len();
    for (no, range) in groups.into_iter().enumerate() {
        // Shard 0 (or the single file) carries all metadata; every shard the split keys.
        let mut kv = if no == 0 {
            meta.take().expect("metadata is used once")
        } else {
            Vec::new()
        };
        let path = match opts.split_max_bytes {
            None => out.to_path_buf(),
            Some(_) => {
                kv.push(("split.no".into(), Value::U16(no as u16)));
                kv.push(("split.count".into(), Value::U16(count as u16)));
                kv.push((
                    "split.tensors.count".into(),
                    Value::I32(tensors.len() as i32),
                ));
                PathBuf::from(shard_name(&prefix, no as u32, count as u32))
            }
        };
        let shard = &tensors[range];
        let entries: Vec<TensorEntry> = shard
            .iter()
            .map(|t| TensorEntry {
                name: &t.name,
                dims: &t.dims,
                ggml_type: t.ggml_type,
                size: t.size,
            })
            .collect();
        let (head, alignment) = header_bytes(&kv, &entries, DEFAULT_ALIGNMENT);
        drop(kv);
        let file = File::create(&path).map_err(|e| io_err(&path, e))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let mut written = head.len() as u64;
        w.write_all(&head).map_err(|e| io_err(&path, e))?;
        drop(head);
        let zeros = [0u8; 64];
        for t in shard {
            generate(t, opts.seed, &freq_factors, &mut buf, |bytes| {
                w.write_all(bytes)
            })
            .map_err(|e| io_err(&path, e))?;
            let pad = padding(t.size, alignment) as usize;
            let mut left = pad;
            while left > 0 {
                let k = left.min(zeros.len());
                w.write_all(&zeros[..k]).map_err(|e| io_err(&path, e))?;
                left -= k;
            }
            written += t.size + pad as u64;
        }
        w.flush().map_err(|e| io_err(&path, e))?;
        done(&path, written);
        report.files.push((path, written));
    }
    Ok(report)
}

