// clamp: x[i] = min(max(x[i], -limit), limit), limit > 0 (OLMo's clip_qkv). By comparisons,
// not the builtin `clamp`, so that a NaN, which fails both, is left as it is where the
// implementation keeps NaNs at all (WGSL lets it assume there are none).

struct P {
    n: u32,
    limit: f32,
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
    let v = x[i];
    if v < -p.limit {
        x[i] = -p.limit;
    } else if v > p.limit {
        x[i] = p.limit;
    }
}
