// The feed-forward gate (model::Gate), applied to the gate projection before it multiplies the
// up projection: SiLU, or with GELU ggml's tanh-approximated GELU. Every kernel that forms the
// gated product includes this, so each computes it in the CPU reference's operation order.
// tanh's argument is clamped to ±10 (where tanh is 1 to f32 precision already): a tanh built
// from exp overflows to inf / inf past ±44 on some GPUs.

fn gate4(v: vec4<f32>) -> vec4<f32> {
#ifdef GELU
    let a = 0.7978846 * v * (vec4<f32>(1.0) + 0.044715 * v * v);
    return 0.5 * v * (vec4<f32>(1.0) + tanh(clamp(a, vec4<f32>(-10.0), vec4<f32>(10.0))));
#else
    return v / (vec4<f32>(1.0) + exp(-v));
#endif
}
