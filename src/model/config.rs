use super::arch::{Arch, BlockGraph, RopeStyle, SlidingWindow};
use super::{names, ModelError, ModelShape};
use crate::gguf::{Metadata, TensorInfo};

/// How RoPE frequencies are stretched for long contexts.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions are divided by `factor`.
    Linear {
        factor: f32,
    },
    /// Llama 3.1's per-frequency rule (HF `rope_type: "llama3"`).
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_context_length: u32,
    },
}

/// A model's hyperparameters, read from its family's GGUF keys (`llama.*`, `qwen2.*`, …): the
/// sizes (all that the memory plan needs), the numerics of the forward pass and what its
/// family's block does ([`BlockGraph`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub shape: ModelShape,
    pub rms_eps: f32,
    pub rope_theta: f32,
    /// Dimensions of each head that are rotated (llama: all of them).
    pub rope_dim: usize,
    pub rope_scaling: RopeScaling,
    /// No `output.weight`: the output projection reuses `token_embd.weight`.
    pub tied_output: bool,
    pub graph: BlockGraph,
    /// A multiplier of RoPE's cos and sin (`rope.scaling.attn_factor`, Phi-3's long-context
    /// scale; 1 elsewhere).
    pub rope_attn_factor: f32,
    /// The context past which Phi-3's long RoPE factors apply instead of the short ones
    /// (`rope.scaling.original_context_length`, else the training context).
    pub rope_ctx_orig: usize,
}

/// The RoPE of one layer: Gemma 3's local layers rotate with a base of their own, unscaled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerRope {
    pub base: f32,
    pub freq_scale: f32,
    /// Whether the model's per-pair frequency factors apply (global layers only).
    pub freq_factors: bool,
}

