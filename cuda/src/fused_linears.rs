//! `linears` for decode steps: the modules that read the same input (q/k/v, gate/up, or one
//! alone) with their LoRA in few launches.
//!
//! On bf16 weights, up to 8 rows: one grouped matvec launch
//! ([`crate::Experimental::decode_matvec`]), and with [`crate::Experimental::fused_lora`] their
//! LoRA in two launches in all: one `lora_shrink_jobs` for every module's shrink (split over
//! in_dim chunks, so that a decode step's few entries fill many blocks), then the matvec with
//! each module's expand in its epilogue (`matvec_bf16_lora_r*`), which adds the chunks' partial
//! sums. With [`crate::Experimental::fused_shrink`] (sm_90) the matvec is a programmatic
//! dependent launch of the shrink: it streams its weights while the shrink runs. The shrink
//! also writes each entry's (offset, rank) after its partial sums, so that the expands read
//! them with one load instead of the lookup chain. Op by op that is 1 + 2 x modules launches,
//! each under-filling the GPU at batch 1. With [`crate::Experimental::inline_shrink`] the
//! shrink's blocks run in the matvec's own grid (`matvec_bf16_lora_inline_r*`): one launch per
//! group, which with dependent launches starts while the kernel writing x finishes. With
//! [`crate::Experimental::expand_launch`] the matvec is the plain one and every module's expand
//! is one `lora_expand_jobs` launch after it: the epilogue's loads no longer hold up the
//! weight stream, for one launch more per group. With [`crate::Experimental::lora_prefetch`]
//! (sm_90) those three launches are a chain of programmatic dependents after the kernel that
//! wrote x: the shrink and the expand load their tables and adapter rows before they wait.
//!
//! Decode batches the matvec does not take (up to [`BATCH_LORA_MAX_ROWS`] tokens, every token
//! with its own mixture), with [`crate::Experimental::batch_lora`]: the same shrink launch,
//! the base products as `matmul` computes them, then every module's expand in one
//! `lora_expand_jobs` launch: 2 LoRA launches per group instead of 2 per module.

use std::ffi::c_void;
use std::sync::atomic::Ordering;

use cudarc::driver::{CudaSlice, DevicePtrMut, DeviceRepr, PushKernelArg};
use dlp_engine::backend::{Backend, LinearJob, ResidualSite};
use dlp_engine::Result;

use crate::launch::{cfg, check_len, int, Ptrs, BLOCK};
use crate::matvec::{shrink_chunks, LoraJobs, MatvecEpilogue, MatvecLaunch, MATVEC_MAX_JOBS};
use crate::{err, CudaBackend, CudaStep};

