// Causal grouped-query attention over a KV cache.
//
// Layouts (f32 unless noted, row-major):
//   q, out     [n_tokens][n_head][head_dim]
//   k_new/v_new [n_tokens][n_kv][head_dim]   this step's keys/values, RoPE already applied
//   k_cache/v_cache [capacity][n_kv][head_dim], f16 with F16, f32 otherwise
// Everything is addressed in vec4 units, so head_dim must be a multiple of 4 (≤ 256).
//
// Two entry points, dispatched back to back in one compute pass (wgpu orders them with a
// barrier, since both bind the cache read_write):
//   kv_write: copies k_new/v_new into cache rows step.pos .. step.pos + n_tokens (rounding to
//     f16 in the F16 variant). One invocation per vec4.
//   attend: one workgroup of WG invocations per (query head, token). Keys are processed in
//     chunks of WG with an online ("flash") softmax:
//       1. invocation i scores key chunk+i (dot with q, held in workgroup memory);
//       2. the chunk maximum is reduced across the workgroup (subgroupMax + a workgroup-memory
//          step with SUBGROUPS, a shared-memory tree otherwise) and merged into the running
//          maximum m; earlier partial results are rescaled by exp(m_old - m_new);
//       3. p = exp(score - m) goes to workgroup memory; each invocation keeps its own running
//          sum of p (reduced once, at the end);
//       4. for the weighted sum of V, the workgroup is re-laid out as (key lane, vec4 of the
//          head dimension): WG / (head_dim/4) lanes each accumulate a strided subset of the
//          chunk's keys for one vec4 column, reading V rows coalesced. The lanes are summed
//          at the end.
//     So decode (n_tokens == 1) spreads each head's keys over WG invocations; prefill runs
//     n_head · n_tokens such workgroups. Causality: token t sees positions ≤ step.pos + t.

struct Params {
    n_head: u32,
    // n_head / n_kv: query heads per KV head
    group: u32,
    // head_dim / 4
    hd4: u32,
    // n_kv * head_dim / 4: one cache row
    kvw4: u32,
    capacity: u32,
    // 1 / sqrt(head_dim)
    scale: f32,
    // Splits the partial-result buffers hold per (token, head): ceil(capacity / KPS).
    max_split: u32,
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

#ifndef SPLIT
var<workgroup> q_sh: array<vec4<f32>, 64>;
var<workgroup> p_sh: array<f32, WG>;
var<workgroup> acc_sh: array<vec4<f32>, WG>;

#include "reduce.wgsl"

@compute @workgroup_size(128)
fn attend(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
#ifdef SUBGROUPS
    @builtin(subgroup_invocation_id) lane_id: u32,
    @builtin(subgroup_size) size: u32,
#endif
) {
#ifdef SUBGROUPS
    sg_lane = lane_id;
    sg_size = size;
#endif
    let h = wid.x;
    let t = wid.y;
    let hd4 = params.hd4;
    let kvw4 = params.kvw4;
    let kv_off = (h / params.group) * hd4;
    let q_row = (t * params.n_head + h) * hd4;
    // Keys this token sees (the cache never holds more than `capacity`).
    let n_ctx = min(step.pos + t + 1u, params.capacity);

    if (lid < hd4) {
        q_sh[lid] = q[q_row + lid];
    }
    workgroupBarrier();

    // The V layout: `lane` picks keys, `col` a vec4 of the head dimension.
    let col = lid % hd4;
    let lane = lid / hd4;
    let n_lanes = WG / hd4;

    var m = LOWEST;
    var l = 0.0;
    var acc = vec4<f32>(0.0);
    let n_chunks = (n_ctx + WG - 1u) / WG;
    for (var c = 0u; c < n_chunks; c++) {
        let s0 = c * WG;
        let s = s0 + lid;
        var score = LOWEST;
        if (s < n_ctx) {
            let kb = s * kvw4 + kv_off;
            var d = vec4<f32>(0.0);
            for (var j = 0u; j < hd4; j++) {
                d += q_sh[j] * vec4<f32>(k_cache[kb + j]);
            }
            score = ((d.x + d.y) + (d.z + d.w)) * params.scale;
        }
        let m_new = max(m, wg_max(score, lid));
        let alpha = exp(m - m_new);
        var p = 0.0;
        if (s < n_ctx) {
            p = exp(score - m_new);
        }
        l = l * alpha + p;
        p_sh[lid] = p;
        m = m_new;
        workgroupBarrier();

        acc = acc * alpha;
        if (lane < n_lanes) {
            let n_here = min(WG, n_ctx - s0);
            for (var j = lane; j < n_here; j += n_lanes) {
                acc += p_sh[j] * vec4<f32>(v_cache[(s0 + j) * kvw4 + kv_off + col]);
            }
        }
        workgroupBarrier();
    }

    let total = wg_sum(l, lid);
    acc_sh[lid] = acc;
    workgroupBarrier();
    if (lid < hd4) {
        var o = vec4<f32>(0.0);
        for (var j = 0u; j < n_lanes; j++) {
            o += acc_sh[j * hd4 + lid];
        }
        out[q_row + lid] = o / total;
    }
}
#endif

#ifdef SPLIT
// Split-K ("flash decoding") attention, for steps of a few tokens. The single-pass `attend`
// gives each (head, token) one workgroup that walks the whole context: for decode that is only
// n_head workgroups, each serial over thousands of keys, which leaves most of a large GPU idle
// at long contexts. Here the context is cut into splits of KPS keys:
//   attend_split: one workgroup per (KV head × HPW of its query heads, split, token). The
//     query heads that share a KV head are handled together, so each K and V row is read once
//     for all of them, not once per query head. All of a split's scores fit in workgroup
//     memory, so its softmax is exact (no online rescaling): scores, then per-head maximum and
//     sum (each head's LPH invocations reduce through workgroup memory), then p·V with the
//     workgroup laid out as (key lane, vec4 column) as in `attend`. It writes the split's
//     unnormalized output and its (maximum, sum).
//   attend_merge: one workgroup per (head, token) rescales the splits to their common maximum
//     and normalizes: out = Σ_s e^(m_s - M) acc_s / Σ_s e^(m_s - M) l_s.
// Both compute the split count from the step uniform, as the host does for the dispatch:
// ceil(min(pos + n_tokens, capacity) / KPS). Splits past a token's causal end write l = 0.

const KPS: u32 = 256u;
// Query heads per workgroup (a divisor of params.group, at most 8, HPW · head_dim/4 ≤ 256).
const HPW: u32 = {{HPW}}u;
// Invocations per head in the softmax step: WG / (HPW rounded up to a power of two).
const LPH: u32 = {{LPH}}u;

@group(0) @binding(8) var<storage, read_write> part_acc: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read_write> part_ml: array<vec2<f32>>;

var<workgroup> qs_sh: array<vec4<f32>, 256>;
var<workgroup> sc_sh: array<f32, 2048>;
var<workgroup> seg_sh: array<f32, WG>;
var<workgroup> accs_sh: array<vec4<f32>, WG>;

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

@compute @workgroup_size(128)
fn attend_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let hd4 = params.hd4;
    let kvw4 = params.kvw4;
    let per_kv = params.group / HPW;
    let kvh = wid.x / per_kv;
    let h0 = kvh * params.group + (wid.x % per_kv) * HPW;
    let sp = wid.y;
    let t = wid.z;
    let kv_off = kvh * hd4;
    let n_ctx = min(step.pos + t + 1u, params.capacity);
    let s0 = sp * KPS;
    var n_here = 0u;
    if (s0 < n_ctx) {
        n_here = min(KPS, n_ctx - s0);
    }

