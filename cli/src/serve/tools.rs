//! OpenAI's function calling. Where the call is forced (`tool_choice` `"required"` or a named
//! function), the answer is generated under a grammar of the call (structured output, as vLLM
//! does for these two) and returned as `tool_calls`. With `"auto"` (the default with `tools`)
//! the model writes calls in its own syntax, which a [`ToolParser`] reads back (the server's
//! `--tool-call-parser`). `"none"` ignores the tools. The tools are given to the chat
//! template unless `"none"`.

use dlp_engine::structured::OutputFormat;
use dlp_engine::tokenizer::chat::{python_json, reads_tool_calls};
use dlp_engine::tokenizer::{ChatMessage, TextTokenizer};
use serde_json::{json, Value};

use super::api::{Job, PromptInput};
use super::error::ApiError;
use super::json_text;
use super::schema_refs;
use super::tool_parser::ToolParser;

/// How the answer becomes tool calls.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolMode {
    /// The answer is this function's arguments (a JSON object).
    Named(String),
    /// The answer is a list of `{"name", "parameters"}` (vLLM's shape for `"required"`).
    Required,
    /// The model may call these tools in its own syntax, read by `parser` (set from the
    /// server's `--tool-call-parser` once the request reaches it); with `parallel` false, at
    /// most the first call is returned.
    Auto {
        tools: Vec<String>,
        parser: Option<ToolParser>,
        parallel: bool,
    },
}

