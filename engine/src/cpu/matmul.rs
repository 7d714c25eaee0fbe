//! `matmul`: `out = x @ W^T (+ bias)` with `W` stored `[n, k]` as in PyTorch.
//!
//! One row (decode) is memory-bound: a parallel dot product per output feature reads `W` once.
//! Several rows (prefill, batches) go through the panel kernel of [`super::avx512_rows`] on
//! CPUs with AVX-512, else the `gemm` crate's blocked kernels. Packed
//! weights (Q8_0/Q4_0/Q4_1/F16/BF16, Q5, k-quants) stay packed: decode dequantises in registers
//! ([`super::packed_dot`]), several rows dequantise one tile of features at a time.

use std::cell::RefCell;

use rayon::prelude::*;

use super::packed_dot::{block_sums, dequantize, dot_row};
use super::CpuWeight;
use crate::tensor::Packed;

/// Dot product; the AVX-512 or AVX2 build of it where the CPU has one (checked at run time).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if super::avx512::available() {
        // SAFETY: the CPU has AVX-512F.
        return unsafe { super::avx512::dot(a, b) };
    }
    #[cfg(target_arch = "x86_64")]
    if super::packed_dot::has_avx2() {
        // SAFETY: the CPU supports every feature the function was compiled with.
        return unsafe { dot_avx2(a, b) };
    }
    dot_generic(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_generic(a, b)
}

