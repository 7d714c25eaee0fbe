//! Chat answers as Responses API objects: the whole response ([`ResponseInfo::response`]) and
//! the typed events of a stream ([`ResponsesStream`]), made from the chat pipeline's bodies
//! and chunks (so both APIs answer alike). Field names and event order follow OpenAI's API
//! reference and its Python SDK's types.

use std::sync::LazyLock;

use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::response::StreamState;
use super::worker::Event;

/// What a response repeats of its request, and where each chat message came from.
pub struct ResponseInfo {
    id: String,
    created_at: u64,
    /// The request's fields a response object repeats, with OpenAI's defaults.
    echoed: Map<String, Value>,
    /// The request field each chat message came from (`instructions`, `input[2]`), for errors.
    pub(super) sources: Vec<super::responses::Source>,
}

/// A random id with OpenAI's prefix for its kind (`resp`, `msg`, `fc`).
fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}_{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

/// Chat usage in this API's names.
fn usage(u: &Value) -> Value {
    json!({"input_tokens": u["prompt_tokens"],
           "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
           "output_tokens": u["completion_tokens"],
           "output_tokens_details": {"reasoning_tokens": 0},
           "total_tokens": u["total_tokens"]})
}

/// A function call item from a chat tool call.
fn call_item(call: &Value, status: &str) -> Value {
    json!({"type": "function_call", "id": new_id("fc"), "call_id": call["id"],
           "name": call["function"]["name"], "arguments": call["function"]["arguments"],
           "status": status})
}

/// An output text part: the text, and its tokens' logprobs when asked.
fn text_part(text: &str, logprobs: &[Value]) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs})
}

impl ResponseInfo {
    /// The response-level fields of request `b`.
    pub(super) fn new(b: &Map<String, Value>) -> Self {
        let get = |k: &str, default: Value| {
            b.get(k)
                .cloned()
                .filter(|v| !v.is_null())
                .unwrap_or(default)
        };
        let mut echoed = Map::new();
        for (k, default) in [
            ("model", Value::Null),
            ("instructions", Value::Null),
            ("max_output_tokens", Value::Null),
            ("temperature", json!(1.0)),
            ("top_p", json!(1.0)),
            ("tools", json!([])),
            ("tool_choice", json!("auto")),
            ("parallel_tool_calls", json!(true)),
            ("text", json!({"format": {"type": "text"}})),
            ("metadata", json!({})),
            ("user", Value::Null),
            ("top_logprobs", json!(0)),
            ("service_tier", json!("default")),
        ] {
            echoed.insert(k.into(), get(k, default));
        }
        // Function tools as they ran: strict only where they said so. OpenAI's default here
        // is strict where the schema allows; the echo shows the difference.
        for t in (echoed.get_mut("tools").and_then(Value::as_array_mut))
            .into_iter()
            .flatten()
        {
            if let Some(o) = t.as_object_mut() {
                if o.get("strict").is_none_or(Value::is_null) {
                    o.insert("strict".into(), json!(false));
                }
            }
        }
        // Nothing is kept, whatever `store` asked.
        echoed.insert("store".into(), json!(false));
        echoed.insert("truncation".into(), json!("disabled"));
        echoed.insert("previous_response_id".into(), Value::Null);
        echoed.insert("reasoning".into(), Value::Null);
        ResponseInfo {
            id: new_id("resp"),
            created_at: super::http::unix_now(),
            echoed,
            sources: Vec::new(),
        }
    }

