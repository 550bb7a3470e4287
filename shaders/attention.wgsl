// Causal grouped-query attention over a KV cache.
//
// Layouts (f32 unless noted, row-major):
//   q, out     [n_tokens][n_head][head_dim]
//   k_new/v_new [n_tokens][n_kv][head_dim]   this step's keys/values, RoPE already applied
//   k_cache/v_cache [capacity][n_kv][head_dim], f16 with F16, f32 otherwise
// Everything is addressed in vec4 units, so head_dim must be a multiple of 4 (≤ 256).
//
// Entry points, dispatched back to back in one compute pass (wgpu orders them with barriers,
// since they share the cache and the partial results read_write):
//   kv_write: copies k_new/v_new into cache rows step.pos .. step.pos + n_tokens (rounding to
//     f16 in the F16 variant). One invocation per vec4.
//   attend_split, then (when the context was split) attend_merge: see below.
// No subgroup operations: the reductions are per row of a tile, through workgroup memory.

struct Params {
    n_head: u32,
    // n_head / n_kv: query heads per KV head
    group: u32,
    // head_dim / 4
    hd4: u32,
    // n_kv * head_dim / 4: one cache row
    kvw4: u32,
    capacity: u32,
    // Multiplier of the scores (1 / sqrt(head_dim) for every family here)
    scale: f32,
    // Splits the partial-result buffers hold per (token, head): ceil(capacity / KPS).
    max_split: u32,
    // A sliding window: each query sees only the last `window` positions up to its own (0: all).
    window: u32,
}

struct Step {
    n_tokens: u32,
    pos: u32,
}

#ifdef F16
alias KV4 = vec4<f16>;
#else
alias KV4 = vec4<f32>;
#endif

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k_new: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v_new: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> k_cache: array<KV4>;
@group(0) @binding(4) var<storage, read_write> v_cache: array<KV4>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(6) var<uniform> params: Params;
@group(0) @binding(7) var<uniform> step: Step;

@compute @workgroup_size(256)
fn kv_write(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= params.kvw4 * step.n_tokens) {
        return;
    }
    let t = i / params.kvw4;
    let row = step.pos + t;
    if (row >= params.capacity) {
        return;
    }
    let at = row * params.kvw4 + (i - t * params.kvw4);
    k_cache[at] = KV4(k_new[i]);
    v_cache[at] = KV4(v_new[i]);
}

const WG: u32 = 128u;
// The most negative finite f32: "no score yet" (WGSL may assume there are no infinities).
const LOWEST: f32 = -3.4028234e38;

// attend_split: one workgroup of 128 invocations per (KV head × HPW of its query heads,
// split, tile of TPW tokens). Its R = HPW · TPW rows (query head, token) share every K and V row
// they read, so the cache is read once per workgroup, not once per query head and token.
// Keys go in chunks of KPS: each invocation scores whole keys against all R rows; each row's
// LPH invocations reduce the chunk's maximum and sum through workgroup memory; an online
// softmax rescales what earlier chunks gave (a row's running maximum m and sum l, and the
// accumulated p·V); then p·V with the workgroup laid out as (key lane, vec4 column).
//
// Splits ("flash decoding"): for steps of a few tokens the host cuts the context into splits of
// one chunk (dispatch y = ceil(min(pos + n_tokens, capacity) / KPS)), so that long contexts
// spread over many workgroups, and each split writes its unnormalized output and (m, l) for
// `attend_merge`, which rescales the splits to their common maximum and normalizes:
//   out = Σ_s e^(m_s - M) acc_s / Σ_s e^(m_s - M) l_s.
// With one split (prefill, short contexts) the workgroup walks every chunk its tokens see and
// writes the normalized output itself. Causality: token t sees positions ≤ pos + t; splits past
// a token's end write l = 0.

