//! `linears` for decode on bf16 weights: the modules that read the same input (q/k/v, gate/up,
//! or one alone) as one grouped matvec launch ([`crate::Experimental::decode_matvec`]), and
//! with [`crate::Experimental::fused_lora`] their LoRA in two launches in all: one
//! `lora_shrink_jobs` for every module's shrink (split over in_dim chunks, so that a decode
//! step's few entries fill many blocks), then the matvec with each module's expand in its
//! epilogue (`matvec_bf16_lora_r*`), which adds the chunks' partial sums. With
//! [`crate::Experimental::fused_shrink`] (sm_90) the matvec is a programmatic dependent launch
//! of the shrink: it streams its weights while the shrink runs. The shrink also writes each
//! entry's (offset, rank) after its partial sums, so that the expands read them with one load
//! instead of the lookup chain. Op by op that is 1 + 2 x modules launches, each under-filling
//! the GPU at batch 1.

use cudarc::driver::{CudaSlice, PushKernelArg};
use dlp_engine::backend::{linears_each, Backend, LinearJob};
use dlp_engine::Result;

use crate::launch::{cfg, check_len, int, BLOCK};
use crate::matvec::{shrink_chunks, LoraJobs, Ptrs, MATVEC_MAX_JOBS};
use crate::{err, CudaBackend, CudaStep};

impl CudaBackend {
    /// [`dlp_engine::Backend::linears`] on this backend: fused as the module docs say where
    /// the switches and shapes allow, else op by op.
    pub(crate) fn linears_impl(
        &self,
        x: &CudaSlice<f32>,
        n_tokens: usize,
        n_in: usize,
        step: &CudaStep,
        jobs: &mut [LinearJob<'_, Self>],
        u: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let matvec = !jobs.is_empty()
            && jobs.len() <= MATVEC_MAX_JOBS
            && jobs.iter().all(|j| {
                self.matvec_fits(j.w, n_tokens) && j.w.cols == n_in && j.w.rows == j.n_out
            });
        let any_lora = jobs.iter().any(|j| j.lora.is_some());
        // The shrink's grid.y is K x in_dim chunks (at most 65,535).
        let fused_lora = matvec
            && any_lora
            && self.options.experimental.fused_lora
            && step.plan.mix_k * shrink_chunks(n_in) <= 65_535;
        // One module without LoRA gains nothing from grouping: `matmul` does the same.
        if !matvec || (jobs.len() == 1 && !fused_lora) {
            return linears_each(self, x, n_tokens, n_in, step, jobs, u);
        }
        check_len("linears", "x", x.len(), n_tokens * n_in)?;
        for j in jobs.iter() {
            check_len("linears", "out", j.out.len(), n_tokens * j.n_out)?;
            if let Some(b) = j.bias {
                check_len("linears", "bias", b.len(), j.n_out)?;
            }
        }
        if fused_lora {
            return self.linears_fused_lora(x, n_tokens, n_in, step, jobs);
        }
        self.matvec_bf16(x, n_tokens, jobs, None, self.matvec_launch_mode(false))?;
        for j in jobs.iter_mut() {
            if let Some(l) = j.lora {
                self.lora_shrink(x, l, step, n_tokens, u)?;
                self.lora_expand(u, l, step, n_tokens, j.out)?;
            }
        }
        Ok(())
    }

    /// Every module's shrink in one launch into a scratch `u` per module, then the grouped
    /// matvec with the expands in its epilogue.
    fn linears_fused_lora(
        &self,
        x: &CudaSlice<f32>,
        n_tokens: usize,
        n_in: usize,
        step: &CudaStep,
        jobs: &mut [LinearJob<'_, Self>],
    ) -> Result<()> {
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
        let need = region * jobs.len();
        let mut scratch = self.scratch_u.lock().unwrap_or_else(|p| p.into_inner());
        if scratch.as_ref().is_none_or(|s| s.len() < need) {
            self.may_regrow_scratch("linears (LoRA u)")?;
            *scratch = Some(self.alloc(need)?);
        }
        let su = scratch.as_mut().expect("allocated above");
        let stream = self.stream();
        let mut desc = LoraJobs {
            mix_k: step.mix_k_int,
            n_jobs: int("linears", jobs.len())?,
            n_chunks: int("linears", chunks)?,
            chunk_stride: int("linears", per)?,
            ..Default::default()
        };
        // u, then per job A, B^T, scales, offsets, ranks, then the step's three tables.
        let mut ptrs = Ptrs::<{ 1 + 5 * MATVEC_MAX_JOBS + 3 }>::new(stream);
        let u0 = ptrs.write(su);
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
        desc.seg_of_token = ptrs.read(&step.segment_of_token);
        desc.mix_slots = ptrs.read(&step.mix_slots);
        desc.mix_weights = ptrs.read(&step.mix_weights);
        if per > 0 {
            if self.options.poison_scratch {
                // 0xff bytes: every float of u a NaN until the shrink writes it.
                let bytes = need * std::mem::size_of::<f32>();
                // SAFETY: u0 addresses `need` floats (the scratch holds at least that many).
                unsafe {
                    cudarc::driver::result::memset_d8_async(u0, 0xff, bytes, stream.cu_stream())
                }
                .map_err(|e| err(format!("linears: poisoning u: {e}")))?;
            }
            let d = int("linears", n_in)?;
            let mut a = self.args(&self.k.lora_shrink_jobs);
            a.arg(x).arg(&d).arg(&desc);
            let grid = (n_tokens as u32, (kk * chunks) as u32, jobs.len() as u32);
            self.go("linears (LoRA shrinks)", a, cfg(grid, BLOCK, 0))?;
        } else {
            desc.n_jobs = 0; // no entry to apply: the plain matvec
        }
        drop(ptrs);
        // The matvec may start while the shrink runs (fused-shrink, sm_90): its expands wait
        // for it (`pdl_wait` in matmul.cu).
        let launch = self.matvec_launch_mode(per > 0);
        self.matvec_bf16(x, n_tokens, jobs, Some(&desc), launch)
    }
}

/// Floats of the fused LoRA scratch per job: `chunks` partial sums of `per` floats each, then
/// the entry table, two 4-byte ints (offset, rank) per token and entry (`lora_entries` in
/// lora.cu).
pub(crate) fn fused_u_region(per: usize, chunks: usize, n_tokens: usize, mix_k: usize) -> usize {
    per * chunks + 2 * n_tokens * mix_k
}

#[cfg(test)]
mod tests {
    use super::fused_u_region;

    #[test]
    fn the_entry_table_follows_the_partial_sums() {
        // One decode token, K = 3, max rank 8, a 7B down_proj's 11 chunks: 264 partial sums,
        // then 3 (offset, rank) pairs.
        assert_eq!(fused_u_region(24, 11, 1, 3), 24 * 11 + 6);
        assert_eq!(fused_u_region(0, 1, 4, 2), 16);
    }
}
