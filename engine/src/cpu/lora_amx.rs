//! The LoRA pair of several tokens on the AMX tile unit (`CpuOptions::amx`, `--cpu-amx`).
//!
//! A batch's tokens use different adapters, so the f32 path pairs each token with its own
//! rows: short products that run far below the FMA units' rate (about 16% of a batch-32
//! decode step). Here the shrink multiplies every token by the whole A stack (`tokens x
//! rank rows`, most of it for adapters the token does not use, on a unit several times as
//! fast) and keeps what each entry needs; the expand multiplies a matrix of coefficients
//! (each token's `(coef, row)` list, zeros elsewhere) by the whole B stack and adds it into
//! the output. Both are [`super::amx::matmul`] on bf16 copies of A and B packed at upload:
//! the same bf16 rounding as the base matmuls under this option.

use std::cell::RefCell;

use rayon::prelude::*;

use super::amx;
use super::lora::{entry, expand_rows, CpuLora};
use super::matmul::SendPtr;
use crate::backend::{LoraStackHost, StepPlan};

/// A stack's A (`rows` features of `in_dim`) and B (`out_dim` features of `rows`) as bf16
/// AMX weight tiles ([`amx::pack_weights`]).
#[derive(Debug, Clone)]
pub struct AmxLora {
    a: Vec<u16>,
    b: Vec<u16>,
}

impl AmxLora {
    /// Packs `s` (A `[rows, in]`, B^T `[rows, out]`, `rows` its total rank > 0).
    pub fn new(s: &LoraStackHost, rows: usize) -> Self {
        let (d, o) = (s.in_dim, s.out_dim);
        let mut a = Vec::new();
        amx::pack_weights(amx::Weights::F32(&s.a), rows, d, &mut a);
        // B row by row (`[out, rows]`): the tiles' A operand wants each output feature's
        // values along `k` (the rank rows).
        let mut b_rows = vec![0f32; o * rows];
        for r in 0..rows {
            for (c, &v) in s.bt[r * o..(r + 1) * o].iter().enumerate() {
                b_rows[c * rows + r] = v;
            }
        }
        let mut b = Vec::new();
        amx::pack_weights(amx::Weights::F32(&b_rows), o, rows, &mut b);
        Self { a, b }
    }

    /// Backs the tiles with huge pages ([`super::huge_pages`]).
    pub fn collapse_pages(&self) {
        super::huge_pages::collapse(&self.a);
        super::huge_pages::collapse(&self.b);
    }

    /// B as packed weights (`out_dim` features of `rows`).
    pub fn b(&self) -> &[u16] {
        &self.b
    }
}

/// Packed inputs (rows or coefficients), f32 products or coefficients, one token's expand
/// rows.
type Buffers = (Vec<u16>, Vec<f32>, Vec<(f32, usize)>);

