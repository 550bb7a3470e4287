// Argmax and top-k over f32 logits `[n]`, ordered by (logit descending, id ascending), so ties
// go to the lowest id.
//
// Pass 1, `topk_partial`: one workgroup of 256 invocations per block of BLOCK = 2048 logits. Each
// invocation loads 8 logits (strided by 256, so loads are coalesced) and tracks the best one
// it has not yet handed out. M rounds of a workgroup arg-max (subgroupMax/subgroupMin plus a
// workgroup-memory step with SUBGROUPS, a shared-memory tree otherwise) each emit the
// workgroup's next best (id, logit) and let the winning invocation move to its next best:
// every block yields its top M (params.m; M = K for argmax), sorted, into `parts`.
// Pass 2, `topk_merge`: one workgroup merges the ≤ 256 sorted lists, one list per invocation, with
// the same K rounds of arg-max over the lists' heads.
// With K = 1 this is a plain two-pass argmax.
//
// For K > 1 most of those rounds are wasted: the blocks emit n_parts·K candidates for K places,
// and every round costs a workgroup reduction (barriers). So top-k first prunes:
//   `topk_partial` with M about 2K / n_parts: each block emits only its top M;
//   `topk_threshold`: one workgroup merges those lists far enough to find the K-th best of
//     them, T. There are K logits ≥ T, so no logit below T can be among the top K;
//   `topk_pruned`: each block emits its best logits while they are ≥ T (at most K), then an
//     end marker;
//   `topk_merge` as above.
// Ties at T are kept (≥), so the result is exactly the unpruned one.
//
// The passes are one entry point, `topk`, compiled per pass (see its defines at the end).
//
// Output: ARGMAX: out[0] = the winning id. Otherwise out[2r], out[2r+1] = id and logit bits of
// the r-th best, r < K.
// Logits must be finite; "nothing left" is (LOWEST, NONE), which ranks below any finite logit.

struct Params {
    n: u32,
    k: u32,
    n_parts: u32,
    // Logits per block from `topk_partial`: K for argmax, fewer for top-k's threshold.
    m: u32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> parts: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@group(0) @binding(3) var<uniform> params: Params;
// The pruning threshold T (f32 bits), written by `topk_threshold`.
@group(0) @binding(4) var<storage, read_write> thresh: array<u32>;

const WG: u32 = 256u;
const ITEMS: u32 = 8u;
const BLOCK: u32 = 2048u;
const LOWEST: f32 = -3.4028234e38;
const NONE: u32 = 0xffffffffu;

var<workgroup> red_v: array<f32, WG>;
var<workgroup> red_i: array<u32, WG>;
var<workgroup> win_sh: f32;
var<workgroup> t_sh: f32;
var<private> sg_lane: u32;
var<private> sg_size: u32;

// Whether (av, ai) ranks before (bv, bi).
fn better(av: f32, ai: u32, bv: f32, bi: u32) -> bool {
    return av > bv || (av == bv && ai < bi);
}

// The best (logit, id) over the workgroup, returned to every invocation (the id as bits in
// .y). Workgroup-uniform control flow only.
fn wg_best(v: f32, i: u32, lid: u32) -> vec2<u32> {
#ifdef SUBGROUPS
    // Subgroups are taken to be consecutive runs of local_invocation_index, as on every
    // Vulkan, Metal and D3D12 implementation for 1-D workgroups.
    let mv = subgroupMax(v);
    let mi = subgroupMin(select(NONE, i, v == mv));
    if (sg_lane == 0u) {
        red_v[lid / sg_size] = mv;
        red_i[lid / sg_size] = mi;
    }
    workgroupBarrier();
    var bv = red_v[0];
    var bi = red_i[0];
    for (var j = 1u; j < WG / sg_size; j++) {
        if (better(red_v[j], red_i[j], bv, bi)) {
            bv = red_v[j];
            bi = red_i[j];
        }
    }
    workgroupBarrier();
    return vec2<u32>(bitcast<u32>(bv), bi);
#else
    red_v[lid] = v;
    red_i[lid] = i;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s && better(red_v[lid + s], red_i[lid + s], red_v[lid], red_i[lid])) {
            red_v[lid] = red_v[lid + s];
            red_i[lid] = red_i[lid + s];
        }
        workgroupBarrier();
    }
    let r = vec2<u32>(bitcast<u32>(red_v[0]), red_i[0]);
    workgroupBarrier();
    return r;
