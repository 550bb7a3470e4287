// Element-wise kernels on f32 activations `[n_tokens][width]`: residual add and the gated
// product of the feed-forward block (SwiGLU, or GeGLU with GELU: gate.wgsl).
// Activations stay f32 in every variant; only weights and the KV cache change precision.

#include "gate.wgsl"

struct Params {
    width: u32,
}

struct Step {
    n_tokens: u32,
    pos: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;
@group(0) @binding(3) var<uniform> step: Step;

// x += y
@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i < params.width * step.n_tokens) {
        x[i] = x[i] + y[i];
    }
}

// x = gate(x) * y  (x is the gate projection, y the up projection)
@compute @workgroup_size(256)
fn glu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i < params.width * step.n_tokens) {
        x[i] = gate4(vec4<f32>(x[i])).x * y[i];
    }
}