thread_local! {
    /// The calling thread's buffers, reused across calls.
    static BUF: RefCell<Buffers> = const { RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

/// `out[t * n + f] (+)= sum_i x[t * k + i] * w[f, i]` for `t < tokens`, `f < n`: `x` packed
/// once, then [`product_packed`].
fn product(w: &[u16], n: usize, x: &[f32], tokens: usize, k: usize, out: &mut [f32], add: bool) {
    assert!(x.len() >= tokens * k, "lora_amx: short buffers");
    let mut xp = BUF.with_borrow_mut(|b| std::mem::take(&mut b.0));
    amx::pack_rows(x, tokens, k, &mut xp);
    product_packed(w, n, &xp, tokens, k, out, add);
    BUF.with_borrow_mut(|b| b.0 = xp);
}

/// [`product`] of rows already packed by [`amx::pack_rows`]: output features in tasks of
/// [`amx::FEATURE_BLOCK`] over the threads.
fn product_packed(
    w: &[u16],
    n: usize,
    xp: &[u16],
    tokens: usize,
    k: usize,
    out: &mut [f32],
    add: bool,
) {
    let kp = amx::padded_k(k);
    assert!(
        out.len() >= tokens * n
            && xp.len() >= tokens.div_ceil(32) * 32 * kp
            && w.len() >= n.div_ceil(32) * 32 * kp,
        "lora_amx: short buffers"
    );
    let out_ptr = SendPtr(out.as_mut_ptr());
    (0..n.div_ceil(amx::FEATURE_BLOCK))
        .into_par_iter()
        .for_each(|t| {
            let (f0, f1) = (
                t * amx::FEATURE_BLOCK,
                ((t + 1) * amx::FEATURE_BLOCK).min(n),
            );
            // SAFETY: AMX checked when the stack was packed; `w` holds `n` features packed
            // for `k` (features `f0..` start at `f0 * kp`), `xp` the tokens packed for `k`;
            // this task alone writes columns `f0..f1` of the `tokens x n` output (asserted).
            unsafe {
                amx::matmul(
                    &w[f0 * kp..],
                    f1 - f0,
                    xp,
                    tokens,
                    k,
                    out_ptr.get().add(f0),
                    n,
                    add,
                )
            }
        });
}

/// [`super::lora::lora_shrink`] of several tokens on AMX: every token times every A row, then
/// `u[t, k, j] = w_k * scale_k * full[t, off_k + j]` for each used entry.
pub fn shrink(x: &[f32], cl: &CpuLora, amx: &AmxLora, step: &StepPlan, n: usize, u: &mut [f32]) {
    let mut xp = BUF.with_borrow_mut(|b| std::mem::take(&mut b.0));
    amx::pack_rows(x, n, cl.stack.in_dim, &mut xp);
    shrink_packed(&xp, cl, amx, step, n, u);
    BUF.with_borrow_mut(|b| b.0 = xp);
}

/// [`shrink`] of rows already packed by [`amx::pack_rows`].
pub fn shrink_packed(
    xp: &[u16],
    cl: &CpuLora,
    amx: &AmxLora,
    step: &StepPlan,
    n: usize,
    u: &mut [f32],
) {
    let (l, rows) = (&cl.stack, cl.rows());
    let (kk, mr) = (step.mix_k, l.max_rank);
    let mut full = BUF.with_borrow_mut(|b| std::mem::take(&mut b.1));
    full.resize(n * rows, 0.0);
    product_packed(&amx.a, rows, xp, n, l.in_dim, &mut full, false);
    for t in 0..n {
        for k in 0..kk {
            if let Some(e) = entry(l, step, t, k) {
                let src = &full[t * rows + e.off..][..e.rank];
                for (u, &v) in u[(t * kk + k) * mr..][..e.rank].iter_mut().zip(src) {
                    *u = e.ws * v;
                }
            }
        }
    }
    BUF.with_borrow_mut(|b| b.1 = full);
}

/// The expand's coefficients: `coef[t, row]` = the sum of token `t`'s `(coef, row)` entries
/// ([`expand_rows`] of its shrink outputs `u`), zero for rows it does not use.
pub fn coefficients(u: &[f32], cl: &CpuLora, step: &StepPlan, n: usize, coef: &mut Vec<f32>) {
    let (rows, kk, mr) = (cl.rows(), step.mix_k, cl.stack.max_rank);
    let mut list = BUF.with_borrow_mut(|b| std::mem::take(&mut b.2));
    coef.clear();
    coef.resize(n * rows, 0.0);
    for t in 0..n {
        list.clear();
        expand_rows(cl, step, t, &u[t * kk * mr..(t + 1) * kk * mr], &mut list);
        for &(c, r) in &list {
            coef[t * rows + r] += c;
        }
    }
    BUF.with_borrow_mut(|b| b.2 = list);
}

/// [`super::lora::lora_expand`] of several tokens on AMX: `y[t] += coef[t] @ B^T`.
pub fn expand(u: &[f32], cl: &CpuLora, amx: &AmxLora, step: &StepPlan, n: usize, y: &mut [f32]) {
    let mut coef = BUF.with_borrow_mut(|b| std::mem::take(&mut b.1));
    coefficients(u, cl, step, n, &mut coef);
    product(&amx.b, cl.stack.out_dim, &coef, n, cl.rows(), y, true);
    BUF.with_borrow_mut(|b| b.1 = coef);
}
