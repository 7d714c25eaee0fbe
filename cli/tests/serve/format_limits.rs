//! Output formats at the grammar engine's limits: refused with a 400 that names the limit, or
//! served; never a crash. llguidance compiles recursively, and a chain of a few hundred `$ref`s
//! or rules had overflowed a server thread's stack, aborting the process with every request
//! in it.

use serde_json::{json, Map, Value};

use crate::harness::{assets, merged, Server};

/// A schema whose root is a chain of `n` `$ref`s, each wrapped by `link`, ending in a string.
fn ref_chain(n: usize, link: impl Fn(Value) -> Value) -> Value {
    let mut defs = Map::new();
    for i in 0..n {
        defs.insert(
            format!("a{i}"),
            link(json!({"$ref": format!("#/$defs/a{}", i + 1)})),
        );
    }
    defs.insert(format!("a{n}"), json!({"type": "string", "maxLength": 8}));
    json!({"$defs": defs, "$ref": "#/$defs/a0"})
}

/// A Lark grammar of `n` rules in a chain, rule `i` written by `rule(i)` (naming `r{i}`, and
/// `r{i + 1}` to go on), the last `r{n}: "x"`.
fn rule_chain(n: usize, rule: impl Fn(usize) -> String) -> String {
    let rules: String = (0..n).map(|i| rule(i) + "\n").collect();
    format!("start: r0\n{rules}r{n}: \"x\"\n")
}

#[test]
fn formats_at_the_grammar_engines_limits() {
    let Some(a) = assets() else { return };
    let s = Server::start(&a.model_args());
    let chat = |extra: Value| {
        merged(
            json!({"model": "SmolLM2-135M-Instruct.Q4_1", "temperature": 0, "max_tokens": 8,
                   "messages": [{"role": "user", "content": "Say a word."}]}),
            extra,
        )
    };
    let schema = |s: Value| {
        json!({"response_format": {"type": "json_schema",
                                   "json_schema": {"name": "chain", "schema": s}}})
    };
    // Served: 5,000 links (250 had aborted the server), as a response format and as a tool's
    // parameters under a forced call.
    let chain = ref_chain(5_000, |r| r);
    let v = s.ok("/v1/chat/completions", &chat(schema(chain.clone())));
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.starts_with('"'), "{v}");
    let tool = json!({"type": "function", "function": {"name": "f", "parameters":
        {"type": "object", "properties": {"x": {"$ref": "#/$defs/a0"}}, "required": ["x"],
         "additionalProperties": false, "$defs": chain["$defs"]}}});
    let v = s.ok(
        "/v1/chat/completions",
        &chat(json!({"tools": [tool], "tool_choice": "required", "max_tokens": 40})),
    );
    assert!(v["choices"][0]["message"]["tool_calls"].is_array(), "{v}");

    // Refused, each with llguidance's limit named.
    let refused = |body: Value, code: Value, says: &str| {
        let r = s.post("/v1/chat/completions", &body);
        let e = r.json();
        assert_eq!(r.status, 400, "{e}");
        assert_eq!(e["error"]["code"], code, "{e}");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
        assert!(
            !message.contains("backtrace") && message.len() < 600,
            "{message}"
        );
        e
    };
    let nested = format!("root ::= {}\"x\"{}", "(".repeat(3000), ")".repeat(3000));
    refused(
        chat(json!({"guided_grammar": nested})),
        Value::Null,
        "groups nest at most 28 deep",
    );
    // 400,000 rules in a chain (4.4 MB) overflowed even the compiler's 1 GiB stack.
    let chain = rule_chain(400_000, |i| format!("r{i}: r{}", i + 1));
    refused(
        chat(json!({"guided_grammar": chain})),
        Value::Null,
        "defines 400002 rules; at most 65000",
    );
    let rules = rule_chain(60_000, |i| format!("r{i}: \"x\" r{} | \"y\"", i + 1));
    refused(
        chat(json!({"guided_grammar": rules})),
        Value::Null,
        "more than 65,000 grammar symbols",
    );
    // Compiles, then meets a parser row of more than 2,000 items at the first token: the
    // request's format at a limit, a 400 with llguidance's message (a 500 before).
    let alternatives = ref_chain(1_000, |r| json!({"anyOf": [r, {"type": "integer"}]}));
    let e = refused(
        chat(schema(alternatives.clone())),
        json!("grammar_error"),
        "max is 2000",
    );
    assert_eq!(e["error"]["param"], "response_format", "{e}");
    // The same through the Responses API names its own field. Greedy, as every request here:
    // a row's size depends on the text so far.
    let r = s.post(
        "/v1/responses",
        &json!({"model": "SmolLM2-135M-Instruct.Q4_1", "input": "Say a word.", "max_output_tokens": 8, "temperature": 0,
                "text": {"format": {"type": "json_schema", "name": "chain", "schema": alternatives}}}),
    );
    let e = r.json();
    assert_eq!(
        (r.status, &e["error"]["code"]),
        (400, &json!("grammar_error")),
        "{e}"
    );
    assert_eq!(e["error"]["param"], "text.format", "{e}");
    // Streamed, and as a named tool's parameters (1,000 optional properties meet the same
    // limit unless the object closes at once): the error event names this API's field too (chat's
    // `tools[0].function.parameters` before). Sampled, the arguments were `{}` in about one
    // request of four, short of the limit, and the test failed now and then.
    let optional: Map<String, Value> = (0..1_000)
        .map(|i| (format!("p{i}"), json!({"type": "integer"})))
        .collect();
    let wide = json!({"type": "object", "properties": optional});
    let events = s.stream(
        "/v1/responses",
        &json!({"model": "SmolLM2-135M-Instruct.Q4_1", "input": "Say a word.", "max_output_tokens": 8,
                "temperature": 0, "stream": true, "tool_choice": {"type": "function", "name": "chain"},
                "tools": [{"type": "function", "name": "chain", "parameters": wide}]}),
    );
    let error = events
        .iter()
        .find(|e| e["type"] == "error")
        .expect("an error event");
    assert_eq!(error["param"], "tools[0].parameters", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("max is 2000") && message.contains("optional properties"),
        "{error}"
    );
    // The stream's final event fails the response with OpenAI's code for a request's fault,
    // not `server_error`.
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.failed", "{last}");
    assert_eq!(
        last["response"]["error"]["code"], "invalid_prompt",
        "{last}"
    );
    assert!(
        last["response"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("(grammar_error)"),
        "{last}"
    );
    // The server lives on.
    s.ok("/v1/chat/completions", &chat(json!({})));
}

