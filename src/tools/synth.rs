//! Synthetic Llama 3.x GGUFs: the exact tensor names, shapes, types and metadata of real Llama
//! 3.1 / 3.2 models in llama.cpp's Q4_K_M, Q4_0 and Q8_0 mixes, with random but valid quantized
//! weights, so that loading multi-GB models can be tested without downloading real weights.
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

use crate::model::{names, LlamaConfig, RopeScaling};
use crate::gguf::{
    header_bytes, padding, shard_name, GgufError, GgufModel, TensorEntry, Value, DEFAULT_ALIGNMENT,
};
use crate::quant::GgmlType;
use crate::decode::sampling::Rng;
use crate::{Error, Result};
use half::f16;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The shapes `Shape::preset` knows, as the CLI spells them.
pub const SHAPES: [&str; 4] = ["8b", "3b", "1b", "tiny"];

/// Hyperparameters and naming of a Llama model. Public fields, so tests can make their own.
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    /// `general.name`.
    pub name: String,
    /// `general.basename`, `general.size_label`, `general.license`.
    pub basename: String,
    pub size_label: String,
    pub license: String,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_vocab: usize,
    pub context_length: usize,
    pub rms_eps: f32,
    pub rope_theta: f32,
    /// Written as a `rope_freqs.weight` tensor, as llama.cpp's converter does for Llama 3.1+
    /// (no `rope.scaling.*` keys).
    pub rope_scaling: RopeScaling,
    /// No `output.weight`: the output projection reuses `token_embd.weight` (Llama 3.2 1B/3B).
    pub tied_output: bool,
    /// Write `llama.attention.key_length`/`value_length`, as llama.cpp's converter does when
    /// `config.json` has `head_dim` (Llama 3.2 does, Llama 3.1 does not).
    pub head_dim_keys: bool,
}

fn llama3_scaling(factor: f32) -> RopeScaling {
    RopeScaling::Llama3 {
        factor,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_context_length: 8192,
    }
}

impl Shape {
    /// Llama-3.1-8B-Instruct.
    pub fn llama31_8b() -> Shape {
        Shape {
            name: "Meta Llama 3.1 8B Instruct (synthetic)".into(),
            basename: "Meta-Llama-3.1".into(),
            size_label: "8B".into(),
            license: "llama3.1".into(),
            n_layer: 32,
            n_embd: 4096,
            n_ff: 14336,
            n_head: 32,
            n_head_kv: 8,
            head_dim: 128,
            n_vocab: 128256,
            context_length: 131072,
            rms_eps: 1e-5,
            rope_theta: 500000.0,
            rope_scaling: llama3_scaling(8.0),
            tied_output: false,
            head_dim_keys: false,
        }
    }

    /// Llama-3.2-3B-Instruct.
    pub fn llama32_3b() -> Shape {
        Shape {
            name: "Llama 3.2 3B Instruct (synthetic)".into(),
            basename: "Llama-3.2".into(),
            size_label: "3B".into(),
            license: "llama3.2".into(),
            n_layer: 28,
            n_embd: 3072,
            n_ff: 8192,
            n_head: 24,
            n_head_kv: 8,
            head_dim: 128,
            rope_scaling: llama3_scaling(32.0),
            tied_output: true,
            head_dim_keys: true,
            ..Shape::llama31_8b()
        }
    }

    /// Llama-3.2-1B-Instruct.
    pub fn llama32_1b() -> Shape {
        Shape {
            name: "Llama 3.2 1B Instruct (synthetic)".into(),
            size_label: "1B".into(),
            n_layer: 16,
            n_embd: 2048,
            n_ff: 8192,
            n_head: 32,
            n_head_kv: 8,
            head_dim: 64,
            ..Shape::llama32_3b()
        }
    }

    /// A small model with the full Llama 3 vocabulary, for fast tests: 2 layers, 256 wide,
    /// 4 query / 2 KV heads of 64, untied output like the 8B.
    pub fn tiny() -> Shape {
        Shape {
            name: "Llama 3 Tiny (synthetic)".into(),
            basename: "Llama-3-Tiny".into(),
            size_label: "70M".into(),
            n_layer: 2,
            n_embd: 256,
            n_ff: 512,
            n_head: 4,
            n_head_kv: 2,
            head_dim: 64,
            head_dim_keys: true,
            ..Shape::llama31_8b()
        }
    }

