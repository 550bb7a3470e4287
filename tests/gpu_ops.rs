//! The forward-pass kernels other than matmul (RMSNorm, RoPE, KV cache + attention, argmax and
//! top-k) against the CPU reference in `llama_webgpu::reference::ops`, through the op API the
//! model graph uses, in every variant: f16 KV cache or f32, subgroups or workgroup-memory
//! reductions. Shapes are deliberately not multiples of the workgroup sizes.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use half::f16;
use llama_webgpu::gpu::ops::{
    step_buffer, ArgmaxOp, AttentionOp, AttentionScratch, DrawOp, DrawParams, KvCache, QkNorm, RmsNormOp, RopeOp, RopeParams, Scores, Step, TopKOp,
};
use llama_webgpu::decode::sampling::Draw;
use llama_webgpu::model::RopeStyle;
use llama_webgpu::gpu::{GpuContext, GpuOptions};
use llama_webgpu::reference::ops;

#[path = "common/random.rs"]
mod random;
#[path = "common/draw.rs"]
mod draw;

use random::{Draws, Rng};

/// Every variant the kernels have: (f16 KV cache, subgroups) on and off.
fn contexts() -> Vec<(String, GpuContext)> {
    let v: Vec<(String, GpuContext)> = common::gpu::PATHS
        .iter()
        .map(|&(f16, subgroups)| {
            let ctx = common::gpu::context(f16, subgroups, None);
            (common::gpu::name(&ctx), ctx)
        })
        .collect();
    eprintln!("adapter: {} ({:?})", v[0].1.adapter_info.name, v[0].1.adapter_info.backend);
    v
}

fn upload(ctx: &GpuContext, data: &[f32]) -> wgpu::Buffer {
    ctx.upload("test input", bytemuck::cast_slice(data))
        .unwrap()
}

/// Writes the step uniform, records `f` into one compute pass and submits it.
fn run(
    ctx: &GpuContext,
    step: &wgpu::Buffer,
    n_tokens: u32,
    pos: u32,
    f: impl FnOnce(&mut wgpu::ComputePass<'_>),
) {
    ctx.write(
        step,
        0,
        bytemuck::bytes_of(&Step {
            n_tokens,
            pos,
            _pad: [0; 2],
        }),
    );
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        f(&mut pass);
    }
    ctx.queue.submit([enc.finish()]);
}

/// The largest |got - want| / (|want| + floor), with where it happened.
fn max_err(got: &[f32], want: &[f32], floor: f32) -> (f32, usize) {
    assert_eq!(got.len(), want.len());
    let mut worst = (0f32, 0);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(g.is_finite(), "non-finite output at {i}: {g}");
        let e = (g - w).abs() / (w.abs() + floor);
        if e > worst.0 {
            worst = (e, i);
        }
    }
    worst
}

#[test]
fn rms_norm_matches_cpu() {
    let mut rng = Rng::new(1);
    let mut worst = 0f32;
    for (name, ctx) in contexts() {
        let step = step_buffer(&ctx).unwrap();
        // The 1e-3 scale makes eps dominate mean(x²), so a missing or misplaced eps shows.
        for (dim, scale) in [(576usize, 3.0f32), (577, 3.0), (4096, 3.0), (577, 1e-3), (1024, 3.0)] {
            for n in [1usize, 7, 70] {
                let x = rng.vec(n * dim, scale);
                let w = rng.vec(dim, 2.0);
                let mut want = vec![0f32; n * dim];
                ops::rms_norm(&x, &w, 1e-5, &mut want);
                let (xb, wb) = (upload(&ctx, &x), upload(&ctx, &w));
                let out = ctx
                    .storage("out", (n * dim * 4) as u64, wgpu::BufferUsages::empty())
                    .unwrap();
                let op = RmsNormOp::new(&ctx, &xb, &wb, &out, dim as u32, 1e-5, &step).unwrap();
                let in_place =
                    RmsNormOp::new(&ctx, &xb, &wb, &xb, dim as u32, 1e-5, &step).unwrap();
                run(&ctx, &step, n as u32, 0, |p| op.record(p, n as u32));
                let got = ctx.read_f32(&out, 0, n * dim).unwrap();
                run(&ctx, &step, n as u32, 0, |p| in_place.record(p, n as u32));
                let got_in_place = ctx.read_f32(&xb, 0, n * dim).unwrap();
                // With a residual: x' = (x - r) + r, normalized; x' must hold the sum after.
                let r = rng.vec(n * dim, scale);
                let x_minus_r: Vec<f32> = x.iter().zip(&r).map(|(a, b)| a - b).collect();
                let sum: Vec<f32> = x_minus_r.iter().zip(&r).map(|(a, b)| a + b).collect();
                let mut want_res = vec![0f32; n * dim];
                ops::rms_norm(&sum, &w, 1e-5, &mut want_res);
                let (xr, rb) = (upload(&ctx, &x_minus_r), upload(&ctx, &r));
                let residual =
                    RmsNormOp::with_residual(&ctx, &xr, &rb, &wb, &out, dim as u32, 1e-5, &step).unwrap();
                run(&ctx, &step, n as u32, 0, |p| residual.record(p, n as u32));
                let got_res = ctx.read_f32(&out, 0, n * dim).unwrap();
                assert!(ctx.read_f32(&xr, 0, n * dim).unwrap() == sum, "{name} dim {dim} n {n}: x + r not kept");
                // Every output is x · scale · w, so the only error is in the row's scale: the
                // f32 sum of squares (the reference sums in f64) and the sqrt/division, a few
                // ulp. 1e-5 relative, element by element, leaves a wide margin.
                // A post-norm's residual add (Gemma 3): x += norm(r) · w in one pass. Each
                // element's error is the norm's, a few ulp of norm(r) · w, beside x's rounding.
                let (xa, ra) = (upload(&ctx, &x), upload(&ctx, &r));
                let add = RmsNormOp::add_normed(&ctx, &xa, &ra, &wb, dim as u32, 1e-5, &step).unwrap();
                run(&ctx, &step, n as u32, 0, |p| add.record(p, n as u32));
                let got_add = ctx.read_f32(&xa, 0, n * dim).unwrap();
                let mut normed_r = vec![0f32; n * dim];
                ops::rms_norm(&r, &w, 1e-5, &mut normed_r);
                for (i, ((g, a), b)) in got_add.iter().zip(&x).zip(&normed_r).enumerate() {
                    assert!((g - (a + b)).abs() <= 1e-5 * (a.abs() + b.abs()) + 1e-30, "{name} dim {dim} n {n}: x + norm(r) at {i}: {g} vs {}", a + b);
                }
                assert!(RmsNormOp::add_normed(&ctx, &xa, &xa, &wb, dim as u32, 1e-5, &step).is_err(), "x must not be its own residual");
                for (what, got, want) in [("out", &got, &want), ("in place", &got_in_place, &want), ("residual", &got_res, &want_res)] {
                    let (e, i) = max_err(got, want, 1e-30);
                    worst = worst.max(e);
                    assert!(
                        e < 1e-5,
                        "{name} dim {dim} n {n} {what}: rel err {e} at {i}: {} vs {}",
                        got[i],
                        want[i]
                    );
                }
            }
        }
    }
    eprintln!("rms_norm: worst relative error {worst:e}");
}

