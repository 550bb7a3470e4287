//! The forward pass on the GPU, for every family of [`crate::model::Arch`] as its
//! [`BlockGraph`](crate::model::BlockGraph) describes it: weights uploaded once, every activation buffer and bind
//! group prepared at load, and each step (a prompt chunk or one decoded token) recorded into a
//! single command submission with no readback until its result.

use super::ops::{
    int_dot_supported, step_buffer, ActivationBlocks, AddOp, ArgmaxOp, AttentionOp, AttentionScratch, DecodeInput, DrawOp, DrawParams, TopKOp, EmbeddingOp,
    GluOp, KvCache, MatmulOp, QkNorm, QuantizeOp, RmsNormOp, RopeOp, RopeParams, Scores, Step, XQ_UNIT_BYTES,
};
use super::weights::GpuWeight;
use super::{GpuContext, GpuError};
use crate::model::memory::{INT_DOT_MAX_TOKENS, TOP_K};
use crate::model::{check_input, names, InputError, ModelConfig, ModelError};
use std::sync::Arc;

/// Failures while loading or running the GPU model.
#[derive(Debug, thiserror::Error)]
pub enum GpuModelError {
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    /// A chained step with no greedy or sampled step before it to take its token from (an
    /// internal invariant, reported rather than assumed).
    #[error("a chained step must follow a greedy or sampled step directly (with nothing truncated between)")]
    NoChainedToken,
    /// A step with no tokens.
    #[error("a step needs at least one token")]
    EmptyStep,
}

impl GpuModelError {
    /// The stable code JS sees as `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            GpuModelError::Gpu(e) => e.code(),
            GpuModelError::Model(e) => e.code(),
            GpuModelError::Input(e) => e.code(),
            GpuModelError::Gguf(e) => e.code(),
            GpuModelError::NoChainedToken | GpuModelError::EmptyStep => "INVALID_ARGUMENT",
        }
    }
}

/// One transformer block. Residual adds are fused into the norm that follows them: `ffn_norm`
/// first adds the attention output to x, and the next block's `attn_norm` adds this block's
/// FFN output (only the last block has an `add_ffn` of its own).
struct Layer {
    attn_norm: RmsNormOp,
    /// The f32 products, for any step.
    mm: Products,
    /// Q and K in one dispatch (and the biases, or the per-head norms, where the model has
    /// them).
    rope: RopeOp,
    attention: AttentionOp,
    ffn_norm: RmsNormOp,
    /// Norms of the attention and feed-forward outputs into `o_post`, which the residual adds
    /// then read (BlockGraph::post_norms).
    post_norm: Option<[RmsNormOp; 2]>,
    glu: GluOp,
    /// `mm.down` with the gate in its activation loads, for one-token steps where that is chosen.
    down_glu: Option<MatmulOp>,
    add_ffn: Option<AddOp>,
    /// The packed-integer products, for steps of at most [`INT_DOT_MAX_TOKENS`] tokens
    /// where they are chosen (KernelTuning::int_dot_for).
    int_dot: Option<IntDotLayer>,
    /// A decode step's products with the norms and residual adds folded in, where chosen
    /// (KernelTuning::fuse_norm).
    fused: Option<FusedDecode>,
}

/// The product set a step of `n` tokens records in a block: the packed-integer products where
/// the block has them and the step is short enough, else a one-token step's with the norms
/// folded in where chosen, else the f32 ones.
struct StepProducts<'a> {
    int: Option<IntInputs<'a>>,
    /// The norms and residual adds folded into the products (with either product set).
    fused: Option<&'a FusedDecode>,
    mm: &'a Products,
}

impl Layer {
    fn products(&self, n: u32) -> StepProducts<'_> {
        let int = self.int_dot.as_ref().filter(|_| n <= INT_DOT_MAX_TOKENS);
        let int_decode = int.and_then(|i| i.decode.as_ref()).filter(|_| n == 1);
        let fused = self.fused.as_ref().filter(|_| n == 1 && (int.is_none() || int_decode.is_some()));
        let mm = match (int, int_decode, fused) {
            (_, Some(d), _) => &d.mm,
            (Some(i), None, _) => &i.mm,
            (None, _, Some(f)) => &f.mm,
            (None, _, None) => &self.mm,
        };
        let int = int.map(|i| IntInputs {
            attn_in: int_decode.map_or(&i.quant_attn_in, |d| &d.quant_attn_in),
            attn: &i.quant_attn,
            ffn_in: int_decode.map_or(&i.quant_ffn_in, |d| &d.quant_ffn_in),
            glu: &i.quant_glu,
        });
        StepProducts { int, fused, mm }
    }
}

/// A block's seven products, each set built one way: the f32 kernels, the packed-integer ones,
/// or a decode step's with the norms and residual adds folded in. A step records one set.
struct Products {
    /// Q, K and V: one product each, or, over a joint of them ([`GpuWeight::join`]), one for
    /// all three (`attn_qkv`) or for Q and K (`attn_qk`, then `attn_v`).
    attn_in: Vec<Product>,
    wo: Product,
    /// Gate and up: one each, or one over their joint (`ffn_gate_up`).
    ffn_in: Vec<Product>,
    down: Product,
}

/// A product with the name a step's profile gives it and the weight bytes it reads.
struct Product {
    name: &'static str,
    op: MatmulOp,
    weight_bytes: u64,
}

impl Product {
    fn new(name: &'static str, w: &GpuWeight, op: MatmulOp) -> Self {
        Product { name, op, weight_bytes: w.encoded_bytes() }
    }
}

/// A block's matrices, with the input each reads and the output it writes (by a step that does
/// not fold the norms in).
struct Slots<'a>([Slot<'a>; 7]);

/// A matrix's name, weight, input and output.
type Slot<'a> = (&'static str, &'a GpuWeight, &'a wgpu::Buffer, &'a wgpu::Buffer);

/// A decode product's maker: `W`'s rows written to the outputs (one, or a joint's members' each).
type IntoOutputs<'a> = dyn Fn(&GpuWeight, &[(&wgpu::Buffer, usize)]) -> Result<MatmulOp, GpuError> + 'a;

