//! The Responses API's request options that chat spells differently: function `tools` (flat)
//! and `tool_choice` (with `allowed_tools`), `text.format`, `include` and `top_logprobs`; and
//! the checks of fields a response repeats as sent (`metadata`, `service_tier`), so that
//! every response is one the official SDK reads.

use serde_json::{json, Map, Value};

use super::error::ApiError;

/// A function tool's fields this server reads; `output_schema` describes what the client's
/// function returns, which changes nothing here.
const TOOL_FIELDS: &[&str] = &[
    "type",
    "name",
    "description",
    "parameters",
    "strict",
    "output_schema",
];

/// `include` values naming outputs this server never makes (reasoning, built-in tools,
/// images): asking for them adds nothing, as with OpenAI when there are none.
const NOTHING_TO_INCLUDE: &[&str] = &[
    "reasoning.encrypted_content",
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
];

/// The include value that asks for the answer's logprobs.
const LOGPROBS: &str = "message.output_text.logprobs";

/// `tools` (function tools, flat: `{"type": "function", "name", "parameters", ...}`) and
/// `tool_choice`, in chat's nested form; `allowed_tools` keeps the tools it names.
pub(super) fn tools(b: &Map<String, Value>, chat: &mut Map<String, Value>) -> Result<(), ApiError> {
    let mut out = Vec::new();
    match b.get("tools") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, t) in list.iter().enumerate() {
                out.push(tool(t, &format!("tools[{i}]"))?);
            }
        }
        Some(v) => {
            return Err(ApiError::bad_param(
                "tools",
                format!("`tools` must be a list of function tools, found {v}"),
            ))
        }
    }
    let bad_choice = |c: &Value| {
        ApiError::bad_param(
            "tool_choice",
            format!("`tool_choice` must be \"auto\", \"none\", \"required\", {{\"type\": \"function\", \"name\": ...}} or {{\"type\": \"allowed_tools\", \"mode\", \"tools\"}}, found {c}"),
        )
    };
    // A response repeats its tools, all of them: each is checked as chat checks its own
    // (errors in chat's spelling, renamed by the caller), before `allowed_tools` may keep chat
    // from seeing some.
    super::tools::functions(Some(Value::Array(out.clone())))?;
    let choice = match b.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(c @ Value::String(_)) => Some(c.clone()),
        Some(c) => match (c.get("type").and_then(Value::as_str), c.as_object()) {
            (Some("function"), Some(o)) => match o.get("name") {
                Some(Value::String(n)) if o.len() == 2 => {
                    Some(json!({"type": "function", "function": {"name": n}}))
                }
                _ => return Err(bad_choice(c)),
            },
            (Some("allowed_tools"), Some(o)) => {
                let names: Option<Vec<&Value>> = (o.get("tools").and_then(Value::as_array))
                    .map(|l| l.iter().map(|t| &t["name"]).collect());
                let mode = o.get("mode").filter(|m| *m == "auto" || *m == "required");
                let (Some(names), Some(mode), 3) = (names, mode, o.len()) else {
                    return Err(bad_choice(c));
                };
                if let Err(i) = super::tools::keep_named(&mut out, &names) {
                    return Err(ApiError::bad_param(
                        format!("tool_choice.tools[{i}]"),
                        format!(
                            "`tool_choice.tools[{i}]` names {}, which is not among `tools`",
                            names[i]
                        ),
                    ));
                }
                Some(mode.clone())
            }
            _ => return Err(bad_choice(c)),
        },
    };
    if b.contains_key("tools") {
        chat.insert("tools".into(), Value::Array(out));
    }
    if let Some(c) = choice {
        chat.insert("tool_choice".into(), c);
    }
    Ok(())
}

