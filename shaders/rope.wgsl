// RoPE in place on f32 `[n_tokens][n_heads][head_dim]`: rotation pair i of every head,
// i < rope_dim / 2, is turned by
//   theta_i = freq_scale · (pos · theta_scale^i / freq_factor[i]),   theta_scale = base^(-2/rope_dim)
// at pos = step.pos + t. Pair i is the adjacent (x[2i], x[2i+1]) (llama.cpp's
// GGML_ROPE_TYPE_NORMAL: Llama, whose conversion permutes Q and K), or with HALVES
// (x[i], x[i + head_dim/2]) (its NEOX type: Qwen, Gemma; rope_dim = head_dim, a multiple of 4).
// Pairs past rope_dim / 2 are left alone.
//
// Precision. theta reaches ~8000 rad at position 8000, where one f32 ulp is 5e-4 rad, so any
// difference in how theta is rounded shows up directly in the output. To reproduce the CPU
// reference (and ggml's CPU rope) bit for bit up to the sin/cos, theta_base is built the same
// way: pos multiplied i times by theta_scale, which the host computes with the same f32
// powf as the reference (f32 multiplication is correctly rounded in WGSL/SPIR-V). That is at
// most rope_dim/2 - 1 multiplications per invocation. pow(base, -2i/dim) on the GPU is
// allowed several ulp of error (Vulkan: exp2/log2-based, 3 + 2|x| ulp), which at position 8000
// would move theta by ~1e-3 rad.
// sin and cos of large arguments are not accurate on every GPU (Vulkan only bounds them on
// [-pi, pi], to 2^-11), so `sin_cos` reduces the angle by multiples of pi/2 in three exact-ish
// steps (Cody-Waite) and evaluates Taylor polynomials on [-pi/4, pi/4]: ~2e-7 absolute error
// for angles below ~30000 rad.
//
// One invocation per (token, head, pair), with HALVES per two pairs (vec2s i and i + head_dim/4
// of a head, so that every access stays a whole vec2 — an f16 cache word). BIAS (with
// KV_WRITE) adds Q's, K's and V's biases first. Variants: FREQ_FACTORS (a per-pair divisor buffer),
// PAIR (a second buffer `x2` of n_heads2 heads, a layer's K beside its Q, rotated by the same
// dispatch: invocations past the first buffer's pairs take the second's), and with PAIR,
// KV_WRITE: the rotated K and this step's V go straight into the KV cache rows step.pos + t
// (rounded to f16 with F16), which is all that attention reads of them, so the cache write needs
// no dispatch of its own and `x2` is left as it was. Every pair of K has an invocation then, the
// ones past rope_dim / 2 copied unrotated. QK_NORM (with KV_WRITE, every pair rotated, no BIAS):
// Qwen3's and Gemma 3's per-head RMSNorms of Q and K first, each head by its own RMS and the
// weight its projection has (`x * scale * w`, as norm.wgsl computes it). Every invocation sums
// its head's squares itself (64–256 values, from cache: no reduction to wait for), so the norms
// cost no dispatch of their own; a storage barrier keeps Q's in-place writes after every sum of
// the workgroup, which holds whole heads (the host checks that 256 is a multiple of the
// invocations per head).

struct Params {
    n_heads: u32,
    head_dim: u32,
    // rope_dim / 2
    n_pairs: u32,
    theta_scale: f32,
    freq_scale: f32,
    n_heads2: u32,
    // KV cache rows (KV_WRITE)
    capacity: u32,
    // A multiplier of cos and sin (Phi-3's long-context scale; 1 elsewhere), as ggml's mscale.
    mscale: f32,
    // The norms' epsilon (QK_NORM).
    eps: f32,
}

