//! The checks a configuration passes, however it was read (HF `config.json` or GGUF metadata).

use std::path::Path;

use super::token_ids::end_ids_in_vocab;
use super::{layer_count, Activation, ModelConfig, RopeScaling};
use crate::error::{Error, Result};

impl ModelConfig {
    /// Checks the numbers fit together (heads divide, GQA groups whole) and stay within sizes a
    /// real model has (a corrupt header must not make the loader allocate terabytes).
    pub fn validated(self, path: &Path) -> Result<Self> {
        let bad = |m: String| Err(Error::format(path, m));
        layer_count(self.num_layers, path)?;
        for (name, v, max) in [
            ("hidden_size", self.hidden_size, 1 << 20),
            ("intermediate_size", self.intermediate_size, 1 << 22),
            ("num_attention_heads", self.num_heads, 1 << 14),
            ("num_key_value_heads", self.num_kv_heads, 1 << 14),
            ("head_dim", self.head_dim, 1 << 14),
            ("vocab_size", self.vocab_size, 1 << 24),
        ] {
            if v > max {
                return bad(format!("{name} = {v} exceeds {max}: not a model this engine can load (a corrupt file?)"));
            }
        }
        if self.attention_window.len() != self.num_layers
            || self.rope_layers.len() != self.num_layers
        {
            return bad(format!(
                "{} attention windows and {} RoPE flags for {} layers",
                self.attention_window.len(),
                self.rope_layers.len(),
                self.num_layers
            ));
        }
        // No family has them (the exact GELU is GPT-NeoX's and Falcon's, the squared ReLU
        // Arcee's and Nemotron's, xIELU Apertus's, ungated).
        let ungated_only = [Activation::GeluErf, Activation::Relu2, Activation::Xielu];
        if self.arch.gated_mlp() && ungated_only.contains(&self.activation) {
            return bad(
                "a gated feed-forward with the exact GELU, the squared ReLU or xIELU is not supported"
                    .into(),
            );
        }
        if self.num_heads == 0 || self.num_kv_heads == 0 || self.head_dim == 0 {
            return bad("num_attention_heads, num_key_value_heads and head_dim must be > 0".into());
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return bad(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_heads, self.num_kv_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad(format!("head_dim {} must be even for RoPE", self.head_dim));
        }
        if self.hidden_size == 0 || self.vocab_size == 0 || self.num_layers == 0 {
            return bad("hidden_size, vocab_size and num_hidden_layers must be > 0".into());
        }
        // A context must hold a prompt token and a new one (0 was reported as "1 positions").
        if self.max_position_embeddings < 2 {
            return bad(format!(
                "max_position_embeddings (GGUF: *.context_length) = {} must be at least 2",
                self.max_position_embeddings
            ));
        }
        // Ministral 3's attention temperature steps by a count of positions.
        if self.attn_temperature.is_some_and(|t| t.step == 0) {
            return bad("Llama 4's attention temperature steps every 0 positions (original_max_position_embeddings; GGUF: *.rope.scaling.original_context_length); expected at least 1".into());
        }
        // Either one out of range turns every logit NaN, which would otherwise load fine.
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps >= 0.0) {
            let (hf, gguf) = self.arch.eps_keys();
            return bad(format!(
                "{hf} (GGUF: *.attention.{gguf}) = {} must be finite and >= 0",
                self.rms_norm_eps
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return bad(format!(
                "rope_theta (GGUF: *.rope.freq_base) = {} must be finite and > 0",
                self.rope_theta
            ));
        }
        // A start token outside the vocabulary cannot be embedded.
        if let Some(id) = self.bos_token_id.filter(|&i| i as usize >= self.vocab_size) {
            return bad(format!(
                "bos_token_id (GGUF: tokenizer.ggml.bos_token_id) = {id} is outside the \
                 vocabulary of {} tokens",
                self.vocab_size
            ));
        }
        if let Some(RopeScaling::LongRope(l)) = &self.rope_scaling {
            l.check(self.rotary_dim, path)?;
        }
        let mut cfg = self;
        cfg.eos_token_ids = end_ids_in_vocab(path, &cfg.eos_token_ids, cfg.vocab_size);
        Ok(cfg)
    }
}