#[test]
fn rope_matches_cpu_up_to_position_8000() {
    let mut rng = Rng::new(2);
    // Llama 3.1-style divisors: 1 for high frequencies, up to 8 for low ones, smooth between.
    let ff64: Vec<f32> = (0..64)
        .map(|i| {
            if i < 20 {
                1.0
            } else if i > 40 {
                8.0
            } else {
                1.0 + 7.0 * (i - 20) as f32 / 20.0
            }
        })
        .collect();
    let mut worst = 0f32;
    for (name, ctx) in contexts().into_iter().step_by(2) {
        // RoPE has no f16 or subgroup code: two contexts cover it.
        let step = step_buffer(&ctx).unwrap();
        for (n_heads, hd, base, freq_scale, use_ff) in [
            (9usize, 64usize, 10000.0f32, 1.0f32, false),
            (3, 64, 100000.0, 0.25, true),
            (32, 128, 500000.0, 1.0, true),
            (8, 128, 10000.0, 1.0, false),
        ] {
            let ff = use_ff.then(|| ff64[..hd / 2].to_vec());
            let ffb = ff.as_ref().map(|f| upload(&ctx, f));
            for ((pos, n), style) in [(0usize, 70usize), (5, 7), (8000, 1), (7930, 70), (8191, 1)].into_iter().flat_map(|c| [(c, RopeStyle::Adjacent), (c, RopeStyle::Halves)]) {
                let x = rng.vec(n * n_heads * hd, 1.0);
                let xb = upload(&ctx, &x);
                // Phi-3's cos/sin scale rides along with the frequency factors.
                let mscale = if use_ff { 1.19 } else { 1.0 };
                let p = RopeParams {
                    head_dim: hd as u32,
                    rope_dim: hd as u32,
                    base,
                    freq_scale,
                    style,
                    mscale,
                };
                let op = RopeOp::new(&ctx, &xb, n_heads as u32, &p, ffb.as_ref(), &step).unwrap();
                run(&ctx, &step, n as u32, pos as u32, |p| {
                    op.record(p, n as u32)
                });
                let got = ctx.read_f32(&xb, 0, x.len()).unwrap();
                let (mut cos, mut sin) = ops::rope_tables(pos, n, hd, base, freq_scale, ff.as_deref());
                cos.iter_mut().chain(sin.iter_mut()).for_each(|v| *v *= mscale);
                let rotate = match style {
                    RopeStyle::Adjacent => ops::rope,
                    RopeStyle::Halves => ops::rope_halves,
                };
                let mut want = x.clone();
                rotate(&mut want, hd, &cos, &sin);
                // theta is built exactly as the reference builds it (repeated f32 products of
                // the same theta_scale), so only sin/cos differ: ~2e-7 absolute after the
                // kernel's range reduction, against glibc's correctly rounded values. Inputs
                // are in [-1, 1], so outputs are off by < 1e-6 on lavapipe. On an NVIDIA H200
                // (Vulkan) the error reached 9.6e-6 at position 7930, where one f32 ulp of the
                // argument is already 4.9e-4 rad: the driver contracts the range reduction
                // differently. 5e-5 allows that and still catches any wrong frequency,
                // position or pairing, which are off by > 1e-3.
                // (Computing theta with pow() instead would be off by up to ~1e-3 rad here.)
                let (e, i) = max_err(&got, &want, 1.0);
                worst = worst.max(e);
                assert!(
                    e < 5e-5,
                    "{name} {style:?} heads {n_heads} hd {hd} pos {pos} n {n}: err {e} at {i}: {} vs {}",
                    got[i],
                    want[i]
                );
                // The same rotation of Q beside a K of fewer heads in one dispatch.
                let n_kv = (n_heads / 3).max(1);
                let k = rng.vec(n * n_kv * hd, 1.0);
                let (qb, kb) = (upload(&ctx, &x), upload(&ctx, &k));
                let pair = RopeOp::pair(&ctx, &qb, n_heads as u32, &kb, n_kv as u32, &p, ffb.as_ref(), &step).unwrap();
                run(&ctx, &step, n as u32, pos as u32, |p| pair.record(p, n as u32));
                let mut want_k = k.clone();
                rotate(&mut want_k, hd, &cos, &sin);
                for (what, buf, want) in [("q", &qb, &want), ("k", &kb, &want_k)] {
                    let got = ctx.read_f32(buf, 0, want.len()).unwrap();
                    let (e, i) = max_err(&got, want, 1.0);
                    assert!(e < 5e-5, "{name} {style:?} pair {what} heads {n_heads}/{n_kv} pos {pos} n {n}: err {e} at {i}");
                }
            }
        }
    }
    eprintln!("rope: worst abs error {worst:e}");
}

