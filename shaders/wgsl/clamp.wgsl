// clamp: x[i] = min(max(x[i], -limit), limit), limit = s > 0 (OLMo's clip_qkv), over
// in_place.wgsl. By comparisons, not the builtin `clamp`, so that a NaN, which fails both, is
// returned as it is where the implementation keeps NaNs at all (WGSL lets it assume there are
// none).

fn op(v: f32) -> f32 {
    if v < -p.s {
        return -p.s;
    }
    if v > p.s {
        return p.s;
    }
    return v;
}
