//! `linears` on the CPU: the linear layers that read one input (q/k/v, gate/up, o, down),
//! fused for decode. One token's step is a few hundred small ops; each parallel pass costs a
//! fork and a join, and the adapters' rows stream from memory. So a decode `linears` call is
//! two passes instead of three per module: every LoRA shrink of every job, then every job's
//! gemv row blocks, each block adding its own columns of the LoRA expand while they are hot.
//! Several tokens (prefill, batches) go op by op ([`crate::backend::linears_each`]).

use std::cell::RefCell;

use rayon::prelude::*;

use super::int8::Q8_BUF;
use super::lora::{check_stack, expand_columns, expand_rows, shrink_entry};
use super::matmul::{gemv_rows, SendPtr, GEMV_CHUNK};
use super::packed_dot::block_sums;
use super::{check_len, CpuBackend, CpuWeight};
use crate::backend::{LinearJob, StepPlan};
use crate::error::{Error, Result};
use crate::tensor::Packed;

// Row blocks start where B^T's column blocks do.
const _: () = assert!(GEMV_CHUNK.is_multiple_of(super::lora::COLS));

/// Block sums, shrink outputs, expand `(coef, row)` lists.
type Scratch = (Vec<f32>, Vec<f32>, Vec<(f32, usize)>);

/// Most jobs fused in one call (the model passes up to three).
pub const MAX_JOBS: usize = 4;

thread_local! {
    /// The calling thread's block sums of `x`, LoRA shrink outputs and expand rows, reused
    /// across calls.
    static SCRATCH: RefCell<Scratch> = const { RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

/// One token through up to [`MAX_JOBS`] linears that read `x` (`n_in` values); `int8`: Q4_0 /
/// Q4_1 / Q8_0 weights meet `x` quantised to 8 bits ([`super::CpuOptions::int8`]).
pub fn decode_linears(
    x: &[f32],
    n_in: usize,
    step: &StepPlan,
    jobs: &mut [LinearJob<'_, CpuBackend>],
    int8: bool,
) -> Result<()> {
    if jobs.len() > MAX_JOBS {
        return Err(Error::invalid(format!(
            "linears: {} jobs, at most {MAX_JOBS} fuse",
            jobs.len()
        )));
    }
    check_jobs(x, 1, n_in, step, jobs)?;
    let x = &x[..n_in];
    let kk = step.mix_k;
    // Each job's shrink output `[K, max_rank]` at `u_at[i]`.
    let mut u_at = [0usize; MAX_JOBS + 1];
    for (i, j) in jobs.iter().enumerate() {
        u_at[i + 1] = u_at[i] + j.lora.map_or(0, |l| kk * l.stack.max_rank);
    }
    // Taken out of the cell, not borrowed: the passes fork, and a waiting worker may run
    // another step's `linears` meanwhile.
    let (mut xsum, mut u, mut rows) = SCRATCH.take();
    block_sums(x, &mut xsum);
    fn int8_of(w: &CpuWeight, int8: bool, k: usize) -> Option<&Packed> {
        w.packed
            .as_ref()
            .filter(|p| int8 && super::int8::supports(p.kind, k))
    }
    let mut xq = Q8_BUF.take();
    if jobs.iter().any(|j| int8_of(j.w, int8, n_in).is_some()) {
        xq.quantize(x, 1, n_in);
    }
    u.clear();
    u.resize(u_at[jobs.len()], 0.0);

    let jobs_ro: &[LinearJob<'_, CpuBackend>] = jobs;
    if u_at[jobs.len()] > 0 {
        let u_ptr = SendPtr(u.as_mut_ptr());
        (0..jobs.len() * kk).into_par_iter().for_each(|e| {
            let (i, k) = (e / kk, e % kk);
            if let Some(l) = jobs_ro[i].lora {
                let mr = l.stack.max_rank;
                // SAFETY: entry (i, k) alone writes `u[u_at[i] + k * mr..][..mr]`, inside `u`.
                let uk = unsafe {
                    std::slice::from_raw_parts_mut(u_ptr.get().add(u_at[i] + k * mr), mr)
                };
                shrink_entry(l, step, 0, k, x, uk);
            }
        });
    }

    // Each job's expand rows at `rows_at[i]..rows_at[i + 1]`, listed once for all its blocks.
    rows.clear();
    let mut rows_at = [0usize; MAX_JOBS + 1];
    for (i, j) in jobs.iter().enumerate() {
        if let Some(l) = j.lora {
            expand_rows(l, step, 0, &u[u_at[i]..u_at[i + 1]], &mut rows);
        }
        rows_at[i + 1] = rows.len();
    }

    // Row blocks of every job, numbered one after the other.
    let mut block_at = [0usize; MAX_JOBS + 1];
    let mut outs = [SendPtr(std::ptr::null_mut()); MAX_JOBS];
    for (i, j) in jobs.iter_mut().enumerate() {
        block_at[i + 1] = block_at[i] + j.n_out.div_ceil(GEMV_CHUNK);
        outs[i] = SendPtr(j.out.as_mut_ptr());
    }
    let jobs_ro: &[LinearJob<'_, CpuBackend>] = jobs;
    let (rows_ro, xq_ro) = (&rows[..], &xq);
    (0..block_at[jobs_ro.len()])
        .into_par_iter()
        .for_each(|blk| {
            let i = (0..jobs_ro.len())
                .rfind(|&i| block_at[i] <= blk)
                .unwrap_or(0);
            let j = &jobs_ro[i];
            let r0 = (blk - block_at[i]) * GEMV_CHUNK;
            let len = GEMV_CHUNK.min(j.n_out - r0);
            // SAFETY: block `blk` alone writes rows `r0..r0 + len` of job `i`'s output, which
            // holds `n_out` values (checked above); the job's `&mut` is not used meanwhile.
            let y = unsafe { std::slice::from_raw_parts_mut(outs[i].get().add(r0), len) };
            match int8_of(j.w, int8, n_in) {
                Some(p) => super::int8::gemv_rows(xq_ro.row(0), p, n_in, r0, y),
                None => gemv_rows(x, &xsum, j.w, r0, y),
            }
            if let Some(b) = j.bias {
                y.iter_mut()
                    .zip(&b[r0..r0 + len])
                    .for_each(|(y, b)| *y += b);
            }
            if let Some(l) = j.lora {
                expand_columns(l, &rows_ro[rows_at[i]..rows_at[i + 1]], r0, y);
            }
        });
    SCRATCH.set((xsum, u, rows));
    Q8_BUF.set(xq);
    Ok(())
}

/// Checks `linears` of `n_tokens` tokens: `x`, every job's weight shape, output, bias and
/// LoRA stack.
pub(super) fn check_jobs(
    x: &[f32],
    n_tokens: usize,
    n_in: usize,
    step: &StepPlan,
    jobs: &[LinearJob<'_, CpuBackend>],
) -> Result<()> {
    check_len("linears", "x", x.len(), n_tokens * n_in)?;
    for j in jobs {
        if j.w.cols != n_in || j.w.rows != j.n_out {
            return Err(Error::invalid(format!(
                "linears: weight [{}, {}], the layer is {n_in} -> {}",
                j.w.rows, j.w.cols, j.n_out
            )));
        }
        check_len("linears", "out", j.out.len(), n_tokens * j.n_out)?;
        if let Some(b) = j.bias {
            check_len("linears", "bias", b.len(), j.n_out)?;
        }
        if let Some(l) = j.lora {
            check_stack(l, step, n_tokens, n_in, j.n_out)?;
        }
    }
    Ok(())
}