impl CudaBackend {
    /// Whether a step the decode matvec does not take runs its modules' LoRA as `batch-lora`
    /// ([`crate::Experimental::batch_lora`]): the switch is on, the step is a decode step of at
    /// most [`BATCH_LORA_MAX_ROWS`] tokens (each alone in its KV slot), the shrink's 16-byte
    /// loads fit the input (`n_in % 8 == 0`), the grids fit and the expand's shared memory
    /// does. Prefills keep the segment (or SGMV) kernels, which read each adapter once per
    /// segment, not once per token.
    pub(crate) fn batch_lora_fits(
        &self,
        n_tokens: usize,
        n_in: usize,
        step: &CudaStep,
        jobs: &[LinearJob<'_, Self>],
    ) -> bool {
        let max_rank = max_lora_rank(jobs);
        self.options.experimental.batch_lora
            && (1..=MATVEC_MAX_JOBS).contains(&jobs.len())
            && jobs.iter().all(|j| j.w.cols == n_in && j.w.rows == j.n_out)
            && batch_lora_shape_fits(step.tokens_alone, n_tokens, n_in, step.plan.mix_k, max_rank)
    }

    /// Every module's shrink in one launch (`lora_shrink_jobs`) into a scratch `u` per module,
    /// then the base products by `base` ([`LoraBase`]): the grouped matvec with the expands in
    /// its epilogue (`fused-lora`), or the plain matvec (`expand-launch`) or the products as
    /// `matmul` computes them (`batch-lora`), each followed by every module's expand in one
    /// launch (`lora_expand_jobs`) adding into the products. `epilogue` is the fused matvec's
    /// ([`MatvecEpilogue`]: `fused-silu`'s silu(gate) * up, `norm-in-matvec`'s residual add
    /// and norm); the other bases take only `Store` (their products are not final in it).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn linears_grouped_lora(
        &self,
        x: &CudaSlice<f32>,
        n_tokens: usize,
        n_in: usize,
        step: &CudaStep,
        jobs: &mut [LinearJob<'_, Self>],
        base: LoraBase,
        epilogue: MatvecEpilogue<'_>,
    ) -> Result<()> {
        if base != LoraBase::FusedMatvec && !matches!(epilogue, MatvecEpilogue::Store) {
            return Err(err(
                "linears: only the fused-LoRA matvec folds an epilogue (its products are final)",
            ));
        }
        let matvec = base == LoraBase::FusedMatvec;
        let prefetch = base == LoraBase::Matvec && self.lora_prefetch_takes(step, jobs);
        let shrink = if matvec && self.options.experimental.inline_shrink {
            ShrinkLaunch::Inline
        } else if prefetch {
            ShrinkLaunch::Prefetch
        } else {
            ShrinkLaunch::Plain
        };
        // The scratch stays locked (not regrown) until the launches reading it are queued.
        let (desc, _scratch) = self.shrink_jobs(x, n_tokens, n_in, step, jobs, shrink)?;
        if matvec {
            // The matvec may start while the shrink runs (fused-shrink, sm_90): its expands
            // wait for it (`pdl_wait` in matmul.cu). With inline-shrink the shrink runs in the
            // matvec's grid, which may start while the kernel writing x runs.
            let after_shrink = desc.n_jobs > 0 && desc.inline_blocks == 0;
            let launch = self.matvec_launch_mode(after_shrink);
            let mut desc = desc;
            if desc.sync != 0 {
                let words = sync_set(&epilogue) * SYNC_SET_WORDS;
                desc.sync += (words * std::mem::size_of::<u32>()) as u64;
            }
            return self.matvec_bf16(x, n_tokens, jobs, Some(&desc), launch, epilogue);
        }
        if base == LoraBase::Matvec {
            // `expand-launch`: the plain matvec, a dependent of the shrink launched just before
            // it (dependent-launch): it waits for the shrink to finish before reading x (the
            // expand after it then sees u, the matvec having finished after the shrink). With
            // lora-prefetch it releases the expand, a dependent launch, at its start.
            // (`pdl` read again: a refused dependent launch turns dependent launches off.)
            let launch = if prefetch && self.pdl.load(Ordering::Relaxed) {
                MatvecLaunch::AfterXReleasing
            } else {
                self.matvec_launch_mode(false)
            };
            self.matvec_bf16(x, n_tokens, jobs, None, launch, MatvecEpilogue::Store)?;
        } else if self.options.bf16_compute && jobs.iter().all(|j| j.w.bf16.is_some()) {
            // In the bf16 compute mode the group's x is rounded to bf16 once, not per module.
            self.gemm_bf16_each(x, n_tokens, n_in, jobs)?;
        } else {
            for j in jobs.iter_mut() {
                self.matmul(x, j.w, j.bias, n_tokens, n_in, j.n_out, j.out)?;
            }
        }
        let (n_jobs, widest) = (jobs.len(), jobs.iter().map(|j| j.n_out).max().unwrap_or(0));
        if desc.n_jobs == 0 || widest == 0 || n_tokens == 0 {
            return Ok(());
        }
        let op = "linears (LoRA expands)";
        let mut outs = LoraOuts::default();
        let mut ptrs = Ptrs::<MATVEC_MAX_JOBS>::new(self.stream());
        for (i, j) in jobs.iter_mut().enumerate() {
            outs.out[i] = ptrs.write(j.out);
            outs.n[i] = int(op, j.n_out)?;
        }
        // The stacks' largest rank, as the shrink's descriptor holds it per job.
        let max_rank = desc.max_rank.iter().max().copied().unwrap_or(0).max(0) as usize;
        let shared = expand_jobs_shared(step.plan.mix_k, max_rank);
        let grid = (
            widest.div_ceil(BLOCK as usize) as u32,
            int(op, n_tokens)? as u32,
            n_jobs as u32,
        );
        let c = cfg(grid, BLOCK, shared as u32);
        if prefetch {
            let f = &self.k.lora_expand_jobs_prefetch;
            let (mut d, mut o) = (desc, outs);
            let mut params = [
                (&mut d as *mut LoraJobs).cast::<c_void>(),
                (&mut o as *mut LoraOuts).cast(),
            ];
            // SAFETY: the entry's parameters in order and types (`LoraJobs`, `LoraOuts`), the
            // buffers they address kept alive by `ptrs` and the shrink's; sizes as below.
            if unsafe { self.launch_prefetch(op, f, &mut params, c) }? {
                drop(ptrs);
                return Ok(());
            }
        }
        // (lora-prefetch's expand not queued as a dependent: in plain stream order, where its
        // wait returns at once.)
        let f = if prefetch {
            &self.k.lora_expand_jobs_prefetch
        } else {
            &self.k.lora_expand_jobs
        };
        let mut a = self.args(f);
        a.arg(&desc).arg(&outs);
        let res = self.go(op, a, c);
        drop(ptrs);
        res
    }

    /// Every module's shrink in one launch (`lora_shrink_jobs`) into the fused-LoRA scratch
    /// (grown as needed): per module, its partial sums over the in_dim chunks and its entry
    /// table ([`fused_u_region`]); with [`ShrinkLaunch::Inline`], only the descriptor for the
    /// matvec's grid to run the shrink; with [`ShrinkLaunch::Prefetch`], as a programmatic
    /// dependent of the kernel that wrote x (`lora_shrink_jobs_prefetch`). Returns the launch descriptor, with `n_jobs` 0 when every stack's
    /// largest rank is 0 (then nothing was launched: there is no term to apply), and the
    /// scratch, locked so that it is not regrown before the launches that read it are queued.
    fn shrink_jobs(
        &self,
        x: &CudaSlice<f32>,
        n_tokens: usize,
        n_in: usize,
        step: &CudaStep,
        jobs: &[LinearJob<'_, Self>],
        shrink: ShrinkLaunch,
    ) -> Result<(LoraJobs, ScratchGuard<'_>)> {
        let mut scratch = self.scratch_u.lock().unwrap_or_else(|p| p.into_inner());
        let kk = step.plan.mix_k;
        let mut max_rank = 0;
        for j in jobs.iter() {
            if let Some(l) = j.lora {
                step.plan.check_lora(n_tokens, l.n_slots)?;
                if l.in_dim != n_in || l.out_dim != j.n_out {
                    return Err(err(format!(
                        "linears: LoRA stack is {}x{}, the module {n_in}x{}",
                        l.in_dim, l.out_dim, j.n_out
                    )));
                }
                max_rank = max_rank.max(l.max_rank);
            }
        }
        // Each job's u holds `chunks` partial sums of `per` floats, then the entry table of
        // (offset, rank) per (token, entry) as i32 (see `lora_shrink_jobs`).
        let per = n_tokens * kk * max_rank;
        let chunks = shrink_chunks(n_in);
        let region = fused_u_region(per, chunks, n_tokens, kk);
        // The inline shrink's counters first (at a fixed place: each launch leaves them zero),
        // then the jobs' regions.
        let need = SYNC_WORDS + region * jobs.len();
        let su = self.scratch_at_least(&mut scratch, need, "linears (LoRA u)", || {
            let mut fresh = self.alloc(need)?;
            let (p, _g) = fresh.device_ptr_mut(self.stream());
            let what = "linears: zeroing the LoRA counters";
            // SAFETY: `fresh` holds at least SYNC_WORDS floats.
            unsafe { self.memset_bytes(p, 0, SYNC_WORDS * 4, what) }?;
            drop(_g);
            Ok(fresh)
        })?;
        let mut desc = LoraJobs {
            mix_k: step.mix_k_int,
            n_jobs: int("linears", jobs.len())?,
            n_chunks: int("linears", chunks)?,
            chunk_stride: int("linears", per)?,
            ..Default::default()
        };
        if per == 0 {
            desc.n_jobs = 0; // no entry to apply
            return Ok((desc, scratch));
        }
        // u, then per job A, B^T, scales, offsets, ranks, then the step's three tables, and x.
        let tables = step.lora_tables();
        let mut ptrs = Ptrs::<{ 1 + 5 * MATVEC_MAX_JOBS + 3 + 1 }>::new(self.stream());
        desc.sync = ptrs.write(su);
        let u0 = desc.sync + (SYNC_WORDS * std::mem::size_of::<f32>()) as u64;
        for (i, j) in jobs.iter().enumerate() {
            let Some(l) = j.lora else { continue };
            (desc.a[i], desc.bt[i]) = match (&l.a16, &l.bt16) {
                (Some(a16), Some(bt16)) => {
                    desc.ab_bf16 = 1;
                    (ptrs.read(a16), ptrs.read(bt16))
                }
                _ => (ptrs.read(&l.a), ptrs.read(&l.bt)),
            };
            desc.slot_scale[i] = ptrs.read(&l.slot_scale);
            desc.slot_offset[i] = ptrs.read(&l.slot_offset);
            desc.slot_rank[i] = ptrs.read(&l.slot_rank);
            desc.u[i] = u0 + (i * region * std::mem::size_of::<f32>()) as u64;
            desc.n_slots[i] = l.ints.n_slots;
            desc.max_rank[i] = l.ints.max_rank;
        }
        desc.seg_of_token = ptrs.read(&tables.seg_of_token);
        desc.mix_slots = ptrs.read(&tables.mix_slots);
        desc.mix_weights = ptrs.read(&tables.mix_weights);
        if self.options.poison_scratch {
            self.poison_fused_u(u0, region, per * chunks, n_tokens * kk, jobs.len())?;
        }
        if shrink == ShrinkLaunch::Inline {
            // The matvec's grid runs the shrink (`matvec_lora_inline` in matmul.cu). Its reads
            // of A, B^T, the tables and the scratch are queued after this returns, on this one
            // stream (as the fused matvec's reads after the shrink launch below): the use
            // guards dropped here matter only across streams.
            desc.inline_blocks = int("linears", n_tokens * kk * chunks * jobs.len())?;
            drop(ptrs);
            return Ok((desc, scratch));
        }
        let op = "linears (LoRA shrinks)";
        let d = int("linears", n_in)?;
        let grid = (n_tokens as u32, (kk * chunks) as u32, jobs.len() as u32);
        let f = if shrink == ShrinkLaunch::Prefetch {
            let f = &self.k.lora_shrink_jobs_prefetch;
            let (mut xp, mut d, mut desc) = (ptrs.read(x), d, desc);
            let mut params = [
                (&mut xp as *mut u64).cast::<c_void>(),
                (&mut d as *mut i32).cast(),
                (&mut desc as *mut LoraJobs).cast(),
            ];
            // SAFETY: the entry's parameters in order and types (x's device address, kept
            // alive by `ptrs`, in_dim, `LoraJobs`), sizes checked as for the plain launch.
            if unsafe { self.launch_prefetch(op, f, &mut params, cfg(grid, BLOCK, 0)) }? {
                drop(ptrs);
                return Ok((desc, scratch));
            }
            f // not queued as a dependent: in plain stream order, where its wait returns at once
        } else {
            &self.k.lora_shrink_jobs
        };
        let mut a = self.args(f);
        a.arg(x).arg(&d).arg(&desc);
        let res = self.go(op, a, cfg(grid, BLOCK, 0));
        drop(ptrs);
        res.map(|()| (desc, scratch))
    }

    /// The tests' poison (`CudaOptions::poison_scratch`) of the fused LoRA scratch at `u0`:
    /// `jobs` regions of `region` floats, each `sums` partial sums then `entries` (offset,
    /// rank) pairs. The sums become NaN (0xff bytes) and every entry (offset 0, rank 1), so
    /// an expand that read the scratch before its shrink wrote it takes one term, a NaN u,
    /// and the parity test fails; 0xff bytes in the table would read as rank -1, a term
    /// silently dropped.
    fn poison_fused_u(
        &self,
        u0: u64,
        region: usize,
        sums: usize,
        entries: usize,
        jobs: usize,
    ) -> Result<()> {
        let stream = self.stream().cu_stream();
        let word = std::mem::size_of::<f32>() as u64;
        let bytes = region * jobs * std::mem::size_of::<f32>();
        // SAFETY: u0 addresses `region * jobs` floats (the scratch holds at least that many);
        // each table lies inside its region (`fused_u_region`): `entries` rows of 8 bytes,
        // one 4-byte word set per row, at the table's start (offset) and 4 bytes in (rank).
        unsafe {
            self.memset_bytes(u0, 0xff, bytes, "linears: poisoning u")?;
            for z in 0..jobs {
                let table = u0 + (z * region + sums) as u64 * word;
                for (at, value) in [(table, 0u32), (table + word, 1)] {
                    cudarc::driver::sys::cuMemsetD2D32Async(at, 8, value, 1, entries, stream)
                        .result()
                        .map_err(|e| err(format!("linears: poisoning the entry table: {e}")))?;
                }
            }
        }
        Ok(())
    }
}

/// The locked fused-LoRA scratch (`CudaBackend::scratch_u`).
type ScratchGuard<'a> = std::sync::MutexGuard<'a, Option<CudaSlice<f32>>>;

/// Words (4 bytes) of one set of `inline-shrink` counters: tickets, shrink blocks done, blocks
/// finished, and one spare, so that u stays 16-byte aligned.
const SYNC_SET_WORDS: usize = 4;

/// Sets of counters at the start of the fused LoRA scratch ([`sync_set`]).
const SYNC_SETS: usize = 4;

/// Words at the start of the fused LoRA scratch: [`SYNC_SETS`] sets of counters.
const SYNC_WORDS: usize = SYNC_SET_WORDS * SYNC_SETS;

/// The set of counters an inline launch with `epilogue` uses: 0 for the plain ones, 1 for
/// `fused-silu`'s gate/up, 2 and 3 for `norm-in-matvec`'s o and down. An inline launch that
/// follows a `fused-silu` or `norm-in-matvec` launch as its dependent starts (and takes its
/// tickets) before that grid's counter reset is sure to be visible, and those launches
/// release their dependents at their start, so a chain o -> gate/up -> down -> the next
/// layer's q/k/v may run side by side: its four launches must not share counters (the
/// attention launch between q/k/v and o is a plain one, after which all have finished).
fn sync_set(epilogue: &MatvecEpilogue<'_>) -> usize {
    match epilogue {
        MatvecEpilogue::Store => 0,
        MatvecEpilogue::Silu(_) => 1,
        MatvecEpilogue::AddNorm { site, .. } => match site {
            ResidualSite::Attention => 2,
            ResidualSite::FeedForward => 3,
        },
    }
}

/// Most tokens of a decode step whose LoRA runs as `batch-lora` (each token's adapters read
/// once per token: past a few dozen tokens the SGMV kernels' once per tile of 16 read less).
pub const BATCH_LORA_MAX_ROWS: usize = 64;

/// Dynamic shared memory a block may take without the opt-in attribute.
const EXPAND_JOBS_SHARED_MAX: usize = 48 * 1024;

/// How [`CudaBackend::shrink_jobs`] runs a group's shrink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ShrinkLaunch {
    /// `lora_shrink_jobs` in plain stream order.
    Plain,
    /// Only the descriptor: the matvec's grid runs it (`inline-shrink`).
    Inline,
    /// `lora_shrink_jobs_prefetch`, a programmatic dependent of the kernel that wrote x
    /// (`lora-prefetch`).
    Prefetch,
}

/// What computes a LoRA group's base products in [`CudaBackend::linears_grouped_lora`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoraBase {
    /// The decode matvec with the expands in its epilogue (`fused-lora`).
    FusedMatvec,
    /// The plain decode matvec, the expands in one launch after it (`expand-launch`).
    Matvec,
    /// `matmul` or the bf16 GEMM, the expands in one launch after them (`batch-lora`).
    Products,
}