    /// A chat error in this API's terms: `max_tokens` is `max_output_tokens`, a message is
    /// the field it came from (`input[2]`, `instructions`), `response_format` is `text.format`.
    pub(super) fn rename(&self, mut e: ApiError) -> ApiError {
        let Some(p) = e.param.take() else {
            return e;
        };
        let mut renamed = match p.as_str() {
            "max_tokens" => "max_output_tokens".to_string(),
            // Chat nests the schema's fields under `json_schema`; this API does not.
            p if p.starts_with("response_format") => p
                .replacen("response_format.json_schema", "text.format", 1)
                .replacen("response_format", "text.format", 1),
            "messages" => "input".to_string(),
            "tool_choice.function.name" => "tool_choice.name".to_string(),
            _ => p.clone(),
        };
        if let Some(rest) = p.strip_prefix("messages[") {
            let (k, rest) = rest.split_once(']').unwrap_or((rest, ""));
            if let Some(src) = k.parse::<usize>().ok().and_then(|k| self.sources.get(k)) {
                // A call of a merged assistant turn came from an item of its own.
                let call = (rest.strip_prefix(".tool_calls["))
                    .and_then(|r| r.split(']').next()?.parse::<usize>().ok())
                    .and_then(|j| src.calls.get(j));
                let at = call.unwrap_or(&src.at);
                let as_chat = format!("`{at}` (`{p}` as a chat message)");
                e.message = e.message.replace(&format!("`{p}`"), &as_chat);
                renamed = at.clone();
            }
        } else if let Some(rest) = p.strip_prefix("tools[") {
            // Chat nests a tool's fields under `function`.
            renamed = format!("tools[{}", rest.replacen("].function", "]", 1));
        }
        static NESTED_TOOL: LazyLock<regex::Regex> = LazyLock::new(|| {
            regex::Regex::new(r"`tools\[(\d+)\]\.function").expect("a valid pattern")
        });
        let message = NESTED_TOOL.replace_all(&e.message, "`tools[$1]");
        e.message = (message.replace("`max_tokens`", "`max_output_tokens`"))
            .replace("`json_schema.schema`", "`text.format.schema`")
            .replace("`response_format.json_schema", "`text.format")
            .replace("`response_format", "`text.format")
            // Chat's shape of a named tool choice, in this API's.
            .replace(
                r#"{"type": "function", "function": {"name": ...}}"#,
                r#"{"type": "function", "name": ...}"#,
            );
        e.param = Some(renamed);
        e
    }

    /// The response object with `status` and no output yet.
    fn skeleton(&self, status: &str) -> Value {
        let mut v = json!({"id": self.id, "object": "response", "created_at": self.created_at,
                           "status": status, "error": null, "incomplete_details": null,
                           "output": [], "usage": null});
        for (k, x) in &self.echoed {
            v[k] = x.clone();
        }
        v
    }

    /// The finished response: its output items, why it ended (chat's `finish_reason`), its
    /// chat usage and `dlp` object.
    fn finished(&self, output: Vec<Value>, finish: &str, chat_usage: &Value, dlp: &Value) -> Value {
        let cut = finish == "length";
        let mut v = self.skeleton(if cut { "incomplete" } else { "completed" });
        if cut {
            v["incomplete_details"] = json!({"reason": "max_output_tokens"});
        }
        v["output"] = Value::Array(output);
        v["usage"] = usage(chat_usage);
        v["completed_at"] = json!(super::http::unix_now());
        v["dlp"] = dlp.clone();
        v
    }

