// matmul: out[rows, n] = x[rows, k] @ W^T (+ bias), for one row block of W (output columns
// n_off .. n_off + n_blk); the weight may be split into blocks to respect binding limits.
//
// `tiled`: a BM x 64 output tile per workgroup of 8x8 invocations, each a TM x 8 register tile
// (rows ty + 8i, columns tx + 8j) in named vec4 accumulators; K streamed through workgroup
// memory in slices of 16. The host substitutes TM (2 or 8 rows per invocation) for its
// variants. `gemv`: few rows (decode); each 32 lanes reduce 4 output columns along K.
//
// Why this shape: every value a shader loads costs the same on lavapipe (Mesa's Vulkan CPU
// driver, which CI runs) whatever its address space, and an indexed private array is memory
// there; 8x8 tiles in named accumulators load a quarter value per FMA (TM = 8; the 4x4 tiles
// in an array before: half, plus the array), and a gemv lane's x values serve 4 columns. Measured
// on lavapipe (2 cores) against the kernels before: prefill products 1.9x, decode 4.2x faster.
// On GPUs both are the usual shapes (64x64 tiles of 8x8; several rows per warp, no barrier in
// the K loop).
//
// WT is the weights' storage type: the host builds an f16-weight variant by substituting
// `alias WT = f16;` (and `enable f16;`), and a quantised one (a GGUF's blocks as scale-offset
// groups, `weight_groups.wgsl`) by typing WT u32 and putting that file's reader in place of
// `fn wval`. Each weight is widened to f32 where it is read; everything else stays f32.

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
fn wval(i: u32) -> f32 { return f32(w[i]); }

const TM: u32 = 8u;
const BM: u32 = 8u * TM;
const BN: u32 = 64u;
const BK: u32 = 16u;

var<workgroup> xs: array<f32, 1024>; // [BK][BM]
var<workgroup> ws: array<f32, 1024>; // [BK][BN]

fn store1(r: u32, c: u32, v: f32) {
    if r < p.rows && c < p.n_blk {
        var o = v;
        if p.has_bias != 0u {
            o += bias[p.n_off + c];
        }
        dst[r * p.n + p.n_off + c] = o;
    }
}

/// Output row r, columns c and c + 32.
fn store(r: u32, c: u32, lo: f32, hi: f32) {
    store1(r, c, lo);
    store1(r, c + 32u, hi);
}

