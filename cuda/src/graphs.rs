//! CUDA graphs for decode steps ([`crate::Experimental::graphs`]): a step of a given
//! [`StepShape`] runs eagerly the first time (its scratch buffers grow to size), is captured the
//! second time into a graph with its own fixed plan buffers, and from then on each step of that
//! shape copies its plan into those buffers and replays the graph: one launch instead of
//! ~10 per layer, and no host work per op. [`GraphCache`] is the host-side bookkeeping
//! (which shapes to capture, least-recently-used eviction, invalidation when a scratch buffer
//! the graphs baked in is reallocated); it has no CUDA in it and is tested on the CPU.

use std::collections::HashMap;

use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::CudaGraph;
use dlp_engine::backend::{StepPlan, StepShape};
use dlp_engine::Result;

use crate::counts::LaunchCounters;
use crate::{err, CudaBackend, CudaStep};

/// Steps of more tokens than this run eagerly (prefill): their shapes rarely repeat.
pub const GRAPH_MAX_TOKENS: usize = 64;
/// Recorded graphs kept at once (each holds its plan buffers and an instantiated graph).
pub const GRAPH_CAPACITY: usize = 32;

/// What to do with a step, from [`GraphCache::action`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run the launches directly (first sight of the shape, too many tokens, or refused).
    Eager,
    /// Second sight: capture it into a graph, then launch that.
    Capture,
    /// Copy the plan into the recorded buffers and replay the graph.
    Replay,
}

enum State<G> {
    Seen,
    Refused,
    Ready(G),
}

struct Entry<G> {
    state: State<G>,
    last_use: u64,
}

/// The recorded graphs, by step shape. `G` is what a recording holds (a graph and its plan
/// buffers on the GPU; anything in the tests).
pub struct GraphCache<G> {
    entries: HashMap<StepShape, Entry<G>>,
    /// The scratch generation the recordings were made under (see [`Self::action`]).
    generation: u64,
    clock: u64,
    capacity: usize,
    max_tokens: usize,
}

impl<G> GraphCache<G> {
    /// An empty cache keeping up to `capacity` recordings of steps of up to `max_tokens`.
    pub fn new(capacity: usize, max_tokens: usize) -> Self {
        GraphCache {
            entries: HashMap::new(),
            generation: 0,
            clock: 0,
            capacity: capacity.max(1),
            max_tokens,
        }
    }

    /// What to do with a step of `shape` when the backend's scratch buffers are at
    /// `generation` (bumped on every reallocation): a change drops every recording, since
    /// they hold the old addresses.
    pub fn action(&mut self, shape: &StepShape, generation: u64) -> Action {
        if generation != self.generation {
            self.entries.clear();
            self.generation = generation;
        }
        if shape.n_tokens > self.max_tokens {
            return Action::Eager;
        }
        self.clock += 1;
        let now = self.clock;
        if let Some(e) = self.entries.get_mut(shape) {
            e.last_use = now;
            return match e.state {
                State::Seen => Action::Capture,
                State::Refused => Action::Eager,
                State::Ready(_) => Action::Replay,
            };
        }
        // Seen-only entries are cheap but unbounded in number; keep a few times the capacity,
        // dropping the oldest seen-only one first.
        if self.entries.len() >= 4 * self.capacity
            && !self.evict(|e| matches!(e.state, State::Seen))
        {
            self.evict(|_| true);
        }
        self.entries.insert(
            *shape,
            Entry {
                state: State::Seen,
                last_use: now,
            },
        );
        Action::Eager
    }

    /// The recording of `shape`, when [`Self::action`] said [`Action::Replay`].
    pub fn get_mut(&mut self, shape: &StepShape) -> Option<&mut G> {
        match self.entries.get_mut(shape) {
            Some(Entry {
                state: State::Ready(g),
                ..
            }) => Some(g),
            _ => None,
        }
    }

    /// Keeps `g` as the recording of `shape`, evicting the least recently used recording when
    /// full. Returns false (and drops `g`) when `generation` is no longer current.
    pub fn store(&mut self, shape: &StepShape, g: G, generation: u64) -> bool {
        if generation != self.generation {
            return false;
        }
        if self.ready() >= self.capacity {
            self.evict(|e| matches!(e.state, State::Ready(_)));
        }
        self.clock += 1;
        self.entries.insert(
            *shape,
            Entry {
                state: State::Ready(g),
                last_use: self.clock,
            },
        );
        true
    }

    /// Never records `shape` again (its capture failed); it runs eagerly.
    pub fn refuse(&mut self, shape: &StepShape) {
        self.clock += 1;
        self.entries.insert(
            *shape,
            Entry {
                state: State::Refused,
                last_use: self.clock,
            },
        );
    }

