//! The `/v1/chat/completions` body: the fields every endpoint shares (through [`super::api`])
//! and the messages, checked one by one into [`ChatMessage`]s as transformers takes them
//! (content as a string or a list of text parts, assistant `tool_calls`, `tool` messages).

use serde_json::{json, Map, Value};

use dlp_engine::tokenizer::{text_of_part, ChatMessage, ChatRequest};

use super::api::{
    check, common, new_job, parse, ChatBody, Endpoint, Job, PromptInput, MAX_LOGPROBS,
};
use super::error::ApiError;

/// A `/v1/chat/completions` body, checked.
pub fn chat(body: &[u8]) -> Result<Job, ApiError> {
    let mut b: ChatBody = parse(body)?;
    let mut job = new_job(Endpoint::Chat);
    common(b.take_common(), &mut job)?;
    let messages = b.messages.ok_or_else(|| {
        ApiError::bad_param(
            "messages",
            "`messages` is required: a list of {role, content}",
        )
    })?;
    if messages.is_empty() {
        return Err(ApiError::bad_param("messages", "`messages` is empty"));
    }
    let messages = messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| chat_message(i, m))
        .collect::<Result<Vec<_>, _>>()?;
    let mut conversation = ChatRequest::new(messages);
    template_options(
        &mut conversation,
        b.add_generation_prompt,
        b.continue_final_message,
        b.chat_template_kwargs.take(),
        b.documents.take(),
    )?;
    job.prompts = vec![PromptInput::Chat(Box::new(conversation))];
    job.max_tokens = match (b.max_tokens, b.max_completion_tokens) {
        // Some clients send both, the same (vLLM takes both, `max_completion_tokens` first).
        (Some(a), Some(c)) if a != c => {
            return Err(ApiError::bad_param(
                "max_completion_tokens",
                format!("`max_tokens` ({a}) and `max_completion_tokens` ({c}) differ; give one (`max_tokens` is its deprecated name)"),
            ))
        }
        (a, c) => a.or(c),
    };
    if b.max_tokens.is_none() && b.max_completion_tokens.is_some() {
        job.max_tokens_param = "max_completion_tokens";
    }
    if job.max_tokens == Some(0) {
        let given = job.max_tokens_param;
        return Err(ApiError::bad_param(
            given,
            format!("`{given}` must be at least 1"),
        ));
    }
    match (b.logprobs.unwrap_or(false), b.top_logprobs) {
        (false, Some(t)) if t > 0 => {
            return Err(ApiError::bad_param(
                "top_logprobs",
                "`top_logprobs` needs `logprobs: true`",
            ))
        }
        (true, t) => {
            let t = t.unwrap_or(0);
            check("top_logprobs", t as f64, t <= MAX_LOGPROBS, "from 0 to 20")?;
            job.logprobs = Some(t as usize);
        }
        _ => {}
    }
    super::chat_options::check(&[
        ("modalities", &b.modalities),
        ("reasoning_effort", &b.reasoning_effort),
        ("verbosity", &b.verbosity),
        ("audio", &b.audio),
        ("prediction", &b.prediction),
        ("web_search_options", &b.web_search_options),
        ("function_call", &b.function_call),
    ])?;
    if !matches!(b.functions, None | Some(Value::Null)) {
        return Err(ApiError::bad_param(
            "functions",
            "`functions` (OpenAI's deprecated form) is not supported; use `tools` with `tool_choice`",
        ));
    }
    super::chat_options::allowed_tools(&mut b.tools, &mut b.tool_choice)?;
    let tools = b.tools.clone();
    let choice_given = b.tool_choice.as_ref().is_some_and(|c| !c.is_null());
    if let Some((mode, format)) =
        super::tools::tool_call(b.tools, b.tool_choice, b.parallel_tool_calls)?
    {
        if let Some((_, param)) = &job.format {
            let msg = match (format, choice_given) {
                (Some(_), _) => {
                    format!("`tool_choice` and `{param}` both set the answer's format; give one")
                }
                // The format would hold the whole answer: the model could never call.
                (None, true) => format!("`tool_choice: \"auto\"` and `{param}` cannot go together: the format holds the whole answer, so the model could never write a call; give one"),
                (None, false) => format!("`tools` without `tool_choice` means `\"auto\"`, which cannot go with `{param}`: the format holds the whole answer, so the model could never write a call; send `tool_choice: \"none\"` or force a call"),
            };
            return Err(ApiError::bad_param("tool_choice", msg));
        }
        if let Some(format) = format {
            if job.ignore_eos {
                return Err(ApiError::bad_param(
                    "ignore_eos",
                    "`ignore_eos` cannot go with a forced `tool_choice`: the answer ends where the call does",
                ));
            }
            job.format = Some(format);
        }
        job.tool_mode = Some(mode);
        // The template is shown the tools as sent (transformers' `tools`), as vLLM does.
        if let PromptInput::Chat(c) = &mut job.prompts[0] {
            c.tools = tools;
        }
    }
    Ok(job)
}

