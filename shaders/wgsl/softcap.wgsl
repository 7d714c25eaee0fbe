// softcap: x[i] = cap * tanh(x[i] / cap) (Gemma 2's final logit soft cap), by `tanh_f32`
// (tanh.wgsl, appended: a small relative error at every cap; a NaN stays NaN, as on the CPU
// and CUDA).

struct P {
    n: u32,
    cap: f32,
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
    x[i] = p.cap * tanh_f32(x[i] / p.cap);
}
