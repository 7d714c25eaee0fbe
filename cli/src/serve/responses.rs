//! OpenAI's Responses API (`POST /v1/responses`) over the chat pipeline: a request's `input`
//! items, `instructions`, `tools` and `text.format` become a chat request, checked as chat
//! checks one, and the chat answer becomes a response object or its stream of typed events
//! ([`super::responses_out`]). Nothing is stored, so `previous_response_id` and
//! `conversation` are refused: the client sends the whole conversation in `input`, as it
//! does with `store: false`.

use serde_json::{json, Map, Value};

use super::api::{self, Job};
use super::error::ApiError;
use super::responses_options as options;
pub use super::responses_out::{ResponseInfo, ResponsesStream};

/// Where a chat message came from: its request field, and each of its tool calls' (calls
/// merged into one assistant turn came from items of their own).
pub(super) struct Source {
    pub(super) at: String,
    pub(super) calls: Vec<String>,
}

impl Source {
    fn new(at: impl Into<String>) -> Self {
        Source {
            at: at.into(),
            calls: Vec::new(),
        }
    }
}

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
            "reasoning" if no_reasoning(v) => {}
            "reasoning" => {
                return Err(ApiError::bad_param(
                    "reasoning",
                    format!("`reasoning` is {v}: the served model does not reason (leave it out, or set `effort` to \"none\" or \"minimal\")"),
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
            info.sources.push(Source::new("instructions"));
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
        // A number below 1 in words about this field (chat's type check would say 0 to 2^64-1).
        if m.is_number() && m.as_u64().is_none_or(|n| n < 1) {
            return Err(ApiError::bad_param(
                "max_output_tokens",
                format!("`max_output_tokens` must be an integer of at least 1, found {m}"),
            ));
        }
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
    options::tools(&b, &mut chat).map_err(|e| info.rename(e))?;
    options::text_format(b.get("text"), &mut chat)?;
    options::logprobs(&b, &mut chat)?;
    options::echoed(&b)?;
    let body = serde_json::to_vec(&chat).expect("a JSON map");
    let job = super::chat::chat(&body).map_err(|e| info.rename(e))?;
    Ok((job, info))
}

/// `reasoning` that asks for none: null, `{}`, or `effort` "none" or "minimal" with nothing
/// else set.
fn no_reasoning(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(o) => o
            .iter()
            .all(|(k, v)| v.is_null() || (k == "effort" && (v == "none" || v == "minimal"))),
        _ => false,
    }
}

/// `input`: a string (one user message) or a list of items: messages, and the function calls
/// and their outputs of earlier turns. `sources` gets each chat message's field.
fn input(
    v: Option<&Value>,
    messages: &mut Vec<Value>,
    sources: &mut Vec<Source>,
) -> Result<(), ApiError> {
    let items =
        match v {
            Some(Value::String(s)) => {
                messages.push(json!({"role": "user", "content": s}));
                sources.push(Source::new("input"));
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
    // The call ids of the function_call items so far.
    let mut calls: Vec<String> = Vec::new();
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
        // Fields of earlier outputs sent back that change nothing here (`phase`, which SDKs
        // resend on assistant messages, a call's `caller` or `namespace`) are accepted.
        let allowed: &[&str] = match kind {
            "message" => &["type", "role", "content", "id", "status", "phase"],
            // `parsed_arguments`: what the SDK's `responses.parse` adds to the calls it returns.
            "function_call" => &[
                "type",
                "call_id",
                "name",
                "arguments",
                "id",
                "status",
                "caller",
                "namespace",
                "parsed_arguments",
            ],
            "function_call_output" => &["type", "call_id", "output", "id", "status", "name"],
            other => {
                return Err(ApiError::bad_param(
                    format!("{at}.type"),
                    format!("`{at}.type` is \"{other}\"; this server takes message, function_call and function_call_output items (it keeps no earlier items to refer to, and reads text only)"),
                ))
            }
        };
        // Null fields are absent ones (an SDK may write every field of an output item back).
        if let Some(k) = super::body::unknown_field(item, allowed) {
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
                // OpenAI's rule: a model's turn holds output parts, the others input parts.
                let kinds: &[&str] = match role.as_str() {
                    "assistant" => &["output_text", "refusal"],
                    _ => &["input_text"],
                };
                let content = text(field("content")?, &format!("{at}.content"), kinds)?;
                messages.push(json!({"role": role, "content": content}));
                sources.push(Source::new(at));
            }
            "function_call" => {
                let id = string("call_id")?;
                calls.push(id.clone());
                let call = json!({"id": id, "type": "function",
                                  "function": {"name": string("name")?, "arguments": string("arguments")?}});
                // Calls right after an assistant message (or other calls) are that turn's.
                match (messages.last_mut(), sources.last_mut()) {
                    (Some(m), Some(src)) if m["role"] == "assistant" => {
                        match m.get_mut("tool_calls") {
                            Some(Value::Array(calls)) => calls.push(call),
                            _ => m["tool_calls"] = json!([call]),
                        }
                        src.calls.push(at);
                    }
                    _ => {
                        let m = json!({"role": "assistant", "content": null, "tool_calls": [call]});
                        messages.push(m);
                        sources.push(Source {
                            at: at.clone(),
                            calls: vec![at],
                        });
                    }
                }
            }
            _ => {
                let output = text(field("output")?, &format!("{at}.output"), &["input_text"])?;
                let id = string("call_id")?;
                // An output answers a call of this input: the server keeps no earlier ones.
                if !calls.contains(&id) {
                    return Err(ApiError::bad_param(
                        format!("{at}.call_id"),
                        format!("no function call found for function call output with call_id \"{id}\" (`{at}.call_id`): send the function_call item before its output"),
                    ));
                }
                let m = json!({"role": "tool", "tool_call_id": id, "content": output});
                messages.push(m);
                sources.push(Source::new(at));
            }
        }
    }
    Ok(())
}

/// A message's `content` for chat: a string, or its text parts of the types in `kinds`
/// (`input_text`; a model's turn `output_text` and `refusal`) as chat's text parts, which chat
/// joins as it joins its own. A part's other fields are refused, except an output part's
/// `annotations`, `logprobs` and `parsed` (SDKs send a response's output back whole) and null
/// ones.
fn text(v: &Value, at: &str, kinds: &[&str]) -> Result<Value, ApiError> {
    let parts = match v {
        Value::String(_) => return Ok(v.clone()),
        Value::Array(parts) => parts,
        v => {
            return Err(ApiError::bad_param(
                at,
                format!("`{at}` must be a string or a list of text parts, found {v}"),
            ))
        }
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        let kind = p.get("type").and_then(Value::as_str).unwrap_or("(none)");
        // Each part's fields: its type, its text, and what an SDK returns beside them
        // (`parsed`: what `responses.parse` adds to the parts it returns).
        let fields: &[&str] = match kind {
            "input_text" => &["type", "text"],
            "output_text" => &["type", "text", "annotations", "logprobs", "parsed"],
            "refusal" => &["type", "refusal"],
            _ => &[],
        };
        let Some(&key) = fields.get(1) else {
            return Err(ApiError::bad_param(
                format!("{at}[{j}]"),
                format!("`{at}[{j}]` is a part of type {kind}; this model reads text only (input_text; a model's turns output_text, refusal)"),
            ));
        };
        if !kinds.contains(&kind) {
            return Err(ApiError::bad_param(
                format!("{at}[{j}]"),
                format!(
                    "`{at}[{j}]` is a part of type {kind}; here a part is {} (OpenAI's rule: a model's turns hold output parts, the others input parts)",
                    kinds.join(" or ")
                ),
            ));
        }
        if let Some(k) = super::body::unknown_field(p, fields) {
            return Err(ApiError::bad_param(
                format!("{at}[{j}].{k}"),
                format!(
                    "unknown field `{at}[{j}].{k}`: a {kind} part has {}",
                    fields
                        .iter()
                        .map(|f| format!("`{f}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        match p.get(key) {
            Some(Value::String(s)) => out.push(json!({"type": "text", "text": s})),
            _ => {
                return Err(ApiError::bad_param(
                    format!("{at}[{j}].{key}"),
                    format!("`{at}[{j}].{key}` must be a string"),
                ))
            }
        }
    }
    Ok(Value::Array(out))
}
