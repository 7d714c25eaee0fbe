// center: x[r, :] -= mean(x[r, :]) in place (LayerNorm's centering; the RMSNorm that reads the
// result completes it); one workgroup per row.

struct P {
    rows: u32,
    dim: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

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
    var s = 0.0;
    for (var d = lid; d < p.dim; d += 256u) {
        s += x[base + d];
    }
    red[lid] = s;
    workgroupBarrier();
    for (var h = 128u; h > 0u; h >>= 1u) {
        if lid < h {
            red[lid] += red[lid + h];
        }
        workgroupBarrier();
    }
    let mean = red[0] / f32(p.dim);
    for (var d = lid; d < p.dim; d += 256u) {
        x[base + d] = x[base + d] - mean;
    }
}
