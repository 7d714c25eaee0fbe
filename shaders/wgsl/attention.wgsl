// attention: causal GQA over the KV cache ([slots, capacity, n_kv_heads * head_dim]).
// `store_kv` writes the step's K/V at each token's (slot, position); `attend` then runs one
// workgroup per (head, token) over positions start..=pos (start = pos + 1 - window with a
// sliding window, else 0) in chunks of 64 with an online softmax. Scores are `q.k * scale`,
// soft-capped as `softcap * tanh(s / softcap)` where `softcap > 0` (Gemma 2).

struct P {
    n_tokens: u32,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    capacity: u32,
    pos_off: u32,
    slot_off: u32,
    scale: f32,
    window: u32,
    // Gemma 2's soft cap of the scaled scores (0: none).
    softcap: f32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(5) var<storage, read_write> v_cache: array<f32>;
@group(0) @binding(6) var<storage, read> plan: array<u32>;
@group(0) @binding(7) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn store_kv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let kv_dim = p.n_kv_heads * p.head_dim;
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n_tokens * kv_dim {
        return;
    }
    let t = i / kv_dim;
    let at = (plan[p.slot_off + t] * p.capacity + plan[p.pos_off + t]) * kv_dim + i % kv_dim;
    k_cache[at] = k[i];
    v_cache[at] = v[i];
}

const CH: u32 = 64u;
// Lowest finite f32: a -inf stand-in that keeps exp(m - m_new) NaN-free.
const NEG: f32 = -3.4028235e38;

var<workgroup> qs: array<f32, 256>;
var<workgroup> probs: array<f32, CH>;
var<workgroup> red: array<f32, CH>;

fn reduce_max(lid: u32) {
    for (var s = CH / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            red[lid] = max(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
}

fn reduce_sum(lid: u32) {
    for (var s = CH / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(64)
fn attend(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let t = wid.y;
    let hd = p.head_dim;
    let kv_dim = p.n_kv_heads * hd;
    let kvh = h / (p.n_heads / p.n_kv_heads);
    let n = plan[p.pos_off + t] + 1u;
    // A sliding window starts `start` positions in; `base` and `n` then cover only the window.
    var start = 0u;
    if p.window > 0u && n > p.window {
        start = n - p.window;
    }
    let base = plan[p.slot_off + t] * p.capacity + start;
    let n_win = n - start;
    let qbase = (t * p.n_heads + h) * hd;
    for (var d = lid; d < hd; d += CH) {
        qs[d] = q[qbase + d];
    }
    workgroupBarrier();
    var m = NEG;
    var l = 0.0;
    var acc: array<f32, 4>;
    for (var p0 = 0u; p0 < n_win; p0 += CH) {
        let pp = p0 + lid;
        var s = NEG;
        if pp < n_win {
            let at = (base + pp) * kv_dim + kvh * hd;
            var sd = 0.0;
            for (var d = 0u; d < hd; d++) {
                sd = fma(qs[d], k_cache[at + d], sd);
            }
            s = sd * p.scale;
            if p.softcap > 0.0 {
                // tanh.wgsl's tanh_f32 (appended), as softcap.wgsl.
                s = p.softcap * tanh_f32(s / p.softcap);
            }
        }
        red[lid] = s;
        workgroupBarrier();
        reduce_max(lid);
        let m_new = max(m, red[0]);
        let corr = exp(m - m_new);
        workgroupBarrier();
        var e = 0.0;
        if pp < n_win {
            e = exp(s - m_new);
        }
        probs[lid] = e;
        red[lid] = e;
        workgroupBarrier();
        reduce_sum(lid);
        l = l * corr + red[0];
        let cnt = min(CH, n_win - p0);
        for (var j = 0u; j < 4u; j++) {
            acc[j] *= corr;
        }
        for (var i = 0u; i < cnt; i++) {
            let at = (base + p0 + i) * kv_dim + kvh * hd;
            let pr = probs[i];
            for (var j = 0u; j < 4u; j++) {
                let d = lid + j * CH;
                if d < hd {
                    acc[j] = fma(pr, v_cache[at + d], acc[j]);
                }
            }
        }
        m = m_new;
        workgroupBarrier();
    }
    for (var j = 0u; j < 4u; j++) {
        let d = lid + j * CH;
        if d < hd {
            dst[qbase + d] = acc[j] / l;
        }
    }
}