impl ModelConfig {
    /// Reads and checks hyperparameters. `tensor` looks up tensor infos (for the vocab size
    /// fallback and tied-output detection) and may span several shards.
    pub fn from_gguf<'a>(
        meta: &Metadata,
        tensor: impl Fn(&str) -> Option<&'a TensorInfo>,
    ) -> Result<Self, ModelError> {
        let arch_name = meta.str("general.architecture")?;
        let Some(arch) = Arch::from_name(arch_name) else {
            return Err(ModelError::UnsupportedArchitecture(arch_name.to_string()));
        };
        let k = |s: &str| format!("{}.{s}", arch.name());
        let get = |s: &str| -> Result<usize, ModelError> {
            Ok(usize::try_from(meta.u64(&k(s))?).unwrap_or(usize::MAX))
        };
        let n_embd = get("embedding_length")?;
        let n_layer = get("block_count")?;
        let n_head = get("attention.head_count")?;
        let n_head_kv = match meta.u64_opt(&k("attention.head_count_kv"))? {
            Some(v) => v as usize,
            None => n_head,
        };
        let n_ff = get("feed_forward_length")?;
        let context_length = get("context_length")?;
        let rms_eps = meta.f32(&k("attention.layer_norm_rms_epsilon"))?;
        let rope_theta = meta.f32_opt(&k("rope.freq_base"))?.unwrap_or(10000.0);
        let bad = |m: String| Err(ModelError::BadHparams(m));
        if n_embd == 0
            || n_layer == 0
            || n_head == 0
            || n_head_kv == 0
            || n_ff == 0
            || context_length == 0
        {
            return bad(format!("zero dimension: embd {n_embd}, layers {n_layer}, heads {n_head}/{n_head_kv}, ffn {n_ff}, ctx {context_length}"));
        }
        // Bounds keep every later size computation far from overflow.
        if n_embd > 1 << 16
            || n_layer > 1024
            || n_head > 1024
            || n_ff > 1 << 18
            || context_length > 1 << 24
        {
            return bad(format!("implausibly large: embd {n_embd}, layers {n_layer}, heads {n_head}, ffn {n_ff}, ctx {context_length}"));
        }
        if n_head % n_head_kv != 0 {
            return bad(format!(
                "{n_head} query heads are not a multiple of {n_head_kv} KV heads"
            ));
        }
        let head_dim = match meta.u64_opt(&k("attention.key_length"))? {
            Some(v) => v as usize,
            None => {
                if n_embd % n_head != 0 {
                    return bad(format!(
                        "embedding {n_embd} not divisible by {n_head} heads"
                    ));
                }
                n_embd / n_head
            }
        };
        if let Some(vl) = meta.u64_opt(&k("attention.value_length"))? {
            if vl as usize != head_dim {
                return bad(format!(
                    "value length {vl} differs from key length {head_dim}"
                ));
            }
        }
        if head_dim == 0 || head_dim % 2 != 0 || head_dim > 1024 {
            return bad(format!(
                "head dimension {head_dim} must be even and at most 1024"
            ));
        }
        let rope_dim = meta
            .u64_opt(&k("rope.dimension_count"))?
            .map(|v| v as usize)
            .unwrap_or(head_dim);
        // Partial rotation (Phi-4-mini: 96 of 128) rotates halves of the leading rope_dim.
        if rope_dim == 0 || rope_dim > head_dim || rope_dim % 4 != 0 || (rope_dim != head_dim && arch.rope_style() == RopeStyle::Adjacent) {
            return bad(format!(
                "rotary dimensions {rope_dim} of a head of {head_dim}: need a multiple of 4, and all of them for {}",
                arch.name()
            ));
        }
        // Written as negated ranges so that NaN fails them too.
        #[allow(clippy::nonminimal_bool)]
        if !(rms_eps > 0.0 && rms_eps < 1.0) || !(rope_theta > 0.0 && rope_theta.is_finite()) {
            return bad(format!(
                "rms epsilon {rms_eps} or rope base {rope_theta} out of range"
            ));
        }
        let rope_scaling = match meta.str_opt(&k("rope.scaling.type"))? {
            None | Some("none") => RopeScaling::None,
            Some("linear") => RopeScaling::Linear {
                factor: meta.f32(&k("rope.scaling.factor"))?,
            },
            Some("llama3") => RopeScaling::Llama3 {
                factor: meta.f32(&k("rope.scaling.factor"))?,
                low_freq_factor: meta
                    .f32_opt(&k("rope.scaling.low_freq_factor"))?
                    .unwrap_or(1.0),
                high_freq_factor: meta
                    .f32_opt(&k("rope.scaling.high_freq_factor"))?
                    .unwrap_or(4.0),
                original_context_length: meta.u64(&k("rope.scaling.original_context_length"))?
                    as u32,
            },
            Some(other) => return bad(format!("rope scaling type '{other}' is not supported")),
        };
        // The vocabulary size is read without token_embd when the metadata has it, so a split
        // model's first header (whose shard may not hold token_embd) is enough for the memory
        // plan; `validate_tensors` requires token_embd once every shard is in.
        let n_vocab = match meta.u64_opt(&k("vocab_size"))? {
            Some(v) => usize::try_from(v).unwrap_or(usize::MAX),
            None => match tensor(names::TOKEN_EMBD) {
                Some(embd) => embd.dims.get(1).copied().unwrap_or(0) as usize,
                None => match meta.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()) {
                    Some(tokens) => tokens.len(),
                    None => return Err(ModelError::MissingTensor(names::TOKEN_EMBD.into())),
                },
            },
        };
        if n_vocab == 0 || n_vocab > 1 << 22 {
            return bad(format!("vocabulary size {n_vocab}"));
        }
        let tied_output = tensor(names::OUTPUT).is_none();
        let mut sliding = None;
        if arch == Arch::Gemma3 {
            sliding = match meta.u64_opt(&k("attention.sliding_window"))? {
                Some(w) if w > 0 => Some(SlidingWindow {
                    window: u32::try_from(w).unwrap_or(u32::MAX),
                    period: match meta.u64_opt(&k("attention.sliding_window_pattern"))? {
                        Some(p) => u32::try_from(p).unwrap_or(u32::MAX),
                        None => 6,
                    },
                    rope_base: meta.f32_opt(&k("rope.freq_base_swa"))?.unwrap_or(10000.0),
                }),
                _ => None,
            };
            if let Some(cap) = meta.f32_opt(&k("final_logit_softcapping"))? {
                if cap != 0.0 {
                    return bad(format!("final logit soft-capping ({cap}) is not supported"));
                }
            }
        }
        let fused_qkv = tensor(&names::blk(0, "attn_qkv")).is_some();
        let mut graph = BlockGraph::of(arch, n_embd, head_dim, tensor(&names::blk_bias(0, "attn_q")).is_some(), sliding, fused_qkv);
        // Gemma 3 27B scales by 1/sqrt(n_embd / n_head), which differs from its key length.
        if arch == Arch::Gemma3 && n_layer == 62 {
            graph.attn_scale = 1.0 / ((n_embd / n_head) as f32).sqrt();
        }
        if graph.qkv_bias && graph.qk_norm {
            return bad("Q/K/V biases together with per-head Q/K norms are not supported".into());
        }
        if let Some(s) = graph.sliding {
            #[allow(clippy::nonminimal_bool)]
            if !(s.rope_base > 0.0 && s.rope_base.is_finite()) {
                return bad(format!("sliding-window rope base {} out of range", s.rope_base));
            }
        }
        let rope_attn_factor = meta.f32_opt(&k("rope.scaling.attn_factor"))?.unwrap_or(1.0);
        #[allow(clippy::nonminimal_bool)]
        if !(rope_attn_factor > 0.0 && rope_attn_factor < 100.0) {
            return bad(format!("rope attention factor {rope_attn_factor} out of range"));
        }
        let rope_ctx_orig = match meta.u64_opt(&k("rope.scaling.original_context_length"))? {
            Some(v) => usize::try_from(v).unwrap_or(usize::MAX),
            None => context_length,
        };
        Ok(ModelConfig {
            shape: ModelShape { n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, context_length },
            rms_eps,
            rope_theta,
            rope_dim,
            rope_scaling,
            tied_output,
            graph,
            rope_attn_factor,
            rope_ctx_orig,
        })
    }

    /// The stored matrices a fused one holds, as `(name, rows)` in row order, for Phi-3's
    /// `blk.N.attn_qkv` (Q, K, V) and `blk.N.ffn_up` (gate, up); `None` for any other tensor.
    /// Loaders cut the fused matrix's rows into these, so the rest of the code sees the usual
    /// matrices (rows are whole blocks in every type, so each part is a byte range).
    pub fn fused_parts(&self, name: &str) -> Option<Vec<(String, usize)>> {
        let layer = names::layer_of(name)?;
        let (q, kv) = (self.shape.n_head * self.shape.head_dim, self.shape.n_head_kv * self.shape.head_dim);
        if self.graph.arch == Arch::Phi3 && name == names::blk(layer, "attn_qkv") {
            return Some(vec![(names::blk(layer, "attn_q"), q), (names::blk(layer, "attn_k"), kv), (names::blk(layer, "attn_v"), kv)]);
        }
        if self.graph.fused_gate_up && name == names::blk(layer, "ffn_up") {
            let ff = self.shape.n_ff;
            return Some(vec![(names::blk(layer, "ffn_gate"), ff), (names::blk(layer, "ffn_up"), ff)]);
        }
        None
    }

    /// Where a matrix the graph reads lies in a fused one: `(fused name, first row, rows)`, for
    /// the parts [`fused_parts`](Self::fused_parts) names; `None` when it is stored by itself.
    pub fn fused_source(&self, name: &str) -> Option<(String, usize, usize)> {
        let layer = names::layer_of(name)?;
        let fused = if self.graph.fused_qkv && ["attn_q", "attn_k", "attn_v"].iter().any(|w| name == names::blk(layer, w)) {
            names::blk(layer, "attn_qkv")
        } else if self.graph.fused_gate_up && ["ffn_gate", "ffn_up"].iter().any(|w| name == names::blk(layer, w)) {
            names::blk(layer, "ffn_up")
        } else {
            return None;
        };
        let mut row = 0;
        for (part, rows) in self.fused_parts(&fused)? {
            if part == name {
                return Some((fused, row, rows));
            }
            row += rows;
        }
        None
    }

    /// Which of Phi-3's RoPE factor tensors a context of `context` positions uses: the long
    /// ones past its original context, as llama.cpp chooses (by the context, not the position).
    pub fn rope_factors_for(&self, context: usize) -> &'static str {
        if context > self.rope_ctx_orig {
            names::ROPE_FACTORS_LONG
        } else {
            names::ROPE_FACTORS_SHORT
        }
    }

    /// The RoPE of layer `layer`.
    pub fn layer_rope(&self, layer: usize) -> LayerRope {
        match self.graph.sliding.filter(|s| s.is_local(layer)) {
            Some(s) => LayerRope { base: s.rope_base, freq_scale: 1.0, freq_factors: false },
            None => LayerRope { base: self.rope_theta, freq_scale: self.rope_freq_scale(), freq_factors: true },
        }
    }

    /// Every tensor the graph reads, with its expected ggml shape (`[cols, rows]`), and whether
    /// it is optional.
    pub fn expected_tensors(&self) -> Vec<(String, Vec<u64>, bool)> {
        let (e, q, kv, f, v) = (
            self.shape.n_embd as u64,
            (self.shape.n_head * self.shape.head_dim) as u64,
            (self.shape.n_head_kv * self.shape.head_dim) as u64,
            self.shape.n_ff as u64,
            self.shape.n_vocab as u64,
        );
        let mut t = vec![
            (names::TOKEN_EMBD.to_string(), vec![e, v], false),
            (names::OUTPUT_NORM.to_string(), vec![e], false),
            (
                names::ROPE_FREQS.to_string(),
                vec![self.shape.head_dim as u64 / 2],
                true,
            ),
        ];
        if !self.tied_output {
            t.push((names::OUTPUT.to_string(), vec![e, v], false));
        }
        if self.graph.arch == Arch::Phi3 {
            let pairs = self.rope_dim as u64 / 2;
            t.extend([(names::ROPE_FACTORS_LONG.to_string(), vec![pairs], true), (names::ROPE_FACTORS_SHORT.to_string(), vec![pairs], true)]);
        }
        for l in 0..self.shape.n_layer {
            let b = |w: &str| names::blk(l, w);
            if self.graph.fused_qkv {
                t.push((b("attn_qkv"), vec![e, q + 2 * kv], false));
            } else {
                t.extend([(b("attn_q"), vec![e, q], false), (b("attn_k"), vec![e, kv], false), (b("attn_v"), vec![e, kv], false)]);
            }
            if self.graph.fused_gate_up {
                t.push((b("ffn_up"), vec![e, 2 * f], false));
            } else {
                t.extend([(b("ffn_gate"), vec![e, f], false), (b("ffn_up"), vec![e, f], false)]);
            }
            t.extend([
                (b("attn_norm"), vec![e], false),
                (b("attn_output"), vec![q, e], false),
                (b("ffn_norm"), vec![e], false),
                (b("ffn_down"), vec![f, e], false),
            ]);
            let g = &self.graph;
            if g.qkv_bias {
                t.extend([
                    (names::blk_bias(l, "attn_q"), vec![q], false),
                    (names::blk_bias(l, "attn_k"), vec![kv], false),
                    (names::blk_bias(l, "attn_v"), vec![kv], false),
                ]);
            }
            if g.qk_norm {
                let hd = self.shape.head_dim as u64;
                t.extend([(b("attn_q_norm"), vec![hd], false), (b("attn_k_norm"), vec![hd], false)]);
            }
            if g.post_norms {
                t.extend([(b("post_attention_norm"), vec![e], false), (b("post_ffw_norm"), vec![e], false)]);
            }
        }
        t
    }

    /// Checks that every tensor the graph needs exists with the right shape, naming the first
    /// one that does not.
    pub fn validate_tensors<'a>(
        &self,
        tensor: impl Fn(&str) -> Option<&'a TensorInfo>,
    ) -> Result<(), ModelError> {
        for (name, shape, optional) in self.expected_tensors() {
            match tensor(&name) {
                None if optional => {}
                None => return Err(ModelError::MissingTensor(name)),
                Some(t) => {
                    // ggml drops trailing 1-dims inconsistently between writers; compare padded.
                    let mut found = t.dims.clone();
                    while found.len() > shape.len() && found.last() == Some(&1) {
                        found.pop();
                    }
                    if found != shape {
                        return Err(ModelError::BadShape {
                            name,
                            expected: shape,
                            found: t.dims.clone(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Per-pair RoPE frequency divisors (llama.cpp's `freq_factors`) implied by `rope_scaling`,
    /// or `None` when frequencies are unscaled. A `rope_freqs` tensor in the file takes
    /// precedence over this.
    pub fn rope_freq_factors(&self) -> Option<Vec<f32>> {
        let RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_context_length,
        } = self.rope_scaling
        else {
            return None;
        };
        let old = original_context_length as f32;
        let low_wavelen = old / low_freq_factor;
        let high_wavelen = old / high_freq_factor;
        Some(
            (0..self.rope_dim / 2)
                .map(|i| {
                    let freq = 1.0 / self.rope_theta.powf(2.0 * i as f32 / self.rope_dim as f32);
                    let wavelen = 2.0 * std::f32::consts::PI / freq;
                    if wavelen < high_wavelen {
                        1.0
                    } else if wavelen > low_wavelen {
                        factor
                    } else {
                        let smooth = (old / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        1.0 / ((1.0 - smooth) / factor + smooth)
                    }
                })
                .collect(),
        )
    }

    /// Multiplier on positions for linear scaling (llama.cpp's `freq_scale`).
    pub fn rope_freq_scale(&self) -> f32 {
        match self.rope_scaling {
            RopeScaling::Linear { factor } if factor > 0.0 => 1.0 / factor,
            _ => 1.0,
        }
    }
}
