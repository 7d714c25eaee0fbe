//! `rms_norm`: `x / sqrt(mean(x^2) + eps) * w`, row by row.

use rayon::prelude::*;

/// Normalises each row of width `dim` of `x` into `out`; row `r` is scaled by row
/// `r % w_rows` of `w` (`[w_rows, dim]`: 1 for one weight, the heads for a weight per head).
/// `w_rows` is at least 1.
pub fn rms_norm(x: &[f32], w: &[f32], dim: usize, w_rows: usize, eps: f32, out: &mut [f32]) {
    // `dim` 0: no rows to norm (chunks of 0 would panic).
    out.par_chunks_mut(dim.max(1))
        .zip(x.par_chunks(dim.max(1)))
        .enumerate()
        .for_each(|(r, (o, x))| {
            let w = &w[r % w_rows * dim..];
            // Accumulate in f64: the reference is float64 and this costs nothing at these sizes.
            let ss: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
            let inv = (1.0 / (ss / dim as f64 + eps as f64).sqrt()) as f32;
            o.iter_mut()
                .zip(x.iter().zip(w))
                .for_each(|(o, (x, w))| *o = x * inv * w);
        });
}

#[cfg(test)]
mod tests {
    /// Row `r` takes weight row `r % w_rows`: 2 tokens x 2 heads, each head's weight its own.
    #[test]
    fn each_head_takes_its_own_weight_row() {
        let x = [3.0f32, 4.0, 3.0, 4.0, 6.0, 8.0, 6.0, 8.0];
        let w = [1.0f32, 2.0, 10.0, 20.0];
        let mut out = [f32::NAN; 8];
        super::rms_norm(&x, &w, 2, 2, 0.0, &mut out);
        // Each row normalises to (3, 4) / sqrt(12.5).
        let (a, b) = (3.0 / 12.5f32.sqrt(), 4.0 / 12.5f32.sqrt());
        let want = [
            a,
            2.0 * b,
            10.0 * a,
            20.0 * b,
            a,
            2.0 * b,
            10.0 * a,
            20.0 * b,
        ];
        for (o, w) in out.iter().zip(want) {
            assert!((o - w).abs() < 1e-6, "{out:?} != {want:?}");
        }
    }
}
