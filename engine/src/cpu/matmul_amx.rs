//! `matmul` of several rows on the AMX tile unit (`CpuOptions::amx`, [`super::amx`]): output
//! features in tasks of 32 over the threads, the input rows packed once per call.

use std::cell::RefCell;

use rayon::prelude::*;

use super::amx::{self, Extra, Weights, FEATURE_BLOCK};
use super::matmul::{SendPtr, TILE_BUF};
use super::packed_dot::dequantize;
use super::CpuWeight;

thread_local! {
    /// The calling thread's bf16 input rows in the AMX pair layout, reused across calls.
    static A_BF16: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
    /// Each thread's bf16 weight tile (rows of `k`, the AMX A operand), reused across calls.
    static B_BF16: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
}

/// Several rows on the AMX tile unit ([`super::amx_available`]): `x` rounded to bf16 once,
/// then [`amx_tiles_packed`].
pub(super) fn amx_tiles(x: &[f32], w: &CpuWeight, rows: usize, out: &mut [f32]) {
    assert!(x.len() >= rows * w.cols, "matmul: short buffers");
    // Taken out of the cell, not borrowed: the tiles fork, and a waiting worker may run
    // another step's matmul meanwhile.
    let mut a = A_BF16.take();
    amx::pack_rows(x, rows, w.cols, &mut a);
    amx_tiles_packed(&a, w, rows, out, |_| None);
    A_BF16.set(a);
}

/// `out = x @ w^T` (plus, per tile of features starting at `c0`, the product `extra(c0)`)
/// on the AMX tile unit, `xp` = `x` packed by [`amx::pack_rows`]. Tasks of 32 features: up
/// to 32 rows pack each weight tile as they multiply it, straight from Q4_0/Q4_1/Q8_0 blocks
/// or f32; more rows lay the tile out in bf16 first (F16 and BF16 blocks dequantised to f32
/// before that) and add `extra` in a second pass.
pub(super) fn amx_tiles_packed<'e>(
    xp: &[u16],
    w: &CpuWeight,
    rows: usize,
    out: &mut [f32],
    extra: impl Fn(usize) -> Option<Extra<'e>> + Sync,
) {
    let (n, k) = (w.rows, w.cols);
    assert!(
        out.len() >= rows * n && xp.len() >= rows.div_ceil(32) * 32 * amx::padded_k(k),
        "matmul: short buffers"
    );
    let out_ptr = SendPtr(out.as_mut_ptr());
    // Tasks of one 32-feature block: the packed weights (at most 32 x 1536 bf16) stay in L2,
    // and 2 threads split the small projections (192 or 576 features) evenly.
    (0..n.div_ceil(FEATURE_BLOCK))
        .into_par_iter()
        .for_each(|t| {
            let (c0, c1) = (t * FEATURE_BLOCK, ((t + 1) * FEATURE_BLOCK).min(n));
            let e = extra(c0);
            let o = out_ptr.get().wrapping_add(c0);
            // The tile's weights as the packers read them (F16 and BF16 blocks: none).
            let tile = match &w.packed {
                None => Some(Weights::F32(&w.data[c0 * k..c1 * k])),
                Some(p) if p.kind.has_block_kernels() => {
                    let rb = p.kind.row_bytes(k);
                    Some(Weights::Blocks {
                        bsize: p.kind.block().1,
                        bytes: &p.bytes[c0 * rb..c1 * rb],
                    })
                }
                Some(_) => None,
            };
            if let (Some(tile), true) = (tile, rows <= 32) {
                // SAFETY: AMX checked by the caller; `xp` is `x` packed for these rows and
                // `k`; this task alone writes columns `c0..c1` of the `rows x n` output
                // (asserted above); the kernel checks the weights and `extra`.
                return unsafe {
                    amx::matmul_weights(tile, c1 - c0, k, xp, rows, o, n, e.as_ref())
                };
            }
            B_BF16.with_borrow_mut(|b| {
                match (tile, &w.packed) {
                    (Some(tile), _) => amx::pack_weights(tile, c1 - c0, k, b),
                    (None, Some(p)) => TILE_BUF.with_borrow_mut(|f| {
                        let rb = p.kind.row_bytes(k);
                        f.resize((c1 - c0) * k, 0.0);
                        dequantize(p.kind, &p.bytes[c0 * rb..c1 * rb], f);
                        amx::pack_weights(Weights::F32(f), c1 - c0, k, b)
                    }),
                    (None, None) => unreachable!("f32 weights are a tile"),
                }
                // SAFETY: as above; `b` comes from the packer for these features and `k`.
                unsafe { amx::matmul(b, c1 - c0, xp, rows, k, o, n, false) };
            });
            if let Some(e) = e {
                e.check(c1 - c0, rows);
                // SAFETY: as above, the operands checked just now.
                unsafe { amx::matmul(e.w, c1 - c0, e.x, rows, e.k, o, n, true) };
            }
        });
}
