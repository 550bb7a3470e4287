// Workgroup reductions shared by kernels that reduce one f32 per invocation. The includer
// declares `const WG: u32` (its 1-D workgroup size, a power of two). Every function must be
// called from workgroup-uniform control flow; with SUBGROUPS the entry point first stores its
// `subgroup_invocation_id` and `subgroup_size` in `sg_lane` and `sg_size` (a preamble that
// each such entry point, and sample.wgsl's, writes out: WGSL entry points cannot share one).

var<workgroup> red: array<f32, WG>;
var<private> sg_lane: u32;
var<private> sg_size: u32;

// The maximum of `v` over the workgroup, returned to every invocation. Workgroup-uniform
// control flow only.
fn wg_max(v: f32, lid: u32) -> f32 {
#ifdef SUBGROUPS
    // Subgroups are taken to be consecutive runs of local_invocation_index, as on every
    // Vulkan, Metal and D3D12 implementation for 1-D workgroups.
    let s = subgroupMax(v);
    if (sg_lane == 0u) {
        red[lid / sg_size] = s;
    }
    workgroupBarrier();
    var m = red[0];
    for (var i = 1u; i < WG / sg_size; i++) {
        m = max(m, red[i]);
    }
    workgroupBarrier();
    return m;
#else
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red[lid] = max(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
    let m = red[0];
    workgroupBarrier();
    return m;
#endif
}

#ifdef SUBGROUPS
// The sum of `v` over the subgroup by a butterfly of shuffles: every lane ends with the same
// bits, added in an order fixed by the subgroup size alone. subgroupAdd's order is the
// implementation's, so the same kernel would round differently in Chrome and natively; with
// this, a browser and lavapipe with subgroups of the same size give identical sums (the
// browser tests compare their tokens exactly). `size` must be the entry point's subgroup_size
// builtin passed down: Tint's uniformity analysis follows a parameter back to it, while it takes
// a module-scope private (like sg_size) as non-uniform, and the shuffles need uniform control flow.
fn subgroup_sum(v: f32, size: u32) -> f32 {
    var s = v;
    for (var off = 1u; off < size; off <<= 1u) {
        s += subgroupShuffleXor(s, off);
    }
    return s;
}
#endif

// The sum of `v` over the workgroup, returned to every invocation. `size`: the subgroup_size
// builtin with SUBGROUPS (see subgroup_sum), unused otherwise.
fn wg_sum(v: f32, lid: u32, size: u32) -> f32 {
#ifdef SUBGROUPS
    let s = subgroup_sum(v, size);
    if (sg_lane == 0u) {
        red[lid / size] = s;
    }
    workgroupBarrier();
    var total = red[0];
    for (var i = 1u; i < WG / size; i++) {
        total += red[i];
    }
    workgroupBarrier();
    return total;
#else
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
#endif
}
