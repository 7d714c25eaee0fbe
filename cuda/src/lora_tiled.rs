//! Tiled LoRA: `lora_shrink` and `lora_expand` over tiles of consecutive tokens on CUDA cores
//! ([`crate::Experimental::tiled_lora`]; kernels `lora_*_tiled*` in `lora_tiled.cu`).
//!
//! The segment kernels read an adapter's A and B^T rows once per token; a tile's tokens that
//! name the same adapter (every token of a segment does) share one read here, held in
//! registers while each token is applied, and the shrink splits the rank rows over blocks so
//! that a 64-token step still fills the GPU (lora_bench's shape: 192 shrink blocks of 2 rows
//! and 256 expand blocks, where the segment shrink had 192 blocks each walking whole rows
//! token by token).
//! f32 products in a fixed order: no TF32 rounding (unlike [`crate::sgmv`]) and deterministic;
//! the expand adds each output's terms in the segment kernel's order. The u buffer and the
//! ops' semantics are the segment kernels', so either kernel of the pair may be another's.
//!
//! Grids depend only on the step's shape and the stack, so recorded graphs replay them.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use dlp_engine::Result;

use crate::counts::LaunchCounters;
use crate::launch::{cfg, int};
use crate::{CudaBackend, CudaLora, CudaStep};

/// Tokens per tile (`TILED_TOKENS` in lora_tiled.cu).
pub const TILED_TOKENS: usize = 8;
/// Threads per shrink block (`TILED_SHRINK_THREADS`).
const SHRINK_THREADS: u32 = 256;
/// Threads per expand block: one output column each.
const EXPAND_THREADS: u32 = 128;
/// Dynamic shared memory the expand may use without an opt-in.
const EXPAND_SHARED_MAX: usize = 48 * 1024;
/// Largest y (and z) grid dimension of a launch.
const GRID_YZ_MAX: usize = 65_535;

/// The shrink's grid for `n_tokens` tokens, mixture size `k`, on a stack of `max_rank` whose
/// rows hold `in_dim` values of `elem_bytes` each, `rows` rank rows per block (`TILED_ROWS`,
/// [`crate::tune::Tune::tiled_rows`]), or `None` where the tiled kernel does not take the
/// shape: rows not a whole number of 16-byte loads, or a grid past CUDA's limits.
pub fn shrink_grid(
    n_tokens: usize,
    k: usize,
    max_rank: usize,
    in_dim: usize,
    elem_bytes: usize,
    rows: usize,
) -> Option<(u32, u32, u32)> {
    let z = max_rank.div_ceil(rows.max(1));
    let fits = (in_dim * elem_bytes).is_multiple_of(16) && k <= GRID_YZ_MAX && z <= GRID_YZ_MAX;
    let x = u32::try_from(n_tokens.div_ceil(TILED_TOKENS)).ok()?;
    (fits && n_tokens > 0 && k > 0 && z > 0).then_some((x, k as u32, z as u32))
}

/// Bytes of dynamic shared memory of the tiled expand: the tile's u `[TILED_TOKENS, k,
/// max_rank]` and its entries' offsets and ranks `[TILED_TOKENS, k]` each.
pub fn expand_shared_bytes(k: usize, max_rank: usize) -> usize {
    TILED_TOKENS * k * (max_rank + 2) * 4
}

/// The expand's grid and shared bytes, or `None` where the tile's u does not fit shared
/// memory or the tiles pass CUDA's y limit.
pub fn expand_grid(
    n_tokens: usize,
    k: usize,
    max_rank: usize,
    out_dim: usize,
) -> Option<((u32, u32, u32), u32)> {
    let shared = expand_shared_bytes(k, max_rank);
    let tiles = n_tokens.div_ceil(TILED_TOKENS);
    let x = u32::try_from(out_dim.div_ceil(EXPAND_THREADS as usize)).ok()?;
    (shared <= EXPAND_SHARED_MAX && tiles <= GRID_YZ_MAX && tiles > 0 && x > 0)
        .then_some(((x, tiles as u32, 1), shared as u32))
}

/// Bytes per stored value of the stack's A and B^T.
fn elem_bytes(l: &CudaLora) -> usize {
    if l.a16.is_some() {
        2
    } else {
        4
    }
}

impl CudaBackend {
    /// `lora_shrink` on the tiled kernel, if the switch is on and it takes the shape
    /// ([`shrink_grid`]); `Ok(false)` where it does not (the caller launches another).
    /// Sizes and the plan are checked by the caller.
    pub(crate) fn tiled_shrink(
        &self,
        x: &CudaSlice<f32>,
        l: &CudaLora,
        step: &CudaStep,
        n_tokens: usize,
        u: &mut CudaSlice<f32>,
    ) -> Result<bool> {
        let rows = self.tune.tiled_rows as usize;
        let grid = shrink_grid(
            n_tokens,
            step.plan.mix_k,
            l.max_rank,
            l.in_dim,
            elem_bytes(l),
            rows,
        );
        let launch = grid.map(|g| cfg(g, SHRINK_THREADS, 0));
        self.tiled_launch(
            "lora_shrink (tiled)",
            false,
            launch,
            x,
            l,
            step,
            n_tokens,
            u,
        )
    }

