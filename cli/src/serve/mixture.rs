//! `lora_mixture`, dlp-run's extension field: adapter name -> weight, read as sent and checked.

use serde_json::Value;

use super::error::ApiError;

/// The largest weight a request may give an adapter: the engine's, checked here so that
/// a client's mistake is a 400 naming its field (1e30 had overflowed the forward pass, a 500).
pub const MAX_MIX_WEIGHT: f64 = dlp_engine::lora::MAX_MIX_WEIGHT as f64;

/// The checked mixture, (name, weight) in the order sent (serde_json keeps objects' order;
/// a name given twice was refused with the whole body, by `json_keys`). A 400 names
/// `lora_mixture.<name>` for a weight that is not a number from 0 to [`MAX_MIX_WEIGHT`], and
/// `lora_mixture` for a value that is not an object. Names are checked against what is
/// loaded later.
pub fn mixture(raw: Value) -> Result<Vec<(String, f32)>, ApiError> {
    let pairs = match raw {
        Value::Object(p) => p,
        other => {
            return Err(ApiError::bad_param(
                "lora_mixture",
                format!("`lora_mixture` must be an object of adapter name -> weight, e.g. {{\"boolq\": 0.7, \"piqa\": 0.3}}; found {other}"),
            ))
        }
    };
    let mut out: Vec<(String, f32)> = Vec::with_capacity(pairs.len());
    for (name, w) in pairs {
        let param = format!("lora_mixture.{name}");
        let w = w.as_f64().ok_or_else(|| {
            ApiError::bad_param(
                &param,
                format!(
                    "the weight of adapter `{name}` in `lora_mixture` must be a number, found {w}"
                ),
            )
        })?;
        if !(0.0..=MAX_MIX_WEIGHT).contains(&w) {
            return Err(ApiError::bad_param(
                &param,
                format!("the weight of adapter `{name}` in `lora_mixture` is {w}; expected a number >= 0 and at most {MAX_MIX_WEIGHT}"),
            ));
        }
        // `+ 0.0` turns -0 into 0: a weight of -0 is 0, and is echoed as 0.
        out.push((name, w as f32 + 0.0));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Result<Vec<(String, f32)>, String> {
        let raw: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
        mixture(raw).map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn pairs_in_order_and_every_bad_mixture_named() {
        let m = read(r#"{"piqa": 0.25, "boolq": 100}"#).unwrap();
        assert_eq!(
            m,
            [("piqa".to_string(), 0.25), ("boolq".to_string(), 100.0)]
        );
        assert!(read("{}").unwrap().is_empty());
        let zero = read(r#"{"piqa": -0.0}"#).unwrap();
        assert!(zero[0].1 == 0.0 && zero[0].1.is_sign_positive(), "{zero:?}");
        for (json, words) in [
            (
                r#"{"boolq": 1e30}"#,
                &["1000000000000000000000000000000", "at most 100"][..],
            ),
            (
                r#"{"boolq": 100.5}"#,
                &["at most 100", "lora_mixture.boolq"],
            ),
            (r#"{"boolq": -0.5}"#, &["-0.5", ">= 0"]),
            (
                r#"{"boolq": "half"}"#,
                &["must be a number", "lora_mixture.boolq"],
            ),
            ("[1, 2]", &["must be an object", "[1,2]"]),
            ("true", &["must be an object", "true"]),
            ("\"boolq\"", &["must be an object"]),
            ("3", &["must be an object"]),
        ] {
            let e = read(json).unwrap_err();
            for w in words {
                assert!(e.contains(w), "{json}: {e} lacks {w:?}");
            }
        }
    }
}