    /// `8b`, `3b`, `1b` or `tiny` (see [`SHAPES`]).
    pub fn preset(name: &str) -> Option<Shape> {
        Some(match name.to_ascii_lowercase().as_str() {
            "8b" => Shape::llama31_8b(),
            "3b" => Shape::llama32_3b(),
            "1b" => Shape::llama32_1b(),
            "tiny" => Shape::tiny(),
            _ => return None,
        })
    }

    /// The configuration a reader derives from the file (with the scaling that `rope_freqs`
    /// encodes).
    pub fn config(&self) -> LlamaConfig {
        LlamaConfig {
            n_vocab: self.n_vocab,
            n_embd: self.n_embd,
            n_layer: self.n_layer,
            n_head: self.n_head,
            n_head_kv: self.n_head_kv,
            head_dim: self.head_dim,
            n_ff: self.n_ff,
            context_length: self.context_length,
            rms_eps: self.rms_eps,
            rope_theta: self.rope_theta,
            rope_dim: self.head_dim,
            rope_scaling: self.rope_scaling.clone(),
            tied_output: self.tied_output,
        }
    }
}

/// A llama.cpp quantization mix (`llama-quantize` file type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantMix {
    /// `Q4_K_M`: Q4_K, with Q6_K for the output projection and for `attn_v`/`ffn_down` in the
    /// layers llama.cpp's `use_more_bits` picks.
    Q4KM,
    /// `Q4_0`: Q4_0, with Q6_K for the output projection.
    Q4_0,
    /// `Q8_0`: Q8_0 throughout.
    Q8_0,
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers and every third layer
/// in between get more bits in the `_M` mixes.
pub fn use_more_bits(i_layer: usize, n_layers: usize) -> bool {
    i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2
}

impl QuantMix {
    /// `q4_k_m`, `q4_0` or `q8_0` (any case).
    pub fn parse(s: &str) -> Option<QuantMix> {
        Some(match s.to_ascii_lowercase().as_str() {
            "q4_k_m" => QuantMix::Q4KM,
            "q4_0" => QuantMix::Q4_0,
            "q8_0" => QuantMix::Q8_0,
            _ => return None,
        })
    }

    pub fn label(self) -> &'static str {
        match self {
            QuantMix::Q4KM => "Q4_K_M",
            QuantMix::Q4_0 => "Q4_0",
            QuantMix::Q8_0 => "Q8_0",
        }
    }

    /// `general.file_type` (llama.cpp's `llama_ftype`).
    pub fn file_type(self) -> u32 {
        match self {
            QuantMix::Q4KM => 15,
            QuantMix::Q4_0 => 2,
            QuantMix::Q8_0 => 7,
        }
    }

    /// The type `llama-quantize` gives the 2-D weight `name` (1-D tensors stay F32), for a
    /// model of `n_layer` layers whose output is tied to the embedding or not.
    pub fn tensor_type(self, name: &str, n_layer: usize, tied_output: bool) -> GgmlType {
        let base = match self {
            QuantMix::Q4KM => GgmlType::Q4_K,
            QuantMix::Q4_0 => GgmlType::Q4_0,
            QuantMix::Q8_0 => return GgmlType::Q8_0,
        };
        let is_output =
            name == names::OUTPUT || (tied_output && name == names::TOKEN_EMBD);
        if is_output {
            return GgmlType::Q6_K;
        }
        if self == QuantMix::Q4KM
            && (name.ends_with(".attn_v.weight") || name.ends_with(".ffn_down.weight"))
        {
            let layer = name
                .strip_prefix("blk.")
                .and_then(|r| r.split('.').next())
                .and_then(|l| l.parse::<usize>().ok());
            if let Some(l) = layer {
                if use_more_bits(l, n_layer) {
                    return GgmlType::Q6_K;
                }
            }
        }
        base
    }
}

/// One tensor of the file to write.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedTensor {
    pub name: String,
    /// ggml order: `dims[0]` is the row.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Data bytes (before alignment padding).
    pub size: u64,
}