/// vLLM's template switches, as both /v1/chat/completions and /tokenize take them:
/// `add_generation_prompt` (default true, false when `continue_final_message` is set alone),
/// `continue_final_message`, `chat_template_kwargs` (more template variables), `documents`.
pub(super) fn template_options(
    c: &mut ChatRequest,
    add_generation_prompt: Option<bool>,
    continue_final_message: Option<bool>,
    kwargs: Option<serde_json::Map<String, Value>>,
    documents: Option<Value>,
) -> Result<(), ApiError> {
    c.documents = self::documents(documents)?;
    c.continue_final_message = continue_final_message.unwrap_or(false);
    c.add_generation_prompt = add_generation_prompt.unwrap_or(!c.continue_final_message);
    if c.continue_final_message && c.add_generation_prompt {
        return Err(ApiError::bad_param(
            "continue_final_message",
            "`continue_final_message` and `add_generation_prompt` cannot both be true: the first continues the last message, the second opens a new turn",
        ));
    }
    c.template_kwargs = kwargs.unwrap_or_default();
    let reserved = dlp_engine::tokenizer::chat::RENDERER_SETS;
    if let Some(k) = c
        .template_kwargs
        .keys()
        .find(|k| reserved.contains(&k.as_str()))
    {
        return Err(ApiError::bad_param(
            format!("chat_template_kwargs.{k}"),
            match k.as_str() {
                "messages" | "add_generation_prompt" | "continue_final_message" | "tools" | "documents" => format!(
                    "`chat_template_kwargs.{k}` cannot be given: it is the request's own field `{k}`; give it there"
                ),
                _ => format!(
                    "`chat_template_kwargs.{k}` cannot be given: the server sets `{k}` itself (from the model's tokenizer, or as one of the template's functions)"
                ),
            },
        ));
    }
    Ok(())
}

/// vLLM's `documents` for retrieval-augmented templates: a list of objects of strings
/// (`{"title", "text"}`, say), given to the template as they are.
fn documents(d: Option<Value>) -> Result<Option<Value>, ApiError> {
    let Some(d) = d.filter(|d| !d.is_null()) else {
        return Ok(None);
    };
    let ok = d.as_array().is_some_and(|list| {
        list.iter().all(|x| {
            x.as_object()
                .is_some_and(|o| o.values().all(Value::is_string))
        })
    });
    if !ok {
        return Err(ApiError::bad_param(
            "documents",
            format!("`documents` must be a list of objects whose values are strings ({{\"title\": ..., \"text\": ...}}), found {d}"),
        ));
    }
    Ok(Some(d))
}

