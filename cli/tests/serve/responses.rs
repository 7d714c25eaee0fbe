//! OpenAI's Responses API (`/v1/responses`) against chat: the same answers and usage, output
//! items for text and tool calls, the stream's typed events in order, and its errors in this
//! API's field names. SmolLM2 behind the Hermes-style template of the tool tests, so that it
//! makes a real call (see tools.rs).

use serde_json::{json, Value};

use super::harness::merged;
use super::tools::{server, tools, two_shot};

/// The chat conversation `two_shot` as Responses input items: messages, and the calls as
/// `function_call` items after their assistant text.
fn as_items(chat: &Value) -> Value {
    let mut items = Vec::new();
    for m in chat.as_array().unwrap() {
        if let Some(calls) = m.get("tool_calls") {
            if m["content"].is_string() {
                items.push(json!({"role": "assistant", "content": m["content"]}));
            }
            for c in calls.as_array().unwrap() {
                items.push(json!({"type": "function_call", "call_id": c["id"],
                                  "name": c["function"]["name"], "arguments": c["function"]["arguments"]}));
            }
        } else {
            items.push(m.clone());
        }
    }
    Value::Array(items)
}

/// Function tools in this API's flat form.
fn flat_tools() -> Value {
    let t = tools();
    let f = &t[0]["function"];
    json!([{"type": "function", "name": f["name"], "description": f["description"],
            "parameters": f["parameters"]}])
}

/// Output items without their random ids.
fn without_ids(output: &Value) -> Value {
    let mut out = output.clone();
    for item in out.as_array_mut().unwrap() {
        let o = item.as_object_mut().unwrap();
        o.remove("id");
        o.remove("call_id");
    }
    out
}

/// A request for `input` with the tools, greedy, plus `extra` fields.
fn respond(input: Value, extra: Value) -> Value {
    merged(
        json!({"model": "base", "temperature": 0, "max_output_tokens": 60,
               "tools": flat_tools(), "input": input}),
        extra,
    )
}

