// gelu: out[i] = gelu(x[i]), the ungated feed-forward activation (StarCoder2's, Phi-2's, GPT-J's),
// GELU's tanh approximation as gelu_mul.wgsl computes it (x * sigmoid(2 sqrt(2/pi) (x + 0.044715
// x^3))). Appended to unary.wgsl, which calls `op`.

fn op(g: f32) -> f32 {
    let z = 1.5957692 * (g + 0.044715 * g * g * g);
    // 0 where exp(-z) would overflow (WGSL leaves that value undefined), as gelu_mul.wgsl.
    return select(g / (1.0 + exp(-z)), 0.0, z < -80.0);
}
