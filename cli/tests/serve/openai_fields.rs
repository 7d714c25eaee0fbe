//! What OpenAI's clients rely on beyond the bodies: `GET /v1/models/{id}`, the
//! `x-request-id` header, and chat fields the SDK offers for features this server lacks.

use super::*;

#[test]
fn models_by_id_request_ids_and_sdk_fields() {
    let Some(a) = assets() else { return };
    // -v: the access log.
    let s = Server::start(&[a.model_args(), vec!["-v".into()]].concat());
    let boolq = s.get("/v1/models/boolq");
    assert_eq!(boolq.status, 200, "{}", boolq.body);
    let m = boolq.json();
    assert_eq!((&m["id"], &m["object"]), (&json!("boolq"), &json!("model")));
    let base = m["parent"].as_str().unwrap().to_string();
    assert_eq!(s.get(&format!("/v1/models/{base}")).json()["id"], base);
    // A name with `/` (as HF names have) reaches the route, not the fallback.
    let nested = s.get("/v1/models/meta-llama/Llama-2-7b-hf");
    assert_eq!(nested.status, 404);
    assert_eq!(
        nested.json()["error"]["code"],
        "model_not_found",
        "{}",
        nested.body
    );
    let missing = s.get("/v1/models/boolk");
    assert_eq!(missing.status, 404);
    let e = missing.json();
    assert_eq!(e["error"]["code"], "model_not_found", "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("boolq"),
        "{e}"
    );

    // A new id on every answer, errors included; the client's own id is kept.
    let ids: Vec<String> = [s.get("/v1/models"), missing]
        .iter()
        .map(|a| a.request_id.clone().expect("an x-request-id"))
        .collect();
    assert!(
        ids.iter().all(|i| i.starts_with("req_") && i.len() == 36),
        "{ids:?}"
    );
    assert_ne!(ids[0], ids[1]);
    let chat = json!({"model": "boolq", "max_tokens": 2, "temperature": 0,
                      "messages": [{"role": "user", "content": "hi"}]});
    let own = s.post_raw(
        "/v1/chat/completions",
        chat.to_string().as_bytes(),
        &[("X-Request-Id", "trace-42")],
    );
    assert_eq!(own.request_id.as_deref(), Some("trace-42"));
    // The access log names the id, the route and the status.
    assert!(s.log_has("trace-42"), "{}", s.log());
    let line = s
        .log()
        .lines()
        .find(|l| l.contains("trace-42"))
        .unwrap()
        .to_string();
    assert!(line.contains("POST /v1/chat/completions 200 in"), "{line}");
    let bad = s.post_raw(
        "/v1/chat/completions",
        chat.to_string().as_bytes(),
        &[("X-Request-Id", &"x".repeat(129))],
    );
    assert!(bad.request_id.unwrap().starts_with("req_"));

    // Fields that ask for nothing are taken and change nothing; asking for the feature is a
    // 400 naming the field (they were all 400s: "unknown field").
    let plain = s.ok("/v1/chat/completions", &chat);
    let sdk = s.ok(
        "/v1/chat/completions",
        &merged(
            chat.clone(),
            json!({"max_completion_tokens": 2, "safety_identifier": "u1", "prompt_cache_key": "k",
                   "prompt_cache_retention": "24h", "metadata": {"team": "a"},
                   "service_tier": "auto", "modalities": ["text"],
                   "reasoning_effort": "none", "verbosity": "medium", "audio": null,
                   "prediction": null, "web_search_options": null, "function_call": null}),
        ),
    );
    assert_eq!(sdk["choices"][0]["message"], plain["choices"][0]["message"]);
    // The SDK's stream option for padding (its default on) is taken on both endpoints: the
    // events carry no padding (it was a 400 there, taken by the Responses API).
    for (path, body) in [
        ("/v1/chat/completions", chat.clone()),
        (
            "/v1/completions",
            json!({"model": chat["model"], "prompt": "Hi", "max_tokens": 2}),
        ),
    ] {
        let opts = json!({"stream": true, "stream_options": {"include_obfuscation": true}});
        let r = s.post(path, &merged(body, opts));
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert!(r.body.contains("[DONE]"), "{path}: {}", r.body);
    }
    // Typed as OpenAI types them (metadata was taken whatever it held).
    for (field, value, param) in [
        ("metadata", json!(5), "metadata"),
        ("metadata", json!({"a": 5}), "metadata.a"),
        ("service_tier", json!("gold"), "service_tier"),
    ] {
        let r = s.post(
            "/v1/chat/completions",
            &merged(chat.clone(), json!({field: value})),
        );
        assert_eq!(r.status, 400, "{field}: {}", r.body);
        assert_eq!(r.json()["error"]["param"], param, "{}", r.body);
    }
    for (field, value, words) in [
        ("modalities", json!(["text", "audio"]), "text only"),
        ("reasoning_effort", json!("high"), "does not reason"),
        (
            "audio",
            json!({"voice": "alloy", "format": "wav"}),
            "text only",
        ),
        (
            "prediction",
            json!({"type": "content", "content": "x"}),
            "predicted outputs",
        ),
        ("web_search_options", json!({}), "web search"),
    ] {
        let r = s.post(
            "/v1/chat/completions",
            &merged(chat.clone(), json!({field: value})),
        );
        assert_eq!(r.status, 400, "{field}: {}", r.body);
        let e = r.json();
        assert_eq!(e["error"]["param"], field, "{e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(words),
            "{e}"
        );
    }
}

