// rms_norm: out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w[r % w_rows, :]; one workgroup
// per row. w_rows: 1, or the heads where each head has a weight of its own.

struct P {
    rows: u32,
    dim: u32,
    eps: f32,
    w_rows: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = wid.x + wid.y * nwg.x;
    if r >= p.rows {
        return;
    }
    let base = r * p.dim;
    var ss = 0.0;
    for (var d = lid; d < p.dim; d += 256u) {
        let v = x[base + d];
        ss += v * v;
    }
    red[lid] = ss;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if lid < s {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let inv = 1.0 / sqrt(red[0] / f32(p.dim) + p.eps);
    let wbase = (r % p.w_rows) * p.dim;
    for (var d = lid; d < p.dim; d += 256u) {
        dst[base + d] = x[base + d] * inv * w[wbase + d];
    }
}
