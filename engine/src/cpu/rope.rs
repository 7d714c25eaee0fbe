//! `rope`: rotary position embedding, HF rotate-half layout, angles from a precomputed table.

use rayon::prelude::*;

/// Rotates every head of every token in `x` (`[T, n_heads, head_dim]`) by its position's
/// angles: `cos_sin[(pos * head_dim/2 + i) * 2]` is cos, `+1` is sin.
pub fn rope(x: &mut [f32], cos_sin: &[f32], positions: &[u32], n_heads: usize, head_dim: usize) {
    let half = head_dim / 2;
    x.par_chunks_mut(n_heads * head_dim)
        .zip(positions.par_iter())
        .for_each(|(tok, &pos)| {
            // Rows of head_dim/2 pairs ([positions, head_dim/2, 2]): an odd head's last element
            // has no pair and no angle.
            let row = pos as usize * half * 2;
            let table = &cos_sin[row..row + half * 2];
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

#[cfg(test)]
mod tests {
    use super::rope;

    /// The table's rows are head_dim/2 pairs long, also for an odd head_dim (whose last element
    /// is not rotated): the layout `Backend::rope` documents and the GPU kernels read.
    #[test]
    fn odd_heads_read_rows_of_half_pairs_and_keep_their_last_element() {
        let head_dim = 5; // pairs (0, 2) and (1, 3); element 4 unrotated
        let angle = |p: usize, i: usize| (p * 2 + i) as f32 * 0.3 + 0.1;
        let table: Vec<f32> = (0..3)
            .flat_map(|p| (0..2).flat_map(move |i| [angle(p, i).cos(), angle(p, i).sin()]))
            .collect();
        assert_eq!(table.len(), 3 * 2 * 2);
        let head = [1.0f32, 2.0, 3.0, 4.0, 5.0];
        let mut x = head.to_vec();
        rope(&mut x, &table, &[2], 1, head_dim);
        for i in 0..2 {
            let (c, s) = (angle(2, i).cos(), angle(2, i).sin());
            let (a, b) = (head[i], head[i + 2]);
            assert_eq!(x[i], a * c - b * s, "element {i}");
            assert_eq!(x[i + 2], b * c + a * s, "element {}", i + 2);
        }
        assert_eq!(x[4], 5.0);
    }
}
