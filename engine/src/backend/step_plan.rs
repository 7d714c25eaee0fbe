//! [`StepPlan`]: what one step runs (tokens, their KV places, their segments' mixtures), as
//! host data, with the checks every backend makes before launching it.

use crate::error::{Error, Result};
use crate::NO_ADAPTER;

/// One run of the model over a batch of tokens (prefill chunks and decode tokens of several
/// sequences mixed freely), as host data. Backends copy it to the device once per step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepPlan {
    /// Token id of each of the `T` tokens.
    pub token_ids: Vec<u32>,
    /// Position of each token in its sequence (0-based).
    pub positions: Vec<u32>,
    /// KV-cache slot (sequence) of each token.
    pub kv_slots: Vec<u32>,
    /// Segment of each token: the routing decision that applies to it.
    pub segment_of_token: Vec<u32>,
    /// Entries per segment mixture (`K`): `mix_slots`/`mix_weights` hold `S * K` entries.
    pub mix_k: usize,
    /// Adapter slot of entry `k` of segment `s` at `s * K + k`; [`NO_ADAPTER`] when unused.
    pub mix_slots: Vec<u32>,
    /// Mixture weight at `s * K + k` (0 when unused).
    pub mix_weights: Vec<f32>,
    /// Tokens (indices into the step) whose logits are wanted, in output order.
    pub logit_rows: Vec<u32>,
    /// What [`crate::backend::Backend::sample`] picks each logit row with, in a step that
    /// samples on the device ([`crate::model::Model::forward_sample`]): per row, its
    /// temperature and uniform draw ([`crate::cpu::sample::push_args`]); empty otherwise.
    pub pick_args: Vec<f32>,
}

impl StepPlan {
    /// Number of tokens in the step.
    pub fn n_tokens(&self) -> usize {
        self.token_ids.len()
    }
    /// Number of segments.
    pub fn n_segments(&self) -> usize {
        self.mix_slots.len().checked_div(self.mix_k).unwrap_or(0)
    }

    /// Whether every token of the step is the only one in its KV slot, as in a decode step
    /// (one new token per sequence): then no token's attention reads a position another token
    /// of the step stores, and a backend may store the keys and values inside attention.
    /// No allocation (it runs every step): a prefill fails at its second token, and a step
    /// whose tokens are all alone has at most as many tokens as the cache has slots.
    pub fn tokens_alone_in_slots(&self) -> bool {
        let s = &self.kv_slots;
        (1..s.len()).all(|i| !s[..i].contains(&s[i]))
    }

    /// Attention's checks, the same on every backend: the step places each of its first
    /// `n_tokens` tokens at a (slot, position) inside a KV cache of `slots` slots of
    /// `capacity` positions.
    pub fn check_kv_positions(&self, n_tokens: usize, slots: usize, capacity: usize) -> Result<()> {
        let placed = self.kv_slots.len().min(self.positions.len());
        if placed < n_tokens {
            return Err(Error::invalid(format!(
                "attention: step places {placed} tokens, {n_tokens} asked"
            )));
        }
        for t in 0..n_tokens {
            let (slot, pos) = (self.kv_slots[t] as usize, self.positions[t] as usize);
            if slot >= slots || pos >= capacity {
                return Err(Error::invalid(format!(
                    "attention: token {t} at (slot {slot}, position {pos}) is outside the KV cache ({slots} slots x {capacity} positions)"
                )));
            }
        }
        Ok(())
    }

    /// The LoRA ops' checks, the same on every backend: the step has `n_tokens` tokens, each
    /// in one of its segments, and every mixture names one of the `n_slots` loaded adapters.
    pub fn check_lora(&self, n_tokens: usize, n_slots: usize) -> Result<()> {
        if self.segment_of_token.len() < n_tokens {
            return Err(Error::invalid(format!(
                "lora: step has {} tokens, {n_tokens} asked",
                self.segment_of_token.len()
            )));
        }
        if let Some(s) = self.segment_of_token[..n_tokens]
            .iter()
            .find(|&&s| s as usize >= self.n_segments())
        {
            return Err(Error::invalid(format!(
                "lora: token refers to segment {s}, the step has {}",
                self.n_segments()
            )));
        }
        if let Some(slot) = self
            .mix_slots
            .iter()
            .find(|&&slot| slot != NO_ADAPTER && slot as usize >= n_slots)
        {
            return Err(Error::invalid(format!(
                "lora: mixture names slot {slot}, {n_slots} adapters are loaded"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_with_slots(kv_slots: &[u32]) -> StepPlan {
        StepPlan {
            token_ids: vec![0; kv_slots.len()],
            positions: vec![0; kv_slots.len()],
            kv_slots: kv_slots.to_vec(),
            segment_of_token: vec![0; kv_slots.len()],
            mix_k: 1,
            mix_slots: vec![crate::NO_ADAPTER],
            mix_weights: vec![0.0],
            logit_rows: vec![],
            pick_args: Vec::new(),
        }
    }

    #[test]
    fn decode_steps_have_each_token_alone_in_its_slot() {
        assert!(plan_with_slots(&[]).tokens_alone_in_slots());
        assert!(plan_with_slots(&[3]).tokens_alone_in_slots());
        assert!(plan_with_slots(&[2, 0, 5, 1]).tokens_alone_in_slots());
        // A prefill (one slot, several positions), and a batch with one sequence's chunk.
        assert!(!plan_with_slots(&[0, 0, 0]).tokens_alone_in_slots());
        assert!(!plan_with_slots(&[4, 1, 2, 1]).tokens_alone_in_slots());
    }
}
