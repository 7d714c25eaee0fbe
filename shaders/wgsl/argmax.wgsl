// argmax: each logit row's greedy pick, the sampler's greedy rule: out[r] = the index of row
// r's first maximum, or -1 when the row holds a NaN or no usable logit (all -inf). One
// workgroup per row. The logits are read as bits and compared as order-preserving u32 keys,
// so no float rule of the driver (WGSL may assume NaN and infinities absent) moves a pick:
// +inf counts as f32 max, -0.0 as +0.0, and a NaN's key beats every other, refusing the row.

struct P {
    rows: u32,
    vocab: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> logits: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

const NAN_KEY: u32 = 0xffffffffu;
// The key of -inf: a row whose best key is this has no usable logit.
const NEG_INF_KEY: u32 = 0x007fffffu;

var<workgroup> red_key: array<u32, 256>;
var<workgroup> red_idx: array<u32, 256>;

fn key(b: u32) -> u32 {
    let mag = b & 0x7fffffffu;
    if mag > 0x7f800000u {
        return NAN_KEY;
    }
    if b == 0x7f800000u {
        return 0xff7fffffu; // +inf as f32 max
    }
    if b == 0x80000000u {
        return 0x80000000u; // -0.0 as +0.0
    }
    if (b >> 31u) == 1u {
        return ~b;
    }
    return b | 0x80000000u;
}

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
    let base = r * p.vocab;
    var best = 0u;
    var at = 0xffffffffu;
    // Indices rise along a lane's stride, so a strictly greater key keeps the first maximum.
    for (var i = lid; i < p.vocab; i += 256u) {
        let k = key(logits[base + i]);
        if k > best {
            best = k;
            at = i;
        }
    }
    red_key[lid] = best;
    red_idx[lid] = at;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if lid < s {
            let k = red_key[lid + s];
            let i = red_idx[lid + s];
            if k > red_key[lid] || (k == red_key[lid] && i < red_idx[lid]) {
                red_key[lid] = k;
                red_idx[lid] = i;
            }
        }
        workgroupBarrier();
    }
    if lid == 0u {
        let k = red_key[0];
        if k == NAN_KEY || k <= NEG_INF_KEY {
            dst[r] = -1.0;
        } else {
            dst[r] = f32(red_idx[0]);
        }
    }
}
