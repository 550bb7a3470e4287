// "Normal" RoPE (llama.cpp's GGML_ROPE_TYPE_NORMAL), in place on f32 `[n_tokens][n_heads][head_dim]`:
// the adjacent pair (x[2i], x[2i+1]) of every head, i < rope_dim / 2, is rotated by
//   theta_i = freq_scale · (pos · theta_scale^i / freq_factor[i]),   theta_scale = base^(-2/rope_dim)
// at pos = step.pos + t. Pairs past rope_dim / 2 are left alone.
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
// One invocation per (token, head, pair). Variants: FREQ_FACTORS (a per-pair divisor buffer),
// PAIR (a second buffer `x2` of n_heads2 heads, a layer's K beside its Q, rotated by the same
// dispatch: invocations past the first buffer's pairs take the second's), and with PAIR,
// KV_WRITE: the rotated K and this step's V go straight into the KV cache rows step.pos + t
// (rounded to f16 with F16), which is all that attention reads of them, so the cache write needs
// no dispatch of its own and `x2` is left as it was. Every pair of K has an invocation then, the
// ones past rope_dim / 2 copied unrotated.

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

// (sin a, cos a).
fn sin_cos(a: f32) -> vec2<f32> {
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

@compute @workgroup_size(256)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    var idx = gid.x + gid.y * nwg.x * 256u;
    // Pairs with an invocation, per head.
    var n_pairs = params.n_pairs;
    var n_heads = params.n_heads;
    var second = false;
#ifdef PAIR
    if (idx >= n_heads * n_pairs * step.n_tokens) {
        idx -= n_heads * n_pairs * step.n_tokens;
        n_heads = params.n_heads2;
        second = true;
#ifdef KV_WRITE
        n_pairs = params.head_dim / 2u;
#endif
    }
#endif
    let per_token = n_heads * n_pairs;
    if (idx >= per_token * step.n_tokens) {
        return;
    }
    let t = idx / per_token;
    let rem = idx - t * per_token;
    let head = rem / n_pairs;
    let i = rem - head * n_pairs;

    var theta_base = f32(step.pos + t);
    for (var j = 0u; j < min(i, params.n_pairs); j++) {
        theta_base = theta_base * params.theta_scale;
    }
#ifdef FREQ_FACTORS
    let theta = params.freq_scale * (theta_base / freq_factors[min(i, params.n_pairs - 1u)]);
#else
    let theta = params.freq_scale * theta_base;
#endif
    let sc = sin_cos(theta);

    let at = (t * n_heads + head) * (params.head_dim / 2u) + i;
#ifdef PAIR
    if (second) {
        let v = x2[at];
        let r = vec2<f32>(v.x * sc.y - v.y * sc.x, v.x * sc.x + v.y * sc.y);
#ifdef KV_WRITE
        let row = step.pos + t;
        if (row < params.capacity) {
            // Pairs past rope_dim / 2 keep their values.
            k_cache[row * per_token + rem] = KV2(select(v, r, i < params.n_pairs));
            v_cache[row * per_token + rem] = KV2(v_new[at]);
        }
#else
        x2[at] = r;
#endif
        return;
    }
#endif
    let v = x[at];
    x[at] = vec2<f32>(v.x * sc.y - v.y * sc.x, v.x * sc.x + v.y * sc.y);
}
