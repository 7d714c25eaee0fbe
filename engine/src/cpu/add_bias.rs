//! `add_bias`: `x[r, :] += bias`, row by row: a LayerNorm's bias (StableLM's, StarCoder2's and
//! Phi-2's norms; the output head's folded through the final norm) and a linear layer's.

use rayon::prelude::*;

/// Adds `bias` to each row of `x` (rows as wide as `bias`).
pub fn add_bias(x: &mut [f32], bias: &[f32]) {
    // Below this size the thread hand-off costs more than the adds.
    const PAR_MIN: usize = 1 << 16;
    let row = |r: &mut [f32]| r.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
    if x.len() < PAR_MIN {
        x.chunks_mut(bias.len()).for_each(row);
    } else {
        x.par_chunks_mut(bias.len()).for_each(row);
    }
}