/// One function tool at `at`, in chat's form. Null fields are absent ones; `defer_loading`,
/// `allowed_callers` and `async` are accepted at the values that mean an ordinary tool.
fn tool(t: &Value, at: &str) -> Result<Value, ApiError> {
    let o = t
        .as_object()
        .filter(|o| o.get("type") == Some(&json!("function")));
    let Some(o) = o else {
        return Err(ApiError::bad_param(
            at,
            format!("`{at}` must be a function tool ({{\"type\": \"function\", \"name\", \"parameters\"}}); this server runs no built-in tools"),
        ));
    };
    let mut f = Map::new();
    for (k, v) in o {
        let ordinary = match k.as_str() {
            "type" => continue,
            k if TOOL_FIELDS.contains(&k) => {
                f.insert(k.into(), v.clone());
                continue;
            }
            "defer_loading" | "async" => v == false,
            "allowed_callers" => v == &json!(["direct"]),
            _ => false,
        };
        if !ordinary && !v.is_null() {
            return Err(ApiError::bad_param(
                format!("{at}.{k}"),
                format!("`{at}.{k}` is {v}; a function tool here has `name`, `description`, `parameters`, `strict` and `output_schema` (`defer_loading` false, `allowed_callers` [\"direct\"])"),
            ));
        }
    }
    // Chat reads `output_schema` nowhere; it is checked here as what it is, and dropped.
    if let Some(s) = f
        .remove("output_schema")
        .filter(|s| !s.is_null() && !s.is_object())
    {
        return Err(ApiError::bad_param(
            format!("{at}.output_schema"),
            format!("`{at}.output_schema` must be a JSON schema object, found {s}"),
        ));
    }
    Ok(json!({"type": "function", "function": f}))
}

/// `text.format` as chat's `response_format`; `text.verbosity` is accepted (a hint to
/// OpenAI's models about length, which this server does not act on).
pub(super) fn text_format(
    v: Option<&Value>,
    chat: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    let Some(t) = v.filter(|t| !t.is_null()) else {
        return Ok(());
    };
    let Some(o) = t.as_object() else {
        return Err(ApiError::bad_param(
            "text",
            format!("`text` must be an object ({{\"format\": ...}}), found {t}"),
        ));
    };
    for (k, v) in o {
        match k.as_str() {
            "format" => {}
            "verbosity"
                if v.is_null() || ["low", "medium", "high"].contains(&v.as_str().unwrap_or("")) => {
            }
            "verbosity" => {
                return Err(ApiError::bad_param(
                    "text.verbosity",
                    format!("`text.verbosity` is {v}; expected \"low\", \"medium\" or \"high\""),
                ))
            }
            k => {
                return Err(ApiError::bad_param(
                    format!("text.{k}"),
                    format!("unknown field `text.{k}`"),
                ))
            }
        }
    }
    let Some(f) = o.get("format").filter(|f| !f.is_null()) else {
        return Ok(());
    };
    let only_type = f.as_object().is_some_and(|o| o.len() == 1);
    let format = match f.get("type").and_then(Value::as_str) {
        Some("text") if only_type => return Ok(()),
        Some("json_object") if only_type => json!({"type": "json_object"}),
        // OpenAI requires the name here (chat's json_schema does not), and a response repeats
        // the format, so the SDK would refuse the response without it.
        Some("json_schema") if f.get("name").is_none_or(Value::is_null) => {
            return Err(ApiError::bad_param(
                "text.format.name",
                "`text.format.name` is required with `\"type\": \"json_schema\"` (a string)",
            ))
        }
        // OpenAI's rule for the name.
        Some("json_schema")
            if !f["name"].as_str().is_some_and(super::tools::openai_name) =>
        {
            return Err(ApiError::bad_param(
                "text.format.name",
                format!(
                    "`text.format.name` must be 1 to 64 letters, digits, `_` or `-`, found {}",
                    f["name"]
                ),
            ))
        }
        Some("json_schema") if f.get("description").is_some_and(|d| !d.is_string() && !d.is_null()) => {
            return Err(ApiError::bad_param(
                "text.format.description",
                format!("`text.format.description` must be a string or null, found {}", f["description"]),
            ))
        }
        Some("json_schema") => {
            let mut schema = f.as_object().cloned().unwrap_or_default();
            schema.remove("type");
            json!({"type": "json_schema", "json_schema": schema})
        }
        _ => {
            return Err(ApiError::bad_param(
                "text.format",
                format!("`text.format` must be {{\"type\": \"text\"}}, {{\"type\": \"json_object\"}} or {{\"type\": \"json_schema\", \"name\", \"schema\", \"strict\"}}, found {f}"),
            ))
        }
    };
    chat.insert("response_format".into(), format);
    Ok(())
}