    /// Recordings held.
    pub fn ready(&self) -> usize {
        self.entries
            .values()
            .filter(|e| matches!(e.state, State::Ready(_)))
            .count()
    }

    /// Removes the least recently used entry that `which` picks; false when none.
    fn evict(&mut self, which: impl Fn(&Entry<G>) -> bool) -> bool {
        let oldest = self
            .entries
            .iter()
            .filter(|(_, e)| which(e))
            .min_by_key(|(_, e)| e.last_use)
            .map(|(k, _)| *k);
        oldest.is_some_and(|k| self.entries.remove(&k).is_some())
    }
}

/// One recorded step: the instantiated graph and the plan buffers its launches read.
pub(crate) struct Recorded {
    graph: CudaGraph,
    step: Option<CudaStep>,
}

// SAFETY: a CudaGraph is a pair of driver handles; the cache that holds it sits behind the
// backend's mutex, so it is only ever used by one thread at a time, as the driver requires.
unsafe impl Send for Recorded {}

impl CudaBackend {
    /// [`dlp_engine::Backend::run_recorded`] with graphs on: see the module docs.
    pub(crate) fn run_recorded_graph(
        &self,
        shape: &StepShape,
        plan: &StepPlan,
        reuse: Option<CudaStep>,
        body: &mut dyn FnMut(&CudaStep) -> Result<()>,
    ) -> Result<Option<CudaStep>> {
        let eager = |reuse: Option<CudaStep>, body: &mut dyn FnMut(&CudaStep) -> Result<()>| {
            let step = self.upload_step_impl(plan, reuse)?;
            body(&step)?;
            Ok(Some(step))
        };
        let Some(graphs) = self.graphs.as_ref() else {
            return eager(reuse, body);
        };
        let generation = self.scratch_generation();
        let mut cache = graphs.lock().unwrap_or_else(|p| p.into_inner());
        match cache.action(shape, generation) {
            Action::Eager => eager(reuse, body),
            Action::Replay => {
                let rec = cache.get_mut(shape).expect("action said replay");
                let recorded = rec.step.as_ref().and_then(CudaStep::layout);
                // Same shape, same lengths: the upload reuses every buffer, so the addresses
                // the graph holds stay valid. A failed upload has dropped them: the recording
                // goes too (its graph would read freed memory).
                let step = match self.upload_step_impl(plan, rec.step.take()) {
                    Ok(s) => s,
                    Err(e) => {
                        cache.refuse(shape);
                        return Err(e);
                    }
                };
                if step.moved_from(recorded) {
                    // `packed-upload`, with a plan whose lengths its shape does not fix (extra
                    // `pick_args` on a step that does not sample, past the recorded buffer):
                    // the graph would read the old addresses. This step runs eagerly.
                    tracing::warn!("a step's packed plan moved under its CUDA graph; eager");
                    LaunchCounters::bump(&self.counts.graph_failures);
                    cache.refuse(shape);
                    body(&step)?;
                    return Ok(Some(step));
                }
                rec.step = Some(step);
                rec.graph
                    .launch()
                    .map_err(|e| err(format!("replaying the CUDA graph of a step: {e}")))?;
                LaunchCounters::bump(&self.counts.graph_replays);
                self.sync_if_asked("graph replay")?;
                Ok(reuse)
            }
            Action::Capture => {
                let step = self.upload_step_impl(plan, None)?;
                match self.capture(&step, body) {
                    Ok(graph) if self.scratch_generation() == generation => {
                        graph
                            .launch()
                            .map_err(|e| err(format!("launching a captured step: {e}")))?;
                        LaunchCounters::bump(&self.counts.graph_captures);
                        self.sync_if_asked("graph launch")?;
                        let rec = Recorded {
                            graph,
                            step: Some(step),
                        };
                        cache.store(shape, rec, generation);
                        Ok(reuse)
                    }
                    outcome => {
                        // Nothing ran during the capture: run the step eagerly (a real input
                        // error then comes back from it) and never capture this shape again.
                        if let Err(e) = outcome {
                            tracing::warn!("CUDA graph capture failed, running eagerly: {e}");
                            LaunchCounters::bump(&self.counts.graph_failures);
                        }
                        cache.refuse(shape);
                        eager(reuse, body)
                    }
                }
            }
        }
    }

    /// Records `body`'s launches on `step` into a graph (nothing executes).
    fn capture(
        &self,
        step: &CudaStep,
        body: &mut dyn FnMut(&CudaStep) -> Result<()>,
    ) -> Result<CudaGraph> {
        let stream = self.stream();
        // Thread-local mode: a call that is unsafe under capture (a synchronous allocation)
        // fails instead of being recorded.
        stream
            .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .map_err(|e| err(format!("cuStreamBeginCapture: {e}")))?;
        self.set_capturing(true);
        // Should `body` panic, the guard still ends the capture and clears the flag.
        let mut guard = CaptureGuard {
            backend: self,
            open: true,
        };
        let r = body(step);
        let g = guard.end();
        r?;
        g.map_err(|e| err(format!("cuStreamEndCapture / cuGraphInstantiate: {e}")))?
            .ok_or_else(|| err("the capture recorded nothing"))
    }
}