/// A layer's RoPE with the cache write folded in (RopeOp::pair_into_cache, what the model graph
/// runs): Q rotated in place, K rotated and V copied into cache rows pos.. of the one layer
/// (rounded to f16 with an f16 cache, as the attention's own write rounds them), rows past the
/// capacity dropped, pairs past rope_dim / 2 copied unrotated, every other cache row and the
/// other layer left alone. Both pairings, and Q's, K's and V's biases added before it all, or
/// (Qwen3's and Gemma 3's) each head of Q and K normalized first.
#[test]
fn rope_into_the_cache_writes_rotated_k_and_v_at_the_step_rows() {
    let mut rng = Rng::new(21);
    for (name, ctx) in contexts().into_iter().step_by(2) {
        let step = step_buffer(&ctx).unwrap();
        for (n_heads, n_kv, hd, rope_dim, use_ff, style, biased, normed) in [
            (9usize, 3usize, 64usize, 64usize, true, RopeStyle::Adjacent, false, false),
            (8, 2, 128, 64, false, RopeStyle::Adjacent, false, false),
            (6, 2, 64, 64, false, RopeStyle::Adjacent, true, false),
            (8, 2, 128, 128, true, RopeStyle::Halves, true, false),
            (4, 1, 256, 256, false, RopeStyle::Halves, false, false),
            // Phi-4-mini's partial rotation: 96 of 128 dimensions.
            (6, 2, 128, 96, true, RopeStyle::Halves, false, false),
            // With the per-head norms: Qwen3's heads, Gemma 3's, and adjacent pairs.
            (16, 8, 128, 128, false, RopeStyle::Halves, false, true),
            (4, 1, 256, 256, false, RopeStyle::Halves, false, true),
            (9, 3, 64, 64, true, RopeStyle::Adjacent, false, true),
        ] {
            let cap = 80usize;
            let cache = KvCache::new(&ctx, 2, cap as u32, n_kv as u32, hd as u32).unwrap();
            let row = n_kv * hd;
            let round = |x: &[f32]| -> Vec<f32> { if cache.f16 { x.iter().map(|&a| f16::from_f32(a).to_f32()).collect() } else { x.to_vec() } };
            let (mut want_k, mut want_v) = (vec![0f32; cap * row], vec![0f32; cap * row]);
            let p = RopeParams { head_dim: hd as u32, rope_dim: rope_dim as u32, base: 500000.0, freq_scale: 1.0, style, mscale: 1.0 };
            let bias: Option<[Vec<f32>; 3]> = biased.then(|| [rng.vec(n_heads * hd, 0.25), rng.vec(row, 0.25), rng.vec(row, 0.25)]);
            let bias_b = bias.as_ref().map(|b| b.each_ref().map(|v| upload(&ctx, v)));
            // What the kernel must read: each projection with its bias added (small enough that
            // rotated values stay under 2, within the f16 tolerance below).
            let biased = |x: &[f32], which: usize| -> Vec<f32> {
                match &bias {
                    Some(b) => x.chunks_exact(b[which].len()).flat_map(|r| r.iter().zip(&b[which]).map(|(a, c)| a + c)).collect(),
                    None => x.to_vec(),
                }
            };
            // The norms' weights (eps large enough that leaving it out shows), and what the
            // kernel must rotate with them: each head by its own RMS.
            let norm_w: Option<[Vec<f32>; 2]> = normed.then(|| [rng.vec(hd, 2.0), rng.vec(hd, 2.0)]);
            let norm_b = norm_w.as_ref().map(|w| w.each_ref().map(|v| upload(&ctx, v)));
            let norm = norm_b.as_ref().map(|[q, k]| QkNorm { q, k, eps: 0.05 });
            let biased = |x: &[f32], which: usize| -> Vec<f32> {
                let x = biased(x, which);
                match (&norm_w, which) {
                    (Some(w), 0 | 1) => {
                        let mut out = vec![0f32; x.len()];
                        ops::rms_norm(&x, &w[which], 0.05, &mut out);
                        out
                    }
                    _ => x,
                }
            };
            let ff: Option<Vec<f32>> = use_ff.then(|| (0..rope_dim / 2).map(|i| 1.0 + i as f32 / 8.0).collect());
            let ffb = ff.as_ref().map(|f| upload(&ctx, f));
            for (pos, n) in [(0usize, 7usize), (70, 5), (78, 4)] {
                let (q, k, v) = (rng.vec(n * n_heads * hd, 1.0), rng.vec(n * row, 1.0), rng.vec(n * row, 1.0));
                let (qb, kb, vb) = (upload(&ctx, &q), upload(&ctx, &k), upload(&ctx, &v));
                let op = RopeOp::pair_into_cache(&ctx, &qb, n_heads as u32, &kb, &vb, &cache, 1, &p, ffb.as_ref(), bias_b.as_ref().map(|b| b.each_ref()), norm, &step).unwrap();
                run(&ctx, &step, n as u32, pos as u32, |pass| op.record(pass, n as u32));
                // The reference: the first rope_dim / 2 pairs of each head rotated.
                let (cos, sin) = ops::rope_tables(pos, n, rope_dim, 500000.0, 1.0, ff.as_deref());
                let rotate = |x: &[f32]| -> Vec<f32> {
                    if style == RopeStyle::Halves {
                        let mut out = x.to_vec();
                        ops::rope_halves_partial(&mut out, hd, rope_dim, &cos, &sin);
                        return out;
                    }
                    let mut out = x.to_vec();
                    let width = x.len() / n;
                    for t in 0..n {
                        for h in 0..width / hd {
                            for i in 0..rope_dim / 2 {
                                let (c, sn) = (cos[t * rope_dim / 2 + i], sin[t * rope_dim / 2 + i]);
                                let at = t * width + h * hd + 2 * i;
                                out[at] = x[at] * c - x[at + 1] * sn;
                                out[at + 1] = x[at] * sn + x[at + 1] * c;
                            }
                        }
                    }
                    out
                };
                let got_q = ctx.read_f32(&qb, 0, q.len()).unwrap();
                let (e, i) = max_err(&got_q, &rotate(&biased(&q, 0)), 1.0);
                assert!(e < 5e-5, "{name} q pos {pos}: err {e} at {i}");
                assert_eq!(ctx.read_f32(&kb, 0, k.len()).unwrap(), k, "{name}: k itself is left as it was");
                let (rk, bv) = (rotate(&biased(&k, 1)), biased(&v, 2));
                for t in 0..n.min(cap - pos) {
                    want_k[(pos + t) * row..(pos + t + 1) * row].copy_from_slice(&round(&rk[t * row..(t + 1) * row]));
                    want_v[(pos + t) * row..(pos + t + 1) * row].copy_from_slice(&round(&bv[t * row..(t + 1) * row]));
                }
                for (what, layer, buf, want) in [("k", 1, &cache.k[1], &want_k), ("v", 1, &cache.v[1], &want_v), ("k", 0, &cache.k[0], &vec![0f32; cap * row])] {
                    let bytes = pollster::block_on(ctx.read(buf, 0, (cap * row) as u64 * if cache.f16 { 2 } else { 4 })).unwrap();
                    let got: Vec<f32> = if cache.f16 {
                        bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
                    } else {
                        bytemuck::pod_collect_to_vec(&bytes)
                    };
                    // Rotations differ from the reference only by sin/cos (≤ 5e-5 as above); in
                    // f16 that may move a rounding by one f16 ulp (≤ 2^-11 for |x| ≤ 1).
                    let tol = if cache.f16 { 1e-3 } else { 5e-5 };
                    let (e, i) = max_err(&got[..cap * row], want, 1.0);
                    assert!(e < tol, "{name} {style:?} bias {} {what} cache layer {layer}, rope_dim {rope_dim}, after pos {pos} n {n}: err {e} at row {}, {} vs {}", bias.is_some(), i / row, got[i], want[i]);
                    if what == "v" {
                        assert!(got[..cap * row] == want[..], "{name}: V is copied exactly");
                    }
                }
            }
        }
    }
}

