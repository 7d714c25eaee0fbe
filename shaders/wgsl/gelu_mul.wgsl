// gelu_mul: out[i] = gelu(gate[i]) * up[i] (GeGLU, Gemma's), GELU's tanh approximation as
// the equal g * sigmoid(2 sqrt(2/pi) (g + 0.044715 g^3)).

struct P {
    n: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n {
        return;
    }
    let g = gate[i];
    let z = 1.5957692 * (g + 0.044715 * g * g * g);
    // 0 where exp(-z) would overflow (WGSL leaves that value undefined): the CPU's g / inf
    // there, and below 1e-34 of the product from z = -80 on.
    dst[i] = select(g / (1.0 + exp(-z)) * up[i], 0.0, z < -80.0);
}
