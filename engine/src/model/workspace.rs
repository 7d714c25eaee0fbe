//! The scratch buffers of a step ([`Workspace`]), sized for a model: reused from step to step.

use super::Model;
use crate::backend::Backend;
use crate::error::Result;
use crate::LoraModule;

/// Scratch buffers for steps of up to `tokens` tokens, reused from step to step.
pub struct Workspace<B: Backend> {
    /// A [`crate::backend::unique_id`] (part of [`crate::backend::StepShape`]).
    pub(super) id: u64,
    pub(super) tokens: usize,
    pub(super) mix_k: usize,
    pub(super) x: B::Buf,
    pub(super) h: B::Buf,
    pub(super) q: B::Buf,
    pub(super) k: B::Buf,
    pub(super) v: B::Buf,
    pub(super) att: B::Buf,
    pub(super) o: B::Buf,
    pub(super) gate: B::Buf,
    pub(super) up: B::Buf,
    pub(super) act: B::Buf,
    /// The normed query and key (`[tokens, q_dim]`, `[tokens, kv_dim]`) of a model with
    /// query/key norms ([`crate::config::ModelConfig::qk_norm`]).
    pub(super) qk_normed: Option<(B::Buf, B::Buf)>,
    /// A sub-block's normed output (`[tokens, hidden]`) for models with post-norms
    /// ([`crate::config::ModelConfig::post_norms`]).
    pub(super) post_normed: Option<B::Buf>,
    pub(super) u: B::Buf,
    pub(super) logits: B::Buf,
    /// [`Backend::argmax`]'s output, a value per logit row.
    pub(super) picks: B::Buf,
    /// What [`Model::forward_argmax`] downloads (its picks, or the rows where the backend
    /// picks on the host), reused across steps.
    pub(super) host: Vec<f32>,
    pub(super) step: Option<B::Step>,
}

impl<B: Backend> Model<B> {
    /// Scratch for steps of up to `tokens` tokens, logits for up to `tokens` rows, and
    /// mixtures of up to `mix_k` adapters.
    pub fn workspace(&self, tokens: usize, mix_k: usize) -> Result<Workspace<B>> {
        let c = &self.config;
        let b = &self.backend;
        let t = tokens.max(1);
        let mix_k = mix_k.max(1);
        Ok(Workspace {
            id: crate::backend::unique_id(),
            tokens: t,
            mix_k,
            x: b.alloc(t * c.hidden_size)?,
            h: b.alloc(t * c.hidden_size)?,
            q: b.alloc(t * c.q_dim())?,
            k: b.alloc(t * c.kv_dim())?,
            v: b.alloc(t * c.kv_dim())?,
            att: b.alloc(t * c.q_dim())?,
            o: b.alloc(t * c.hidden_size)?,
            // An ungated feed-forward writes no gate.
            gate: b.alloc(t * c.intermediate_size * c.has_module(LoraModule::Gate) as usize)?,
            up: b.alloc(t * c.intermediate_size)?,
            act: b.alloc(t * c.intermediate_size)?,
            qk_normed: match c.qk_norm {
                true => Some((b.alloc(t * c.q_dim())?, b.alloc(t * c.kv_dim())?)),
                false => None,
            },
            post_normed: match c.post_norms() {
                true => Some(b.alloc(t * c.hidden_size)?),
                false => None,
            },
            u: b.alloc(t * mix_k * self.max_lora_rank().max(1))?,
            logits: b.alloc(t * c.vocab_size)?,
            picks: b.alloc(t)?,
            host: Vec::new(),
            step: None,
        })
    }
}