/// Shapes: (n_head, n_kv, head_dim).
const SHAPES: [(usize, usize, usize); 2] = [(9, 3, 64), (32, 8, 128)];

/// The GPU op, its input buffers, and a CPU mirror of the cache for one layer.
struct AttnCase {
    n_head: usize,
    n_kv: usize,
    hd: usize,
    cache: KvCache,
    q: wgpu::Buffer,
    k: wgpu::Buffer,
    v: wgpu::Buffer,
    out: wgpu::Buffer,
    op: AttentionOp,
    cpu_k: Vec<f32>,
    cpu_v: Vec<f32>,
    max_tokens: usize,
    scores: Scores,
}

impl AttnCase {
    fn new(
        ctx: &GpuContext,
        step: &wgpu::Buffer,
        (n_head, n_kv, hd): (usize, usize, usize),
        capacity: usize,
        max_tokens: usize,
    ) -> Self {
        Self::with_scores(ctx, step, (n_head, n_kv, hd), capacity, max_tokens, Scores::standard(hd as u32))
    }

    fn with_scores(
        ctx: &GpuContext,
        step: &wgpu::Buffer,
        (n_head, n_kv, hd): (usize, usize, usize),
        capacity: usize,
        max_tokens: usize,
        scores: Scores,
    ) -> Self {
        // Two layers, using the second, to check layer selection.
        let cache = KvCache::new(ctx, 2, capacity as u32, n_kv as u32, hd as u32).unwrap();
        assert_eq!(cache.f16, ctx.features.f16);
        let buf = |n: usize| {
            ctx.storage("attn io", (n * 4) as u64, wgpu::BufferUsages::empty())
                .unwrap()
        };
        let (q, k, v, out) = (
            buf(max_tokens * n_head * hd),
            buf(max_tokens * n_kv * hd),
            buf(max_tokens * n_kv * hd),
            buf(max_tokens * n_head * hd),
        );
        let scratch = AttentionScratch::new(ctx, &cache, n_head as u32, max_tokens as u32).unwrap();
        let op = AttentionOp::with_scores(ctx, &q, &k, &v, &out, &cache, 1, n_head as u32, &scratch, scores, step).unwrap();
        AttnCase {
            scores,
            n_head,
            n_kv,
            hd,
            cache,
            q,
            k,
            v,
            out,
            op,
            cpu_k: Vec::new(),
            cpu_v: Vec::new(),
            max_tokens,
        }
    }

    /// As the cache stores it: f16-rounded in the F16 variant.
    fn stored(&self, x: &[f32]) -> Vec<f32> {
        if self.cache.f16 {
            x.iter().map(|&v| f16::from_f32(v).to_f32()).collect()
        } else {
            x.to_vec()
        }
    }

    /// Fills cache rows from the current length up to `len` directly (a stand-in for many
    /// earlier steps).
    fn prefill_cache(&mut self, ctx: &GpuContext, rng: &mut Rng, len: usize) {
        let row = self.n_kv * self.hd;
        let start = self.cpu_k.len() / row;
        for (i, buf) in [self.cache.k[1].clone(), self.cache.v[1].clone()]
            .iter()
            .enumerate()
        {
            let vals = self.stored(&rng.vec((len - start) * row, 1.0));
            let bytes: Vec<u8> = if self.cache.f16 {
                vals.iter()
                    .flat_map(|&v| f16::from_f32(v).to_le_bytes())
                    .collect()
            } else {
                bytemuck::cast_slice(&vals).to_vec()
            };
            ctx.write(buf, start as u64 * self.cache.row_bytes(), &bytes);
            let mirror = if i == 0 {
                &mut self.cpu_k
            } else {
                &mut self.cpu_v
            };
            mirror.extend_from_slice(&vals);
        }
    }

