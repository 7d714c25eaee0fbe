//! PEFT's `adapter_config.json`: the fields that decide which modules an adapter wraps and how
//! each is scaled, parsed with a message for every malformed one; PEFT's own rules for
//! `target_modules`, `exclude_modules`, `layers_to_transform` and the rank/alpha patterns.

use std::path::Path;

use serde_json::Value;

use super::peft_selector::{layer_index, Selector};
use crate::error::{Error, Result};

/// The parsed `adapter_config.json` fields that matter.
pub(super) struct AdapterConfig {
    pub(super) r: usize,
    pub(super) alpha: f64,
    pub(super) rslora: bool,
    targets: Selector,
    exclude: Option<Selector>,
    layers: Option<Vec<usize>>,
    /// `layers_pattern`: names of the layer container (`layers`); None: any.
    layers_pattern: Option<Vec<String>>,
    rank_pattern: Vec<(fancy_regex::Regex, String, usize)>,
    alpha_pattern: Vec<(fancy_regex::Regex, String, f64)>,
    pub(super) base_model: Option<String>,
}

/// Parses the `adapter_config.json` at `path`. Errors: unreadable or invalid JSON, a field of
/// the wrong kind (named, with what was found), a variant of LoRA this engine does not run
/// ([`super::peft_features::check`]).
pub(super) fn parse_config(path: &Path) -> Result<AdapterConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(path, format!("not valid JSON: {e}")))?;
    let bad = |m: String| Error::format(path, m);
    if !v.is_object() {
        let kind = match v {
            Value::Array(_) => "a list",
            Value::String(_) => "a string",
            Value::Number(_) => "a number",
            Value::Bool(_) => "a boolean",
            _ => "null",
        };
        return Err(bad(format!(
            "expected a JSON object (PEFT's `adapter_config.json`: r, lora_alpha, \
             target_modules, ...), found {kind}"
        )));
    }
    // A present field of the wrong kind is shown as found (`"r": "8"`), a missing one named.
    let found = |k: &str| {
        v.get(k)
            .map_or(" (missing)".into(), |x| format!(", found {x}"))
    };
    let peft_type = v
        .get("peft_type")
        .and_then(|t| t.as_str())
        .unwrap_or("LORA");
    if peft_type != "LORA" {
        return Err(Error::unsupported(format!(
            "{}: peft_type `{peft_type}`; only LORA adapters are supported",
            path.display()
        )));
    }
    super::peft_features::check(&v, path)?;
    let truthy = |k: &str| super::peft_features::truthy(&v, k);
    let r = v
        .get("r")
        .and_then(|x| x.as_u64())
        .filter(|&r| r > 0)
        .ok_or_else(|| {
            bad(format!(
                "field `r`: expected a positive integer{}",
                found("r")
            ))
        })? as usize;
    let alpha = v
        .get("lora_alpha")
        .and_then(|x| x.as_f64())
        .ok_or_else(|| {
            bad(format!(
                "field `lora_alpha`: expected a number{}",
                found("lora_alpha")
            ))
        })?;
    let targets = match v.get("target_modules") {
        Some(t) if !t.is_null() => Selector::parse("target_modules", t).map_err(bad)?,
        _ => {
            return Err(bad(
                "field `target_modules` is missing: expected a list of module names or a regular expression".into(),
            ))
        }
    };
    let exclude = match v.get("exclude_modules") {
        None | Some(Value::Null) => None,
        Some(t) => Some(Selector::parse("exclude_modules", t).map_err(bad)?),
    };
    let layers_pattern = match v.get("layers_pattern") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(vec![s.clone()]),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => Some(
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect(),
        ),
        Some(o) => {
            return Err(bad(format!(
                "field `layers_pattern`: expected a string or a list of strings, found {o}"
            )))
        }
    };
    // A layer index that is negative or not an integer matches no layer in PEFT; here it
    // had become layer 0 (a number) or vanished (in a list).
    let index = |x: &Value| {
        x.as_u64().map(|i| i as usize).ok_or_else(|| {
            bad(format!(
                "field `layers_to_transform`: expected layer indices (integers >= 0), found {x}"
            ))
        })
    };
    let layers = match v.get("layers_to_transform") {
        None | Some(Value::Null) => None,
        Some(n @ Value::Number(_)) => Some(vec![index(n)?]),
        // PEFT treats an empty list as "every layer".
        Some(Value::Array(a)) if a.is_empty() => None,
        Some(Value::Array(a)) => Some(a.iter().map(index).collect::<Result<_>>()?),
        Some(o) => {
            return Err(bad(format!(
                "field `layers_to_transform`: expected an integer or a list, found {o}"
            )))
        }
    };
    // PEFT matches pattern keys against the module's full name with `(.*\.)?(key)$`.
    let pattern = |k: &str| {
        fancy_regex::Regex::new(&format!(r"^(.*\.)?(?:{k})$"))
            .map_err(|e| bad(format!("pattern `{k}`: {e}")))
    };
    // PEFT reads the patterns' keys (a list or a string had been dropped without a word).
    let patterns = |k: &str| match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(o) => Err(bad(format!(
            "field `{k}`: expected an object of module pattern -> value, found {o}"
        ))),
    };
    let mut rank_pattern = Vec::new();
    if let Some(m) = patterns("rank_pattern")? {
        for (k, x) in m {
            let rank = x
                .as_u64()
                .filter(|&r| r > 0)
                .ok_or_else(|| bad(format!("rank_pattern[`{k}`]: expected a positive integer")))?;
            rank_pattern.push((pattern(k)?, k.clone(), rank as usize));
        }
    }
    let mut alpha_pattern = Vec::new();
    if let Some(m) = patterns("alpha_pattern")? {
        for (k, x) in m {
            let a = x
                .as_f64()
                .ok_or_else(|| bad(format!("alpha_pattern[`{k}`]: expected a number")))?;
            alpha_pattern.push((pattern(k)?, k.clone(), a));
        }
    }
    if alpha <= 0.0 {
        tracing::warn!(
            "{}: lora_alpha = {alpha}: {}",
            path.display(),
            if alpha == 0.0 {
                "every update is scaled by 0, so this adapter changes nothing"
            } else {
                "every update is subtracted (negative scale); PEFT allows it, but it is rarely meant"
            }
        );
    }
    if truthy("fan_in_fan_out") {
        // PEFT itself resets this to false for nn.Linear targets (all Llama projections).
        tracing::warn!(
            "{}: fan_in_fan_out = true is ignored for Linear layers, as PEFT does",
            path.display()
        );
    }
    Ok(AdapterConfig {
        r,
        alpha,
        rslora: truthy("use_rslora"),
        targets,
        exclude,
        layers,
        layers_pattern,
        rank_pattern,
        alpha_pattern,
        base_model: v
            .get("base_model_name_or_path")
            .and_then(|b| b.as_str())
            .map(String::from),
    })
}

