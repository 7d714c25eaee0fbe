//! OLMo (the first, `OlmoForCausalLM`): its `clip_qkv`, read as transformers 5.25's OlmoConfig
//! reads it. (Its weightless LayerNorms are [`super::Arch::unweighted_norms`].)

use std::path::Path;

use serde_json::Value;

use super::Arch;
use crate::error::{Error, Result};

/// OLMo's `clip_qkv` (null or absent: none); `None` for the other families, which
/// transformers reads no such key for.
///
/// # Errors
/// A `clip_qkv` that is not null or a number > 0 (an f32 whose reciprocal is one too).
pub(super) fn clip_qkv(v: &Value, arch: Arch, path: &Path) -> Result<Option<f32>> {
    match v.get("clip_qkv").filter(|c| !c.is_null()) {
        Some(c) if arch == Arch::Olmo => match c.as_f64().and_then(super::positive_f32) {
            Some(c) => Ok(Some(c)),
            None => Err(Error::format(
                path,
                format!(
                    "`clip_qkv` is {c}; expected {}, or null for none",
                    super::POSITIVE_F32
                ),
            )),
        },
        _ => Ok(None),
    }
}
