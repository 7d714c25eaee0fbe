// scale: x[i] *= s (Gemma's embedding scale), over in_place.wgsl.

fn op(v: f32) -> f32 {
    return v * p.s;
}
