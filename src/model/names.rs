//! Tensor names, in one place for the CPU reference, the GPU graph, the loader and the tools.

pub const TOKEN_EMBD: &str = "token_embd.weight";
pub const OUTPUT_NORM: &str = "output_norm.weight";
pub const OUTPUT: &str = "output.weight";
pub const ROPE_FREQS: &str = "rope_freqs.weight";
/// Phi-3's RoPE frequency divisors past (long) and within (short) its original context.
pub const ROPE_FACTORS_LONG: &str = "rope_factors_long.weight";
pub const ROPE_FACTORS_SHORT: &str = "rope_factors_short.weight";

/// Per-layer tensors (`blk.N.<what>.weight`) the graph of some family reads: Llama's nine,
/// then Qwen3's and Gemma 3's per-head norms, Gemma 3's post-norms and Phi-3's fused QKV.
pub const LAYER_TENSORS: [&str; 14] = [
    "attn_norm",
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_norm",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
    "attn_q_norm",
    "attn_k_norm",
    "post_attention_norm",
    "post_ffw_norm",
    "attn_qkv",
];

/// Per-layer projections whose `blk.N.<what>.bias` a graph adds (Qwen2's).
pub const BIASED: [&str; 3] = ["attn_q", "attn_k", "attn_v"];

/// Per-layer matrices that read the same input and so can share one GPU buffer, to be
/// multiplied in one dispatch (`gpu::weights::WeightWriter::joint`), in the order tried: Q, K
/// and V, else (where V has another type, as in Q4_K_M files) Q and K; gate and up.
pub const JOINTS: [&[&str]; 3] = [&["attn_q", "attn_k", "attn_v"], &["attn_q", "attn_k"], &["ffn_gate", "ffn_up"]];

/// The layer of a per-layer tensor's name (`blk.N.…`).
pub fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split_once('.')?.0.parse().ok()
}

pub fn blk(layer: usize, what: &str) -> String {
    format!("blk.{layer}.{what}.weight")
}

pub fn blk_bias(layer: usize, what: &str) -> String {
    format!("blk.{layer}.{what}.bias")
}

/// Whether some family's graph reads a tensor of this name (files may carry others, which loaders
/// skip).
pub fn is_graph_tensor(name: &str) -> bool {
    if [TOKEN_EMBD, OUTPUT_NORM, OUTPUT, ROPE_FREQS, ROPE_FACTORS_LONG, ROPE_FACTORS_SHORT].contains(&name) {
        return true;
    }
    let Some(rest) = name.strip_prefix("blk.") else {
        return false;
    };
    let Some((layer, what)) = rest.split_once('.') else {
        return false;
    };
    layer.parse::<usize>().is_ok()
        && (what.strip_suffix(".weight").is_some_and(|w| LAYER_TENSORS.contains(&w))
            || what.strip_suffix(".bias").is_some_and(|w| BIASED.contains(&w)))
}
