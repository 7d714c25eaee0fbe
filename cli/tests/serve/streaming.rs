//! `stream_options`: `include_usage` ends a stream with the usage a non-streamed answer
//! reports; vLLM's `continuous_usage_stats` also puts the usage so far in every chunk.

use serde_json::json;

use crate::harness::{assets, Server};

#[test]
fn stream_usage_matches_the_answer() {
    let Some(a) = assets() else { return };
    let s = Server::start(&a.model_args());
    let body = |opts: serde_json::Value| {
        json!({"model": "boolq", "temperature": 0, "max_tokens": 12, "n": 2, "stream": true,
               "stream_options": opts,
               "messages": [{"role": "user", "content": "Name a colour."}]})
    };
    let mut plain = body(json!(null));
    plain["stream"] = json!(false);
    plain.as_object_mut().unwrap().remove("stream_options");
    let want = s.ok("/v1/chat/completions", &plain)["usage"].clone();

    // The chunks, without the closing `[DONE]`.
    let chunks = |opts| {
        let events = s.stream("/v1/chat/completions", &body(opts));
        assert_eq!(events.last().unwrap(), "[DONE]");
        events[..events.len() - 1].to_vec()
    };
    let events = chunks(json!({"include_usage": true}));
    let last = events.last().unwrap();
    assert_eq!(last["usage"], want, "{last}");
    assert_eq!(last["choices"], json!([]), "{last}");
    assert!(
        events[..events.len() - 1]
            .iter()
            .all(|e| e.get("usage").is_none()),
        "usage before the end without continuous_usage_stats"
    );

    let events = chunks(json!({"include_usage": true, "continuous_usage_stats": true}));
    let prompt = want["prompt_tokens"].as_u64().unwrap();
    // A chunk of one choice counts that choice's tokens (vLLM's rule), growing choice by
    // choice; the closing chunk counts the whole request's.
    let (mut seen, mut roles) = ([0u64; 2], 0);
    for e in &events[..events.len() - 1] {
        let u = &e["usage"];
        assert_eq!(u["prompt_tokens"], prompt, "{e}");
        let i = e["choices"][0]["index"].as_u64().unwrap() as usize;
        let c = u["completion_tokens"].as_u64().unwrap();
        assert!(c >= seen[i], "usage went back: {e}");
        assert_eq!(u["total_tokens"].as_u64().unwrap(), prompt + c, "{e}");
        // The role chunk opens a choice before its first token (vLLM counts none there);
        // a chunk with text counts at least the token that made it.
        let delta = &e["choices"][0]["delta"];
        match delta.get("role") {
            Some(_) => {
                assert_eq!(c, 0, "the role chunk counted a token: {e}");
                roles += 1;
            }
            None if delta["content"].as_str().is_some_and(|t| !t.is_empty()) => {
                assert!(c > 0, "text counted no token: {e}")
            }
            None => {}
        }
        seen[i] = c;
    }
    assert_eq!(roles, 2, "one role chunk per choice: {events:?}");
    assert_eq!(events.last().unwrap()["usage"], want);
    assert_eq!(
        seen.iter().sum::<u64>(),
        want["completion_tokens"].as_u64().unwrap(),
        "the choices' last counts add up to the usage"
    );
    // It grew along the way: a chunk mid-stream counted some tokens but not all.
    assert!(
        events.iter().any(|e| {
            let c = e["usage"]["completion_tokens"].as_u64().unwrap();
            c > 0 && c < seen[0].max(seen[1])
        }),
        "{events:?}"
    );
}
