// matmul: out[rows, n] = x[rows, k] @ W^T (+ bias), for one row block of W (output columns
// n_off .. n_off + n_blk); the weight may be split into blocks to respect binding limits.
//
// `tiled`: 64x64 output tile per workgroup of 16x16 threads, each thread a 4x4 register tile,
// K streamed through workgroup memory in slices of 16. The host substitutes TM (rows per
// thread) for its variants. `gemv`: few rows (decode); 32 lanes per output column reduce along
// K, with the rows of x staged in workgroup memory.
//
// WT is the weights' storage type: the host builds an f16-weight variant by substituting
// `alias WT = f16;` (and `enable f16;`). Each weight is widened to f32 where it is read;
// everything else stays f32.

struct P {
    rows: u32,
    k: u32,
    n: u32,
    n_off: u32,
    n_blk: u32,
    has_bias: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<WT>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

alias WT = f32;

const TM: u32 = 4u;
const TN: u32 = 4u;
const BM: u32 = 16u * TM;
const BN: u32 = 16u * TN;
const BK: u32 = 16u;

var<workgroup> xs: array<f32, 1024>; // [BK][BM]
var<workgroup> ws: array<f32, 1024>; // [BK][BN]

fn store(r: u32, c: u32, v: f32) {
    if r < p.rows && c < p.n_blk {
        var o = v;
        if p.has_bias != 0u {
            o += bias[p.n_off + c];
        }
        dst[r * p.n + p.n_off + c] = o;
    }
}

@compute @workgroup_size(16, 16)
fn tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let tx = lid3.x;
    let ty = lid3.y;
    let li = ty * 16u + tx;
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    var acc: array<f32, 16>;
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        for (var e = 0u; e < BM * BK / 256u; e++) {
            let idx = li + e * 256u;
            let r = idx / BK;
            let gk = k0 + idx % BK;
            var v = 0.0;
            if row0 + r < p.rows && gk < p.k {
                v = x[(row0 + r) * p.k + gk];
            }
            xs[(idx % BK) * BM + r] = v;
        }
        for (var e = 0u; e < BN * BK / 256u; e++) {
            let idx = li + e * 256u;
            let c = idx / BK;
            let gk = k0 + idx % BK;
            var v = 0.0;
            if col0 + c < p.n_blk && gk < p.k {
                v = f32(w[(col0 + c) * p.k + gk]);
            }
            ws[(idx % BK) * BN + c] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var a: array<f32, TM>;
            var b: array<f32, TN>;
            for (var i = 0u; i < TM; i++) {
                a[i] = xs[kk * BM + ty + 16u * i];
            }
            for (var j = 0u; j < TN; j++) {
                b[j] = ws[kk * BN + tx + 16u * j];
            }
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TN; j++) {
                    acc[i * TN + j] = fma(a[i], b[j], acc[i * TN + j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN; j++) {
            store(row0 + ty + 16u * i, col0 + tx + 16u * j, acc[i * TN + j]);
        }
    }
}

// gemv: up to GR rows of x against 8 output columns per workgroup.
const GR: u32 = 4u;
var<workgroup> xrow: array<f32, 1024>; // [GR][256]
var<workgroup> red: array<f32, 1024>; // [GR][256]

@compute @workgroup_size(256)
fn gemv(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let lane = lid % 32u;
    let col = (wid.x + wid.y * nwg.x) * 8u + lid / 32u;
    var acc: array<f32, GR>;
    for (var k0 = 0u; k0 < p.k; k0 += 256u) {
        for (var r = 0u; r < GR; r++) {
            var v = 0.0;
            if r < p.rows && k0 + lid < p.k {
                v = x[r * p.k + k0 + lid];
            }
            xrow[r * 256u + lid] = v;
        }
        workgroupBarrier();
        if col < p.n_blk {
            let kend = min(256u, p.k - k0);
            for (var kk = lane; kk < kend; kk += 32u) {
                let wv = f32(w[col * p.k + k0 + kk]);
                for (var r = 0u; r < GR; r++) {
                    // Only the step's rows (uniform): a batch-1 decode reads one row of
                    // xrow per weight, not four. (Guarding the staging and the reduction as
                    // well made the tiny fixtures' runs on lavapipe 4x slower, at 3.6 GB.)
                    if r < p.rows {
                        acc[r] = fma(wv, xrow[r * 256u + kk], acc[r]);
                    }
                }
            }
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < GR; r++) {
        red[r * 256u + lid] = acc[r];
    }
    workgroupBarrier();
    for (var s = 16u; s > 0u; s >>= 1u) {
        if lane < s {
            for (var r = 0u; r < GR; r++) {
                red[r * 256u + lid] += red[r * 256u + lid + s];
            }
        }
        workgroupBarrier();
    }
    if lane == 0u {
        for (var r = 0u; r < GR; r++) {
            store(r, col, red[r * 256u + lid]);
        }
    }
}
