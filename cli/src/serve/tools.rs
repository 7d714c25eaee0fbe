//! OpenAI's function calling where the call is forced: `tool_choice` `"required"` or a named
//! function. The answer is generated under a grammar of the call (structured output, as vLLM
//! does for these two) and returned as `tool_calls`. `"auto"` would need a parser of each
//! model's own tool-call syntax, which this server does not have; `"none"` ignores the tools.
//! The tools are not shown to the chat template: the model meets them through the grammar.

use dlp_engine::structured::OutputFormat;
use serde_json::{json, Value};

use super::error::ApiError;

/// How the answer becomes tool calls.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolMode {
    /// The answer is this function's arguments (a JSON object).
    Named(String),
    /// The answer is a list of `{"name", "parameters"}` (vLLM's shape for `"required"`).
    Required,
}

/// Reads `tools`, `tool_choice` and `parallel_tool_calls`: the mode and the grammar of the
/// answer, or None when no call is forced.
pub(super) fn forced_call(
    tools: Option<Value>,
    choice: Option<Value>,
    parallel: Option<bool>,
) -> Result<Option<(ToolMode, OutputFormat)>, ApiError> {
    let tools = functions(tools.filter(|v| !v.is_null()))?;
    let choice = choice.filter(|v| !v.is_null());
    if tools.is_empty() {
        return match choice {
            None => Ok(None),
            Some(_) => Err(ApiError::bad_param(
                "tool_choice",
                "`tool_choice` needs `tools`",
            )),
        };
    }
    let auto = || {
        ApiError::bad_param(
            "tool_choice",
            "`tool_choice: \"auto\"` (the default with `tools`) is not supported: this server cannot parse a model's own tool-call syntax; send `\"required\"` or `{\"type\": \"function\", \"function\": {\"name\": ...}}`, and the answer is generated as the call",
        )
    };
    match choice {
        None => Err(auto()),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Err(auto()),
            "none" => Ok(None),
            "required" => {
                let calls: Vec<Value> = tools
                    .iter()
                    .map(|(name, params)| {
                        json!({"type": "object", "additionalProperties": false,
                               "properties": {"name": {"const": name}, "parameters": params},
                               "required": ["name", "parameters"]})
                    })
                    .collect();
                let mut list = json!({"type": "array", "minItems": 1, "items": {"anyOf": calls}});
                if parallel == Some(false) {
                    list["maxItems"] = json!(1);
                }
                Ok(Some((ToolMode::Required, OutputFormat::JsonSchema(list))))
            }
            other => Err(ApiError::bad_param(
                "tool_choice",
                format!("`tool_choice` is `{other}`; expected `none`, `required` or a function"),
            )),
        },
        Some(v) => {
            let name = v
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .filter(|_| v.get("type").and_then(Value::as_str) == Some("function"))
                .ok_or_else(|| {
                    ApiError::bad_param(
                        "tool_choice",
                        format!("`tool_choice` is {v}; expected {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}"),
                    )
                })?;
            let Some((_, params)) = tools.iter().find(|(n, _)| n == name) else {
                return Err(ApiError::bad_param(
                    "tool_choice.function.name",
                    format!("`tool_choice` names `{name}`, which is not among `tools`"),
                ));
            };
            Ok(Some((
                ToolMode::Named(name.to_string()),
                OutputFormat::JsonSchema(params.clone()),
            )))
        }
    }
}

