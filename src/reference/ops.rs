//! The f32 building blocks of the reference forward pass. Activations are row-major
//! `[tokens][features]`; weights are ggml row-major `[out][in]`.

/// out[t] = x[t] / sqrt(mean(x[t]²) + eps) * w. The sum is accumulated in f64 as ggml does.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let n = w.len();
    for (xr, or) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let ss: f64 = xr.iter().map(|&v| (v as f64) * (v as f64)).sum();
        let scale = 1.0 / ((ss / n as f64) as f32 + eps).sqrt();
        for ((o, &v), &g) in or.iter_mut().zip(xr).zip(w) {
            *o = v * scale * g;
        }
    }
}

/// Dot product with several independent accumulators, which the compiler vectorizes.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

fn threads() -> usize {
    #[cfg(target_arch = "wasm32")]
    {
        1
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(16)
    }
}

/// out[t][n] = Σ_k x[t][k] · w[n][k], for `k_dim`-long rows. Weight rows are split across
/// threads; each weight row is read once for all tokens, which keeps it in cache.
pub fn matmul(x: &[f32], w: &[f32], k_dim: usize, out: &mut [f32]) {
    let t_n = x.len() / k_dim;
    let n_out = w.len() / k_dim;
    debug_assert_eq!(out.len(), t_n * n_out);
    let nt = threads().min(n_out.div_ceil(64)).max(1);
    let compute = |n0: usize, n1: usize| -> Vec<f32> {
        let mut part = vec![0f32; (n1 - n0) * t_n];
        for n in n0..n1 {
            let wr = &w[n * k_dim..(n + 1) * k_dim];
            for t in 0..t_n {
                part[(n - n0) * t_n + t] = dot(&x[t * k_dim..(t + 1) * k_dim], wr);
            }
        }
        part
    };
    let scatter = |out: &mut [f32], n0: usize, part: &[f32]| {
        for (i, col) in part.chunks_exact(t_n).enumerate() {
            for (t, &v) in col.iter().enumerate() {
                out[t * n_out + n0 + i] = v;
            }
        }
    };
    if nt == 1 {
        let part = compute(0, n_out);
        scatter(out, 0, &part);
        return;
    }
    #[cfg(not(target_arch = "wasm32"))]
    std::thread::scope(|s| {
        let per = n_out.div_ceil(nt);
        let handles: Vec<_> = (0..nt)
            .map(|i| {
                let (n0, n1) = (i * per, ((i + 1) * per).min(n_out));
                (n0, s.spawn(move || compute(n0, n1)))
            })
            .collect();
        for (n0, h) in handles {
            scatter(out, n0, &h.join().expect("matmul worker panicked"));
        }
    });
}

/// cos/sin tables `[token][pair]` for positions `pos0..pos0+n`, computed like ggml's rope:
/// theta for pair i is pos · freq_scale · base^(-2i/dim) / freq_factor[i], with the power built
/// by repeated f32 multiplication.
pub fn rope_tables(
    pos0: usize,
    n: usize,
    dim: usize,
    base: f32,
    freq_scale: f32,
    freq_factors: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>) {
    let pairs = dim / 2;
    let theta_scale = base.powf(-2.0 / dim as f32);
    let (mut cos, mut sin) = (Vec::with_capacity(n * pairs), Vec::with_capacity(n * pairs));
    for t in 0..n {
        let mut theta_base = (pos0 + t) as f32;
        for i in 0..pairs {
            let ff = freq_factors.map_or(1.0, |f| f[i]);
            let theta = freq_scale * (theta_base / ff);
            cos.push(theta.cos());
            sin.push(theta.sin());
            theta_base *= theta_scale;
        }
    }
    (cos, sin)
}

/// Rotates adjacent pairs (x[2i], x[2i+1]) of every head in place.
pub fn rope(x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
    let pairs = head_dim / 2;
    let row = cos.len() / pairs; // tokens
    let width = x.len() / row;
    for t in 0..row {
        let (c, s) = (
            &cos[t * pairs..(t + 1) * pairs],
            &sin[t * pairs..(t + 1) * pairs],
        );
        for head in x[t * width..(t + 1) * width].chunks_exact_mut(head_dim) {
            for i in 0..pairs {
                let (x0, x1) = (head[2 * i], head[2 * i + 1]);
                head[2 * i] = x0 * c[i] - x1 * s[i];
                head[2 * i + 1] = x0 * s[i] + x1 * c[i];
            }
        }
    }
}