/// One OpenAI message: `role` and `content` (a string, or a list of text parts).
pub(super) fn chat_message(i: usize, m: Value) -> Result<ChatMessage, ApiError> {
    let at = |f: &str| format!("messages[{i}].{f}");
    let Value::Object(mut o) = m else {
        return Err(ApiError::bad_param(
            format!("messages[{i}]"),
            format!("`messages[{i}]` must be an object with `role` and `content`, found {m}"),
        ));
    };
    match o.get("role") {
        Some(Value::String(r))
            if ["system", "developer", "user", "assistant", "tool"].contains(&r.as_str()) => {}
        Some(r) => {
            return Err(ApiError::bad_param(
                at("role"),
                format!(
                    "`{}` is {r}; expected one of system, developer, user, assistant, tool",
                    at("role")
                ),
            ))
        }
        None => {
            return Err(ApiError::bad_param(
                at("role"),
                format!("`{}` is missing", at("role")),
            ))
        }
    }
    sdk_fields(&mut o, &at)?;
    // Content goes to the chat template as a string or a list of text parts (made one string
    // for a template that does not loop over parts; see the engine's chat module); only what a
    // text model cannot read is refused.
    match o.get("content") {
        Some(Value::String(_)) => {}
        Some(Value::Array(parts)) => {
            for (j, p) in parts.iter().enumerate() {
                // A key a text part does not have is refused, as at every other level.
                let extra = p
                    .as_object()
                    .and_then(|o| o.keys().find(|k| !matches!(k.as_str(), "type" | "text")));
                if let (Some(_), Some(k)) = (text_of_part(p), extra) {
                    let field = format!("{}[{j}].{k}", at("content"));
                    return Err(ApiError::bad_param(
                        &field,
                        format!("unknown field `{field}`: a text part has `type` and `text` only"),
                    ));
                }
                if text_of_part(p).is_none() {
                    let kind = p.get("type").and_then(Value::as_str);
                    let what = match kind {
                        Some("text") => "a text part without a string `text`".to_string(),
                        k => format!(
                            "a part of type {}; this model takes text parts only",
                            k.unwrap_or("(none)")
                        ),
                    };
                    return Err(ApiError::bad_param(
                        format!("{}[{j}]", at("content")),
                        format!(
                            "`{}[{j}]` is {what} ({{\"type\": \"text\", \"text\": ...}})",
                            at("content"),
                        ),
                    ));
                }
            }
        }
        // An assistant turn that only calls tools has no content.
        None | Some(Value::Null) if o.contains_key("tool_calls") => {}
        None | Some(Value::Null) => {
            return Err(ApiError::bad_param(
                at("content"),
                format!(
                    "`{}` is missing (a string or a list of text parts)",
                    at("content")
                ),
            ))
        }
        Some(other) => {
            return Err(ApiError::bad_param(
                at("content"),
                format!(
                    "`{}` must be a string or a list of text parts, found {other}",
                    at("content")
                ),
            ))
        }
    }
    for f in ["name", "tool_call_id"] {
        match o.get(f) {
            None | Some(Value::String(_)) => {}
            Some(other) => {
                return Err(ApiError::bad_param(
                    at(f),
                    format!("`{}` must be a string, found {other}", at(f)),
                ))
            }
        }
    }
    if let Some(k) = o
        .keys()
        .find(|k| !["role", "content", "name", "tool_call_id", "tool_calls"].contains(&k.as_str()))
    {
        return Err(ApiError::bad_param(
            at(k),
            format!("`{}` is not supported by this server", at(k)),
        ));
    }
    if let Some(calls) = o.get_mut("tool_calls") {
        tool_calls(&at("tool_calls"), calls)?;
    }
    ChatMessage::try_from(o).map_err(|e| ApiError::bad_param(format!("messages[{i}]"), e))
}

