//! Connections the way a network delivers them: a client that stalls in its headers or its
//! body, one that announces a body past the limit, more connections than
//! `--max-connections`, a client that leaves mid-answer, the API key, and browsers (CORS).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::harness::{assets, raw_response, Server};

/// Sends `bytes` on a new connection and reads until the server closes it or 30 s pass; the
/// bytes read. A failed write is ignored: the server may answer and close before taking all.
fn exchange(s: &Server, bytes: &[u8]) -> String {
    let mut c = connect(s);
    let _ = c.write_all(bytes);
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw).into_owned()
}

fn connect(s: &Server) -> TcpStream {
    let c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c
}

fn post_head(len: usize) -> String {
    format!("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
}

#[test]
fn stalled_and_surplus_connections() {
    let Some(a) = assets() else { return };
    let mut args = a.model_args();
    args.extend(
        [
            "--read-timeout",
            "2",
            "--max-connections",
            "3",
            "--max-body-mib",
            "1",
        ]
        .map(String::from),
    );
    let s = Server::start(&args);
    let req = json!({"model": "boolq", "prompt": "The capital of France is", "max_tokens": 4,
                     "temperature": 0});
    let want = s.ok("/v1/completions", &req)["choices"][0]["text"].clone();

    // A whole request on a raw connection: answered.
    let body = req.to_string();
    let raw = exchange(&s, format!("{}{body}", post_head(body.len())).as_bytes());
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    let v: Value = serde_json::from_str(raw.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(v["choices"][0]["text"], want);

    // Headers that never end: the connection is closed (after --read-timeout), no answer.
    let raw = exchange(&s, b"GET /health HTTP/1.1\r\nHost: x\r\n");
    assert_eq!(raw, "");
    // A body that stops short: 408 naming the flag.
    let raw = exchange(&s, format!("{}{{", post_head(100)).as_bytes());
    assert!(raw.starts_with("HTTP/1.1 408"), "{raw}");
    assert!(raw.contains("--read-timeout"), "{raw}");
    // A client that closes its connection partway through the body counts as 499 (client
    // closed request), not as a bad request. Its write side closed, it may still read; the
    // server is not bound to answer it.
    let series = |status: u16| {
        s.count(&format!(
            "dlp_requests_total{{endpoint=\"/v1/completions\",status=\"{status}\"}}"
        ))
    };
    let (left, bad) = (series(499), series(400));
    let mut c = connect(&s);
    c.write_all(format!("{}{{\"model\": ", post_head(100)).as_bytes())
        .unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.is_empty() || raw.starts_with("HTTP/1.1 499"), "{raw}");
    let t0 = Instant::now();
    while series(499) == left && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        series(499),
        left + 1.0,
        "the body cut short was not counted as 499"
    );
    assert_eq!(
        series(400),
        bad,
        "the body cut short counted as a bad request"
    );
    // /metrics: OpenMetrics to a scraper that asks for it (Prometheus), else the text format
    // 0.0.4 (curl, simple scrapers), whose counter families are named by their samples.
    let get = |accept: &str| {
        let head = format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{accept}Connection: close\r\n\r\n");
        exchange(&s, head.as_bytes())
    };
    let om = get("Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n");
    assert!(
        om.contains("content-type: application/openmetrics-text"),
        "{om}"
    );
    assert!(
        om.contains("# TYPE dlp_requests counter") && om.contains("# EOF"),
        "{om}"
    );
    let text = get("");
    assert!(
        text.contains("content-type: text/plain; version=0.0.4"),
        "{text}"
    );
    assert!(text.contains("# TYPE dlp_requests_total counter"), "{text}");
    assert!(!text.contains("# EOF"), "{text}");
    // A body announced past the limit: 413 before any of it is read (not 408 for the wait).
    let raw = exchange(&s, post_head(99_999_999_999).as_bytes());
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert!(raw.contains("--max-body-mib"), "{raw}");
    // A chunked body, which announces no length, is cut off as it grows past the limit.
    let chunk = format!("{:x}\r\n{}\r\n", 1 << 16, " ".repeat(1 << 16));
    let head = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let raw = exchange(&s, (head.to_string() + &chunk.repeat(20)).as_bytes());
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert!(
        raw.contains("grew past the size limit (--max-body-mib)"),
        "{raw}"
    );

    // Three idle connections fill --max-connections 3: a fourth is not served until one goes.
    let held: Vec<TcpStream> = (0..3).map(|_| connect(&s)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut fourth = connect(&s);
    fourth
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    fourth
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut first = [0u8; 1];
    assert!(
        fourth.read(&mut first).is_err(),
        "a fourth connection was served while three were open"
    );
    drop(held);
    fourth
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut raw = Vec::new();
    let _ = fourth.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");

    // And the server serves on.
    assert_eq!(s.ok("/v1/completions", &req)["choices"][0]["text"], want);
    assert!(s.terminate().success());
}

/// A client that disconnects mid-stream (or before a non-streamed answer) frees its sequence
/// and KV slot at once.
#[test]
fn disconnect_frees_the_slot() {
    let Some(a) = assets() else { return };
    let mut args = a.model_args();
    args.push("-v".into());
    let s = Server::start(&args);
    // `ignore_eos`: the boolq adapter answers in about 6 tokens, which could end the request
    // before the server sees its client gone.
    let body = json!({"model": "boolq", "max_tokens": 4000, "stream": true, "temperature": 0.7,
                      "ignore_eos": true,
                      "messages": [{"role": "user", "content": "Write a very long story about a dragon."}]})
    .to_string();
    for stream in [true, false] {
        let body = body.replace("\"stream\":true", &format!("\"stream\":{stream}"));
        let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        write!(
            c,
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let t0 = Instant::now();
        while s.metric("dlp_running_sequences") < 1.0 {
            assert!(t0.elapsed() < Duration::from_secs(30), "never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        if stream {
            let mut buf = [0u8; 512];
            let n = c.read(&mut buf).unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).contains("200 OK"));
        }
        let cancelled = s.metric("dlp_cancelled_sequences_total");
        drop(c);
        let t0 = Instant::now();
        while s.metric("dlp_running_sequences") > 0.0 {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "the sequence kept running after its client left (stream: {stream})"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(s.metric("dlp_cancelled_sequences_total") > cancelled);
        // Generated far fewer than 4000 tokens: it stopped when the client left.
        assert!(s.metric("dlp_generation_tokens_total") < 3000.0);
    }
    // Each request is counted once: the streamed one as its 200, the unstreamed one, which had
    // no answer yet when its client left, as 499 (it was not counted at all).
    for status in [200, 499] {
        let series =
            format!("dlp_requests_total{{endpoint=\"/v1/chat/completions\",status=\"{status}\"}}");
        assert_eq!(s.metric(&series), 1.0, "{series}");
    }
    // The access log has a line for each, the one that got no answer as 499.
    for status in [200, 499] {
        let line = format!("POST /v1/chat/completions {status} in ");
        assert!(s.log_has(&line), "no `{line}` line:\n{}", s.log());
    }
}

/// The KV-cache pages of finished sequences are given back while the server is idle: they
/// had stayed resident until the next request's first step (1.9 GB after an n = 16 request).
#[test]
fn an_idle_server_gives_back_the_kv_memory_of_finished_requests() {
    let Some(a) = assets() else { return };
    let s = Server::start(&a.model_args());
    let Some(before) = s.rss_mib() else { return };
    // 16 sequences of ~1,200 prompt tokens: about 850 MB of SmolLM2's keys and values
    // (30 layers x 2 x 3 heads x 64 x 4 bytes a token).
    let prompt = "The cat sat on the mat and looked at the dog. ".repeat(110);
    let body = json!({"model": "boolq", "prompt": prompt, "max_tokens": 2, "n": 16,
                      "ignore_eos": true, "temperature": 0});
    s.ok("/v1/completions", &body);
    let t0 = Instant::now();
    let mut after = s.rss_mib().unwrap();
    while after - before > 250.0 && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
        after = s.rss_mib().unwrap();
    }
    assert!(
        after - before < 250.0,
        "resident memory {before:.0} MiB before the request, {after:.0} MiB idle after it"
    );
}

/// `--api-key`: every endpoint but /health needs the bearer key.
#[test]
fn api_key_guards_everything_but_health() {
    let Some(a) = assets() else { return };
    let mut args = a.model_args();
    args.extend(["--api-key", "s3cret"].map(String::from));
    let s = Server::start(&args);
    assert_eq!(s.get("/health").status, 200);
    // Without --allowed-origins no page may read an answer: no CORS header, and a preflight
    // is an ordinary request (here refused for its missing key).
    let (status, h, _) = raw_answer(
        &s,
        "OPTIONS /v1/models HTTP/1.1\r\nHost: x\r\nOrigin: http://localhost:3000\r\nAccess-Control-Request-Method: GET\r\n",
        "",
    );
    assert_eq!(status, 401);
    assert_eq!(header(&h, "access-control-allow-origin"), None, "{h:?}");
    for path in ["/v1/models", "/metrics"] {
        let r = s.get(path);
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.json()["error"]["type"], "authentication_error");
        assert_eq!(s.get_auth(path, "wrong").status, 401);
        assert_eq!(s.get_auth(path, "s3cret").status, 200);
    }
    let body =
        json!({"model": "boolq", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(s.post("/v1/chat/completions", &body).status, 401);
    let r = s.post_raw(
        "/v1/chat/completions",
        body.to_string().as_bytes(),
        &[("Authorization", "Bearer s3cret")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // The scheme name is case-insensitive (RFC 9110).
    let r = s.post_raw(
        "/v1/chat/completions",
        body.to_string().as_bytes(),
        &[("Authorization", "bearer s3cret")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // A compressed body is refused naming the header (it had been "must be a JSON object");
    // `identity` is no encoding.
    for (encoding, status) in [("gzip", 415), ("identity", 200)] {
        let r = s.post_raw(
            "/v1/chat/completions",
            body.to_string().as_bytes(),
            &[
                ("Authorization", "Bearer s3cret"),
                ("Content-Encoding", encoding),
            ],
        );
        assert_eq!(r.status, status, "{}", r.body);
        if status == 415 {
            let m = r.json()["error"]["message"].to_string();
            assert!(
                m.contains("Content-Encoding `gzip` is not supported"),
                "{m}"
            );
        }
    }
    // A POST body must be labelled JSON: what a page of another site may send without a
    // preflight (text/plain, a form, no type) is refused before it runs.
    let b = body.to_string();
    for (ty, status) in [
        (Some("text/plain;charset=UTF-8"), 415),
        (Some("application/x-www-form-urlencoded"), 415),
        (None, 415),
        (Some("Application/JSON; charset=utf-8"), 200),
        (Some("application/vnd.api+json"), 200),
    ] {
        let ty = ty.map_or(String::new(), |t| format!("Content-Type: {t}\r\n"));
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n{ty}"
        );
        let (got, _, answer) = raw_answer(&s, &head, &b);
        assert_eq!(got, status, "{ty}: {answer}");
        if status == 415 {
            assert!(
                answer.contains("Content-Type must be application/json"),
                "{answer}"
            );
        }
    }
}

/// A raw request's status and headers (names lowercased), and its body.
fn raw_answer(s: &Server, head: &str, body: &str) -> (u16, Vec<(String, String)>, String) {
    let raw = exchange(
        s,
        format!(
            "{head}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    raw_response(&raw)
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// `--allowed-origins`: a browser's preflight is answered without the key (it carries none),
/// the page's origin is named on every answer, errors included (else the page cannot read
/// them), streams too; another origin is named nowhere.
#[test]
fn allowed_origins_answer_browsers_preflights_and_requests() {
    let Some(a) = assets() else { return };
    let mut args = a.model_args();
    args.extend(
        [
            "--api-key",
            "k",
            "--allowed-origins",
            "HTTP://LocalHost:3000,https://app.example",
        ]
        .map(String::from),
    );
    let s = Server::start(&args);
    assert!(
        s.log_has("CORS: browser pages from http://localhost:3000, https://app.example"),
        "{}",
        s.log()
    );
    let preflight = |origin: &str| {
        raw_answer(
            &s,
            &format!("OPTIONS /v1/chat/completions HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization, content-type, x-stainless-os\r\n"),
            "",
        )
    };
    let (status, h, _) = preflight("http://localhost:3000");
    assert_eq!(status, 200, "{h:?}");
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    assert!(
        header(&h, "access-control-allow-methods").is_some_and(|m| m.contains("POST")),
        "{h:?}"
    );
    assert_eq!(
        header(&h, "access-control-allow-headers"),
        Some("authorization, content-type, x-stainless-os")
    );
    assert_eq!(header(&h, "access-control-max-age"), Some("600"));
    let (_, h, _) = preflight("http://localhost:3001");
    assert_eq!(header(&h, "access-control-allow-origin"), None, "{h:?}");

    let body =
        json!({"model": "boolq", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]})
            .to_string();
    let post = |origin: &str, key: bool, body: &str| {
        let auth = if key {
            "Authorization: Bearer k\r\n"
        } else {
            ""
        };
        raw_answer(
            &s,
            &format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nContent-Type: application/json\r\n{auth}"),
            body,
        )
    };
    for (key, want) in [(false, 401), (true, 200)] {
        let (status, h, b) = post("https://app.example", key, &body);
        assert_eq!(status, want, "{b}");
        assert_eq!(
            header(&h, "access-control-allow-origin"),
            Some("https://app.example"),
            "{h:?}"
        );
        assert!(
            header(&h, "access-control-expose-headers").is_some_and(|e| e.contains("x-request-id")),
            "{h:?}"
        );
    }
    let (status, h, b) = post("http://localhost:3001", true, &body);
    assert_eq!(status, 200, "{b}");
    assert_eq!(header(&h, "access-control-allow-origin"), None, "{h:?}");
    let streamed = json!({"model": "boolq", "max_tokens": 2, "stream": true, "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let (status, h, b) = post("http://localhost:3000", true, &streamed);
    assert_eq!(status, 200, "{b}");
    assert!(b.contains("[DONE]"), "{b}");
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        Some("http://localhost:3000")
    );
}
