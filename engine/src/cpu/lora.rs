//! `lora_shrink` / `lora_expand`: the sentence-level fused multi-LoRA pair (DESIGN.md).
//!
//! Every token looks up its segment's mixture (up to K adapter slots with weights) and applies
//! those adapters' stacked A and B rows; adapters of different ranks sit side by side in one
//! stack through the rank-offset table.

use half::f16;
use rayon::prelude::*;

use super::{check_len, dot};
use crate::backend::{LoraStackHost, StepPlan, NO_ADAPTER};
use crate::error::{Error, Result};

/// A LoRA stack as the CPU backend holds it: the stack's tables; A in f32 (`stack.a`) or f16;
/// B^T re-laid in column blocks (`column_blocks`), in f32 (`bt`) or f16. f16 is
/// `--lora-f16`: half the bytes that decode streams per adapter. `stack.bt` is always empty,
/// and `stack.a` too when A is f16.
#[derive(Debug, Clone)]
pub struct CpuLora {
    /// Shapes, rank-offset table, scales, and A in f32 unless `half` holds it.
    pub stack: LoraStackHost,
    /// B^T in column blocks, f32 (empty when `half` holds it).
    bt: Vec<f32>,
    /// Rows of B^T (the sum of the slots' ranks): the height of each column block.
    rows: usize,
    /// A and B^T as f16 bit patterns, when stored in f16.
    pub half: Option<HalfLora>,
}

/// A and B^T of a stack in f16 (bit patterns), laid out as [`LoraStackHost::a`] and the
/// column blocks of `column_blocks`.
#[derive(Debug, Clone)]
pub struct HalfLora {
    a: Vec<u16>,
    bt: Vec<u16>,
}

/// `bt` (`[rows, o]`, row-major) re-laid as `o / COLS` blocks of `[rows, COLS]` (the last
/// zero-padded): the expand of one block of output columns then reads each adapter's rows as
/// one contiguous run instead of `rank` pieces `o` values apart, which the prefetchers follow.
fn column_blocks<T: Copy + Default>(bt: &[T], rows: usize, o: usize) -> Vec<T> {
    let mut out = vec![T::default(); o.div_ceil(COLS) * rows * COLS];
    for r in 0..rows {
        for (c, &v) in bt[r * o..(r + 1) * o].iter().enumerate() {
            out[((c / COLS) * rows + r) * COLS + c % COLS] = v;
        }
    }
    out
}

impl CpuLora {
    /// Holds `s` in f32, or in f16 (rounded to nearest) when `f16_values`.
    pub fn new(s: &LoraStackHost, f16_values: bool) -> Self {
        let rows = s.total_rank();
        let mut stack = LoraStackHost {
            bt: Vec::new(),
            ..s.clone()
        };
        if !f16_values {
            return Self {
                stack,
                bt: column_blocks(&s.bt, rows, s.out_dim),
                rows,
                half: None,
            };
        }
        let bits =
            |v: &[f32]| -> Vec<u16> { v.iter().map(|&x| f16::from_f32(x).to_bits()).collect() };
        let half = HalfLora {
            a: bits(&s.a),
            bt: column_blocks(&bits(&s.bt), rows, s.out_dim),
        };
        stack.a = Vec::new();
        Self {
            stack,
            bt: Vec::new(),
            rows,
            half: Some(half),
        }
    }

    /// `dot(A row `r`, x)`.
    #[inline]
    fn dot_a(&self, r: usize, x: &[f32]) -> f32 {
        let d = self.stack.in_dim;
        match &self.half {
            None => dot(&self.stack.a[r * d..(r + 1) * d], x),
            Some(h) => dot_f16(&h.a[r * d..(r + 1) * d], x),
        }
    }
}

fn dot_f16(a: &[u16], x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if super::avx512::available() {
        // SAFETY: the CPU has AVX-512F and F16C.
        return unsafe { super::avx512::dot_f16(a, x) };
    }
    a.iter()
        .zip(x)
        .map(|(&a, x)| f16::from_bits(a).to_f32() * x)
        .sum()
}