/// Chat's `tool_choice` of type `allowed_tools` (OpenAI's nested form) keeps the tools it
/// names, as the Responses API's does: a forced call can only be to one of them.
#[test]
fn chat_allowed_tools_keeps_the_tools_it_names() {
    let Some(a) = assets() else { return };
    let s = Server::start(&a.model_args());
    let two = json!([super::tools::tools()[0], {"type": "function", "function": {"name": "get_time",
                     "parameters": {"type": "object", "properties": {}}}}]);
    let choice = |names: &[&str]| {
        let tools: Vec<Value> = (names.iter())
            .map(|n| json!({"type": "function", "function": {"name": n}}))
            .collect();
        json!({"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": tools}})
    };
    let body = |c: Value| {
        json!({"model": "boolq", "max_tokens": 60, "temperature": 0, "tools": two,
               "parallel_tool_calls": false, "tool_choice": c,
               "messages": [{"role": "user", "content": "What is the weather in Paris?"}]})
    };
    // A weather question answered by get_time: only the filter could have chosen it.
    let r = s.ok("/v1/chat/completions", &body(choice(&["get_time"])));
    let calls = r["choices"][0]["message"]["tool_calls"].as_array().unwrap();
    assert!(
        !calls.is_empty() && calls.iter().all(|c| c["function"]["name"] == "get_time"),
        "{r}"
    );
    let r = s.post("/v1/chat/completions", &body(choice(&["get_time", "zz"])));
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.json()["error"]["param"],
        "tool_choice.allowed_tools.tools[1]"
    );
    // A tool the filter leaves out is still checked, named by its place in the request.
    let mut bad = body(choice(&["get_time"]));
    bad["tools"][0]["function"]["paramters"] = json!({});
    let r = s.post("/v1/chat/completions", &bad);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.json()["error"]["param"],
        "tools[0].function.paramters",
        "{}",
        r.body
    );
    // The Responses API's flat form, sent to chat: the message shows chat's nested one.
    let flat = json!({"type": "allowed_tools", "mode": "auto", "tools": []});
    let r = s.post("/v1/chat/completions", &body(flat));
    assert_eq!(r.status, 400, "{}", r.body);
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("\"allowed_tools\": {\"mode\""),
        "{message}"
    );
}