#[test]
fn responses_answer_as_chat_does() {
    let template = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/hermes-tools.jinja");
    let Some(s) = server(&["--chat-template", template]) else {
        return;
    };
    // Text, then a call: a message item and a function_call item, as chat's content and
    // tool_calls.
    let shot = two_shot(json!("Let me check."));
    let chat = s.ok(
        "/v1/chat/completions",
        &json!({"model": "base", "temperature": 0, "max_tokens": 60, "tools": tools(),
                "messages": shot}),
    );
    let m = &chat["choices"][0]["message"];
    let r = s.ok("/v1/responses", &respond(as_items(&shot), json!({})));
    assert_eq!(r["object"], "response");
    // Function tools are strict only where they say so (OpenAI's default here is strict where
    // the schema allows), echoed as they ran.
    assert_eq!(r["tools"][0]["strict"], false, "{}", r["tools"]);
    let mut strict = flat_tools();
    strict[0]["strict"] = json!(true);
    let rs = s.ok(
        "/v1/responses",
        &respond(as_items(&shot), json!({"tools": strict})),
    );
    assert_eq!(rs["tools"][0]["strict"], true, "{}", rs["tools"]);
    assert_eq!(r["status"], "completed", "{r}");
    let out = r["output"].as_array().unwrap();
    assert_eq!(out.len(), 2, "{r}");
    assert_eq!(out[0]["type"], "message");
    assert_eq!(out[0]["content"][0]["text"], m["content"], "{r}");
    assert_eq!(out[1]["type"], "function_call");
    assert_eq!(out[1]["name"], m["tool_calls"][0]["function"]["name"]);
    assert_eq!(
        out[1]["arguments"],
        m["tool_calls"][0]["function"]["arguments"]
    );
    assert!(out[1]["call_id"].as_str().unwrap().starts_with("call_"));
    let u = &chat["usage"];
    assert_eq!(
        (&r["usage"]["input_tokens"], &r["usage"]["output_tokens"]),
        (&u["prompt_tokens"], &u["completion_tokens"])
    );

    // Streamed: created, in_progress, the message's events, the call's, completed; numbered.
    let events = s.stream(
        "/v1/responses",
        &respond(as_items(&shot), json!({"stream": true})),
    );
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let text_deltas = kinds
        .iter()
        .filter(|k| **k == "response.output_text.delta")
        .count();
    assert!(text_deltas >= 2, "{kinds:?}");
    let mut want = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ];
    want.extend(std::iter::repeat_n(
        "response.output_text.delta",
        text_deltas,
    ));
    want.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(kinds, want);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["sequence_number"], i, "{e}");
    }
    let done = &events.last().unwrap()["response"];
    assert_eq!(without_ids(&done["output"]), without_ids(&r["output"]));
    assert_eq!(done["usage"], r["usage"]);
    let streamed: String = (events.iter())
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, m["content"].as_str().unwrap());

    // A plain question, with instructions and logprobs, cut by max_output_tokens.
    let ask = json!({"model": "base", "temperature": 0, "max_tokens": 5, "logprobs": true,
                     "top_logprobs": 2,
                     "messages": [{"role": "system", "content": "Be brief."},
                                  {"role": "user", "content": "What is the capital of France?"}]});
    let chat = s.ok("/v1/chat/completions", &ask);
    let r = s.ok(
        "/v1/responses",
        &json!({"model": "base", "temperature": 0, "max_output_tokens": 5,
                "instructions": "Be brief.", "input": "What is the capital of France?",
                "include": ["message.output_text.logprobs"], "top_logprobs": 2}),
    );
    assert_eq!(chat["choices"][0]["finish_reason"], "length");
    assert_eq!(
        (&r["status"], &r["incomplete_details"]["reason"]),
        (&json!("incomplete"), &json!("max_output_tokens"))
    );
    let part = &r["output"][0]["content"][0];
    assert_eq!(part["text"], chat["choices"][0]["message"]["content"]);
    assert_eq!(part["logprobs"], chat["choices"][0]["logprobs"]["content"]);
    let events = s.stream(
        "/v1/responses",
        &json!({"model": "base", "temperature": 0, "max_output_tokens": 5, "stream": true,
                "instructions": "Be brief.", "input": "What is the capital of France?"}),
    );
    assert_eq!(events.last().unwrap()["type"], "response.incomplete");

    // Errors name this API's fields.
    let refused = |body: Value, param: &str| {
        let a = s.post("/v1/responses", &body);
        assert_eq!(a.status, 400, "{body}: {}", a.body);
        let v: Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(v["error"]["param"], param, "{v}");
        // Chat's spelling of a field never shows.
        let message = v["error"]["message"].as_str().unwrap();
        let chat_spelling = message.contains("response_format")
            || (message.contains("`tools[") && message.contains("].function"));
        assert!(!chat_spelling, "{v}");
    };
    let base = |extra: Value| merged(json!({"model": "base", "input": "hi"}), extra);
    refused(
        base(json!({"max_output_tokens": 1u64 << 40})),
        "max_output_tokens",
    );
    refused(
        base(json!({"previous_response_id": "resp_1"})),
        "previous_response_id",
    );
    refused(base(json!({"input": []})), "input");
    for n in [0, -1] {
        let a = s.post("/v1/responses", &base(json!({"max_output_tokens": n})));
        assert_eq!(a.status, 400, "{}", a.body);
        assert!(a.body.contains("`max_output_tokens` must be"), "{}", a.body);
        assert!(a.body.contains("at least 1"), "{}", a.body);
        assert!(!a.body.contains("chat"), "{}", a.body);
    }
    // A part's fields are checked as chat's are, and user turns hold input parts only.
    let user = |part: Value| json!({"input": [{"role": "user", "content": [part]}]});
    refused(
        base(user(json!({"type": "input_text", "text": "a", "foo": 1}))),
        "input[0].content[0].foo",
    );
    refused(
        base(user(json!({"type": "output_text", "text": "a"}))),
        "input[0].content[0]",
    );
    // An output answers a call sent before it.
    refused(
        base(json!({"input": [{"role": "user", "content": "hi"},
                              {"type": "function_call_output", "call_id": "nope", "output": "42"}]})),
        "input[1].call_id",
    );
    refused(
        base(json!({"input": [{"role": "user", "content": [{"type": "input_file"}]}]})),
        "input[0].content[0]",
    );
    refused(
        base(json!({"input": [{"type": "reasoning", "summary": []}]})),
        "input[0].type",
    );
    refused(
        base(json!({"input": [{"role": "user", "content": "a", "extra": 1}]})),
        "input[0].extra",
    );
    refused(base(json!({"tools": [{"type": "web_search"}]})), "tools[0]");
    refused(
        base(json!({"tools": [{"type": "function", "name": "f", "x": 1}]})),
        "tools[0].x",
    );
    refused(
        base(
            json!({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "nope"}}}}),
        ),
        "text.format",
    );
    // A named tool's schema is compiled when the request is submitted: its error is renamed
    // into this API's spelling too.
    refused(
        base(json!({"tools": [{"type": "function", "name": "g",
                     "parameters": {"properties": {"n": {"type": "integer", "minimum": 5, "maximum": 1}}, "required": ["n"]}}],
                    "tool_choice": {"type": "function", "name": "g"}})),
        "tools[0].parameters",
    );
    refused(base(json!({"reasoning": {"effort": "high"}})), "reasoning");
    refused(base(json!({"frobnicate": 1})), "frobnicate");
    refused(base(json!({"temperature": -1})), "temperature");
    refused(
        base(
            json!({"tools": flat_tools(), "tool_choice": {"type": "function", "function": {"name": "f"}}}),
        ),
        "tool_choice",
    );
    refused(
        base(json!({"tools": flat_tools(), "tool_choice": {"type": "function", "name": "nope"}})),
        "tool_choice.name",
    );
    refused(base(json!({"metadata": {"a": 1}})), "metadata.a");
    refused(base(json!({"service_tier": "x"})), "service_tier");
    refused(
        base(json!({"text": {"format": {"type": "json_schema", "schema": {}}}})),
        "text.format.name",
    );
    refused(base(json!({"include": ["x"]})), "include[0]");
    let format = |f: Value| {
        base(json!({"text": {"format": merged(json!({"type": "json_schema", "name": "x"}), f)}}))
    };
    refused(
        format(json!({"strict": "yes", "schema": {}})),
        "text.format.strict",
    );
    refused(format(json!({})), "text.format.schema");
    refused(
        format(json!({"name": "a b", "schema": {}})),
        "text.format.name",
    );
    refused(format(json!({"name": 5, "schema": {}})), "text.format.name");
    let unknown = json!({"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "zz"}]});
    refused(
        base(json!({"tools": flat_tools(), "tool_choice": unknown})),
        "tool_choice.tools[0]",
    );
    refused(
        format(json!({"description": 1, "schema": {}})),
        "text.format.description",
    );
    // A response repeats every tool, so each is checked, those `allowed_tools` leaves out too.
    let tool = |f: Value| merged(json!({"type": "function", "name": "g"}), f);
    let allowed = json!({"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": flat_tools()[0]["name"]}]});
    for (field, v) in [
        ("description", json!(1)),
        ("parameters", json!("x")),
        ("strict", json!("no")),
        ("name", json!(7)),
    ] {
        refused(
            base(
                json!({"tools": [flat_tools()[0].clone(), tool(json!({field: v}))], "tool_choice": allowed}),
            ),
            &format!("tools[1].{field}"),
        );
    }
    refused(
        base(json!({"tools": [{"type": "function"}]})),
        "tools[0].name",
    );
    refused(
        base(
            json!({"tools": [tool(json!({"parameters": {"type": "nope"}}))], "tool_choice": "required"}),
        ),
        "tools[0].parameters",
    );
    // A chat-level check of a message names the input item it came from, a call merged into
    // an assistant turn its own item.
    let call = |id: &str, args: &str| json!({"type": "function_call", "call_id": id, "name": "f", "arguments": args});
    refused(base(json!({"input": [call("c", "not json")]})), "input[0]");
    refused(
        base(
            json!({"input": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"},
                              call("c1", "{}"), call("c2", "bad")]}),
        ),
        "input[3]",
    );

    // What clients send that changes nothing here is accepted: include values for outputs
    // never made, verbosity, no reasoning, an assistant message's phase, a null field.
    let ok = |extra: Value| {
        s.ok(
            "/v1/responses",
            &merged(
                json!({"model": "base", "input": "hi", "max_output_tokens": 2}),
                extra,
            ),
        )
    };
    ok(json!({"include": ["reasoning.encrypted_content"], "store": false}));
    ok(
        json!({"text": {"verbosity": "low"}, "reasoning": {"effort": "none"}, "metadata": {"k": "v"}}),
    );
    ok(
        json!({"input": [{"role": "assistant", "content": "a", "phase": "final_answer", "status": null},
                        {"role": "user", "content": "b"}]}),
    );
    // Outputs sent back as the SDK returns them (`responses.parse` adds `parsed` and
    // `parsed_arguments`), a refusal, a call's output as a list of parts.
    ok(json!({"input": [
        {"role": "user", "content": [{"type": "input_text", "text": "a"}]},
        {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": "b", "annotations": [], "logprobs": [],
                      "parsed": {"x": 1}},
                     {"type": "refusal", "refusal": "no"}]},
        {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "f",
         "arguments": "{}", "parsed_arguments": {}, "status": "completed"},
        {"type": "function_call_output", "call_id": "c1",
         "output": [{"type": "input_text", "text": "42"}]},
        {"role": "developer", "content": [{"type": "input_text", "text": "c"}]}]}));
    // Text parts go to the template as chat's do.
    let parts =
        json!([{"type": "input_text", "text": "Hello"}, {"type": "input_text", "text": "World"}]);
    let r = ok(json!({"input": [{"role": "user", "content": parts}]}));
    let chat = s.ok(
        "/v1/chat/completions",
        &json!({"model": "base", "max_tokens": 2, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Hello"}, {"type": "text", "text": "World"}]}]}),
    );
    assert_eq!(r["usage"]["input_tokens"], chat["usage"]["prompt_tokens"]);
    // `allowed_tools` keeps the tools it names: a forced call can only be to one of them.
    let two = json!([flat_tools()[0], {"type": "function", "name": "get_time",
                     "parameters": {"type": "object", "properties": {}}}]);
    let r = s.ok(
        "/v1/responses",
        &json!({"model": "base", "input": "What time is it?", "tools": two, "max_output_tokens": 60,
                "parallel_tool_calls": false, "temperature": 0,
                "tool_choice": {"type": "allowed_tools", "mode": "required",
                                "tools": [{"type": "function", "name": "get_time"}]}}),
    );
    let names: Vec<&Value> = r["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["name"])
        .collect();
    assert!(
        !names.is_empty() && names.iter().all(|n| *n == "get_time"),
        "{r}"
    );
}