@compute @workgroup_size(8, 8)
fn tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let tx = lid3.x;
    let ty = lid3.y;
    let li = ty * 8u + tx;
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    // c(2i) holds row ty + 8i at columns tx + {0, 8, 16, 24}; c(2i+1) at tx + {32, ..., 56}.
    var c0 = vec4<f32>();
    var c1 = vec4<f32>();
    var c2 = vec4<f32>();
    var c3 = vec4<f32>();
    var c4 = vec4<f32>();
    var c5 = vec4<f32>();
    var c6 = vec4<f32>();
    var c7 = vec4<f32>();
    var c8 = vec4<f32>();
    var c9 = vec4<f32>();
    var c10 = vec4<f32>();
    var c11 = vec4<f32>();
    var c12 = vec4<f32>();
    var c13 = vec4<f32>();
    var c14 = vec4<f32>();
    var c15 = vec4<f32>();
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        for (var e = 0u; e < BM * BK / 64u; e++) {
            let idx = li + e * 64u;
            let r = idx / BK;
            let gk = k0 + idx % BK;
            var v = 0.0;
            if row0 + r < p.rows && gk < p.k {
                v = x[(row0 + r) * p.k + gk];
            }
            xs[(idx % BK) * BM + r] = v;
        }
        for (var e = 0u; e < BN * BK / 64u; e++) {
            let idx = li + e * 64u;
            let c = idx / BK;
            let gk = k0 + idx % BK;
            var v = 0.0;
            if col0 + c < p.n_blk && gk < p.k {
                v = wval((col0 + c) * p.k + gk);
            }
            ws[(idx % BK) * BN + c] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let xo = kk * BM + ty;
            let wo = kk * BN + tx;
            let b0 = vec4(ws[wo], ws[wo + 8u], ws[wo + 16u], ws[wo + 24u]);
            let b1 = vec4(ws[wo + 32u], ws[wo + 40u], ws[wo + 48u], ws[wo + 56u]);
            let a0 = vec4(xs[xo]);
            c0 = fma(a0, b0, c0);
            c1 = fma(a0, b1, c1);
            let a1 = vec4(xs[xo + 8u]);
            c2 = fma(a1, b0, c2);
            c3 = fma(a1, b1, c3);
            if TM == 8u {
                let a2 = vec4(xs[xo + 16u]);
                c4 = fma(a2, b0, c4);
                c5 = fma(a2, b1, c5);
                let a3 = vec4(xs[xo + 24u]);
                c6 = fma(a3, b0, c6);
                c7 = fma(a3, b1, c7);
                let a4 = vec4(xs[xo + 32u]);
                c8 = fma(a4, b0, c8);
                c9 = fma(a4, b1, c9);
                let a5 = vec4(xs[xo + 40u]);
                c10 = fma(a5, b0, c10);
                c11 = fma(a5, b1, c11);
                let a6 = vec4(xs[xo + 48u]);
                c12 = fma(a6, b0, c12);
                c13 = fma(a6, b1, c13);
                let a7 = vec4(xs[xo + 56u]);
                c14 = fma(a7, b0, c14);
                c15 = fma(a7, b1, c15);
            }
        }
        workgroupBarrier();
    }
    for (var j = 0u; j < 4u; j++) {
        let c = col0 + tx + 8u * j;
        store(row0 + ty, c, c0[j], c1[j]);
        store(row0 + ty + 8u, c, c2[j], c3[j]);
        if TM == 8u {
            store(row0 + ty + 16u, c, c4[j], c5[j]);
            store(row0 + ty + 24u, c, c6[j], c7[j]);
            store(row0 + ty + 32u, c, c8[j], c9[j]);
            store(row0 + ty + 40u, c, c10[j], c11[j]);
            store(row0 + ty + 48u, c, c12[j], c13[j]);
            store(row0 + ty + 56u, c, c14[j], c15[j]);
        }
    }
}

// gemv: up to GR rows of x against 8 output columns per workgroup of 64 invocations: each 32
// lanes take 4 columns (one x value read serves 4 weights), striding K; their partial sums
// meet in workgroup memory after the one barrier.
const GR: u32 = 4u;
const GC: u32 = 4u;
var<workgroup> red: array<f32, 1024>; // [8 columns][GR][32 lanes]

@compute @workgroup_size(64)
fn gemv(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let lane = lid % 32u;
    let wg_col0 = (wid.x + wid.y * nwg.x) * 8u;
    let col0 = wg_col0 + (lid / 32u) * GC;
    // Columns past the block read its last row (in bounds) and are never stored.
    var base: array<u32, GC>;
    for (var j = 0u; j < GC; j++) {
        base[j] = min(col0 + j, p.n_blk - 1u) * p.k;
    }
    var acc: array<f32, 16>; // [GC][GR]
    for (var kk = lane; kk < p.k; kk += 32u) {
        var xv: array<f32, GR>;
        for (var r = 0u; r < GR; r++) {
            // Only the step's rows (uniform): a batch-1 decode reads one x value per 4 weights.
            if r < p.rows {
                xv[r] = x[r * p.k + kk];
            }
        }
        for (var j = 0u; j < GC; j++) {
            let wv = wval(base[j] + kk);
            for (var r = 0u; r < GR; r++) {
                acc[j * GR + r] = fma(wv, xv[r], acc[j * GR + r]);
            }
        }
    }
    for (var i = 0u; i < GC * GR; i++) {
        red[((lid / 32u) * GC * GR + i) * 32u + lane] = acc[i];
    }
    workgroupBarrier();
    // One invocation per (column, row) adds its 32 lanes' partial sums.
    if lid < 8u * GR {
        let c = lid / GR;
        let r = lid % GR;
        if r < p.rows {
            var s = 0.0;
            for (var l = 0u; l < 32u; l++) {
                s += red[lid * 32u + l];
            }
            store1(r, wg_col0 + c, s);
        }
    }
}
