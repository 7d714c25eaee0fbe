//! Tokens that hold part of a character: their bytes, logprobs and offsets, and an answer
//! that ends inside one.

use serde_json::json;

use crate::harness::{assets, streamed_text, Server};
use crate::text_of;

/// Tokens that hold part of a character (byte-level pieces of emoji and CJK text): chat's
/// `bytes` rebuild the answer byte for byte, completions name such tokens `bytes:\x..` (so
/// `top_logprobs` keeps every alternative apart) and their `text_offset`s stay inside the
/// text, each pointing at its token. (They were the lossy "\u{FFFD}" of each token alone.)
#[test]
fn logprobs_of_partial_characters() {
    let Some(a) = assets() else { return };
    let s = Server::start(&a.model_args());
    let base = a.gguf.file_stem().unwrap().to_str().unwrap();
    let prompt = "Repeat exactly: 😀 😃 😄 🤪 日本語";
    let c = s.ok(
        "/v1/chat/completions",
        &json!({"model": base, "messages": [{"role": "user", "content": prompt}],
                "max_tokens": 24, "temperature": 0, "logprobs": true, "top_logprobs": 3}),
    );
    let content = c["choices"][0]["logprobs"]["content"].as_array().unwrap();
    let bytes: Vec<u8> = content
        .iter()
        .flat_map(|t| t["bytes"].as_array().unwrap().iter())
        .map(|b| b.as_u64().unwrap() as u8)
        .collect();
    // The answer may end inside a character (max_tokens): its bytes are text too, as U+FFFD,
    // as decoding the tokens whole gives them (they had vanished from the text).
    let text = text_of(&c);
    assert_eq!(String::from_utf8_lossy(&bytes), text);
    assert!(
        content
            .iter()
            .any(|t| t["token"].as_str().unwrap().starts_with("bytes:\\x")),
        "no partial-character token in {content:?}"
    );
    let d = s.ok(
        "/v1/completions",
        &json!({"model": base, "prompt": prompt, "max_tokens": 24, "temperature": 0,
                "logprobs": 3, "echo": true}),
    );
    let text: Vec<char> = text_of(&d).chars().collect();
    let lp = &d["choices"][0]["logprobs"];
    let tokens = lp["tokens"].as_array().unwrap();
    for (t, o) in tokens.iter().zip(lp["text_offset"].as_array().unwrap()) {
        let (t, o) = (t.as_str().unwrap(), o.as_u64().unwrap() as usize);
        assert!(
            o <= text.len(),
            "offset {o} past the text's {} chars",
            text.len()
        );
        if !t.starts_with("bytes:") {
            let at: String = text[o..].iter().collect();
            assert!(at.starts_with(t), "offset {o} of {t:?} points at {at:?}");
        }
    }
    // The 3 best, and the chosen token when it is not among them (as OpenAI lists them).
    let tops = lp["top_logprobs"].as_array().unwrap();
    for (tops, t) in tops.iter().zip(tokens).skip(1) {
        let tops = tops.as_object().unwrap();
        assert!(tops.len() == 3 || tops.len() == 4, "{tops:?}");
        assert!(
            tops.contains_key(t.as_str().unwrap()),
            "{t} not in {tops:?}"
        );
    }
    let d = s.ok(
        "/v1/completions",
        &json!({"model": base, "prompt": prompt, "max_tokens": 4, "logprobs": 0}),
    );
    let lp = &d["choices"][0]["logprobs"];
    for (tops, t) in lp["top_logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(lp["tokens"].as_array().unwrap())
    {
        assert_eq!(
            tops.as_object().unwrap().keys().collect::<Vec<_>>(),
            [t.as_str().unwrap()]
        );
    }
    // Only a lone byte token allowed (240, `\x96`): three of them are three U+FFFD, streamed
    // or not (the text had been empty with 3 completion tokens).
    for stream in [false, true] {
        let body = json!({"model": base, "prompt": "x", "max_tokens": 3, "temperature": 0,
                          "allowed_token_ids": [240], "stream": stream});
        let text = if stream {
            streamed_text(&s.stream("/v1/completions", &body), 0)
        } else {
            let v = s.ok("/v1/completions", &body);
            assert_eq!(v["usage"]["completion_tokens"], 3, "{v}");
            text_of(&v)
        };
        assert_eq!(text, "\u{FFFD}".repeat(3), "stream {stream}");
    }
    // The tokens metric counts what usage counts, the end token of an answer too (it had
    // been one short per answer that ended at EOS).
    let before = s.metric("dlp_generation_tokens_total");
    let v = s.ok(
        "/v1/chat/completions",
        &json!({"model": base, "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 60, "temperature": 0}),
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    assert_eq!(
        s.metric("dlp_generation_tokens_total") - before,
        v["usage"]["completion_tokens"].as_f64().unwrap(),
        "{v}"
    );
    assert!(s.terminate().success());
}