    /// The response for a whole chat body: a message with the answer's text (when it has text,
    /// or no calls), then one function call item per tool call.
    pub fn response(&self, chat: &Value) -> Value {
        let c = &chat["choices"][0];
        let m = &c["message"];
        let finish = c["finish_reason"].as_str().unwrap_or("stop");
        let status = if finish == "length" {
            "incomplete"
        } else {
            "completed"
        };
        let calls = m["tool_calls"].as_array().cloned().unwrap_or_default();
        let mut output = Vec::new();
        let text = m["content"].as_str();
        if text.is_some_and(|t| !t.is_empty()) || calls.is_empty() {
            let lps = c["logprobs"]["content"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            output.push(
                json!({"type": "message", "id": new_id("msg"), "status": status,
                               "role": "assistant",
                               "content": [text_part(text.unwrap_or(""), &lps)]}),
            );
        }
        output.extend(calls.iter().map(|call| call_item(call, "completed")));
        self.finished(output, finish, &chat["usage"], &chat["dlp"])
    }
}

/// A message item being streamed.
struct OpenMessage {
    id: String,
    index: usize,
    text: String,
    logprobs: Vec<Value>,
}

/// Turns a chat stream's chunks into the Responses API's events: `response.created`, then
/// per output item `output_item.added`, its deltas and `.done`s, then `response.completed` (or
/// `response.incomplete` when `max_output_tokens` cut it), each with a `sequence_number`.
pub struct ResponsesStream {
    info: ResponseInfo,
    chat: StreamState,
    seq: u64,
    started: bool,
    message: Option<OpenMessage>,
    output: Vec<Value>,
    finish: String,
    dlp: Value,
}

impl ResponsesStream {
    /// A stream of `chat`'s answer (its request asked for usage at the end).
    pub fn new(info: ResponseInfo, chat: StreamState) -> Self {
        ResponsesStream {
            info,
            chat,
            seq: 0,
            started: false,
            message: None,
            output: Vec::new(),
            finish: "stop".into(),
            dlp: Value::Null,
        }
    }

    fn event(&mut self, out: &mut Vec<Value>, kind: &str, mut fields: Value) {
        fields["type"] = json!(kind);
        fields["sequence_number"] = json!(self.seq);
        self.seq += 1;
        out.push(fields);
    }

    /// The events one engine event makes.
    pub fn events(&mut self, ev: Event) -> Vec<Value> {
        let mut out = Vec::new();
        if !std::mem::replace(&mut self.started, true) {
            let r = self.info.skeleton("in_progress");
            self.event(&mut out, "response.created", json!({"response": r}));
            self.event(&mut out, "response.in_progress", json!({"response": r}));
        }
        for chunk in self.chat.chunks(ev) {
            self.chunk(chunk, &mut out);
        }
        out
    }

    fn chunk(&mut self, chunk: Value, out: &mut Vec<Value>) {
        if let Some(e) = chunk.get("error") {
            // An error met mid-answer (a format's limit) names chat's field: this API's here too.
            let message = e["message"].as_str().unwrap_or_default();
            let e = match e["param"].as_str() {
                Some(p) => {
                    let r = self.info.rename(ApiError::bad(message).param(p));
                    json!({"code": e["code"], "message": r.message, "param": r.param})
                }
                None => e.clone(),
            };
            // The request's own fault (a format at its limit, masks that allow nothing: a 400
            // unstreamed) is not the server's.
            let client = chunk["error"]["type"] == "invalid_request_error";
            let fields = json!({"code": e["code"], "message": e["message"], "param": e["param"]});
            self.event(out, "error", fields);
            // The stream ends here: its final event, with what was made (OpenAI's error codes
            // are a fixed list, `invalid_prompt` its one for a request's fault; ours stays in
            // the message).
            let mut r = self.info.skeleton("failed");
            let mut output = self.output.clone();
            // The message being written when it failed, as far as it went (it was left out:
            // `output` was empty after 250 text deltas).
            if let Some(m) = &self.message {
                output.push(
                    json!({"type": "message", "id": m.id, "status": "incomplete",
                    "role": "assistant", "content": [text_part(&m.text, &m.logprobs)]}),
                );
            }
            r["output"] = json!(output);
            let code = e["code"].as_str().unwrap_or("server_error");
            let kind = if client {
                "invalid_prompt"
            } else {
                "server_error"
            };
            r["error"] = json!({"code": kind,
                                "message": format!("{} ({code})", e["message"].as_str().unwrap_or(""))});
            return self.event(out, "response.failed", json!({"response": r}));
        }
        if let Some(d) = chunk.get("dlp") {
            self.dlp = d.clone();
        }
        let c = &chunk["choices"][0];
        if c.is_object() {
            let delta = &c["delta"];
            if let Some(t) = delta["content"].as_str().filter(|t| !t.is_empty()) {
                let lps = c["logprobs"]["content"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                self.text(t, lps, out);
            }
            if let Some(calls) = delta["tool_calls"].as_array() {
                self.close_message(out);
                for call in calls {
                    self.call(call, out);
                }
            }
            if let Some(f) = c["finish_reason"].as_str() {
                self.finish = f.to_string();
            }
        } else if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            // The usage chunk ends a chat stream: the answer is whole.
            if self.output.is_empty() && self.message.is_none() {
                self.open_message(out);
            }
            self.close_message(out);
            let output = std::mem::take(&mut self.output);
            let r = self.info.finished(output, &self.finish, u, &self.dlp);
            let kind = match r["status"].as_str() {
                Some("incomplete") => "response.incomplete",
                _ => "response.completed",
            };
            self.event(out, kind, json!({"response": r}));
        }
    }

