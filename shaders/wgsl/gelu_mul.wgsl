// gelu_mul: out[i] = gelu(gate[i]) * up[i] (GeGLU, Gemma's), GELU's tanh approximation as
// the equal g * sigmoid(2 sqrt(2/pi) (g + 0.044715 g^3)). Appended to gated.wgsl, which calls
// `op`.

fn op(g: f32, u: f32) -> f32 {
    let z = 1.5957692 * (g + 0.044715 * g * g * g);
    // 0 where exp(-z) would overflow (WGSL leaves that value undefined): the CPU's g / inf
    // there, and below 1e-34 of the product from z = -80 on.
    return select(g / (1.0 + exp(-z)) * u, 0.0, z < -80.0);
}
