//! The request fields that name tokens or text the sampler acts on: `logit_bias`, `stop` and
//! vLLM's `stop_token_ids`, `allowed_token_ids` and `bad_words`. Token ids are checked
//! against the vocabulary, and bad words tokenized, once the model is known (`serve_job`).

use serde_json::{Map, Value};

use super::error::ApiError;

/// Most stop strings.
pub const MAX_STOPS: usize = 16;
/// Longest stop string, in bytes. Stops are matched on the engine thread at every token, so
/// megabyte stops slowed every other request (16 x 900 KB: a neighbour's stream 3.5x slower).
pub const MAX_STOP_BYTES: usize = 1024;

/// Most `stop_token_ids`.
pub const MAX_STOP_TOKEN_IDS: usize = 256;

/// `logit_bias`: `{"token id": bias}`, biases from -100 to 100, sorted by id for the sampler.
/// Ids are checked against the vocabulary once the model is known.
pub(super) fn logit_bias(v: Option<Map<String, Value>>) -> Result<Vec<(u32, f32)>, ApiError> {
    let mut out = Vec::with_capacity(v.as_ref().map_or(0, Map::len));
    for (key, bias) in v.into_iter().flatten() {
        let param = format!("logit_bias.{key}");
        // "0042" and "+1" would parse as u32 but are not how a token id is written.
        let id = key
            .parse::<u32>()
            .ok()
            .filter(|id| id.to_string() == key)
            .ok_or_else(|| {
                ApiError::bad_param(
                    &param,
                    format!("`logit_bias` key `{key}` is not a token id (a whole number from 0, as a string)"),
                )
            })?;
        let b = bias.as_f64().filter(|b| (-100.0..=100.0).contains(b));
        let Some(b) = b else {
            return Err(ApiError::bad_param(
                &param,
                format!("`logit_bias` gives token {key} the bias {bias}; it must be a number from -100 to 100"),
            ));
        };
        out.push((id, b as f32));
    }
    // Each key once: the body parser refuses a key given twice.
    out.sort_unstable_by_key(|&(t, _)| t);
    Ok(out)
}

/// `stop`: a string or a list of strings.
pub(super) fn stops(v: Option<Value>) -> Result<Vec<String>, ApiError> {
    let one = matches!(v, Some(Value::String(_)));
    let list = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(a)) => a
            .into_iter()
            .enumerate()
            .map(|(i, s)| match s {
                Value::String(s) => Ok(s),
                other => Err(ApiError::bad_param(
                    format!("stop[{i}]"),
                    format!("`stop[{i}]` must be a string, found {other}"),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(ApiError::bad_param(
                "stop",
                format!("`stop` must be a string or a list of strings, found {other}"),
            ))
        }
    };
    if list.len() > MAX_STOPS {
        return Err(ApiError::bad_param(
            "stop",
            format!(
                "`stop` has {} strings; at most {MAX_STOPS} are allowed",
                list.len()
            ),
        ));
    }
    if let Some((i, s)) = list
        .iter()
        .enumerate()
        .find(|(_, s)| s.len() > MAX_STOP_BYTES)
    {
        let at = if one {
            "stop".into()
        } else {
            format!("stop[{i}]")
        };
        return Err(ApiError::bad_param(
            &at,
            format!(
                "`{at}` is {} bytes long; at most {MAX_STOP_BYTES} are allowed",
                s.len()
            ),
        ));
    }
    if list.iter().any(String::is_empty) {
        return Err(ApiError::bad_param(
            "stop",
            "`stop` strings must not be empty",
        ));
    }
    Ok(list)
}

/// A list of token ids at `field` (vLLM's `stop_token_ids`, `allowed_token_ids`), at most
/// `max` of them; each a whole number (checked against the vocabulary later).
pub(super) fn token_ids(v: Option<Value>, field: &str, max: usize) -> Result<Vec<u32>, ApiError> {
    let list = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(ApiError::bad_param(
                field,
                format!("`{field}` must be a list of token ids, found {other}"),
            ))
        }
    };
    if list.len() > max {
        return Err(ApiError::bad_param(
            field,
            format!(
                "`{field}` has {} ids; at most {max} are allowed",
                list.len()
            ),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, t)| {
            t.as_u64()
                .and_then(|t| u32::try_from(t).ok())
                .ok_or_else(|| {
                    ApiError::bad_param(
                        format!("{field}[{i}]"),
                        format!(
                            "`{field}[{i}]` must be a token id (a whole number from 0), found {t}"
                        ),
                    )
                })
        })
        .collect()
}

/// vLLM's `bad_words`: a list of non-empty strings (at most [`MAX_STOPS`] x 16, each at most
/// [`MAX_STOP_BYTES`]), tokenized once the tokenizer is at hand.
pub(super) fn bad_words(v: Option<Value>) -> Result<Vec<String>, ApiError> {
    let list = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(ApiError::bad_param(
                "bad_words",
                format!("`bad_words` must be a list of strings, found {other}"),
            ))
        }
    };
    if list.len() > MAX_STOPS * 16 {
        return Err(ApiError::bad_param(
            "bad_words",
            format!(
                "`bad_words` has {} words; at most {} are allowed",
                list.len(),
                MAX_STOPS * 16
            ),
        ));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, w)| match w {
            Value::String(s) if !s.trim().is_empty() && s.len() <= MAX_STOP_BYTES => Ok(s),
            other => Err(ApiError::bad_param(
                format!("bad_words[{i}]"),
                format!("`bad_words[{i}]` must be a non-blank string of at most {MAX_STOP_BYTES} bytes, found {other}"),
            )),
        })
        .collect()
}
