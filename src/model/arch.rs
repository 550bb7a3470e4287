//! The model families the one graph runs, and what sets each apart from Llama's block: a
//! description ([`BlockGraph`]) that the CPU reference and the GPU graph both follow, so that a
//! family is a row of facts here rather than branches through the code.
//!
//! Every family is a pre-norm decoder with grouped-query attention, RoPE and a gated
//! feed-forward block; they differ in
//! - how RoPE pairs dimensions: Llama's GGUF conversion permutes Q and K so that llama.cpp
//!   rotates adjacent pairs; the others rotate dimension i with i + head_dim/2 (llama.cpp's
//!   NEOX style);
//! - what is added around attention: Q/K/V biases (Qwen2), an RMSNorm per head of Q and K
//!   before RoPE (Qwen3, Gemma 3), an RMSNorm of each block's output before the residual add
//!   (Gemma 3);
//! - the gate: SiLU, or GELU with the tanh approximation (Gemma 3);
//! - Gemma 3's embedding scale (√n_embd) and its local layers: a sliding window of keys and a
//!   RoPE base of their own, with every `period`-th layer global;
//! - how the file stores the projections: Phi-3 keeps Q, K and V in one matrix (`attn_qkv`) and
//!   gate and up in one (`ffn_up`, gate rows first), which the loaders cut back into the usual
//!   matrices ([`crate::model::ModelConfig::fused_parts`]), so the graph never sees the fusion.

/// A family, by its `general.architecture` (which also prefixes its hyperparameter keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
    Gemma3,
    /// Phi-3, Phi-3.5 and Phi-4-mini.
    Phi3,
}

impl Arch {
    /// Every family the graph runs, in the order error messages list them.
    pub const ALL: [Arch; 5] = [Arch::Llama, Arch::Qwen2, Arch::Qwen3, Arch::Gemma3, Arch::Phi3];

    pub fn from_name(name: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The `general.architecture` value and key prefix.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Gemma3 => "gemma3",
            Arch::Phi3 => "phi3",
        }
    }

    /// The supported names, comma-separated, for error messages.
    pub fn list() -> String {
        Arch::ALL.map(Arch::name).join(", ")
    }

    /// How RoPE pairs dimensions in this family's GGUF files.
    pub fn rope_style(self) -> RopeStyle {
        match self {
            Arch::Llama => RopeStyle::Adjacent,
            Arch::Qwen2 | Arch::Qwen3 | Arch::Gemma3 | Arch::Phi3 => RopeStyle::Halves,
        }
    }
}

/// Which dimensions of a head RoPE rotates together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// (2i, 2i + 1): llama.cpp's `LLAMA_ROPE_TYPE_NORM`.
    Adjacent,
    /// (i, i + rope_dim/2): llama.cpp's `LLAMA_ROPE_TYPE_NEOX`.
    Halves,
}

/// The feed-forward gate applied to the gate projection before it multiplies the up projection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// x · sigmoid(x) (SwiGLU).
    Silu,
    /// 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³))) (GeGLU, as ggml's `gelu`).
    GeluTanh,
}

impl Gate {
    /// The gate of one value, in the operation order every kernel follows.
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Gate::Silu => x / (1.0 + (-x).exp()),
            Gate::GeluTanh => {
                const SQRT_2_OVER_PI: f32 = 0.797_884_6;
                0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + 0.044715 * x * x)).tanh())
            }
        }
    }
}

/// Gemma 3's local attention: layers that see only the last `window` positions and rotate with
/// a RoPE base of their own.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlidingWindow {
    /// Keys a local layer's query sees, its own position included.
    pub window: u32,
    /// Every `period`-th layer (the last of each period) is global; llama.cpp's
    /// `set_swa_pattern` (0: every layer is local).
    pub period: u32,
    /// The RoPE base of local layers (`rope.freq_base_swa`, else 10000), unscaled.
    pub rope_base: f32,
}

impl SlidingWindow {
    pub fn is_local(&self, layer: usize) -> bool {
        let p = self.period as usize;
        p == 0 || layer % p < p - 1
    }
}

/// What a family's block does beyond Llama's, read from its GGUF (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct BlockGraph {
    pub arch: Arch,
    pub rope_style: RopeStyle,
    /// `blk.N.attn_{q,k,v}.bias` are added to the projections (present in the file).
    pub qkv_bias: bool,
    /// `blk.N.attn_{q,k}_norm.weight`: an RMSNorm of every head of Q and K before RoPE.
    pub qk_norm: bool,
    /// `blk.N.post_attention_norm.weight` and `blk.N.post_ffw_norm.weight`: an RMSNorm of the
    /// attention and feed-forward outputs before each residual add.
    pub post_norms: bool,
    pub gate: Gate,
    /// Multiplier of the embedding rows (Gemma: √n_embd; else 1).
    pub embed_scale: f32,
    /// Multiplier of the attention scores (1/√key_length for every family here).
    pub attn_scale: f32,
    pub sliding: Option<SlidingWindow>,
    /// Q, K and V stored as one matrix `attn_qkv` (Phi-3).
    pub fused_qkv: bool,
    /// Gate and up stored as one matrix `ffn_up` of twice the rows, gate first (Phi-3).
    pub fused_gate_up: bool,
}

impl BlockGraph {
    /// Llama's block: the description every other family departs from.
    pub fn llama(head_dim: usize) -> Self {
        BlockGraph {
            arch: Arch::Llama,
            rope_style: RopeStyle::Adjacent,
            qkv_bias: false,
            qk_norm: false,
            post_norms: false,
            gate: Gate::Silu,
            embed_scale: 1.0,
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
            sliding: None,
            fused_qkv: false,
            fused_gate_up: false,
        }
    }

    /// The description of `arch`'s block, given what its file says: Q/K/V biases present, the
    /// sliding window (Gemma 3).
    /// `fused_qkv`: the file has `attn_qkv` (Phi-3's, where separate Q/K/V are allowed too).
    pub fn of(arch: Arch, n_embd: usize, head_dim: usize, qkv_bias: bool, sliding: Option<SlidingWindow>, fused_qkv: bool) -> Self {
        let mut g = BlockGraph::llama(head_dim);
        g.arch = arch;
        g.rope_style = arch.rope_style();
        // Biases are llama.cpp's optional extras of every family and required in Qwen2's.
        g.qkv_bias = arch == Arch::Qwen2 || qkv_bias;
        g.qk_norm = matches!(arch, Arch::Qwen3 | Arch::Gemma3);
        if arch == Arch::Gemma3 {
            g.post_norms = true;
            g.gate = Gate::GeluTanh;
            g.embed_scale = (n_embd as f32).sqrt();
            g.sliding = sliding;
        }
        if arch == Arch::Phi3 {
            g.fused_qkv = fused_qkv;
            g.fused_gate_up = true;
        }
        g
    }

    /// Whether layer `l` attends through a sliding window (and then which).
    pub fn window(&self, layer: usize) -> Option<u32> {
        self.sliding.filter(|s| s.is_local(layer)).map(|s| s.window)
    }
}
