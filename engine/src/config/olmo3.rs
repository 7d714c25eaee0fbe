//! OLMo 3 (`Olmo3ForCausalLM`): RoPE settings per layer type, read as transformers 5.25's
//! Olmo3Config reads a config.json (`convert_rope_params_to_dict`).

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Olmo3Config's `default_theta`.
const DEFAULT_THETA: f64 = 500_000.0;

/// OLMo 3's config as one Llama reading (the full-attention layers' RoPE settings as its
/// `rope_parameters`) and the sliding-window layers' RoPE base, read as Olmo3Config reads them:
/// - `rope_parameters` per layer type (`full_attention`, `sliding_attention`), each defaulting
///   to unscaled RoPE; transformers 4's `rope_scaling` (the Hub's files) is merged into the
///   full-attention settings only;
/// - the full-attention base: its own `rope_theta`, else the top-level `rope_theta`, else
///   500,000;
/// - the sliding-window base: its own `rope_theta`, else 500,000. Olmo3Config gives the
///   top-level `rope_theta` to the full-attention layers alone (it pops the key once), so a
///   config whose `rope_theta` is 10,000 rotates its sliding layers at 500,000.
///
/// # Errors
/// `rope_parameters` that is not an object of per-layer-type objects (a flat one, which
/// Olmo3Config keeps but its rotary embedding never reads, is refused rather than ignored);
/// sliding-window settings of another type than `default` (the sliding layers are read
/// unscaled, whether `rope_type` or transformers 4's `type` names it); a base that is not a
/// number > 0; YaRN's `truncate` other than true ([`super::rope::per_type_truncate`]).
pub(super) fn olmo3_view(v: &Value, path: &Path) -> Result<(Value, f64)> {
    let err = |m: String| Error::format(path, m);
    super::rope::per_type_only(v, "OLMo 3", path)?;
    let per_type = match v.get("rope_parameters") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p.clone(),
        Some(x) => {
            return Err(err(format!(
                "field `rope_parameters`: expected an object, found {x}"
            )))
        }
    };
    let object = |key: &str| -> Result<Map<String, Value>> {
        match per_type.get(key) {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(o)) => Ok(o.clone()),
            Some(x) => Err(err(format!(
                "`rope_parameters.{key}`: expected an object, found {x}"
            ))),
        }
    };
    let mut full = object("full_attention")?;
    let sliding = object("sliding_attention")?;
    match v.get("rope_scaling") {
        None | Some(Value::Null) => {}
        Some(Value::Object(s)) => full.extend(s.clone()),
        Some(x) => {
            return Err(err(format!(
                "field `rope_scaling`: expected an object, found {x}"
            )))
        }
    }
    // Olmo3Config's default settings, where neither `rope_type` nor transformers 4's `type`
    // names one.
    if super::rope::kind(&full).is_none() {
        full.insert("rope_type".into(), "default".into());
    }
    let theta = |o: &Map<String, Value>, fallback: Option<&Value>, what: &str| -> Result<f64> {
        let t = match o.get("rope_theta").filter(|t| !t.is_null()) {
            Some(t) => t,
            None => match fallback.filter(|t| !t.is_null()) {
                Some(t) => t,
                None => return Ok(DEFAULT_THETA),
            },
        };
        t.as_f64()
            .filter(|t| t.is_finite() && *t > 0.0)
            .ok_or_else(|| {
                err(format!(
                    "the {what} layers' RoPE base (`rope_theta`) is {t}; expected a number > 0"
                ))
            })
    };
    let full_theta = theta(&full, v.get("rope_theta"), "full-attention")?;
    full.insert("rope_theta".into(), full_theta.into());
    if let Some(kind) = super::rope::kind(&sliding).filter(|&k| k != "default") {
        return Err(Error::unsupported(format!(
            "{}: `rope_parameters.sliding_attention` of type `{kind}`: OLMo 3's sliding-window layers are read unscaled",
            path.display()
        )));
    }
    let local_theta = theta(&sliding, None, "sliding-window")?;
    let full = Value::Object(full);
    super::rope::per_type_truncate(v, Some(&full), path)?;
    let mut out = v.clone();
    if let Some(o) = out.as_object_mut() {
        o.remove("rope_scaling");
        o.remove("rope_theta");
        // transformers reads a top-level `original_max_position_embeddings` for flat settings
        // only.
        o.remove("original_max_position_embeddings");
        o.insert("rope_parameters".into(), full);
    }
    Ok((out, local_theta))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{Arch, ModelConfig, RopeScaling};

    fn read(v: &serde_json::Value) -> crate::error::Result<ModelConfig> {
        ModelConfig::from_hf_json(v, std::path::Path::new("config.json"))
    }

    fn olmo3(layers: usize) -> serde_json::Value {
        json!({"model_type": "olmo3", "vocab_size": 64, "hidden_size": 32,
               "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": layers})
    }

    /// Olmo3Config's defaults and the Hub's layout (transformers 4's `rope_theta` and
    /// `rope_scaling`), checked against transformers 5.25: the window in three layers of four,
    /// 4096 wide; YaRN and the top-level base in the full-attention layers only; the sliding
    /// layers at 500,000 whatever the top-level base.
    #[test]
    fn olmo3_reads_as_transformers_olmo3config() {
        let c = read(&olmo3(5)).unwrap();
        assert_eq!(c.arch, Arch::Olmo3);
        let w = Some(4096);
        assert_eq!(c.attention_window, vec![w, w, w, None, w]);
        assert_eq!((c.rope_theta, c.local_rope_theta), (5e5, Some(5e5)));
        assert!(c.rope_scaling.is_none() && c.qk_norm && !c.pre_norms() && c.post_norms());
        assert_eq!((c.rms_norm_eps, c.max_position_embeddings), (1e-5, 2048));
        assert_eq!(c.qk_norm_widths(), (32, 32));

        let mut hub = olmo3(4);
        hub["rope_theta"] = json!(10000.0);
        hub["sliding_window"] = json!(6);
        hub["rope_scaling"] = json!({"rope_type": "yarn", "factor": 4.0,
                                     "original_max_position_embeddings": 64});
        let c = read(&hub).unwrap();
        assert_eq!((c.rope_theta, c.local_rope_theta), (1e4, Some(5e5)));
        assert!(matches!(c.rope_scaling, Some(RopeScaling::Yarn(_))));
        assert_eq!(c.attention_window, vec![Some(6), Some(6), Some(6), None]);

        // transformers 5's layout; the sliding layers' own base; layer_types as given.
        let mut per_type = olmo3(2);
        per_type["rope_parameters"] = json!({
            "full_attention": {"rope_type": "default", "rope_theta": 3e4},
            "sliding_attention": {"rope_type": "default", "rope_theta": 2e4}});
        per_type["layer_types"] = json!(["full_attention", "sliding_attention"]);
        let c = read(&per_type).unwrap();
        assert_eq!((c.rope_theta, c.local_rope_theta), (3e4, Some(2e4)));
        assert_eq!(c.attention_window, vec![None, Some(4096)]);
        // `rope_scaling` beside per-type settings joins the full-attention ones.
        per_type["rope_scaling"] = json!({"rope_type": "linear", "factor": 2.0});
        let c = read(&per_type).unwrap();
        assert!(matches!(c.rope_scaling, Some(RopeScaling::Linear { factor }) if factor == 2.0));
        assert_eq!((c.rope_theta, c.local_rope_theta), (3e4, Some(2e4)));

        // transformers 4's `type` names YaRN as `rope_type` does, in either place; a top-level
        // `original_max_position_embeddings` is not read beside per-type settings.
        let yarn = json!({"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64});
        let mut typed = olmo3(4);
        typed["rope_parameters"] = json!({"full_attention": yarn});
        typed["original_max_position_embeddings"] = json!(2048);
        let mut merged = olmo3(4);
        merged["rope_parameters"] = json!({"sliding_attention": {"rope_theta": 1e4}});
        merged["rope_scaling"] = yarn;
        for v in [typed, merged] {
            let c = read(&v).unwrap();
            let Some(RopeScaling::Yarn(y)) = c.rope_scaling else {
                panic!("{:?}", c.rope_scaling)
            };
            assert_eq!((y.factor, y.original_max_position_embeddings), (4.0, 64.0));
        }

        // No window and no sliding layers: full attention everywhere (transformers fails to
        // build the sliding mask it makes in any case).
        let mut full = olmo3(2);
        full["sliding_window"] = json!(null);
        full["layer_types"] = json!(["full_attention", "full_attention"]);
        assert_eq!(read(&full).unwrap().attention_window, vec![None, None]);
    }

    #[test]
    fn olmo3_refusals_name_the_field() {
        let cases = [
            (
                "rope_parameters",
                json!({"rope_type": "yarn", "factor": 2.0}),
                "reads its RoPE per layer type",
            ),
            ("rope_parameters", json!(3), "field `rope_parameters`"),
            (
                "rope_parameters",
                json!({"sliding_attention": {"rope_type": "linear", "factor": 2.0}}),
                "sliding-window layers are read unscaled",
            ),
            (
                "rope_parameters",
                json!({"sliding_attention": {"type": "linear", "factor": 2.0}}),
                "sliding-window layers are read unscaled",
            ),
            (
                "rope_parameters",
                json!({"full_attention": {"rope_type": "yarn", "factor": 2.0}, "truncate": false}),
                "`truncate: false` in `rope_parameters` (beside the layer types)",
            ),
            (
                "rope_parameters",
                json!({"full_attention": "x"}),
                "`rope_parameters.full_attention`: expected an object",
            ),
            (
                "rope_parameters",
                json!({"sliding_attention": {"rope_theta": -1.0}}),
                "sliding-window layers' RoPE base",
            ),
            (
                "rope_theta",
                json!("1e4"),
                "full-attention layers' RoPE base",
            ),
            ("rope_scaling", json!([1]), "field `rope_scaling`"),
            // transformers ignores it here ([`super::super::rope::per_type_truncate`]).
            (
                "rope_scaling",
                json!({"rope_type": "yarn", "factor": 4.0, "truncate": false}),
                "`truncate: false` in the full-attention layers' YaRN",
            ),
            // transformers fails at run time on sliding layers without a window.
            ("sliding_window", json!(null), "sliding layers need one"),
        ];
        for (key, value, want) in cases {
            let mut v = olmo3(4);
            v[key] = value;
            let e = read(&v).unwrap_err().to_string();
            assert!(e.contains(want), "{key}: {e}");
        }
    }
}