/// Resolves entry `k` of token `t`'s segment: `(row offset, rank, weight * scale)`, or `None`
/// when the entry is unused or the adapter does not target this module.
#[inline]
fn entry(l: &LoraStackHost, step: &StepPlan, t: usize, k: usize) -> Option<(usize, usize, f32)> {
    let s = step.segment_of_token[t] as usize;
    let slot = step.mix_slots[s * step.mix_k + k];
    if slot == NO_ADAPTER {
        return None;
    }
    let slot = slot as usize;
    let rank = *l.slot_rank.get(slot)? as usize;
    (rank > 0).then(|| {
        (
            l.slot_offset[slot] as usize,
            rank,
            step.mix_weights[s * step.mix_k + k] * l.slot_scale[slot],
        )
    })
}

fn check(l: &LoraStackHost, step: &StepPlan, n_tokens: usize) -> Result<()> {
    step.check_lora(n_tokens, l.slot_rank.len())
}

/// `u[t, k, j] = w_k * scale_k * dot(A_k[j], x[t])`; `u` is `[T, K, max_rank]`.
pub fn lora_shrink(
    x: &[f32],
    cl: &CpuLora,
    step: &StepPlan,
    n_tokens: usize,
    u: &mut [f32],
) -> Result<()> {
    let l = &cl.stack;
    check(l, step, n_tokens)?;
    let (kk, mr, d) = (step.mix_k, l.max_rank, l.in_dim);
    check_len("lora_shrink", "x", x.len(), n_tokens * d)?;
    check_len("lora_shrink", "u", u.len(), n_tokens * kk * mr)?;
    let entry_of = |t: usize, k: usize, uk: &mut [f32]| {
        shrink_entry(cl, step, t, k, &x[t * d..(t + 1) * d], uk)
    };
    let token_entry = |k: usize, uk: &mut [f32]| entry_of(0, k, uk);
    let token = |t: usize, ut: &mut [f32]| {
        for (k, uk) in ut.chunks_mut(mr).enumerate() {
            entry_of(t, k, uk);
        }
    };
    let u = &mut u[..n_tokens * kk * mr];
    if n_tokens == 1 {
        // Decode: the adapters' A blocks stream from memory, faster from every core at once.
        u.par_chunks_mut(mr)
            .enumerate()
            .for_each(|(k, uk)| token_entry(k, uk));
    } else {
        u.par_chunks_mut(kk * mr)
            .enumerate()
            .for_each(|(t, ut)| token(t, ut));
    }
    Ok(())
}

/// `y[t] += sum_k sum_{j<rank_k} u[t, k, j] * B_k[:, j]` (B stored transposed in `bt`).
pub fn lora_expand(
    u: &[f32],
    cl: &CpuLora,
    step: &StepPlan,
    n_tokens: usize,
    y: &mut [f32],
) -> Result<()> {
    let l = &cl.stack;
    check(l, step, n_tokens)?;
    let (kk, mr, o) = (step.mix_k, l.max_rank, l.out_dim);
    check_len("lora_expand", "u", u.len(), n_tokens * kk * mr)?;
    check_len("lora_expand", "y", y.len(), n_tokens * o)?;
    // One token (decode) splits its row over the threads in whole column chunks (B streams
    // from memory, faster from every core at once); several tokens go one per task.
    let parts = if n_tokens == 1 {
        rayon::current_num_threads().clamp(1, o.div_ceil(COLS))
    } else {
        1
    };
    let span = o.div_ceil(parts).div_ceil(COLS) * COLS;
    y[..n_tokens * o]
        .par_chunks_mut(o)
        .enumerate()
        .for_each(|(t, yt)| {
            yt.par_chunks_mut(span).enumerate().for_each(|(c, yc)| {
                let c0 = c * span;
                expand_columns(cl, step, t, &u[t * kk * mr..(t + 1) * kk * mr], c0, yc);
            });
        });
    Ok(())
}

/// Entry `k` of token `t`'s mixture: `uk[j] = w_k * scale_k * dot(A_k[j], xt)` for
/// `j < rank_k` (nothing when the entry is unused or does not target this module).
pub(super) fn shrink_entry(
    cl: &CpuLora,
    step: &StepPlan,
    t: usize,
    k: usize,
    xt: &[f32],
    uk: &mut [f32],
) {
    if let Some((off, rank, ws)) = entry(&cl.stack, step, t, k) {
        for (j, u) in uk[..rank].iter_mut().enumerate() {
            *u = ws * cl.dot_a(off + j, xt);
        }
    }
}

