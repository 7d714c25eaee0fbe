//! The host checks of a step plan against the model, its KV cache and workspace, made before
//! anything is launched (a backend trusts them: a bad index would read out of bounds).

use super::{Model, Workspace};
use crate::backend::{Backend, StepPlan, NO_ADAPTER};
use crate::error::{Error, Result};
use crate::kv_cache::KvCache;

impl<B: Backend> Model<B> {
    pub(super) fn check_plan(
        &self,
        plan: &StepPlan,
        kv: &KvCache<B>,
        ws: &Workspace<B>,
    ) -> Result<()> {
        let t = plan.n_tokens();
        let n_seg = plan.n_segments();
        let bad = |m: String| Err(Error::invalid(format!("step plan: {m}")));
        if t == 0 {
            return bad("no tokens".into());
        }
        if t > ws.tokens || plan.logit_rows.len() > ws.tokens {
            return bad(format!(
                "{t} tokens / {} logit rows exceed the workspace ({})",
                plan.logit_rows.len(),
                ws.tokens
            ));
        }
        if plan.positions.len() != t || plan.kv_slots.len() != t || plan.segment_of_token.len() != t
        {
            return bad("per-token arrays differ in length".into());
        }
        if plan.mix_k == 0
            || plan.mix_k > ws.mix_k
            || plan.mix_weights.len() != plan.mix_slots.len()
            || !plan.mix_slots.len().is_multiple_of(plan.mix_k)
        {
            return bad(format!(
                "mixture table: K = {}, workspace K = {}",
                plan.mix_k, ws.mix_k
            ));
        }
        for i in 0..t {
            if plan.segment_of_token[i] as usize >= n_seg {
                return bad(format!(
                    "token {i} refers to segment {}, there are {n_seg}",
                    plan.segment_of_token[i]
                ));
            }
            if plan.kv_slots[i] as usize >= kv.slots || plan.positions[i] as usize >= kv.capacity {
                return bad(format!(
                    "token {i} at (slot {}, position {}) is outside the KV cache",
                    plan.kv_slots[i], plan.positions[i]
                ));
            }
            if plan.token_ids[i] as usize >= self.config.embed_rows() {
                return bad(format!(
                    "token id {} is outside the vocabulary ({})",
                    plan.token_ids[i],
                    self.config.embed_rows()
                ));
            }
        }
        for (&s, &w) in plan.mix_slots.iter().zip(&plan.mix_weights) {
            if s != NO_ADAPTER && s as usize >= self.adapter_names.len() {
                return bad(format!(
                    "mixture names slot {s}, {} adapters are loaded",
                    self.adapter_names.len()
                ));
            }
            if !w.is_finite() {
                return bad(format!("mixture weight {w} is not finite"));
            }
        }
        if plan.logit_rows.iter().any(|&r| r as usize >= t) {
            return bad("a logit row is outside the step".into());
        }
        Ok(())
    }
}