struct Step {
    n_tokens: u32,
    pos: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<vec2<f32>>;
#ifdef FREQ_FACTORS
@group(0) @binding(1) var<storage, read> freq_factors: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;
@group(0) @binding(3) var<uniform> step: Step;
#else
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<uniform> step: Step;
#endif
#ifdef PAIR
@group(0) @binding(4) var<storage, read_write> x2: array<vec2<f32>>;
#endif
#ifdef KV_WRITE
#ifdef F16
alias KV2 = vec2<f16>;
#else
alias KV2 = vec2<f32>;
#endif
// [n_tokens][n_heads2][head_dim] this step's values; the caches [capacity][n_heads2][head_dim].
@group(0) @binding(5) var<storage, read> v_new: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read_write> k_cache: array<KV2>;
@group(0) @binding(7) var<storage, read_write> v_cache: array<KV2>;
#endif
#ifdef BIAS
// Qwen2's biases of Q, K and V ([n_heads][head_dim] each), added before the rotation (and to V
// before the cache write).
@group(0) @binding(8) var<storage, read> bias_q: array<vec2<f32>>;
@group(0) @binding(9) var<storage, read> bias_k: array<vec2<f32>>;
@group(0) @binding(10) var<storage, read> bias_v: array<vec2<f32>>;
#endif
#ifdef QK_NORM
// The norms' weights, [head_dim] each, shared by the heads.
@group(0) @binding(11) var<storage, read> norm_q: array<vec2<f32>>;
@group(0) @binding(12) var<storage, read> norm_k: array<vec2<f32>>;

// The RMSNorm scale 1 / sqrt(mean(v²) + eps) of the head that invocation `idx` works on (its
// index as the entry point numbers them; past the last, the last head's): Q's heads first,
// then K's. Every pair rotated, so a head has `per_head` invocations in both.
fn head_scale(idx: u32, per_head: u32) -> f32 {
    let q_heads = params.n_heads * step.n_tokens;
    let heads = q_heads + params.n_heads2 * step.n_tokens;
    if (heads == 0u) {
        return 1.0;
    }
    let h = min(idx / per_head, heads - 1u);
    let second = h >= q_heads;
    let half = params.head_dim / 2u;
    let base = select(h, h - q_heads, second) * half;
    var ss = 0.0;
    for (var j = 0u; j < half; j++) {
        var v = vec2<f32>();
        if (second) {
            v = x2[base + j];
        } else {
            v = x[base + j];
        }
        ss += dot(v, v);
    }
    return 1.0 / sqrt(ss / f32(params.head_dim) + params.eps);
}
#endif

// (sin a, cos a) · mscale.
fn sin_cos(a: f32) -> vec2<f32> {
    return sin_cos_unit(a) * params.mscale;
}

fn sin_cos_unit(a: f32) -> vec2<f32> {
    let k = round(a * 0.636619772367581343);
    // pi/2 = P1 + P2 + P3; P1 has 8 significant bits and P2 12, so k·P1 is exact for
    // k < 2^16 and k·P2 for k < 2^12 (within half an ulp of ~1e-7 beyond).
    var r = a - k * 1.5703125;
    r = r - k * 4.837512969970703125e-4;
    r = r - k * 7.54978995489188216e-8;
    let r2 = r * r;
    // Taylor series through r^9 / r^10: truncation error < 2e-9 on |r| <= pi/4.
    let s = r + r * r2 * (-1.0 / 6.0 + r2 * (1.0 / 120.0 + r2 * (-1.0 / 5040.0 + r2 * (1.0 / 362880.0))));
    let c = 1.0 - 0.5 * r2 + r2 * r2 * (1.0 / 24.0 + r2 * (-1.0 / 720.0 + r2 * (1.0 / 40320.0 + r2 * (-1.0 / 3628800.0))));
    let q = u32(i32(k)) & 3u;
    switch q {
        case 0u: { return vec2<f32>(s, c); }
        case 1u: { return vec2<f32>(c, -s); }
        case 2u: { return vec2<f32>(-s, -c); }
        default: { return vec2<f32>(-c, s); }
    }
}

// The angle of rotation pair j at position `pos`: theta_base built by repeated multiplication,
// as the reference builds it (see the top of the file).
fn angle(pos: f32, j: u32) -> f32 {
    var theta_base = pos;
    for (var k = 0u; k < min(j, params.n_pairs); k++) {
        theta_base = theta_base * params.theta_scale;
    }
#ifdef FREQ_FACTORS
    return params.freq_scale * (theta_base / freq_factors[min(j, params.n_pairs - 1u)]);
#else
    return params.freq_scale * theta_base;
#endif
}

// (x0, x1) turned by the angle whose (sin, cos) is sc.
fn turn(x0: f32, x1: f32, sc: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(x0 * sc.y - x1 * sc.x, x0 * sc.x + x1 * sc.y);
}

#ifdef HALVES
// HALVES: the vec2s `lo` (elements 2i, 2i+1 of a head) and `hi` (2i + head_dim/2, 2i+1 +
// head_dim/2) hold two rotation pairs, (lo.x, hi.x) at angle 2i and (lo.y, hi.y) at 2i + 1.
fn turn_halves(lo: vec2<f32>, hi: vec2<f32>, sc0: vec2<f32>, sc1: vec2<f32>) -> array<vec2<f32>, 2> {
    let a = turn(lo.x, hi.x, sc0);
    let b = turn(lo.y, hi.y, sc1);
    return array<vec2<f32>, 2>(vec2<f32>(a.x, b.x), vec2<f32>(a.y, b.y));
}
#endif

@compute @workgroup_size(256)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    var idx = gid.x + gid.y * nwg.x * 256u;
    // Invocations per head: one per pair, or with HALVES one per two pairs.
#ifdef HALVES
    var per_head = params.n_pairs / 2u;
#else
    var per_head = params.n_pairs;
#endif
    var n_heads = params.n_heads;
    var second = false;
#ifdef QK_NORM
    // Before any return, and before any invocation of the workgroup writes Q back.
    let scale = head_scale(idx, per_head);
    storageBarrier();
#endif
#ifdef PAIR
    if (idx >= n_heads * per_head * step.n_tokens) {
        idx -= n_heads * per_head * step.n_tokens;
        n_heads = params.n_heads2;
        second = true;
#ifdef KV_WRITE
#ifdef HALVES
        // and one per vec2 past the rotated ones, copied into the cache
        per_head = params.n_pairs / 2u + (params.head_dim - 2u * params.n_pairs) / 2u;
#else
        per_head = params.head_dim / 2u;
#endif
#endif
    }
#endif
    let per_token = n_heads * per_head;
    if (idx >= per_token * step.n_tokens) {
        return;
    }
    let t = idx / per_token;
    let rem = idx - t * per_token;
    let head = rem / per_head;
    let i = rem - head * per_head;
    let pos = f32(step.pos + t);
    // vec2s per head
    let half = params.head_dim / 2u;
    let at = (t * n_heads + head) * half + i;
    // The same vec2 within its projection's bias, and within a cache row.
    let in_row = head * half + i;
#ifdef HALVES
    // The partner of vec2 i is rope_dim/4 further on.
    let quarter = params.n_pairs / 2u;
    let sc0 = sin_cos(angle(pos, 2u * i));
    let sc1 = sin_cos(angle(pos, 2u * i + 1u));
#else
    let sc = sin_cos(angle(pos, i));
#endif
#ifdef PAIR
    if (second) {
#ifdef HALVES
#ifdef KV_WRITE
        if (i >= quarter) {
            // Past the rotated dimensions (partial rotation): K and V copied into the cache.
            let row = step.pos + t;
            let j = i + quarter;
            if (row < params.capacity) {
                let c = row * n_heads * half + head * half + j;
                let src = (t * n_heads + head) * half + j;
                k_cache[c] = KV2(x2[src]);
                v_cache[c] = KV2(v_new[src]);
            }
            return;
        }
#endif
        var lo = x2[at];
        var hi = x2[at + quarter];
#ifdef BIAS
        lo += bias_k[in_row];
        hi += bias_k[in_row + quarter];
#endif
#ifdef QK_NORM
        lo = lo * scale * norm_k[i];
        hi = hi * scale * norm_k[i + quarter];
#endif
        let r = turn_halves(lo, hi, sc0, sc1);
#ifdef KV_WRITE
        let row = step.pos + t;
        if (row < params.capacity) {
            let c = row * n_heads * half + in_row;
            k_cache[c] = KV2(r[0]);
            k_cache[c + quarter] = KV2(r[1]);
            var v0 = v_new[at];
            var v1 = v_new[at + quarter];
#ifdef BIAS
            v0 += bias_v[in_row];
            v1 += bias_v[in_row + quarter];
#endif
            v_cache[c] = KV2(v0);
            v_cache[c + quarter] = KV2(v1);
        }
#else
        x2[at] = r[0];
        x2[at + quarter] = r[1];
#endif
#else
        var v = x2[at];
#ifdef BIAS
        v += bias_k[in_row];
#endif
#ifdef QK_NORM
        v = v * scale * norm_k[i];
#endif
        let r = turn(v.x, v.y, sc);
#ifdef KV_WRITE
        let row = step.pos + t;
        if (row < params.capacity) {
            // Pairs past rope_dim / 2 keep their values.
            k_cache[row * per_token + rem] = KV2(select(v, r, i < params.n_pairs));
            var vv = v_new[at];
#ifdef BIAS
            vv += bias_v[in_row];
#endif
            v_cache[row * per_token + rem] = KV2(vv);
        }
#else
        x2[at] = r;
#endif
#endif
        return;
    }
#endif
#ifdef HALVES
    var lo = x[at];
    var hi = x[at + quarter];
#ifdef BIAS
    lo += bias_q[in_row];
    hi += bias_q[in_row + quarter];
#endif
#ifdef QK_NORM
    lo = lo * scale * norm_q[i];
    hi = hi * scale * norm_q[i + quarter];
#endif
    let r = turn_halves(lo, hi, sc0, sc1);
    x[at] = r[0];
    x[at + quarter] = r[1];
#else
    var v = x[at];
#ifdef BIAS
    v += bias_q[in_row];
#endif
#ifdef QK_NORM
    v = v * scale * norm_q[i];
#endif
    x[at] = turn(v.x, v.y, sc);
#endif
}