const KPS: u32 = 256u;
// Query heads per workgroup (a divisor of params.group) and tokens per workgroup; R rows, at
// most 8 and with R · head_dim/4 ≤ 256 (the workgroup arrays).
const HPW: u32 = {{HPW}}u;
const TPW: u32 = {{TPW}}u;
const R: u32 = HPW * TPW;
// Invocations per row in the softmax step: WG / (R rounded up to a power of two).
const LPH: u32 = {{LPH}}u;

@group(0) @binding(8) var<storage, read_write> part_acc: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read_write> part_ml: array<vec2<f32>>;

var<workgroup> qs_sh: array<vec4<f32>, 256>;
var<workgroup> sc_sh: array<f32, 2048>;
var<workgroup> seg_sh: array<f32, WG>;
var<workgroup> accs_sh: array<vec4<f32>, WG>;
var<workgroup> alpha_sh: array<f32, 8>;
var<workgroup> l_sh: array<f32, 8>;

fn n_splits() -> u32 {
    return (min(step.pos + step.n_tokens, params.capacity) + KPS - 1u) / KPS;
}

// The maximum (or sum) of `v` over each run of LPH invocations, returned to all of them.
// Workgroup-uniform control flow only.
fn seg_reduce(v: f32, lid: u32, take_max: bool) -> f32 {
    seg_sh[lid] = v;
    workgroupBarrier();
    for (var s = LPH / 2u; s > 0u; s >>= 1u) {
        if (lid % LPH < s) {
            let a = seg_sh[lid];
            let b = seg_sh[lid + s];
            seg_sh[lid] = select(a + b, max(a, b), take_max);
        }
        workgroupBarrier();
    }
    let r = seg_sh[lid - lid % LPH];
    workgroupBarrier();
    return r;
}

// Keys token t of the step sees; 0 for tokens past the step.
fn token_ctx(t: u32) -> u32 {
    if (t >= step.n_tokens) {
        return 0u;
    }
    return min(step.pos + t + 1u, params.capacity);
}

// The first key a query with `ctx` keys sees: with a sliding window, keys at least `window`
// positions back are masked (llama.cpp's standard sliding window).
fn first_key(ctx: u32) -> u32 {
    return select(0u, ctx - min(ctx, params.window), params.window > 0u);
}

