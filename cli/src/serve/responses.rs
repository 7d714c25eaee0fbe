//! OpenAI's Responses API (`POST /v1/responses`) over the chat pipeline: a request's `input`
//! items, `instructions`, `tools` and `text.format` become a chat request, checked as chat
//! checks one, and the chat answer becomes a response object or its stream of typed events
//! ([`super::responses_out`]). Nothing is stored, so `previous_response_id` and
//! `conversation` are refused: the client sends the whole conversation in `input`, as it
//! does with `store: false`.

use serde_json::{json, Map, Value};

use super::api::{self, Job};
use super::error::ApiError;
pub use super::responses_out::{ResponseInfo, ResponsesStream};

/// Fields that mean the same in a chat request, passed on as they are (the sampling extensions
/// and dlp-run's own); chat checks them.
const SAME_AS_CHAT: &[&str] = &[
    "model",
    "temperature",
    "top_p",
    "stream",
    "parallel_tool_calls",
    "user",
    "metadata",
    "service_tier",
    "seed",
    "top_k",
    "min_p",
    "repetition_penalty",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "stop",
    "stop_token_ids",
    "min_tokens",
    "bad_words",
    "allowed_token_ids",
    "include_stop_str_in_output",
    "skip_special_tokens",
    "chat_template_kwargs",
    "lora_mixture",
    "dlp_route_by",
];

/// Fields accepted and not acted on: identifiers and caching hints (`store`: nothing is
/// stored whatever it says; see the module's note).
const HINTS: &[&str] = &[
    "store",
    "prompt_cache_key",
    "prompt_cache_retention",
    "safety_identifier",
];

/// A `/v1/responses` body: the chat job that answers it, and what its response repeats.
pub fn request(body: &[u8]) -> Result<(Job, ResponseInfo), ApiError> {
    let b: Map<String, Value> = api::parse(body)?;
    let mut chat = Map::new();
    let mut info = ResponseInfo::new(&b);
    for (k, v) in &b {
        match k.as_str() {
            k if SAME_AS_CHAT.contains(&k) || HINTS.contains(&k) => {}
            "input" | "instructions" | "tools" | "tool_choice" | "text" | "include"
            | "top_logprobs" | "max_output_tokens" | "stream_options" => {}
            "truncation" if v.is_null() || v == "disabled" => {}
            "truncation" => {
                return Err(ApiError::bad_param(
                    "truncation",
                    format!("`truncation` is {v}; only \"disabled\" is supported (this server does not drop input items; `truncate_prompt_tokens` of the chat API keeps a prompt's last tokens)"),
                ))
            }
            "reasoning" if is_empty(v) => {}
            "reasoning" => {
                return Err(ApiError::bad_param(
                    "reasoning",
                    "`reasoning` is not supported: the served model does not reason (leave it out)",
                ))
            }
            "previous_response_id" | "conversation" if v.is_null() => {}
            "previous_response_id" | "conversation" => {
                return Err(ApiError::bad_param(
                    k,
                    format!("`{k}` is not supported: this server keeps no responses; send the whole conversation in `input` (earlier outputs included, as with `store: false`)"),
                ))
            }
            "background" | "max_tool_calls" | "prompt" if v.is_null() || v == &json!(false) => {}
            other => {
                return Err(ApiError::bad_param(
                    other,
                    format!("`{other}` is not supported by this server's Responses API"),
                ))
            }
        }
        if SAME_AS_CHAT.contains(&k.as_str()) {
            chat.insert(k.clone(), v.clone());
        }
    }
    let mut messages = Vec::new();
    match b.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            messages.push(json!({"role": "system", "content": s}));
            info.sources.push("instructions".into());
        }
        Some(v) => {
            return Err(ApiError::bad_param(
                "instructions",
                format!("`instructions` must be a string, found {v}"),
            ))
        }
    }
    input(b.get("input"), &mut messages, &mut info.sources)?;
    chat.insert("messages".into(), Value::Array(messages));
    if let Some(m) = b.get("max_output_tokens").filter(|m| !m.is_null()) {
        chat.insert("max_tokens".into(), m.clone());
    }
    if b.get("stream").and_then(Value::as_bool) == Some(true) {
        // The final event carries the usage.
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(o) = b.get("stream_options").filter(|o| !o.is_null()) {
        let ok = o.as_object().is_some_and(|o| {
            o.iter()
                .all(|(k, v)| k == "include_obfuscation" && (v.is_boolean() || v.is_null()))
        });
        if !ok {
            return Err(ApiError::bad_param(
                "stream_options",
                format!("`stream_options` takes `include_obfuscation` (a bool) only, found {o}"),
            ));
        }
    }
    tools(&b, &mut chat)?;
    text_format(b.get("text"), &mut chat)?;
    logprobs(&b, &mut chat)?;
    let body = serde_json::to_vec(&chat).expect("a JSON map");
    let job = super::chat::chat(&body).map_err(|e| info.rename(e))?;
    Ok((job, info))
}