/// Sends a completion request with `extra` on a connection of its own, without reading the
/// answer; dropping the stream is the client leaving.
fn send_raw(s: &Server, extra: Value) -> std::net::TcpStream {
    use std::io::Write;
    let body = merged(
        json!({"model": "SmolLM2-135M-Instruct.Q4_1", "prompt": "x", "max_tokens": 1}),
        extra,
    )
    .to_string();
    let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    write!(
        c,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    c
}

/// Formats compile one at a time; a request whose client leaves while its format waits for
/// the compile before it is not compiled (`dlp_format_compiles_abandoned_total`), so a queue of
/// abandoned slow formats cannot hold up later requests for a compile each.
#[test]
fn formats_of_clients_gone_are_not_compiled() {
    use std::io::Read;
    use std::time::{Duration, Instant};
    let Some(a) = assets() else { return };
    let s = Server::start(&a.model_args());
    // About 2 s of compiling in a debug build on 2 cores (it ends in a 400: too many symbols).
    let slow = |tag: usize| json!({"guided_grammar": rule_chain(60_000, |i| format!("r{i}: r{} \"a{tag}x{i}\"", i + 1))});
    let compiled = s.metric("dlp_format_compiles_total");
    let mut first = send_raw(&s, slow(0));
    std::thread::sleep(Duration::from_millis(150));
    // Two more wait behind it; their clients leave before it ends.
    let waiting = [send_raw(&s, slow(1)), send_raw(&s, slow(2))];
    std::thread::sleep(Duration::from_millis(150));
    drop(waiting);
    let mut answer = String::new();
    first.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let t0 = Instant::now();
    while s.metric("dlp_format_compiles_abandoned_total") < 2.0 {
        assert!(t0.elapsed() < Duration::from_secs(30), "{}", s.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(s.metric("dlp_format_compiles_total"), compiled + 1.0);
    // A later request's format is compiled and served.
    let v = s.ok(
        "/v1/completions",
        &json!({"model": "SmolLM2-135M-Instruct.Q4_1", "prompt": "x", "max_tokens": 8,
                "guided_choice": ["yes", "no"]}),
    );
    assert!(
        ["yes", "no"].contains(&v["choices"][0]["text"].as_str().unwrap()),
        "{v}"
    );
    assert_eq!(s.metric("dlp_format_compiles_total"), compiled + 2.0);
}
