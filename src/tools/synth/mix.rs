//! Which type each tensor gets: llama.cpp's quantization mixes, and the plan of the file.

use super::Shape;
use std::collections::BTreeMap;
use crate::model::names;
use crate::quant::GgmlType;
use crate::{Error, Result};

/// A llama.cpp quantization mix (`llama-quantize` file type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantMix {
    /// `Q4_K_M`: Q4_K, with Q6_K for the output projection and for `attn_v`/`ffn_down` in the
    /// layers llama.cpp's `use_more_bits` picks; a 70B model's other `attn_v` get Q5_K.
    Q4KM,
    /// `Q4_0`: Q4_0, with Q6_K for the output projection.
    Q4_0,
    /// `Q8_0`: Q8_0 throughout.
    Q8_0,
    /// The i-quant mixes, which llama.cpp makes only with an importance matrix (synth's blocks
    /// are random but valid; the rules are `llama_tensor_get_type`'s with one). All give the
    /// output projection Q5_K and, for 4:1 grouped-query attention (every Llama 3), `attn_v`
    /// Q4_K. `IQ2_XXS`, `IQ2_XS`, `IQ1_S` and `IQ1_M`: their own type, with Q2_K for the
    /// untied embedding, the first eighth of `ffn_down` and a narrower model's `attn_v`; IQ1's
    /// `attn_output` IQ2_XXS.
    IQ2XXS,
    IQ2XS,
    IQ1S,
    IQ1M,
    /// `IQ2_S` (IQ2_XS) and `IQ2_M` (IQ2_S): as IQ2_XXS with IQ3_S instead of Q2_K, and for
    /// `attn_output`.
    IQ2S,
    IQ2M,
    /// `IQ3_XXS`: IQ3_XXS, with IQ2_S for `attn_q`/`attn_k`, IQ3_S for `attn_output` and the
    /// untied embedding (a 70B's `attn_v` Q5_K).
    IQ3XXS,
}

/// Every mix, in the order `--type` lists them.
pub const MIXES: [QuantMix; 10] = {
    use QuantMix::*;
    [Q4KM, Q4_0, Q8_0, IQ3XXS, IQ2M, IQ2S, IQ2XS, IQ2XXS, IQ1M, IQ1S]
};

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers and every third layer
/// in between get more bits in the `_M` mixes.
pub fn use_more_bits(i_layer: usize, n_layers: usize) -> bool {
    i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2
}

impl QuantMix {
    /// A mix by its label (`q4_k_m`, `iq2_m`, …: see [`MIXES`]), in any case.
    pub fn parse(s: &str) -> Option<QuantMix> {
        MIXES.into_iter().find(|m| m.label().eq_ignore_ascii_case(s))
    }