/// Reads `tools`, `tool_choice` and `parallel_tool_calls`: the mode and, for a forced call,
/// the grammar of the answer; None without tools or with `"none"`.
pub(super) fn tool_call(
    tools: Option<Value>,
    choice: Option<Value>,
    parallel: Option<bool>,
) -> Result<Option<(ToolMode, Option<super::format::Format>)>, ApiError> {
    let tools = functions(tools.filter(|v| !v.is_null()))?;
    let choice = choice.filter(|v| !v.is_null());
    if tools.is_empty() {
        // Nothing to call: `"auto"` and `"none"` mean the same then.
        return match choice {
            None => Ok(None),
            Some(c) if c == "auto" || c == "none" => Ok(None),
            Some(_) => Err(ApiError::bad_param(
                "tool_choice",
                "`tool_choice` needs `tools`",
            )),
        };
    }
    let auto = || {
        Ok(Some((
            ToolMode::Auto {
                tools: tools.iter().map(|(n, _)| n.clone()).collect(),
                parser: None,
                parallel: parallel != Some(false),
            },
            None,
        )))
    };
    match choice {
        None => auto(),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => auto(),
            "none" => Ok(None),
            "required" => {
                let list = required_list(tools, parallel)?;
                Ok(Some((
                    ToolMode::Required,
                    Some((OutputFormat::JsonSchema(list), "tools".into())),
                )))
            }
            other => Err(ApiError::bad_param(
                "tool_choice",
                format!(
                    "`tool_choice` is `{other}`; expected `auto`, `none`, `required` or a function"
                ),
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
            let Some((i, (_, params))) = tools.iter().enumerate().find(|(_, (n, _))| n == name)
            else {
                return Err(ApiError::bad_param(
                    "tool_choice.function.name",
                    format!("`tool_choice` names `{name}`, which is not among `tools`"),
                ));
            };
            Ok(Some((
                ToolMode::Named(name.to_string()),
                // The one schema compiled: a compile error names it.
                Some((
                    OutputFormat::JsonSchema(params.clone()),
                    format!("tools[{i}].function.parameters").into(),
                )),
            )))
        }
    }
}

/// `allowed_tools`: keeps the tools (chat's form) that `names` name, or gives the index of a
/// name that is no tool's (the tools then as they were).
pub(super) fn keep_named(tools: &mut Vec<Value>, names: &[&Value]) -> Result<(), usize> {
    let offered = |n: &Value| n.is_string() && tools.iter().any(|t| &t["function"]["name"] == n);
    if let Some(i) = names.iter().position(|n| !offered(n)) {
        return Err(i);
    }
    tools.retain(|t| names.contains(&&t["function"]["name"]));
    Ok(())
}

/// `tools`: `[{"type": "function", "function": {"name", "description"?, "parameters"?,
/// "strict"?}}]` into `(name, parameters schema)`; names as OpenAI allows them, each once.
pub(super) fn functions(tools: Option<Value>) -> Result<Vec<(String, Value)>, ApiError> {
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
        let bad_field =
            |field: &str, what: String| ApiError::bad_param(format!("{at}.function.{field}"), what);
        let f = match (t.get("type").and_then(Value::as_str), t.get("function")) {
            (Some("function"), Some(f)) if f.is_object() => f,
            _ => return Err(bad(format!("`{at}` must be {{\"type\": \"function\", \"function\": {{\"name\", \"parameters\"}}}}, found {t}"))),
        };
        // A misspelt field (`paramters`) would otherwise leave the call unchecked; null ones
        // are absent (the SDK's dumps), as OpenAI takes them.
        let unknown = super::body::unknown_field;
        // `cache_control`: a caching hint some clients add (accepted, as on text parts).
        if let Some(k) = unknown(&t, &["type", "function", "cache_control"]) {
            return Err(ApiError::bad_param(
                format!("{at}.{k}"),
                format!(
                    "`{at}` has an unknown field `{k}`{} (expected `type` and `function`)",
                    super::body::did_you_mean(k, &["type", "function"])
                ),
            ));
        }
        let fields = ["name", "description", "parameters", "strict"];
        if let Some(k) = unknown(f, &fields) {
            let near = super::body::did_you_mean(k, &fields);
            let expected = fields.map(|f| format!("`{f}`")).join(", ");
            return Err(bad_field(
                k,
                format!("`{at}.function` has an unknown field `{k}`{near} (expected {expected})"),
            ));
        }
        let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
        if !openai_name(name) {
            let found = f.get("name").map_or("nothing".into(), Value::to_string);
            return Err(bad_field(
                "name",
                format!(
                "`{at}.function.name` must be 1 to 64 letters, digits, `_` or `-`, found {found}"
            ),
            ));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(bad(format!("the function `{name}` is given twice")));
        }
        let mut params = match f.get("parameters") {
            None | Some(Value::Null) => json!({}),
            Some(p) if p.is_object() => p.clone(),
            Some(p) => {
                return Err(bad_field(
                    "parameters",
                    format!(
                        "`{at}.function.parameters` must be a JSON schema (an object), found {p}"
                    ),
                ))
            }
        };
        // Arguments are an object; with no properties declared, an empty one (an open schema
        // let the model invent keys, and `{}` admitted any JSON value).
        let o = params.as_object_mut().expect("checked above");
        match o.entry("type").or_insert(json!("object")) {
            t if *t == "object" => {}
            t => {
                return Err(bad_field(
                    "parameters",
                    format!("`{at}.function.parameters` must describe an object (the call's named arguments), found `type` {t}"),
                ))
            }
        }
        if o.get("properties")
            .and_then(Value::as_object)
            .is_none_or(|p| p.is_empty())
            && !o.contains_key("additionalProperties")
        {
            o.insert("properties".into(), json!({}));
            o.insert("additionalProperties".into(), json!(false));
        }
        for (field, ok, what) in [
            (
                "description",
                Value::is_string as fn(&Value) -> bool,
                "a string",
            ),
            ("strict", Value::is_boolean, "true or false"),
        ] {
            if let Some(v) = f.get(field).filter(|v| !v.is_null() && !ok(v)) {
                return Err(bad_field(
                    field,
                    format!("`{at}.function.{field}` must be {what}, found {v}"),
                ));
            }
        }
        if f.get("strict").is_some_and(|s| s == true) {
            super::format::close_objects(&mut params);
        }
        out.push((name.to_string(), params));
    }
    Ok(out)
}

