// relu_sq: out[i] = max(x, 0)^2, the squared ReLU (Arcee's and Nemotron's `relu2`), NaN kept
// (`x <= 0` is false for NaN, which then squares to NaN). Appended to unary.wgsl, which calls
// `op`.

fn op(v: f32) -> f32 {
    return select(v * v, 0.0, v <= 0.0);
}