    pub fn label(self) -> &'static str {
        match self {
            QuantMix::Q4KM => "Q4_K_M",
            QuantMix::Q4_0 => "Q4_0",
            QuantMix::Q8_0 => "Q8_0",
            QuantMix::IQ2XXS => "IQ2_XXS",
            QuantMix::IQ2XS => "IQ2_XS",
            QuantMix::IQ2S => "IQ2_S",
            QuantMix::IQ2M => "IQ2_M",
            QuantMix::IQ3XXS => "IQ3_XXS",
            QuantMix::IQ1S => "IQ1_S",
            QuantMix::IQ1M => "IQ1_M",
        }
    }

    /// `general.file_type` (llama.cpp's `llama_ftype`).
    pub fn file_type(self) -> u32 {
        match self {
            QuantMix::Q4KM => 15,
            QuantMix::Q4_0 => 2,
            QuantMix::Q8_0 => 7,
            QuantMix::IQ2XXS => 19,
            QuantMix::IQ2XS => 20,
            QuantMix::IQ3XXS => 23,
            QuantMix::IQ1S => 24,
            QuantMix::IQ2S => 28,
            QuantMix::IQ2M => 29,
            QuantMix::IQ1M => 31,
        }
    }

    /// The type `llama-quantize` (`llama_tensor_get_type`) gives the 2-D weight `name` of a
    /// model of `shape` (1-D tensors stay F32). (llama.cpp takes a Llama model of 80 layers
    /// with grouped-query attention for a 70B, as all Llama 3 are.)
    pub fn tensor_type(self, name: &str, shape: &Shape) -> GgmlType {
        use GgmlType::*;
        use QuantMix::*;
        let (n_layer, tied_output) = (shape.n_layer, shape.tied_output);
        let base = match self {
            Q4KM => Q4_K,
            QuantMix::Q4_0 => GgmlType::Q4_0,
            QuantMix::Q8_0 => return GgmlType::Q8_0,
            IQ2XXS => IQ2_XXS,
            IQ2XS | IQ2S => IQ2_XS,
            IQ2M => IQ2_S,
            IQ3XXS => IQ3_XXS,
            IQ1S => IQ1_S,
            IQ1M => IQ1_M,
        };
        let is_output =
            name == names::OUTPUT || (tied_output && name == names::TOKEN_EMBD);
        let layer = name
            .strip_prefix("blk.")
            .and_then(|r| r.split('.').next())
            .and_then(|l| l.parse::<usize>().ok());
        let what = name.rsplit('.').nth(1);
        let gqa4 = shape.n_head >= 4 * shape.n_head_kv;
        // The i-quant mixes.
        let wider = matches!(self, IQ2S | IQ2M | IQ3XXS);
        if !matches!(self, Q4KM | QuantMix::Q4_0) {
            if is_output {
                return Q5_K;
            }
            if name == names::TOKEN_EMBD {
                return if wider { IQ3_S } else { Q2_K };
            }
        }
        if matches!(self, IQ2XXS | IQ2XS | IQ2S | IQ2M | IQ1S | IQ1M) {
            let small = if wider { IQ3_S } else { Q2_K };
            return match what {
                Some("attn_v") if gqa4 => Q4_K,
                Some("attn_v") => small,
                Some("ffn_down") if layer.is_some_and(|l| l < n_layer / 8) => small,
                Some("attn_output") if matches!(self, IQ1S | IQ1M) => IQ2_XXS,
                Some("attn_output") if wider => IQ3_S,
                _ => base,
            };
        }
        if self == IQ3XXS {
            return match what {
                // llama.cpp gives a 70B's attn_v Q5_K where it would be Q4_K.
                Some("attn_v") if gqa4 && n_layer == 80 => Q5_K,
                Some("attn_v") if gqa4 => Q4_K,
                Some("attn_q" | "attn_k") => IQ2_S,
                Some("attn_output") => IQ3_S,
                _ => base,
            };
        }
        if is_output {
            return GgmlType::Q6_K;
        }
        // Phi-3's fused QKV gets a bit more, as llama.cpp's ATTENTION_QKV rule gives it.
        if self == QuantMix::Q4KM && name.ends_with(".attn_qkv.weight") {
            return GgmlType::Q5_K;
        }
        if self == QuantMix::Q4KM
            && (name.ends_with(".attn_v.weight") || name.ends_with(".ffn_down.weight"))
        {
            if let Some(l) = layer {
                if use_more_bits(l, n_layer) {
                    return GgmlType::Q6_K;
                }
            }
            // A 70B's attn_v is an eighth of attn_q (8 KV heads for 64): llama.cpp spends the
            // few bytes more bits cost there.
            if n_layer == 80 && name.ends_with(".attn_v.weight") {
                return GgmlType::Q5_K;
            }
        }
        base
    }
}

/// The type llama.cpp's `tensor_type_fallback` writes a matrix in when its rows (`cols` values)
/// are not whole blocks of the mix's type: the 256-value types fall back to 32-value ones
/// (Q4_K to Q5_0, Q5_K to Q5_1, Q6_K to Q8_0, Q2_K and Q3_K to Q4_0, the i-quants to IQ4_NL),
/// and rows that fit no block at all are F16. (Gemma 3 270M's real Q4_K_M file, 640 wide, is
/// mostly Q5_0 and Q8_0 this way; so are Qwen2.5-0.5B's, 896 wide.)
pub fn fallback(ty: GgmlType, cols: u64) -> GgmlType {
    use GgmlType::*;
    if cols.is_multiple_of(ty.block_size() as u64) {
        return ty;
    }
    let to = match ty {
        IQ1_S | IQ1_M | IQ2_XXS | IQ2_XS | IQ2_S | IQ3_XXS | IQ3_S | IQ4_XS => IQ4_NL,
        Q2_K | Q3_K => Q4_0,
        Q4_K => Q5_0,
        Q5_K => Q5_1,
        Q6_K => Q8_0,
        other => other,
    };
    if cols.is_multiple_of(to.block_size() as u64) {
        to
    } else {
        F16
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

/// Every tensor of the model, in file order: `rope_freqs` (or Phi-3's `rope_factors_long` and
/// `_short`), `token_embd`, the blocks (each in name order, as `llama-quantize` writes them),
/// `output_norm`, `output`.
pub fn plan(shape: &Shape, mix: QuantMix) -> Result<Vec<PlannedTensor>> {
    let cfg = shape.config();
    let by_name: BTreeMap<String, Vec<u64>> = cfg
        .expected_tensors()
        .into_iter()
        .map(|(n, d, _)| (n, d))
        .collect();
    let mut order = vec![names::ROPE_FREQS.to_string()];
    if shape.phi_rope.is_some() {
        order.extend([names::ROPE_FACTORS_LONG.to_string(), names::ROPE_FACTORS_SHORT.to_string()]);
    }
    order.push(names::TOKEN_EMBD.to_string());
    // Each block's tensors in name order, as `llama-quantize` writes them.
    let mut blocks: Vec<Vec<&String>> = vec![Vec::new(); shape.n_layer];
    for name in by_name.keys() {
        if let Some(l) = names::layer_of(name) {
            blocks[l].push(name);
        }
    }
    for block in blocks {
        order.extend(block.into_iter().cloned());
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
            fallback(mix.tensor_type(&name, shape), dims[0])
        };
        let n: u64 = dims.iter().product();
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

