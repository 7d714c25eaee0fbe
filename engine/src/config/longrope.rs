//! LongRoPE (arXiv 2402.13753; `rope_type: longrope`, the 128k-context Phi-3 and Phi-3.5
//! models): two sets of per-frequency divisors, one for contexts within the pretraining one and
//! one past it, and cos/sin scaled by an attention factor. transformers'
//! `_compute_longrope_parameters`; llama.cpp's `rope_factors_short` / `rope_factors_long`.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// LongRoPE's settings: frequency `i` is `theta^(-2i/d) / factor[i]` with the short factors
/// where the model is loaded for at most `original_max_position_embeddings` positions, else
/// the long ones (llama.cpp's rule, by the context it is loaded for; transformers picks by the
/// length of each forward call's sequence, which agrees on every sequence a model loaded for
/// the original context or less can hold, and on any whole sequence longer than it).
#[derive(Debug, Clone, PartialEq)]
pub struct LongRopeScaling {
    /// `short_factor`: `rotary_dim / 2` divisors.
    pub short_factor: Vec<f64>,
    /// `long_factor`: `rotary_dim / 2` divisors.
    pub long_factor: Vec<f64>,
    /// `original_max_position_embeddings`: the pretraining context.
    pub original_max_position_embeddings: f64,
    /// What cos and sin are multiplied by (in both regimes): `attention_factor`, else
    /// `sqrt(1 + ln(factor) / ln(original))` where `factor` (default
    /// `max_position_embeddings / original`) is above 1, else 1.
    pub attention_factor: f64,
}

impl LongRopeScaling {
    /// The divisors for a model loaded for `positions` positions.
    pub fn factors(&self, positions: usize) -> &[f64] {
        match positions as f64 > self.original_max_position_embeddings {
            true => &self.long_factor,
            false => &self.short_factor,
        }
    }

    /// Checks the factor lists against the rotated part of a head: `rotary_dim / 2` finite
    /// values > 0 each.
    pub fn check(&self, rotary_dim: usize, path: &Path) -> Result<()> {
        for (name, f) in [
            ("short_factor", &self.short_factor),
            ("long_factor", &self.long_factor),
        ] {
            if f.len() != rotary_dim / 2 {
                return Err(Error::format(
                    path,
                    format!(
                        "LongRoPE `{name}` has {} values; expected one per rotated frequency, {}",
                        f.len(),
                        rotary_dim / 2
                    ),
                ));
            }
            if let Some(x) = f.iter().find(|x| !(x.is_finite() && **x > 0.0)) {
                return Err(Error::format(
                    path,
                    format!("LongRoPE `{name}` holds {x}; expected finite numbers > 0"),
                ));
            }
        }
        Ok(())
    }
}

/// The default attention factor: `sqrt(1 + ln(factor) / ln(original))`, 1 where `factor <= 1`.
pub fn default_attention_factor(factor: f64, original: f64) -> f64 {
    if factor <= 1.0 {
        1.0
    } else {
        (1.0 + factor.ln() / original.ln()).sqrt()
    }
}

/// Reads a `longrope` settings object `s` (transformers 4's `rope_scaling` or 5's
/// `rope_parameters`), given the config's `max_position_embeddings` and the pretraining
/// context `original` as [`super::rope::parse`] resolved it. Errors name the field.
pub(super) fn parse(
    s: &Value,
    path: &Path,
    max_positions: f64,
    original: f64,
) -> Result<LongRopeScaling> {
    let list = |k: &str| -> Result<Vec<f64>> {
        let bad = |found: &Value| {
            Error::format(path, format!("rope scaling `longrope`: field `{k}`: expected a list of numbers, found {found}"))
        };
        match s.get(k) {
            Some(Value::Array(a)) => a.iter().map(|x| x.as_f64().ok_or_else(|| bad(x))).collect(),
            Some(x) => Err(bad(x)),
            None => Err(Error::format(
                path,
                format!("rope scaling `longrope` needs field `{k}`"),
            )),
        }
    };
    let number = |k: &str| -> Result<Option<f64>> {
        match s.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(x) => x.as_f64().filter(|x| x.is_finite() && *x > 0.0).map(Some).ok_or_else(|| {
                Error::format(path, format!("rope scaling `longrope`: field `{k}`: expected a finite number > 0, found {x}"))
            }),
        }
    };
    if !(original.is_finite() && original > 1.0) {
        return Err(Error::format(
            path,
            format!("rope scaling `longrope`: original_max_position_embeddings is {original}; expected a number > 1"),
        ));
    }
    let factor = number("factor")?.unwrap_or(max_positions / original);
    Ok(LongRopeScaling {
        short_factor: list("short_factor")?,
        long_factor: list("long_factor")?,
        original_max_position_embeddings: original,
        attention_factor: match number("attention_factor")? {
            Some(a) => a,
            None => default_attention_factor(factor, original),
        },
    })
}