/// Dot product with eight independent accumulators so the compiler vectorises it.
#[inline(always)]
fn dot_generic(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// `out[i * features + f] = dot(x[which[i] * k..][..k], w[f * k..][..k])`: a small product
/// of some rows of `x` (the tokens of a batch that use one adapter, read in place) by
/// `features` f32 rows (the LoRA shrink of several tokens), register-blocked where the CPU
/// has AVX-512.
pub(super) fn rows_dot(
    x: &[f32],
    which: &[usize],
    w: &[f32],
    features: usize,
    k: usize,
    out: &mut [f32],
) {
    let rows = which.len();
    assert!(
        which.iter().all(|&i| (i + 1) * k <= x.len())
            && w.len() >= features * k
            && out.len() >= rows * features,
        "rows_dot: short buffers"
    );
    #[cfg(target_arch = "x86_64")]
    if super::avx512::available() {
        // SAFETY: AVX-512F checked; the three buffers hold what the kernel reads and writes
        // (asserted above).
        return unsafe {
            super::avx512::picked_rows_by_features(
                x.as_ptr(),
                which,
                w.as_ptr(),
                k,
                features,
                k,
                out.as_mut_ptr(),
                features,
            )
        };
    }
    for (&i, o) in which.iter().zip(out.chunks_mut(features)) {
        for (f, o) in o.iter_mut().enumerate() {
            *o = dot(&x[i * k..(i + 1) * k], &w[f * k..(f + 1) * k]);
        }
    }
}

/// `out[rows, n] = x[rows, k] @ w^T + bias`; `opts.amx`: several rows on the AMX tile unit in
/// bf16 where the CPU has it ([`super::CpuOptions::amx`]); `opts.int8`: Q4_0/Q4_1/Q8_0
/// weights meet 8-bit activations ([`super::int8`]).
pub fn matmul(
    x: &[f32],
    w: &CpuWeight,
    bias: Option<&[f32]>,
    rows: usize,
    out: &mut [f32],
    opts: super::CpuOptions,
) {
    let n = w.rows;
    if rows == 0 || n == 0 {
        // A step may want no logits at all (a prefill chunk that ends mid-prompt).
        return;
    }
    match (&w.packed, rows) {
        (None, 1) => gemv(x, w, out),
        #[cfg(target_arch = "x86_64")]
        (_, r) if super::amx_rows(opts.amx, r) => super::matmul_amx::amx_tiles(x, w, rows, out),
        (Some(p), _) if opts.int8 && super::int8::supports(p.kind, w.cols) => {
            super::int8::matmul(x, w, p, rows, out)
        }
        (None, _) if wide_kernel() => tiles(x, w, rows, out, |_, c0, c1, f| {
            f(&w.data[c0 * w.cols..c1 * w.cols])
        }),
        (None, _) => gemm_f32(x, &w.data, rows, n, w.cols, n, out, threads()),
        (Some(p), 1) => gemv_packed(x, w.cols, p, out),
        (Some(p), r) if r <= FEW_ROWS_WIDE && wide_kernel() && p.kind.has_block_kernels() => {
            few_rows_wide(x, w, p, rows, out)
        }
        (Some(p), _) if wide_kernel() => {
            let rb = p.kind.row_bytes(w.cols);
            tiles(x, w, rows, out, |tile, c0, c1, f| {
                dequantize(p.kind, &p.bytes[c0 * rb..c1 * rb], tile);
                f(tile)
            })
        }
        (Some(p), r) if r <= FEW_ROWS => rows_packed(x, w, p, rows, out),
        (Some(p), _) => gemm_packed(x, w, p, rows, out),
    }
    if let Some(b) = bias {
        super::add_bias::add_bias(&mut out[..rows * n], &b[..n]);
    }
}

fn threads() -> gemm::Parallelism {
    match rayon::current_num_threads() {
        0 | 1 => gemm::Parallelism::None,
        t => gemm::Parallelism::Rayon(t),
    }
}

/// `out[rows, n] = x[rows, k] @ w[n, k]^T` with `out` rows `ld_out` apart (a column block of
/// a wider output when `ld_out > n`).
#[allow(clippy::too_many_arguments)]
fn gemm_f32(
    x: &[f32],
    w: &[f32],
    rows: usize,
    n: usize,
    k: usize,
    ld_out: usize,
    out: &mut [f32],
    par: gemm::Parallelism,
) {
    assert!(x.len() >= rows * k && w.len() >= n * k && out.len() >= (rows - 1) * ld_out + n);
    // SAFETY: the assert above bounds every element the strides below address.
    unsafe {
        gemm::gemm(
            rows,
            n,
            k,
            out.as_mut_ptr(),
            1,
            ld_out as isize,
            false,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// One row (decode): each output feature's weights are read once, features split over threads.
fn gemv(x: &[f32], w: &CpuWeight, out: &mut [f32]) {
    let k = w.cols;
    out.par_chunks_mut(GEMV_CHUNK)
        .enumerate()
        .for_each(|(c, o)| {
            let base = c * GEMV_CHUNK;
            for (j, o) in o.iter_mut().enumerate() {
                let row = base + j;
                *o = dot(x, &w.data[row * k..(row + 1) * k]);
            }
        });
}

/// Output features per rayon task in a gemv: big enough to amortise scheduling.
pub(super) const GEMV_CHUNK: usize = 64;

/// One row against packed weights: blocks dequantised in registers, never written out.
fn gemv_packed(x: &[f32], k: usize, p: &Packed, out: &mut [f32]) {
    // Taken out of the cell, not borrowed: the gemv forks, and while this worker waits it may
    // run another step's gemv, which then finds the cell empty and allocates its own.
    let mut xsum = XSUM_BUF.take();
    block_sums(x, &mut xsum);
    gemv_packed_with(x, &xsum, k, p, out);
    XSUM_BUF.set(xsum);
}

thread_local! {
    /// The calling thread's block sums of `x`, reused so that decode allocates nothing.
    static XSUM_BUF: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

fn gemv_packed_with(x: &[f32], xsum: &[f32], k: usize, p: &Packed, out: &mut [f32]) {
    out.par_chunks_mut(GEMV_CHUNK)
        .enumerate()
        .for_each(|(c, o)| packed_rows(x, xsum, k, p, c * GEMV_CHUNK, o));
}

/// `out[j] = dot(x, row r0 + j)` of packed weights; `xsum` = [`block_sums`] of `x`.
fn packed_rows(x: &[f32], xsum: &[f32], k: usize, p: &Packed, r0: usize, out: &mut [f32]) {
    let rb = p.kind.row_bytes(k);
    for (j, o) in out.iter_mut().enumerate() {
        let row = (r0 + j) * rb;
        prefetch(&p.bytes, row + PREFETCH_ROWS * rb, rb);
        *o = dot_row(p.kind, x, xsum, &p.bytes[row..row + rb]);
    }
}

/// `out[j] = dot(x, row r0 + j)` of `w` (packed or f32): one block of a decode gemv.
/// `xsum` = [`block_sums`] of `x` (used by packed weights only).
pub(super) fn gemv_rows(x: &[f32], xsum: &[f32], w: &CpuWeight, r0: usize, out: &mut [f32]) {
    match &w.packed {
        Some(p) => packed_rows(x, xsum, w.cols, p, r0, out),
        None => {
            let k = w.cols;
            for (j, o) in out.iter_mut().enumerate() {
                let row = r0 + j;
                *o = dot(x, &w.data[row * k..(row + 1) * k]);
            }
        }
    }
}

/// How many rows ahead a gemv asks for its weights: the dot products are short (a few
/// hundred bytes per row), so without a hint each row's first loads wait on memory.
pub(super) const PREFETCH_ROWS: usize = 4;

/// Hints the cache lines of `bytes[at..at + len]` (clamped to the slice) into L1.
#[inline(always)]
pub(super) fn prefetch(bytes: &[u8], at: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let end = (at + len).min(bytes.len());
        let mut i = at;
        while i < end {
            // SAFETY: `i` is inside `bytes`; a prefetch never faults or changes memory.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(bytes.as_ptr().add(i) as *const i8) };
            i += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (bytes, at, len);
}

/// Up to this many rows (a small batch's decode step), Q4_0/Q4_1/Q8_0 weights on AVX-512 are
/// dotted straight from their blocks with every input row, each block's codes converted once
/// ([`few_rows_wide`]); the panel kernel of more rows computes 32 rows at a time.
const FEW_ROWS_WIDE: usize = 8;

/// Several rows (up to [`FEW_ROWS_WIDE`]) against Q4_0/Q4_1/Q8_0 weights on AVX-512: as the
/// decode gemv, one weight row at a time, dotted with up to four input rows per pass.
#[cfg(target_arch = "x86_64")]
fn few_rows_wide(x: &[f32], w: &CpuWeight, p: &Packed, rows: usize, out: &mut [f32]) {
    use crate::tensor::PackedKind;
    let (n, k) = (w.rows, w.cols);
    let (nb, rb) = (k / 32, p.kind.row_bytes(k));
    assert!(
        k.is_multiple_of(32)
            && x.len() >= rows * k
            && out.len() >= rows * n
            && p.bytes.len() >= n * rb,
        "matmul: short buffers"
    );
    // Block sums of every row, one after the other (the Q4 offset terms; `k` is whole blocks,
    // so the rows' blocks never straddle); taken out of the cell, not borrowed (see
    // `gemv_packed`).
    let mut xsum = XSUM_BUF.take();
    block_sums(&x[..rows * k], &mut xsum);
    let (xs_ro, kind) = (&xsum[..], p.kind);
    let out_ptr = SendPtr(out.as_mut_ptr());
    /// Weight row `j` against rows `r0..r0 + R`.
    #[target_feature(enable = "avx512f,avx512bw,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn group<const R: usize>(
        kind: PackedKind,
        x: &[f32],
        xs: &[f32],
        (k, nb, n): (usize, usize, usize),
        row: *const u8,
        r0: usize,
        j: usize,
        out: *mut f32,
    ) {
        let xr: [*const f32; R] = std::array::from_fn(|i| x[(r0 + i) * k..].as_ptr());
        let sr: [*const f32; R] = std::array::from_fn(|i| xs[(r0 + i) * nb..].as_ptr());
        // SAFETY: AVX-512 (this function's features); `row` holds `nb` blocks, each input row
        // `k` values and `nb` sums (sliced above); `out` holds `rows x n` values.
        unsafe {
            let v = match kind {
                PackedKind::Q4_1 => super::avx512::dot_q4_rows::<true, R>(&xr, &sr, row, nb),
                PackedKind::Q4_0 => super::avx512::dot_q4_rows::<false, R>(&xr, &sr, row, nb),
                _ => super::avx512::dot_q8_rows::<R>(&xr, row, nb),
            };
            for (i, v) in v.iter().enumerate() {
                *out.add((r0 + i) * n + j) = *v;
            }
        }
    }
    (0..n.div_ceil(GEMV_CHUNK)).into_par_iter().for_each(|c| {
        for j in c * GEMV_CHUNK..((c + 1) * GEMV_CHUNK).min(n) {
            prefetch(&p.bytes, (j + PREFETCH_ROWS) * rb, rb);
            let row = p.bytes[j * rb..].as_ptr();
            let dims = (k, nb, n);
            for r0 in (0..rows).step_by(4) {
                let o = out_ptr.get();
                // SAFETY: the CPU has AVX-512 (`wide_kernel`); sizes asserted above; task
                // `c` alone writes the columns of its chunk.
                unsafe {
                    match rows - r0 {
                        1 => group::<1>(kind, x, xs_ro, dims, row, r0, j, o),
                        2 => group::<2>(kind, x, xs_ro, dims, row, r0, j, o),
                        3 => group::<3>(kind, x, xs_ro, dims, row, r0, j, o),
                        _ => group::<4>(kind, x, xs_ro, dims, row, r0, j, o),
                    }
                }
            }
        }
    });
    XSUM_BUF.set(xsum);
}

#[cfg(not(target_arch = "x86_64"))]
fn few_rows_wide(_: &[f32], _: &CpuWeight, _: &Packed, _: usize, _: &mut [f32]) {
    unreachable!("wide_kernel() is false off x86_64")
}

/// Up to this many rows (batched decode), packed weights are dequantised one row at a time
/// into L1 and dotted with every input row; more rows (prefill) go through tiles and `gemm`.
const FEW_ROWS: usize = 4;

thread_local! {
    /// Each thread's dequantised weight row.
    static ROW_BUF: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// A few rows against packed weights: each weight row is dequantised once, into L1, and
/// dotted with every input row.
fn rows_packed(x: &[f32], w: &CpuWeight, p: &Packed, rows: usize, out: &mut [f32]) {
    let (n, k) = (w.rows, w.cols);
    let rb = p.kind.row_bytes(k);
    let out_ptr = SendPtr(out.as_mut_ptr());
    (0..n.div_ceil(GEMV_CHUNK)).into_par_iter().for_each(|c| {
        ROW_BUF.with_borrow_mut(|buf| {
            buf.resize(k, 0.0);
            for j in c * GEMV_CHUNK..((c + 1) * GEMV_CHUNK).min(n) {
                dequantize(p.kind, &p.bytes[j * rb..(j + 1) * rb], buf);
                for r in 0..rows {
                    let v = dot(&x[r * k..(r + 1) * k], buf);
                    // SAFETY: task `c` alone writes columns of its chunk; r * n + j < rows * n.
                    unsafe { *out_ptr.get().add(r * n + j) = v };
                }
            }
        });
    });
}

/// Output features per tile when several rows meet packed weights.
const TILE: usize = 64;

thread_local! {
    /// Each thread's dequantised tile, reused across calls.
    pub(super) static TILE_BUF: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Several rows against packed weights: each thread dequantises a tile of `TILE` output
/// features once and runs a blocked f32 gemm on it, writing its own columns of `out`.
fn gemm_packed(x: &[f32], w: &CpuWeight, p: &Packed, rows: usize, out: &mut [f32]) {
    let (n, k) = (w.rows, w.cols);
    let rb = p.kind.row_bytes(k);
    let out_ptr = SendPtr(out.as_mut_ptr());
    let out_len = out.len();
    (0..n.div_ceil(TILE)).into_par_iter().for_each(|t| {
        let (c0, c1) = (t * TILE, ((t + 1) * TILE).min(n));
        TILE_BUF.with_borrow_mut(|tile| {
            tile.resize((c1 - c0) * k, 0.0);
            dequantize(p.kind, &p.bytes[c0 * rb..c1 * rb], tile);
            // SAFETY: tiles write disjoint column ranges c0..c1 of `out`; the slice starts at
            // column c0 and `gemm_f32` addresses rows `ld_out = n` apart within `out_len`.
            let dst =
                unsafe { std::slice::from_raw_parts_mut(out_ptr.get().add(c0), out_len - c0) };
            gemm_f32(x, tile, rows, c1 - c0, k, n, dst, gemm::Parallelism::None);
        });
    });
}

/// Whether several-row matmuls use the AVX-512 register-blocked kernel (instead of `gemm`,
/// whose stable build stops at AVX2).
fn wide_kernel() -> bool {
    #[cfg(target_arch = "x86_64")]
    return super::avx512::available();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

thread_local! {
    /// The calling thread's packed input rows, reused across calls.
    static XP_BUF: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Several rows on CPUs with AVX-512: `x` packed once in panels, then output features split in
/// tiles of `TILE` over threads; `tile_of(buf, c0, c1, run)` hands `run` the f32 weights of
/// features `c0..c1` (a slice of the f32 matrix, or a tile dequantised into the thread's
/// reused `buf`), and `run` computes those columns of `out` for every row.
#[cfg(target_arch = "x86_64")]
fn tiles<G>(x: &[f32], w: &CpuWeight, rows: usize, out: &mut [f32], tile_of: G)
where
    G: Fn(&mut Vec<f32>, usize, usize, &mut dyn FnMut(&[f32])) + Sync,
{
    let (n, k) = (w.rows, w.cols);
    assert!(
        x.len() >= rows * k && out.len() >= rows * n && n < (i32::MAX as usize) / 16,
        "matmul: short buffers"
    );
    // Taken out of the cell, not borrowed: the tiles fork, and a waiting worker may run
    // another step's matmul meanwhile.
    let mut xp = XP_BUF.take();
    super::avx512_rows::pack_rows(x, rows, k, &mut xp);
    let xp_ro = &xp[..];
    let out_ptr = SendPtr(out.as_mut_ptr());
    (0..n.div_ceil(TILE)).into_par_iter().for_each(|t| {
        let (c0, c1) = (t * TILE, ((t + 1) * TILE).min(n));
        TILE_BUF.with_borrow_mut(|buf| {
            buf.resize((c1 - c0) * k, 0.0);
            tile_of(buf, c0, c1, &mut |wt: &[f32]| {
                assert!(wt.len() >= (c1 - c0) * k);
                // SAFETY: `wide_kernel` checked AVX-512F; `xp` is `x` packed by `pack_rows`,
                // `wt` holds `c1 - c0` rows of `k`, and this task alone writes columns
                // `c0..c1` of the `rows x n` output (asserted above, with `15 * n` < 2^31).
                unsafe {
                    super::avx512_rows::features_by_rows(
                        xp_ro.as_ptr(),
                        rows,
                        wt.as_ptr(),
                        k,
                        c1 - c0,
                        k,
                        out_ptr.get().add(c0),
                        n,
                    )
                }
            });
        });
    });
    XP_BUF.set(xp);
}

#[cfg(not(target_arch = "x86_64"))]
fn tiles<G>(_: &[f32], _: &CpuWeight, _: usize, _: &mut [f32], _: G)
where
    G: Fn(&mut Vec<f32>, usize, usize, &mut dyn FnMut(&[f32])) + Sync,
{
    unreachable!("wide_kernel() is false off x86_64")
}

/// A raw pointer that rayon tasks may share (they write disjoint parts).
#[derive(Clone, Copy)]
pub(super) struct SendPtr(pub(super) *mut f32);
// SAFETY: used only for disjoint writes, see `gemm_packed`.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

impl SendPtr {
    pub(super) fn get(self) -> *mut f32 {
        self.0
    }
}
