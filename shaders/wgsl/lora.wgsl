// lora: the fused multi-LoRA pair over the segment table, one dispatch each for the batch.
// Per slot, `slot_tab` holds [row offset, rank, bitcast(scale)]; rank 0 means the slot does not
// target this module. A token's mixture is `mix_slots/mix_weights[segment * K + k]`.

struct P {
    n_tokens: u32,
    mix_k: u32,
    max_rank: u32,
    in_dim: u32,
    out_dim: u32,
    n_slots: u32,
    n_segments: u32,
    seg_off: u32,
    mslot_off: u32,
    mw_off: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> bt: array<f32>;
@group(0) @binding(4) var<storage, read> slot_tab: array<u32>;
@group(0) @binding(5) var<storage, read> plan: array<u32>;
@group(0) @binding(6) var<storage, read_write> u_out: array<f32>;
@group(0) @binding(7) var<storage, read> u_in: array<f32>;
@group(0) @binding(8) var<storage, read_write> y: array<f32>;

struct Entry {
    off: u32,
    rank: u32,
    ws: f32,
}

// Entry k of token t: row offset, rank (0 when unused) and weight * scale.
fn entry(t: u32, k: u32) -> Entry {
    let seg = plan[p.seg_off + t];
    if seg >= p.n_segments {
        return Entry(0u, 0u, 0.0);
    }
    let slot = plan[p.mslot_off + seg * p.mix_k + k];
    if slot >= p.n_slots {
        return Entry(0u, 0u, 0.0);
    }
    let ws = bitcast<f32>(plan[p.mw_off + seg * p.mix_k + k]) * bitcast<f32>(slot_tab[3u * slot + 2u]);
    return Entry(slot_tab[3u * slot], slot_tab[3u * slot + 1u], ws);
}

var<workgroup> red: array<f32, 64>;

// u[t, k, j] = w * scale * dot(A[off + j], x[t]); one workgroup per (k, t).
@compute @workgroup_size(64)
fn shrink(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let k = wid.x;
    let t = wid.y;
    let e = entry(t, k);
    let off = e.off;
    let rank = e.rank;
    let xb = t * p.in_dim;
    for (var j = 0u; j < rank; j++) {
        let ab = (off + j) * p.in_dim;
        var s = 0.0;
        for (var d = lid; d < p.in_dim; d += 64u) {
            s = fma(a[ab + d], x[xb + d], s);
        }
        red[lid] = s;
        workgroupBarrier();
        for (var st = 32u; st > 0u; st >>= 1u) {
            if lid < st {
                red[lid] += red[lid + st];
            }
            workgroupBarrier();
        }
        if lid == 0u {
            u_out[(t * p.mix_k + k) * p.max_rank + j] = e.ws * red[0];
        }
        workgroupBarrier();
    }
}

// y[t, o] += sum_k sum_j u[t, k, j] * B[o, j]; one thread per (o, t).
@compute @workgroup_size(64)
fn expand(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let o = wid.x * 64u + lid;
    let t = wid.y;
    if o >= p.out_dim {
        return;
    }
    var acc = 0.0;
    for (var k = 0u; k < p.mix_k; k++) {
        let e = entry(t, k);
        let off = e.off;
        let rank = e.rank;
        for (var j = 0u; j < rank; j++) {
            acc = fma(u_in[(t * p.mix_k + k) * p.max_rank + j], bt[(off + j) * p.out_dim + o], acc);
        }
    }
    y[t * p.out_dim + o] += acc;
}
