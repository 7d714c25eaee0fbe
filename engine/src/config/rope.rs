//! RoPE frequency scaling, as transformers reads it from `rope_parameters` (transformers 5) or
//! `rope_scaling` (4) and computes it (`modeling_rope_utils.py`): Llama 3's, linear position
//! interpolation, YaRN (Qwen2.5's and Qwen3's long-context setting) and LongRoPE (Phi-3's,
//! [`super::longrope`]). The angle table
//! applies it (`crate::rope_table`); GGUF files give the same settings as
//! `<arch>.rope.scaling.*` (`loader::gguf::hparams`).

use std::path::Path;

use serde_json::{Map, Value};

use super::longrope::{self, LongRopeScaling};
use crate::error::{Error, Result};

/// Llama-3 style RoPE frequency scaling (`rope_type: llama3`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3Scaling {
    /// `factor`
    pub factor: f64,
    /// `low_freq_factor`
    pub low_freq_factor: f64,
    /// `high_freq_factor`
    pub high_freq_factor: f64,
    /// `original_max_position_embeddings`
    pub original_max_position_embeddings: f64,
}

/// YaRN (`rope_type: yarn`, arXiv 2309.00071): frequencies past the pretraining context
/// interpolated by `factor`, the fast ones kept, a linear ramp between, and cos/sin scaled by
/// `attention_factor`. transformers' `_compute_yarn_parameters`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YarnScaling {
    /// `factor`: how much longer than the pretraining context.
    pub factor: f64,
    /// `original_max_position_embeddings`: the pretraining context.
    pub original_max_position_embeddings: f64,
    /// `beta_fast` (default 32): rotations over the original context above which a frequency is
    /// kept as is.
    pub beta_fast: f64,
    /// `beta_slow` (default 1): rotations below which it is interpolated fully.
    pub beta_slow: f64,
    /// What cos and sin are multiplied by: `attention_factor`, else `0.1 ln(factor) + 1` (or
    /// the ratio of that with `mscale` and `mscale_all_dim`, DeepSeek's form).
    pub attention_factor: f64,
    /// `truncate` (default true): the ramp's ends rounded outwards to whole dimensions.
    pub truncate: bool,
}

/// A model's RoPE frequency scaling.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Llama 3's.
    Llama3(Llama3Scaling),
    /// Linear position interpolation (`rope_type: linear`): every frequency divided by `factor`.
    Linear {
        /// `factor`
        factor: f64,
    },
    /// YaRN.
    Yarn(YarnScaling),
    /// LongRoPE.
    LongRope(LongRopeScaling),
    /// Dynamic NTK (`rope_type: dynamic`): transformers rotates as default RoPE while a
    /// sequence is at most `max_position_embeddings` long and, past that, moves the base with
    /// the length and re-rotates every position, which a KV cache cannot follow. So the
    /// frequencies are the default ones and the context ends at `max_position_embeddings`
    /// ([`super::ModelConfig::context_limit`]).
    Dynamic {
        /// `factor` (checked, and shown by `inspect`; unused within the context).
        factor: f64,
    },
}

impl RopeScaling {
    /// What the cos/sin table is multiplied by (1 but for YaRN and LongRoPE).
    pub fn attention_factor(&self) -> f64 {
        match self {
            RopeScaling::Yarn(y) => y.attention_factor,
            RopeScaling::LongRope(l) => l.attention_factor,
            _ => 1.0,
        }
    }

    /// A line for `inspect`.
    pub fn describe(&self) -> String {
        match self {
            RopeScaling::Llama3(r) => format!(
                "Llama-3 scaling (factor {}, low/high frequency factors {}/{}, original context {})",
                r.factor, r.low_freq_factor, r.high_freq_factor, r.original_max_position_embeddings
            ),
            RopeScaling::Linear { factor } => format!("linear scaling (positions / {factor})"),
            RopeScaling::Yarn(y) => format!(
                "YaRN scaling (factor {}, original context {}, beta fast/slow {}/{}, cos/sin x {:.6})",
                y.factor, y.original_max_position_embeddings, y.beta_fast, y.beta_slow, y.attention_factor
            ),
            RopeScaling::LongRope(l) => format!(
                "LongRoPE (original context {}: its short factors where loaded for that many positions or fewer, else its long ones; cos/sin x {:.6})",
                l.original_max_position_embeddings, l.attention_factor
            ),
            RopeScaling::Dynamic { factor } => format!(
                "dynamic NTK (factor {factor}): default frequencies within max_position_embeddings, where the context ends (past it transformers re-rotates every cached position)"
            ),
        }
    }
}

/// `0.1 mscale ln(scale) + 1`, 1 at `scale <= 1` (YaRN's Eq. 21, transformers'
/// `yarn_get_mscale`).
pub fn yarn_mscale(scale: f64, mscale: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * mscale * scale.ln() + 1.0
    }
}

