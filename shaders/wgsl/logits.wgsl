// logits, first half: gathers the step's logit rows of x and applies the final RMSNorm into a
// scratch [n, hidden]; the lm_head product then runs through matmul.wgsl (whose f16-weight
// variant serves an f16 lm_head; the final norm's weights here stay f32).

struct P {
    n_rows: u32,
    hidden: u32,
    eps: f32,
    rows_off: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> plan: array<u32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn gather_norm(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = wid.x + wid.y * nwg.x;
    if i >= p.n_rows {
        return;
    }
    let src = plan[p.rows_off + i] * p.hidden;
    var ss = 0.0;
    for (var d = lid; d < p.hidden; d += 256u) {
        let v = x[src + d];
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
    let inv = 1.0 / sqrt(red[0] / f32(p.hidden) + p.eps);
    for (var d = lid; d < p.hidden; d += 256u) {
        dst[i * p.hidden + d] = x[src + d] * inv * w[d];
    }
}