    /// `lora_expand` on the tiled kernel, if the switch is on and it takes the shape
    /// ([`expand_grid`]); `Ok(false)` where it does not.
    pub(crate) fn tiled_expand(
        &self,
        u: &CudaSlice<f32>,
        l: &CudaLora,
        step: &CudaStep,
        n_tokens: usize,
        y: &mut CudaSlice<f32>,
    ) -> Result<bool> {
        let launch = expand_grid(n_tokens, step.plan.mix_k, l.max_rank, l.out_dim)
            .map(|(g, shared)| cfg(g, EXPAND_THREADS, shared));
        self.tiled_launch("lora_expand (tiled)", true, launch, u, l, step, n_tokens, y)
    }

    /// One kernel of the tiled pair (the expand's with `expand`) on `launch`, counted, when the
    /// switch is on and the shape has a launch; `Ok(false)` otherwise.
    #[allow(clippy::too_many_arguments)]
    fn tiled_launch(
        &self,
        op: &str,
        expand: bool,
        launch: Option<LaunchConfig>,
        input: &CudaSlice<f32>,
        l: &CudaLora,
        step: &CudaStep,
        n_tokens: usize,
        out: &mut CudaSlice<f32>,
    ) -> Result<bool> {
        let (true, Some(launch)) = (self.options.experimental.tiled_lora, launch) else {
            return Ok(false);
        };
        let t = int(op, n_tokens)?;
        let kernels = if expand {
            (&self.k.lora_expand_tiled, &self.k.lora_expand_tiled_bf16)
        } else {
            (&self.k.lora_shrink_tiled, &self.k.lora_shrink_tiled_bf16)
        };
        let tables = step.lora_tables();
        let mut a = self.lora_args(kernels, input, l, &tables, expand);
        a.arg(&t).arg(out);
        self.go(op, a, launch)?;
        LaunchCounters::bump(&self.counts.tiled_lora);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shrink_takes_rows_of_whole_16_byte_loads() {
        // lora_bench's shape: 64 tokens in 8 tiles, K 3, rank 16 in 8 row pairs.
        assert_eq!(shrink_grid(64, 3, 16, 4096, 4, 2), Some((8, 3, 8)));
        assert_eq!(shrink_grid(64, 3, 16, 4096, 2, 2), Some((8, 3, 8)));
        // A partial tile and an odd rank still get their blocks.
        assert_eq!(shrink_grid(9, 1, 5, 12, 4, 2), Some((2, 1, 3)));
        // f32 rows need in_dim % 4 == 0, bf16 rows in_dim % 8 == 0.
        assert_eq!(shrink_grid(4, 2, 8, 6, 4, 2), None);
        assert_eq!(shrink_grid(4, 2, 8, 12, 2, 2), None);
        assert_eq!(shrink_grid(4, 2, 8, 16, 2, 2), Some((1, 2, 4)));
        // Nothing to launch, or grids past CUDA's limits.
        assert_eq!(shrink_grid(0, 2, 8, 16, 4, 2), None);
        assert_eq!(shrink_grid(4, 0, 8, 16, 4, 2), None);
        assert_eq!(shrink_grid(4, 2, 0, 16, 4, 2), None);
        assert_eq!(shrink_grid(4, 70_000, 8, 16, 4, 2), None);
        assert_eq!(shrink_grid(4, 2, 140_000, 16, 4, 2), None);
        // `tiled_rows`: 1 row a block (16 blocks for rank 16) to 8 (2 blocks).
        assert_eq!(shrink_grid(64, 3, 16, 4096, 4, 1), Some((8, 3, 16)));
        assert_eq!(shrink_grid(64, 3, 17, 4096, 4, 8), Some((8, 3, 3)));
    }

    #[test]
    fn the_expand_stages_a_tile_within_48_kib() {
        assert_eq!(expand_shared_bytes(3, 16), 8 * 3 * 18 * 4);
        assert_eq!(expand_grid(64, 3, 16, 4096), Some(((32, 8, 1), 1728)));
        // 129 columns take two blocks; 1 token one tile.
        assert_eq!(expand_grid(1, 1, 8, 129), Some(((2, 1, 1), 320)));
        // K 16 at rank 64: 33 KiB; K 16 at rank 96: 49 KiB, past the limit.
        assert!(expand_grid(8, 16, 64, 64).is_some());
        assert_eq!(expand_grid(8, 16, 96, 64), None);
        // More tiles than a y dimension holds.
        assert_eq!(expand_grid(8 * 65_536, 1, 8, 64), None);
        assert!(expand_grid(8 * 65_535, 1, 8, 64).is_some());
        assert_eq!(expand_grid(0, 1, 8, 64), None);
    }
}