/// `tools`: `[{"type": "function", "function": {"name", "description"?, "parameters"?,
/// "strict"?}}]` into `(name, parameters schema)`; names as OpenAI allows them, each once.
fn functions(tools: Option<Value>) -> Result<Vec<(String, Value)>, ApiError> {
    let Some(tools) = tools else {
        return Ok(Vec::new());
    };
    let Value::Array(list) = tools else {
        return Err(ApiError::bad_param(
            "tools",
            format!("`tools` must be a list, found {tools}"),
        ));
    };
    let mut out: Vec<(String, Value)> = Vec::new();
    for (i, t) in list.into_iter().enumerate() {
        let at = format!("tools[{i}]");
        let bad = |what: String| ApiError::bad_param(&at, what);
        let f = match (t.get("type").and_then(Value::as_str), t.get("function")) {
            (Some("function"), Some(f)) if f.is_object() => f,
            _ => return Err(bad(format!("`{at}` must be {{\"type\": \"function\", \"function\": {{\"name\", \"parameters\"}}}}, found {t}"))),
        };
        let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if name.is_empty() || name.len() > 64 || !name.chars().all(valid) {
            return Err(bad(format!(
                "`{at}.function.name` must be 1 to 64 letters, digits, `_` or `-`, found {:?}",
                f.get("name")
            )));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(bad(format!("the function `{name}` is given twice")));
        }
        let mut params = match f.get("parameters") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(p) if p.is_object() => p.clone(),
            Some(p) => {
                return Err(bad(format!(
                    "`{at}.function.parameters` must be a JSON schema (an object), found {p}"
                )))
            }
        };
        if f.get("strict").is_some_and(|s| s == true) {
            super::format::close_objects(&mut params);
        }
        out.push((name.to_string(), params));
    }
    Ok(out)
}

/// The answer as OpenAI's `tool_calls`, or None when it is not a whole call (cut by
/// `max_tokens` or a stop string: it is then returned as text).
pub fn calls(mode: &ToolMode, text: &str) -> Option<Vec<Value>> {
    let call = |name: &str, arguments: String| {
        let id = format!("call_{:016x}", rand::random::<u64>());
        json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
    };
    match mode {
        ToolMode::Named(name) => {
            let args: Value = serde_json::from_str(text).ok()?;
            args.is_object().then(|| vec![call(name, text.to_string())])
        }
        ToolMode::Required => {
            let list: Vec<Value> = serde_json::from_str(text).ok()?;
            list.iter()
                .map(|c| {
                    let name = c.get("name")?.as_str()?;
                    Some(call(
                        name,
                        serde_json::to_string(c.get("parameters")?).ok()?,
                    ))
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_become_calls_only_when_whole() {
        let named = ToolMode::Named("f".into());
        let c = calls(&named, r#"{"x": 1}"#).unwrap();
        assert_eq!(
            c[0]["function"],
            json!({"name": "f", "arguments": "{\"x\": 1}"})
        );
        assert!(c[0]["id"].as_str().unwrap().starts_with("call_"));
        assert!(calls(&named, r#"{"x": "#).is_none());
        assert!(calls(&named, "[1]").is_none());
        let c = calls(
            &ToolMode::Required,
            r#"[{"name": "f", "parameters": {"x": 1}}, {"name": "g", "parameters": {}}]"#,
        )
        .unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[1]["function"], json!({"name": "g", "arguments": "{}"}));
        assert!(calls(&ToolMode::Required, r#"[{"name": "f"}]"#).is_none());
    }

    #[test]
    fn tool_choice_picks_the_grammar() {
        let tools = json!([{"type": "function", "function": {"name": "f", "strict": true,
            "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}},
            {"type": "function", "function": {"name": "g"}}]);
        let named = json!({"type": "function", "function": {"name": "f"}});
        let (mode, format) = forced_call(Some(tools.clone()), Some(named), None)
            .unwrap()
            .unwrap();
        assert_eq!(mode, ToolMode::Named("f".into()));
        // `strict` closes the parameters.
        let OutputFormat::JsonSchema(s) = format else {
            panic!()
        };
        assert_eq!(s["additionalProperties"], false);
        let (mode, format) = forced_call(Some(tools.clone()), Some(json!("required")), Some(false))
            .unwrap()
            .unwrap();
        assert_eq!(mode, ToolMode::Required);
        let OutputFormat::JsonSchema(s) = format else {
            panic!()
        };
        assert_eq!(s["maxItems"], 1);
        assert_eq!(s["items"]["anyOf"][1]["properties"]["name"]["const"], "g");
        assert!(forced_call(Some(tools), Some(json!("none")), None)
            .unwrap()
            .is_none());
        assert!(forced_call(None, None, None).unwrap().is_none());
    }
}
