//! SGMV: `lora_shrink` and `lora_expand` on tensor cores for batches and prefill
//! ([`crate::Experimental::sgmv`]; kernels `sgmv_shrink*` / `sgmv_expand*` in `sgmv.cu`).
//!
//! The segment kernels read each token's adapters once per token: at batch 32 with 3-adapter
//! mixtures that is 96 reads of A and of B^T per module per step. SGMV takes tokens in tiles of
//! [`SGMV_TILE`], groups the adapters a tile uses (its slot union, found in the kernel from the
//! step's tables), and runs each adapter's rank rows as one TF32 GEMM over the tile, so A and
//! B^T are read once per tile. The u buffer and the ops' semantics are the segment kernels'
//! (either kernel of the pair may be the segment one). TF32 rounds the products' inputs (x and
//! A, u and B^T) to 10 mantissa bits with f32 accumulation: measured on the CPU with the same
//! rounding (`CpuProbe::tf32_lora`): logits within 1.35e-3 of the float64 reference on the
//! tiny fixtures, 3.21e-3 on SmolLM2 with its task adapters (f32 LoRA: 5.9e-5).
//!
//! Grids depend only on the step's shape and the stack (a bound on the union's columns, not
//! the union itself), so recorded graphs replay them unchanged.

use cudarc::driver::{CudaSlice, PushKernelArg};
use dlp_engine::Result;

use crate::launch::{cfg, int};
use crate::{CudaBackend, CudaLora, CudaStep};

/// Tokens per tile (`SGMV_TILE` in sgmv.cu: the mma's M).
pub const SGMV_TILE: usize = 16;
/// Largest mixture size `K` the kernels take (`SGMV_MAX_K`); larger steps use the segment
/// kernels.
pub const SGMV_MAX_K: usize = 16;
/// Warps per expand block (`SGMV_WARPS`); each owns 16 output columns.
const SGMV_WARPS: usize = 4;
/// Warps per shrink block (`SGMV_SHRINK_WARPS`); they split `in_dim`.
const SGMV_SHRINK_WARPS: usize = 8;
/// Dynamic shared memory the expand may use without an opt-in (the default per-block limit,
/// less the static union tables).
const EXPAND_SHARED_MAX: usize = 40 * 1024;

/// Columns of the largest GEMM a tile can need: the sum of the largest `min(SGMV_TILE * k,
/// slots)` ranks of the stack (a tile's tokens use at most that many distinct adapters), rounded
/// up to a multiple of 8 (the mma's K and N). `ranks_desc` is the stack's slot ranks, largest
/// first.
pub fn cols_bound(ranks_desc: &[u32], k: usize) -> usize {
    let used = ranks_desc.len().min(SGMV_TILE * k);
    let sum: usize = ranks_desc[..used].iter().map(|&r| r as usize).sum();
    sum.div_ceil(8) * 8
}

/// Bytes of dynamic shared memory of `sgmv_expand` for a columns bound `cols` (see sgmv.cu):
/// the tile's u gathered `[SGMV_TILE, cols + 4]` and two column tables of `cols`.
pub fn expand_shared_bytes(cols: usize) -> usize {
    (SGMV_TILE * (cols + 4) + 2 * cols) * 4
}

/// Whether a step of mixture size `k` on stack `l` runs on the SGMV kernels: the switch is on,
/// `k` is within [`SGMV_MAX_K`], and the expand's tile fits shared memory.
pub(crate) fn sgmv_cols(on: bool, l: &CudaLora, k: usize) -> Option<usize> {
    let cols = cols_bound(&l.ranks_desc, k);
    (on && k > 0 && k <= SGMV_MAX_K && cols > 0 && expand_shared_bytes(cols) <= EXPAND_SHARED_MAX)
        .then_some(cols)
}

impl CudaBackend {
    /// `lora_shrink` on tensor cores; sizes and the plan are checked by the caller.
    pub(crate) fn sgmv_shrink(
        &self,
        x: &CudaSlice<f32>,
        l: &CudaLora,
        step: &CudaStep,
        n_tokens: usize,
        cols: usize,
        u: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let op = "lora_shrink (sgmv)";
        let t = int(op, n_tokens)?;
        let kernels = (&self.k.sgmv_shrink, &self.k.sgmv_shrink_bf16);
        let tables = step.lora_tables();
        let mut a = self.lora_args(kernels, x, l, &tables, false);
        a.arg(&t).arg(u);
        let grid = (
            int(op, n_tokens.div_ceil(SGMV_TILE))? as u32,
            int(op, cols / 8)? as u32,
            1,
        );
        self.go(op, a, cfg(grid, (SGMV_SHRINK_WARPS * 32) as u32, 0))
    }

