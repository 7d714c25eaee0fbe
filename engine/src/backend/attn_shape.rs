//! The shapes of an attention call and how its scores are formed ([`AttnShape`]), with the
//! checks every backend's attention and soft cap make.

use crate::error::{Error, Result};

/// Checks a soft cap for [`Backend::softcap`].
///
/// # Errors
/// A cap that is not a finite number > 0.
pub fn check_softcap(cap: f32) -> Result<()> {
    match cap.is_finite() && cap > 0.0 {
        true => Ok(()),
        false => Err(Error::invalid(format!(
            "softcap: cap {cap}; expected a finite number > 0"
        ))),
    }
}

/// Checks a [`super::Backend::clamp`] limit: a finite number > 0.
///
/// # Errors
/// [`Error::invalid`] naming the limit otherwise.
pub fn check_clamp(limit: f32) -> Result<()> {
    match limit.is_finite() && limit > 0.0 {
        true => Ok(()),
        false => Err(Error::invalid(format!(
            "clamp: limit {limit}; expected a finite number > 0"
        ))),
    }
}

/// Shapes of one attention call, and how its scores are formed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttnShape {
    /// Tokens in the step.
    pub n_tokens: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (divides `n_heads`).
    pub n_kv_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// Positions each KV slot can hold (the cache is `[slots, capacity, n_kv_heads * head_dim]`).
    pub capacity: usize,
    /// Sliding-window attention: a query at position `i` sees keys `j` with
    /// `i - window < j <= i` (Mistral, Qwen2); 0 = the whole prefix.
    pub window: usize,
    /// Factor of the scores `q·k`: `head_dim^-0.5` ([`AttnShape::head_scale`]), Gemma's
    /// `query_pre_attn_scalar^-0.5` or Granite's `attention_multiplier`
    /// ([`crate::config::ModelConfig::attention_scale`]).
    pub scale: f32,
    /// Gemma 2's soft cap of the scaled scores, `softcap * tanh(s / softcap)` before the
    /// softmax (transformers' `attn_logit_softcapping`); 0 = none.
    pub softcap: f32,
}

impl AttnShape {
    /// `head_dim^-0.5`, the scale of scaled dot-product attention, as every backend computed
    /// it before the scale became a field (the same f32 expression, the same value).
    pub fn head_scale(head_dim: usize) -> f32 {
        1.0 / (head_dim as f32).sqrt()
    }

    /// Whether the scores are soft-capped (`softcap > 0`).
    pub fn capped(&self) -> bool {
        self.softcap > 0.0
    }

    /// Checks what every backend's attention assumes of `scale` and `softcap`.
    ///
    /// # Errors
    /// A scale that is not a finite number > 0, a cap that is not finite and >= 0.
    pub fn check_scores(&self) -> Result<()> {
        let (s, c) = (self.scale, self.softcap);
        if !(s.is_finite() && s > 0.0 && c.is_finite() && c >= 0.0) {
            return Err(Error::invalid(format!(
                "attention: scale {s} and soft cap {c}; expected a finite scale > 0 and a finite cap >= 0 (0: none)"
            )));
        }
        Ok(())
    }
}
