// gelu: out[i] = gelu(x[i]), the ungated feed-forward activation (StarCoder2's, Phi-2's), GELU's
// tanh approximation as gelu_mul.wgsl computes it (x * sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3))).

struct P {
    n: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n {
        return;
    }
    let g = x[i];
    let z = 1.5957692 * (g + 0.044715 * g * g * g);
    // 0 where exp(-z) would overflow (WGSL leaves that value undefined), as gelu_mul.wgsl.
    dst[i] = select(g / (1.0 + exp(-z)), 0.0, z < -80.0);
}