#endif
}

// Emits the best `k` logits of block `blk` (stride k in `parts`) in order, stopping early, with
// an end marker, at the first below `t`. Workgroup-uniform control flow only.
fn block_top(blk: u32, lid: u32, k: u32, t: f32) {
    let base = blk * BLOCK + lid;
    var vals: array<f32, ITEMS>;
    for (var j = 0u; j < ITEMS; j++) {
        vals[j] = LOWEST;
        if (base + j * WG < params.n) {
            vals[j] = logits[base + j * WG];
        }
    }
    var taken = 0u;
    var bv = LOWEST;
    var bi = NONE;
    var bj = 0u;
    for (var j = 0u; j < ITEMS; j++) {
        let id = base + j * WG;
        if (id < params.n && better(vals[j], id, bv, bi)) {
            bv = vals[j];
            bi = id;
            bj = j;
        }
    }
    for (var r = 0u; r < k; r++) {
        let w = wg_best(bv, bi, lid);
        // Every invocation holds the same w, but it came through workgroup memory: the uniform
        // load lets the loop leave in uniform control flow.
        if (lid == 0u) {
            win_sh = bitcast<f32>(w.x);
        }
        if (workgroupUniformLoad(&win_sh) < t) {
            if (lid == 0u) {
                parts[blk * k + r] = vec2<u32>(NONE, bitcast<u32>(LOWEST));
            }
            break;
        }
        if (lid == 0u) {
            parts[blk * k + r] = vec2<u32>(w.y, w.x);
        }
        if (w.y != NONE && w.y == bi) {
            // This invocation's best was taken: find its next best.
            taken |= 1u << bj;
            bv = LOWEST;
            bi = NONE;
            for (var j = 0u; j < ITEMS; j++) {
                let id = base + j * WG;
                if ((taken & (1u << j)) == 0u && id < params.n && better(vals[j], id, bv, bi)) {
                    bv = vals[j];
                    bi = id;
                    bj = j;
                }
            }
        }
    }
}

fn merge_lists(lid: u32, stride: u32, rounds: u32, emit: bool) -> vec2<u32> {
    var head = 0u;
    var v = LOWEST;
    var i = NONE;
    if (lid < params.n_parts) {
        let e = parts[lid * stride];
        v = bitcast<f32>(e.y);
        i = e.x;
    }
    var w = vec2<u32>(bitcast<u32>(LOWEST), NONE);
    for (var r = 0u; r < rounds; r++) {
        w = wg_best(v, i, lid);
        if (emit && lid == 0u) {
#ifdef ARGMAX
            out[0] = w.y;
#else
            out[2u * r] = w.y;
            out[2u * r + 1u] = w.x;
#endif
        }
        if (w.y != NONE && w.y == i) {
            head += 1u;
            v = LOWEST;
            i = NONE;
            if (head < stride) {
                let e = parts[lid * stride + head];
                v = bitcast<f32>(e.y);
                i = e.x;
            }
        }
    }
    return w;
}

// Every pass is this entry point, compiled per pass:
// - `topk_partial`: one block's top M (K for argmax);
// - `topk_pruned` (PRUNED): one block's logits ≥ the threshold T, at most K;
// - `topk_threshold` (MERGE, THRESHOLD): the K-th best of the blocks' top M, T, into `thresh`;
// - `topk_merge` (MERGE): the blocks' sorted lists merged into the top K, into `out`.
@compute @workgroup_size(256)
fn topk(
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
#ifdef MERGE
#ifdef THRESHOLD
    // Fewer than K candidates leave the K-th round empty: T = LOWEST, nothing is pruned.
    let w = merge_lists(lid, params.m, params.k, false);
    if (lid == 0u) {
        thresh[0] = w.x;
    }
#else
    merge_lists(lid, params.k, params.k, true);
#endif
#else
#ifdef PRUNED
    if (lid == 0u) {
        t_sh = bitcast<f32>(thresh[0]);
    }
    block_top(wid.x, lid, params.k, workgroupUniformLoad(&t_sh));
#else
    block_top(wid.x, lid, params.m, LOWEST);
#endif
#endif
}
