//! `matmul`: `out = x @ W^T (+ bias)` with `W` stored `[n, k]` as in PyTorch.
//!
//! One row (decode) is memory-bound: a parallel dot product per output feature reads `W` once.
//! Several rows (prefill, batches) go through the `gemm` crate's blocked kernels.

use rayon::prelude::*;

use super::CpuWeight;

/// Dot product with eight independent accumulators so the compiler vectorises it.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
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

/// `out[rows, n] = x[rows, k] @ w^T + bias`.
pub fn matmul(x: &[f32], w: &CpuWeight, bias: Option<&[f32]>, rows: usize, out: &mut [f32]) {
    let (n, k) = (w.rows, w.cols);
    if rows == 1 {
        gemv(x, w, out);
    } else {
        let threads = rayon::current_num_threads();
        let par = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: the slices cover exactly rows*k, n*k and rows*n elements (checked by the
        // caller), and the strides below describe those row-major layouts.
        unsafe {
            gemm::gemm(
                rows,
                n,
                k,
                out.as_mut_ptr(),
                1,
                n as isize,
                false,
                x.as_ptr(),
                1,
                k as isize,
                w.data.as_ptr(),
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
    if let Some(b) = bias {
        out.chunks_mut(n)
            .for_each(|o| o.iter_mut().zip(b).for_each(|(o, b)| *o += b));
    }
}

/// One row (decode): each output feature's weights are read once, features split over threads.
fn gemv(x: &[f32], w: &CpuWeight, out: &mut [f32]) {
    let k = w.cols;
    // Output features per rayon task: big enough to amortise scheduling.
    const CHUNK: usize = 64;
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
        let base = c * CHUNK;
        for (j, o) in o.iter_mut().enumerate() {
            let row = base + j;
            *o = dot(x, &w.data[row * k..(row + 1) * k]);
        }
    });
}
