//! The scheduler's side of prefix sharing ([`crate::prefix`]): which running sequences may
//! lead a fork, and the copies once a leader's cache holds the shared prefix.

use super::Scheduler;
use crate::backend::Backend;
use crate::error::Result;
use crate::model::Model;
use crate::prefix::{choose, Candidate};

impl<B: Backend> Scheduler<B> {
    /// The running sequences as leaders of a new fork; with `ready`, only those that wait for
    /// no fork of their own (a fork chosen again may point only to those: no cycle).
    pub(super) fn leaders(&self, ready: bool) -> impl Iterator<Item = Candidate<'_>> {
        self.slots.iter().enumerate().filter_map(move |(slot, s)| {
            s.as_ref()
                .filter(|r| !ready || r.fork.is_none())
                .map(|r| Candidate {
                    slot,
                    admitted: r.admitted,
                    waiting: r.fork.is_some(),
                    tokens: &r.seq.tokens,
                    segments: &r.seq.segments,
                    reach: r.prompt_len.max(r.seq.cached),
                })
        })
    }

    /// Copies the shared prefixes whose leaders' caches now hold them (positions through the
    /// model); a sequence whose leader is gone (cancelled, or ended) forks from another that
    /// waits for nothing, oldest first (so the followers of one prompt keep sharing it), or
    /// else computes its whole prompt.
    pub(super) fn resolve_forks(&mut self, model: &Model<B>) -> Result<usize> {
        let mut copied = 0;
        let mut waiting: Vec<(u64, usize)> = (self.slots.iter().enumerate())
            .filter_map(|(i, s)| {
                s.as_ref()
                    .filter(|r| r.fork.is_some())
                    .map(|r| (r.admitted, i))
            })
            .collect();
        waiting.sort_unstable();
        for (_, slot) in waiting {
            let Some(f) = self.slots[slot].as_ref().and_then(|r| r.fork) else {
                continue;
            };
            let leader = self.slots[f.leader_slot].as_ref();
            let cached = match leader.filter(|l| l.admitted == f.leader) {
                Some(l) if l.seq.cached < f.len => continue,
                Some(_) => {
                    let (backend, cfg) = (&model.backend, &model.config);
                    self.kv
                        .copy_prefix(backend, cfg, f.leader_slot, slot, f.len)?;
                    self.stats.prefill_tokens -= f.len;
                    copied += f.len;
                    f.len
                }
                None => {
                    let r = self.slots[slot].as_ref().expect("listed above");
                    let (s, p) = (&r.seq, r.prompt_len);
                    let again = choose(&s.tokens, &s.segments, p, self.leaders(true));
                    if again.is_some() {
                        self.slots[slot].as_mut().expect("listed above").fork = again;
                        continue;
                    }
                    0
                }
            };
            let r = self.slots[slot].as_mut().expect("listed above");
            r.seq.cached = cached;
            r.fork = None;
        }
        Ok(copied)
    }
}