/// Readies a request's tool calls for this server: an `"auto"` request takes the server's
/// parser (a 400 when it has none), and for a chat template that never reads `tool_calls`
/// (which the engine refuses to drop) the calls sent back are written as text
/// ([`calls_as_text`]).
pub fn prepare(
    job: &mut Job,
    tok: &TextTokenizer,
    server_parser: Option<ToolParser>,
) -> Result<(), ApiError> {
    job.call_ids = server_parser;
    if let Some(ToolMode::Auto { parser, .. }) = &mut job.tool_mode {
        // Its calls start with a control token, which the text must show to be read.
        job.show_special |= server_parser.is_some_and(ToolParser::needs_special_tokens);
        *parser = Some(server_parser.ok_or_else(|| {
            ApiError::bad_param(
                "tool_choice",
                "`tool_choice: \"auto\"` (the default with `tools`) needs a parser of the model's own tool-call syntax, and this model's chat template shows none: start the server with --tool-call-parser hermes, llama3_json, mistral or pythonic (whichever the model was trained on), or send `tool_choice: \"required\"` or `{\"type\": \"function\", \"function\": {\"name\": ...}}`, and the answer is generated as the call",
            )
        })?);
    }
    for p in &mut job.prompts {
        if let PromptInput::Chat(chat) = p {
            calls_as_text(
                tok,
                chat.tools.is_some(),
                &mut chat.messages,
                job.tool_mode.as_ref(),
                server_parser,
            );
        }
    }
    Ok(())
}

/// For a chat template that never reads `tool_calls`: each assistant turn carrying calls is
/// written as the text the model wrote for them, after the turn's own text, so a conversation
/// that sends calls back (an agent loop, instructor's retry) renders as what was generated:
/// a named call forced by this request as its arguments; else in the syntax of the server's
/// parser; else as the `[{"name", "parameters"}]` list `"required"` generates.
pub(super) fn calls_as_text(
    tok: &TextTokenizer,
    tools: bool,
    messages: &mut [ChatMessage],
    mode: Option<&ToolMode>,
    server_parser: Option<ToolParser>,
) {
    if !tok.chat_template_for(tools).is_some_and(reads_tool_calls) {
        write_calls(messages, mode, server_parser);
    }
}

/// [`calls_as_text`]'s rewriting.
fn write_calls(messages: &mut [ChatMessage], mode: Option<&ToolMode>, parser: Option<ToolParser>) {
    for m in messages.iter_mut() {
        let Some(Value::Array(calls)) = m.fields().get("tool_calls") else {
            continue;
        };
        let pairs: Vec<(String, Value)> = calls
            .iter()
            .map(|c| {
                // Checked with the request: a name, and arguments parsed into an object.
                let f = &c["function"];
                (
                    f["name"].as_str().unwrap_or("").to_string(),
                    f["arguments"].clone(),
                )
            })
            .collect();
        let calls = match (mode, parser, pairs.as_slice()) {
            // As the grammar wrote them: JSON with `, ` and `: `.
            (Some(ToolMode::Named(n)), _, [(name, args)]) if name == n => python_json(args),
            (_, Some(parser), _) => parser.write(&pairs),
            _ => python_json(&json!(pairs
                .iter()
                .map(|(name, args)| json!({"name": name, "parameters": args}))
                .collect::<Vec<_>>())),
        };
        let text = match m.text() {
            t if t.is_empty() => calls,
            t => format!("{t}\n{calls}"),
        };
        let mut o: serde_json::Map<String, Value> = m.clone().into();
        o.remove("tool_calls");
        o.insert("content".into(), json!(text));
        *m = ChatMessage::try_from(o).expect("the role was checked with the request");
    }
}

/// The grammar of `tool_choice: "required"`: a list of `{"name", "parameters"}` calls, one
/// of `tools` each (at most one with `parallel_tool_calls: false`).
///
/// `#/$defs/...` resolves from the root, which is now the list: each tool's definitions move
/// there (pydantic's nested models), as vLLM moves them. Its other references into itself
/// (`#`, `#/properties/...`) follow it to `#/items/anyOf/<i>/properties/parameters`. A tool
/// with an `$id` is a resource of its own, where its references already resolve: it stays
/// as it is.
fn required_list(tools: Vec<(String, Value)>, parallel: Option<bool>) -> Result<Value, ApiError> {
    let mut defs = serde_json::Map::new();
    let mut calls = Vec::with_capacity(tools.len());
    for (i, (name, mut params)) in tools.into_iter().enumerate() {
        let base = format!("#/items/anyOf/{i}/properties/parameters");
        if params.get("$id").is_none() {
            if params.get("definitions").is_some() {
                // Its references, in `$defs` entries too, now point at `$defs`.
                schema_refs::rename_definitions(&mut params);
            }
            for key in ["$defs", "definitions"] {
                let Some(Value::Object(d)) = params.as_object_mut().and_then(|o| o.remove(key))
                else {
                    continue;
                };
                for (k, mut v) in d {
                    schema_refs::rebase(&mut v, &base);
                    if defs.get(&k).is_some_and(|old| *old != v) {
                        return Err(ApiError::bad_param(
                            "tools",
                            format!("two tools define `{k}` differently (or its references into their own tool differ); with `tool_choice: \"required\"` their definitions share one namespace"),
                        ));
                    }
                    defs.insert(k, v);
                }
            }
            schema_refs::rebase(&mut params, &base);
        }
        calls.push(json!({"type": "object", "additionalProperties": false,
               "properties": {"name": {"const": name}, "parameters": params},
               "required": ["name", "parameters"]}));
    }
    let mut list = json!({"type": "array", "minItems": 1, "items": {"anyOf": calls}});
    if !defs.is_empty() {
        list["$defs"] = Value::Object(defs);
    }
    if parallel == Some(false) {
        list["maxItems"] = json!(1);
    }
    Ok(list)
}

