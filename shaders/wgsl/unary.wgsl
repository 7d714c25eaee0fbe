// The elementwise unary ops' layout (gelu.wgsl, gelu_erf.wgsl, relu_sq.wgsl, xielu.wgsl, each
// appended to this file): dst[i] = op(x[i]) for i < n, `op` defined by the op's own file, with
// up to four constants `c` of its own (xielu's; zero for the others).

struct P {
    n: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
    c: vec4<f32>,
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
    dst[i] = op(x[i]);
}
