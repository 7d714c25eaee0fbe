//! `center`: `x[r, :] -= mean(x[r, :])`, row by row, in place (LayerNorm's centering; the
//! RMSNorm that reads the result completes the LayerNorm).

use rayon::prelude::*;

/// Centers each row of width `dim` of `x`.
pub fn center(x: &mut [f32], dim: usize) {
    x.par_chunks_mut(dim).for_each(|row| {
        // Summed in f64, as rms_norm sums its squares: the reference is float64.
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / dim as f64;
        row.iter_mut().for_each(|v| *v = (*v as f64 - mean) as f32);
    });
}