    /// One step of `n` tokens at the current position: returns the largest absolute error.
    fn step(
        &mut self,
        ctx: &GpuContext,
        step: &wgpu::Buffer,
        rng: &mut Rng,
        n: usize,
        q_scale: f32,
    ) -> f32 {
        assert!(n <= self.max_tokens);
        let (qw, kw) = (self.n_head * self.hd, self.n_kv * self.hd);
        let pos = self.cpu_k.len() / kw;
        let q = rng.vec(n * qw, q_scale);
        let k = rng.vec(n * kw, 2.0);
        let v = rng.vec(n * kw, 1.0);
        ctx.write(&self.q, 0, bytemuck::cast_slice(&q));
        ctx.write(&self.k, 0, bytemuck::cast_slice(&k));
        ctx.write(&self.v, 0, bytemuck::cast_slice(&v));
        run(ctx, step, n as u32, pos as u32, |p| {
            self.op.record(p, n as u32, pos as u32)
        });
        let got = ctx.read_f32(&self.out, 0, n * qw).unwrap();
        let (ks, vs) = (self.stored(&k), self.stored(&v));
        self.cpu_k.extend_from_slice(&ks);
        self.cpu_v.extend_from_slice(&vs);
        let mut want = vec![0f32; n * qw];
        ops::attention_with(
            &q,
            &self.cpu_k,
            &self.cpu_v,
            pos,
            self.n_head,
            self.n_kv,
            self.hd,
            self.scores.scale,
            self.scores.window,
            &mut want,
        );
        let (e, i) = max_err(&got, &want, 1.0);
        assert!(
            e < ATTN_TOL,
            "{}/{}x{} pos {pos} n {n}: abs err {e} at token {} head {}: {} vs {}",
            self.n_head,
            self.n_kv,
            self.hd,
            i / qw,
            i % qw / self.hd,
            got[i],
            want[i]
        );
        e
    }

    /// The GPU cache holds exactly what the CPU mirror does (so the f16 rounding is
    /// round-to-nearest-even, like `half` and llama.cpp).
    fn check_cache(&self, ctx: &GpuContext) {
        let len = self.cpu_k.len();
        for (buf, cpu) in [
            (&self.cache.k[1], &self.cpu_k),
            (&self.cache.v[1], &self.cpu_v),
        ] {
            let bytes = pollster::block_on(ctx.read(
                buf,
                0,
                len as u64 * if self.cache.f16 { 2 } else { 4 },
            ))
            .unwrap();
            let got: Vec<f32> = if self.cache.f16 {
                bytes
                    .chunks_exact(2)
                    .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect()
            } else {
                bytemuck::pod_collect_to_vec(&bytes)
            };
            assert!(got[..len] == cpu[..], "cache contents differ");
        }
    }
}

/// Attention outputs are convex combinations of V rows with |v| ≤ 1, compared in absolute
/// terms. The reference rounds K/V to f16 exactly as the F16 kernel does (checked bit for bit
/// by `check_cache`), so f16 and f32 variants meet the same bound: what remains is f32
/// arithmetic — a different summation order in q·k (scores up to ~±10), an online softmax
/// with f32 sums and GPU exp() (a few ulp) against the reference's f64 sum, over up to 8000
/// keys. Observed errors are ~1e-7; 2e-5 leaves a wide margin while still catching any wrong
/// key, position or head (those are off by 1e-2 and more).
const ATTN_TOL: f32 = 2e-5;

#[test]
fn attention_over_successive_steps_matches_cpu() {
    let mut rng = Rng::new(3);
    for (name, ctx) in contexts() {
        let step = step_buffer(&ctx).unwrap();
        // Beyond the model shapes: one query head per KV head, eight (the split kernel's most
        // per workgroup), and a head size whose vec4 count does not divide the workgroup.
        for shape in SHAPES.into_iter().chain([(4, 4, 32), (8, 1, 64), (6, 2, 80)]) {
            let mut case = AttnCase::new(&ctx, &step, shape, 600, 120);
            let mut worst = 0f32;
            // A prompt, three decode steps, then prefills of other sizes. Steps of up to 16
            // tokens attend in 256-key splits: the 5-token step at 254 straddles a split
            // boundary (its first tokens see none of the second split), 16 is the largest such
            // step, 17 the smallest single-pass one.
            for n in [50, 1, 1, 1, 7, 70, 1, 120, 3, 5, 1, 16, 17, 1] {
                worst = worst.max(case.step(&ctx, &step, &mut rng, n, 1.5));
            }
            case.check_cache(&ctx);
            eprintln!("{name} {shape:?}: attention worst abs error {worst:e}");
        }
    }
}

/// Gemma 3's local layers: scores scaled otherwise than by 1/√head_dim, and each query seeing
/// only the last `window` positions. Windows shorter than a step, than a 256-key split and
/// longer, over prompts and decode steps that cross split boundaries.
#[test]
fn attention_with_a_sliding_window_matches_cpu() {
    let mut rng = Rng::new(5);
    for (name, ctx) in contexts() {
        let step = step_buffer(&ctx).unwrap();
        for (shape, window) in [((4usize, 1usize, 256usize), 37u32), ((8, 2, 64), 300), ((9, 3, 64), 5)] {
            let scores = Scores { scale: 0.0625, window: Some(window) };
            let mut case = AttnCase::with_scores(&ctx, &step, shape, 700, 120, scores);
            let mut worst = 0f32;
            for n in [50, 1, 1, 7, 120, 3, 16, 1, 120, 17, 1, 100, 1, 5, 1] {
                worst = worst.max(case.step(&ctx, &step, &mut rng, n, 3.0));
            }
            case.check_cache(&ctx);
            eprintln!("{name} {shape:?} window {window}: attention worst abs error {worst:e}");
        }
    }
}

