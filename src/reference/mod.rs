//! The CPU reference forward pass: plain f32 Llama, written for clarity and exactness rather
//! than speed. Every GPU kernel is tested against it, and it is tested against llama.cpp.
//!
//! It follows llama.cpp's graphs for the families of [`crate::model::Arch`]: RMSNorm, RoPE,
//! grouped-query attention over a KV cache, a gated feed-forward block and a tied or separate
//! output projection, with what the model's [`BlockGraph`](crate::model::BlockGraph) adds
//! (biases, per-head norms, post-norms, GELU, sliding windows, the embedding scale).

pub mod ops;

use crate::gguf::{Metadata, TensorInfo};
use crate::model::{check_input, names, InputError, ModelConfig, ModelError};
use crate::quant;
use half::f16;

/// Options that make the reference mimic a particular implementation's rounding.
#[derive(Clone, Copy, Debug)]
pub struct ReferenceOptions {
    /// Round K and V to f16 when they enter the cache, as llama.cpp (and the f16 GPU path) do.
    pub kv_f16: bool,
}

impl Default for ReferenceOptions {
    fn default() -> Self {
        ReferenceOptions { kv_f16: true }
    }
}

/// Errors from loading or running the reference model.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Input(#[from] InputError),
}

impl ReferenceError {
    /// The stable code JS sees as `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            ReferenceError::Model(e) => e.code(),
            ReferenceError::Input(e) => e.code(),
        }
    }
}

struct Layer {
    attn_norm: Vec<f32>,
    wq: Vec<f32>,
    wk: Vec<f32>,
    wv: Vec<f32>,
    wo: Vec<f32>,
    ffn_norm: Vec<f32>,
    w_gate: Vec<f32>,
    w_up: Vec<f32>,
    w_down: Vec<f32>,
    /// Q, K and V biases (BlockGraph::qkv_bias).
    bias: Option<[Vec<f32>; 3]>,
    /// Per-head norms of Q and K (BlockGraph::qk_norm).
    qk_norm: Option<[Vec<f32>; 2]>,
    /// Norms of the attention and feed-forward outputs (BlockGraph::post_norms).
    post_norm: Option<[Vec<f32>; 2]>,
}

/// A Llama model with all weights dequantized to f32.
pub struct ReferenceModel {
    pub cfg: ModelConfig,
    tok_embd: Vec<f32>,
    /// `None` when the output projection is tied to `tok_embd`.
    output: Option<Vec<f32>>,
    output_norm: Vec<f32>,
    layers: Vec<Layer>,
    /// RoPE frequency divisors, one per rotated pair.
    freq_factors: Option<Vec<f32>>,
    /// Phi-3's long and short divisors, by tensor name (the context picks one).
    phi_factors: Vec<(&'static str, Vec<f32>)>,
    opts: ReferenceOptions,
}

/// Keys and values of every processed position, per layer: `[pos][n_head_kv * head_dim]`.
pub struct KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// Positions already processed.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets positions from `len` on (e.g. to re-run a prompt suffix).
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            let row = self.k.first().map_or(0, |k| k.len() / self.len);
            for l in 0..self.k.len() {
                self.k[l].truncate(len * row);
                self.v[l].truncate(len * row);
            }
            self.len = len;
        }
    }
}

/// Which positions' logits `forward` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    Last,
    All,
}

