//! Shape checks and sizes the backends share for their ops' arguments, each backend naming
//! a failure in its own error.

use crate::error::{Error, Result};

/// Checks a [`super::Backend::copy_kv`] of `len` values from `from` to `to` in a buffer of
/// `buf_len` values: both ranges inside it, and apart.
///
/// # Errors
/// Either range past the buffer, or the two overlapping.
pub fn check_kv_copy(buf_len: usize, from: usize, to: usize, len: usize) -> Result<()> {
    let end = from.max(to).checked_add(len);
    if end.is_none_or(|e| e > buf_len) || from.abs_diff(to) < len {
        return Err(Error::invalid(format!(
            "copy_kv: {len} values from {from} to {to} in a buffer of {buf_len}"
        )));
    }
    Ok(())
}

/// Checks [`super::Backend::rms_norm`]'s weight rows: at least one, and a whole number of them in
/// `rows` (each head of every token its own).
///
/// # Errors
/// `w_rows` 0 or not dividing `rows`.
pub fn check_norm_weight_rows(rows: usize, w_rows: usize) -> Result<()> {
    if w_rows == 0 || !rows.is_multiple_of(w_rows) {
        return Err(Error::invalid(format!(
            "rms_norm: {rows} rows cannot take a weight of {w_rows} rows (one per row of each group)"
        )));
    }
    Ok(())
}

/// Values a rope table (`Backend::rope`'s layout: rows of head_dim/2 (cos, sin) pairs, one per
/// position) must hold for the first `n_tokens` of `positions`: up to the largest position's row.
/// Each backend checks its buffer against it with its own error.
pub fn rope_table_len(positions: &[u32], n_tokens: usize, head_dim: usize) -> usize {
    let max_pos = positions[..n_tokens].iter().copied().max().unwrap_or(0) as usize;
    (max_pos + 1) * (head_dim / 2) * 2
}
