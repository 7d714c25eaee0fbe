//! `embedding`: gathers one table row per token.

use super::{check_len, CpuWeight};
use crate::error::{Error, Result};

/// `out[t, :] = table[ids[t], :]`; an id outside the table is an error, not a panic.
pub fn embedding(table: &CpuWeight, ids: &[u32], dim: usize, out: &mut [f32]) -> Result<()> {
    check_len("embedding", "out", out.len(), ids.len() * dim)?;
    if table.cols != dim {
        return Err(Error::invalid(format!(
            "embedding: table has {} columns, expected {dim}",
            table.cols
        )));
    }
    for (t, &id) in ids.iter().enumerate() {
        let id = id as usize;
        if id >= table.rows {
            return Err(Error::invalid(format!(
                "token id {id} is outside the vocabulary (size {})",
                table.rows
            )));
        }
        table.row_into(id, &mut out[t * dim..(t + 1) * dim]);
    }
    Ok(())
}
