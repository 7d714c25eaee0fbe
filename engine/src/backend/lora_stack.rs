//! [`LoraStackHost`]: one module's adapters stacked on the host, as every backend uploads them.

use crate::error::{Error, Result};

/// The adapters that target one linear module of one layer, stacked for the fused LoRA ops.
///
/// Slot `i` (the adapter's index in the loaded set) owns rows `offset[i]..offset[i]+rank[i]`
/// of `a` and `bt`; rank 0 means it does not target this module. Ranks differ freely: nothing
/// is padded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoraStackHost {
    /// Input width of the module.
    pub in_dim: usize,
    /// Output width of the module.
    pub out_dim: usize,
    /// Largest rank of any slot (sizes the `u` buffer: `[T, K, max_rank]`).
    pub max_rank: usize,
    /// All A matrices, `[sum of ranks, in_dim]`.
    pub a: Vec<f32>,
    /// All B matrices transposed, `[sum of ranks, out_dim]` (row `c` is column `c` of B).
    pub bt: Vec<f32>,
    /// First row of each slot in `a` / `bt`.
    pub slot_offset: Vec<u32>,
    /// Rank of each slot here (0: the slot does not target this module).
    pub slot_rank: Vec<u32>,
    /// `alpha / r` (or `alpha / sqrt(r)` for rsLoRA) of each slot here.
    pub slot_scale: Vec<f32>,
}

impl LoraStackHost {
    /// Sum of all ranks (rows of `a`).
    pub fn total_rank(&self) -> usize {
        self.slot_rank.iter().map(|&r| r as usize).sum()
    }

    /// What every backend's `upload_lora` checks before its kernels index the stack by slot:
    /// `a` and `bt` hold exactly [`Self::total_rank`] rows, the slot tables have one entry per
    /// slot, and each slot's rows lie inside the stack with a rank of at most `max_rank`.
    /// Returns the total rank. Errors: [`Error::Invalid`] naming what does not fit.
    pub fn validate(&self) -> Result<usize> {
        let rows = self.total_rank();
        if self.a.len() != rows * self.in_dim || self.bt.len() != rows * self.out_dim {
            return Err(Error::invalid(format!(
                "upload_lora: {rows} rank rows of {} -> {} need A {} and B^T {} values, got {} and {}",
                self.in_dim,
                self.out_dim,
                rows * self.in_dim,
                rows * self.out_dim,
                self.a.len(),
                self.bt.len()
            )));
        }
        let n = self.slot_rank.len();
        if self.slot_offset.len() != n || self.slot_scale.len() != n {
            return Err(Error::invalid(format!(
                "upload_lora: {n} slot ranks, {} offsets, {} scales",
                self.slot_offset.len(),
                self.slot_scale.len()
            )));
        }
        if let Some(slot) = (0..n).find(|&i| {
            let (off, rank) = (self.slot_offset[i] as usize, self.slot_rank[i] as usize);
            rank > self.max_rank || off + rank > rows
        }) {
            return Err(Error::invalid(format!(
                "upload_lora: slot {slot} (offset {}, rank {}) is outside the stack's {rows} rows or above max_rank {}",
                self.slot_offset[slot], self.slot_rank[slot], self.max_rank
            )));
        }
        Ok(rows)
    }
}
