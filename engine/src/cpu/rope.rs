//! `rope`: rotary position embedding, HF rotate-half layout, angles from a precomputed table.

use rayon::prelude::*;

/// Rotates every head of every token in `x` (`[T, n_heads, head_dim]`) by its position's
/// angles: `cos_sin[(pos * head_dim/2 + i) * 2]` is cos, `+1` is sin.
pub fn rope(x: &mut [f32], cos_sin: &[f32], positions: &[u32], n_heads: usize, head_dim: usize) {
    let half = head_dim / 2;
    x.par_chunks_mut(n_heads * head_dim)
        .zip(positions.par_iter())
        .for_each(|(tok, &pos)| {
            let table = &cos_sin[pos as usize * head_dim..(pos as usize + 1) * head_dim];
            for head in tok.chunks_mut(head_dim) {
                let (lo, hi) = head.split_at_mut(half);
                for i in 0..half {
                    let (c, s) = (table[2 * i], table[2 * i + 1]);
                    let (a, b) = (lo[i], hi[i]);
                    lo[i] = a * c - b * s;
                    hi[i] = b * c + a * s;
                }
            }
        });
}
