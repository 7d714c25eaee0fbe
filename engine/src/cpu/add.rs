//! `add`: the residual connection, `dst += src`.

use rayon::prelude::*;

/// `dst[i] += src[i]`.
pub fn add(dst: &mut [f32], src: &[f32]) {
    // Below this size the thread hand-off costs more than the adds.
    const PAR_MIN: usize = 1 << 16;
    if dst.len() < PAR_MIN {
        dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
    } else {
        dst.par_chunks_mut(PAR_MIN / 4)
            .zip(src.par_chunks(PAR_MIN / 4))
            .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, s)| *d += s));
    }
}
