//! The model shapes synth writes: Llama 3.1 70B and 8B and 3.2 3B/1B as released, and a tiny
//! one for fast tests; any of them in another family's block ([`Shape::for_arch`]).

use crate::model::{Arch, BlockGraph, ModelConfig, ModelShape, RopeScaling, SlidingWindow};

/// The shapes `Shape::preset` knows, as the CLI spells them: Llama's, then the other families'
/// released models (their own vocabulary sizes: see [`Shape::vocab_file`]).
pub const SHAPES: [&str; 14] = [
    "70b",
    "8b",
    "3b",
    "1b",
    "tiny",
    "qwen2.5-0.5b",
    "qwen2.5-1.5b",
    "qwen2.5-7b",
    "qwen3-0.6b",
    "qwen3-4b",
    "qwen3-8b",
    "gemma3-1b",
    "gemma3-4b",
    "phi3.5-mini",
];

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
    /// The family: its key prefix and its block ([`BlockGraph::of`]).
    pub arch: Arch,
    /// Gemma 3's local layers (`attention.sliding_window`, `…_pattern`).
    pub sliding: Option<SlidingWindow>,
    /// Phi-3's long-context RoPE: `rope.scaling.original_context_length` and
    /// `rope.scaling.attn_factor`, with `rope_factors_long`/`_short` tensors.
    pub phi_rope: Option<(usize, f32)>,
    /// The vocabulary GGUF (by file name in `.cache/models`, where scripts/setup puts it) whose
    /// tokens the model has: Llama 3's, Qwen2's (Qwen2.5 and Qwen3), Gemma 3's (the 270M
    /// model's) or Phi-3's.
    pub vocab_file: &'static str,
    /// The family's official chat template, by file name in `.cache/models`.
    pub chat_template_file: &'static str,
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
            arch: Arch::Llama,
            sliding: None,
            phi_rope: None,
            vocab_file: "ggml-vocab-llama-bpe.gguf",
            chat_template_file: "meta-llama-Llama-3.1-8B-Instruct.jinja",
        }
    }

    /// Llama-3.1-70B-Instruct: 80 layers 8192 wide, 64 query and 8 KV heads.
    pub fn llama31_70b() -> Shape {
        Shape {
            name: "Meta Llama 3.1 70B Instruct (synthetic)".into(),
            size_label: "70B".into(),
            n_layer: 80,
            n_embd: 8192,
            n_ff: 28672,
            n_head: 64,
            n_head_kv: 8,
            ..Shape::llama31_8b()
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

    /// A released model of another family, with its sizes (from its `config.json`), its
    /// family's vocabulary and chat template.
    #[allow(clippy::too_many_arguments)]
    fn family(arch: Arch, name: &str, size: &str, [n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, n_vocab, context_length]: [usize; 8], rope_theta: f32, rms_eps: f32, tied_output: bool) -> Shape {
        Shape {
            name: format!("{name} (synthetic)"),
            basename: name.split('-').take(2).collect::<Vec<_>>().join("-"),
            size_label: size.into(),
            license: "other".into(),
            n_layer,
            n_embd,
            n_ff,
            n_head,
            n_head_kv,
            head_dim,
            n_vocab,
            context_length,
            rms_eps,
            rope_theta,
            rope_scaling: RopeScaling::None,
            tied_output,
            head_dim_keys: true,
            arch,
            sliding: None,
            phi_rope: None,
            vocab_file: match arch {
                Arch::Llama => "ggml-vocab-llama-bpe.gguf",
                Arch::Qwen2 | Arch::Qwen3 => "ggml-vocab-qwen2.gguf",
                Arch::Gemma3 => "gemma-3-270m-q4_k_m.gguf",
                Arch::Phi3 => "ggml-vocab-phi-3.gguf",
            },
            chat_template_file: match arch {
                Arch::Llama => "meta-llama-Llama-3.1-8B-Instruct.jinja",
                Arch::Qwen2 => "Qwen-Qwen2.5-7B-Instruct.jinja",
                Arch::Qwen3 => "Qwen-Qwen3-0.6B.jinja",
                Arch::Gemma3 => "google-gemma-3-it.jinja",
                Arch::Phi3 => "microsoft-Phi-3.5-mini-instruct.jinja",
            },
        }
    }

    /// `70b`, `8b`, `3b`, `1b`, `tiny` or another family's model (see [`SHAPES`]).
    pub fn preset(name: &str) -> Option<Shape> {
        use Arch::*;
        let gemma_local = |window| Some(SlidingWindow { window, period: 6, rope_base: 10000.0 });
        Some(match name.to_ascii_lowercase().as_str() {
            "70b" => Shape::llama31_70b(),
            "8b" => Shape::llama31_8b(),
            "3b" => Shape::llama32_3b(),
            "1b" => Shape::llama32_1b(),
            "tiny" => Shape::tiny(),
            "qwen2.5-0.5b" => Shape::family(Qwen2, "Qwen2.5-0.5B-Instruct", "0.5B", [24, 896, 4864, 14, 2, 64, 151936, 32768], 1e6, 1e-6, true),
            "qwen2.5-1.5b" => Shape::family(Qwen2, "Qwen2.5-1.5B-Instruct", "1.5B", [28, 1536, 8960, 12, 2, 128, 151936, 32768], 1e6, 1e-6, true),
            "qwen2.5-7b" => Shape::family(Qwen2, "Qwen2.5-7B-Instruct", "7B", [28, 3584, 18944, 28, 4, 128, 152064, 32768], 1e6, 1e-6, false),
            "qwen3-0.6b" => Shape::family(Qwen3, "Qwen3-0.6B", "0.6B", [28, 1024, 3072, 16, 8, 128, 151936, 40960], 1e6, 1e-6, true),
            "qwen3-4b" => Shape::family(Qwen3, "Qwen3-4B", "4B", [36, 2560, 9728, 32, 8, 128, 151936, 40960], 1e6, 1e-6, true),
            "qwen3-8b" => Shape::family(Qwen3, "Qwen3-8B", "8B", [36, 4096, 12288, 32, 8, 128, 151936, 40960], 1e6, 1e-6, false),
            "gemma3-1b" => Shape {
                sliding: gemma_local(512),
                ..Shape::family(Gemma3, "Gemma-3-1B-it", "1B", [26, 1152, 6912, 4, 1, 256, 262144, 32768], 1e6, 1e-6, true)
            },
            "gemma3-4b" => Shape {
                sliding: gemma_local(1024),
                // Gemma 3 4B's global layers stretch positions 8× (linear), its local ones not.
                rope_scaling: RopeScaling::Linear { factor: 8.0 },
                ..Shape::family(Gemma3, "Gemma-3-4B-it", "4B", [34, 2560, 10240, 8, 4, 256, 262144, 131072], 1e6, 1e-6, true)
            },
            "phi3.5-mini" => Shape {
                phi_rope: Some((4096, 1.190_238_3)),
                ..Shape::family(Phi3, "Phi-3.5-mini-instruct", "3.8B", [32, 3072, 8192, 32, 32, 96, 32064, 131072], 10000.0, 1e-5, false)
            },
            _ => return None,
        })
    }

    /// The same sizes in `arch`'s block, as its converter writes the family: Qwen2 with Q, K and
    /// V biases; Qwen3 with per-head Q/K norms; Gemma 3 with those, post-norms, GELU, tied
    /// output and local layers (every other one, a window of 32 positions: short enough that
    /// tests reach past it); Phi-3 with fused QKV and gate/up matrices and long-context RoPE
    /// factors that apply past 64 positions. The other families have no `rope_freqs` (no Llama 3
    /// scaling).
    pub fn for_arch(mut self, arch: Arch) -> Shape {
        if arch == Arch::Llama {
            return self;
        }
        let family = match arch {
            Arch::Llama => unreachable!(),
            Arch::Qwen2 => "Qwen2",
            Arch::Qwen3 => "Qwen3",
            Arch::Gemma3 => "Gemma 3",
            // Not "Phi-3": llama.cpp gives tokens of a vocabulary with that name Phi-3's strip
            // attributes, and fails on the Llama 3 vocabulary, which lacks `</s>`.
            Arch::Phi3 => "Phi 3",
        };
        self.name = format!("{} as {family} (synthetic)", self.name.trim_end_matches(" (synthetic)"));
        self.arch = arch;
        self.rope_scaling = RopeScaling::None;
        self.head_dim_keys = true;
        if arch == Arch::Gemma3 {
            self.tied_output = true;
            self.sliding = Some(SlidingWindow { window: 32, period: 2, rope_base: 10000.0 });
        }
        if arch == Arch::Phi3 {
            // Long-context RoPE as Phi-3.5 has it: factor tensors, and an original context (64
            // here) past which the long ones apply, with their cos/sin scale.
            self.phi_rope = Some((64, 1.19));
        }
        self
    }

    /// The same model cut to its first `n_layer` blocks: every per-layer shape, the vocabulary,
    /// the output and the RoPE scaling stay as they are; `general.name` says how many blocks
    /// are left. A test model for what a shape does per layer, at a fraction of the size.
    /// `None` when `n_layer` is 0 or more than the shape has.
    pub fn with_layers(mut self, n_layer: usize) -> Option<Shape> {
        if n_layer == 0 || n_layer > self.n_layer {
            return None;
        }
        if n_layer < self.n_layer {
            let name = self.name.trim_end_matches(" (synthetic)");
            self.name = format!("{name} (synthetic, {n_layer} of {} layers)", self.n_layer);
            self.n_layer = n_layer;
        }
        Some(self)
    }

    /// The configuration a reader derives from the file (with the scaling that `rope_freqs`
    /// encodes).
    pub fn config(&self) -> ModelConfig {
        ModelConfig {
            shape: ModelShape {
                n_vocab: self.n_vocab,
                n_embd: self.n_embd,
                n_layer: self.n_layer,
                n_head: self.n_head,
                n_head_kv: self.n_head_kv,
                head_dim: self.head_dim,
                n_ff: self.n_ff,
                context_length: self.context_length,
            },
            rms_eps: self.rms_eps,
            rope_theta: self.rope_theta,
            rope_dim: self.head_dim,
            rope_scaling: self.rope_scaling.clone(),
            tied_output: self.tied_output,
            graph: BlockGraph::of(self.arch, self.n_embd, self.head_dim, false, self.sliding, self.arch == Arch::Phi3),
            rope_attn_factor: self.phi_rope.map_or(1.0, |p| p.1),
            rope_ctx_orig: self.phi_rope.map_or(self.context_length, |p| p.0),
        }
    }
}

