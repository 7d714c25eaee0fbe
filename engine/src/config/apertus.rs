//! ApertusConfig's RoPE default: where a config sets no RoPE settings (no `rope_parameters`,
//! or null, and no `rope_scaling` either, or an empty one), ApertusConfig's own, Llama 3's
//! scaling at base 12e6, in which a top-level `rope_theta` is not read (transformers 5.25
//! ignores it there too). An empty `rope_parameters` is a setting: default RoPE.

use std::path::Path;

use serde_json::{json, Value};

use super::rope;
use crate::error::Result;

/// `v` with ApertusConfig's RoPE settings where it has none ([`rope::settings`]) and no
/// `rope_parameters` object, not even an empty one (ApertusConfig fills in only a None, and `{}`
/// then reads as default RoPE at the top-level `rope_theta` or 12e6); `v` as it is otherwise (a
/// settings object's own rules then apply: a top-level `rope_theta` fills one without a base,
/// `rope_scaling` is preferred over `rope_parameters`).
///
/// # Errors
/// RoPE settings that are not an object ([`rope::settings`]).
pub(super) fn apertus_view(v: &Value, path: &Path) -> Result<Value> {
    let mut out = v.clone();
    let own = v.get("rope_parameters").is_some_and(Value::is_object);
    if rope::settings(v, path)?.is_none() && !own {
        out["rope_parameters"] = json!({
            "rope_type": "llama3",
            "rope_theta": 12_000_000.0,
            "factor": 8.0,
            "original_max_position_embeddings": 8192,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
        });
    }
    Ok(out)
}