    fn open_message(&mut self, out: &mut Vec<Value>) {
        let m = OpenMessage {
            id: new_id("msg"),
            index: self.output.len(),
            text: String::new(),
            logprobs: Vec::new(),
        };
        let item = json!({"type": "message", "id": m.id, "status": "in_progress",
                          "role": "assistant", "content": []});
        let (id, index) = (m.id.clone(), m.index);
        self.message = Some(m);
        self.event(
            out,
            "response.output_item.added",
            json!({"output_index": index, "item": item}),
        );
        self.event(
            out,
            "response.content_part.added",
            json!({"item_id": id, "output_index": index, "content_index": 0,
                   "part": text_part("", &[])}),
        );
    }

    fn text(&mut self, t: &str, logprobs: Vec<Value>, out: &mut Vec<Value>) {
        if self.message.is_none() {
            self.open_message(out);
        }
        let m = self.message.as_mut().expect("opened above");
        m.text.push_str(t);
        m.logprobs.extend(logprobs.iter().cloned());
        let fields = json!({"item_id": m.id, "output_index": m.index, "content_index": 0,
                            "delta": t, "logprobs": logprobs});
        self.event(out, "response.output_text.delta", fields);
    }

    fn close_message(&mut self, out: &mut Vec<Value>) {
        let Some(m) = self.message.take() else {
            return;
        };
        let part = text_part(&m.text, &m.logprobs);
        let at = json!({"item_id": m.id, "output_index": m.index, "content_index": 0});
        let mut done = at.clone();
        done["text"] = json!(m.text);
        done["logprobs"] = json!(m.logprobs);
        self.event(out, "response.output_text.done", done);
        let mut part_done = at;
        part_done["part"] = part.clone();
        self.event(out, "response.content_part.done", part_done);
        let status = if self.finish == "length" {
            "incomplete"
        } else {
            "completed"
        };
        let item = json!({"type": "message", "id": m.id, "status": status,
                          "role": "assistant", "content": [part]});
        self.event(
            out,
            "response.output_item.done",
            json!({"output_index": m.index, "item": item.clone()}),
        );
        self.output.push(item);
    }

    fn call(&mut self, call: &Value, out: &mut Vec<Value>) {
        let index = self.output.len();
        let done = call_item(call, "completed");
        let mut added = done.clone();
        added["arguments"] = json!("");
        added["status"] = json!("in_progress");
        let id = done["id"].clone();
        self.event(
            out,
            "response.output_item.added",
            json!({"output_index": index, "item": added}),
        );
        let args = done["arguments"].clone();
        self.event(
            out,
            "response.function_call_arguments.delta",
            json!({"item_id": id, "output_index": index, "delta": args}),
        );
        self.event(
            out,
            "response.function_call_arguments.done",
            json!({"item_id": id, "output_index": index, "arguments": args, "name": done["name"]}),
        );
        self.event(
            out,
            "response.output_item.done",
            json!({"output_index": index, "item": done.clone()}),
        );
        self.output.push(done);
    }
}
