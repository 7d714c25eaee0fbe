//! HunYuan dense (`hunyuan_v1_dense`): its NTK-alpha RoPE, a fixed base stretched by `alpha`.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// The RoPE base and settings HunYuan's rotary embedding uses, from the config's settings
/// `rope` ([`super::rope::settings`]) and base `theta`: where the type is `dynamic` and an
/// `alpha` is given (a non-zero one: transformers tests its truth), the base is
/// `theta * alpha^(head_dim / (head_dim - 2))` and there is no scaling
/// (`HunYuanDenseV1RotaryEmbedding.compute_ntk_alpha_rope_parameters`; llama.cpp's converter
/// writes that base). Otherwise `theta` and `rope` as they are (`dynamic` without `alpha` is
/// dynamic NTK, as for the other families).
///
/// # Errors
/// An `alpha` that is not a finite number > 0, or a head too narrow for the exponent.
pub(super) fn ntk_alpha<'a>(
    rope: Option<&'a Value>,
    theta: f64,
    head_dim: usize,
    path: &Path,
) -> Result<(f64, Option<&'a Value>)> {
    let Some(s) = rope else {
        return Ok((theta, rope));
    };
    let kind = s.get("rope_type").or_else(|| s.get("type"));
    let alpha = s.get("alpha").filter(|a| !a.is_null());
    let (Some("dynamic"), Some(alpha)) = (kind.and_then(Value::as_str), alpha) else {
        return Ok((theta, rope));
    };
    let alpha = match alpha.as_f64() {
        Some(0.0) => return Ok((theta, rope)),
        // transformers validates a `dynamic` type's settings before its class reads `alpha`.
        Some(_) if s.get("factor").is_none_or(Value::is_null) => {
            return Err(Error::format(
                path,
                "RoPE settings of type `dynamic` need a `factor` (transformers' validation requires it; HunYuan's configs give 1.0 beside `alpha`)",
            ))
        }
        Some(a) if a.is_finite() && a > 0.0 => a,
        _ => {
            return Err(Error::format(
                path,
                format!("RoPE setting `alpha`: expected a finite number > 0, found {alpha}"),
            ))
        }
    };
    let base = ntk_alpha_base(theta, alpha, head_dim)
        .map_err(|why| Error::format(path, format!("RoPE setting `alpha` {alpha}: {why}")))?;
    Ok((base, None))
}

/// `theta * alpha^(head_dim / (head_dim - 2))`, the NTK-alpha base (transformers'
/// `compute_ntk_alpha_rope_parameters`, llama.cpp's `hunyuan-dense` loader), for an `alpha` > 0.
///
/// # Errors
/// Why there is no such base: a head of 2 or less, or a base that is not a finite number > 0.
pub(crate) fn ntk_alpha_base(
    theta: f64,
    alpha: f64,
    head_dim: usize,
) -> std::result::Result<f64, String> {
    if head_dim <= 2 {
        return Err(format!("NTK-alpha RoPE needs a head_dim above 2 (its base takes alpha^(head_dim / (head_dim - 2))); found {head_dim}"));
    }
    let d = head_dim as f64;
    let base = theta * alpha.powf(d / (d - 2.0));
    // transformers and llama.cpp compute in f32: a base f32 cannot hold would be 0 or inf.
    match (base as f32).is_normal() && base > 0.0 {
        true => Ok(base),
        false => Err(format!(
            "the RoPE base it makes, {theta} * alpha^({d} / {}), is {base}; expected a finite number > 0",
            d - 2.0
        )),
    }
}