impl ReferenceModel {
    /// Builds the model from GGUF metadata and a tensor lookup (name → info and bytes), which
    /// may span split shards. Shapes are validated before anything is dequantized.
    pub fn load<'a>(
        meta: &Metadata,
        tensor: impl Fn(&str) -> Option<(&'a TensorInfo, &'a [u8])>,
        opts: ReferenceOptions,
    ) -> Result<Self, ReferenceError> {
        let info = |n: &str| tensor(n).map(|(i, _)| i);
        let cfg = ModelConfig::from_gguf(meta, info)?;
        cfg.validate_tensors(info)?;
        let load = |name: &str| -> Result<Vec<f32>, ReferenceError> {
            let (i, data) =
                tensor(name).ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
            Ok(quant::dequantize(name, i.ggml_type, data, i.n_elements() as usize).map_err(ModelError::from)?)
        };
        let mut layers = Vec::with_capacity(cfg.shape.n_layer);
        let g = &cfg.graph;
        // A fused matrix's parts (Phi-3), cut by rows.
        let parts = |fused: &str| -> Result<Vec<Vec<f32>>, ReferenceError> {
            let all = load(fused)?;
            let mut at = 0;
            let mut out = Vec::new();
            for (_, rows) in cfg.fused_parts(fused).expect("a fused matrix") {
                let n = rows * cfg.shape.n_embd;
                out.push(all[at..at + n].to_vec());
                at += n;
            }
            Ok(out)
        };
        for l in 0..cfg.shape.n_layer {
            let b = |w: &str| load(&names::blk(l, w));
            let bias = |w: &str| load(&names::blk_bias(l, w));
            let [wq, wk, wv]: [Vec<f32>; 3] = if g.fused_qkv {
                parts(&names::blk(l, "attn_qkv"))?.try_into().expect("three parts")
            } else {
                [b("attn_q")?, b("attn_k")?, b("attn_v")?]
            };
            let [w_gate, w_up]: [Vec<f32>; 2] = if g.fused_gate_up {
                parts(&names::blk(l, "ffn_up"))?.try_into().expect("two parts")
            } else {
                [b("ffn_gate")?, b("ffn_up")?]
            };
            layers.push(Layer {
                bias: if g.qkv_bias { Some([bias("attn_q")?, bias("attn_k")?, bias("attn_v")?]) } else { None },
                qk_norm: if g.qk_norm { Some([b("attn_q_norm")?, b("attn_k_norm")?]) } else { None },
                post_norm: if g.post_norms { Some([b("post_attention_norm")?, b("post_ffw_norm")?]) } else { None },
                attn_norm: b("attn_norm")?,
                wq,
                wk,
                wv,
                wo: b("attn_output")?,
                ffn_norm: b("ffn_norm")?,
                w_gate,
                w_up,
                w_down: b("ffn_down")?,
            });
        }
        let freq_factors = match tensor(names::ROPE_FREQS) {
            Some(_) => Some(load(names::ROPE_FREQS)?),
            None => cfg.rope_freq_factors(),
        };
        let mut phi_factors = Vec::new();
        for name in [names::ROPE_FACTORS_LONG, names::ROPE_FACTORS_SHORT] {
            if tensor(name).is_some() {
                phi_factors.push((name, load(name)?));
            }
        }
        Ok(ReferenceModel {
            tok_embd: load(names::TOKEN_EMBD)?,
            output: if cfg.tied_output {
                None
            } else {
                Some(load(names::OUTPUT)?)
            },
            output_norm: load(names::OUTPUT_NORM)?,
            layers,
            freq_factors,
            phi_factors,
            cfg,
            opts,
        })
    }

    /// Loads from an opened (possibly split) GGUF file.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_gguf(
        model: &crate::gguf::GgufFile,
        opts: ReferenceOptions,
    ) -> Result<Self, ReferenceError> {
        Self::load(
            model.metadata(),
            |n| model.tensor(n).map(|t| (t.info, t.data)),
            opts,
        )
    }

    /// An empty cache for up to `capacity` positions (capped at the model's context length).
    pub fn new_cache(&self, capacity: usize) -> KvCache {
        let capacity = capacity.min(self.cfg.shape.context_length).max(1);
        KvCache {
            k: vec![Vec::new(); self.cfg.shape.n_layer],
            v: vec![Vec::new(); self.cfg.shape.n_layer],
            len: 0,
            capacity,
        }
    }

    /// Runs `tokens` at the positions following those in `cache`, appends their keys/values,
    /// and returns logits (`n_vocab` per returned position).
    pub fn forward(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        which: Logits,
    ) -> Result<Vec<f32>, ReferenceError> {
        let c = &self.cfg;
        let (t_n, e) = (tokens.len(), c.shape.n_embd);
        check_input(tokens, c.shape.n_vocab, cache.len, cache.capacity)?;
        if t_n == 0 {
            return Ok(Vec::new());
        }
        let mut x = vec![0f32; t_n * e];
        let g = &c.graph;
        for (t, &id) in tokens.iter().enumerate() {
            let id = id as usize;
            x[t * e..(t + 1) * e].copy_from_slice(&self.tok_embd[id * e..(id + 1) * e]);
        }
        if g.embed_scale != 1.0 {
            x.iter_mut().for_each(|v| *v *= g.embed_scale);
        }
        let (hd, nq, nkv) = (c.shape.head_dim, c.shape.n_head * c.shape.head_dim, c.shape.n_head_kv * c.shape.head_dim);
        let pos0 = cache.len;
        // Phi-3's factors by the context (the cache's), else Llama 3's.
        let factors = match self.phi_factors.iter().find(|(n, _)| *n == c.rope_factors_for(cache.capacity)) {
            Some((_, f)) => Some(f.as_slice()),
            None => self.freq_factors.as_deref(),
        };
        // One table per distinct layer RoPE (Gemma 3's local and global layers differ).
        let mut tables: Vec<(crate::model::LayerRope, (Vec<f32>, Vec<f32>))> = Vec::new();
        for r in (0..c.shape.n_layer).map(|l| c.layer_rope(l)) {
            if !tables.iter().any(|(have, _)| *have == r) {
                let ff = if r.freq_factors { factors } else { None };
                let (mut cos, mut sin) = ops::rope_tables(pos0, t_n, c.rope_dim, r.base, r.freq_scale, ff);
                // Phi-3's long-context scale multiplies both, as ggml's rope does.
                if c.rope_attn_factor != 1.0 {
                    cos.iter_mut().chain(sin.iter_mut()).for_each(|v| *v *= c.rope_attn_factor);
                }
                tables.push((r, (cos, sin)));
            }
        }
        let rotate = |x: &mut [f32], cos: &[f32], sin: &[f32]| match g.rope_style {
            crate::model::RopeStyle::Adjacent => ops::rope(x, hd, cos, sin),
            crate::model::RopeStyle::Halves => ops::rope_halves_partial(x, hd, c.rope_dim, cos, sin),
        };
        let mut h = vec![0f32; t_n * e];
        let (mut q, mut k, mut v) = (
            vec![0f32; t_n * nq],
            vec![0f32; t_n * nkv],
            vec![0f32; t_n * nkv],
        );
        let mut attn = vec![0f32; t_n * nq];
        let (mut gate, mut u) = (vec![0f32; t_n * c.shape.n_ff], vec![0f32; t_n * c.shape.n_ff]);
        let mut o = vec![0f32; t_n * e];
        for (l, w) in self.layers.iter().enumerate() {
            ops::rms_norm(&x, &w.attn_norm, c.rms_eps, &mut h);
            ops::matmul(&h, &w.wq, e, &mut q);
            ops::matmul(&h, &w.wk, e, &mut k);
            ops::matmul(&h, &w.wv, e, &mut v);
            if let Some([bq, bk, bv]) = &w.bias {
                for (y, b) in [(&mut q, bq), (&mut k, bk), (&mut v, bv)] {
                    y.chunks_exact_mut(b.len()).for_each(|row| ops::add_assign(row, b));
                }
            }
            if let Some([nq_w, nk_w]) = &w.qk_norm {
                // Every head is a row of head_dim values, normalized by its own RMS.
                let (q0, k0) = (q.clone(), k.clone());
                ops::rms_norm(&q0, nq_w, c.rms_eps, &mut q);
                ops::rms_norm(&k0, nk_w, c.rms_eps, &mut k);
            }
            let r = c.layer_rope(l);
            let (cos, sin) = &tables.iter().find(|(have, _)| *have == r).expect("a table per layer RoPE").1;
            rotate(&mut q, cos, sin);
            rotate(&mut k, cos, sin);
            if self.opts.kv_f16 {
                for val in k.iter_mut().chain(v.iter_mut()) {
                    *val = f16::from_f32(*val).to_f32();
                }
            }
            cache.k[l].extend_from_slice(&k);
            cache.v[l].extend_from_slice(&v);
            ops::attention_with(
                &q,
                &cache.k[l],
                &cache.v[l],
                pos0,
                c.shape.n_head,
                c.shape.n_head_kv,
                hd,
                g.attn_scale,
                g.window(l),
                &mut attn,
            );
            ops::matmul(&attn, &w.wo, nq, &mut o);
            if let Some([post_attn, _]) = &w.post_norm {
                let o0 = o.clone();
                ops::rms_norm(&o0, post_attn, c.rms_eps, &mut o);
            }
            ops::add_assign(&mut x, &o);
            ops::rms_norm(&x, &w.ffn_norm, c.rms_eps, &mut h);
            ops::matmul(&h, &w.w_gate, e, &mut gate);
            ops::matmul(&h, &w.w_up, e, &mut u);
            ops::glu(&mut gate, &u, g.gate);
            ops::matmul(&gate, &w.w_down, c.shape.n_ff, &mut o);
            if let Some([_, post_ffw]) = &w.post_norm {
                let o0 = o.clone();
                ops::rms_norm(&o0, post_ffw, c.rms_eps, &mut o);
            }
            ops::add_assign(&mut x, &o);
        }
        cache.len += t_n;
        let rows = match which {
            Logits::Last => &x[(t_n - 1) * e..],
            Logits::All => &x[..],
        };
        let mut normed = vec![0f32; rows.len()];
        ops::rms_norm(rows, &self.output_norm, c.rms_eps, &mut normed);
        let mut logits = vec![0f32; rows.len() / e * c.shape.n_vocab];
        ops::matmul(
            &normed,
            self.output.as_deref().unwrap_or(&self.tok_embd),
            e,
            &mut logits,
        );
        Ok(logits)
    }
}
