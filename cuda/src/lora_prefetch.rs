//! `--cuda-experimental lora-prefetch` ([`crate::Experimental::lora_prefetch`]): which
//! `expand-launch` groups run their shrink and expand as programmatic dependent launches
//! (`lora_prefetch.cu`), and how those launches are queued. The launches themselves are
//! `linears_grouped_lora`'s (fused_linears.rs).

use std::ffi::c_void;
use std::sync::atomic::Ordering;

use cudarc::driver::{CudaFunction, LaunchConfig};
use dlp_engine::backend::LinearJob;
use dlp_engine::Result;

use crate::counts::LaunchCounters;
use crate::fused_linears::{expand_jobs_fit, max_lora_rank};
use crate::{CudaBackend, CudaStep};

/// Terms of a token's expand that `lora_expand_jobs_prefetch` holds in registers
/// (`EXPAND_PREFETCH` in lora_prefetch.cu).
pub const EXPAND_PREFETCH: usize = 32;

/// Whether `lora-prefetch`'s expand takes mixtures of `mix_k` entries of rank up to `max_rank`:
/// its `mix_k * max_rank` terms fit [`EXPAND_PREFETCH`] registers (3 adapters of rank 8: 24),
/// and its shared memory fits as `expand-launch`'s does.
pub fn lora_prefetch_fits(mix_k: usize, max_rank: usize) -> bool {
    mix_k * max_rank <= EXPAND_PREFETCH && expand_jobs_fit(mix_k, max_rank)
}

impl CudaBackend {
    /// Whether an `expand-launch` group runs as `lora-prefetch`
    /// ([`crate::Experimental::lora_prefetch`]): the switch and `dependent-launch` are on,
    /// dependent launches work on this device (sm_90), and the expand's terms per token fit its
    /// registers ([`lora_prefetch_fits`]).
    pub(crate) fn lora_prefetch_takes(
        &self,
        step: &CudaStep,
        jobs: &[LinearJob<'_, Self>],
    ) -> bool {
        let x = &self.options.experimental;
        x.lora_prefetch
            && x.dependent_launch
            && self.pdl.load(Ordering::Relaxed)
            && max_lora_rank(jobs).is_some_and(|r| lora_prefetch_fits(step.plan.mix_k, r))
    }

    /// Queues `f`, lora-prefetch's shrink or expand, as a programmatic dependent of the launch
    /// before it ([`Self::launch_dependent`]) and counts it (`LaunchCounts::lora_prefetch`).
    /// False when dependent launches are off on this backend (a refusal turned them off) or
    /// the driver refused this one: the caller then launches `f` in plain stream order, where
    /// its wait returns at once.
    ///
    /// # Safety
    /// As [`Self::launch_dependent`]: `params` are `f`'s parameters, the buffers they address
    /// kept alive until the launch is queued.
    pub(crate) unsafe fn launch_prefetch(
        &self,
        op: &str,
        f: &CudaFunction,
        params: &mut [*mut c_void],
        c: LaunchConfig,
    ) -> Result<bool> {
        // SAFETY: the caller's contract.
        if !self.pdl.load(Ordering::Relaxed) || !unsafe { self.launch_dependent(op, f, params, c) }?
        {
            return Ok(false);
        }
        LaunchCounters::bump(&self.counts.lora_prefetch);
        self.sync_if_asked(op).map(|()| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `lora-prefetch`'s expand holds mix_k x max_rank terms in EXPAND_PREFETCH registers (the
    /// kernel's define, which traps past it): 3 adapters of rank 8 and 2 of rank 16 fit, one
    /// term more does not.
    #[test]
    fn lora_prefetch_takes_the_mixtures_its_registers_hold() {
        let src = include_str!("../kernels/lora_prefetch.cu");
        assert!(src.contains(&format!("#define EXPAND_PREFETCH {EXPAND_PREFETCH}\n")));
        assert!(lora_prefetch_fits(3, 8) && lora_prefetch_fits(2, 16) && lora_prefetch_fits(1, 32));
        assert!(
            !lora_prefetch_fits(3, 11) && !lora_prefetch_fits(1, 33) && !lora_prefetch_fits(33, 1)
        );
        assert!(lora_prefetch_fits(32, 1) && lora_prefetch_fits(4, 0));
    }
}
