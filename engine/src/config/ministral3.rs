//! Ministral 3 (`ministral3`) and the text model of Mistral 3's text-and-image checkpoints
//! (`mistral3`, `Mistral3ForConditionalGeneration`): Ministral3Config's defaults and Llama 4's
//! attention temperature.

use std::path::Path;

use serde_json::{json, Value};

use super::{rope, RopeScaling};
use crate::error::{Error, Result};

/// Llama 4's attention temperature, which Ministral 3 applies (transformers'
/// `get_llama_4_attn_scale`; llama.cpp's `attention.temperature_scale`): the query of the token
/// at position `pos` is multiplied by [`AttnTemperature::factor`] after RoPE. Below `step` the
/// factor is exactly 1. The engine folds it into a query-only copy of the RoPE table
/// ([`crate::rope_table::query_table`]): the factor is a scalar per position, so it commutes
/// with the rotation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttnTemperature {
    /// `rope_parameters.llama_4_scaling_beta` (Ministral 3: 0.1).
    pub beta: f64,
    /// The positions per step of the factor: `rope_parameters.original_max_position_embeddings`
    /// (Ministral 3: 16384; GGUF `rope.scaling.original_context_length`; llama.cpp's
    /// `n_attn_temp_floor_scale`). At least 1.
    pub step: usize,
}

impl AttnTemperature {
    /// The query's factor at position `pos` (from 0): `1 + beta * ln(1 + ⌊pos / step⌋)`
    /// (transformers' `get_llama_4_attn_scale` over `cache_position`; llama.cpp's
    /// `llm_graph_input_attn_temp` with `mistral3`'s offset 0). Exactly 1 below `step`.
    pub fn factor(&self, pos: usize) -> f64 {
        1.0 + self.beta * (1.0 + (pos / self.step.max(1)) as f64).ln()
    }
}

/// Ministral3Config's defaults (transformers 5.25) for the keys `v` leaves out, and its RoPE
/// settings (YaRN, factor 16 over 16384 positions, base 1e6, beta 0.1) where it has none
/// ([`rope::settings`]) and no `rope_parameters` object. It has no window by default, where
/// MistralConfig has 4096 ([`super::windows`]).
///
/// # Errors
/// RoPE settings that are not an object ([`rope::settings`]).
pub(super) fn ministral3_view(v: &Value, path: &Path) -> Result<Value> {
    let mut out = super::defaults::with_defaults(
        v,
        json!({
            "vocab_size": 131_072, "hidden_size": 4096, "intermediate_size": 14_336,
            "num_hidden_layers": 34, "num_attention_heads": 32, "num_key_value_heads": 8,
            "head_dim": 128, "max_position_embeddings": 262_144, "rms_norm_eps": 1e-5,
            "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": false,
        }),
    );
    let own = v.get("rope_parameters").is_some_and(Value::is_object);
    if rope::settings(v, path)?.is_none() && !own {
        out["rope_parameters"] = json!({
            "rope_type": "yarn", "rope_theta": 1_000_000.0, "factor": 16.0,
            "original_max_position_embeddings": 16384,
            "max_position_embeddings": out["max_position_embeddings"].clone(),
            "beta_fast": 32.0, "beta_slow": 1.0, "mscale_all_dim": 1.0, "mscale": 1.0,
            "llama_4_scaling_beta": 0.1,
        });
    }
    Ok(out)
}

/// Ministral 3's attention temperature from config `v`, its RoPE settings `settings`
/// ([`rope::settings`]) and what they parsed to (`scaling`): `llama_4_scaling_beta` over the
/// pretraining context transformers' standardized settings hold, the one the scaling rotates by
/// (YaRN's, Llama 3's, LongRoPE's: a top-level `original_max_position_embeddings` first, as
/// `standardize_rope_params`), else the config's own (top level first). `None` where beta is 0
/// (the factor is then 1 everywhere).
///
/// # Errors
/// No settings, no beta or no pretraining context (transformers' Ministral3Attention fails on
/// either), a beta that is not a finite number, or a context that is not a whole number.
pub(super) fn attn_temperature(
    v: &Value,
    settings: Option<&Value>,
    scaling: Option<&RopeScaling>,
    path: &Path,
) -> Result<Option<AttnTemperature>> {
    let missing = |what: &str| {
        Error::format(
            path,
            format!("Ministral 3 needs `{what}` in its RoPE settings (`rope_parameters`): transformers' Ministral3Attention scales queries by it"),
        )
    };
    let get = |k: &str| settings.and_then(|s| s.get(k)).filter(|x| !x.is_null());
    let beta = match get("llama_4_scaling_beta") {
        None => return Err(missing("llama_4_scaling_beta")),
        Some(x) => x.as_f64().filter(|b| b.is_finite()).ok_or_else(|| {
            Error::format(
                path,
                format!("field `llama_4_scaling_beta`: expected a finite number, found {x}"),
            )
        })?,
    };
    if beta == 0.0 {
        return Ok(None);
    }
    // A whole number, as transformers' configs write it (`16384`, or `16384.0`).
    let whole = |x: f64| (x.is_finite() && x >= 1.0 && x.fract() == 0.0 && x < 1e9).then_some(x);
    let scaled = match scaling {
        Some(RopeScaling::Yarn(y)) => Some(y.original_max_position_embeddings),
        Some(RopeScaling::Llama3(l)) => Some(l.original_max_position_embeddings),
        Some(RopeScaling::LongRope(l)) => Some(l.original_max_position_embeddings),
        _ => None,
    };
    let own = v
        .get("original_max_position_embeddings")
        .filter(|x| !x.is_null())
        .or_else(|| get("original_max_position_embeddings"));
    let step = match (scaled, own) {
        (Some(o), _) => whole(o).ok_or_else(|| {
            Error::format(
                path,
                format!("the RoPE scaling's original context {o} is not a whole number, which Llama 4's attention temperature steps by"),
            )
        })?,
        (None, Some(x)) => x.as_f64().and_then(whole).ok_or_else(|| {
            Error::format(
                path,
                format!("field `original_max_position_embeddings`: expected a positive whole number, found {x}"),
            )
        })?,
        (None, None) => return Err(missing("original_max_position_embeddings")),
    };
    Ok(Some(AttnTemperature {
        beta,
        step: step as usize,
    }))
}
