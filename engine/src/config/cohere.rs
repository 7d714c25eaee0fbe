//! What Cohere's configs add to the Llama reading (`CohereConfig`, `Cohere2Config`): the
//! logits' factor (Command R+'s query/key norms: `layernorm::qk_norm_per_head`).

use std::path::Path;

use serde_json::Value;

use super::Arch;
use crate::error::{Error, Result};

/// Cohere's `logit_scale` (default 0.0625; CohereForCausalLM multiplies the logits by it),
/// `None` for the other families.
///
/// # Errors
/// A factor that is not a finite number (a null, which CohereConfig takes, fails in its
/// forward).
pub(super) fn logit_scale(v: &Value, arch: Arch, path: &Path) -> Result<Option<f32>> {
    if !arch.is_cohere() {
        return Ok(None);
    }
    let scale = match v.get("logit_scale") {
        None => 0.0625,
        Some(x) => x.as_f64().filter(|s| s.is_finite()).ok_or_else(|| {
            Error::format(
                path,
                format!(
                    "field `logit_scale`: expected a finite number (the logits' factor), found {x}"
                ),
            )
        })?,
    };
    Ok(Some(scale as f32))
}
