//! SIGTERM and Ctrl-C: running streams end cleanly within the grace, a second signal ends them
//! at once, and nothing is let in once the running requests were ended.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::harness::{assets, Server};

/// Posts `body` to `path` of `s` over a raw connection on a thread of its own, which returns
/// the raw (chunked) response when the server closes the connection (what came before an
/// error reading it).
fn post_on_a_thread(s: &Server, path: &str, body: &Value) -> std::thread::JoinHandle<String> {
    let (port, path, body) = (s.port, path.to_string(), body.to_string());
    std::thread::spawn(move || {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            c,
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut all = String::new();
        let _ = c.read_to_string(&mut all);
        all
    })
}

/// Sends streamed requests (`path`, `body`) to `s` ([`post_on_a_thread`]) and waits until
/// every one has generated tokens.
fn stream_while_terminating(
    s: &Server,
    requests: &[(&str, Value)],
) -> Vec<std::thread::JoinHandle<String>> {
    let readers = (requests.iter())
        .map(|(path, body)| post_on_a_thread(s, path, body))
        .collect();
    let t0 = Instant::now();
    let n = requests.len() as f64;
    while s.metric("dlp_running_sequences") < n || s.metric("dlp_generation_tokens_total") < 2.0 * n
    {
        assert!(t0.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(10));
    }
    readers
}

/// SIGTERM: running streams end cleanly (finish_reason, [DONE]), new connections are refused
/// or answered 503, and the process exits 0.
#[test]
fn sigterm_finishes_streams_and_exits_0() {
    let Some(a) = assets() else { return };
    let s = Server::start(&a.model_args());
    let port = s.port;
    let body = json!({"model": "boolq", "max_tokens": 48, "stream": true, "temperature": 0,
                      "messages": [{"role": "user", "content": "Tell me about rivers."}]});
    let reader = stream_while_terminating(&s, &[("/v1/chat/completions", body)]).remove(0);
    let status = s.terminate();
    assert!(status.success(), "exit status {status}");
    // The raw (chunked) response holds the SSE lines intact.
    let raw = reader.join().unwrap();
    assert!(raw.contains("data: [DONE]"), "{raw}");
    assert!(
        raw.contains("\"finish_reason\":\"length\"") || raw.contains("\"finish_reason\":\"stop\""),
        "{raw}"
    );
    // Nothing listens any more.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

/// A second SIGTERM (Ctrl-C pressed again) ends the running requests at once, as the grace's
/// end would: a long stream gets the shutdown error and [DONE], and the process exits 0 well
/// within a 60 s grace. A Responses stream ends with `response.failed` holding the message as
/// far as it went (its `output` had been empty).
#[test]
fn a_second_sigterm_cuts_the_grace_short() {
    let Some(a) = assets() else { return };
    let mut args = a.model_args();
    args.extend(["--shutdown-grace", "60"].map(String::from));
    let s = Server::start(&args);
    let body = json!({"model": "boolq", "max_tokens": 4000, "stream": true, "temperature": 0,
                      "ignore_eos": true,
                      "messages": [{"role": "user", "content": "Tell me about rivers."}]});
    // (No `ignore_eos` in this API: the base model's long story runs for seconds.)
    let responses = json!({"model": "SmolLM2-135M-Instruct.Q4_1", "max_output_tokens": 4000,
                           "stream": true, "temperature": 0,
                           "input": "Write a very long story about a dragon and a knight."});
    let readers = stream_while_terminating(
        &s,
        &[("/v1/chat/completions", body), ("/v1/responses", responses)],
    );
    let t0 = Instant::now();
    let status = s.terminate_after(2);
    assert!(status.success(), "exit status {status}");
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    let mut raws = readers.into_iter().map(|r| r.join().unwrap());
    let raw = raws.next().unwrap();
    assert!(raw.contains("shutting_down"), "{raw}");
    assert!(raw.contains("data: [DONE]"), "{raw}");
    let raw = raws.next().unwrap();
    let failed = (raw.lines())
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|e| e["type"] == "response.failed")
        .unwrap_or_else(|| panic!("no response.failed event: {raw}"));
    let item = &failed["response"]["output"][0];
    assert_eq!(item["status"], "incomplete", "{failed}");
    let text = item["content"][0]["text"].as_str().unwrap_or_default();
    assert!(!text.is_empty(), "{failed}");
}

/// Requests still being prepared when the shutdown's grace runs out (formats compile one at a
/// time) are refused, not let in after the running ones were ended: two that ask for 5,900
/// tokens, queued behind 30 slow schemas (some seconds of compiling), had held the exit for
/// minutes (the test fails so without the fix). The exit comes within the grace and the
/// drain. Where compiling is much faster, all are admitted before the signal and this checks
/// only the exit.
#[test]
fn requests_prepared_during_the_shutdown_are_refused() {
    let Some(a) = assets() else { return };
    let mut args = a.model_args();
    args.extend(["--shutdown-grace", "1"].map(String::from));
    let s = Server::start(&args);
    let send = |body: Value| post_on_a_thread(&s, "/v1/completions", &body);
    let slow: Vec<_> = (0..30)
        .map(|k| {
            // 45 patterns: a schema that takes a good part of a second to compile.
            let patterns: serde_json::Map<String, Value> = (0..45)
                .map(|i| {
                    let p = format!("^[a-z]{{{},{}}}[0-9]*x{i}k{k}$", i + 1, i + 30);
                    (p, json!({"type": "integer"}))
                })
                .collect();
            let schema = json!({"type": "object", "patternProperties": patterns});
            send(
                json!({"model": "boolq", "prompt": "Numbers as JSON:", "max_tokens": 50,
                "temperature": 0, "response_format": {"type": "json_schema",
                "json_schema": {"name": "x", "schema": schema}}}),
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let long: Vec<_> = (0..2)
        .map(|k| {
            send(
                json!({"model": "boolq", "prompt": "Write letters:", "max_tokens": 6000,
                "min_tokens": 5900, "temperature": 0,
                "structured_outputs": {"regex": format!("k{k} [a-z ]{{1,40000}}")}}),
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let status = s.terminate();
    assert!(status.success(), "exit status {status}");
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "exit took {:?}",
        t0.elapsed()
    );
    for r in long {
        let raw = r.join().unwrap();
        assert!(raw.is_empty() || raw.contains("shutting_down"), "{raw}");
    }
    for r in slow {
        r.join().unwrap();
    }
}
