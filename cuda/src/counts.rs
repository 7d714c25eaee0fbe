//! Launch counts of the kernels that some `--cuda-experimental` switches remove or replace:
//! tests read them ([`CudaBackend::launches`]) to check that the path they hold to the reference
//! is the one that ran, not a fallback that computes the same values.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::CudaBackend;

/// The counters behind [`CudaBackend::launches`], bumped where the kernels are queued.
#[derive(Debug, Default)]
pub(crate) struct LaunchCounters {
    pub(crate) tiled_lora: AtomicU64,
    pub(crate) attention_combine: AtomicU64,
    pub(crate) rope: AtomicU64,
    pub(crate) silu_mul: AtomicU64,
    pub(crate) add_rms_norm: AtomicU64,
    pub(crate) lora_prefetch: AtomicU64,
}

impl LaunchCounters {
    /// One more launch on `counter`.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Launches counted by [`CudaBackend::launches`] (queued, or recorded into a CUDA graph).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LaunchCounts {
    /// `lora_shrink`/`lora_expand` calls on the tiled kernels
    /// ([`crate::Experimental::tiled_lora`]).
    pub tiled_lora: u64,
    /// `attention_combine` (none under [`crate::Experimental::inline_combine`]).
    pub attention_combine: u64,
    /// `rope` and `rope_qk` (none for the decode steps of
    /// [`crate::Experimental::rope_in_attention`]).
    pub rope: u64,
    /// `silu_mul` (none for the decode steps of [`crate::Experimental::fused_silu`] that take
    /// the decode matvec).
    pub silu_mul: u64,
    /// `add_rms_norm` calls, fused (`fused-norm`) or as `add` then `rms_norm` (none for the
    /// decode steps of [`crate::Experimental::norm_in_matvec`] that take the decode matvec).
    pub add_rms_norm: u64,
    /// `lora_shrink_jobs_prefetch` and `lora_expand_jobs_prefetch` queued as programmatic
    /// dependents ([`crate::Experimental::lora_prefetch`]; none where the device or the driver
    /// refuses dependent launches, whose plain-order fallback computes the same values).
    pub lora_prefetch: u64,
}

impl CudaBackend {
    /// Launches so far of the kernels that some switches remove or replace (see
    /// [`LaunchCounts`]).
    pub fn launches(&self) -> LaunchCounts {
        let c = &self.counts;
        LaunchCounts {
            tiled_lora: c.tiled_lora.load(Ordering::Relaxed),
            attention_combine: c.attention_combine.load(Ordering::Relaxed),
            rope: c.rope.load(Ordering::Relaxed),
            silu_mul: c.silu_mul.load(Ordering::Relaxed),
            add_rms_norm: c.add_rms_norm.load(Ordering::Relaxed),
            lora_prefetch: c.lora_prefetch.load(Ordering::Relaxed),
        }
    }
}
