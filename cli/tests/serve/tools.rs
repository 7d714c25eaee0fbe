//! `tool_choice: "auto"`: SmolLM2 behind a Hermes-style chat template (cli/tests/data/
//! hermes-tools.jinja, written after Qwen2.5's: tools in the system turn, calls as
//! `<tool_call>` blocks), so the server's parser is hermes. Greedy SmolLM2 copies the call
//! format of two earlier turns, which makes a real call to parse; without them it answers in
//! text, which must come back whole.

use serde_json::{json, Value};

use super::harness::{assets, merged, streamed_text, Server};

pub(crate) fn tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}])
}

/// An assistant turn calling get_weather for `city`, with `content` beside the call.
fn call_turn(city: &str, i: usize, content: Value) -> Value {
    json!({"role": "assistant", "content": content, "tool_calls": [{"id": format!("call_{i}"),
        "type": "function", "function": {"name": "get_weather",
        "arguments": json!({"city": city}).to_string()}}]})
}

/// Two earlier questions answered by calls (each with `content`), then a third question.
pub(crate) fn two_shot(content: Value) -> Value {
    json!([{"role": "user", "content": "Weather in Paris?"},
           call_turn("Paris", 1, content.clone()),
           {"role": "user", "content": "Weather in Rome?"},
           call_turn("Rome", 2, content),
           {"role": "user", "content": "Weather in Berlin?"}])
}

