// The in-place elementwise ops' layout (scale.wgsl, clamp.wgsl, softcap.wgsl, each appended to
// this file): x[i] = op(x[i]) for i < n, `op` defined by the op's own file, reading the op's one
// constant `p.s` (the scale's factor, the clamp's limit, the soft cap).

struct P {
    n: u32,
    s: f32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n {
        return;
    }
    x[i] = op(x[i]);
}