    // Heads h0 .. h0 + HPW are consecutive rows of q.
    for (var i = lid; i < HPW * hd4; i += WG) {
        qs_sh[i] = q[(t * params.n_head + h0) * hd4 + i];
    }
    workgroupBarrier();

    for (var k = lid; k < n_here; k += WG) {
        let kb = (s0 + k) * kvw4 + kv_off;
        var d: array<vec4<f32>, HPW>;
        for (var j = 0u; j < hd4; j++) {
            let kk = vec4<f32>(k_cache[kb + j]);
            for (var g = 0u; g < HPW; g++) {
                d[g] += qs_sh[g * hd4 + j] * kk;
            }
        }
        for (var g = 0u; g < HPW; g++) {
            sc_sh[g * KPS + k] = ((d[g].x + d[g].y) + (d[g].z + d[g].w)) * params.scale;
        }
    }
    workgroupBarrier();

    let g = lid / LPH;
    let lane = lid % LPH;
    var mx = LOWEST;
    if (g < HPW) {
        for (var k = lane; k < n_here; k += LPH) {
            mx = max(mx, sc_sh[g * KPS + k]);
        }
    }
    let m = seg_reduce(mx, lid, true);
    var l = 0.0;
    if (g < HPW) {
        for (var k = lane; k < n_here; k += LPH) {
            let p = exp(sc_sh[g * KPS + k] - m);
            sc_sh[g * KPS + k] = p;
            l += p;
        }
    }
    // Its barriers also publish the p values written above.
    let l_sum = seg_reduce(l, lid, false);
    let row = (t * params.n_head + h0) * params.max_split + sp;
    if (g < HPW && lane == 0u) {
        part_ml[row + g * params.max_split] = vec2<f32>(m, l_sum);
    }

    let col = lid % hd4;
    let vl = lid / hd4;
    let n_lanes = WG / hd4;
    var acc: array<vec4<f32>, HPW>;
    if (vl < n_lanes) {
        for (var k = vl; k < n_here; k += n_lanes) {
            let vv = vec4<f32>(v_cache[(s0 + k) * kvw4 + kv_off + col]);
            for (var g2 = 0u; g2 < HPW; g2++) {
                acc[g2] += sc_sh[g2 * KPS + k] * vv;
            }
        }
    }
    for (var g2 = 0u; g2 < HPW; g2++) {
        accs_sh[lid] = acc[g2];
        workgroupBarrier();
        if (lid < hd4) {
            var o = vec4<f32>(0.0);
            for (var j = 0u; j < n_lanes; j++) {
                o += accs_sh[j * hd4 + lid];
            }
            part_acc[(row + g2 * params.max_split) * hd4 + lid] = o;
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
#endif
