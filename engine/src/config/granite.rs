//! IBM Granite (`GraniteForCausalLM`, `model_type: granite`): Llama with four multipliers,
//! read as transformers' GraniteConfig reads them (each 1 where the config leaves it out).

use std::path::Path;

use serde_json::Value;

use super::{Arch, Fields};
use crate::error::{Error, Result};

/// Granite's multipliers (transformers' GraniteModel and GraniteDecoderLayer; llama.cpp's
/// `granite.embedding_scale`, `granite.attention.scale`, `granite.residual_scale`,
/// `granite.logit_scale`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GraniteScales {
    /// The embedding rows are multiplied by this (`embedding_multiplier`).
    pub embedding: f32,
    /// The factor of the attention scores, in place of `head_dim^-0.5`
    /// (`attention_multiplier`; transformers' GraniteAttention `scaling`).
    pub attention: f32,
    /// Each sub-block's output is multiplied by this before its residual add
    /// (`residual_multiplier`).
    pub residual: f32,
    /// The logits are divided by this (`logits_scaling`).
    pub logits: f32,
}

/// Granite's multipliers from an HF config, `None` for the other families.
///
/// # Errors
/// A multiplier that is not a number > 0 that f32 holds with its reciprocal
/// ([`super::positive_f32`]; the message names its key).
pub(super) fn from_hf(v: &Value, arch: Arch, path: &Path) -> Result<Option<GraniteScales>> {
    if arch != Arch::Granite {
        return Ok(None);
    }
    let f = Fields { v, path };
    let get = |key: &str| -> Result<f32> {
        if v.get(key).is_some_and(Value::is_null) {
            // transformers' GraniteConfig refuses it too.
            return Err(Error::format(
                path,
                format!("`{key}` is null; expected a number > 0 (or no key: 1)"),
            ));
        }
        let x = f.f64_or(key, 1.0)?;
        super::positive_f32(x).ok_or_else(|| {
            Error::format(
                path,
                format!("`{key}` is {x}; expected {}", super::POSITIVE_F32),
            )
        })
    };
    Ok(Some(GraniteScales {
        embedding: get("embedding_multiplier")?,
        attention: get("attention_multiplier")?,
        residual: get("residual_multiplier")?,
        logits: get("logits_scaling")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::ModelConfig;
    use super::GraniteScales;
    use serde_json::json;
    use std::path::Path;

    /// ibm-granite/granite-3.1-2b-instruct's config.json as the Hub has it: the multipliers,
    /// its scale in place of head_dim's, Llama's computation otherwise; GraniteConfig's 1 for
    /// absent keys; nonsense refused, naming the key.
    #[test]
    fn granite_config() {
        let v = json!({"architectures": ["GraniteForCausalLM"], "model_type": "granite",
            "attention_bias": false, "attention_multiplier": 0.015625, "bos_token_id": 0,
            "embedding_multiplier": 12.0, "eos_token_id": 0, "hidden_act": "silu",
            "hidden_size": 2048, "intermediate_size": 8192, "logits_scaling": 8.0,
            "max_position_embeddings": 131072, "mlp_bias": false, "num_attention_heads": 32,
            "num_hidden_layers": 40, "num_key_value_heads": 8, "residual_multiplier": 0.22,
            "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 5000000.0,
            "tie_word_embeddings": true, "vocab_size": 49155});
        let read = |v: &serde_json::Value| ModelConfig::from_hf_json(v, Path::new("config.json"));
        let c = read(&v).unwrap();
        let want = GraniteScales {
            embedding: 12.0,
            attention: 0.015625,
            residual: 0.22,
            logits: 8.0,
        };
        assert_eq!(c.granite, Some(want));
        assert_eq!((c.head_dim, c.attention_scale()), (64, 0.015625));
        assert_eq!(
            (c.embed_scale(), c.residual_scale()),
            (Some(12.0), Some(0.22))
        );
        assert_eq!(c.logit_divisor(), Some(8.0));
        assert!(c.gemma.is_none() && c.attention_window.iter().all(Option::is_none));
        let mut sparse = v.clone();
        for k in ["attention_multiplier", "embedding_multiplier"] {
            sparse.as_object_mut().unwrap().remove(k);
        }
        let c = read(&sparse).unwrap();
        assert_eq!((c.attention_scale(), c.embed_scale()), (1.0, None));
        for (k, x) in [
            ("logits_scaling", json!(0)),
            ("residual_multiplier", json!("a")),
            ("embedding_multiplier", json!(null)),
            ("attention_multiplier", json!(1e39)),
        ] {
            let mut bad = v.clone();
            bad[k] = x;
            let e = read(&bad).unwrap_err().to_string();
            assert!(e.contains(k), "{e}");
        }
    }
}