/// The largest rank of the group's LoRA stacks (None when no module has one).
pub(crate) fn max_lora_rank(jobs: &[LinearJob<'_, CudaBackend>]) -> Option<usize> {
    jobs.iter().filter_map(|j| j.lora).map(|l| l.max_rank).max()
}

/// Whether `lora_expand_jobs`' shared memory (a token's u and entries) fits `mix_k` entries
/// of rank up to `max_rank`.
pub(crate) fn expand_jobs_fit(mix_k: usize, max_rank: usize) -> bool {
    expand_jobs_shared(mix_k, max_rank) <= EXPAND_JOBS_SHARED_MAX
}

/// Bytes of dynamic shared memory of `lora_expand_jobs` for mixtures of `mix_k` entries and a
/// largest rank of `max_rank`: a token's u (`mix_k * max_rank` floats), then its entries'
/// (offset, rank) pairs.
pub fn expand_jobs_shared(mix_k: usize, max_rank: usize) -> usize {
    (mix_k * max_rank + 2 * mix_k) * 4
}

/// The shape part of `batch-lora`'s choice: a decode step (`tokens_alone`) of 1 to
/// [`BATCH_LORA_MAX_ROWS`] tokens, `n_in` a multiple of 8 (the shrink's 16-byte loads), the
/// shrink's grid.y (`mix_k` x in_dim chunks) within 65,535, and a LoRA stack (`max_rank`, the
/// largest of the group's) whose expand fits the default shared memory.
fn batch_lora_shape_fits(
    tokens_alone: bool,
    n_tokens: usize,
    n_in: usize,
    mix_k: usize,
    max_rank: Option<usize>,
) -> bool {
    tokens_alone
        && (1..=BATCH_LORA_MAX_ROWS).contains(&n_tokens)
        && n_in.is_multiple_of(8)
        && mix_k * shrink_chunks(n_in) <= 65_535
        && max_rank.is_some_and(|r| expand_jobs_fit(mix_k, r))
}

/// The kernel's `LoraOuts` (same layout, lora.cu): where `lora_expand_jobs` adds each job's
/// expand, `[T, n]` f32; a job past the launch's has `n = 0`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoraOuts {
    /// `float*` outputs.
    pub out: [u64; MATVEC_MAX_JOBS],
    /// Output features per job.
    pub n: [i32; MATVEC_MAX_JOBS],
    /// Explicit padding (always 0): the struct is copied whole into the kernel parameters.
    pub pad: i32,
}