@compute @workgroup_size(128)
fn attend_split(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let hd4 = params.hd4;
    let kvw4 = params.kvw4;
    let per_kv = params.group / HPW;
    let kvh = wid.x / per_kv;
    let h0 = kvh * params.group + (wid.x % per_kv) * HPW;
    let sp = wid.y;
    let t0 = wid.z * TPW;
    let kv_off = kvh * hd4;
    // Keys this workgroup covers: its split's, up to what its last token sees.
    let n_chunks = n_splits();
    let per_split = (n_chunks + nwg.y - 1u) / nwg.y;
    let k_begin = sp * per_split * KPS;
    // The workgroup's last token in the step sees the most keys.
    let k_end = min((sp + 1u) * per_split * KPS, token_ctx(min(t0 + TPW - 1u, step.n_tokens - 1u)));
    for (var i = lid; i < R * hd4; i += WG) {
        let r = i / hd4;
        let t = min(t0 + r / HPW, step.n_tokens - 1u);
        qs_sh[i] = q[(t * params.n_head + h0 + r % HPW) * hd4 + i % hd4];
    }
    workgroupBarrier();

    // The softmax step's layout: row `g`, lane `lane` (rows past R idle).
    let g = lid / LPH;
    let lane = lid % LPH;
    // Row r is query head h0 + r % HPW of token t0 + r / HPW.
    let g_ctx = token_ctx(t0 + min(g, R - 1u) / HPW);
    let g_first = first_key(g_ctx);
    // The p·V layout.
    let col = lid % hd4;
    let vl = lid / hd4;
    let n_lanes = WG / hd4;

    var m = LOWEST;
    var l = 0.0;
    var acc: array<vec4<f32>, R>;
    for (var c0 = k_begin; c0 < k_end; c0 += KPS) {
        let n_here = min(KPS, k_end - c0);
        for (var k = lid; k < n_here; k += WG) {
            let kb = (c0 + k) * kvw4 + kv_off;
            var d = array<vec4<f32>, R>();
            for (var j = 0u; j < hd4; j++) {
                let kk = vec4<f32>(k_cache[kb + j]);
                for (var r = 0u; r < R; r++) {
                    d[r] += qs_sh[r * hd4 + j] * kk;
                }
            }
            for (var r = 0u; r < R; r++) {
                sc_sh[r * KPS + k] = ((d[r].x + d[r].y) + (d[r].z + d[r].w)) * params.scale;
            }
        }
        workgroupBarrier();

        var mx = LOWEST;
        if (g < R) {
            for (var k = lane; k < n_here && c0 + k < g_ctx; k += LPH) {
                if (c0 + k >= g_first) {
                    mx = max(mx, sc_sh[g * KPS + k]);
                }
            }
        }
        let m_new = max(m, seg_reduce(mx, lid, true));
        let alpha = exp(m - m_new);
        var ps = 0.0;
        if (g < R) {
            for (var k = lane; k < n_here; k += LPH) {
                var p = 0.0;
                if (c0 + k < g_ctx && c0 + k >= g_first) {
                    p = exp(sc_sh[g * KPS + k] - m_new);
                }
                sc_sh[g * KPS + k] = p;
                ps += p;
            }
        }
        l = l * alpha + seg_reduce(ps, lid, false);
        m = m_new;
        if (g < R && lane == 0u) {
            alpha_sh[g] = alpha;
        }
        workgroupBarrier();

        if (vl < n_lanes) {
            for (var r = 0u; r < R; r++) {
                acc[r] *= alpha_sh[r];
            }
            for (var k = vl; k < n_here; k += n_lanes) {
                let vv = vec4<f32>(v_cache[(c0 + k) * kvw4 + kv_off + col]);
                for (var r = 0u; r < R; r++) {
                    acc[r] += sc_sh[r * KPS + k] * vv;
                }
            }
        }
        workgroupBarrier();
    }

    let split = nwg.y > 1u;
    if (g < R && lane == 0u) {
        l_sh[g] = l;
        let t = t0 + g / HPW;
        if (split && t < step.n_tokens) {
            part_ml[(t * params.n_head + h0 + g % HPW) * params.max_split + sp] = vec2<f32>(m, l);
        }
    }
    for (var r = 0u; r < R; r++) {
        accs_sh[lid] = acc[r];
        workgroupBarrier();
        let t = t0 + r / HPW;
        if (lid < hd4 && t < step.n_tokens) {
            var o = vec4<f32>(0.0);
            for (var j = 0u; j < n_lanes; j++) {
                o += accs_sh[j * hd4 + lid];
            }
            let row = t * params.n_head + h0 + r % HPW;
            if (split) {
                part_acc[(row * params.max_split + sp) * hd4 + lid] = o;
            } else {
                out[row * hd4 + lid] = o / l_sh[r];
            }
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(64)
fn attend_merge(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let hd4 = params.hd4;
    if (lid >= hd4) {
        return;
    }
    let h = wid.x;
    let t = wid.y;
    let ns = n_splits();
    let base = (t * params.n_head + h) * params.max_split;
    var mm = LOWEST;
    for (var s = 0u; s < ns; s++) {
        mm = max(mm, part_ml[base + s].x);
    }
    var l = 0.0;
    var o = vec4<f32>(0.0);
    for (var s = 0u; s < ns; s++) {
        let ml = part_ml[base + s];
        // Empty splits (past this token's causal end) hold l = 0 and m = LOWEST.
        if (ml.y > 0.0) {
            let w = exp(ml.x - mm);
            l += ml.y * w;
            o += part_acc[(base + s) * hd4 + lid] * w;
        }
    }
    out[(t * params.n_head + h) * hd4 + lid] = o / l;
}