/// Rotates the pairs (x[i], x[i + head_dim/2]) of every head in place (llama.cpp's NEOX style,
/// with every dimension rotated): pair i turns by the same angle as the adjacent pair i.
pub fn rope_halves(x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
    rope_halves_partial(x, head_dim, head_dim, cos, sin)
}

/// [`rope_halves`] over the leading `rope_dim` dimensions of each head: pairs
/// (x[i], x[i + rope_dim/2]); the dimensions past `rope_dim` keep their values (Phi-4-mini).
pub fn rope_halves_partial(x: &mut [f32], head_dim: usize, rope_dim: usize, cos: &[f32], sin: &[f32]) {
    let pairs = rope_dim / 2;
    let row = cos.len() / pairs;
    let width = x.len() / row;
    for t in 0..row {
        let (c, s) = (&cos[t * pairs..(t + 1) * pairs], &sin[t * pairs..(t + 1) * pairs]);
        for head in x[t * width..(t + 1) * width].chunks_exact_mut(head_dim) {
            for i in 0..pairs {
                let (x0, x1) = (head[i], head[i + pairs]);
                head[i] = x0 * c[i] - x1 * s[i];
                head[i + pairs] = x0 * s[i] + x1 * c[i];
            }
        }
    }
}

/// Causal grouped-query attention. `q` holds the new tokens (`[t][n_head·hd]`) at positions
/// `pos0..`; `k`/`v` hold every cached position including the new ones (`[pos][n_kv·hd]`).
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    pos0: usize,
    n_head: usize,
    n_kv: usize,
    hd: usize,
    out: &mut [f32],
) {
    attention_with(q, k, v, pos0, n_head, n_kv, hd, 1.0 / (hd as f32).sqrt(), None, out)
}

/// [`attention`] with scores multiplied by `scale`, and, with a `window`, each query seeing
/// only the last `window` positions up to its own (llama.cpp's standard sliding window).
#[allow(clippy::too_many_arguments)]
pub fn attention_with(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    pos0: usize,
    n_head: usize,
    n_kv: usize,
    hd: usize,
    scale: f32,
    window: Option<u32>,
    out: &mut [f32],
) {
    let (qw, kw) = (n_head * hd, n_kv * hd);
    let group = n_head / n_kv;
    let t_n = q.len() / qw;
    let mut scores = Vec::new();
    for t in 0..t_n {
        let n_ctx = pos0 + t + 1;
        let first = window.map_or(0, |w| n_ctx.saturating_sub(w as usize));
        for h in 0..n_head {
            let kh = h / group;
            let qv = &q[t * qw + h * hd..t * qw + (h + 1) * hd];
            scores.clear();
            scores.extend(
                (first..n_ctx).map(|s| dot(qv, &k[s * kw + kh * hd..s * kw + (kh + 1) * hd]) * scale),
            );
            softmax(&mut scores);
            let o = &mut out[t * qw + h * hd..t * qw + (h + 1) * hd];
            o.fill(0.0);
            for (s, &p) in (first..).zip(scores.iter()) {
                let vr = &v[s * kw + kh * hd..s * kw + (kh + 1) * hd];
                for (oi, &vi) in o.iter_mut().zip(vr) {
                    *oi += p * vi;
                }
            }
        }
    }
}

/// In-place softmax, max-subtracted for stability.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// g = silu(g) · u.
pub fn swiglu(g: &mut [f32], u: &[f32]) {
    glu(g, u, crate::model::Gate::Silu)
}

/// `g = gate(g) · u`: SwiGLU or GeGLU.
pub fn glu(g: &mut [f32], u: &[f32], gate: crate::model::Gate) {
    for (a, &b) in g.iter_mut().zip(u) {
        *a = gate.apply(*a) * b;
    }
}

pub fn add_assign(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// log-softmax of one row of logits, in f64 for accuracy of small probabilities.
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = max
        + logits
            .iter()
            .map(|&l| (l as f64 - max).exp())
            .sum::<f64>()
            .ln();
    logits.iter().map(|&l| (l as f64 - lse) as f32).collect()
}