/// Refuses a YaRN `truncate` other than true in a per-layer-type config (Gemma 3's, OLMo 3's):
/// in the full-attention settings `full` (`rope_parameters.full_attention`, or transformers 4's
/// `rope_scaling` merged into them), which transformers 5.25 does not read there, and at the
/// top of `rope_parameters`, which it does (`_compute_yarn_parameters` reads
/// `config.rope_parameters.get("truncate", True)`, the object that holds the layer types). The
/// first would leave transformers' logits if read, the second the file's meaning if ignored.
pub(super) fn per_type_truncate(v: &Value, full: Option<&Value>, path: &Path) -> Result<()> {
    let top = v.get("rope_parameters").and_then(|p| p.get("truncate"));
    for (found, where_) in [
        (
            full.and_then(|f| f.get("truncate")),
            "the full-attention layers' YaRN settings",
        ),
        (top, "`rope_parameters` (beside the layer types)"),
    ] {
        match found {
            None | Some(Value::Bool(true)) => {}
            Some(x) => return Err(Error::unsupported(format!(
                "{}: `truncate: {x}` in {where_}: transformers 5.25 reads `truncate` at the top of a config's RoPE settings per layer type only, and this engine in neither place; remove the key (truncate: true) to get transformers' logits",
                path.display()
            ))),
        }
    }
    Ok(())
}

/// The RoPE type of settings `s`: `rope_type`, or transformers 4's `type` (transformers 5
/// falls back to it, `standardize_rope_params`); `None` where neither is a string.
pub(super) fn kind(s: &Map<String, Value>) -> Option<&str> {
    s.get("rope_type")
        .or_else(|| s.get("type"))
        .and_then(Value::as_str)
}

/// Refuses flat `rope_parameters` (one `rope_type` / `rope_theta` for every layer) in a config of
/// `family`, whose transformers config reads RoPE per layer type only (Gemma3TextConfig's and
/// Olmo3Config's: they keep flat settings beside the per-type defaults and never apply them).
pub(super) fn per_type_only(v: &Value, family: &str, path: &Path) -> Result<()> {
    match v.get("rope_parameters") {
        Some(p @ Value::Object(m)) if m.contains_key("rope_type") || m.contains_key("rope_theta") => {
            Err(Error::format(
                path,
                format!("`rope_parameters` {p}: {family} reads its RoPE per layer type (`full_attention`, `sliding_attention`); transformers keeps flat settings but never applies them"),
            ))
        }
        _ => Ok(()),
    }
}

/// A config's RoPE settings object, as transformers picks it: `rope_scaling` (transformers 4's
/// name, preferred where a config has both) or `rope_parameters` (5's); `None` where neither
/// is set. An empty object counts as unset (transformers reads `rope_scaling or
/// rope_parameters`). Anything but an object is refused, and so are per-layer-type settings (an object of
/// objects, Gemma's form), which this engine does not apply.
pub(super) fn settings<'a>(v: &'a Value, path: &Path) -> Result<Option<&'a Value>> {
    for key in ["rope_scaling", "rope_parameters"] {
        match v.get(key) {
            None | Some(Value::Null) => continue,
            Some(Value::Object(m)) if m.is_empty() => continue,
            Some(s @ Value::Object(m)) => {
                if !m.is_empty() && m.values().all(Value::is_object) {
                    return Err(Error::unsupported(format!(
                        "{}: `{key}` per layer type ({}): one RoPE setting for every layer is supported",
                        path.display(),
                        m.keys().cloned().collect::<Vec<_>>().join(", ")
                    )));
                }
                return Ok(Some(s));
            }
            Some(x) => {
                return Err(Error::format(
                    path,
                    format!("`{key}`: expected an object, found {x}"),
                ))
            }
        }
    }
    Ok(None)
}

