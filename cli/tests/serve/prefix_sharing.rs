//! Prefix sharing on the server: the `n` choices of a request copy the first choice's KV rows
//! for their shared prompt (counted in `dlp_prefix_shared_tokens_total`) and answer what they
//! answer with every prompt computed (`--no-prefix-sharing`). Sequences of different requests
//! share the same way (the scheduler's test, tests/tests/prefix_sharing.rs, covers prefixes
//! shared in part, other mixtures, and a leader cancelled before the copy).

use serde_json::{json, Value};

use crate::harness::{assets, Server};

fn texts(v: &Value) -> Vec<String> {
    let choices = v["choices"].as_array().unwrap();
    choices
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn choices_share_their_prompt() {
    let Some(a) = assets() else { return };
    let base = "SmolLM2-135M-Instruct.Q4_1";
    let prompt = "The old lighthouse keeper climbed the stairs every evening to light the lamp, \
                  and every morning he wrote the weather in a book. One day";
    // Seeded sampling: each choice its own stream, the same with and without sharing.
    let body = json!({"model": base, "prompt": prompt, "max_tokens": 8, "n": 4,
                      "temperature": 1, "seed": 5});
    let answers = |args: &[&str]| {
        let mut all = a.model_args();
        all.extend(args.iter().map(|s| s.to_string()));
        let s = Server::start(&all);
        let v = s.ok("/v1/completions", &body);
        let prompt_tokens = v["usage"]["prompt_tokens"].as_u64().unwrap() as f64;
        let shared = s.metric("dlp_prefix_shared_tokens_total");
        (texts(&v), prompt_tokens, shared)
    };
    let (shared_texts, p, shared) = answers(&[]);
    let (full_texts, _, none) = answers(&["--no-prefix-sharing"]);
    assert_eq!(shared_texts, full_texts);
    assert!(p >= 17.0, "a prompt of {p} tokens is too short to share");
    // Three choices copy all but the prompt's last token.
    assert_eq!(shared, 3.0 * (p - 1.0));
    assert_eq!(none, 0.0);
}