#[test]
fn attention_at_long_context_matches_cpu() {
    let mut rng = Rng::new(4);
    for (name, ctx) in contexts() {
        let step = step_buffer(&ctx).unwrap();
        let t0 = std::time::Instant::now();
        // 9/3 heads of 64: a 70-token prefill ending at position 8000, then decode to 8003.
        // 32/8 heads of 128 (Llama 3 8B): a 7-token prefill and decoding past 8000.
        for (shape, prefill, n) in [(SHAPES[0], 7930usize, 70usize), (SHAPES[1], 7993, 7)] {
            let mut case = AttnCase::new(&ctx, &step, shape, 8192, n);
            case.prefill_cache(&ctx, &mut rng, prefill);
            let mut worst = case.step(&ctx, &step, &mut rng, n, 3.0);
            for _ in 0..3 {
                worst = worst.max(case.step(&ctx, &step, &mut rng, 1, 3.0));
            }
            case.check_cache(&ctx);
            eprintln!("{name} {shape:?}: long-context attention worst abs error {worst:e}");
        }
        eprintln!("{name}: long-context attention {:?}", t0.elapsed());
    }
}

fn cpu_top_k(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    idx.sort_by(|&a, &b| {
        logits[b as usize]
            .total_cmp(&logits[a as usize])
            .then(a.cmp(&b))
    });
    idx.truncate(k);
    idx.into_iter().map(|i| (i, logits[i as usize])).collect()
}

#[test]
fn argmax_and_top_k_match_cpu() {
    let mut rng = Rng::new(5);
    for (name, ctx) in contexts().into_iter().filter(|(_, c)| !c.features.f16) {
        // Selection has no f16 code; the two non-f16 contexts cover subgroups on and off.
        let out = ctx
            .storage("out", 64 * 8, wgpu::BufferUsages::empty())
            .unwrap();
        for n in [1usize, 5, 2047, 2048, 2049, 128_256, 300_001] {
            let mut cases: Vec<(&str, Vec<f32>)> = Vec::new();
            cases.push(("random", rng.vec(n, 20.0)));
            // Logits on a coarse grid: many ties, across workgroup blocks too.
            cases.push((
                "ties",
                (0..n).map(|_| (rng.f() * 8.0).round() / 4.0).collect(),
            ));
            let mut last = rng.vec(n, 20.0);
            last[n - 1] = 21.0;
            cases.push(("max last", last));
            let mut tied_max = rng.vec(n, 20.0);
            for _ in 0..3 {
                let i = rng.below(n);
                tied_max[i] = 30.0;
            }
            tied_max[n - 1] = 30.0;
            cases.push(("tied max", tied_max));
            cases.push(("all equal", vec![-1.5; n]));
            cases.push((
                "negative",
                rng.vec(n, 5.0).iter().map(|v| v - 100.0).collect(),
            ));
            for (what, logits) in &cases {
                let lb = upload(&ctx, logits);
                let want = cpu_top_k(logits, 64.min(n));
                let op = ArgmaxOp::new(&ctx, &lb, n as u32, &out).unwrap();
                run(&ctx, &step_buffer(&ctx).unwrap(), 1, 0, |p| op.record(p));
                let id = ctx.read_u32(&out, 0, 1).unwrap()[0];
                assert_eq!(id, want[0].0, "{name} n {n} {what}: argmax");
                for k in [1usize, 40, 64] {
                    if k > n {
                        continue;
                    }
                    let op = TopKOp::new(&ctx, &lb, n as u32, k as u32, &out).unwrap();
                    run(&ctx, &step_buffer(&ctx).unwrap(), 1, 0, |p| op.record(p));
                    ctx.check().unwrap();
                    let got = TopKOp::parse(
                        &pollster::block_on(ctx.read(&out, 0, op.out_bytes())).unwrap(),
                    );
                    // Exact: selection only compares and copies.
                    assert_eq!(got, want[..k], "{name} n {n} {what}: top-{k}");
                }
            }
        }
    }
}