/// The scaling of a config's RoPE settings object `s` (see [`settings`]; `None`: default
/// RoPE). The pretraining context is `original`, where the config gives it beside the settings
/// (`top_level`), else the settings' own, else `original` (then `max_position_embeddings`), as
/// transformers' `standardize_rope_params` does. With `phi3`, the types as Phi3Config reads
/// them: `su` and `yarn` are LongRoPE, and it accepts no other scaling.
pub(super) fn parse(
    s: &Value,
    path: &Path,
    max_position_embeddings: f64,
    original: f64,
    top_level: bool,
    phi3: bool,
) -> Result<Option<RopeScaling>> {
    let kind = match s.get("rope_type").or_else(|| s.get("type")) {
        None => None,
        Some(Value::String(t)) => Some(t.as_str()),
        Some(x) => {
            return Err(Error::format(
                path,
                format!("RoPE settings: `rope_type`: expected a string, found {x}"),
            ))
        }
    };
    let kind = match kind {
        Some("su" | "yarn") if phi3 => Some("longrope"),
        Some(k) if phi3 && k != "default" && k != "longrope" => {
            return Err(Error::unsupported(format!(
                "{}: Phi-3 RoPE scaling type `{k}`: transformers' Phi3Config accepts only \
                 `default` and LongRoPE (`longrope`, `su`, `yarn`)",
                path.display()
            )))
        }
        k => k,
    };
    let number = |kind: &str, k: &str, default: Option<f64>| -> Result<f64> {
        match s.get(k) {
            Some(Value::Null) | None => default.ok_or_else(|| {
                Error::format(path, format!("rope scaling `{kind}` needs field `{k}`"))
            }),
            Some(x) => x.as_f64().ok_or_else(|| {
                Error::format(
                    path,
                    format!("rope scaling `{kind}`: field `{k}`: expected a number, found {x}"),
                )
            }),
        }
    };
    let positive = |kind: &str, k: &str, x: f64| -> Result<f64> {
        if x.is_finite() && x > 0.0 {
            Ok(x)
        } else {
            Err(Error::format(
                path,
                format!("rope scaling `{kind}`: `{k}` is {x}; expected a finite number > 0"),
            ))
        }
    };
    let original_of = |kind: &str| -> Result<f64> {
        match top_level {
            true => Ok(original),
            false => number(kind, "original_max_position_embeddings", Some(original)),
        }
    };
    Ok(Some(match kind {
        None | Some("default") => return Ok(None),
        Some("llama3") => {
            let g = |k: &str| number("llama3", k, None);
            let l = Llama3Scaling {
                factor: g("factor")?,
                low_freq_factor: g("low_freq_factor")?,
                high_freq_factor: g("high_freq_factor")?,
                original_max_position_embeddings: original_of("llama3")?,
            };
            // The formula divides by each of these and by their difference
            // (transformers' _compute_llama3_parameters).
            let ok = |x: f64| x.is_finite() && x > 0.0;
            if !(ok(l.factor)
                && ok(l.low_freq_factor)
                && ok(l.original_max_position_embeddings)
                && l.high_freq_factor.is_finite()
                && l.high_freq_factor > l.low_freq_factor)
            {
                return Err(Error::format(
                    path,
                    format!(
                        "rope scaling `llama3`: factor {}, low_freq_factor {}, high_freq_factor {}, original_max_position_embeddings {}; expected all finite and > 0, and high_freq_factor > low_freq_factor",
                        l.factor, l.low_freq_factor, l.high_freq_factor, l.original_max_position_embeddings
                    ),
                ));
            }
            RopeScaling::Llama3(l)
        }
        Some("linear") => RopeScaling::Linear {
            factor: positive("linear", "factor", number("linear", "factor", None)?)?,
        },
        Some("yarn") => {
            let original = positive(
                "yarn",
                "original_max_position_embeddings",
                original_of("yarn")?,
            )?;
            // A null factor is the ratio of the two contexts (DeepSeek-V3's configs).
            let factor = match s.get("factor") {
                Some(Value::Null) => max_position_embeddings / original,
                _ => number("yarn", "factor", None)?,
            };
            let factor = positive("yarn", "factor", factor)?;
            let opt = |k: &str| -> Result<Option<f64>> {
                match s.get(k) {
                    Some(Value::Null) | None => Ok(None),
                    Some(_) => number("yarn", k, None).map(Some),
                }
            };
            // transformers: `mscale and mscale_all_dim` (0 counts as absent), `beta_fast or 32`.
            let attention_factor = match (
                opt("attention_factor")?,
                opt("mscale")?,
                opt("mscale_all_dim")?,
            ) {
                (Some(a), _, _) => a,
                (None, Some(m), Some(all)) if m != 0.0 && all != 0.0 => {
                    yarn_mscale(factor, m) / yarn_mscale(factor, all)
                }
                _ => yarn_mscale(factor, 1.0),
            };
            // transformers reads `truncate` with `get("truncate", True)`: a null is false.
            let truncate = match s.get("truncate") {
                None => true,
                Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(x) => {
                    return Err(Error::format(
                        path,
                        format!(
                        "rope scaling `yarn`: field `truncate`: expected true or false, found {x}"
                    ),
                    ))
                }
            };
            let beta =
                |k: &str, d: f64| Ok::<f64, Error>(opt(k)?.filter(|&b| b != 0.0).unwrap_or(d));
            let y = YarnScaling {
                factor,
                original_max_position_embeddings: original,
                beta_fast: beta("beta_fast", 32.0)?,
                beta_slow: beta("beta_slow", 1.0)?,
                attention_factor: positive("yarn", "attention_factor", attention_factor)?,
                truncate,
            };
            // The ramp's ends are logs of these over 2 pi (find_correction_dim).
            positive("yarn", "beta_fast", y.beta_fast)?;
            positive("yarn", "beta_slow", y.beta_slow)?;
            RopeScaling::Yarn(y)
        }
        Some("longrope") => RopeScaling::LongRope(longrope::parse(
            s,
            path,
            max_position_embeddings,
            original_of("longrope")?,
        )?),
        Some("dynamic") => RopeScaling::Dynamic {
            factor: positive("dynamic", "factor", number("dynamic", "factor", None)?)?,
        },
        Some(other) => {
            return Err(Error::unsupported(format!(
                "{}: rope scaling type `{other}` (supported: default, llama3, linear, yarn, longrope, dynamic)",
                path.display()
            )));
        }
    }))
}

