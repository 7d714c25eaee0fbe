//! OpenAI's `presence_penalty`, `frequency_penalty` and `logit_bias` change greedy picks as
//! their formulas say, checked against the model's own log-probabilities (which the server
//! reports before any bias or penalty, as vLLM does); structured output; vLLM's
//! `stop_token_ids` and `min_tokens`.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::harness::{assets, merged, Server};

/// The generated tokens (as text) and each one's top alternatives `token -> logprob`.
fn picks(v: &Value) -> (Vec<String>, Vec<HashMap<String, f64>>) {
    let lp = &v["choices"][0]["logprobs"];
    let tokens = lp["tokens"].as_array().unwrap();
    let tokens = tokens.iter().map(|t| t.as_str().unwrap().to_string());
    let tops = lp["top_logprobs"].as_array().unwrap().iter().map(|m| {
        m.as_object()
            .unwrap()
            .iter()
            .map(|(k, x)| (k.clone(), x.as_f64().unwrap()))
            .collect()
    });
    (tokens.collect(), tops.collect())
}

/// How often the most frequent token occurs.
fn most_repeated(tokens: &[String]) -> usize {
    let mut n: HashMap<&str, usize> = HashMap::new();
    for t in tokens {
        *n.entry(t).or_default() += 1;
    }
    n.into_values().max().unwrap_or(0)
}

#[test]
fn penalties_and_logit_bias_steer_greedy_picks() {
    let Some(a) = assets() else { return };
    let s = Server::start(&a.model_args());
    let prompt = "one one one one one one one one one one one one";
    let run = |extra: Value| {
        let body = merged(
            json!({"model": "SmolLM2-135M-Instruct.Q4_1", "prompt": prompt, "temperature": 0, "ignore_eos": true,
                              "max_tokens": 16, "logprobs": 5}),
            extra,
        );
        s.ok("/v1/completions", &body)
    };

    // Without penalties the model falls into a loop ("-to-many-to-many..."); every pick is
    // its most likely token.
    let (plain, plain_tops) = picks(&run(json!({})));
    let repeats = most_repeated(&plain);
    assert!(repeats >= 4, "{plain:?}");

    // With them, each pick is the best of `logprob - count * f - (count > 0) * p` over the
    // listed alternatives, counting only generated tokens (the prompt's " one"s are free).
    // Each penalty alone and both together, so that neither can hide behind the other.
    for (f, p) in [(0.6, 0.9), (0.0, 1.5), (1.0, 0.0)] {
        let (tokens, tops) = picks(&run(json!({"frequency_penalty": f, "presence_penalty": p})));
        let mut counts: HashMap<&str, f64> = HashMap::new();
        let mut differs = 0;
        for (tok, top) in tokens.iter().zip(&tops) {
            let score = |t: &str, lp: f64| {
                let c = counts.get(t).copied().unwrap_or(0.0);
                lp - c * f - if c > 0.0 { p } else { 0.0 }
            };
            let best = top
                .iter()
                .map(|(t, &lp)| score(t, lp))
                .fold(f64::NEG_INFINITY, f64::max);
            let mine = score(tok, top[tok]);
            assert!(
                mine >= best - 1e-4,
                "f {f}, p {p}: {tok:?} ({mine}) < {best}: {tokens:?} {top:?}"
            );
            let raw_best = top.values().copied().fold(f64::NEG_INFINITY, f64::max);
            if top[tok] < raw_best - 1e-4 {
                differs += 1;
            }
            *counts.entry(tok).or_insert(0.0) += 1.0;
        }
        assert!(
            differs >= 1,
            "f {f}, p {p}: the penalties never changed a pick: {tokens:?}"
        );
        assert!(
            most_repeated(&tokens) < repeats,
            "f {f}, p {p}: {plain:?} vs {tokens:?}"
        );
    }

    // `logit_bias` -100 on the first unbiased pick: the runner-up takes its place.
    let first = &plain[0];
    let ids = s.ok(
        "/tokenize",
        &json!({"prompt": first, "add_special_tokens": false}),
    )["tokens"]
        .clone();
    assert_eq!(ids.as_array().unwrap().len(), 1, "{first:?} -> {ids}");
    let id = ids[0].to_string();
    let (banned, _) = picks(&run(json!({"logit_bias": {id.clone(): -100}})));
    let runner_up = plain_tops[0]
        .iter()
        .filter(|(t, _)| *t != first)
        .max_by(|x, y| x.1.total_cmp(y.1))
        .unwrap()
        .0;
    assert_eq!(&banned[0], runner_up, "{banned:?} vs {:?}", plain_tops[0]);
    assert!(!banned.contains(first), "{banned:?}");
    // +100 on it: it is every pick, ahead of end-of-sequence too.
    let (forced, _) = picks(&run(json!({"logit_bias": {id: 100}})));
    assert_eq!(forced, vec![first.clone(); 16]);
}