/// The seeded draw on the device (after the top-k kernel, as a sampled step runs them) picks the
/// host's token (`Draw::pick`, in f64) for every k, temperature, top-p, min-p and random number
/// tried, unless the host's own decision sits within 1e-5 of a boundary, where f32 rounding may
/// move it; such cases are counted and must be rare. Parameters the shader cannot take are
/// refused with typed errors.
#[test]
fn draw_matches_the_host_draw() {
    let mut rng = Rng::new(11);
    // The draw has no f16 or subgroup code of its own, but it is compiled in the module that has.
    for (name, ctx) in contexts().into_iter().filter(|(_, c)| !c.features.f16) {
        let out = ctx.storage("token", 16, wgpu::BufferUsages::empty()).unwrap();
        let list = ctx.storage("top-k", 64 * 8, wgpu::BufferUsages::empty()).unwrap();
        let (mut checked, mut near) = (0, 0);
        for (what, logits) in [
            ("spread", rng.vec(3000, 6.0)),
            ("peaked", (0..3000).map(|i| if i == 1234 { 9.0 } else { rng.f() * 2.0 }).collect::<Vec<f32>>()),
            // Ties on a grid, sorted by id within each.
            ("ties", (0..3000).map(|_| (rng.f() * 64.0).round() / 16.0).collect()),
        ] {
            let lb = upload(&ctx, &logits);
            let top_k = TopKOp::new(&ctx, &lb, logits.len() as u32, 64, &list).unwrap();
            let draw = DrawOp::new(&ctx, &top_k, &list, &out).unwrap();
            let top = cpu_top_k(&logits, 64);
            for k in [2usize, 5, 40, 64] {
                for (temperature, top_p, min_p) in [(0.8, 0.95, 0.05), (1.0, 1.0, 0.0), (0.05, 0.5, 0.0), (5.0, 1.0, 0.2), (0.7, 0.9, 0.0)] {
                    for r in [0.0, rng.next_f64(), rng.next_f64(), rng.next_f64(), 0.377, 0.999_999_999] {
                        let d = Draw { k, temperature, top_p, min_p, r };
                        let p = DrawParams::new(k, temperature, top_p, min_p, r);
                        draw.set(&ctx, &p).unwrap();
                        run(&ctx, &step_buffer(&ctx).unwrap(), 1, 0, |pass| {
                            top_k.record(pass);
                            draw.record(pass);
                        });
                        ctx.check().unwrap();
                        let got = ctx.read_u32(&out, 0, 1).unwrap()[0];
                        let want = d.pick(&top);
                        if draw::margin(&top, &d) < draw::NEAR {
                            near += 1;
                            assert!(top[..k].iter().any(|c| c.0 == got), "{name} {what} {d:?}: {got} is not a candidate");
                        } else {
                            checked += 1;
                            assert_eq!(got, want, "{name} {what} {d:?}");
                        }
                    }
                }
            }
        }
        eprintln!("{name}: {checked} draws equal to the host's, {near} within rounding of a boundary");
        assert!(near * 20 < checked, "{near} of {} draws near a boundary", near + checked);

        let lb = upload(&ctx, &rng.vec(100, 1.0));
        let top_k = TopKOp::new(&ctx, &lb, 100, 40, &list).unwrap();
        let draw = DrawOp::new(&ctx, &top_k, &list, &out).unwrap();
        for (bad, what) in [
            (DrawParams::new(0, 0.8, 0.9, 0.0, 0.5), "k 0"),
            (DrawParams::new(41, 0.8, 0.9, 0.0, 0.5), "k 41"),
            (DrawParams::new(8, 0.0, 0.9, 0.0, 0.5), "temperature"),
            (DrawParams::new(8, f32::INFINITY, 0.9, 0.0, 0.5), "temperature"),
            (DrawParams::new(8, 0.8, 0.0, 0.0, 0.5), "top_p"),
            (DrawParams::new(8, 0.8, 0.9, 1.5, 0.5), "min_p"),
            (DrawParams::new(8, 0.8, 0.9, 0.0, -0.1), "random number"),
        ] {
            let e = draw.set(&ctx, &bad).unwrap_err();
            assert!(e.to_string().starts_with("GPU validation error in draw"), "{e}");
            assert!(e.to_string().contains(what.split(' ').next().unwrap()), "{what}: {e}");
        }
        // A random number that rounds to 1 in f32 stays below it.
        assert!(DrawParams::new(8, 0.8, 0.9, 0.0, 0.999_999_999).r < 1.0);
        let small = ctx.storage("small", 8, wgpu::BufferUsages::empty()).unwrap();
        assert!(DrawOp::new(&ctx, &top_k, &small, &out).is_err(), "a top-k buffer too small");
    }
}

fn scratch_buf(ctx: &GpuContext) -> wgpu::Buffer {
    ctx.storage("other", 1024, wgpu::BufferUsages::empty()).unwrap()
}

#[test]
fn bad_shapes_are_rejected() {
    let ctx = GpuContext::new_blocking(GpuOptions::default()).unwrap();
    assert!(
        KvCache::new(&ctx, 1, 16, 2, 66).is_err(),
        "head_dim must be a multiple of 4"
    );
    let cache = KvCache::new(&ctx, 1, 16, 3, 64).unwrap();
    let b = ctx.storage("b", 1024, wgpu::BufferUsages::empty()).unwrap();
    let step = step_buffer(&ctx).unwrap();
    let scratch = AttentionScratch::new(&ctx, &cache, 9, 1).unwrap();
    assert!(
        AttentionOp::new(&ctx, &b, &b, &b, &b, &cache, 0, 8, &scratch, &step).is_err(),
        "n_head must be a multiple of n_kv"
    );
    assert!(
        AttentionOp::new(&ctx, &b, &b, &b, &b, &cache, 1, 9, &scratch, &step).is_err(),
        "no such layer"
    );
    let rp = RopeParams { head_dim: 64, rope_dim: 64, base: 10000.0, freq_scale: 1.0, style: RopeStyle::Adjacent, mscale: 1.0 };
    assert!(RopeOp::pair(&ctx, &b, 2, &b, 1, &rp, None, &step).is_err(), "rope pair on one buffer");
    assert!(RopeOp::pair(&ctx, &b, 2, &scratch_buf(&ctx), 0, &rp, None, &step).is_err(), "rope pair without heads");
    // The per-head norms in RoPE: not with biases, not with a partial rotation (pairs past it
    // would stay unnormalized), not with a head whose invocations straddle workgroups, and
    // with weights of a whole head.
    let (q, k, v) = (scratch_buf(&ctx), scratch_buf(&ctx), scratch_buf(&ctx));
    let wide = ctx.storage("wide", 4096, wgpu::BufferUsages::empty()).unwrap();
    let small = ctx.storage("small", 64, wgpu::BufferUsages::empty()).unwrap();
    let norm = |w| Some(QkNorm { q: w, k: w, eps: 1e-6 });
    let into_cache = |cache: &KvCache, rp: &RopeParams, bias: Option<[&wgpu::Buffer; 3]>, norm: Option<QkNorm<'_>>| RopeOp::pair_into_cache(&ctx, &q, 3, &k, &v, cache, 0, rp, None, bias, norm, &step);
    assert!(into_cache(&cache, &rp, None, norm(&wide)).is_ok());
    assert!(into_cache(&cache, &rp, Some([&wide, &wide, &wide]), norm(&wide)).is_err(), "norms and biases");
    assert!(into_cache(&cache, &RopeParams { rope_dim: 32, ..rp }, None, norm(&wide)).is_err(), "norms with a partial rotation");
    assert!(into_cache(&cache, &rp, None, norm(&small)).is_err(), "norm weights shorter than a head");
    let cache96 = KvCache::new(&ctx, 1, 16, 3, 96).unwrap();
    assert!(into_cache(&cache96, &RopeParams { head_dim: 96, rope_dim: 96, ..rp }, None, norm(&wide)).is_err(), "48 invocations per head do not divide 256");
    assert!(
        RmsNormOp::with_residual(&ctx, &b, &scratch_buf(&ctx), &b, &b, 16, 1e-5, &step).is_err(),
        "a residual norm cannot write over x"
    );
    assert!(TopKOp::new(&ctx, &b, 100, 65, &b).is_err(), "k ≤ 64");
    assert!(
        ArgmaxOp::new(&ctx, &b, 2048 * 256 + 1, &b).is_err(),
        "vocabulary too large"
    );
    assert!(
        ArgmaxOp::new(&ctx, &b, 257, &b).is_err(),
        "logits buffer too small"
    );
    assert!(TopKOp::new(&ctx, &b, 256, 64, &b).is_ok());
    assert!(
        TopKOp::new(
            &ctx,
            &b,
            256,
            64,
            &ctx.storage("small", 8 * 63, wgpu::BufferUsages::empty())
                .unwrap()
        )
        .is_err(),
        "output too small"
    );
}