/// The decode products of matrices that read the same input: one over their joint (named
/// `joint`) where the loader made one and `join` holds, else one per matrix.
fn joined_products(slots: &[Slot<'_>], joint: &'static str, join: bool, make: &IntoOutputs<'_>) -> Result<Vec<Product>, GpuError> {
    let weights: Vec<&GpuWeight> = slots.iter().map(|s| s.1).collect();
    if let Some(j) = GpuWeight::join(&weights).filter(|_| join) {
        let outputs: Vec<(&wgpu::Buffer, usize)> = slots.iter().map(|s| (s.3, s.1.rows)).collect();
        return Ok(vec![Product::new(joint, &j, make(&j, &outputs)?)]);
    }
    slots.iter().map(|&(name, w, _, y)| Ok(Product::new(name, w, make(w, &[(y, w.rows)])?))).collect()
}

/// Q, K and V's decode products: over their joint, or (where V has its own type) Q and K over
/// theirs and V apart, or one each.
fn attn_in_products([q, k, v]: [Slot<'_>; 3], join: bool, make: &IntoOutputs<'_>) -> Result<Vec<Product>, GpuError> {
    let all = joined_products(&[q, k, v], "attn_qkv", join, make)?;
    if all.len() < 3 {
        return Ok(all);
    }
    let mut p = joined_products(&[q, k], "attn_qk", join, make)?;
    p.extend(joined_products(&[v], "attn_v", join, make)?);
    Ok(p)
}

impl Products {
    /// One product per matrix, made by `op(weight, input, output)`.
    fn apart(
        slots: &Slots<'_>,
        mut op: impl FnMut(&GpuWeight, &wgpu::Buffer, &wgpu::Buffer) -> Result<MatmulOp, GpuError>,
    ) -> Result<Self, GpuError> {
        let mut p = Vec::with_capacity(7);
        for &(name, w, x, y) in &slots.0 {
            p.push(Product::new(name, w, op(w, x, y)?));
        }
        let down = p.pop().expect("seven");
        let ffn_in = p.split_off(4);
        let wo = p.pop().expect("four");
        Ok(Products { attn_in: p, wo, ffn_in, down })
    }

    fn all(&self) -> impl Iterator<Item = &Product> {
        self.attn_in.iter().chain([&self.wo]).chain(&self.ffn_in).chain([&self.down])
    }
}

/// A block of a one-token step in seven products and no other dispatch but RoPE and attention
/// (and SwiGLU where down does not form it): Q, K, V normalize the residual stream `x` as they
/// load it (the attention norm), O adds its output into `x`, gate and up normalize `x` again
/// (the FFN norm), and down forms SwiGLU as it loads and adds into `x`
/// ([`MatmulOp::for_decode`]).
struct FusedDecode {
    mm: Products,
    /// Whether `down` forms SwiGLU as it loads (KernelTuning::fuse_swiglu); if not, the
    /// layer's SwiGLU kernel runs before it.
    swiglu_in_down: bool,
    /// With post-norms (Gemma 3), O and down write `o` instead of adding into `x`, and these
    /// add it to `x` through the attention's and the FFN's post-norm, one dispatch each.
    post_adds: Option<[RmsNormOp; 2]>,
}

/// A block's products on 8-bit activations: each product's input is quantized once into the
/// shared `xq` buffer (Q, K and V share the attention norm's; gate and up the FFN norm's; the
/// down projection's quantizes silu(gate) · up), then multiplied with `dot4I8Packed`.
struct IntDotLayer {
    /// Quantize `h`, the output of the attention norm and of the FFN norm.
    quant_attn_in: QuantizeOp,
    quant_ffn_in: QuantizeOp,
    quant_attn: QuantizeOp,
    quant_glu: QuantizeOp,
    mm: Products,
    /// A decode step's set, where the norms are folded in (KernelTuning::fuse_norm).
    decode: Option<IntDecode>,
}

/// A one-token step's packed-integer block with the norms and residual adds folded in, as
/// [`FusedDecode`] folds them for the f32 products: the attention and FFN norms are done by
/// the quantize of the block's input from the residual stream ([`QuantizeOp::normed`]), Q, K
/// and V (and gate and up) are one product over their joint where the loader made one, and O
/// and down add into the residual stream. Ten dispatches a block against fifteen, each
/// result bit for bit the unfolded set's.
struct IntDecode {
    quant_attn_in: QuantizeOp,
    quant_ffn_in: QuantizeOp,
    mm: Products,
}

/// The quantizes a packed-integer step records before each product group.
struct IntInputs<'a> {
    attn_in: &'a QuantizeOp,
    attn: &'a QuantizeOp,
    ffn_in: &'a QuantizeOp,
    glu: &'a QuantizeOp,
}

/// What a step returns.
enum Want {
    /// Logits of the last token.
    Last,
    /// Logits of every token.
    All,
    /// Only the next token, picked on the device from the last token's logits.
    Token(Pick),
    /// The top [`TOP_K`] `(id, logit)` of the last token.
    TopK,
}

/// How a step picks its token on the device, into `token_out`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Pick {
    /// The most likely token.
    Argmax,
    /// The seeded draw after top-k.
    Draw(DrawParams),
}

/// Where [`GpuModel::build`] gets its weights: matrices as [`GpuWeight`]s, 1-D tensors (norms,
/// RoPE factors) as f32 buffers.
pub trait TensorSource {
    fn weight(&mut self, name: &str) -> Result<GpuWeight, GpuModelError>;
    fn vector_opt(&mut self, name: &str) -> Result<Option<wgpu::Buffer>, GpuModelError>;
    /// A KV cache allocated ahead of the weights (the streaming loader makes it at the first
    /// header, so a context that does not fit fails before the download); used when its
    /// capacity is the context being built.
    fn kv_cache(&mut self) -> Option<KvCache> {
        None
    }
    fn vector(&mut self, name: &str) -> Result<wgpu::Buffer, GpuModelError> {
        self.vector_opt(name)?
            .ok_or_else(|| ModelError::MissingTensor(name.into()).into())
    }
}

