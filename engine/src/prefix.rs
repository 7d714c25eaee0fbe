//! Prefix sharing between sequences in flight: a sequence whose first tokens, and the
//! mixtures applied to them, equal a running sequence's copies that sequence's keys and
//! values ([`crate::kv_cache::KvCache::copy_prefix`]) instead of recomputing them. The `n`
//! choices of one request share their whole prompt; chat requests share their template's
//! opening. It is vLLM's automatic prefix caching for the live KV slots only: nothing is
//! kept after a sequence ends.
//!
//! Keys and values at position `p` depend only on the tokens and mixtures at positions
//! `<= p` (causal attention; a mixture's LoRA applies to its own tokens), so a shared prefix
//! has the same cache rows in both sequences.

use crate::generate::Segments;

/// Prefixes shorter than this are recomputed: the wait for the leader's prefill and the copy
/// are not worth a few tokens.
pub const MIN_SHARED: usize = 16;

/// A sequence waiting to copy `len` positions from the sequence admitted as `leader` in KV
/// slot `leader_slot`, once the leader's cache holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fork {
    /// The leader's admission number, unique in its scheduler (the slot may have been handed
    /// to another sequence, and callers may reuse a finished sequence's id).
    pub leader: u64,
    /// The leader's KV slot.
    pub leader_slot: usize,
    /// Positions to copy.
    pub len: usize,
}

/// The index of the segment of `segments` that applies at position `i`.
fn segment_at(segments: &Segments, i: usize) -> usize {
    segments
        .iter()
        .rposition(|(start, _)| *start <= i)
        .unwrap_or(0)
}

/// How many leading positions two sequences share: equal tokens, under equal mixtures.
/// Segments are `(first position, mixture)`, sorted; the first applies from position 0.
pub fn shared_prefix(a: &[u32], a_segs: &Segments, b: &[u32], b_segs: &Segments) -> usize {
    let tokens = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    // The mixtures can only start to differ where either sequence starts a segment.
    let mut starts: Vec<usize> = (a_segs.iter().chain(b_segs))
        .map(|(s, _)| *s)
        .filter(|&s| s < tokens)
        .collect();
    starts.push(0);
    starts.sort_unstable();
    starts.dedup();
    fn mixture(segs: &Segments, i: usize) -> Option<&crate::lora::Mixture> {
        segs.get(segment_at(segs, i)).map(|s| &s.1)
    }
    starts
        .into_iter()
        .find(|&s| mixture(a_segs, s) != mixture(b_segs, s))
        .unwrap_or(tokens)
}

/// A running sequence, as a possible leader: its slot, admission, tokens, segments, and how
/// many of its tokens will be in the cache without it sampling again (its prompt, or those
/// cached).
pub struct Candidate<'a> {
    /// KV slot.
    pub slot: usize,
    /// Admission number, unique in its scheduler.
    pub admitted: u64,
    /// It waits for a fork of its own: among equal prefixes, one that does not wait leads
    /// (its followers would otherwise wait for its copy too).
    pub waiting: bool,
    /// Prompt and generated tokens.
    pub tokens: &'a [u32],
    /// Its mixtures.
    pub segments: &'a Segments,
    /// Positions its cache holds or will hold before it samples again: positions past them
    /// (a token just sampled, not yet through the model) are never waited for, as the
    /// sequence may end first.
    pub reach: usize,
}

/// The fork of a new sequence (`tokens`, `segments`, a prompt of `prompt_len`) from the
/// candidate it shares the longest prefix with, if at least [`MIN_SHARED`] positions. At most
/// `prompt_len - 1` positions are copied: the prompt's last token goes through the model,
/// for the logits of the first sampled token. Ties go to a candidate that is not waiting,
/// then to the lowest slot.
pub fn choose<'a>(
    tokens: &[u32],
    segments: &Segments,
    prompt_len: usize,
    candidates: impl IntoIterator<Item = Candidate<'a>>,
) -> Option<Fork> {
    let limit = prompt_len.saturating_sub(1);
    candidates
        .into_iter()
        .map(|c| {
            let len = shared_prefix(c.tokens, c.segments, tokens, segments)
                .min(c.reach)
                .min(limit);
            let fork = Fork {
                leader: c.admitted,
                leader_slot: c.slot,
                len,
            };
            (fork, c.waiting)
        })
        .filter(|(f, _)| f.len >= MIN_SHARED)
        .max_by_key(|&(f, waiting)| (f.len, !waiting, std::cmp::Reverse(f.leader_slot)))
        .map(|(f, _)| f)
}