    /// `lora_expand` on tensor cores; sizes and the plan are checked by the caller.
    pub(crate) fn sgmv_expand(
        &self,
        u: &CudaSlice<f32>,
        l: &CudaLora,
        step: &CudaStep,
        n_tokens: usize,
        cols: usize,
        y: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let op = "lora_expand (sgmv)";
        let (t, c) = (int(op, n_tokens)?, int(op, cols)?);
        let kernels = (&self.k.sgmv_expand, &self.k.sgmv_expand_bf16);
        let tables = step.lora_tables();
        let mut a = self.lora_args(kernels, u, l, &tables, true);
        a.arg(&t).arg(&c).arg(y);
        let grid = (
            int(op, l.out_dim.div_ceil(16 * SGMV_WARPS))? as u32,
            int(op, n_tokens.div_ceil(SGMV_TILE))? as u32,
            1,
        );
        let shared = expand_shared_bytes(cols) as u32;
        self.go(op, a, cfg(grid, (SGMV_WARPS * 32) as u32, shared))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlp_engine::NO_ADAPTER;

    /// Columns of the largest tile union of a plan, as the kernels find it: per tile of
    /// [`SGMV_TILE`] tokens, the distinct slots of rank > 0 its tokens' entries name.
    fn largest_union(seg: &[u32], slots: &[u32], k: usize, ranks: &[u32]) -> usize {
        seg.chunks(SGMV_TILE)
            .map(|tile| {
                let mut used: Vec<u32> = tile
                    .iter()
                    .flat_map(|&s| &slots[s as usize * k..(s as usize + 1) * k])
                    .copied()
                    .filter(|&s| s != NO_ADAPTER && ranks[s as usize] > 0)
                    .collect();
                used.sort_unstable();
                used.dedup();
                used.iter()
                    .map(|&s| ranks[s as usize] as usize)
                    .sum::<usize>()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn the_columns_bound_holds_for_every_plan() {
        // StdRng, seeded: plans of every size against stacks of mixed ranks.
        use rand::{rngs::StdRng, Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(7);
        let mut next = |n: u64| rng.random_range(0..n) as u32;
        for _ in 0..2000 {
            let n_slots = 1 + next(40) as usize;
            let ranks: Vec<u32> = (0..n_slots).map(|_| next(5) * 4).collect();
            let k = 1 + next(5) as usize;
            let n_seg = 1 + next(40) as usize;
            let slots: Vec<u32> = (0..n_seg * k)
                .map(|_| {
                    if next(4) == 0 {
                        NO_ADAPTER
                    } else {
                        next(n_slots as u64)
                    }
                })
                .collect();
            let seg: Vec<u32> = (0..1 + next(70)).map(|_| next(n_seg as u64)).collect();
            let mut desc = ranks.clone();
            desc.sort_unstable_by(|a, b| b.cmp(a));
            let bound = cols_bound(&desc, k);
            let need = largest_union(&seg, &slots, k, &ranks);
            assert!(need <= bound, "union of {need} columns, bound {bound}");
            assert_eq!(bound % 8, 0);
        }
    }

    #[test]
    fn the_bound_is_tight_when_a_tile_uses_every_adapter() {
        // 8 adapters of rank 8, 3 per token: 16 tokens can use all 8, i.e. 64 columns.
        assert_eq!(cols_bound(&[8; 8], 3), 64);
        // One entry per token: at most 16 distinct adapters per tile.
        assert_eq!(cols_bound(&[16; 40], 1), 16 * 16);
        // Ranks 5 and 3 use 8 columns; 13 rounds up to 16.
        assert_eq!(cols_bound(&[5, 3], 2), 8);
        assert_eq!(cols_bound(&[8, 5], 2), 16);
        assert_eq!(cols_bound(&[], 3), 0);
        assert_eq!(expand_shared_bytes(64), (16 * 68 + 128) * 4);
    }
}
