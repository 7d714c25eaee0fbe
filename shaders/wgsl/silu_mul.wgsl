// silu_mul: out[i] = silu(gate[i]) * up[i] (SwiGLU). Appended to gated.wgsl, which calls `op`.

fn op(g: f32, u: f32) -> f32 {
    return g / (1.0 + exp(-g)) * u;
}
