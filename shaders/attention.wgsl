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
