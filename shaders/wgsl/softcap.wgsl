// softcap: x[i] = cap * tanh(x[i] / cap), cap = s (Gemma 2's final logit soft cap), over
// in_place.wgsl, by `tanh_f32` (tanh.wgsl, appended: a small relative error at every cap; a
// NaN stays NaN, as on the CPU and CUDA).

fn op(v: f32) -> f32 {
    return p.s * tanh_f32(v / p.s);
}