// SAFETY: plain old data with the C layout of `LoraOuts` in lora.cu.
unsafe impl DeviceRepr for LoraOuts {}

/// The sizes `linears` checks before a grouped launch: x holds `[n_tokens, n_in]`, each
/// output `[n_tokens, n_out]`, each bias `[n_out]`.
pub(crate) fn check_linears(
    x: &CudaSlice<f32>,
    n_tokens: usize,
    n_in: usize,
    jobs: &[LinearJob<'_, CudaBackend>],
) -> Result<()> {
    check_len("linears", "x", x.len(), n_tokens * n_in)?;
    for j in jobs {
        check_len("linears", "out", j.out.len(), n_tokens * j.n_out)?;
        if let Some(b) = j.bias {
            check_len("linears", "bias", b.len(), j.n_out)?;
        }
    }
    Ok(())
}

/// Floats of the fused LoRA scratch per job: `chunks` partial sums of `per` floats each, then
/// the entry table, two 4-byte ints (offset, rank) per token and entry (`lora_entries` in
/// lora.cu).
pub(crate) fn fused_u_region(per: usize, chunks: usize, n_tokens: usize, mix_k: usize) -> usize {
    per * chunks + 2 * n_tokens * mix_k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outs_descriptor_has_the_kernels_layout() {
        let src = include_str!("../kernels/lora.cu");
        assert!(src.contains("static_assert(sizeof(LoraOuts) == 40,"));
        assert_eq!(std::mem::size_of::<LoraOuts>(), 40);
        assert_eq!(std::mem::offset_of!(LoraOuts, n), 24);
        assert_eq!(std::mem::offset_of!(LoraOuts, pad), 36);
    }

    /// Every set of the three inline-shrink counters fits before u, which stays 16-byte
    /// aligned (the shrink's and expands' vector loads); the four epilogues' sets differ.
    #[test]
    fn every_counter_set_fits_before_u_and_keeps_it_aligned() {
        const {
            assert!(SYNC_SET_WORDS >= 3 && (SYNC_SET_WORDS * 4).is_multiple_of(16));
            assert!((SYNC_WORDS * 4).is_multiple_of(16));
        }
        // (`Silu`'s set, 1, needs a device buffer to name.)
        let norm = |site| MatvecEpilogue::AddNorm {
            nm: Default::default(),
            site,
        };
        let sets = [
            sync_set(&MatvecEpilogue::Store),
            sync_set(&norm(ResidualSite::Attention)),
            sync_set(&norm(ResidualSite::FeedForward)),
        ];
        assert_eq!(sets, [0, 2, 3]);
        for s in sets {
            assert!((s + 1) * SYNC_SET_WORDS <= SYNC_WORDS);
        }
    }

    #[test]
    fn batch_lora_takes_decode_batches_it_can_launch() {
        let fits = |alone, t, n_in, k, r| batch_lora_shape_fits(alone, t, n_in, k, r);
        // The benchmark's batch: 32 tokens, K = 3, rank 8, a 7B's inputs.
        assert!(fits(true, 32, 4096, 3, Some(8)));
        assert!(fits(true, 1, 11008, 3, Some(8)) && fits(true, 64, 8, 1, Some(1)));
        // A prefill (tokens sharing a KV slot), past 64 tokens, no token.
        assert!(!fits(false, 32, 4096, 3, Some(8)));
        assert!(!fits(true, 65, 4096, 3, Some(8)) && !fits(true, 0, 4096, 3, Some(8)));
        // Inputs the shrink's 16-byte loads cannot take; no LoRA stack in the group.
        assert!(!fits(true, 32, 4100, 3, Some(8)) && !fits(true, 32, 4096, 3, None));
        // A grid.y past 65,535 (K x 1,024 chunks), an expand past 48 KiB of shared memory.
        assert!(fits(true, 2, 1 << 20, 63, Some(1)) && !fits(true, 2, 1 << 20, 64, Some(1)));
        assert!(!fits(true, 2, 64, 16, Some(767)) && fits(true, 2, 64, 16, Some(766)));
    }

    #[test]
    fn expand_shared_memory_holds_a_tokens_u_and_entries() {
        // K = 3 of rank 8 (the benchmarks' batch): 24 floats and 3 pairs.
        assert_eq!(expand_jobs_shared(3, 8), (24 + 6) * 4);
        // The largest mixture the segment kernels take with rank-64 adapters still fits.
        assert!(expand_jobs_shared(16, 64) <= EXPAND_JOBS_SHARED_MAX);
    }

    #[test]
    fn the_region_holds_exactly_what_the_shrink_writes() {
        // The floats `shrink_chunk` (lora.cu) writes for job z, at its offsets relative to
        // u[z]: chunk c's partial sum of rank row r of entry (t, k) at
        // c * chunk_stride + (t * mix_k + k) * max_rank + r (chunk_stride = per), then the
        // table from `lora_entries` at n_chunks * chunk_stride + 2 * (t * mix_k + k) + {0, 1}.
        // Every float of the region is written once and none outside it, so the jobs'
        // regions laid end to end neither overlap nor leave holes.
        for (n_tokens, mix_k, max_rank, chunks) in [
            (1, 3, 8, 4),
            (1, 3, 8, 11),
            (7, 2, 24, 4),
            (8, 1, 1, 1),
            (3, 4, 16, 2),
        ] {
            let per = n_tokens * mix_k * max_rank;
            let region = fused_u_region(per, chunks, n_tokens, mix_k);
            let mut hits = vec![0u32; region + 1];
            for t in 0..n_tokens {
                for k in 0..mix_k {
                    let e = t * mix_k + k;
                    for c in 0..chunks {
                        for r in 0..max_rank {
                            hits[(c * per + e * max_rank + r).min(region)] += 1;
                        }
                    }
                    for w in 0..2 {
                        hits[(chunks * per + 2 * e + w).min(region)] += 1;
                    }
                }
            }
            let shape = (n_tokens, mix_k, max_rank, chunks);
            assert!(hits[..region].iter().all(|&h| h == 1), "{shape:?}");
            assert_eq!(hits[region], 0, "{shape:?}: a write past the region");
        }
    }
}