/// The fields of an assistant message as OpenAI returns it (the SDK's
/// `message.model_dump()`, sent back as history): `null` is absent, for them and for `name`,
/// `tool_call_id` and `tool_calls` (an empty list too), in every role. On an assistant turn,
/// `annotations` (citations of the content) are dropped, a `refusal` is the turn's text when
/// it has none (beside text it is dropped, as vLLM ignores it), and `refusal` content parts
/// are text parts; a non-null `audio` or legacy `function_call` is refused (this server has
/// neither). Other roles have none of these: the unknown-field check refuses them.
fn sdk_fields(o: &mut Map<String, Value>, at: &dyn Fn(&str) -> String) -> Result<(), ApiError> {
    for k in [
        "refusal",
        "annotations",
        "audio",
        "function_call",
        "name",
        "tool_call_id",
    ] {
        if o.get(k).is_some_and(Value::is_null) {
            o.remove(k);
        }
    }
    if o.get("tool_calls")
        .is_some_and(|c| c.is_null() || c == &json!([]))
    {
        o.remove("tool_calls");
    }
    if o.get("role").is_none_or(|r| r != "assistant") {
        return Ok(());
    }
    // `parse()`'s message holds `parsed`, the content (or nothing) read into the caller's
    // type: a copy of what the turn already says, dropped as `annotations` are.
    o.remove("parsed");
    match o.remove("annotations") {
        None | Some(Value::Array(_)) => {}
        Some(other) => {
            return Err(ApiError::bad_param(
                at("annotations"),
                format!("`{}` must be a list, found {other}", at("annotations")),
            ))
        }
    }
    if let Some(Value::Array(parts)) = o.get_mut("content") {
        for p in parts.iter_mut() {
            if let (Some("refusal"), Some(Value::String(r))) =
                (p.get("type").and_then(Value::as_str), p.get("refusal"))
            {
                *p = json!({"type": "text", "text": r});
            }
        }
    }
    match o.remove("refusal") {
        None => {}
        Some(r @ Value::String(_)) => {
            let no_content = match o.get("content") {
                None | Some(Value::Null) => true,
                Some(Value::String(t)) => t.is_empty(),
                Some(Value::Array(parts)) => parts.is_empty(),
                Some(_) => false,
            };
            if no_content {
                o.insert("content".into(), r);
            }
        }
        Some(other) => {
            return Err(ApiError::bad_param(
                at("refusal"),
                format!("`{}` must be a string, found {other}", at("refusal")),
            ))
        }
    }
    for (k, what) in [
        ("audio", "audio"),
        (
            "function_call",
            "the legacy `function_call` (send `tool_calls`)",
        ),
    ] {
        if o.contains_key(k) {
            return Err(ApiError::bad_param(
                at(k),
                format!("`{}`: this server does not take {what}", at(k)),
            ));
        }
    }
    Ok(())
}

/// A message's `tool_calls` (`at` is its field): a list of `{"function": {"name",
/// "arguments"}}`. Templates read a call's arguments as a mapping (transformers' convention:
/// `|tojson` of the JSON text OpenAI sends would quote it twice), so the text is parsed, as
/// vLLM does; none (absent, null, "") is `{}`.
fn tool_calls(at: &str, calls: &mut Value) -> Result<(), ApiError> {
    let Value::Array(list) = calls else {
        return Err(ApiError::bad_param(
            at,
            format!("`{at}` must be a list of calls, found {calls}"),
        ));
    };
    for (j, c) in list.iter_mut().enumerate() {
        match c.get("type") {
            None | Some(Value::Null) => {}
            Some(t) if t == "function" => {}
            Some(t) => {
                return Err(ApiError::bad_param(
                    format!("{at}[{j}].type"),
                    format!(
                        "`{at}[{j}].type` is {t}; this server's calls are of type \"function\""
                    ),
                ))
            }
        }
        let f = format!("{at}[{j}].function");
        let Some(Value::Object(func)) = c.get_mut("function") else {
            return Err(ApiError::bad_param(
                &f,
                format!("`{f}` must be an object with `name` and `arguments`"),
            ));
        };
        if !func.get("name").is_some_and(Value::is_string) {
            return Err(ApiError::bad_param(
                format!("{f}.name"),
                format!("`{f}.name` must be a string"),
            ));
        }
        let args = func.entry("arguments").or_insert(Value::Null);
        let parsed = match &*args {
            Value::Null => Some(serde_json::json!({})),
            Value::String(t) if t.trim().is_empty() => Some(serde_json::json!({})),
            Value::String(t) => serde_json::from_str::<Value>(t).ok(),
            v => Some(v.clone()),
        };
        match parsed.filter(Value::is_object) {
            Some(v) => *args = v,
            None => {
                return Err(ApiError::bad_param(
                    format!("{f}.arguments"),
                    format!("`{f}.arguments` must be a JSON object, as text (what the model wrote), found {args}"),
                ))
            }
        }
    }
    Ok(())
}

