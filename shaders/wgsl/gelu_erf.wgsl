// gelu_erf: out[i] = x / 2 * erfc(-x / sqrt(2)), the exact GELU (GPT-NeoX's and Falcon's
// `gelu`). WGSL has no erf: erfc by Numerical Recipes' Chebyshev fit (`erfcc`: fractional error
// below 1.2e-7 in exact arithmetic, about 1e-6 with f32 rounding in the tail), whose tail keeps
// its relative accuracy where x is far below zero. Appended to unary.wgsl, which calls `op`.

fn erfc_f32(v: f32) -> f32 {
    let z = abs(v);
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
        + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
        + t * (-0.82215223 + t * 0.17087277))))))));
    // exp of below -88 underflows to 0 (WGSL leaves exp's overflow, not its underflow, open).
    let r = select(t * exp(poly), 0.0, poly < -87.0);
    return select(2.0 - r, r, v >= 0.0);
}

fn op(v: f32) -> f32 {
    return 0.5 * v * erfc_f32(-v * 0.70710678);
}