/// Ends a capture begun by [`CudaBackend::capture`] exactly once, on every path.
struct CaptureGuard<'a> {
    backend: &'a CudaBackend,
    open: bool,
}

impl CaptureGuard<'_> {
    fn end(&mut self) -> Result<Option<CudaGraph>, cudarc::driver::DriverError> {
        self.open = false;
        self.backend.set_capturing(false);
        self.backend
            .stream()
            .end_capture(CUgraphInstantiate_flags(0))
    }
}

impl Drop for CaptureGuard<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(n_tokens: usize, workspace: u64) -> StepShape {
        StepShape {
            workspace,
            kv: 1,
            lora: 1,
            n_tokens,
            n_segments: n_tokens,
            mix_k: 2,
            n_logit_rows: n_tokens,
            any_lora: true,
            tokens_alone_in_slots: true,
            argmax: false,
            sample: false,
        }
    }

    #[test]
    fn a_shape_runs_eagerly_then_is_captured_then_replayed() {
        let mut c = GraphCache::<u32>::new(4, 64);
        let s = shape(1, 7);
        assert_eq!(c.action(&s, 0), Action::Eager);
        assert_eq!(c.action(&s, 0), Action::Capture);
        assert!(c.store(&s, 11, 0));
        assert_eq!(c.action(&s, 0), Action::Replay);
        assert_eq!(c.get_mut(&s), Some(&mut 11));
        // Another workspace (or KV cache, or LoRA stacks) is another shape.
        assert_eq!(c.action(&shape(1, 8), 0), Action::Eager);
    }

    #[test]
    fn steps_over_the_token_limit_are_never_captured() {
        let mut c = GraphCache::<u32>::new(4, 64);
        let s = shape(65, 1);
        for _ in 0..3 {
            assert_eq!(c.action(&s, 0), Action::Eager);
        }
        assert_eq!(c.ready(), 0);
    }

    #[test]
    fn a_scratch_reallocation_drops_every_recording() {
        let mut c = GraphCache::<u32>::new(4, 64);
        let s = shape(2, 1);
        c.action(&s, 0);
        c.action(&s, 0);
        assert!(c.store(&s, 1, 0));
        assert_eq!(c.action(&s, 1), Action::Eager, "generation 1: start over");
        assert_eq!(c.ready(), 0);
        assert_eq!(c.action(&s, 1), Action::Capture);
        // A recording made under an older generation is not kept.
        assert!(!c.store(&s, 2, 0));
        assert!(c.get_mut(&s).is_none());
    }

    #[test]
    fn the_least_recently_used_recording_is_evicted_when_full() {
        let mut c = GraphCache::<usize>::new(2, 64);
        for t in 1..=2 {
            c.action(&shape(t, 1), 0);
            c.action(&shape(t, 1), 0);
            assert!(c.store(&shape(t, 1), t, 0));
        }
        assert_eq!(c.action(&shape(1, 1), 0), Action::Replay); // 2 is now the oldest
        c.action(&shape(3, 1), 0);
        c.action(&shape(3, 1), 0);
        assert!(c.store(&shape(3, 1), 3, 0));
        assert_eq!(c.ready(), 2);
        assert!(c.get_mut(&shape(2, 1)).is_none());
        assert_eq!(c.get_mut(&shape(1, 1)), Some(&mut 1));
        assert_eq!(c.get_mut(&shape(3, 1)), Some(&mut 3));
    }

    #[test]
    fn a_refused_shape_stays_eager() {
        let mut c = GraphCache::<u32>::new(4, 64);
        let s = shape(1, 1);
        c.action(&s, 0);
        c.refuse(&s);
        for _ in 0..3 {
            assert_eq!(c.action(&s, 0), Action::Eager);
        }
    }

    #[test]
    fn shapes_seen_once_do_not_grow_without_bound() {
        let mut c = GraphCache::<u32>::new(2, 64);
        let ready = shape(3, 1000);
        c.action(&ready, 0);
        c.action(&ready, 0);
        assert!(c.store(&ready, 9, 0));
        for w in 0..100 {
            c.action(&shape(1, w), 0);
        }
        assert!(c.entries.len() <= 8, "{} entries", c.entries.len());
        // Seen-only entries went first: the recording is still there.
        assert_eq!(c.get_mut(&ready), Some(&mut 9));
    }
}