/// null, `{}`, or an object of nulls.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(o) => o.values().all(Value::is_null),
        _ => false,
    }
}

/// `input`: a string (one user message) or a list of items: messages, and the function calls
/// and their outputs of earlier turns. `sources` gets each chat message's field.
fn input(
    v: Option<&Value>,
    messages: &mut Vec<Value>,
    sources: &mut Vec<String>,
) -> Result<(), ApiError> {
    let items =
        match v {
            Some(Value::String(s)) => {
                messages.push(json!({"role": "user", "content": s}));
                sources.push("input".into());
                return Ok(());
            }
            Some(Value::Array(items)) if !items.is_empty() => items,
            Some(Value::Array(_)) => return Err(ApiError::bad_param("input", "`input` is empty")),
            None | Some(Value::Null) => return Err(ApiError::bad_param(
                "input",
                "`input` is required: a string, or a list of messages ({\"role\", \"content\"})",
            )),
            Some(v) => {
                return Err(ApiError::bad_param(
                    "input",
                    format!("`input` must be a string or a list of items, found {v}"),
                ))
            }
        };
    for (i, item) in items.iter().enumerate() {
        let at = format!("input[{i}]");
        let Some(o) = item.as_object() else {
            return Err(ApiError::bad_param(
                &at,
                format!(
                    "`{at}` must be an object (a message or a function call item), found {item}"
                ),
            ));
        };
        let kind = match o.get("type") {
            None if o.contains_key("role") => "message",
            Some(Value::String(t)) => t.as_str(),
            _ => {
                return Err(ApiError::bad_param(
                    format!("{at}.type"),
                    format!("`{at}.type` is missing or not a string (message, function_call, function_call_output)"),
                ))
            }
        };
        let field = |f: &str| -> Result<&Value, ApiError> {
            o.get(f).ok_or_else(|| {
                ApiError::bad_param(format!("{at}.{f}"), format!("`{at}.{f}` is missing"))
            })
        };
        let string = |f: &str| -> Result<String, ApiError> {
            match field(f)? {
                Value::String(s) => Ok(s.clone()),
                v => Err(ApiError::bad_param(
                    format!("{at}.{f}"),
                    format!("`{at}.{f}` must be a string, found {v}"),
                )),
            }
        };
        let allowed: &[&str] = match kind {
            "message" => &["type", "role", "content", "id", "status"],
            "function_call" => &["type", "call_id", "name", "arguments", "id", "status"],
            "function_call_output" => &["type", "call_id", "output", "id", "status"],
            other => {
                return Err(ApiError::bad_param(
                    format!("{at}.type"),
                    format!("`{at}.type` is \"{other}\"; this server takes message, function_call and function_call_output items (it keeps no earlier items to refer to, and reads text only)"),
                ))
            }
        };
        // Null fields are absent ones (an SDK may write every field of an output item back).
        if let Some(k) = (o.iter())
            .find_map(|(k, v)| (!allowed.contains(&k.as_str()) && !v.is_null()).then_some(k))
        {
            return Err(ApiError::bad_param(
                format!("{at}.{k}"),
                format!("unknown field `{at}.{k}` in a {kind} item"),
            ));
        }
        match kind {
            "message" => {
                let role = string("role")?;
                if !["user", "system", "developer", "assistant"].contains(&role.as_str()) {
                    return Err(ApiError::bad_param(
                        format!("{at}.role"),
                        format!("`{at}.role` is \"{role}\"; expected user, system, developer or assistant"),
                    ));
                }
                let content = text(field("content")?, &format!("{at}.content"))?;
                messages.push(json!({"role": role, "content": content}));
                sources.push(at);
            }
            "function_call" => {
                let call = json!({"id": string("call_id")?, "type": "function",
                                  "function": {"name": string("name")?, "arguments": string("arguments")?}});
                // Calls right after an assistant message (or other calls) are that turn's.
                match messages.last_mut() {
                    Some(m) if m["role"] == "assistant" => match m.get_mut("tool_calls") {
                        Some(Value::Array(calls)) => calls.push(call),
                        _ => m["tool_calls"] = json!([call]),
                    },
                    _ => {
                        messages.push(
                            json!({"role": "assistant", "content": null, "tool_calls": [call]}),
                        );
                        sources.push(at);
                    }
                }
            }
            _ => {
                let output = text(field("output")?, &format!("{at}.output"))?;
                messages.push(
                    json!({"role": "tool", "tool_call_id": string("call_id")?, "content": output}),
                );
                sources.push(at);
            }
        }
    }
    Ok(())
}

