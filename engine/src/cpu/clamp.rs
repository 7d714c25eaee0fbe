//! `clamp`: every value clamped in place to `[-limit, limit]` (OLMo's `clip_qkv`).

/// `x[i] = min(max(x[i], -limit), limit)`, a NaN kept (PyTorch's `clamp_`, which transformers'
/// OlmoAttention applies to the query, key and value projections).
pub fn clamp(x: &mut [f32], limit: f32) {
    // Comparisons, not `f32::clamp`'s assertion on the bounds: a NaN fails both and stays.
    x.iter_mut().for_each(|v| {
        if *v < -limit {
            *v = -limit;
        } else if *v > limit {
            *v = limit;
        }
    });
}