/// Rough per-dispatch timings on the adapter at hand (not a correctness test; meant for a real
/// GPU — on CPU devices the 512-token prefills are skipped, they alone take minutes):
/// `cargo test --release --test gpu_ops -- --ignored --nocapture timing`.
#[test]
#[ignore]
fn timing() {
    let ctx = GpuContext::new_blocking(GpuOptions::default()).unwrap();
    eprintln!(
        "adapter: {} ({:?}), features {:?}",
        ctx.adapter_info.name, ctx.adapter_info.backend, ctx.features
    );
    let step = step_buffer(&ctx).unwrap();
    let time =
        |what: &str, n_tokens: u32, pos: u32, reps: u32, f: &dyn Fn(&mut wgpu::ComputePass<'_>)| {
            run(&ctx, &step, n_tokens, pos, f);
            ctx.device
                .poll(wgpu::PollType::wait_indefinitely())
                .unwrap();
            let t0 = std::time::Instant::now();
            run(&ctx, &step, n_tokens, pos, |p| (0..reps).for_each(|_| f(p)));
            ctx.device
                .poll(wgpu::PollType::wait_indefinitely())
                .unwrap();
            eprintln!(
                "{what}: {:.1} µs",
                t0.elapsed().as_secs_f64() * 1e6 / reps as f64
            );
        };
    let (n_head, n_kv, hd, cap) = (32u32, 8u32, 128u32, 8192u32);
    let cache = KvCache::new(&ctx, 1, cap, n_kv, hd).unwrap();
    let buf = |n: u32| {
        ctx.upload("t", bytemuck::cast_slice(&Rng::new(9).vec(n as usize, 1.0)))
            .unwrap()
    };
    let (q, k, v, out) = (
        buf(512 * n_head * hd),
        buf(512 * n_kv * hd),
        buf(512 * n_kv * hd),
        buf(512 * n_head * hd),
    );
    let scratch = AttentionScratch::new(&ctx, &cache, n_head, 512).unwrap();
    let op = AttentionOp::new(&ctx, &q, &k, &v, &out, &cache, 0, n_head, &scratch, &step).unwrap();
    // Without split scratch every step walks the whole context in one workgroup per tile.
    let no_split = AttentionScratch::new(&ctx, &cache, n_head, 0).unwrap();
    let single = AttentionOp::new(&ctx, &q, &k, &v, &out, &cache, 0, n_head, &no_split, &step).unwrap();
    let cpu = ctx.adapter_info.device_type == wgpu::DeviceType::Cpu;
    for (pos, n) in [(511u32, 1u32), (4095, 1), (8191, 1), (0, 512), (7680, 512)] {
        if cpu && n > 1 {
            continue;
        }
        let reps = if n > 1 { 5 } else if cpu { 10 } else { 200 };
        time(&format!("attention 32/8x128 pos {pos} n {n}"), n, pos, reps, &|p| op.record(p, n, pos));
        if n == 1 {
            time(&format!("attention 32/8x128 pos {pos} n {n}, unsplit"), n, pos, reps, &|p| single.record(p, n, pos));
        }
    }
    let x = buf(512 * 4096);
    let w = buf(4096);
    let norm = RmsNormOp::new(&ctx, &x, &w, &q, 4096, 1e-5, &step).unwrap();
    time("rms_norm 4096 n 1", 1, 0, 200, &|p| norm.record(p, 1));
    time("rms_norm 4096 n 512", 512, 0, 20, &|p| norm.record(p, 512));
    let rope = RopeOp::new(
        &ctx,
        &q,
        n_head,
        &RopeParams {
            head_dim: hd,
            rope_dim: hd,
            base: 500000.0,
            freq_scale: 1.0,
            style: RopeStyle::Adjacent,
            mscale: 1.0,
        },
        None,
        &step,
    )
    .unwrap();
    time("rope 32x128 n 1", 1, 8000, 200, &|p| rope.record(p, 1));
    time("rope 32x128 n 512", 512, 8000, 20, &|p| rope.record(p, 512));
    let logits = buf(128_256);
    let argmax = ArgmaxOp::new(&ctx, &logits, 128_256, &out).unwrap();
    time("argmax 128256", 1, 0, 200, &|p| argmax.record(p));
    let topk = TopKOp::new(&ctx, &logits, 128_256, 64, &out).unwrap();
    time("top-64 128256", 1, 0, 50, &|p| topk.record(p));
}
