//! `lora_shrink` / `lora_expand`: the sentence-level fused multi-LoRA pair (DESIGN.md).
//!
//! Every token looks up its segment's mixture (up to K adapter slots with weights) and applies
//! those adapters' stacked A and B rows; adapters of different ranks sit side by side in one
//! stack through the rank-offset table.

use std::cell::RefCell;

use half::f16;
use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::lora_amx::AmxLora;
/// Largest stack (sum of ranks) whose several-token LoRA runs on AMX ([`AmxLora`]): that
/// path multiplies every token by the whole stack, so a large one costs more than it saves;
/// larger stacks use the f32 LoRA kernels beside the AMX matmuls. Batch 32 on the dev
/// machine, 8 adapters of rank 8 (64 rows): 512–548 tok/s before the AMX LoRA, 619 after (in
/// separate runs); 32 adapters (256 rows): even (324–364 on AMX against 365–369 tok/s); 100
/// (800 rows): 196 on AMX, 365 on the f32 kernels.
#[cfg(target_arch = "x86_64")]
const AMX_MAX_STACK_ROWS: usize = 128;
/// Off x86-64 there are no AMX tiles: a type without values.
#[cfg(not(target_arch = "x86_64"))]
#[derive(Debug, Clone)]
enum AmxLora {}
use super::matmul::{rows_dot, SendPtr};
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
    /// A and B as bf16 AMX tiles, for several tokens under `CpuOptions::amx`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // read by the x86 kernels only
    amx: Option<AmxLora>,
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
    /// Holds `s` in f32, or in f16 (rounded to nearest) when `f16_values`; with `amx` (the
    /// caller checked [`super::amx_available`]), also bf16 tiles for several tokens.
    pub fn new(s: &LoraStackHost, f16_values: bool, amx: bool) -> Self {
        let rows = s.total_rank();
        let mut stack = LoraStackHost {
            bt: Vec::new(),
            ..s.clone()
        };
        #[cfg(target_arch = "x86_64")]
        let amx = (amx && rows > 0 && rows <= AMX_MAX_STACK_ROWS).then(|| AmxLora::new(s, rows));
        #[cfg(not(target_arch = "x86_64"))]
        let amx: Option<AmxLora> = {
            let _ = amx;
            None
        };
        if !f16_values {
            return Self {
                stack,
                bt: column_blocks(&s.bt, rows, s.out_dim),
                rows,
                half: None,
                amx,
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
            amx,
        }
    }

    /// Backs the stack's values with huge pages ([`super::huge_pages`]): decode reads a few
    /// rows of many stacks per token, each run on its own pages.
    pub(super) fn collapse_pages(&self) {
        use super::huge_pages::collapse;
        collapse(&self.stack.a);
        collapse(&self.bt);
        if let Some(h) = &self.half {
            collapse(&h.a);
            collapse(&h.bt);
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(t) = &self.amx {
            t.collapse_pages();
        }
    }

    /// Rows of the stack (the sum of the slots' ranks).
    #[cfg(target_arch = "x86_64")]
    pub(super) fn rows(&self) -> usize {
        self.rows
    }

    /// The stack's bf16 AMX tiles, when packed (`CpuOptions::amx`, a non-empty stack).
    #[cfg(target_arch = "x86_64")]
    pub(super) fn amx_tiles(&self) -> Option<&AmxLora> {
        self.amx.as_ref()
    }

    /// Rows `off..off + n` of A in f32: a slice of the stack, or converted from f16 into `buf`.
    fn a_rows<'a>(&'a self, off: usize, n: usize, buf: &'a mut Vec<f32>) -> &'a [f32] {
        let d = self.stack.in_dim;
        match &self.half {
            None => &self.stack.a[off * d..(off + n) * d],
            Some(h) => {
                buf.clear();
                buf.extend(
                    h.a[off * d..(off + n) * d]
                        .iter()
                        .map(|&b| f16::from_bits(b).to_f32()),
                );
                buf
            }
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
    #[cfg(target_arch = "x86_64")]
    if super::packed_dot::has_avx2() {
        // SAFETY: the CPU has AVX2, FMA and F16C.
        return unsafe { super::avx2_blocks::dot_f16(a, x) };
    }
    a.iter()
        .zip(x)
        .map(|(&a, x)| f16::from_bits(a).to_f32() * x)
        .sum()
}

/// One used entry of a token's mixture.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub(super) slot: usize,
    /// First row of the slot's A / B^T rows in the stack.
    pub(super) off: usize,
    pub(super) rank: usize,
    /// Mixture weight times the adapter's scale.
    pub(super) ws: f32,
}

/// Resolves entry `k` of token `t`'s segment, or `None` when the entry is unused or the
/// adapter does not target this module. The slot tables were checked at upload
/// (`off + rank` lies inside the stack).
#[inline]
pub(super) fn entry(l: &LoraStackHost, step: &StepPlan, t: usize, k: usize) -> Option<Entry> {
    let s = step.segment_of_token[t] as usize;
    let slot = step.mix_slots[s * step.mix_k + k];
    if slot == NO_ADAPTER {
        return None;
    }
    let slot = slot as usize;
    let rank = *l.slot_rank.get(slot)? as usize;
    (rank > 0).then(|| Entry {
        slot,
        off: l.slot_offset[slot] as usize,
        rank,
        ws: step.mix_weights[s * step.mix_k + k] * l.slot_scale[slot],
    })
}

fn check(l: &LoraStackHost, step: &StepPlan, n_tokens: usize) -> Result<()> {
    step.check_lora(n_tokens, l.slot_rank.len())
}

thread_local! {
    /// A task's token indices, f32 A rows and shrink outputs, reused across calls.
    static SHRINK_BUF: RefCell<(Vec<usize>, Vec<f32>, Vec<f32>)> =
        const { RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
    /// The calling thread's plan of a several-token shrink or expand, reused across calls.
    static PLAN_BUF: RefCell<PlanBuf> = RefCell::new(PlanBuf::default());
}

/// Lists a several-token call builds before it forks (kept per thread, so steps allocate
/// nothing once warm).
#[derive(Default)]
struct PlanBuf {
    /// Shrink: every used (token * K + entry, entry), sorted by slot.
    items: Vec<(usize, Entry)>,
    /// Shrink: tasks as ranges of `items`, one slot each, at most SHRINK_TOKENS long.
    tasks: Vec<std::ops::Range<usize>>,
    /// Expand: every token's (coef, row) list, one after the other.
    rows: Vec<(f32, usize)>,
    /// Expand: token `t`'s list is `rows[at[t]..at[t + 1]]`.
    at: Vec<usize>,
}

/// Tokens per shrink task of several tokens.
const SHRINK_TOKENS: usize = 16;

/// `u[t, k, j] = w_k * scale_k * dot(A_k[j], x[t])`; `u` is `[T, K, max_rank]`.
///
/// One token (decode) splits its entries over the threads. Several tokens (prefill,
/// batches) go adapter by adapter: the tokens that use an adapter are gathered and meet its
/// A rows in one register-blocked `rows x rank` product, so each A is read once per step
/// rather than once per token.
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
    let u = &mut u[..n_tokens * kk * mr];
    if n_tokens == 1 {
        // Decode: the adapters' A blocks stream from memory, faster from every core at once.
        u.par_chunks_mut(mr)
            .enumerate()
            .for_each(|(k, uk)| shrink_entry(cl, step, 0, k, &x[..d], uk));
        return Ok(());
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(a) = cl.amx.as_ref().filter(|_| super::amx_rows(true, n_tokens)) {
        super::lora_amx::shrink(&x[..n_tokens * d], cl, a, step, n_tokens, u);
        return Ok(());
    }
    // Every used (token, entry), grouped by slot, cut in tasks of SHRINK_TOKENS.
    // Taken out of the cell, not borrowed: the tasks fork, and a waiting worker may run
    // another step's shrink meanwhile.
    let mut plan = PLAN_BUF.take();
    plan.items.clear();
    for t in 0..n_tokens {
        for k in 0..kk {
            if let Some(e) = entry(l, step, t, k) {
                plan.items.push((t * kk + k, e));
            }
        }
    }
    plan.items.sort_unstable_by_key(|&(tk, e)| (e.slot, tk));
    plan.tasks.clear();
    let mut start = 0;
    while start < plan.items.len() {
        let slot = plan.items[start].1.slot;
        let run = plan.items[start..]
            .iter()
            .take(SHRINK_TOKENS)
            .take_while(|(_, e)| e.slot == slot)
            .count();
        plan.tasks.push(start..start + run);
        start += run;
    }
    let u_ptr = SendPtr(u.as_mut_ptr());
    let (items, tasks) = (&plan.items[..], &plan.tasks[..]);
    tasks.par_iter().for_each(|range| {
        let task = &items[range.clone()];
        SHRINK_BUF.with_borrow_mut(|(xs, a, out)| {
            let e = task[0].1;
            let (n, r) = (task.len(), e.rank);
            xs.clear();
            xs.extend(task.iter().map(|&(tk, _)| tk / kk));
            let a_rows = cl.a_rows(e.off, r, a);
            out.resize(n * r, 0.0);
            rows_dot(&x[..n_tokens * d], xs, a_rows, r, d, out);
            for (&(tk, e), o) in task.iter().zip(out.chunks(r)) {
                for (j, &v) in o.iter().enumerate() {
                    // SAFETY: (token, entry) `tk` is in one task only and writes its own
                    // `rank <= max_rank` values at `tk * mr`, inside `u`.
                    unsafe { *u_ptr.get().add(tk * mr + j) = e.ws * v };
                }
            }
        });
    });
    PLAN_BUF.set(plan);
    Ok(())
}

/// `y[t] += sum_k sum_{j<rank_k} u[t, k, j] * B_k[:, j]` (B stored transposed in `bt`).
///
/// The columns are split over the threads in whole column blocks; each block of B^T stays
/// in L1 while every token's rows are added from it (B is read once per step, not once per
/// token).
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
    #[cfg(target_arch = "x86_64")]
    if let Some(a) = cl.amx.as_ref().filter(|_| super::amx_rows(true, n_tokens)) {
        super::lora_amx::expand(u, cl, a, step, n_tokens, &mut y[..n_tokens * o]);
        return Ok(());
    }
    // Every token's (coef, row) list, one after the other; taken out of the cell (see
    // `lora_shrink`).
    let mut plan = PLAN_BUF.take();
    plan.rows.clear();
    plan.at.clear();
    plan.at.push(0);
    for t in 0..n_tokens {
        expand_rows(
            cl,
            step,
            t,
            &u[t * kk * mr..(t + 1) * kk * mr],
            &mut plan.rows,
        );
        plan.at.push(plan.rows.len());
    }
    let (rows, at) = (&plan.rows[..], &plan.at[..]);
    assert!(rows_fit(cl, rows), "lora_expand: a row outside the stack");
    let blocks = o.div_ceil(COLS);
    // One token (decode): as many parts as threads (B streams from memory); several: more
    // parts, for balance.
    let per_thread = if n_tokens == 1 { 1 } else { 4 };
    let parts = (rayon::current_num_threads() * per_thread).clamp(1, blocks);
    let span = blocks.div_ceil(parts);
    let y_ptr = SendPtr(y.as_mut_ptr());
    (0..blocks.div_ceil(span)).into_par_iter().for_each(|p| {
        for b in p * span..((p + 1) * span).min(blocks) {
            let (c0, len) = (b * COLS, COLS.min(o - b * COLS));
            // SAFETY: part `p` alone writes the columns of its blocks; `t * o + c0 + len` is
            // within `y` for every token (checked above); the rows fit (asserted above).
            unsafe { add_block_tokens(cl, b, rows, at, y_ptr.get().add(c0), o, len) };
        }
    });
    PLAN_BUF.set(plan);
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
    if let Some(e) = entry(&cl.stack, step, t, k) {
        for (j, u) in uk[..e.rank].iter_mut().enumerate() {
            *u = e.ws * cl.dot_a(e.off + j, xt);
        }
    }
}

/// Appends token `t`'s expand rows to `rows`: `(ut[k, j], stack row)` for every rank row of
/// every entry it uses (`ut` = the token's `[K, max_rank]` shrink output).
pub(super) fn expand_rows(
    cl: &CpuLora,
    step: &StepPlan,
    t: usize,
    ut: &[f32],
    rows: &mut Vec<(f32, usize)>,
) {
    let mr = cl.stack.max_rank;
    for k in 0..step.mix_k {
        if let Some(e) = entry(&cl.stack, step, t, k) {
            rows.extend((0..e.rank).map(|j| (ut[k * mr + j], e.off + j)));
        }
    }
}

/// Columns `c0..c0 + y.len()` of one token's expand: `y[c] += sum coef * B^T[row, c]` over
/// its `rows` from [`expand_rows`]. `c0` is a multiple of [`COLS`].
pub(super) fn expand_columns(cl: &CpuLora, rows: &[(f32, usize)], c0: usize, y: &mut [f32]) {
    assert!(
        c0.is_multiple_of(COLS) && c0 + y.len() <= cl.stack.out_dim && rows_fit(cl, rows),
        "expand_columns: columns {c0}.. or rows outside the stack"
    );
    for (ci, yc) in y.chunks_mut(COLS).enumerate() {
        // SAFETY: the block exists (`c0 + y.len() <= out_dim`), every row is inside the
        // stack, and `yc` holds `yc.len() <= COLS` values (one token).
        unsafe {
            add_block_tokens(
                cl,
                c0 / COLS + ci,
                rows,
                &[0, rows.len()],
                yc.as_mut_ptr(),
                0,
                yc.len(),
            )
        };
    }
}

/// Whether every `(coef, row)` names a row of the stack.
pub(super) fn rows_fit(cl: &CpuLora, rows: &[(f32, usize)]) -> bool {
    rows.iter().all(|&(_, r)| r < cl.rows)
}

/// Column block `b` of the expand for each token `t < at.len() - 1`: `y[t * ldy + i] +=
/// sum coef * B^T[row, b * COLS + i]` for `i < n` over `rows[at[t]..at[t + 1]]`; the AVX-512
/// or AVX2 kernel (one call for every token) where the CPU has it.
///
/// # Safety
/// `b < out_dim.div_ceil(COLS)`, `n <= COLS`, every row is inside the stack ([`rows_fit`]),
/// `at` is non-decreasing within `rows`, and `y` holds `n` values at every `t * ldy`.
unsafe fn add_block_tokens(
    cl: &CpuLora,
    b: usize,
    rows: &[(f32, usize)],
    at: &[usize],
    y: *mut f32,
    ldy: usize,
    n: usize,
) {
    // Column block `b` holds `cl.rows` rows of COLS values from `b * cl.rows * COLS`.
    let off = b * cl.rows * COLS;
    #[cfg(target_arch = "x86_64")]
    if super::avx512::available() {
        // SAFETY: AVX-512F and F16C checked; the rest as the caller vouched.
        return unsafe {
            match &cl.half {
                None => {
                    super::avx512::add_block_tokens(y, ldy, n, cl.bt.as_ptr().add(off), rows, at)
                }
                Some(h) => {
                    super::avx512::add_block_tokens_f16(y, ldy, n, h.bt.as_ptr().add(off), rows, at)
                }
            }
        };
    }
    #[cfg(target_arch = "x86_64")]
    if super::packed_dot::has_avx2() {
        // SAFETY: AVX2, FMA and F16C checked; the rest as the caller vouched.
        return unsafe {
            match &cl.half {
                None => super::avx2_blocks::add_block_tokens(
                    y,
                    ldy,
                    n,
                    cl.bt.as_ptr().add(off),
                    rows,
                    at,
                ),
                Some(h) => super::avx2_blocks::add_block_tokens_f16(
                    y,
                    ldy,
                    n,
                    h.bt.as_ptr().add(off),
                    rows,
                    at,
                ),
            }
        };
    }
    for (t, w) in at.windows(2).enumerate() {
        // SAFETY: as the caller vouched.
        let yt = unsafe { std::slice::from_raw_parts_mut(y.add(t * ldy), n) };
        for &(coef, r) in &rows[w[0]..w[1]] {
            let at = off + r * COLS;
            match &cl.half {
                None => yt
                    .iter_mut()
                    .zip(&cl.bt[at..at + n])
                    .for_each(|(y, b)| *y += coef * b),
                Some(h) => yt
                    .iter_mut()
                    .zip(&h.bt[at..at + n])
                    .for_each(|(y, &b)| *y += coef * f16::from_bits(b).to_f32()),
            }
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