#[cfg(test)]
mod tests {
    use super::{choose, shared_prefix, Candidate, Fork, MIN_SHARED};

    #[test]
    fn the_longest_shared_prefix_leads() {
        let segs = vec![(0, vec![(0, 1.0f32)])];
        let prompt: Vec<u32> = (0..40).collect();
        let mut other = prompt.clone();
        other[20] = 99;
        let c = |slot, tokens, reach| Candidate {
            slot,
            admitted: 10 + slot as u64,
            waiting: false,
            tokens,
            segments: &segs,
            reach,
        };
        let fork = |slot, len| Fork {
            leader: 10 + slot as u64,
            leader_slot: slot,
            len,
        };
        // The same prompt: all but its last token; a prompt sharing 20 tokens: 20.
        let pick = choose(
            &prompt,
            &segs,
            40,
            [c(0, &other[..], 40), c(1, &prompt[..], 40)],
        );
        assert_eq!(pick, Some(fork(1, 39)));
        assert_eq!(
            choose(&prompt, &segs, 40, [c(0, &other[..], 40)]),
            Some(fork(0, 20))
        );
        // Only what the leader's cache will hold; nothing under MIN_SHARED.
        assert_eq!(
            choose(&prompt, &segs, 40, [c(1, &prompt[..], 30)]),
            Some(fork(1, 30))
        );
        let short = &prompt[..MIN_SHARED];
        assert_eq!(
            choose(short, &segs, MIN_SHARED, [c(1, &prompt[..], 40)]),
            None
        );
        assert_eq!(choose(&prompt, &segs, 40, []), None);
        // Equal prefixes: the one not waiting for its own copy leads, then the lowest slot.
        let waiting = Candidate {
            waiting: true,
            ..c(0, &prompt[..], 40)
        };
        let pick = choose(&prompt, &segs, 40, [waiting, c(2, &prompt[..], 40)]);
        assert_eq!(pick, Some(fork(2, 39)));
        let pick = choose(
            &prompt,
            &segs,
            40,
            [c(3, &prompt[..], 40), c(2, &prompt[..], 40)],
        );
        assert_eq!(pick, Some(fork(2, 39)));
    }

    #[test]
    fn tokens_and_mixtures_must_both_match() {
        let (m1, m2) = (vec![(0, 1.0f32)], vec![(1, 0.5f32), (0, 0.5)]);
        let one = vec![(0, m1.clone())];
        let a = [1, 2, 3, 4, 5, 6];
        assert_eq!(shared_prefix(&a, &one, &[1, 2, 3, 9], &one), 3);
        assert_eq!(shared_prefix(&a, &one, &a, &one), 6);
        assert_eq!(shared_prefix(&a, &one, &a[..4], &one), 4);
        // Another mixture from position 2 on (sentence routing): shared up to it.
        let switched = vec![(0, m1.clone()), (2, m2.clone())];
        assert_eq!(shared_prefix(&a, &one, &a, &switched), 2);
        assert_eq!(shared_prefix(&a, &switched, &a, &one), 2);
        // The same switch in both: all shared; a switch past the shared tokens changes nothing.
        assert_eq!(shared_prefix(&a, &switched, &a, &switched), 6);
        let late = vec![(0, m1.clone()), (5, m2.clone())];
        assert_eq!(shared_prefix(&a, &late, &[1, 2, 3], &one), 3);
        // Another mixture from the start, or none (the base model) against one.
        assert_eq!(shared_prefix(&a, &vec![(0, m2)], &a, &one), 0);
        assert_eq!(shared_prefix(&a, &vec![(0, vec![])], &a, &one), 0);
    }
}
