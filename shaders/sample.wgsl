// Argmax and top-k over f32 logits `[n]`, ordered by (logit descending, id ascending), so ties
// go to the lowest id.
//
// Pass 1, `topk_partial`: one workgroup of 256 invocations per block of BLOCK = 2048 logits. Each
// invocation loads 8 logits (strided by 256, so loads are coalesced) and tracks the best one
// it has not yet handed out. M rounds of a workgroup arg-max (subgroupMax/subgroupMin plus a
// workgroup-memory step with SUBGROUPS, a shared-memory tree otherwise) each emit the
// workgroup's next best (id, logit) and let the winning invocation move to its next best:
// every block yields its top M (params.m; M = K for argmax), sorted, into `parts`.
// Argmax, pass 2 `topk_merge`: one workgroup takes the best of the ≤ 256 blocks' winners, one
// per invocation, with one more round of arg-max: a plain two-pass argmax.
//
// Top-k would need K rounds per block, each a workgroup reduction (barriers), for n_parts·K
// candidates competing for K places. So it prunes first, and merges by rank, not by rounds:
//   `topk_partial` with M about 2K / n_parts: each block emits only its top M;
//   `topk_threshold`: the K-th best of those candidates, T. There are K logits ≥ T, so no
//     logit below T can be among the top K;
//   `topk_pruned`: each block emits its best logits while they are ≥ T (at most K; a few rounds
//     where the top K are spread over the blocks), then end markers to the end of its list;
//   `topk_merge`: every candidate in the lists finds its rank, the number of candidates ranked
//     before it, by a binary search in each sorted list; ranks < K are written to out[rank].
//     One invocation per candidate, no barriers.
// `topk_threshold` ranks the same way (its candidate of rank K - 1 is T). A round costs a GPU
// a few barriers, and lavapipe a pass over all 256 invocations per barrier: the 2K rounds this
// replaced cost a decode step of SmolLM2 a quarter of its time there.
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
    var emitted = k;
    for (var r = 0u; r < k; r++) {
        let w = wg_best(bv, bi, lid);
        // Every invocation holds the same w, but it came through workgroup memory: the uniform
        // load lets the loop leave in uniform control flow.
        if (lid == 0u) {
            win_sh = bitcast<f32>(w.x);
        }
        if (workgroupUniformLoad(&win_sh) < t) {
            emitted = r;
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
    // The rest of the list is end markers, so the merge's binary searches see a sorted list.
    if (lid >= emitted && lid < k) {
        parts[blk * k + lid] = vec2<u32>(NONE, bitcast<u32>(LOWEST));
    }
}

// The rank of the candidate `c` (id, logit bits) among all the lists of `stride` entries in
// `parts`: how many entries rank before it, each list sorted with end markers after its last.
fn rank_in_lists(c: vec2<u32>, stride: u32) -> u32 {
    let cv = bitcast<f32>(c.y);
    var rank = 0u;
    for (var b = 0u; b < params.n_parts; b++) {
        var lo = 0u;
        var hi = stride;
        while (lo < hi) {
            let mid = (lo + hi) / 2u;
            let e = parts[b * stride + mid];
            if (better(bitcast<f32>(e.y), e.x, cv, c.x)) {
                lo = mid + 1u;
            } else {
                hi = mid;
            }
        }
        rank += lo;
    }
    return rank;
}

// Argmax's merge: the best of the blocks' winners, one per invocation, into out[0].
fn merge_winners(lid: u32) {
    var v = LOWEST;
    var i = NONE;
    if (lid < params.n_parts) {
        let e = parts[lid];
        v = bitcast<f32>(e.y);
        i = e.x;
    }
    let w = wg_best(v, i, lid);
    if (lid == 0u) {
        out[0] = w.y;
    }
}

// Every pass is this entry point, compiled per pass:
// - `topk_partial`: one block's top M (K for argmax);
// - `topk_pruned` (PRUNED): one block's logits ≥ the threshold T, at most K;
// - `topk_threshold` (MERGE, THRESHOLD): the K-th best of the blocks' top M, T, into `thresh`;
// - `topk_merge` (MERGE): the blocks' sorted lists ranked into the top K, into `out` (argmax:
//   the blocks' winners merged).
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
    // Fewer than K candidates leave rank K - 1 empty: T = LOWEST, nothing is pruned.
    if (lid == 0u) {
        t_sh = LOWEST;
    }
    workgroupBarrier();
    for (var c = lid; c < params.n_parts * params.m; c += WG) {
        let e = parts[c];
        if (e.x != NONE && rank_in_lists(e, params.m) == params.k - 1u) {
            t_sh = bitcast<f32>(e.y);
        }
    }
    workgroupBarrier();
    if (lid == 0u) {
        thresh[0] = bitcast<u32>(t_sh);
    }
#else
#ifdef ARGMAX
    merge_winners(lid);
#else
    // One candidate per invocation; candidates past a list's K-th cannot rank below K.
    let c = wid.x * WG + lid;
    if (c < params.n_parts * params.k) {
        let e = parts[c];
        if (e.x != NONE) {
            let rank = rank_in_lists(e, params.k);
            if (rank < params.k) {
                out[2u * rank] = e.x;
                out[2u * rank + 1u] = e.y;
            }
        }
    }
#endif
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

// The seeded draw after top-k, on the device so that a sampled step, like a greedy one, leaves
// its token where the next step's embedding can copy it from without a round trip to the host.
// It mirrors the host's draw (src/decode/sampling.rs `pick`) step for step, in f32 where the host
// uses f64: top-p over the candidates' probabilities at temperature 1, then min-p relative to the
// most likely, then the pick at `r` over the kept candidates at the temperature. The two choose
// the same token unless `r`, or a top-p or min-p cut, falls within rounding of a boundary.
// One invocation: at most 64 candidates, two exponentials each.
struct DrawParams {
    // Candidates kept by top-k, 1 ≤ k ≤ the top-k list's length.
    k: u32,
    temperature: f32,
    top_p: f32,
    min_p: f32,
    // Uniform in [0, 1): the sampler's random number for this step.
    r: f32,
}

// The top-k list (`out` of `topk_merge`): K pairs (id, logit bits), best first.
@group(0) @binding(5) var<storage, read> top: array<vec2<u32>>;
// The drawn id, where the argmax writes its own.
@group(0) @binding(6) var<storage, read_write> token: array<u32>;
@group(0) @binding(7) var<uniform> draw_params: DrawParams;

fn top_logit(i: u32) -> f32 {
    return bitcast<f32>(top[i].y);
}

@compute @workgroup_size(1)
fn draw() {
    let k = draw_params.k;
    let best = top_logit(0u);
    var sum = 0.0;
    for (var i = 0u; i < k; i++) {
        sum += exp(top_logit(i) - best);
    }
    var keep = k;
    if (draw_params.top_p < 1.0) {
        var cum = 0.0;
        for (var i = 0u; i < k; i++) {
            cum += exp(top_logit(i) - best) / sum;
            if (cum >= draw_params.top_p) {
                keep = i + 1u;
                break;
            }
        }
    }
    if (draw_params.min_p > 0.0) {
        // The most likely token's probability is 1 / sum.
        let floor = (1.0 / sum) * draw_params.min_p;
        var n = 0u;
        while (n < k && exp(top_logit(n) - best) / sum >= floor) {
            n++;
        }
        keep = min(keep, max(n, 1u));
    }
    let t = max(draw_params.temperature, 1e-6);
    var sum_t = 0.0;
    for (var i = 0u; i < keep; i++) {
        sum_t += exp((top_logit(i) - best) / t);
    }
    var pick = top[keep - 1u].x;
    var cum = 0.0;
    for (var i = 0u; i < keep; i++) {
        cum += exp((top_logit(i) - best) / t) / sum_t;
        if (draw_params.r < cum) {
            pick = top[i].x;
            break;
        }
    }
    token[0] = pick;
}
