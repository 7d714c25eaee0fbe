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
    let mean = row_sum(lid, s) / f32(p.dim);
    // A second pass over what is left (f32 sums, where the CPU's and CUDA's are f64): a row far
    // from zero on average loses digits of its mean in the first, which this recovers.
    var rest = 0.0;
    for (var d = lid; d < p.dim; d += 256u) {
        rest += x[base + d] - mean;
    }
    let left = row_sum(lid, rest) / f32(p.dim);
    for (var d = lid; d < p.dim; d += 256u) {
        x[base + d] = (x[base + d] - mean) - left;
    }
}

// The workgroup's sum of `v` (every invocation's), in every invocation.
fn row_sum(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var h = 128u; h > 0u; h >>= 1u) {
        if lid < h {
            red[lid] += red[lid + h];
        }
        workgroupBarrier();
    }
    let total = red[0];
    // Everyone has read it before the next call writes red again.
    workgroupBarrier();
    return total;
}
