// xielu: out[i] = xIELU(x[i]) with one layer's constants (Apertus's ungated activation; Huang
// et al. 2024, arXiv 2411.13010): alpha_p * x * x + beta * x for x > 0, else
// (expm1(min(x, eps)) - x) * alpha_n + beta * x, alpha_p and alpha_n through their softplus
// already (the host's `Xielu`), as `p.c` = (alpha_p, alpha_n, beta, eps). Appended to
// unary.wgsl, which calls `op`.

// expm1(m) for m <= 0 (min(x, eps) of an x <= 0). WGSL has no expm1, and exp(m) - 1 loses
// m's digits near 0 (eps is -1e-6): Taylor's series to m^9 over [-0.5, 0] (truncation below
// 1e-9 relative), exp(m) - 1 below it, where nothing cancels; -1 where exp underflows (WGSL
// leaves exp's underflow open).
fn expm1_neg(m: f32) -> f32 {
    if m < -87.0 {
        return -1.0;
    }
    if m < -0.5 {
        return exp(m) - 1.0;
    }
    let s = 1.0 + m / 9.0;
    let s8 = 1.0 + m / 8.0 * s;
    let s7 = 1.0 + m / 7.0 * s8;
    let s6 = 1.0 + m / 6.0 * s7;
    let s5 = 1.0 + m / 5.0 * s6;
    let s4 = 1.0 + m / 4.0 * s5;
    let s3 = 1.0 + m / 3.0 * s4;
    let s2 = 1.0 + m / 2.0 * s3;
    return m * s2;
}

fn op(v: f32) -> f32 {
    let alpha_p = p.c.x;
    let alpha_n = p.c.y;
    let beta = p.c.z;
    if v > 0.0 {
        return alpha_p * v * v + beta * v;
    }
    return (expm1_neg(min(v, p.c.w)) - v) * alpha_n + beta * v;
}