/// OpenAI's rule for the name of a function or a JSON schema: 1 to 64 letters, digits, `_`
/// or `-`.
pub(super) fn openai_name(name: &str) -> bool {
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    (1..=64).contains(&name.len()) && name.chars().all(valid)
}

/// The answer as OpenAI's `tool_calls` and the text beside them (only `"auto"` has any), or
/// None when it holds no whole call (a named call cut short, a `"required"` list cut inside
/// its first call, with `"auto"` no call or a call of a function not offered: it is then
/// returned as text). Calls written whole before a cut are read. Call ids are
/// in the style of `ids`, the server's parser (OpenAI's `call_...` without one).
pub fn calls(
    mode: &ToolMode,
    text: &str,
    ids: Option<ToolParser>,
) -> Option<(Option<String>, Vec<Value>)> {
    let parser = match mode {
        ToolMode::Auto { parser, .. } => *parser,
        _ => None,
    };
    let call = |name: &str, arguments: String| {
        let id = parser.or(ids).unwrap_or(ToolParser::Hermes).call_id();
        json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
    };
    match mode {
        // A forced call's arguments are the model's text, compacted (numbers keep their
        // digits); its grammar made them the function's JSON. A key written twice (which the
        // grammar cannot forbid) stays as written, for the client's parser to see.
        ToolMode::Named(name) => {
            let args: Value = serde_json::from_str(text).ok()?;
            args.is_object()
                .then(|| (None, vec![call(name, json_text::compact(text))]))
        }
        ToolMode::Required => {
            // Cut by `max_tokens` or a stop string (a small model may repeat its call until
            // the limit), the calls written whole before the cut, as with `"auto"`.
            let list = json_text::items(text).unwrap_or_else(|| whole_items(text));
            if list.is_empty() {
                return None;
            }
            let calls = list
                .iter()
                .map(|&c| {
                    let m = json_text::members(c)?;
                    let name: String = serde_json::from_str(m.get("name")?.get()).ok()?;
                    Some(call(&name, json_text::compact(m.get("parameters")?.get())))
                })
                .collect::<Option<_>>()?;
            Some((None, calls))
        }
        ToolMode::Auto {
            tools,
            parser,
            parallel,
        } => {
            let parsed = parser.expect("set by prepare").parse(text)?;
            let keep = if *parallel { parsed.calls.len() } else { 1 };
            let kept = &parsed.calls[..keep];
            if !kept.iter().all(|c| tools.contains(&c.name)) {
                return None;
            }
            let calls = (kept.iter())
                .map(|c| call(&c.name, c.arguments.clone()))
                .collect();
            Some((parsed.content, calls))
        }
    }
}

/// The text of each whole item at the start of a JSON list cut short (`[{...}, {...}, {"na`);
/// an item with a key twice ends them, as in the parsers' calls.
fn whole_items(text: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let Some(mut rest) = text.trim_start().strip_prefix('[') else {
        return items;
    };
    while let Some((_, raw, after)) = super::tool_parser::json_value(rest) {
        items.push(raw);
        match after.trim_start().strip_prefix(',') {
            Some(r) => rest = r,
            None => break,
        }
    }
    items
}

#[cfg(test)]
mod tests;
