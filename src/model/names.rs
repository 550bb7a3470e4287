//! Tensor names, in one place for the CPU reference, the GPU graph, the loader and the tools.

pub const TOKEN_EMBD: &str = "token_embd.weight";
pub const OUTPUT_NORM: &str = "output_norm.weight";
pub const OUTPUT: &str = "output.weight";
pub const ROPE_FREQS: &str = "rope_freqs.weight";

/// Per-layer tensors (`blk.N.<what>.weight`) the Llama graph reads.
pub const LAYER_TENSORS: [&str; 9] =
    ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"];

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

/// Whether the Llama graph reads a tensor of this name (files may carry others, which loaders
/// skip).
pub fn is_graph_tensor(name: &str) -> bool {
    if [TOKEN_EMBD, OUTPUT_NORM, OUTPUT, ROPE_FREQS].contains(&name) {
        return true;
    }
    let Some(rest) = name.strip_prefix("blk.") else {
        return false;
    };
    let Some((layer, what)) = rest.split_once('.') else {
        return false;
    };
    layer.parse::<usize>().is_ok() && what.strip_suffix(".weight").is_some_and(|w| LAYER_TENSORS.contains(&w))
}
