//! Launch counts of the kernels that some `--cuda-experimental` switches remove or replace:
//! tests read them ([`CudaBackend::launches`]) to check that the path they hold to the reference
//! is the one that ran, not a fallback that computes the same values.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
    pub(crate) argmax: AtomicU64,
    pub(crate) sample: AtomicU64,
    pub(crate) graph_captures: AtomicU64,
    pub(crate) graph_replays: AtomicU64,
    pub(crate) graph_failures: AtomicU64,
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
    /// `argmax` launches ([`crate::Experimental::device_argmax`]'s greedy picks).
    pub argmax: u64,
    /// `sample` launches ([`crate::Experimental::device_sampling`]'s draws).
    pub sample: u64,
    /// Steps captured into a CUDA graph ([`crate::Experimental::graphs`]).
    pub graph_captures: u64,
    /// Steps run by replaying a captured graph: the launches of a replayed step are not counted
    /// again, the graph's were counted at its capture.
    pub graph_replays: u64,
    /// Steps that meant to capture or replay and ran eagerly instead: a failed capture, or a
    /// packed plan that moved under its graph (both logged as warnings). A test of graphs
    /// checks this stays 0: the eager run computes the same values.
    pub graph_failures: u64,
}

/// A handle on a backend's launch counts that stays readable after the backend is given away
/// (tests hand it to a model by value).
#[derive(Debug, Clone)]
pub struct LaunchCounter(pub(crate) Arc<LaunchCounters>);

impl LaunchCounter {
    /// The counts so far (see [`LaunchCounts`]).
    pub fn counts(&self) -> LaunchCounts {
        let c = &self.0;
        let get = |x: &AtomicU64| x.load(Ordering::Relaxed);
        LaunchCounts {
            tiled_lora: get(&c.tiled_lora),
            attention_combine: get(&c.attention_combine),
            rope: get(&c.rope),
            silu_mul: get(&c.silu_mul),
            add_rms_norm: get(&c.add_rms_norm),
            lora_prefetch: get(&c.lora_prefetch),
            argmax: get(&c.argmax),
            sample: get(&c.sample),
            graph_captures: get(&c.graph_captures),
            graph_replays: get(&c.graph_replays),
            graph_failures: get(&c.graph_failures),
        }
    }
}

impl CudaBackend {
    /// Launches so far of the kernels that some switches remove or replace (see
    /// [`LaunchCounts`]).
    pub fn launches(&self) -> LaunchCounts {
        self.launch_counter().counts()
    }

    /// A handle on this backend's launch counts (see [`LaunchCounter`]).
    pub fn launch_counter(&self) -> LaunchCounter {
        LaunchCounter(Arc::clone(&self.counts))
    }
}
