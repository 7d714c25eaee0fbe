//! `rms_norm`: `x / sqrt(mean(x^2) + eps) * w`, row by row.

use rayon::prelude::*;

/// Normalises each row of width `dim` of `x` into `out`.
pub fn rms_norm(x: &[f32], w: &[f32], dim: usize, eps: f32, out: &mut [f32]) {
    out.par_chunks_mut(dim)
        .zip(x.par_chunks(dim))
        .for_each(|(o, x)| {
            // Accumulate in f64: the reference is float64 and this costs nothing at these sizes.
            let ss: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
            let inv = (1.0 / (ss / dim as f64 + eps as f64).sqrt()) as f32;
            o.iter_mut()
                .zip(x.iter().zip(w))
                .for_each(|(o, (x, w))| *o = x * inv * w);
        });
}