/// Columns `c0..c0 + y.len()` of token `t`'s expand: `y += sum_k sum_j ut[k, j] * B_k[c, j]`,
/// `ut` = the token's `[K, max_rank]` shrink output.
pub(super) fn expand_columns(
    cl: &CpuLora,
    step: &StepPlan,
    t: usize,
    ut: &[f32],
    c0: usize,
    y: &mut [f32],
) {
    let (l, mr) = (&cl.stack, cl.stack.max_rank);
    debug_assert!(
        c0.is_multiple_of(COLS),
        "expand_columns: c0 {c0} is not a block start"
    );
    let rows = (0..step.mix_k).filter_map(|k| entry(l, step, t, k).map(|e| (k, e)));
    let rows =
        rows.flat_map(|(k, (off, rank, _))| (0..rank).map(move |j| (ut[k * mr + j], off + j)));
    for (ci, yc) in y.chunks_mut(COLS).enumerate() {
        // Row `r` of this column block starts at `(block * rows + r) * COLS`.
        let base = (c0 / COLS + ci) * cl.rows;
        let starts = rows.clone().map(|(coef, r)| (coef, (base + r) * COLS));
        match &cl.half {
            None => add_rows(yc, &cl.bt, starts),
            Some(h) => add_rows_f16(yc, &h.bt, starts),
        }
    }
}

/// Checks a stack against a step's plan (segments and slots in range) and widths.
pub(super) fn check_stack(
    cl: &CpuLora,
    step: &StepPlan,
    n_tokens: usize,
    n_in: usize,
    n_out: usize,
) -> Result<()> {
    check(&cl.stack, step, n_tokens)?;
    if cl.stack.in_dim != n_in || cl.stack.out_dim != n_out {
        return Err(Error::invalid(format!(
            "lora: stack is {} -> {}, the layer {n_in} -> {n_out}",
            cl.stack.in_dim, cl.stack.out_dim
        )));
    }
    Ok(())
}

/// Output columns held in registers while every adapter row is added into them, and the width
/// of B^T's column blocks. Callers start their column ranges on a multiple of it.
pub(super) const COLS: usize = 64;

/// `y[i] += sum (coef * bt[start + i])` over `rows` = `(coef, start)`: `y` is walked in chunks
/// of [`COLS`] kept in registers across all the rows, so it is loaded and stored once (not
/// once per row); the AVX-512 build of it where the CPU has AVX-512.
fn add_rows<I: Iterator<Item = (f32, usize)> + Clone>(y: &mut [f32], bt: &[f32], rows: I) {
    #[cfg(target_arch = "x86_64")]
    if super::avx512::available() {
        // SAFETY: the CPU has AVX-512F.
        return unsafe { add_rows_avx512(y, bt, rows) };
    }
    add_rows_generic(y, bt, rows)
}

/// [`add_rows`] with `bt` in f16.
fn add_rows_f16<I: Iterator<Item = (f32, usize)> + Clone>(y: &mut [f32], bt: &[u16], rows: I) {
    #[cfg(target_arch = "x86_64")]
    if super::avx512::available() {
        for (_, start) in rows.clone() {
            assert!(start + y.len() <= bt.len(), "lora_expand: row out of range");
        }
        // SAFETY: the CPU has AVX-512F and F16C; every row lies in `bt` (checked above).
        return unsafe { super::avx512::add_rows_f16(y, bt, rows) };
    }
    for (coef, start) in rows {
        let b = &bt[start..start + y.len()];
        y.iter_mut()
            .zip(b)
            .for_each(|(y, &b)| *y += coef * f16::from_bits(b).to_f32());
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn add_rows_avx512<I: Iterator<Item = (f32, usize)> + Clone>(
    y: &mut [f32],
    bt: &[f32],
    rows: I,
) {
    add_rows_generic(y, bt, rows)
}

#[inline(always)]
fn add_rows_generic<I: Iterator<Item = (f32, usize)> + Clone>(y: &mut [f32], bt: &[f32], rows: I) {
    for (ci, yc) in y.chunks_mut(COLS).enumerate() {
        let c0 = ci * COLS;
        if yc.len() == COLS {
            let mut acc = [0f32; COLS];
            acc.copy_from_slice(yc);
            for (coef, start) in rows.clone() {
                let b: &[f32; COLS] = bt[start + c0..start + c0 + COLS].try_into().unwrap();
                for i in 0..COLS {
                    acc[i] += coef * b[i];
                }
            }
            yc.copy_from_slice(&acc);
        } else {
            for (coef, start) in rows.clone() {
                let b = &bt[start + c0..start + c0 + yc.len()];
                yc.iter_mut().zip(b).for_each(|(y, b)| *y += coef * b);
            }
        }
    }
}
