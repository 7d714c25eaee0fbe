//! vLLM's output fields: `stop_reason`, `include_stop_str_in_output`, `skip_special_tokens`,
//! `prompt_logprobs`, `return_tokens_as_token_ids`, `truncate_prompt_tokens`, and usage that
//! counts the end token.

use serde_json::{json, Value};

use crate::harness::{assets, merged, Server};

const MODEL: &str = "SmolLM2-135M-Instruct.Q4_1";

/// What ended an answer (`stop_reason`), the text with the stop kept, special tokens shown,
/// and `completion_tokens` counting the end token; `generate` says the same.
#[test]
fn stop_reason_include_stop_and_special_tokens() {
    let Some(a) = assets() else { return };
    let s = Server::start(&a.model_args());
    let complete = |extra: Value| {
        let body = merged(
            json!({"model": MODEL, "prompt": "The capital of France is", "temperature": 0,
                   "max_tokens": 8}),
            extra,
        );
        s.ok("/v1/completions", &body)
    };
    let plain = complete(json!({}));
    assert!(plain["choices"][0]["text"]
        .as_str()
        .unwrap()
        .starts_with(" Paris."));
    assert_eq!(plain["choices"][0]["finish_reason"], "length");
    assert_eq!(plain["choices"][0]["stop_reason"], Value::Null);
    assert_eq!(plain["usage"]["completion_tokens"], 8);

    let v = complete(json!({"stop": ["x", "."]}));
    let c = &v["choices"][0];
    assert_eq!(
        (&c["text"], &c["stop_reason"]),
        (&json!(" Paris"), &json!("."))
    );
    // " Paris" and "." were sampled.
    assert_eq!(v["usage"]["completion_tokens"], 2, "{v}");
    let v = complete(json!({"stop": ["."], "include_stop_str_in_output": true}));
    let c = &v["choices"][0];
    assert_eq!(
        (&c["text"], &c["stop_reason"]),
        (&json!(" Paris."), &json!("."))
    );
    // A stop string inside a token: the text ends with it, not with the token's rest.
    let v = complete(json!({"stop": ["ari"], "include_stop_str_in_output": true}));
    assert_eq!(v["choices"][0]["text"], " Pari", "{v}");

    let dot = s.ok(
        "/tokenize",
        &json!({"prompt": ".", "add_special_tokens": false}),
    )["tokens"][0]
        .clone();
    let v = complete(json!({"stop_token_ids": [dot]}));
    let c = &v["choices"][0];
    assert_eq!((&c["text"], &c["stop_reason"]), (&json!(" Paris"), &dot));
    assert_eq!(v["usage"]["completion_tokens"], 2, "{v}");
    // The stop token is text with `include_stop_str_in_output` (vLLM's rule for tokens too).
    let v = complete(json!({"stop_token_ids": [dot], "include_stop_str_in_output": true}));
    assert_eq!(v["choices"][0]["text"], " Paris.", "{v}");

    // End-of-sequence: no stop_reason (also when listed in stop_token_ids, as vLLM checks EOS
    // first); counted; shown only as asked.
    let chat = |extra: Value| {
        let body = merged(
            json!({"model": MODEL, "temperature": 0, "max_tokens": 8,
                   "messages": [{"role": "user", "content": "Answer with one word, yes or no: is the sky blue?"}]}),
            extra,
        );
        s.ok("/v1/chat/completions", &body)
    };
    let short = chat(json!({}));
    let c = &short["choices"][0];
    let word = c["message"]["content"].as_str().unwrap().to_string();
    assert!(!word.is_empty() && !word.contains('<'), "{short}");
    assert_eq!(
        (&c["finish_reason"], &c["stop_reason"]),
        (&json!("stop"), &Value::Null)
    );
    assert_eq!(short["usage"]["completion_tokens"], 2, "{short}");
    let im_end = s.ok(
        "/tokenize",
        &json!({"prompt": "<|im_end|>", "add_special_tokens": false}),
    )["tokens"][0]
        .clone();
    // Masks that leave no token are the request's error (a 400 naming the cause), not a
    // broken forward pass.
    for (path, body) in [
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "max_tokens": 4, "min_tokens": 2,
            "allowed_token_ids": [im_end], "messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": "hi", "max_tokens": 4,
            "allowed_token_ids": [28, 29], "response_format": {"type": "json_object"}}),
        ),
    ] {
        let a = s.post(path, &body);
        assert_eq!(a.status, 400, "{}", a.body);
        let v: Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(v["error"]["code"], "no_allowed_token", "{v}");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no token could be sampled"));
    }
    // Streamed with n: 3, all three choices fail in the same step: one error ends the stream,
    // as vLLM's does (each choice had sent its own).
    let events = s.stream(
        "/v1/chat/completions",
        &json!({"model": MODEL, "max_tokens": 4, "min_tokens": 2, "n": 3, "stream": true,
                "allowed_token_ids": [im_end], "messages": [{"role": "user", "content": "hi"}]}),
    );
    let errors: Vec<&Value> = events.iter().filter(|e| e.get("error").is_some()).collect();
    assert_eq!(errors.len(), 1, "{events:?}");
    assert_eq!(errors[0]["error"]["code"], "no_allowed_token");
    assert_eq!(&events[events.len() - 2], errors[0], "{events:?}");
    assert_eq!(events.last(), Some(&json!("[DONE]")), "{events:?}");
    let listed = chat(json!({"stop_token_ids": [im_end]}));
    assert_eq!(listed["choices"][0]["stop_reason"], Value::Null, "{listed}");
    assert_eq!(listed["choices"][0]["message"]["content"], word.as_str());
    let kept = chat(json!({"include_stop_str_in_output": true}));
    assert_eq!(kept["choices"][0]["message"]["content"], word.as_str());
    let shown = chat(json!({"include_stop_str_in_output": true, "skip_special_tokens": false}));
    assert_eq!(
        shown["choices"][0]["message"]["content"],
        format!("{word}<|im_end|>")
    );
    // Streamed: the final chunk says why, and the usage counts the end token.
    let events = s.stream(
        "/v1/chat/completions",
        &merged(
            json!({"model": MODEL, "temperature": 0, "max_tokens": 8, "stream": true,
                   "stream_options": {"include_usage": true},
                   "messages": [{"role": "user", "content": "Answer with one word, yes or no: is the sky blue?"}]}),
            json!({"stop": [word.clone()], "include_stop_str_in_output": true}),
        ),
    );
    let finals: Vec<&Value> = (events.iter())
        .filter(|e| e["choices"][0]["finish_reason"].is_string())
        .collect();
    assert_eq!(finals.len(), 1, "{events:?}");
    assert_eq!(finals[0]["choices"][0]["stop_reason"], word.as_str());
    assert_eq!(crate::harness::streamed_text(&events, 0), word);

    // Special tokens the model writes on a raw prompt: dropped, or shown when asked.
    let raw = |extra: Value| {
        let body = merged(
            json!({"model": MODEL, "prompt": "<|im_start|>user\nWhat is 2+2?<|im_end|>\n",
                   "temperature": 0, "max_tokens": 12}),
            extra,
        );
        s.ok("/v1/completions", &body)["choices"][0]["text"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let skipped = raw(json!({}));
    let shown = raw(json!({"skip_special_tokens": false, "spaces_between_special_tokens": true}));
    assert!(shown.starts_with("<|im_start|>assistant"), "{shown:?}");
    assert_eq!(shown.replace("<|im_start|>", ""), skipped);
    // Text offsets index the text as returned: a skipped special token takes no room.
    let offsets = |extra: Value| {
        let body = merged(
            json!({"model": MODEL, "prompt": "<|im_start|>user\nWhat is 2+2?<|im_end|>\n",
                   "temperature": 0, "max_tokens": 3, "logprobs": 0}),
            extra,
        );
        s.ok("/v1/completions", &body)["choices"][0]["logprobs"]["text_offset"].clone()
    };
    assert_eq!(offsets(json!({}))[1], 0);
    assert_eq!(
        offsets(json!({"skip_special_tokens": false}))[1],
        "<|im_start|>".len()
    );

    let g = crate::generate(
        &a,
        &[
            "--chat",
            "--prompt",
            "Answer with one word, yes or no: is the sky blue?",
            "--include-stop-str",
            "--show-special-tokens",
        ],
    );
    let r = &g["results"][0];
    assert_eq!(r["text"], format!("{word}<|im_end|>"), "{g}");
    assert_eq!(
        (&r["completion_tokens"], &r["stop_reason"]),
        (&json!(2), &Value::Null)
    );
}

/// `prompt_logprobs` agree with echo's logprobs and rank their token; token ids as text;
/// `truncate_prompt_tokens` keeps the prompt's end (and the routed segments over it).
#[test]
fn prompt_logprobs_token_ids_and_truncation() {
    let Some(a) = assets() else { return };
    let mut args = a.model_args();
    args.extend(["--router".to_string(), a.router().display().to_string()]);
    args.extend(["--max-context".to_string(), "256".to_string()]);
    let s = Server::start(&args);
    let prompt = "The capital of France is";
    let v = s.ok(
        "/v1/completions",
        &json!({"model": MODEL, "prompt": prompt, "max_tokens": 1, "temperature": 0,
                "echo": true, "logprobs": 1, "prompt_logprobs": 3}),
    );
    let c = &v["choices"][0];
    let echo = &c["logprobs"];
    let plps = c["prompt_logprobs"].as_array().unwrap();
    let ids = s.ok("/tokenize", &json!({"prompt": prompt}))["tokens"].clone();
    let ids: Vec<u64> = ids
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    assert_eq!(plps.len(), ids.len(), "{v}");
    assert_eq!(plps[0], Value::Null);
    for (i, &id) in ids.iter().enumerate().skip(1) {
        let m = plps[i].as_object().unwrap();
        let own = &m[&id.to_string()];
        let lp = own["logprob"].as_f64().unwrap();
        assert_eq!(lp, echo["token_logprobs"][i].as_f64().unwrap(), "{v}");
        // The token, and the three best (it may be one of them).
        let rank = own["rank"].as_u64().unwrap() as usize;
        assert_eq!(m.len(), if rank <= 3 { 3 } else { 4 }, "{v}");
        let mut ranked: Vec<(u64, f64)> = (m.values())
            .map(|e| (e["rank"].as_u64().unwrap(), e["logprob"].as_f64().unwrap()))
            .collect();
        ranked.sort_by_key(|r| r.0);
        assert_eq!(
            ranked[..3].iter().map(|r| r.0).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert!(ranked.windows(2).all(|w| w[0].1 >= w[1].1), "{v}");
        // Echo's own list keeps to its `logprobs` (1) plus the token.
        assert!(echo["top_logprobs"][i].as_object().unwrap().len() <= 2);
    }
    // Chat: once, at the top; `return_tokens_as_token_ids` names tokens by id.
    let v = s.ok(
        "/v1/chat/completions",
        &json!({"model": MODEL, "max_tokens": 2, "temperature": 0, "prompt_logprobs": 0,
                "logprobs": true, "top_logprobs": 1, "return_tokens_as_token_ids": true,
                "messages": [{"role": "user", "content": "hi"}]}),
    );
    let plps = v["prompt_logprobs"].as_array().unwrap();
    assert_eq!(
        plps.len() as u64,
        v["usage"]["prompt_tokens"].as_u64().unwrap()
    );
    assert!(
        plps[1..].iter().all(|m| m.as_object().unwrap().len() == 1),
        "{v}"
    );
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    let text: String = content
        .iter()
        .map(|e| {
            let t = e["token"].as_str().unwrap();
            let id = t.strip_prefix("token_id:").unwrap();
            assert!(id.parse::<u32>().is_ok(), "{t}");
            let bytes: Vec<u8> = (e["bytes"].as_array().unwrap().iter())
                .map(|b| b.as_u64().unwrap() as u8)
                .collect();
            assert_eq!(e["top_logprobs"][0]["token"], t, "{v}");
            String::from_utf8(bytes).unwrap()
        })
        .collect();
    assert_eq!(text, v["choices"][0]["message"]["content"], "{v}");

    // Truncation: the same answer and echo as the kept tokens alone.
    let long = "Once upon a time there was a cat. The capital of France is";
    let tokens = |p: &str| -> Vec<u64> {
        let v = s.ok("/tokenize", &json!({"prompt": p}));
        (v["tokens"].as_array().unwrap().iter())
            .map(|t| t.as_u64().unwrap())
            .collect()
    };
    let long_ids = tokens(long);
    let kept = long_ids[long_ids.len() - 5..].to_vec();
    let complete = |prompt: Value, truncate: Option<usize>| {
        let mut body = json!({"model": MODEL, "prompt": prompt, "max_tokens": 4,
                              "temperature": 0, "echo": true});
        if let Some(k) = truncate {
            body["truncate_prompt_tokens"] = json!(k);
        }
        let v = s.ok("/v1/completions", &body);
        (v["choices"][0]["text"].clone(), v["usage"].clone())
    };
    let alone = complete(json!(kept), None);
    assert_eq!(alone.1["prompt_tokens"], 5);
    assert!(alone
        .0
        .as_str()
        .unwrap()
        .starts_with(" The capital of France is"));
    assert_eq!(complete(json!(long), Some(5)), alone);
    assert_eq!(
        complete(json!([vec![1, 2, 3], kept.clone()].concat()), Some(5)),
        alone
    );
    // Shorter than the cut: unchanged.
    assert_eq!(complete(json!(kept), Some(50)), alone);
    // A cut inside a character: the echo shows what the kept tokens hold, as a token prompt's.
    let emoji = "🤖👍日本語";
    let ids = tokens(emoji);
    for k in 1..ids.len() {
        let tail = ids[ids.len() - k..].to_vec();
        assert_eq!(
            complete(json!(emoji), Some(k)),
            complete(json!(tail), None),
            "{k}"
        );
    }
    // Past the context: refused, or cut to fit with -1.
    let huge = "word ".repeat(600);
    let r = s.post(
        "/v1/completions",
        &json!({"model": MODEL, "prompt": huge, "max_tokens": 1}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let v = s.ok(
        "/v1/completions",
        &json!({"model": MODEL, "prompt": huge, "truncate_prompt_tokens": -1}),
    );
    // Room for the default 16 new tokens.
    assert_eq!(v["usage"]["prompt_tokens"], 240, "{v}");
    let v = s.ok(
        "/v1/completions",
        &json!({"model": MODEL, "prompt": huge, "truncate_prompt_tokens": -1, "max_tokens": 6}),
    );
    assert_eq!(v["usage"]["prompt_tokens"], 250, "{v}");

    // Routed by sentence: the segments over the kept tokens, moved to their new places.
    let story =
        "The cat sat on the mat. Water boils at one hundred degrees. What is seven times six?";
    let routed = |extra: Value| {
        let body = merged(
            json!({"model": "auto", "dlp_route_by": "sentence", "prompt": story,
                   "max_tokens": 1, "temperature": 0}),
            extra,
        );
        let v = s.ok("/v1/completions", &body);
        let segs = v["dlp"]["choices"][0]["segments"]
            .as_array()
            .unwrap()
            .clone();
        (v["usage"]["prompt_tokens"].as_u64().unwrap() as usize, segs)
    };
    let (n, whole) = routed(json!({}));
    assert!(whole.len() >= 3, "{whole:?}");
    let second = whole[1]["first_token"].as_u64().unwrap() as usize;
    let keep = n - second - 2;
    let (k, kept) = routed(json!({"truncate_prompt_tokens": keep}));
    assert_eq!(k, keep);
    let cut = n - keep;
    let want: Vec<(usize, Value)> = (whole.iter())
        .filter(|s| s["source"] == "prompt")
        .map(|s| {
            (
                s["first_token"].as_u64().unwrap() as usize,
                s["mixture"].clone(),
            )
        })
        .filter(|(f, _)| *f > second)
        .map(|(f, m)| (f - cut, m))
        .collect();
    let got: Vec<(usize, Value)> = (kept.iter())
        .filter(|s| s["source"] == "prompt")
        .map(|s| {
            (
                s["first_token"].as_u64().unwrap() as usize,
                s["mixture"].clone(),
            )
        })
        .collect();
    assert_eq!(got[0], (0, whole[1]["mixture"].clone()), "{kept:?}");
    assert_eq!(got[1..], want[..], "{whole:?} -> {kept:?}");
}

/// A stop string that ends at the token which also ends a sentence: generation stops there,
/// so the mixture routed from that sentence is never used. It is neither reported as a
/// segment nor counted in `dlp_adapter_routed_total` (it was counted, and not reported).
#[test]
fn a_stop_at_a_sentence_end_routes_nothing_after_it() {
    let Some(a) = assets() else { return };
    let mut args = a.model_args();
    args.extend(["--router".into(), a.router().display().to_string()]);
    let s = Server::start(&args);
    // `ignore_eos`: the adapters answer in one short sentence, which routes nothing after it.
    let body = json!({"model": "auto", "dlp_route_by": "sentence", "seed": 1, "temperature": 0.8,
                      "max_tokens": 60, "logprobs": 0, "ignore_eos": true,
                      "prompt": "Tom has 3 apples. He buys 5 more. How many apples does he have?"});
    // Every adapter of every segment is one routed count.
    let routed = || {
        let m = s.get("/metrics").body;
        (m.lines())
            .filter(|l| l.starts_with("dlp_adapter_routed_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum::<f64>()
    };
    let counted = |r: &Value| {
        (r["dlp"]["choices"][0]["segments"]
            .as_array()
            .unwrap()
            .iter())
        .map(|g| g["mixture"].as_array().unwrap().len() as f64)
        .sum::<f64>()
    };
    let before = routed();
    let full = s.ok("/v1/completions", &body);
    assert_eq!(routed() - before, counted(&full), "{full}");
    // A segment routed from a generated sentence whose opening token shows text, and that
    // token's characters in the text (special tokens show none: `text_offset` says where).
    let prompt_tokens = full["usage"]["prompt_tokens"].as_u64().unwrap() as usize;
    let chars: Vec<char> = full["choices"][0]["text"]
        .as_str()
        .unwrap()
        .chars()
        .collect();
    let offsets: Vec<usize> = (full["choices"][0]["logprobs"]["text_offset"].as_array())
        .unwrap()
        .iter()
        .map(|o| o.as_u64().unwrap() as usize)
        .collect();
    let span = |at: usize| {
        (
            offsets[at],
            offsets.get(at + 1).copied().unwrap_or(chars.len()),
        )
    };
    let segments = full["dlp"]["choices"][0]["segments"].as_array().unwrap();
    let (opened, end) = segments
        .iter()
        .filter(|g| g["source"] == "generated")
        .find_map(|g| {
            let at = g["first_token"].as_u64().unwrap() as usize - prompt_tokens;
            let (start, end) = span(at);
            (at < offsets.len() && end > start).then_some((g, end))
        })
        .unwrap_or_else(|| panic!("no generated sentence opened by a token with text: {full}"));
    // The shortest tail of the text up to that token that appears nowhere earlier: a stop
    // string that completes at that token and no sooner.
    let text: String = chars[..end].iter().collect();
    let stop = (1..=end)
        .map(|n| chars[end - n..end].iter().collect::<String>())
        .find(|t| text.find(t.as_str()) == Some(text.len() - t.len()))
        .unwrap_or_else(|| panic!("no stop string for {text:?}"));
    let mut cut = body.clone();
    cut["stop"] = json!([stop]);
    let before = routed();
    let r = s.ok("/v1/completions", &cut);
    assert_eq!(r["choices"][0]["finish_reason"], "stop", "{stop:?}: {r}");
    let kept = r["dlp"]["choices"][0]["segments"].as_array().unwrap();
    assert!(
        kept.iter()
            .all(|g| g["first_token"] != opened["first_token"]),
        "{r}"
    );
    assert_eq!(routed() - before, counted(&r), "{stop:?}: {r}");
    // The same when `max_tokens` ends the answer at that token (it was reported and counted).
    let last = opened["first_token"].as_u64().unwrap() as usize - prompt_tokens + 1;
    let mut cut = body.clone();
    cut["max_tokens"] = json!(last);
    let before = routed();
    let r = s.ok("/v1/completions", &cut);
    assert_eq!(r["choices"][0]["finish_reason"], "length", "{r}");
    let kept = r["dlp"]["choices"][0]["segments"].as_array().unwrap();
    assert!(
        kept.iter()
            .all(|g| g["first_token"] != opened["first_token"]),
        "{r}"
    );
    assert_eq!(routed() - before, counted(&r), "{r}");
    // And past the default limit (128) sentences are still routed: the limit checked is the
    // request's (it had been the default's, which cut re-routing off there).
    let mut long = body.clone();
    long["max_tokens"] = json!(200);
    let r = s.ok("/v1/completions", &long);
    let late = (r["dlp"]["choices"][0]["segments"]
        .as_array()
        .unwrap()
        .iter())
    .filter(|g| g["source"] == "generated")
    .any(|g| g["first_token"].as_u64().unwrap() as usize > prompt_tokens + 128);
    assert!(late, "{r}");
}