/// The `param` of a chat-template error: the first `messages[...]...` field the message names
/// before a `: ` (the engine's render writes `messages[1].tool_calls: this model's chat
/// template never reads ...`, maybe after a context), else `messages`.
pub fn template_error_param(msg: &str) -> String {
    msg.match_indices("messages[")
        .find_map(|(i, _)| {
            let field = &msg[i..i + msg[i..].find(": ")?];
            let plain = |c: char| c.is_ascii_alphanumeric() || "[]._".contains(c);
            field.chars().all(plain).then(|| field.to_string())
        })
        .unwrap_or_else(|| "messages".into())
}

#[cfg(test)]
mod tests {
    use super::{chat_message, template_error_param};
    use serde_json::{json, Value};

    /// An answer as the OpenAI SDK dumps it is taken as history: its null fields are absent,
    /// `annotations` dropped, a refusal (field or content part) the turn's text.
    #[test]
    fn assistant_turns_as_the_sdk_dumps_them_are_taken() {
        let fields = |m: Value| {
            let m = chat_message(1, m).unwrap_or_else(|e| panic!("{}", e.message));
            Value::Object(m.fields().clone())
        };
        let dump = json!({"role": "assistant", "content": "Sunny.", "refusal": null,
            "annotations": [], "audio": null, "function_call": null, "tool_calls": null,
            "parsed": {"weather": "Sunny."}});
        assert_eq!(
            fields(dump),
            json!({"role": "assistant", "content": "Sunny."})
        );
        let refused = json!({"role": "assistant", "content": null, "refusal": "I can't."});
        assert_eq!(
            fields(refused),
            json!({"role": "assistant", "content": "I can't."})
        );
        // Beside text, a refusal is dropped (vLLM ignores it).
        let both = json!({"role": "assistant", "content": "a", "refusal": "b"});
        assert_eq!(fields(both)["content"], "a");
        let part = json!({"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]});
        assert_eq!(
            fields(part)["content"],
            json!([{"type": "text", "text": "No."}])
        );
        // Other roles have no such fields: only nulls pass.
        let user = json!({"role": "user", "content": "hi", "refusal": null, "name": null});
        assert_eq!(fields(user), json!({"role": "user", "content": "hi"}));
        let e =
            chat_message(1, json!({"role": "user", "content": "hi", "parsed": null})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[1].parsed"));
        let e =
            chat_message(1, json!({"role": "user", "content": "hi", "refusal": "x"})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[1].refusal"));
        let e = chat_message(
            1,
            json!({"role": "assistant", "content": "a", "refusal": 3}),
        )
        .unwrap_err();
        assert!(e.message.contains("must be a string"), "{}", e.message);
    }

    #[test]
    fn template_errors_name_the_field_the_render_names() {
        for (msg, param) in [
            (
                "messages[1].tool_calls: this model's chat template never reads `tool_calls`",
                "messages[1].tool_calls",
            ),
            (
                "rendering the chat template: messages[12].content: x",
                "messages[12].content",
            ),
            (
                "the template failed: undefined value (in messages)",
                "messages",
            ),
            ("messages[1] and more: x", "messages"),
            ("", "messages"),
        ] {
            assert_eq!(template_error_param(msg), param, "{msg:?}");
        }
    }
}