/// Structured output: answers match their JSON schema, regular expression or choice list,
/// streamed or not, with `n` choices each under its own copy of the grammar; OpenAI's
/// `response_format` and vLLM's `guided_*` fields.
#[test]
fn structured_output_follows_the_format() {
    let Some(a) = assets() else { return };
    let s = Server::start(&a.model_args());
    let base = "SmolLM2-135M-Instruct.Q4_1";
    let chat = |content: &str, extra: Value| {
        merged(
            json!({"model": base, "temperature": 0, "max_tokens": 60,
                              "messages": [{"role": "user", "content": content}]}),
            extra,
        )
    };
    let text = |v: &Value| {
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };

    let schema = json!({"type": "object", "additionalProperties": false,
        "properties": {"name": {"type": "string", "maxLength": 12},
                       "age": {"type": "integer", "minimum": 0, "maximum": 150}},
        "required": ["name", "age"]});
    let v = s.ok(
        "/v1/chat/completions",
        &chat(
            "Give me a person named Ada aged 36.",
            json!({"response_format":
            {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}}),
        ),
    );
    let p: Value = serde_json::from_str(&text(&v)).unwrap_or_else(|e| panic!("{e}: {v}"));
    assert!(p["name"].as_str().unwrap().len() <= 12, "{p}");
    assert!((0..=150).contains(&p["age"].as_i64().unwrap()), "{p}");
    assert_eq!(p.as_object().unwrap().len(), 2, "{p}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");

    // OpenAI's `strict: true` closes objects (no keys beyond `properties`); without it, JSON
    // Schema lets this model add a key of its own.
    let person = json!({"type": "object", "required": ["name", "age"],
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}});
    let keys = |strict: bool| {
        let v = s.ok(
            "/v1/completions",
            &json!({"model": base, "prompt": "Person:", "temperature": 0, "max_tokens": 60,
                    "response_format": {"type": "json_schema", "json_schema":
                        {"name": "p", "strict": strict, "schema": person}}}),
        );
        let t = v["choices"][0]["text"].as_str().unwrap().to_string();
        let o: Value = serde_json::from_str(&t).unwrap_or_else(|e| panic!("{e}: {t:?}"));
        let mut k: Vec<String> = o.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(true), ["age", "name"]);
    assert!(
        keys(false).len() > 2,
        "the open schema's answer had no extra key"
    );
    // vLLM's `structured_outputs`, whose `disable_additional_properties` closes them too.
    let v = s.ok(
        "/v1/completions",
        &json!({"model": base, "prompt": "Person:", "temperature": 0, "max_tokens": 60,
                "structured_outputs": {"json": person, "disable_additional_properties": true}}),
    );
    let o: Value = serde_json::from_str(v["choices"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(o.as_object().unwrap().len(), 2, "{o}");

    // A context-free grammar (Lark, or GBNF), greedy: vLLM's `guided_grammar`,
    // `structured_outputs`' `grammar` and `generate --grammar` give one answer, a list the
    // grammar describes.
    let list = "start: item (\", \" item)*\nitem: /[a-z]{2,10}/\n";
    let complete = |field: Value| {
        let b = merged(
            json!({"model": base, "prompt": "Three colours:", "temperature": 0,
                           "max_tokens": 24}),
            field,
        );
        s.ok("/v1/completions", &b)["choices"][0]["text"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let listed = complete(json!({"guided_grammar": list}));
    let items = regex::Regex::new(r"^[a-z]{2,10}(, [a-z]{2,10})*(, ?)?$").unwrap();
    assert!(items.is_match(&listed), "{listed:?}");
    assert!(listed.contains(", "), "{listed:?}");
    assert_eq!(
        complete(json!({"structured_outputs": {"grammar": list}})),
        listed
    );
    let g = crate::generate(&a, &["--prompt", "Three colours:", "--grammar", list]);
    assert_eq!(g["results"][0]["text"], listed.as_str(), "{g}");
    // The same language in llama.cpp's GBNF: the same greedy answer.
    let gbnf = "root ::= item (\", \" item)*  # items\nitem ::= [a-z]{2,10}\n";
    assert_eq!(complete(json!({"guided_grammar": gbnf})), listed);

    // Streamed, any object.
    let events = s.stream(
        "/v1/chat/completions",
        &chat(
            "List three colours.",
            json!({"stream": true, "max_tokens": 200,
                                            "response_format": {"type": "json_object"}}),
        ),
    );
    let streamed = crate::harness::streamed_text(&events, 0);
    let o: Value = serde_json::from_str(&streamed).unwrap_or_else(|e| panic!("{e}: {streamed:?}"));
    assert!(o.is_object(), "{streamed}");

    // A choice list: the answer is one of them, whatever the model would rather say.
    let choices = ["definitely", "no way"];
    let v = s.ok(
        "/v1/chat/completions",
        &chat("Is the sky blue?", json!({"guided_choice": choices})),
    );
    assert!(choices.contains(&text(&v).as_str()), "{v}");
    let v = s.ok(
        "/v1/chat/completions",
        &chat(
            "Is the sky blue?",
            json!({"structured_outputs": {"choice": choices}}),
        ),
    );
    assert!(choices.contains(&text(&v).as_str()), "{v}");

    // A regex on completions, sampled, three choices.
    let re = regex::Regex::new(r"^ [A-Z][a-z]{1,12}\.$").unwrap();
    let v = s.ok(
        "/v1/completions",
        &json!({"model": base, "prompt": "The capital of France is", "max_tokens": 20, "n": 3,
                "temperature": 1, "seed": 3, "guided_regex": r" [A-Z][a-z]{1,12}\."}),
    );
    for c in v["choices"].as_array().unwrap() {
        let t = c["text"].as_str().unwrap();
        assert!(re.is_match(t), "{t:?} in {v}");
        assert_eq!(c["finish_reason"], "stop", "{v}");
    }
    // Without the format, the same request answers freely (the format is what shaped it).
    let free = s.ok(
        "/v1/completions",
        &json!({"model": base, "prompt": "The capital of France is", "max_tokens": 20, "n": 3,
                "temperature": 1, "seed": 3}),
    );
    assert!(
        free["choices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| !re.is_match(c["text"].as_str().unwrap())),
        "{free}"
    );
}

/// vLLM's `stop_token_ids` end the answer where the token comes (it is not part of the text),
/// and `min_tokens` holds end-of-sequence back and ignores stop strings until that many
/// tokens were generated; `generate --min-tokens --stop` answers the same.
#[test]
fn stop_token_ids_and_min_tokens() {
    let Some(a) = assets() else { return };
    let s = Server::start(&a.model_args());
    let model = "SmolLM2-135M-Instruct.Q4_1";
    let complete = |extra: Value| {
        let body = merged(
            json!({"model": model, "prompt": "The capital of France is",
                              "temperature": 0, "max_tokens": 8}),
            extra,
        );
        s.ok("/v1/completions", &body)["choices"][0].clone()
    };
    let plain = complete(json!({}));
    let text = plain["text"].as_str().unwrap();
    assert!(text.starts_with(" Paris."), "{plain}");
    let ids = |t: &str| {
        s.ok(
            "/tokenize",
            &json!({"prompt": t, "add_special_tokens": false}),
        )
    };
    let [paris, dot] = [" Paris", "."].map(|t| ids(t)["tokens"][0].clone());
    let stopped = complete(json!({"stop_token_ids": [dot, paris]}));
    assert_eq!(
        (&stopped["text"], &stopped["finish_reason"]),
        (&json!(""), &json!("stop"))
    );
    let stopped = complete(json!({"stop_token_ids": [dot]}));
    assert_eq!(stopped["text"], " Paris", "{stopped}");
    assert_eq!(stopped["finish_reason"], "stop");
    // `allowed_token_ids`: those tokens only; `bad_words`: never the word, as `generate`.
    let only = complete(json!({"allowed_token_ids": [dot, paris]}));
    let t = only["text"].as_str().unwrap();
    assert!(
        regex::Regex::new(r"^( Paris|\.)+$").unwrap().is_match(t),
        "{only}"
    );
    let banned = complete(json!({"bad_words": ["Paris"], "max_tokens": 24}));
    let t = banned["text"].as_str().unwrap();
    assert!(!t.is_empty() && !t.contains("Paris"), "{banned}");
    let g = crate::generate(
        &a,
        &[
            "--prompt",
            "The capital of France is",
            "--bad-word",
            "Paris",
        ],
    );
    assert_eq!(g["results"][0]["text"], t, "{g}");

    // One word and end-of-sequence; with `min_tokens` the answer goes on, and a stop string
    // inside its first tokens does not count.
    let question = "Answer with one word, yes or no: is the sky blue?";
    let chat = |extra: Value| {
        let body = merged(
            json!({"model": model, "temperature": 0, "max_tokens": 24,
                              "messages": [{"role": "user", "content": question}]}),
            extra,
        );
        s.ok("/v1/chat/completions", &body)
    };
    let short = chat(json!({}));
    // The word and the end token (vLLM counts it).
    assert_eq!(short["usage"]["completion_tokens"], 2, "{short}");
    let long = chat(json!({"min_tokens": 12}));
    assert!(
        long["usage"]["completion_tokens"].as_u64().unwrap() >= 12,
        "{long}"
    );
    let cut = chat(json!({"min_tokens": 12, "stop": [","]}));
    let n = cut["usage"]["completion_tokens"].as_u64().unwrap();
    let text = cut["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.contains(',') && (12..24).contains(&n), "{cut}");
    assert_eq!(cut["choices"][0]["finish_reason"], "stop");
    let long_text = long["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(long_text.starts_with(text) && long_text[text.len()..].starts_with(','));
    let g = crate::generate(
        &a,
        &[
            "--chat",
            "--prompt",
            question,
            "--min-tokens",
            "12",
            "--stop",
            ",",
        ],
    );
    assert_eq!(g["results"][0]["text"], text, "{g}");
}