/// The dimensions of each head RoPE rotates: `int(head_dim * partial_rotary_factor)` as
/// transformers computes them (the factor read from the RoPE settings, else the config's top
/// level; where neither has one, GlmConfig's, Glm4Config's, PhiConfig's and NemotronConfig's 0.5,
/// StableLmConfig's and GPT-NeoX's 0.25 and 1 for the others; a null at the top level is 1 for GLM, as GlmConfig's default then
/// never reaches the RoPE settings, and refused for StableLM, Phi and Nemotron, whose attention
/// then fails). Only Phi-3's, Phi's, StableLM's, GPT-NeoX's, Nemotron's and GLM's attention apply a part; for the other
/// architectures transformers' attention fails on the shorter tables, so a factor other than 1
/// is refused there. Errors: a factor outside (0, 1] (for GLM, StableLM, Phi, GPT-NeoX and
/// Nemotron, a null in the RoPE settings, on which their RoPE fails), or an odd or zero width.
pub(super) fn rotary_dim(
    v: &Value,
    rope: Option<&Value>,
    head_dim: usize,
    arch: super::Arch,
    path: &Path,
) -> Result<usize> {
    let key = "partial_rotary_factor";
    // The classes' defaults (StableLmConfig's and PhiConfig's `__post_init__`).
    let (default, strict) = match arch {
        a if a.is_glm() => (0.5, true),
        super::Arch::Phi => (0.5, true),
        super::Arch::StableLm | super::Arch::GptNeoX => (0.25, true),
        // NemotronConfig's `__post_init__` (`setdefault`: a null stays, and fails there).
        super::Arch::Nemotron => (0.5, true),
        _ => (1.0, false),
    };
    let default = serde_json::json!(default);
    let x = match (rope.and_then(|r| r.get(key)), v.get(key)) {
        // GLM's, StableLM's and Phi's RoPE fail on a null (their attention multiplies by it);
        // the others read the top level then.
        (Some(Value::Null), _) if strict => &Value::Null,
        (Some(x), _) if !x.is_null() => x,
        // StableLM's and Phi's attention index the RoPE settings for it, where a top-level
        // null leaves none; GLM's then rotates whole heads.
        (_, Some(Value::Null)) if strict && !arch.is_glm() => &Value::Null,
        // A top-level null: no factor reaches the RoPE settings, which then rotate whole heads.
        (_, Some(Value::Null)) => return Ok(head_dim),
        (_, Some(x)) => x,
        (_, None) => &default,
    };
    // GPT-NeoX's Hub configs name it `rotary_pct` (read as the factor, `defaults::aliased`).
    let top_level = v.get(key).is_some_and(|t| std::ptr::eq(t, x));
    let name = match (arch, v.get("rotary_pct")) {
        (super::Arch::GptNeoX, Some(_)) if top_level => {
            "rotary_pct` (read as `partial_rotary_factor"
        }
        _ => key,
    };
    let f = x
        .as_f64()
        .filter(|f| *f > 0.0 && *f <= 1.0)
        .ok_or_else(|| {
            Error::format(
                path,
                format!("field `{name}`: expected a number in (0, 1], found {x}"),
            )
        })?;
    if f == 1.0 {
        return Ok(head_dim);
    }
    if !(arch == super::Arch::Phi3 || strict) {
        return Err(Error::format(
            path,
            format!("partial_rotary_factor {x}: rotary embeddings on part of each head are supported for Phi-3, Phi, StableLM, GPT-NeoX, Nemotron and GLM models only (1.0, the whole head, for the others)"),
        ));
    }
    let dim = (head_dim as f64 * f) as usize;
    if dim == 0 || dim % 2 == 1 {
        return Err(Error::format(
            path,
            format!("partial_rotary_factor {x} of head_dim {head_dim} rotates {dim} dimensions; expected an even number > 0"),
        ));
    }
    Ok(dim)
}
