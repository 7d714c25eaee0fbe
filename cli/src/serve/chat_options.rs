//! Fields of OpenAI's chat API read apart from the rest: those for features this server does
//! not have (audio, reasoning, predicted outputs, web search), which the OpenAI SDK and its
//! wrappers send, often as null or as their "nothing" value (accepted, as OpenAI accepts them
//! on a model without the feature; a request for the feature is a 400 naming the field), and
//! `tool_choice`'s `allowed_tools`.

use serde_json::Value;

use super::error::ApiError;

/// A field, the values other than null that ask for nothing, and why others are refused.
type Field = (&'static str, fn(&Value) -> bool, &'static str);

/// What each field may be: null always, or the values that ask for nothing.
const FIELDS: [Field; 7] = [
    (
        "modalities",
        text_only,
        "this server answers in text only: `[\"text\"]` or leave it out",
    ),
    (
        "reasoning_effort",
        no_reasoning,
        "the served model does not reason: leave it out, or set \"none\" or \"minimal\"",
    ),
    (
        "verbosity",
        verbosity,
        "expected \"low\", \"medium\" or \"high\"",
    ),
    (
        "audio",
        never,
        "this server answers in text only (no audio output)",
    ),
    ("prediction", never, "predicted outputs are not supported"),
    ("web_search_options", never, "this server has no web search"),
    (
        "function_call",
        no_call,
        "`function_call` (OpenAI's deprecated form) is not supported; use `tool_choice`",
    ),
];

/// Checks `fields` (name and value, as sent) against [`FIELDS`].
pub(super) fn check(fields: &[(&str, &Option<Value>)]) -> Result<(), ApiError> {
    for (name, value) in fields {
        let Some(v) = value.as_ref().filter(|v| !v.is_null()) else {
            continue;
        };
        let (_, ok, why) = FIELDS
            .iter()
            .find(|(n, ..)| n == name)
            .expect("a field of FIELDS");
        if !ok(v) {
            // OpenAI's code for a value the model does not support.
            return Err(
                ApiError::bad_param(*name, format!("`{name}` is {v}: {why}"))
                    .code("unsupported_value"),
            );
        }
    }
    Ok(())
}

fn text_only(v: &Value) -> bool {
    v.as_array()
        .is_some_and(|a| !a.is_empty() && a.iter().all(|m| m == "text"))
}

/// The deprecated `function_call: "none"`: no call, as without it.
fn no_call(v: &Value) -> bool {
    v == "none"
}

fn no_reasoning(v: &Value) -> bool {
    v == "none" || v == "minimal"
}

fn verbosity(v: &Value) -> bool {
    ["low", "medium", "high"].contains(&v.as_str().unwrap_or(""))
}

fn never(_: &Value) -> bool {
    false
}

/// Chat's `tool_choice: {"type": "allowed_tools", "allowed_tools": {"mode": "auto" |
/// "required", "tools": [{"type": "function", "function": {"name"}}]}}` (OpenAI's): `tools`
/// keeps the ones named, and `tool_choice` becomes the mode, as the Responses API's
/// `allowed_tools` is read. Any other `tool_choice` is left as it is.
pub(super) fn allowed_tools(
    tools: &mut Option<Value>,
    choice: &mut Option<Value>,
) -> Result<(), ApiError> {
    let Some(c) = choice.as_ref().filter(|c| c["type"] == "allowed_tools") else {
        return Ok(());
    };
    // Every tool is checked as chat checks them, those left out too (named by their place
    // in the request), before the filter drops any.
    super::tools::functions(tools.clone())?;
    let bad = || {
        ApiError::bad_param(
            "tool_choice",
            format!("`tool_choice` of type `allowed_tools` is {{\"type\": \"allowed_tools\", \"allowed_tools\": {{\"mode\": \"auto\" or \"required\", \"tools\": [{{\"type\": \"function\", \"function\": {{\"name\": ...}}}}]}}}}, found {c}"),
        )
    };
    let inner = match c.as_object() {
        Some(o) if o.len() == 2 => o.get("allowed_tools").and_then(Value::as_object),
        _ => None,
    };
    let Some(inner) = inner.filter(|o| o.len() == 2) else {
        return Err(bad());
    };
    let mode = inner
        .get("mode")
        .filter(|m| *m == "auto" || *m == "required");
    let names: Option<Vec<&Value>> = (inner.get("tools").and_then(Value::as_array)).map(|l| {
        l.iter()
            .map(|t| match t["type"] == "function" {
                true => &t["function"]["name"],
                false => &Value::Null,
            })
            .collect()
    });
    let (Some(mode), Some(names)) = (mode.cloned(), names) else {
        return Err(bad());
    };
    let Some(Value::Array(offered)) = tools.as_mut() else {
        return Err(ApiError::bad_param(
            "tool_choice",
            "`tool_choice` of type `allowed_tools` needs `tools`, a list of function tools, to choose from",
        ));
    };
    if let Err(i) = super::tools::keep_named(offered, &names) {
        let at = format!("tool_choice.allowed_tools.tools[{i}]");
        return Err(ApiError::bad_param(
            &at,
            format!("`{at}` must name a function among `tools` ({{\"type\": \"function\", \"function\": {{\"name\": ...}}}}), found {}", inner["tools"][i]),
        ));
    }
    *choice = Some(mode);
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn nothing_asked_is_accepted_and_a_feature_is_named() {
        let ok = |name: &str, v: Value| super::check(&[(name, &Some(v))]).is_ok();
        use serde_json::Value;
        assert!(ok("modalities", json!(["text"])));
        assert!(!ok("modalities", json!(["text", "audio"])));
        assert!(ok("reasoning_effort", json!("minimal")));
        assert!(!ok("reasoning_effort", json!("high")));
        assert!(ok("verbosity", json!("low")));
        assert!(!ok("verbosity", json!("loud")));
        assert!(!ok("modalities", json!([])));
        assert!(ok("function_call", json!("none")));
        assert!(!ok("function_call", json!("auto")));
        for never in ["audio", "prediction", "web_search_options", "function_call"] {
            assert!(ok(never, Value::Null), "{never}");
            assert!(!ok(never, json!({})), "{never}");
        }
        let e = super::check(&[("audio", &Some(json!({"voice": "alloy"})))]).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("audio"));
        assert_eq!(e.code, Some("unsupported_value"));
        assert!(e.message.contains("text only"), "{}", e.message);
    }
}