/// The text of a message's `content`: a string, or a list of text parts (`input_text`,
/// `output_text`, `refusal`) joined.
fn text(v: &Value, at: &str) -> Result<String, ApiError> {
    let parts = match v {
        Value::String(s) => return Ok(s.clone()),
        Value::Array(parts) => parts,
        v => {
            return Err(ApiError::bad_param(
                at,
                format!("`{at}` must be a string or a list of text parts, found {v}"),
            ))
        }
    };
    let mut out = String::new();
    for (j, p) in parts.iter().enumerate() {
        let kind = p.get("type").and_then(Value::as_str).unwrap_or("(none)");
        let key = match kind {
            "input_text" | "output_text" => "text",
            "refusal" => "refusal",
            k => {
                return Err(ApiError::bad_param(
                    format!("{at}[{j}]"),
                    format!("`{at}[{j}]` is a part of type {k}; this model reads text only (input_text, output_text)"),
                ))
            }
        };
        match p.get(key) {
            Some(Value::String(s)) => out.push_str(s),
            _ => {
                return Err(ApiError::bad_param(
                    format!("{at}[{j}].{key}"),
                    format!("`{at}[{j}].{key}` must be a string"),
                ))
            }
        }
    }
    Ok(out)
}

/// `tools` (function tools, flat: `{"type": "function", "name", "parameters", ...}`) and
/// `tool_choice`, in chat's nested form.
fn tools(b: &Map<String, Value>, chat: &mut Map<String, Value>) -> Result<(), ApiError> {
    match b.get("tools") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            let mut out = Vec::new();
            for (i, t) in list.iter().enumerate() {
                let at = format!("tools[{i}]");
                let o = t
                    .as_object()
                    .filter(|o| o.get("type") == Some(&json!("function")));
                let Some(o) = o else {
                    return Err(ApiError::bad_param(
                        &at,
                        format!("`{at}` must be a function tool ({{\"type\": \"function\", \"name\", \"parameters\"}}); this server runs no built-in tools"),
                    ));
                };
                if let Some(k) = (o.keys()).find(|k| {
                    !["type", "name", "description", "parameters", "strict"].contains(&k.as_str())
                }) {
                    return Err(ApiError::bad_param(
                        format!("{at}.{k}"),
                        format!("unknown field `{at}.{k}`: a function tool has `name`, `description`, `parameters` and `strict`"),
                    ));
                }
                let mut f = o.clone();
                f.remove("type");
                out.push(json!({"type": "function", "function": f}));
            }
            chat.insert("tools".into(), Value::Array(out));
        }
        Some(v) => {
            return Err(ApiError::bad_param(
                "tools",
                format!("`tools` must be a list of function tools, found {v}"),
            ))
        }
    }
    match b.get("tool_choice") {
        None | Some(Value::Null) => {}
        Some(c @ Value::String(_)) => {
            chat.insert("tool_choice".into(), c.clone());
        }
        Some(c) => match (c.get("type").and_then(Value::as_str), c.get("name")) {
            (Some("function"), Some(Value::String(n))) if c.as_object().is_some_and(|o| o.len() == 2) => {
                chat.insert("tool_choice".into(), json!({"type": "function", "function": {"name": n}}));
            }
            _ => {
                return Err(ApiError::bad_param(
                    "tool_choice",
                    format!("`tool_choice` must be \"auto\", \"none\", \"required\" or {{\"type\": \"function\", \"name\": ...}}, found {c}"),
                ))
            }
        },
    }
    Ok(())
}

/// `text.format` as chat's `response_format`; `text.verbosity` only at its default.
fn text_format(v: Option<&Value>, chat: &mut Map<String, Value>) -> Result<(), ApiError> {
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
            "verbosity" if v.is_null() || v == "medium" => {}
            "verbosity" => {
                return Err(ApiError::bad_param(
                    "text.verbosity",
                    format!("`text.verbosity` is {v}; only \"medium\" is supported"),
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
    let format = match f.get("type").and_then(Value::as_str) {
        Some("text") if f.as_object().is_some_and(|o| o.len() == 1) => return Ok(()),
        Some("json_object") if f.as_object().is_some_and(|o| o.len() == 1) => {
            json!({"type": "json_object"})
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

/// `include: ["message.output_text.logprobs"]` and `top_logprobs` as chat's `logprobs` and
/// `top_logprobs`.
fn logprobs(b: &Map<String, Value>, chat: &mut Map<String, Value>) -> Result<(), ApiError> {
    let mut want = false;
    match b.get("include") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, x) in list.iter().enumerate() {
                match x.as_str() {
                    Some("message.output_text.logprobs") => want = true,
                    _ => {
                        return Err(ApiError::bad_param(
                            format!("include[{i}]"),
                            format!("`include[{i}]` is {x}; this server can include \"message.output_text.logprobs\" only"),
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
    if let Some(t) = b.get("top_logprobs").filter(|t| !t.is_null()) {
        want = true;
        chat.insert("top_logprobs".into(), t.clone());
    }
    if want {
        chat.insert("logprobs".into(), json!(true));
    }
    Ok(())
}