/// SmolLM2 served as `base` without adapters, with `extra` flags; None without the fixtures.
pub(crate) fn server(extra: &[&str]) -> Option<Server> {
    let a = assets()?;
    let mut args = vec!["--model".to_string(), a.gguf.display().to_string()];
    args.extend(["--backend", "cpu", "--served-model-name", "base"].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    Some(Server::start(&args))
}

fn body(messages: Value, extra: Value) -> Value {
    merged(
        json!({"model": "base", "temperature": 0, "max_tokens": 60,
                       "tools": tools(), "messages": messages}),
        extra,
    )
}

/// A stream's tool calls, merged as the SDK's accumulator merges them (by `index`).
fn streamed_calls(events: &[Value]) -> Vec<Value> {
    let mut calls: Vec<Value> = Vec::new();
    for e in events {
        for c in e["choices"].as_array().into_iter().flatten() {
            for d in c["delta"]["tool_calls"].as_array().into_iter().flatten() {
                let k = d["index"].as_u64().unwrap() as usize;
                if calls.len() <= k {
                    calls.resize(k + 1, json!({}));
                }
                calls[k] = d.clone();
            }
        }
    }
    calls
}

fn finish_of(events: &[Value]) -> Value {
    events
        .iter()
        .filter_map(|e| e["choices"][0].get("finish_reason"))
        .find(|f| !f.is_null())
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn auto_tool_choice_parses_the_models_calls() {
    let Some((s, call)) = served_call("hermes-tools.jinja", "hermes") else {
        return;
    };
    assert!(call["id"].as_str().unwrap().starts_with("call_"));

    // Text before the call is the message's content; streamed, it goes out as it comes
    // (before the call), and the held `<tool_call>` text never does.
    let shot = two_shot(json!("Let me check."));
    let r = s.ok("/v1/chat/completions", &body(shot.clone(), json!({})));
    let m = &r["choices"][0]["message"];
    assert_eq!(m["content"], "Let me check.\n", "{r}");
    assert_eq!(m["tool_calls"][0]["function"], call["function"], "{r}");
    let ev = s.stream("/v1/chat/completions", &body(shot, json!({"stream": true})));
    assert_eq!(streamed_text(&ev, 0), "Let me check.\n");
    let first_call = ev
        .iter()
        .position(|e| !e["choices"][0]["delta"]["tool_calls"].is_null())
        .unwrap();
    let text_chunks = ev[..first_call]
        .iter()
        .filter(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        })
        .count();
    assert!(text_chunks >= 2, "the text went out in one piece: {ev:?}");
    assert_eq!(streamed_calls(&ev)[0]["function"], call["function"]);

    // No earlier calls: SmolLM2 answers in text, which comes back whole, streamed or not.
    let ask = json!([{"role": "user", "content": "Weather in Berlin?"}]);
    let r = s.ok("/v1/chat/completions", &body(ask.clone(), json!({})));
    let c = &r["choices"][0];
    assert!(c["message"].get("tool_calls").is_none(), "{r}");
    assert_ne!(c["finish_reason"], "tool_calls");
    let text = c["message"]["content"].as_str().unwrap().to_string();
    assert!(!text.is_empty());
    let ev = s.stream("/v1/chat/completions", &body(ask, json!({"stream": true})));
    assert_eq!(streamed_text(&ev, 0), text);
    assert_eq!(finish_of(&ev), c["finish_reason"]);

    // The template is shown the tools (the prompt grows by them), except with "none"; a
    // call sent back reaches it with its arguments as an object, not as JSON text.
    let with = s.ok(
        "/v1/chat/completions",
        &body(two_shot(Value::Null), json!({})),
    );
    let none = s.ok(
        "/v1/chat/completions",
        &body(
            two_shot(Value::Null),
            json!({"tool_choice": "none", "max_tokens": 1}),
        ),
    );
    let (pw, pn) = (
        &with["usage"]["prompt_tokens"],
        &none["usage"]["prompt_tokens"],
    );
    assert!(pw.as_u64() > pn.as_u64(), "{pw} vs {pn}");
    let ids = s.ok(
        "/tokenize",
        &json!({"messages": two_shot(Value::Null), "tools": tools()}),
    );
    assert_eq!(ids["count"], *pw);
    let text = s.ok("/detokenize", &json!({"tokens": ids["tokens"]}));
    let text = text["prompt"].as_str().unwrap();
    assert!(text.contains("<tools>\n{\"type\": \"function\""), "{text}");
    assert!(
        text.contains("{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}"),
        "{text}"
    );

    // A call of a function not offered stays text.
    let mut other = tools();
    other[0]["function"]["name"] = json!("get_time");
    let mut b = body(two_shot(Value::Null), json!({}));
    b["tools"] = json!([other[0].clone(), tools()[0].clone()]);
    b["tools"][1]["function"]["name"] = json!("weather_now");
    let r = s.ok("/v1/chat/completions", &b);
    assert!(
        r["choices"][0]["message"].get("tool_calls").is_none(),
        "{r}"
    );
    assert!(
        r["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("<tool_call>"),
        "{r}"
    );
}

/// On a template that never reads `tool_calls` (SmolLM2's) and no parser, calls sent back are
/// written as the `[{"name", "parameters"}]` list this server generates for `"required"`, so a
/// final turn with `tool_choice: "none"` (an agent loop's answer) is served, and /tokenize
/// counts the same prompt.
#[test]
fn calls_sent_back_render_as_text_without_a_template_for_them() {
    let Some(s) = server(&[]) else { return };
    assert!(s.log_has("forced calls only"), "{}", s.log());
    let r = s.ok(
        "/v1/chat/completions",
        &body(
            two_shot(Value::Null),
            json!({"tool_choice": "none", "max_tokens": 4}),
        ),
    );
    let ids = s.ok("/tokenize", &json!({"messages": two_shot(Value::Null)}));
    assert_eq!(ids["count"], r["usage"]["prompt_tokens"]);
    let text = s.ok("/detokenize", &json!({"tokens": ids["tokens"]}));
    let text = text["prompt"].as_str().unwrap();
    assert!(
        text.contains(r#"[{"name": "get_weather", "parameters": {"city": "Rome"}}]"#),
        "{text}"
    );
}

/// `"required"` cut by `max_tokens` (a small model may repeat its call until the limit): the
/// calls written whole before the cut come back, with `finish_reason: "length"` (streamed the
/// same; in the Responses API, `incomplete`); cut inside the first call, and a named call cut
/// short, the answer is text.
#[test]
fn forced_calls_cut_short_keep_the_whole_ones() {
    let Some(s) = server(&[]) else { return };
    let ask = json!([{"role": "user", "content": "What is the weather in Paris?"}]);
    let mut strict = tools();
    strict[0]["function"]["strict"] = json!(true);
    let required = |max_tokens: u64| {
        body(
            ask.clone(),
            json!({"tool_choice": "required", "max_tokens": max_tokens, "tools": strict}),
        )
    };
    let whole = s.ok("/v1/chat/completions", &required(60));
    assert_eq!(
        whole["choices"][0]["finish_reason"], "tool_calls",
        "{whole}"
    );
    let calls = &whole["choices"][0]["message"]["tool_calls"];
    assert_eq!(calls.as_array().map(Vec::len), Some(1), "{whole}");
    let n = whole["usage"]["completion_tokens"].as_u64().unwrap();
    // Cut at each of the last few tokens: after the call's `}` the call is whole.
    let mut kept = 0;
    for k in n - 5..n {
        let r = s.ok("/v1/chat/completions", &required(k));
        assert_eq!(r["usage"]["completion_tokens"], k, "{r}");
        let choice = &r["choices"][0];
        assert_eq!(choice["finish_reason"], "length", "{r}");
        if choice["message"]["tool_calls"].is_null() {
            let text = choice["message"]["content"].as_str().unwrap();
            assert!(text.starts_with(r#"[{"name": "get_weather""#), "{r}");
            continue;
        }
        let got = &choice["message"]["tool_calls"][0]["function"];
        assert_eq!(got, &calls[0]["function"], "{r}");
        let events = s.stream(
            "/v1/chat/completions",
            &merged(required(k), json!({"stream": true})),
        );
        assert_eq!(streamed_calls(&events)[0]["function"], *got, "{events:?}");
        assert_eq!(finish_of(&events), "length");
        let f = &strict[0]["function"];
        let r = s.ok(
            "/v1/responses",
            &json!({"model": "base", "input": ask, "temperature": 0, "max_output_tokens": k,
                    "tool_choice": "required", "tools": [{"type": "function", "name": f["name"],
                    "parameters": f["parameters"], "strict": true}]}),
        );
        assert_eq!(r["status"], "incomplete", "{r}");
        assert_eq!(r["output"][0]["type"], "function_call", "{r}");
        kept += 1;
    }
    assert!(kept >= 1, "no cut kept the whole call");
    let named = json!({"type": "function", "function": {"name": "get_weather"}});
    // A named function's whole call ends with "stop", as OpenAI's and vLLM's (it said
    // "tool_calls", which is for "auto" and "required"), streamed too.
    let whole = body(ask.clone(), json!({"tool_choice": named, "max_tokens": 60}));
    let r = s.ok("/v1/chat/completions", &whole);
    assert_eq!(r["choices"][0]["finish_reason"], "stop", "{r}");
    assert!(
        r["choices"][0]["message"]["tool_calls"][0].is_object(),
        "{r}"
    );
    let events = s.stream(
        "/v1/chat/completions",
        &merged(whole, json!({"stream": true})),
    );
    assert_eq!(finish_of(&events), "stop");
    let r = s.ok(
        "/v1/chat/completions",
        &body(ask, json!({"tool_choice": named, "max_tokens": 3})),
    );
    let choice = &r["choices"][0];
    assert_eq!(choice["finish_reason"], "length", "{r}");
    assert!(choice["message"]["tool_calls"].is_null(), "{r}");
    assert!(
        choice["message"]["content"]
            .as_str()
            .unwrap()
            .starts_with('{'),
        "{r}"
    );
}

/// SmolLM2 behind `cli/tests/data/<template>` (its startup banner naming parser `parser`) asked
/// the two-shot question: its call of get_weather for Berlin comes back alone in `tool_calls`,
/// the same streamed (one delta, no text). Returns the server and the call.
fn served_call(template: &str, parser: &str) -> Option<(Server, Value)> {
    let template = format!("{}/tests/data/{template}", env!("CARGO_MANIFEST_DIR"));
    let s = server(&["--chat-template", &template])?;
    assert!(s.log_has(&format!("read as {parser}")), "{}", s.log());
    let r = s.ok(
        "/v1/chat/completions",
        &body(two_shot(Value::Null), json!({})),
    );
    let c = &r["choices"][0];
    assert_eq!(c["finish_reason"], "tool_calls", "{r}");
    assert_eq!(c["message"]["content"], Value::Null, "{r}");
    let call = c["message"]["tool_calls"][0].clone();
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Berlin"}), "{r}");
    let ev = s.stream(
        "/v1/chat/completions",
        &body(two_shot(Value::Null), json!({"stream": true})),
    );
    let calls = streamed_calls(&ev);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["function"], call["function"]);
    assert_eq!(streamed_text(&ev, 0), "");
    assert_eq!(finish_of(&ev), "tool_calls");
    Some((s, call))
}

/// A template that writes calls as Mistral does (`[TOOL_CALLS]` and a JSON list;
/// cli/tests/data/mistral-tools.jinja): the parser is mistral, the model's call comes back as
/// `tool_calls` with a 9-character id (Mistral's templates refuse others), streamed or not.
#[test]
fn mistral_calls_are_read() {
    let Some((_, call)) = served_call("mistral-tools.jinja", "mistral") else {
        return;
    };
    let id = call["id"].as_str().unwrap();
    assert!(
        id.len() == 9 && id.chars().all(|c| c.is_ascii_alphanumeric()),
        "{id}"
    );
}

/// A template that writes calls as a Python list (`[get_weather(city="Paris")]`, the format
/// line of the Llama 3.2 / Llama 4 pythonic templates; cli/tests/data/pythonic-tools.jinja):
/// the parser is pythonic, the model's call comes back as `tool_calls` with JSON arguments,
/// streamed or not; an answer in words stays content, streamed as it comes.
#[test]
fn pythonic_calls_are_read() {
    let Some((s, call)) = served_call("pythonic-tools.jinja", "pythonic") else {
        return;
    };
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    // The earlier calls reached the template as objects, which it writes as Python calls.
    let ids = s.ok(
        "/tokenize",
        &json!({"messages": two_shot(Value::Null), "tools": tools()}),
    );
    let text = s.ok("/detokenize", &json!({"tokens": ids["tokens"]}));
    let text = text["prompt"].as_str().unwrap();
    assert!(text.contains("[get_weather(city=\"Rome\")]"), "{text}");

    // Without earlier calls SmolLM2 answers in words: content, whole, streamed or not.
    let ask = json!([{"role": "user", "content": "Weather in Berlin?"}]);
    let r = s.ok("/v1/chat/completions", &body(ask.clone(), json!({})));
    let c = &r["choices"][0];
    assert!(c["message"].get("tool_calls").is_none(), "{r}");
    let text = c["message"]["content"].as_str().unwrap().to_string();
    assert!(
        !text.is_empty() && !text.trim_start().starts_with('['),
        "{r}"
    );
    let ev = s.stream("/v1/chat/completions", &body(ask, json!({"stream": true})));
    assert_eq!(streamed_text(&ev, 0), text);
    assert_eq!(finish_of(&ev), c["finish_reason"]);
}

/// A template that never reads `tool_calls` (SmolLM2's) with `--tool-call-parser pythonic`:
/// calls sent back are written in the model's own syntax, a Python list of calls.
#[test]
fn pythonic_calls_sent_back_without_a_template_for_them() {
    let Some(s) = server(&["--tool-call-parser", "pythonic"]) else {
        return;
    };
    assert!(s.log_has("read as pythonic"), "{}", s.log());
    let ids = s.ok("/tokenize", &json!({"messages": two_shot(Value::Null)}));
    let text = s.ok("/detokenize", &json!({"tokens": ids["tokens"]}));
    let text = text["prompt"].as_str().unwrap();
    assert!(text.contains("[get_weather(city=\"Rome\")]"), "{text}");
}

/// Forced calls' arguments are the model's own text without whitespace between tokens, so a
/// number keeps its digits (read as f64, SmolLM2's 98765432109876543210 came back as
/// 9.876543210987654e+19); with `"required"`, a tool's references into its own schema
/// (`#/properties/v`) resolve against it (they named the list, a 400).
#[test]
fn forced_calls_keep_the_models_text_and_their_own_references() {
    let Some(s) = server(&[]) else { return };
    let ask = |content: &str| json!([{"role": "user", "content": content}]);
    let f = json!([{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
        "additionalProperties": false}}}]);
    let named = json!({"type": "function", "function": {"name": "f"}});
    let r = s.ok(
        "/v1/chat/completions",
        &json!({"model": "base", "temperature": 0, "max_tokens": 32, "logprobs": true,
                "messages": ask("Repeat exactly this JSON: {\"n\": 98765432109876543210}"),
                "tools": f, "tool_choice": named}),
    );
    let choice = &r["choices"][0];
    let written: String = (choice["logprobs"]["content"].as_array().unwrap().iter())
        .map(|t| t["token"].as_str().unwrap())
        .collect();
    // Integers only: no string to keep whitespace in.
    let written: String = written.chars().filter(|c| !c.is_whitespace()).collect();
    let args = choice["message"]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap();
    assert!(written.starts_with(args), "{args} is not {written}: {r}");
    // Digits past what an f64 holds (the old arguments wrote 9.876543210987654e+19): without
    // them, this answer could not tell the two apart.
    let longest = args
        .split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max();
    assert!(
        longest >= Some(18),
        "SmolLM2 no longer writes the long number: {r}"
    );
    assert!(serde_json::from_str::<Value>(args).unwrap()["n"].is_number());
    let a = json!([{"type": "function", "function": {"name": "a", "parameters": {
        "type": "object", "additionalProperties": false, "required": ["v", "w"],
        "properties": {"v": {"type": "integer", "minimum": 0, "maximum": 3},
                       "w": {"$ref": "#/properties/v"}}}}}]);
    let r = s.ok(
        "/v1/chat/completions",
        &json!({"model": "base", "temperature": 0, "max_tokens": 40, "messages": ask("call a"),
                "tools": a, "tool_choice": "required", "parallel_tool_calls": false}),
    );
    let choice = &r["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{r}");
    let args = &choice["message"]["tool_calls"][0]["function"]["arguments"];
    let args: Value = serde_json::from_str(args.as_str().unwrap()).unwrap();
    for k in ["v", "w"] {
        assert!(
            args[k].as_u64().is_some_and(|x| x <= 3),
            "{k} is not an integer from 0 to 3: {r}"
        );
    }
}
