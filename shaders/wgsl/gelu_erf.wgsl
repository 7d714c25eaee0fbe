// gelu_erf: out[i] = x / 2 * erfc(-x / sqrt(2)), the exact GELU (GPT-NeoX's `gelu`). WGSL has
// no erf: erfc by Numerical Recipes' Chebyshev fit (`erfcc`: fractional error below 1.2e-7 in
// exact arithmetic, about 1e-6 with f32 rounding in the tail), whose tail keeps its relative
// accuracy where x is far below zero.

struct P {
    n: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

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

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n {
        return;
    }
    let v = x[i];
    dst[i] = 0.5 * v * erfc_f32(-v * 0.70710678);
}