impl PlannedTensor {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// Every tensor of the model, in file order: `rope_freqs`, `token_embd`, the blocks (each in
/// name order, as `llama-quantize` writes them), `output_norm`, `output`.
pub fn plan(shape: &Shape, mix: QuantMix) -> Result<Vec<PlannedTensor>> {
    let cfg = shape.config();
    let by_name: BTreeMap<String, Vec<u64>> = cfg
        .expected_tensors()
        .into_iter()
        .map(|(n, d, _)| (n, d))
        .collect();
    let mut order = vec![
        names::ROPE_FREQS.to_string(),
        names::TOKEN_EMBD.to_string(),
    ];
    for l in 0..shape.n_layer {
        for w in [
            "attn_k",
            "attn_norm",
            "attn_output",
            "attn_q",
            "attn_v",
            "ffn_down",
            "ffn_gate",
            "ffn_norm",
            "ffn_up",
        ] {
            order.push(names::blk(l, w));
        }
    }
    order.push(names::OUTPUT_NORM.to_string());
    if !shape.tied_output {
        order.push(names::OUTPUT.to_string());
    }
    let has_rope_freqs = cfg.rope_freq_factors().is_some();
    let mut out = Vec::with_capacity(order.len());
    for name in order {
        if name == names::ROPE_FREQS && !has_rope_freqs {
            continue;
        }
        let dims = by_name[&name].clone();
        let ggml_type = if dims.len() < 2 {
            GgmlType::F32
        } else {
            mix.tensor_type(&name, shape.n_layer, shape.tied_output)
        };
        let n: u64 = dims.iter().product();
        if !dims[0].is_multiple_of(ggml_type.block_size() as u64) {
            return Err(Error::InvalidArgument(format!(
                "{name}: rows of {} values are not whole {ggml_type} blocks of {}",
                dims[0],
                ggml_type.block_size()
            )));
        }
        let size = ggml_type
            .bytes_for(n)
            .ok_or_else(|| Error::InvalidArgument(format!("{name}: size overflows")))?;
        out.push(PlannedTensor {
            name,
            dims,
            ggml_type,
            size,
        });
    }
    Ok(out)
}

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
    let rel = Path::new(".cache/models/ggml-vocab-llama-bpe.gguf");
    if rel.exists() {
        return rel.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Llama 3.1 Instruct's chat template as `scripts/setup` puts it beside the vocabulary file.
pub fn default_chat_template_path(vocab: &Path) -> PathBuf {
    vocab.with_file_name("meta-llama-Llama-3.1-8B-Instruct.jinja")
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

/// The file's metadata in llama.cpp's key order: `general.*`, `llama.*`, then the tokenizer
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
    let mut m: Vec<(String, Value)> = vec![
        ("general.architecture".into(), string("llama")),
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
        ("llama.block_count".into(), u32v(s.n_layer)),
        ("llama.context_length".into(), u32v(ctx)),
        ("llama.embedding_length".into(), u32v(s.n_embd)),
        ("llama.feed_forward_length".into(), u32v(s.n_ff)),
        ("llama.attention.head_count".into(), u32v(s.n_head)),
        ("llama.attention.head_count_kv".into(), u32v(s.n_head_kv)),
        ("llama.rope.freq_base".into(), Value::F32(s.rope_theta)),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Value::F32(s.rms_eps),
        ),
    ];
    if s.head_dim_keys {
        m.push(("llama.attention.key_length".into(), u32v(s.head_dim)));
        m.push(("llama.attention.value_length".into(), u32v(s.head_dim)));
    }
    m.push(("general.file_type".into(), Value::U32(opts.mix.file_type())));
    m.push(("llama.vocab_size".into(), u32v(s.n_vocab)));
    m.push(("llama.rope.dimension_count".into(), u32v(s.head_dim)));
    // Llama 3's scaling is the rope_freqs tensor; only linear scaling has keys.
    if let RopeScaling::Linear { factor } = s.rope_scaling {
        m.push(("llama.rope.scaling.type".into(), string("linear")));
        m.push(("llama.rope.scaling.factor".into(), Value::F32(factor)));
    }

    let vocab = GgufModel::open(&opts.vocab)?;
    let vm = vocab.metadata();
    let n_tokens = vm.str_array("tokenizer.ggml.tokens")?.len();
    if n_tokens != s.n_vocab {
        return Err(Error::InvalidArgument(format!(
            "{} has {n_tokens} tokens but the model's vocabulary is {}",
            opts.vocab.display(),
            s.n_vocab
        )));
    }
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

/// The RNG of one tensor: a function of the seed and the tensor's name only.
fn tensor_rng(seed: u64, name: &str) -> Rng {
    // FNV-1a of the name, mixed with the seed through SplitMix64.
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let mut r = Rng::new(seed ^ h);
    Rng::new(r.next_u64())
}

fn fill_random(rng: &mut Rng, out: &mut [u8]) {
    let mut chunks = out.chunks_exact_mut(8);
    for c in &mut chunks {
        c.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    let rest = chunks.into_remainder();
    let r = rng.next_u64().to_le_bytes();
    let n = rest.len();
    rest.copy_from_slice(&r[..n]);
}

/// A normal (not subnormal) f16 uniformly drawn from `[lo, hi)`.
fn rand_scale(rng: &mut Rng, lo: f32, hi: f32) -> f16 {
    f16::from_f32(lo + (hi - lo) * rng.next_f64() as f32)
}

/// One random block of `ty` whose values have a standard deviation of about 0.02 around zero.
fn fill_block(ty: GgmlType, rng: &mut Rng, b: &mut [u8]) {
    match ty {
        // d · (q − 8), q in 0..16: σ ≈ 4.6 d.
        GgmlType::Q4_0 => {
            b[..2].copy_from_slice(&rand_scale(rng, 2.5e-3, 6e-3).to_le_bytes());
            fill_random(rng, &mut b[2..18]);
        }
        // d · q, q in -128..128: σ ≈ 74 d.
        GgmlType::Q8_0 => {
            b[..2].copy_from_slice(&rand_scale(rng, 1.5e-4, 3.5e-4).to_le_bytes());
            fill_random(rng, &mut b[2..34]);
        }
        // d · sc · q − dmin · m over 8 sub-blocks with 6-bit sc and m: with dmin = 8 d and
        // m = round(15 sc / 16), a sub-block is d · sc · (q − 7.5), zero-centred like real
        // weights; σ ≈ 36 · 4.6 d.
        GgmlType::Q4_K => {
            let d = rand_scale(rng, 0.8e-4, 1.6e-4);
            let dmin = f16::from_f32(d.to_f32() * 8.0);
            b[..2].copy_from_slice(&d.to_le_bytes());
            b[2..4].copy_from_slice(&dmin.to_le_bytes());
            let r = rng.next_u64();
            let sc: [u8; 8] = std::array::from_fn(|j| ((r >> (6 * j)) & 63) as u8);
            let m: [u8; 8] = sc.map(|s| ((s as u32 * 15 + 8) / 16) as u8);
            let q = &mut b[4..16];
            for j in 0..4 {
                q[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
                q[j + 4] = m[j] | ((m[j + 4] >> 4) << 6);
                q[j + 8] = (sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4);
            }
            fill_random(rng, &mut b[16..144]);
        }
        // d · sc · (q − 32), 6-bit q, 16 signed sub-block scales (here in -16..16 so that d is
        // a normal f16): σ ≈ 9.2 · 18.5 d.
        GgmlType::Q6_K => {
            fill_random(rng, &mut b[..192]);
            let mut r = [0u8; 16];
            fill_random(rng, &mut r);
            for (dst, x) in b[192..208].iter_mut().zip(r) {
                *dst = ((x & 31) as i8 - 16) as u8;
            }
            b[208..210].copy_from_slice(&rand_scale(rng, 0.8e-4, 1.6e-4).to_le_bytes());
        }
        other => unreachable!("synth does not generate {other}"),
    }
}

/// Bytes generated per write: whole blocks, about 4 MiB.
const CHUNK_BYTES: usize = 4 << 20;

/// Generates tensor `t` chunk by chunk into `emit`.
fn generate(
    t: &PlannedTensor,
    seed: u64,
    freq_factors: &[f32],
    buf: &mut Vec<u8>,
    mut emit: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut rng = tensor_rng(seed, &t.name);
    let n = t.n_elements() as usize;
    if t.ggml_type == GgmlType::F32 {
        // Norm weights near 1, or the RoPE frequency factors; small either way.
        buf.clear();
        if t.name == names::ROPE_FREQS {
            freq_factors
                .iter()
                .for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
        } else {
            for _ in 0..n {
                let v = 1.0 + 0.1 * (rng.next_f64() as f32 - 0.5);
                buf.extend_from_slice(&v.to_le_bytes());
            }
        }
        return emit(buf);
    }
    let (bs, ts) = t.ggml_type.block_geometry();
    let n_blocks = n / bs;
    let per = (CHUNK_BYTES / ts).max(1);
    let mut done = 0;
    while done < n_blocks {
        let k = per.min(n_blocks - done);
        buf.resize(k * ts, 0);
        for b in buf.chunks_exact_mut(ts) {
            fill_block(t.ggml_type, &mut rng, b);
        }
        emit(buf)?;
        done += k;
    }
    Ok(())
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
