//! `lora_shrink` / `lora_expand`: the sentence-level fused multi-LoRA pair (DESIGN.md).
//!
//! Every token looks up its segment's mixture (up to K adapter slots with weights) and applies
//! those adapters' stacked A and B rows; adapters of different ranks sit side by side in one
//! stack through the rank-offset table.

use rayon::prelude::*;

use super::{check_len, dot};
use crate::backend::{LoraStackHost, StepPlan, NO_ADAPTER};
use crate::error::{Error, Result};

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
    for &s in &step.segment_of_token[..n_tokens] {
        if s as usize >= step.n_segments() {
            return Err(Error::invalid(format!(
                "lora: token refers to segment {s}, the step has {}",
                step.n_segments()
            )));
        }
    }
    for &slot in &step.mix_slots {
        if slot != NO_ADAPTER && slot as usize >= l.slot_rank.len() {
            return Err(Error::invalid(format!(
                "lora: mixture names slot {slot}, {} adapters are loaded",
                l.slot_rank.len()
            )));
        }
    }
    Ok(())
}

/// `u[t, k, j] = w_k * scale_k * dot(A_k[j], x[t])`; `u` is `[T, K, max_rank]`.
pub fn lora_shrink(
    x: &[f32],
    l: &LoraStackHost,
    step: &StepPlan,
    n_tokens: usize,
    u: &mut [f32],
) -> Result<()> {
    check(l, step, n_tokens)?;
    let (kk, mr, d) = (step.mix_k, l.max_rank, l.in_dim);
    check_len("lora_shrink", "x", x.len(), n_tokens * d)?;
    check_len("lora_shrink", "u", u.len(), n_tokens * kk * mr)?;
    // Nested parallelism (tokens, then adapter entries) keeps the cores busy when decoding one
    // token as well as in prefill; finer tasks cost more in scheduling than they save.
    u[..n_tokens * kk * mr]
        .par_chunks_mut(kk * mr)
        .enumerate()
        .for_each(|(t, ut)| {
            let xt = &x[t * d..(t + 1) * d];
            ut.par_chunks_mut(mr).enumerate().for_each(|(k, uk)| {
                if let Some((off, rank, ws)) = entry(l, step, t, k) {
                    for (j, u) in uk[..rank].iter_mut().enumerate() {
                        *u = ws * dot(&l.a[(off + j) * d..(off + j + 1) * d], xt);
                    }
                }
            });
        });
    Ok(())
}

/// `y[t] += sum_k sum_{j<rank_k} u[t, k, j] * B_k[:, j]` (B stored transposed in `bt`).
pub fn lora_expand(
    u: &[f32],
    l: &LoraStackHost,
    step: &StepPlan,
    n_tokens: usize,
    y: &mut [f32],
) -> Result<()> {
    check(l, step, n_tokens)?;
    let (kk, mr, o) = (step.mix_k, l.max_rank, l.out_dim);
    check_len("lora_expand", "u", u.len(), n_tokens * kk * mr)?;
    check_len("lora_expand", "y", y.len(), n_tokens * o)?;
    /// Output features per task: big enough to amortise scheduling, small enough to split
    /// one token's row over the cores.
    const COLS: usize = 512;
    y[..n_tokens * o]
        .par_chunks_mut(o)
        .enumerate()
        .for_each(|(t, yt)| {
            yt.par_chunks_mut(COLS).enumerate().for_each(|(c, yc)| {
                let c0 = c * COLS;
                for k in 0..kk {
                    if let Some((off, rank, _)) = entry(l, step, t, k) {
                        for j in 0..rank {
                            let cu = u[(t * kk + k) * mr + j];
                            let b = &l.bt[(off + j) * o + c0..(off + j) * o + c0 + yc.len()];
                            yc.iter_mut().zip(b).for_each(|(y, b)| *y += cu * b);
                        }
                    }
                }
            });
        });
    Ok(())
}