/// `include: ["message.output_text.logprobs"]` as chat's `logprobs`, with `top_logprobs`
/// alternatives (which alone only size them, as with OpenAI).
pub(super) fn logprobs(
    b: &Map<String, Value>,
    chat: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    let mut want = false;
    match b.get("include") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, x) in list.iter().enumerate() {
                match x.as_str() {
                    Some(LOGPROBS) => want = true,
                    Some(s) if NOTHING_TO_INCLUDE.contains(&s) => {}
                    _ => {
                        return Err(ApiError::bad_param(
                            format!("include[{i}]"),
                            format!(
                                "`include[{i}]` is {x}; expected one of \"{LOGPROBS}\", \"{}\"",
                                NOTHING_TO_INCLUDE.join("\", \"")
                            ),
                        ))
                    }
                }
            }
        }
        Some(v) => {
            return Err(ApiError::bad_param(
                "include",
                format!("`include` must be a list of strings, found {v}"),
            ))
        }
    }
    if want {
        chat.insert("logprobs".into(), json!(true));
        if let Some(t) = b.get("top_logprobs").filter(|t| !t.is_null()) {
            chat.insert("top_logprobs".into(), t.clone());
        }
    } else if let Some(t) = b.get("top_logprobs").filter(|t| !t.is_null()) {
        // Checked as chat would, though nothing is returned without the include.
        let ok = t.as_u64().is_some_and(|t| t <= super::api::MAX_LOGPROBS);
        if !ok {
            return Err(ApiError::bad_param(
                "top_logprobs",
                format!("`top_logprobs` is {t}; it must be from 0 to 20"),
            ));
        }
    }
    Ok(())
}

/// Fields a response repeats as sent, checked as OpenAI's API defines them: `metadata` and
/// `service_tier` ([`check_metadata`], [`check_service_tier`]).
pub(super) fn echoed(b: &Map<String, Value>) -> Result<(), ApiError> {
    check_metadata(b.get("metadata"))?;
    check_service_tier(b.get("service_tier"))
}

/// `metadata` as OpenAI's API defines it (every endpoint: chat and completions accept and
/// ignore it, Responses repeats it): null, or an object of at most 16 string values, keys of
/// at most 64 characters and values of at most 512.
pub(super) fn check_metadata(v: Option<&Value>) -> Result<(), ApiError> {
    match v {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(m)) if m.len() <= 16 => {
            for (k, v) in m {
                let ok =
                    k.chars().count() <= 64 && v.as_str().is_some_and(|s| s.chars().count() <= 512);
                if !ok {
                    return Err(ApiError::bad_param(
                        format!("metadata.{k}"),
                        "`metadata` holds up to 16 string values, keys of at most 64 characters and values of at most 512",
                    ));
                }
            }
            Ok(())
        }
        Some(v) => Err(ApiError::bad_param(
            "metadata",
            format!("`metadata` must be an object of at most 16 string values, found {v}"),
        )),
    }
}

/// `service_tier`: null or one of OpenAI's tiers (accepted; this server has one).
pub(super) fn check_service_tier(v: Option<&Value>) -> Result<(), ApiError> {
    const TIERS: &[&str] = &[
        "auto",
        "default",
        "flex",
        "scale",
        "priority",
        "fast",
        "ultrafast",
    ];
    match v {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(t)) if TIERS.contains(&t.as_str()) => Ok(()),
        Some(v) => Err(ApiError::bad_param(
            "service_tier",
            format!(
                "`service_tier` is {v}; expected one of {}",
                TIERS.join(", ")
            ),
        )),
    }
}