/// A Llama model resident on the GPU with its KV cache.
pub struct GpuModel {
    pub ctx: Arc<GpuContext>,
    pub cfg: ModelConfig,
    context_size: u32,
    /// Tokens per submission during prefill.
    max_batch: u32,
    pos: u32,
    /// The position after the last greedy or sampled step while `token_out` still holds its
    /// token, which a chained step ([`GpuModel::submit_chained`]) then feeds on the GPU.
    token_at: Option<u32>,
    /// A step queued on the GPU on the token `.1` that the last step returned, picking its own
    /// token as `.2` says ([`GpuModel::greedy_step`], [`GpuModel::sample_step`]); its position
    /// is not counted by [`GpuModel::position`] until a step on that token takes it.
    queued: Option<(PendingToken, u32, Pick)>,
    /// Dispatches in the last submitted chunk (see [`GpuModel::last_step_dispatches`]).
    last_dispatches: u64,
    step: wgpu::Buffer,
    ids: wgpu::Buffer,
    x: wgpu::Buffer,
    x_last: wgpu::Buffer,
    logits: wgpu::Buffer,
    /// The token a greedy or sampled step picked (a u32).
    token_out: wgpu::Buffer,
    embed: EmbeddingOp,
    layers: Vec<Layer>,
    norm_all: RmsNormOp,
    output_all: MatmulOp,
    norm_last: RmsNormOp,
    output_last: MatmulOp,
    /// The output product of a one-token step normalizing `x` as it loads (with
    /// [`FusedDecode`]), in place of the copy, the norm and `output_last`.
    output_fused: Option<MatmulOp>,
    argmax: ArgmaxOp,
    top_k: TopKOp,
    top_k_out: wgpu::Buffer,
    draw: DrawOp,
    /// Weight bytes each product of a decode step reads, by op name (see [`GpuModel::decode_weight_reads`]).
    weight_reads: Vec<(&'static str, u64)>,
    _kv: KvCache,
    _weights: Vec<GpuWeight>,
    _attn_scratch: AttentionScratch,
    _buffers: Vec<wgpu::Buffer>,
}

/// Receives each op of a step with its name and a closure that records it into a pass.
type OpRecorder<'a> = dyn FnMut(&'static str, &mut dyn FnMut(&mut wgpu::ComputePass<'_>)) + 'a;

impl GpuModel {
    /// Prepares every op over weights that `tensors` provides (uploading them now, or already
    /// uploaded by the streaming loader). `cfg` must have been validated against the tensors.
    pub fn build(
        ctx: Arc<GpuContext>,
        cfg: ModelConfig,
        tensors: &mut dyn TensorSource,
        context_size: usize,
    ) -> Result<Self, GpuModelError> {
        let c = &cfg;
        let context_size = context_size.clamp(1, c.shape.context_length) as u32;
        let (e, nq, nkv, ff, nv) = (
            c.shape.n_embd,
            c.shape.n_head * c.shape.head_dim,
            c.shape.n_head_kv * c.shape.head_dim,
            c.shape.n_ff,
            c.shape.n_vocab,
        );
        let max_batch = ctx.memory_limits().max_batch(&c.shape, context_size as u64) as u32;
        let mb = max_batch as u64;

        let mut weights = Vec::new();
        let mut buffers = Vec::new();
        let act =
            |what: &str, floats: u64| ctx.storage(what, floats * 4, wgpu::BufferUsages::empty());

        let step = step_buffer(&ctx)?;
        let step_one = step_buffer(&ctx)?;
        ctx.write(
            &step_one,
            0,
            bytemuck::bytes_of(&Step {
                n_tokens: 1,
                pos: 0,
                _pad: [0; 2],
            }),
        );
        let ids = ctx.storage("token ids", mb * 4, wgpu::BufferUsages::empty())?;
        let x = act("x", mb * e as u64)?;
        let h = act("h", mb * e as u64)?;
        let q = act("q", mb * nq as u64)?;
        let k = act("k", mb * nkv as u64)?;
        let v = act("v", mb * nkv as u64)?;
        let attn = act("attn", mb * nq as u64)?;
        let o = act("o", mb * e as u64)?;
        let g = act("gate", mb * ff as u64)?;
        let u = act("up", mb * ff as u64)?;
        let x_last = act("x_last", e as u64)?;
        let h_last = act("h_last", e as u64)?;
        let logits = act("logits", mb * nv as u64)?;
        let token_out = ctx.storage("token", 16, wgpu::BufferUsages::empty())?;
        let kv = match tensors.kv_cache().filter(|kv| kv.capacity == context_size) {
            Some(kv) => kv,
            None => KvCache::new(
                &ctx,
                c.shape.n_layer,
                context_size,
                c.shape.n_head_kv as u32,
                c.shape.head_dim as u32,
            )?,
        };
        let scratch = AttentionScratch::new(&ctx, &kv, c.shape.n_head as u32, max_batch)?;
        let graph = &c.graph;
        // What the residual adds read: a block's outputs as the products write them, or as the
        // post-norms leave them.
        let o_post = if graph.post_norms { Some(act("o post-norm", mb * e as u64)?) } else { None };
        let resid = o_post.as_ref().unwrap_or(&o);
        // Llama 3's factors (in the file, or from its scaling keys), or Phi-3's for this context.
        let freq_factors = match tensors.vector_opt(names::ROPE_FREQS)? {
            Some(b) => Some(b),
            None => match c.rope_freq_factors() {
                Some(f) => Some(ctx.upload("rope freq factors", bytemuck::cast_slice(&f))?),
                None => tensors.vector_opt(c.rope_factors_for(context_size as usize))?,
            },
        };

        let tok_embd = tensors.weight(names::TOKEN_EMBD)?;
        let embed = EmbeddingOp::scaled(&ctx, &tok_embd, &ids, &x, graph.embed_scale, &step)?;
        let fuse_swiglu = ctx.fuse_swiglu();
        let int_dot = ctx.tuning.int_dot_for(&ctx.features);
        // The decode products fold the norms and residual adds in (where post-norms come
        // between a product and its add, the post-norm adds instead).
        let fuse_norm = ctx.fuse_norm() && e.is_multiple_of(32);
        let norm_input = |w: &GpuWeight, norm: &wgpu::Buffer, y: &wgpu::Buffer| {
            MatmulOp::for_decode(&ctx, w, &x, DecodeInput::Norm { weight: norm, eps: c.rms_eps }, y, false, &step, None)
        };
        let join = fuse_norm && ctx.join_products();
        // A decode product normalizing `x` as it loads it into one output, or a joint's into several.
        let norm_into = |norm: &wgpu::Buffer, w: &GpuWeight, outputs: &[(&wgpu::Buffer, usize)]| match outputs {
            [(y, _)] => norm_input(w, norm, y),
            _ => MatmulOp::for_decode_into(&ctx, w, &x, DecodeInput::Norm { weight: norm, eps: c.rms_eps }, outputs, &step, None),
        };
        // One buffer for every quantized input (each is consumed before the next is written),
        // sized for the widest and the longest integer step.
        let xq = if int_dot {
            let units = [e, nq, ff].into_iter().max().unwrap_or(0).div_ceil(32) as u64;
            let tokens = (INT_DOT_MAX_TOKENS as u64).min(mb);
            Some(ctx.storage("quantized activations", units * tokens * XQ_UNIT_BYTES, wgpu::BufferUsages::empty())?)
        } else {
            None
        };
        let mut layers = Vec::with_capacity(c.shape.n_layer);
        let mut weight_reads = Vec::new();
        for l in 0..c.shape.n_layer {
            let b = |w: &str| names::blk(l, w);
            let attn_norm_w = tensors.vector(&b("attn_norm"))?;
            let ffn_norm_w = tensors.vector(&b("ffn_norm"))?;
            let (wq, wk, wv, wo) = (
                tensors.weight(&b("attn_q"))?,
                tensors.weight(&b("attn_k"))?,
                tensors.weight(&b("attn_v"))?,
                tensors.weight(&b("attn_output"))?,
            );
            let (wg, wu, wd) = (
                tensors.weight(&b("ffn_gate"))?,
                tensors.weight(&b("ffn_up"))?,
                tensors.weight(&b("ffn_down"))?,
            );
            let last = l + 1 == c.shape.n_layer;
            let slots = Slots([
                ("attn_q", &wq, &h, &q),
                ("attn_k", &wk, &h, &k),
                ("attn_v", &wv, &h, &v),
                ("attn_output", &wo, &attn, &o),
                ("ffn_gate", &wg, &h, &g),
                ("ffn_up", &wu, &h, &u),
                ("ffn_down", &wd, &g, &o),
            ]);
            let int_layer = match &xq {
                Some(xq) if [&wq, &wk, &wv, &wo, &wg, &wu, &wd].iter().all(|w| int_dot_supported(&ctx, w.ty)) => {
                    let int = |w: &GpuWeight, y: &wgpu::Buffer| MatmulOp::with_int_dot(&ctx, w, xq, y, &step, None);
                    // Each input rounded as llama.cpp rounds it for its (first) reader's type.
                    let blocks = |w: &GpuWeight| ActivationBlocks::for_type(w.ty);
                    Some(IntDotLayer {
                        quant_attn_in: QuantizeOp::new(&ctx, e, &h, None, xq, &step, blocks(&wq))?,
                        quant_attn: QuantizeOp::new(&ctx, nq, &attn, None, xq, &step, blocks(&wo))?,
                        quant_ffn_in: QuantizeOp::new(&ctx, e, &h, None, xq, &step, blocks(&wg))?,
                        quant_glu: QuantizeOp::new(&ctx, ff, &g, Some((&u, graph.gate)), xq, &step, blocks(&wd))?,
                        mm: Products::apart(&slots, |w, _, y| int(w, y))?,
                        decode: None,
                    })
                }
                // A block with an F16/F32 matrix (or no integer products) keeps the f32 kernels.
                _ => None,
            };
            // `resid` holds the previous block's FFN output when this norm runs.
            let attn_norm = if l == 0 {
                RmsNormOp::new(&ctx, &x, &attn_norm_w, &h, e as u32, c.rms_eps, &step)?
            } else {
                RmsNormOp::with_residual(&ctx, &x, resid, &attn_norm_w, &h, e as u32, c.rms_eps, &step)?
            };
            let bias = if graph.qkv_bias {
                let mut b = |w: &str| tensors.vector(&names::blk_bias(l, w));
                Some([b("attn_q")?, b("attn_k")?, b("attn_v")?])
            } else {
                None
            };
            // Qwen3's and Gemma 3's per-head norms of Q and K, done by RoPE as it loads them.
            let qk_norm = if graph.qk_norm {
                let (wq_n, wk_n) = (tensors.vector(&b("attn_q_norm"))?, tensors.vector(&b("attn_k_norm"))?);
                add_read(&mut weight_reads, "rope", 2 * c.shape.head_dim as u64 * 4);
                Some([wq_n, wk_n])
            } else {
                None
            };
            let (post_norm, post_adds) = match &o_post {
                Some(o_post) => {
                    let (pa, pf) = (tensors.vector(&b("post_attention_norm"))?, tensors.vector(&b("post_ffw_norm"))?);
                    let ops = [
                        RmsNormOp::new(&ctx, &o, &pa, o_post, e as u32, c.rms_eps, &step)?,
                        RmsNormOp::new(&ctx, &o, &pf, o_post, e as u32, c.rms_eps, &step)?,
                    ];
                    let adds = if fuse_norm {
                        Some([
                            RmsNormOp::add_normed(&ctx, &x, &o, &pa, e as u32, c.rms_eps, &step)?,
                            RmsNormOp::add_normed(&ctx, &x, &o, &pf, e as u32, c.rms_eps, &step)?,
                        ])
                    } else {
                        None
                    };
                    add_read(&mut weight_reads, "post_norm", 2 * e as u64 * 4);
                    buffers.extend([pa, pf]);
                    (Some(ops), adds)
                }
                None => (None, None),
            };
            // A decode step's O and down add into x, or with post-norms write o for them.
            let (block_out, accumulate) = if post_adds.is_some() { (&o, false) } else { (&x, true) };
            // A decode step's packed-integer products with the norms and adds folded in, as
            // the f32 ones below: the joints made where the f32 set makes them.
            let int_layer = match (int_layer, &xq) {
                (Some(mut i), Some(xq)) if fuse_norm => {
                    let int = |w: &GpuWeight, outputs: &[(&wgpu::Buffer, usize)], add: bool| MatmulOp::int_dot_decode(&ctx, w, xq, outputs, add, &step, None);
                    let into = |w: &GpuWeight, outputs: &[(&wgpu::Buffer, usize)]| int(w, outputs, false);
                    let [q, k, v, _, gate, up, _] = &slots.0;
                    let attn_in = attn_in_products([*q, *k, *v], join, &into)?;
                    let blocks = |w: &GpuWeight| ActivationBlocks::for_type(w.ty);
                    i.decode = Some(IntDecode {
                        quant_attn_in: QuantizeOp::normed(&ctx, e, &x, &attn_norm_w, c.rms_eps, xq, &step, blocks(&wq))?,
                        quant_ffn_in: QuantizeOp::normed(&ctx, e, &x, &ffn_norm_w, c.rms_eps, xq, &step, blocks(&wg))?,
                        mm: Products {
                            attn_in,
                            wo: Product::new("attn_output", &wo, int(&wo, &[(block_out, wo.rows)], accumulate)?),
                            ffn_in: joined_products(&[*gate, *up], "ffn_gate_up", join, &into)?,
                            down: Product::new("ffn_down", &wd, int(&wd, &[(block_out, wd.rows)], accumulate)?),
                        },
                    });
                    Some(i)
                }
                (i, _) => i,
            };
            let rope = RopeParams::for_layer(c, l);
            let layer_factors = freq_factors.as_ref().filter(|_| c.layer_rope(l).freq_factors);
            layers.push(Layer {
                attn_norm,
                mm: Products::apart(&slots, |w, x, y| MatmulOp::new(&ctx, w, x, y, &step))?,
                // K goes from RoPE straight into the cache, with V: no cache write of its own.
                rope: RopeOp::pair_into_cache(
                    &ctx,
                    &q,
                    c.shape.n_head as u32,
                    &k,
                    &v,
                    &kv,
                    l,
                    &rope,
                    layer_factors,
                    bias.as_ref().map(|b| b.each_ref()),
                    qk_norm.as_ref().map(|[q, k]| QkNorm { q, k, eps: c.rms_eps }),
                    &step,
                )?,
                attention: AttentionOp::with_scores(
                    &ctx,
                    &q,
                    &k,
                    &v,
                    &attn,
                    &kv,
                    l,
                    c.shape.n_head as u32,
                    &scratch,
                    Scores { scale: graph.attn_scale, window: graph.window(l) },
                    &step,
                )?
                .without_cache_write(),
                ffn_norm: RmsNormOp::with_residual(&ctx, &x, resid, &ffn_norm_w, &h, e as u32, c.rms_eps, &step)?,
                post_norm,
                // Prompts: the gate in place, then the plain product; a decode step may fuse the
                // two (KernelTuning::fuse_swiglu).
                glu: GluOp::new(&ctx, &g, &u, ff as u32, graph.gate, &step)?,
                down_glu: if fuse_swiglu {
                    Some(MatmulOp::with_glu_input(&ctx, &wd, &g, &u, graph.gate, &o, &step, None)?)
                } else {
                    None
                },
                add_ffn: if last { Some(AddOp::new(&ctx, &x, resid, e as u32, &step)?) } else { None },
                int_dot: int_layer,
                fused: if fuse_norm {
                    let [q, k, v, _, gate, up, _] = &slots.0;
                    // Q, K and V in one product where the loader put them in one buffer, else
                    // Q and K in one; gate and up likewise.
                    let attn_in = attn_in_products([*q, *k, *v], join, &|w, o| norm_into(&attn_norm_w, w, o))?;
                    Some(FusedDecode {
                        mm: Products {
                            attn_in,
                            wo: Product::new("attn_output", &wo, MatmulOp::for_decode(&ctx, &wo, &attn, DecodeInput::Plain, block_out, accumulate, &step, None)?),
                            ffn_in: joined_products(&[*gate, *up], "ffn_gate_up", join, &|w, o| norm_into(&ffn_norm_w, w, o))?,
                            // SwiGLU in down's loads, or (where that is not chosen) a dispatch
                            // of its own before it, in place in `g`.
                            down: Product::new("ffn_down", &wd, MatmulOp::for_decode(&ctx, &wd, &g, if fuse_swiglu { DecodeInput::Glu { up: &u, gate: graph.gate } } else { DecodeInput::Plain }, block_out, accumulate, &step, None)?),
                        },
                        swiglu_in_down: fuse_swiglu,
                        post_adds,
                    })
                } else {
                    None
                },
            });
            // What a decode step reads, in the names its products have. Norm weights are f32
            // vectors in every GGUF; folded in, the first product reading each reads it, or
            // on 8-bit activations the quantize that normalizes.
            let StepProducts { fused: folded, mm: decode, int } = layers.last().expect("pushed").products(1);
            let norm_bytes = e as u64 * 4;
            for (i, p) in decode.all().enumerate() {
                let first_of_block = i == 0 || i == decode.attn_in.len() + 1;
                let norm = if folded.is_some() && int.is_none() && first_of_block { norm_bytes } else { 0 };
                add_read(&mut weight_reads, p.name, p.weight_bytes + norm);
            }
            if folded.is_some() && int.is_some() {
                add_read(&mut weight_reads, "quantize", 2 * norm_bytes);
            }
            if folded.is_none() {
                add_read(&mut weight_reads, "attn_norm", norm_bytes);
                add_read(&mut weight_reads, "ffn_norm", norm_bytes);
            }
            if let Some(bias) = bias {
                add_read(&mut weight_reads, "rope", bias.iter().map(|b| b.size()).sum());
                buffers.extend(bias);
            }
            buffers.extend(qk_norm.into_iter().flatten());
            weights.extend([wq, wk, wv, wo, wg, wu, wd]);
            buffers.extend([attn_norm_w, ffn_norm_w]);
        }
        let output_norm_w = tensors.vector(names::OUTPUT_NORM)?;
        let output_w = if c.tied_output {
            None
        } else {
            Some(tensors.weight(names::OUTPUT)?)
        };
        let out_w = output_w.as_ref().unwrap_or(&tok_embd);
        // The embedding is only gathered from, one row per token: not a read of the matrix.
        if fuse_norm {
            add_read(&mut weight_reads, "output", out_w.encoded_bytes() + e as u64 * 4);
        } else {
            add_read(&mut weight_reads, "output_norm", e as u64 * 4);
            add_read(&mut weight_reads, "output", out_w.encoded_bytes());
        }
        let norm_all = RmsNormOp::new(&ctx, &x, &output_norm_w, &h, e as u32, c.rms_eps, &step)?;
        let output_all = MatmulOp::new(&ctx, out_w, &h, &logits, &step)?;
        let norm_last = RmsNormOp::new(
            &ctx,
            &x_last,
            &output_norm_w,
            &h_last,
            e as u32,
            c.rms_eps,
            &step_one,
        )?;
        let output_last = MatmulOp::new(&ctx, out_w, &h_last, &logits, &step_one)?;
        let output_fused = if fuse_norm { Some(norm_input(out_w, &output_norm_w, &logits)?) } else { None };
        // The output product stays f32 with the integer products on: its rounding would land on
        // the logits directly, and quantizing its input moved our log-probabilities away from
        // llama.cpp's (SmolLM2 Q4_1, teacher-forced: mean |Δ| 0.035 → 0.038 nats, agreement
        // 97.7 → 97.4%).
        let argmax = ArgmaxOp::new(&ctx, &logits, nv as u32, &token_out)?;
        let top_k_out = ctx.storage("top-k", TOP_K as u64 * 8, wgpu::BufferUsages::empty())?;
        let top_k = TopKOp::new(&ctx, &logits, nv as u32, TOP_K.min(nv as u32), &top_k_out)?;
        let draw = DrawOp::new(&ctx, &top_k, &top_k_out, &token_out)?;
        weights.push(tok_embd);
        weights.extend(output_w);
        buffers.extend([h, q, k, v, attn, o, g, u, h_last, output_norm_w, step_one]);
        buffers.extend(freq_factors);
        buffers.extend(xq);
        buffers.extend(o_post);
        Ok(GpuModel {
            cfg,
            context_size,
            max_batch,
            pos: 0,
            token_at: None,
            queued: None,
            last_dispatches: 0,
            step,
            ids,
            x,
            x_last,
            logits,
            token_out,
            embed,
            layers,
            norm_all,
            output_all,
            norm_last,
            output_last,
            output_fused,
            argmax,
            top_k,
            top_k_out,
            draw,
            weight_reads,
            _kv: kv,
            _weights: weights,
            _attn_scratch: scratch,
            _buffers: buffers,
            ctx,
        })
    }

    pub fn context_size(&self) -> usize {
        self.context_size as usize
    }

    /// Positions already in the KV cache (a queued greedy step's not counted).
    pub fn position(&self) -> usize {
        self.pos as usize - self.queued.is_some() as usize
    }

    /// Keeps only the first `pos` cached positions (a conversation that shares a prefix with
    /// the previous one reuses them); later ones are overwritten by the next step.
    pub fn truncate(&mut self, pos: usize) {
        self.drop_queued();
        if (pos as u32) < self.pos {
            self.pos = pos as u32;
            self.token_at = None;
        }
    }

    /// Forgets the KV cache (its contents are simply overwritten later).
    pub fn reset(&mut self) {
        self.drop_queued();
        self.pos = 0;
        self.token_at = None;
    }


    /// Hands each op of the layers (and, with `all`, the all-position output) to `rec` with
    /// its name, in execution order. The normal step records them all into one pass; the
    /// profiler gives each its own timed pass.
    fn record_layers(&self, rec: &mut OpRecorder<'_>, n: u32, all: bool) {
        rec("embedding", &mut |p| self.embed.record(p, n));
        for l in &self.layers {
            // The packed-integer products replace the f32 ones, each group after the quantize
            // of its input; a decode step's products may do the norms and residual adds.
            let StepProducts { int, fused, mm } = l.products(n);
            // With post-norms, the attention's (0) and the FFN's (1): folded in, each adds its
            // block's output to x normalized; else it normalizes it into o_post.
            let post_norm = |i: usize| fused.and_then(|f| f.post_adds.as_ref()).or(l.post_norm.as_ref()).map(|ops| &ops[i]);
            if fused.is_none() {
                rec("attn_norm", &mut |p| l.attn_norm.record(p, n));
            }
            if let Some(i) = &int {
                rec("quantize", &mut |p| i.attn_in.record(p, n));
            }
            for m in &mm.attn_in {
                rec(m.name, &mut |p| m.op.record(p, n));
            }
            rec("rope", &mut |p| l.rope.record(p, n));
            rec("attention", &mut |p| l.attention.record(p, n, self.pos));
            if let Some(i) = &int {
                rec("quantize", &mut |p| i.attn.record(p, n));
            }
            rec(mm.wo.name, &mut |p| mm.wo.op.record(p, n));
            if let Some(op) = post_norm(0) {
                rec("post_norm", &mut |p| op.record(p, n));
            }
            if fused.is_none() {
                rec("ffn_norm", &mut |p| l.ffn_norm.record(p, n));
            }
            if let Some(i) = &int {
                rec("quantize", &mut |p| i.ffn_in.record(p, n));
            }
            for m in &mm.ffn_in {
                rec(m.name, &mut |p| m.op.record(p, n));
            }
            // SwiGLU forms as down's input is quantized, or in down's loads, or in a kernel of
            // its own.
            let (own_swiglu, down) = match (&int, fused, &l.down_glu) {
                (Some(_), _, _) => (false, &mm.down.op),
                (None, Some(f), _) => (!f.swiglu_in_down, &mm.down.op),
                (None, None, Some(down_glu)) if n == 1 => (false, down_glu),
                (None, None, _) => (true, &mm.down.op),
            };
            if let Some(i) = &int {
                rec("quantize", &mut |p| i.glu.record(p, n));
            }
            if own_swiglu {
                rec("glu", &mut |p| l.glu.record(p, n));
            }
            rec("ffn_down", &mut |p| down.record(p, n));
            if let Some(op) = post_norm(1) {
                rec("post_norm", &mut |p| op.record(p, n));
            }
            // Folded in, down added its output to x already.
            if let (None, Some(a)) = (fused, &l.add_ffn) {
                rec("add", &mut |p| a.record(p, n));
            }
        }
        if all {
            rec("output_norm", &mut |p| self.norm_all.record(p, n));
            rec("output", &mut |p| self.output_all.record(p, n));
        }
    }

    /// Decodes `token` once with every op in its own compute pass bracketed by timestamp
    /// queries, and returns `(op, nanoseconds)` summed over layers, in first-seen order. Needs
    /// [`super::GpuFeatures::timestamps`]. Separate passes add a little overhead per op, so
    /// the sum exceeds a normal step; the split between ops is what this is for.
    pub async fn profile_decode(&mut self, token: u32) -> Result<Vec<(&'static str, f64)>, GpuModelError> {
        self.drop_queued();
        check_input(&[token], self.cfg.shape.n_vocab, self.pos as usize, self.context_size as usize)?;
        if !self.ctx.features.timestamps {
            return Err(super::GpuError::Validation {
                what: "profiling".into(),
                message: "this adapter has no timestamp queries".into(),
            }
            .into());
        }
        let ctx = self.ctx.clone();
        ctx.write(&self.ids, 0, bytemuck::bytes_of(&token));
        ctx.write(&self.step, 0, bytemuck::bytes_of(&Step { n_tokens: 1, pos: self.pos, _pad: [0; 2] }));
        let ops = 3 + self.layers.len() * 24 + 3;
        let qs = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profile"),
            ty: wgpu::QueryType::Timestamp,
            count: 2 * ops as u32,
        });
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        let mut names: Vec<&'static str> = Vec::new();
        self.record_layers(&mut |name, f| timed_pass(&mut enc, &qs, &mut names, name, f), 1, false);
        match &self.output_fused {
            Some(out) => timed_pass(&mut enc, &qs, &mut names, "output", &mut |p| out.record(p, 1)),
            None => {
                // One token: its row is row 0 of x.
                enc.copy_buffer_to_buffer(&self.x, 0, &self.x_last, 0, self.cfg.shape.n_embd as u64 * 4);
                timed_pass(&mut enc, &qs, &mut names, "output_norm", &mut |p| self.norm_last.record(p, 1));
                timed_pass(&mut enc, &qs, &mut names, "output", &mut |p| self.output_last.record(p, 1));
            }
        }
        timed_pass(&mut enc, &qs, &mut names, "argmax", &mut |p| self.argmax.record(p));
        let n_queries = 2 * names.len() as u64;
        let resolve = ctx.storage("timestamps", n_queries * 8, wgpu::BufferUsages::QUERY_RESOLVE)?;
        enc.resolve_query_set(&qs, 0..n_queries as u32, &resolve, 0);
        ctx.queue.submit([enc.finish()]);
        self.pos += 1;
        self.token_at = None;
        let bytes = ctx.read(&resolve, 0, n_queries * 8).await?;
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&bytes[..n_queries as usize * 8]);
        let period = ctx.queue.get_timestamp_period() as f64;
        let mut out: Vec<(&'static str, f64)> = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let ns = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period;
            match out.iter_mut().find(|(n, _)| n == name) {
                Some(e) => e.1 += ns,
                None => out.push((name, ns)),
            }
        }
        Ok(out)
    }

    /// Records and submits one chunk of at most `max_batch` tokens as one command buffer, which
    /// ends by copying what the caller reads back into a pooled staging buffer.
    fn submit_chunk(&mut self, feed: Feed<'_>, want: &Want, last_chunk: bool) -> Option<(wgpu::Buffer, u64)> {
        let dispatched = super::ops::dispatches_recorded();
        let ctx = &self.ctx;
        let n = match feed {
            Feed::Tokens(chunk) => {
                ctx.write(&self.ids, 0, bytemuck::cast_slice(chunk));
                chunk.len() as u32
            }
            Feed::LastToken => 1,
        };
        ctx.write(
            &self.step,
            0,
            bytemuck::bytes_of(&Step {
                n_tokens: n,
                pos: self.pos,
                _pad: [0; 2],
            }),
        );
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("step"),
            });
        if let Feed::LastToken = feed {
            // The token id the last step's argmax or draw wrote, in queue order after that step.
            enc.copy_buffer_to_buffer(&self.token_out, 0, &self.ids, 0, 4);
        }
        if let Want::Token(Pick::Draw(p)) = want {
            // Checked by sample_step; written in queue order, so a step submitted earlier keeps
            // its own.
            self.draw.write(ctx, p);
        }
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("layers"),
                timestamp_writes: None,
            });
            self.record_layers(&mut |_, f| f(&mut pass), n, matches!(want, Want::All));
        }
        if last_chunk && !matches!(want, Want::All) {
            let fused = self.output_fused.as_ref().filter(|_| n == 1);
            if fused.is_none() {
                let row = self.cfg.shape.n_embd as u64 * 4;
                enc.copy_buffer_to_buffer(&self.x, (n as u64 - 1) * row, &self.x_last, 0, row);
            }
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("output"),
                timestamp_writes: None,
            });
            match fused {
                // One token: the output normalizes x's only row as it loads it.
                Some(out) => out.record(&mut pass, 1),
                None => {
                    self.norm_last.record(&mut pass, 1);
                    self.output_last.record(&mut pass, 1);
                }
            }
            match want {
                Want::Token(Pick::Argmax) => self.argmax.record(&mut pass),
                Want::Token(Pick::Draw(_)) => {
                    self.top_k.record(&mut pass);
                    self.draw.record(&mut pass);
                }
                Want::TopK => self.top_k.record(&mut pass),
                _ => {}
            }
        }
        let (src, bytes) = match want {
            Want::All => (&self.logits, n as u64 * self.cfg.shape.n_vocab as u64 * 4),
            _ if !last_chunk => (&self.logits, 0),
            Want::Last => (&self.logits, self.cfg.shape.n_vocab as u64 * 4),
            Want::Token(_) => (&self.token_out, 4),
            Want::TopK => (&self.top_k_out, self.top_k.out_bytes()),
        };
        let staging = (bytes > 0).then(|| {
            let staging = ctx.staging(bytes);
            enc.copy_buffer_to_buffer(src, 0, &staging, 0, bytes);
            (staging, bytes)
        });
        ctx.queue.submit([enc.finish()]);
        self.pos += n;
        self.token_at = (last_chunk && matches!(want, Want::Token(_))).then_some(self.pos);
        self.last_dispatches = super::ops::dispatches_recorded() - dispatched;
        staging
    }

    /// Weight bytes a decode step reads, per op that reads weights (the norms, `attn_q` …
    /// `ffn_down` summed over the layers, then `output`; with the norms folded in, the joint
    /// products `attn_qkv` and `ffn_gate_up` and the norm weights in the first product that
    /// reads each), in the names [`GpuModel::profile_decode`] gives the ops: every tensor once,
    /// in its GGUF encoding, but the embedding table, which is only gathered from. Memory-bound decode takes this many
    /// bytes per token over the device's bandwidth.
    pub fn decode_weight_reads(&self) -> &[(&'static str, u64)] {
        &self.weight_reads
    }

    /// Compute dispatches in the last submission (one per token while decoding): every op's
    /// dispatches, counted where they are recorded, including the output and the sampling.
    pub fn last_step_dispatches(&self) -> u64 {
        self.last_dispatches
    }

    async fn run(&mut self, tokens: &[u32], want: Want) -> Result<(Vec<f32>, Vec<(u32, f32)>), GpuModelError> {
        self.drop_queued();
        check_input(tokens, self.cfg.shape.n_vocab, self.pos as usize, self.context_size as usize)?;
        self.ctx.check()?;
        let mut all = Vec::new();
        let chunks: Vec<&[u32]> = tokens.chunks(self.max_batch as usize).collect();
        let mut last = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            if let Some((staging, bytes)) = self.submit_chunk(Feed::Tokens(chunk), &want, i + 1 == chunks.len()) {
                // A lost device fails the readback first; report the loss, not the symptom.
                let data = match self.ctx.map_read(staging, bytes).await {
                    Ok(d) => d,
                    Err(e) => return Err(self.ctx.check().err().unwrap_or(e).into()),
                };
                if matches!(want, Want::All) {
                    all.extend_from_slice(bytemuck::cast_slice::<u8, f32>(&data));
                } else {
                    last = data;
                }
            }
        }
        self.ctx.check()?;
        Ok(match want {
            Want::All => (all, Vec::new()),
            Want::Last => (bytemuck::cast_slice::<u8, f32>(&last).to_vec(), Vec::new()),
            Want::Token(_) => (Vec::new(), vec![(u32::from_le_bytes(last[..4].try_into().expect("4 bytes")), f32::NAN)]),
            Want::TopK => (Vec::new(), TopKOp::parse(&last)),
        })
    }

    /// Processes `tokens` and returns the last token's logits.
    pub async fn forward_last(&mut self, tokens: &[u32]) -> Result<Vec<f32>, GpuModelError> {
        Ok(self.run(tokens, Want::Last).await?.0)
    }

    /// Processes `tokens` and returns every token's logits (`n_vocab` each).
    pub async fn forward_all(&mut self, tokens: &[u32]) -> Result<Vec<f32>, GpuModelError> {
        Ok(self.run(tokens, Want::All).await?.0)
    }

    /// Processes `tokens` and returns the most likely next token, reading back 4 bytes.
    pub async fn forward_argmax(&mut self, tokens: &[u32]) -> Result<u32, GpuModelError> {
        self.greedy_step(tokens, false).await
    }

    /// [`GpuModel::forward_argmax`] for greedy generation. `may_continue`: the generation goes
    /// on from the token this step returns unless it is a stop (and the context has room for
    /// one more step). Then, where the device chains steps ([`GpuContext::chain_steps`]), the
    /// step on that token is queued on the GPU before the token is read back (its embedding
    /// copies the token from this step's argmax on the device), so the GPU goes from one token
    /// to the next without idling through the readback's round trip and the next step's
    /// recording. The next call with exactly that token takes the queued step; any other step,
    /// [`GpuModel::truncate`], [`GpuModel::reset`] or [`GpuModel::drop_queued`] gives it back
    /// first (a stop token ended the generation).
    pub async fn greedy_step(&mut self, tokens: &[u32], may_continue: bool) -> Result<u32, GpuModelError> {
        self.token_step(tokens, Pick::Argmax, may_continue.then_some(Pick::Argmax)).await
    }

    /// The sampled step: the token `draw` picks from the step's top-k, drawn on the device
    /// (shaders/sample.wgsl), so 4 bytes come back. With `next` (the generation goes on from the
    /// token unless it is a stop), the step on that token, drawing with `next`, is queued before
    /// the token is read back where the device chains steps, as [`GpuModel::greedy_step`]
    /// queues greedy ones; the next call takes it only with exactly that token and draw.
    /// A `k` above the top-k list's length (a vocabulary smaller than 64) draws from all of it,
    /// as the host's draw does.
    pub async fn sample_step(&mut self, tokens: &[u32], draw: DrawParams, next: Option<DrawParams>) -> Result<u32, GpuModelError> {
        let list = self.draw.list_len();
        let clamp = |mut p: DrawParams| {
            p.k = p.k.min(list);
            p
        };
        let (draw, next) = (clamp(draw), next.map(clamp));
        for p in std::iter::once(&draw).chain(&next) {
            self.draw.check(p)?;
        }
        self.token_step(tokens, Pick::Draw(draw), next.map(Pick::Draw)).await
    }

    /// A step that picks its token on the device as `pick` says, and queues the step on that
    /// token picking as `next` says (see [`GpuModel::greedy_step`]).
    async fn token_step(&mut self, tokens: &[u32], pick: Pick, next: Option<Pick>) -> Result<u32, GpuModelError> {
        let current = match self.queued.take_if(|(_, t, p)| tokens == [*t] && *p == pick) {
            Some((step, _, _)) => step,
            // Gives back a step queued on another token, or picking otherwise, first.
            None => self.submit_token(tokens, pick)?,
        };
        let next = match next {
            Some(p) if self.ctx.chain_steps() => Some((self.submit_chained(p)?, p)),
            _ => None,
        };
        let token = match self.read_token(current).await {
            Ok(t) => t,
            Err(e) => {
                if let Some((step, _)) = next {
                    self.discard_token(step);
                }
                return Err(e);
            }
        };
        self.queued = next.map(|(step, p)| (step, token, p));
        Ok(token)
    }

    /// Gives back the queued step, if any ([`GpuModel::greedy_step`]): its position is the
    /// next step's to overwrite.
    pub fn drop_queued(&mut self) {
        if let Some((step, _, _)) = self.queued.take() {
            self.discard_token(step);
        }
    }

    /// Runs `n` greedy steps, the first on `token`, and returns their tokens, as generation
    /// runs them ([`GpuModel::greedy_step`]).
    pub async fn decode_greedy(&mut self, token: u32, n: usize) -> Result<Vec<u32>, GpuModelError> {
        let mut tokens = Vec::with_capacity(n);
        let mut t = token;
        for i in 0..n {
            t = self.greedy_step(&[t], i + 1 < n).await?;
            tokens.push(t);
        }
        Ok(tokens)
    }

    /// Submits the step on `tokens` (in chunks of at most `max_batch`) that picks its token as
    /// `pick` says, without waiting for it.
    fn submit_token(&mut self, tokens: &[u32], pick: Pick) -> Result<PendingToken, GpuModelError> {
        self.drop_queued();
        if tokens.is_empty() {
            return Err(GpuModelError::EmptyStep);
        }
        check_input(tokens, self.cfg.shape.n_vocab, self.pos as usize, self.context_size as usize)?;
        self.ctx.check()?;
        let chunks: Vec<&[u32]> = tokens.chunks(self.max_batch as usize).collect();
        let mut staging = None;
        for (i, chunk) in chunks.iter().enumerate() {
            staging = self.submit_chunk(Feed::Tokens(chunk), &Want::Token(pick), i + 1 == chunks.len());
        }
        let (staging, _) = staging.expect("a token step's last chunk reads back");
        Ok(PendingToken { staging })
    }

    /// Submits the step on the token the last submitted step (a greedy or sampled one, with
    /// nothing truncated since) picked, copied on the GPU.
    fn submit_chained(&mut self, pick: Pick) -> Result<PendingToken, GpuModelError> {
        if self.token_at != Some(self.pos) {
            return Err(GpuModelError::NoChainedToken);
        }
        check_input(&[0], self.cfg.shape.n_vocab, self.pos as usize, self.context_size as usize)?;
        self.ctx.check()?;
        let (staging, _) = self.submit_chunk(Feed::LastToken, &Want::Token(pick), true).expect("a token step reads back");
        Ok(PendingToken { staging })
    }

    /// Waits for a submitted token step and returns its token.
    async fn read_token(&self, step: PendingToken) -> Result<u32, GpuModelError> {
        // A lost device fails the readback first; report the loss, not the symptom.
        let data = match self.ctx.map_read(step.staging, 4).await {
            Ok(d) => d,
            Err(e) => return Err(self.ctx.check().err().unwrap_or(e).into()),
        };
        self.ctx.check()?;
        Ok(u32::from_le_bytes(data[..4].try_into().expect("4 bytes")))
    }

    /// Drops the last submitted token step, unread: its position is freed for the next step
    /// to overwrite.
    fn discard_token(&mut self, step: PendingToken) {
        self.ctx.recycle_staging(step.staging);
        self.pos = self.pos.saturating_sub(1);
        self.token_at = None;
    }

    /// Processes `tokens` and returns the `k` (≤ [`TOP_K`]) most likely next tokens with their
    /// logits, sorted descending (ties by id), reading back at most 512 bytes.
    pub async fn forward_top_k(&mut self, tokens: &[u32], k: usize) -> Result<Vec<(u32, f32)>, GpuModelError> {
        let mut top = self.run(tokens, Want::TopK).await?.1;
        top.truncate(k);
        Ok(top)
    }
}

