//! `dlp-run serve` end to end, on the CPU with SmolLM2 and the shared task adapters: answers
//! equal `generate` and `score`, 32 concurrent clients with 32 mixtures each get what they
//! would get alone, runtime adapters, disconnects, the queue limit, the API key, shutdown,
//! and (with the `openai` package) the official Python client and the load tool.

mod bad_requests;
mod connections;
mod format_limits;
mod harness;
mod openai_fields;
mod outputs;
mod partial_characters;
mod prefix_sharing;
mod python;
mod responses;
mod runtime_adapters;
mod sampling;
mod shutdown;
mod streaming;
mod tokenize;
mod tools;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use harness::{assets, bin, merged, question, streamed_text, Server};
use serde_json::{json, Value};

/// The text of choice 0 of a non-streamed response.
fn text_of(v: &Value) -> String {
    let c = &v["choices"][0];
    c["message"]["content"]
        .as_str()
        .or(c["text"].as_str())
        .unwrap_or_else(|| panic!("no text in {v}"))
        .to_string()
}

/// `dlp-run generate --json` with the server's model and adapters plus `extra`; its texts.
fn generate(a: &harness::Assets, extra: &[&str]) -> Value {
    let out = Command::new(bin())
        .arg("generate")
        .args(a.model_args())
        .args(["--json", "--max-tokens", "24"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "generate {extra:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Greedy answers equal `dlp-run generate` byte for byte (one adapter, a mixture, the base
/// model, the router per request and per sentence), and echoed prompt log-probabilities equal
/// those of `dlp-run score`'s logits within 1e-4.
#[test]
fn answers_equal_generate_and_score() {
    let Some(a) = assets() else { return };
    let router = a.router().to_str().unwrap().to_string();
    let mut args = a.model_args();
    args.extend(["--router".into(), router.clone()]);
    let s = Server::start(&args);
    let q = question(&a.data, "boolq", 0);
    let two = format!(
        "{} {}",
        question(&a.data, "piqa", 1),
        question(&a.data, "gsm8k", 2)
    );
    let chat = |model: &str, content: &str, extra: Value| {
        let body = merged(
            json!({"model": model, "temperature": 0, "max_tokens": 24,
                              "messages": [{"role": "user", "content": content}]}),
            extra,
        );
        s.ok("/v1/chat/completions", &body)
    };
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            chat("boolq", &q, json!({})),
            vec!["--mix", "boolq=1", "--chat", "--prompt", &q],
        ),
        (
            chat(
                "auto",
                &q,
                json!({"lora_mixture": {"boolq": 0.6, "piqa": 0.4}}),
            ),
            vec!["--mix", "boolq=0.6,piqa=0.4", "--chat", "--prompt", &q],
        ),
        (
            chat("auto", &two, json!({})),
            vec!["--router", &router, "--chat", "--prompt", &two],
        ),
        (
            chat("auto", &two, json!({"dlp_route_by": "sentence"})),
            vec![
                "--router",
                &router,
                "--route-by",
                "sentence",
                "--chat",
                "--prompt",
                &two,
            ],
        ),
        (
            s.ok(
                "/v1/completions",
                &json!({"model": "SmolLM2-135M-Instruct.Q4_1", "prompt": "The capital of France is",
                        "temperature": 0, "max_tokens": 24}),
            ),
            vec!["--prompt", "The capital of France is"],
        ),
        (
            s.ok(
                "/v1/completions",
                &json!({"model": "SmolLM2-135M-Instruct.Q4_1", "prompt": "The capital of France is",
                        "temperature": 0, "max_tokens": 24, "presence_penalty": 1.5,
                        "frequency_penalty": 0.7, "logit_bias": {"504": 4, "13": -2.5}}),
            ),
            vec![
                "--prompt",
                "The capital of France is",
                "--presence-penalty",
                "1.5",
                "--frequency-penalty",
                "0.7",
                "--logit-bias",
                "504=4",
                "--logit-bias",
                "13=-2.5",
            ],
        ),
        (
            chat(
                "boolq",
                &q,
                json!({"response_format": {"type": "json_schema", "json_schema":
                {"name": "a", "schema": {"type": "object", "properties": {"answer": {"type": "boolean"}},
                                         "required": ["answer"]}}}}),
            ),
            vec![
                "--mix",
                "boolq=1",
                "--chat",
                "--prompt",
                &q,
                "--json-schema",
                r#"{"type": "object", "properties": {"answer": {"type": "boolean"}}, "required": ["answer"]}"#,
            ],
        ),
    ];
    for (served, gen_args) in &cases {
        let g = generate(&a, gen_args);
        let want = &g["results"][0];
        assert_eq!(
            text_of(served),
            want["text"].as_str().unwrap(),
            "{gen_args:?}"
        );
        // The same routing: every segment's first token and mixture.
        let segs = served["dlp"]["choices"][0]["segments"].as_array().unwrap();
        let gsegs = want["segments"].as_array().unwrap();
        assert_eq!(segs.len(), gsegs.len(), "{served}\n{want}");
        for (x, y) in segs.iter().zip(gsegs) {
            assert_eq!(x["first_token"], y["first_token"]);
            let xm: Vec<(String, f64)> = x["mixture"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["adapter"].as_str().unwrap().into(),
                        e["weight"].as_f64().unwrap(),
                    )
                })
                .collect();
            let ym: Vec<(String, f64)> = serde_json::from_value(y["mixture"].clone()).unwrap();
            assert_eq!(xm.len(), ym.len());
            for (p, q) in xm.iter().zip(&ym) {
                assert_eq!(p.0, q.0);
                assert!((p.1 - q.1).abs() < 1e-6, "{xm:?} vs {ym:?}");
            }
        }
        assert_eq!(
            served["usage"]["completion_tokens"], want["completion_tokens"],
            "{gen_args:?}"
        );
    }
    // The sentence-routed case really routed by sentence.
    let sent = &cases[3].0["dlp"];
    assert_eq!(sent["route_by"], "sentence");
    assert!(
        sent["choices"][0]["segments"].as_array().unwrap().len() >= 2,
        "{sent}"
    );
    // A token-id prompt is split into sentences as its text is (it had been routed as one
    // piece while the response said "sentence").
    let ids = s.ok("/tokenize", &json!({"model": "auto", "prompt": two}))["tokens"].clone();
    let routed = |prompt: &Value| {
        let body = json!({"model": "auto", "dlp_route_by": "sentence", "prompt": prompt,
                          "max_tokens": 1, "temperature": 0});
        s.ok("/v1/completions", &body)["dlp"]["choices"][0]["segments"].clone()
    };
    let (by_text, by_ids) = (routed(&json!(two)), routed(&ids));
    assert!(by_text.as_array().unwrap().len() >= 2, "{by_text}");
    assert_eq!(by_text, by_ids);

    // Echoed prompt log-probabilities against `score`'s logits.
    let ids: Vec<u32> = vec![504, 3575, 282, 4649, 314, 253, 1345, 30];
    let served = s.ok(
        "/v1/completions",
        &json!({"model": "boolq", "prompt": ids, "echo": true, "max_tokens": 0, "logprobs": 1}),
    );
    let lp = &served["choices"][0]["logprobs"];
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("l.safetensors");
    let ids_arg = ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    let o = Command::new(bin())
        .arg("score")
        .args(a.model_args())
        .args([
            "--ids",
            &ids_arg,
            "--mix",
            "boolq=1",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let logits: Vec<f32> =
        bytemuck::cast_slice::<u8, f32>(st.tensor("logits").unwrap().data()).to_vec();
    let vocab = logits.len() / ids.len();
    assert!(lp["token_logprobs"][0].is_null());
    for i in 1..ids.len() {
        let row = &logits[(i - 1) * vocab..i * vocab];
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = max
            + row
                .iter()
                .map(|&x| (x as f64 - max).exp())
                .sum::<f64>()
                .ln();
        let want = row[ids[i] as usize] as f64 - lse;
        let got = lp["token_logprobs"][i].as_f64().unwrap();
        assert!(
            (got - want).abs() < 1e-4,
            "token {i}: served {got}, score {want}"
        );
    }
    assert_eq!(
        lp["tokens"].as_array().unwrap().len(),
        ids.len(),
        "echo with max_tokens 0 returns the prompt tokens only"
    );
}

/// One request of the concurrency test: a dev question, its own mixture, greedy, with top-2
/// log-probabilities (to tell a tie from a real difference).
fn mixed_request(a: &harness::Assets, i: usize, stream: bool) -> Value {
    let tasks = ["boolq", "piqa", "arc_easy", "social_iqa"];
    let q = question(&a.data, tasks[i % 4], i / 4);
    let (x, y, z) = (
        harness::TASKS[i % 8],
        harness::TASKS[(i + 3) % 8],
        harness::TASKS[(i + 5) % 8],
    );
    let w = (i as f64 + 1.0) / 34.0;
    json!({"model": "auto", "temperature": 0, "max_tokens": 32, "stream": stream,
           "logprobs": true, "top_logprobs": 2,
           "messages": [{"role": "user", "content": q}],
           "lora_mixture": {x: w, y: 1.0 - w, z: 0.25}})
}

/// The generated tokens and top-2 alternatives of a chat response (streamed or not).
fn chat_tokens(events: &[Value]) -> Vec<(String, f64, f64)> {
    let mut out = Vec::new();
    for e in events {
        for c in e["choices"].as_array().into_iter().flatten() {
            for t in c["logprobs"]["content"].as_array().into_iter().flatten() {
                let tops: Vec<f64> = t["top_logprobs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x["logprob"].as_f64().unwrap())
                    .collect();
                out.push((t["token"].as_str().unwrap().to_string(), tops[0], tops[1]));
            }
        }
    }
    out
}

/// 32 concurrent clients, 32 different three-adapter mixtures, half of them streaming: every
/// answer equals the same request served alone, and carries its own mixture. (Batches change
/// the order of floating-point sums, so logits move by about 1e-5; a differing text is
/// accepted only where the request alone had two tokens within 1e-4 of each other: a tie.)
#[test]
fn concurrent_mixtures_equal_alone() {
    let Some(a) = assets() else { return };
    let s = Server::start(&a.model_args());
    let n = 32;
    let together: Vec<(Value, Vec<Value>)> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (s, a) = (&s, &a);
                sc.spawn(move || {
                    let stream = i % 2 == 0;
                    let body = mixed_request(a, i, stream);
                    if stream {
                        (body.clone(), s.stream("/v1/chat/completions", &body))
                    } else {
                        (body.clone(), vec![s.ok("/v1/chat/completions", &body)])
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ties = 0;
    for (i, (body, events)) in together.iter().enumerate() {
        let text = if events.len() == 1 {
            text_of(&events[0])
        } else {
            assert_eq!(
                events.last().unwrap(),
                "[DONE]",
                "request {i}: stream not ended"
            );
            streamed_text(events, 0)
        };
        // Its own mixture, nobody else's.
        let last = events
            .iter()
            .rev()
            .find(|e| e.get("dlp").is_some())
            .unwrap_or_else(|| panic!("request {i}: no dlp object"));
        let mix = &last["dlp"]["choices"][0]["segments"][0]["mixture"];
        for e in mix.as_array().unwrap() {
            let w = body["lora_mixture"][e["adapter"].as_str().unwrap()]
                .as_f64()
                .unwrap();
            // The weight as the server holds it (f32), written in its shortest form (not
            // 0.699999988079071 for 0.7).
            let held: f64 = (w as f32).to_string().parse().unwrap();
            assert_eq!(e["weight"].as_f64().unwrap(), held, "request {i}: {mix}");
        }
        assert_eq!(mix.as_array().unwrap().len(), 3, "request {i}: {mix}");
        let mut alone_body = body.clone();
        alone_body["stream"] = json!(false);
        let alone = s.ok("/v1/chat/completions", &alone_body);
        let alone_text = text_of(&alone);
        if text != alone_text {
            let (x, y) = (
                chat_tokens(events),
                chat_tokens(std::slice::from_ref(&alone)),
            );
            let k = x.iter().zip(&y).position(|(p, q)| p.0 != q.0).unwrap_or(0);
            let margin = y[k].1 - y[k].2;
            assert!(
                margin < 1e-4,
                "request {i}: served together {text:?}, alone {alone_text:?}; they part at token {k} where the margin alone is {margin}"
            );
            ties += 1;
        }
    }
    eprintln!(
        "{n} concurrent requests: {} identical, {ties} parted at a tie",
        n - ties
    );
    assert_eq!(s.metric("dlp_running_sequences"), 0.0);
}

/// With every slot busy and the queue full, a request gets 429 with Retry-After; once the
/// load is gone, requests are served again; one larger than the whole room gets 400.
#[test]
fn full_queue_answers_429() {
    let Some(a) = assets() else { return };
    let mut args = a.model_args();
    args.extend(["--max-concurrent", "2", "--max-queue", "1"].map(String::from));
    let s = Server::start(&args);
    // `ignore_eos`: the boolq adapter answers in about 6 tokens, which could end a request
    // before the queue is seen full.
    let long = json!({"model": "boolq", "max_tokens": 3000, "temperature": 0.8, "stream": true,
                      "ignore_eos": true,
                      "messages": [{"role": "user", "content": "Tell a long story."}]})
    .to_string();
    let mut conns = Vec::new();
    for _ in 0..3 {
        let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        write!(
            c,
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{long}",
            long.len()
        )
        .unwrap();
        conns.push(c);
    }
    let t0 = Instant::now();
    while s.metric("dlp_running_sequences") < 2.0 || s.metric("dlp_queue_length") < 1.0 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{}",
            s.get("/metrics").body
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = s.post(
        "/v1/chat/completions",
        &json!({"model": "boolq", "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.retry_after.as_deref(), Some("1"));
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("busy"));
    drop(conns);
    let t0 = Instant::now();
    while s.metric("dlp_running_sequences") > 0.0 || s.metric("dlp_queue_length") > 0.0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "still busy after the clients left:\n{}",
            s.get("/metrics").body
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = s.ok(
        "/v1/chat/completions",
        &json!({"model": "boolq", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r["choices"][0]["index"], 0);
    // More sequences than the whole room (2 running + 1 queued) never fit: 400, not 429.
    let r = s.post(
        "/v1/chat/completions",
        &json!({"model": "boolq", "n": 4, "max_tokens": 1,
                "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"]["param"], "n", "{}", r.body);
}

/// Content as a list of text parts (what OpenAI clients send) reads as the parts' texts joined
/// by newlines, under SmolLM2's template, which concatenates content as a string.
#[test]
fn text_parts_read_as_their_joined_text() {
    let Some(a) = assets() else { return };
    let s = Server::start(&a.model_args());
    let ask = |content: Value| {
        let body = json!({"model": "boolq", "max_tokens": 6, "temperature": 0, "logprobs": true,
                          "messages": [{"role": "user", "content": content}]});
        s.ok("/v1/chat/completions", &body)
    };
    let parts = ask(
        json!([{"type": "text", "text": "Please answer with true or false:"},
                           {"type": "text", "text": "is the sun a star?"}]),
    );
    let joined = ask(json!(
        "Please answer with true or false:\nis the sun a star?"
    ));
    assert_eq!(parts["choices"], joined["choices"]);
    assert_eq!(parts["usage"], joined["usage"]);
}

/// An adapter given weight 0 in `lora_mixture` does no work: it is not counted in
/// `dlp_adapter_routed_total` (it was).
#[test]
fn zero_weight_adapters_are_not_counted_as_routed() {
    let Some(a) = assets() else { return };
    let s = Server::start(&a.model_args());
    let routed = |n: &str| s.count(&format!("dlp_adapter_routed_total{{adapter=\"{n}\"}}"));
    let body = json!({"model": "auto", "max_tokens": 2, "temperature": 0,
                      "lora_mixture": {"boolq": 1.0, "piqa": 0.0},
                      "messages": [{"role": "user", "content": "Is the sun a star?"}]});
    s.ok("/v1/chat/completions", &body);
    assert_eq!((routed("boolq"), routed("piqa")), (1.0, 0.0));
}
