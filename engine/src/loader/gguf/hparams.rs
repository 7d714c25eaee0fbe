//! [`ModelConfig`] from a GGUF file's `llama.*` and `tokenizer.ggml.*` metadata.

use super::{GgufFile, GgufTensorInfo};
use crate::config::{Arch, ModelConfig};
use crate::error::{Error, Result};

impl GgufFile {
    fn meta_u64(&self, key: &str) -> Result<Option<u64>> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                Error::format(
                    &self.path,
                    format!("metadata `{key}`: expected a non-negative integer, found {v:?}"),
                )
            }),
        }
    }
    fn meta_usize(&self, key: &str) -> Result<usize> {
        self.meta_u64(key)?
            .map(|v| v as usize)
            .ok_or_else(|| Error::format(&self.path, format!("missing metadata `{key}`")))
    }
    fn meta_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                Error::format(
                    &self.path,
                    format!("metadata `{key}`: expected a number, found {v:?}"),
                )
            }),
        }
    }
    fn tensor(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    pub(super) fn check_arch(&self) -> Result<()> {
        match self
            .metadata
            .get("general.architecture")
            .and_then(|v| v.as_str())
        {
            Some("llama") => Ok(()),
            other => {
                let found = match other {
                    Some(a) => format!("{a:?}"),
                    None => "missing (or not a string)".to_string(),
                };
                Err(Error::format(
                    &self.path,
                    format!(
                        "unknown architecture: metadata `general.architecture` is {found}, \
                         expected \"llama\" (Llama, Mistral and SmolLM2 GGUFs use it)"
                    ),
                ))
            }
        }
    }

    /// (query heads, key/value heads) from `llama.attention.*`.
    pub(super) fn head_counts(&self) -> Result<(usize, usize)> {
        let heads = self.meta_usize("llama.attention.head_count")?;
        let kv = self
            .meta_u64("llama.attention.head_count_kv")?
            .map_or(heads, |v| v as usize);
        Ok((heads, kv))
    }

    /// Model hyper-parameters from the `llama.*` and `tokenizer.ggml.*` metadata.
    pub fn config(&self) -> Result<ModelConfig> {
        self.check_arch()?;
        let p = &self.path;
        if self.tensor("rope_freqs.weight").is_some() {
            return Err(Error::unsupported(format!(
                "{}: RoPE frequency factors (`rope_freqs.weight`, llama.cpp's form of llama3 rope \
                 scaling): load this model from its HF safetensors directory instead",
                p.display()
            )));
        }
        if let Some(s) = self
            .metadata
            .get("llama.rope.scaling.type")
            .and_then(|v| v.as_str())
        {
            if s != "none" {
                return Err(Error::unsupported(format!(
                    "{}: rope scaling type `{s}` in GGUF",
                    p.display()
                )));
            }
        }
        if self.meta_u64("llama.expert_count")?.unwrap_or(0) > 0 {
            return Err(Error::unsupported(format!(
                "{}: mixture-of-experts llama models",
                p.display()
            )));
        }
        let hidden = self.meta_usize("llama.embedding_length")?;
        let (heads, kv_heads) = self.head_counts()?;
        if heads == 0 {
            return Err(Error::format(p, "llama.attention.head_count must be > 0"));
        }
        let head_dim = self
            .meta_u64("llama.attention.key_length")?
            .map_or(hidden / heads, |v| v as usize);
        if let Some(rot) = self.meta_u64("llama.rope.dimension_count")? {
            if rot as usize != head_dim {
                return Err(Error::unsupported(format!(
                    "{}: partial rotary embedding (llama.rope.dimension_count {rot} != head_dim {head_dim})",
                    p.display()
                )));
            }
        }
        let vocab_size = match self.meta_u64("llama.vocab_size")? {
            Some(v) => v as usize,
            None => match self
                .metadata
                .get("tokenizer.ggml.tokens")
                .and_then(|v| v.as_array())
            {
                Some(a) => a.len(),
                None => {
                    return Err(Error::format(
                        p,
                        "missing metadata `llama.vocab_size` and `tokenizer.ggml.tokens`",
                    ))
                }
            },
        };
        let id = |k: &str| -> Result<Option<u32>> { Ok(self.meta_u64(k)?.map(|v| v as u32)) };
        let mut eos = Vec::new();
        for k in [
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.eot_token_id",
            "tokenizer.ggml.eom_token_id",
        ] {
            if let Some(i) = id(k)? {
                if !eos.contains(&i) {
                    eos.push(i);
                }
            }
        }
        ModelConfig {
            arch: Arch::Llama,
            hidden_size: hidden,
            intermediate_size: self.meta_usize("llama.feed_forward_length")?,
            num_layers: self.meta_usize("llama.block_count")?,
            num_heads: heads,
            num_kv_heads: kv_heads,
            head_dim,
            vocab_size,
            rms_norm_eps: self
                .meta_f64("llama.attention.layer_norm_rms_epsilon")?
                .ok_or_else(|| {
                    Error::format(
                        p,
                        "missing metadata `llama.attention.layer_norm_rms_epsilon`",
                    )
                })? as f32,
            rope_theta: self.meta_f64("llama.rope.freq_base")?.unwrap_or(10000.0),
            rope_llama3: None,
            max_position_embeddings: self
                .meta_u64("llama.context_length")?
                .map_or(4096, |v| v as usize),
            tie_word_embeddings: self.tensor("output.weight").is_none(),
            qkv_bias: self.tensor("blk.0.attn_q.bias").is_some(),
            o_bias: self.tensor("blk.0.attn_output.bias").is_some(),
            mlp_bias: self.tensor("blk.0.ffn_down.bias").is_some(),
            bos_token_id: id("tokenizer.ggml.bos_token_id")?,
            eos_token_ids: eos,
            // llama.cpp's `llama` architecture has no sliding window (Mistral GGUFs run with
            // full attention there too).
            attention_window: vec![None; self.meta_usize("llama.block_count")?.min(1 << 16)],
        }
        .validated(p)
    }
}