/// What a step feeds the embedding.
#[derive(Clone, Copy)]
enum Feed<'a> {
    /// Tokens written from the host.
    Tokens(&'a [u32]),
    /// The token the last greedy or sampled step picked, copied on the GPU.
    LastToken,
}

/// A greedy or sampled step submitted to the GPU and not yet read back.
#[must_use = "read the step's token with read_token, or give it back with discard_token"]
struct PendingToken {
    staging: wgpu::Buffer,
}

/// Adds `bytes` to the weight reads of the ops named `name`.
fn add_read(reads: &mut Vec<(&'static str, u64)>, name: &'static str, bytes: u64) {
    match reads.iter_mut().find(|(n, _)| *n == name) {
        Some(r) => r.1 += bytes,
        None => reads.push((name, bytes)),
    }
}

/// Records `f` in a compute pass of its own, bracketed by timestamp queries `2i` and `2i + 1`
/// where `i` is the pass's index in `names`.
fn timed_pass(
    enc: &mut wgpu::CommandEncoder,
    qs: &wgpu::QuerySet,
    names: &mut Vec<&'static str>,
    name: &'static str,
    f: &mut dyn FnMut(&mut wgpu::ComputePass<'_>),
) {
    let i = names.len() as u32;
    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some(name),
        timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
            query_set: qs,
            beginning_of_pass_write_index: Some(2 * i),
            end_of_pass_write_index: Some(2 * i + 1),
        }),
    });
    f(&mut pass);
    names.push(name);
}