impl AdapterConfig {
    /// Whether PEFT wraps module `key` (a full name such as `model.layers.3.mlp.down_proj`):
    /// `target_modules` selects it, `exclude_modules` does not, and with `layers_to_transform`
    /// a suffix-matched module's layer index (after `layers_pattern`, or any `NAME.<i>.`) is
    /// listed. Otherwise the reason, in words.
    pub(super) fn selects(&self, key: &str) -> std::result::Result<(), String> {
        let (found, exact) = self.targets.matches(key);
        if !found {
            return Err(format!(
                "target_modules {} does not select it",
                self.targets.describe()
            ));
        }
        if let Some(ex) = &self.exclude {
            if ex.matches(key).0 {
                return Err(format!("exclude_modules {} excludes it", ex.describe()));
            }
        }
        if let (Some(layers), Selector::Names(_), false) = (&self.layers, &self.targets, exact) {
            let index = match &self.layers_pattern {
                None => layer_index(key, None),
                Some(pats) => pats.iter().find_map(|p| layer_index(key, Some(p))),
            };
            match index {
                Some(i) if layers.contains(&i) => {}
                Some(i) => {
                    return Err(format!(
                        "its layer {i} is not in layers_to_transform {layers:?}"
                    ))
                }
                None => {
                    return Err(
                        "layers_to_transform is set but no layer index is in its name".into(),
                    )
                }
            }
        }
        Ok(())
    }

    /// Rank and scale of one module, after `rank_pattern` / `alpha_pattern`: the first key, in
    /// the file's order, whose pattern matches the name (PEFT 0.21's `get_pattern_key`; a key
    /// equal to the name matches, but does not go before an earlier one that matches too).
    pub(super) fn rank_scale(&self, full_name: &str) -> (usize, f32) {
        fn pick<T: Copy>(p: &[(fancy_regex::Regex, String, T)], name: &str) -> Option<T> {
            p.iter()
                .find(|(re, _, _)| re.is_match(name).unwrap_or(false))
                .map(|x| x.2)
        }
        let r = pick(&self.rank_pattern, full_name).unwrap_or(self.r);
        let alpha = pick(&self.alpha_pattern, full_name).unwrap_or(self.alpha);
        let scale = if self.rslora {
            alpha / (r as f64).sqrt()
        } else {
            alpha / r as f64
        };
        (r, scale as f32)
    }
}
