//! `/tokenize` counts the ids the completion endpoints feed the model (their `usage`), and
//! `/detokenize` gives the text back.

use serde_json::json;

use crate::harness::{assets, question, Server};

#[test]
fn tokenize_counts_what_the_completions_feed() {
    let Some(a) = assets() else { return };
    let mut args = a.model_args();
    args.extend(["--router".to_string(), a.router().display().to_string()]);
    let s = Server::start(&args);
    let conv = json!([{"role": "user", "content": question(&a.data, "boolq", 0)}]);
    let chat = s.ok(
        "/v1/chat/completions",
        &json!({"model": "auto", "max_tokens": 1, "messages": conv}),
    );
    let t = s.ok("/tokenize", &json!({"model": "boolq", "messages": conv}));
    assert_eq!(t["count"], chat["usage"]["prompt_tokens"], "{t}");
    assert_eq!(t["tokens"].as_array().unwrap().len() as u64, t["count"]);
    assert!(t["max_model_len"].as_u64() > t["count"].as_u64(), "{t}");
    assert!(t["token_strs"].is_null(), "{t}");
    // Without the generation prompt: shorter by the assistant's header.
    let bare = s.ok(
        "/tokenize",
        &json!({"messages": conv, "add_generation_prompt": false}),
    );
    assert!(bare["count"].as_u64() < t["count"].as_u64(), "{bare}");
    let text = "The capital of France is";
    let done = s.ok(
        "/v1/completions",
        &json!({"model": "boolq", "prompt": text, "max_tokens": 1}),
    );
    let t = s.ok(
        "/tokenize",
        &json!({"prompt": text, "return_token_strs": true}),
    );
    assert_eq!(t["count"], done["usage"]["prompt_tokens"], "{t}");
    assert_eq!(t["tokens"], json!([504, 3575, 282, 4649, 314]), "{t}");
    assert_eq!(
        t["token_strs"],
        json!(["The", "Ġcapital", "Ġof", "ĠFrance", "Ġis"])
    );
    let d = s.ok(
        "/detokenize",
        &json!({"model": "auto", "tokens": t["tokens"]}),
    );
    assert_eq!(d["prompt"], text);
    // An empty prompt has no tokens (SmolLM2 puts no BOS in front).
    assert_eq!(s.ok("/tokenize", &json!({"prompt": ""}))["count"], 0);
    assert_eq!(
        s.metric("dlp_requests_total{endpoint=\"/tokenize\",status=\"200\"}"),
        4.0
    );
}

/// The BOS rules: an HF tokenizer's post-processor BOS goes in front of a raw prompt only
/// (`add_special_tokens: false` drops it); a GGUF with `add_bos` starts conversations with it
/// too, which `add_special_tokens: false` cannot remove (a 400, not a silent no-op).
#[test]
fn tokenize_follows_the_bos_rules() {
    let Some(bos) = dlp_tests::fixtures("compat/bos") else {
        return;
    };
    let conv = json!([{"role": "user", "content": "hi"}]);
    let hf = Server::start(&[
        "--model".into(),
        bos.join("post-bos-chatml").display().to_string(),
        "--backend".into(),
        "cpu".into(),
    ]);
    let raw = hf.ok("/tokenize", &json!({"prompt": "hello world"}));
    let bare = hf.ok(
        "/tokenize",
        &json!({"prompt": "hello world", "add_special_tokens": false}),
    );
    assert_eq!(raw["tokens"][0], 512, "{raw}");
    assert_eq!(
        raw["tokens"].as_array().unwrap()[1..],
        bare["tokens"].as_array().unwrap()[..]
    );
    let done = hf.ok(
        "/v1/completions",
        &json!({"model": "post-bos-chatml", "prompt": "hello world", "max_tokens": 1}),
    );
    assert_eq!(raw["count"], done["usage"]["prompt_tokens"]);
    let chat = hf.ok(
        "/tokenize",
        &json!({"messages": conv, "add_special_tokens": false}),
    );
    assert_ne!(chat["tokens"][0], 512, "{chat}");
    let tmp = tempfile::tempdir().unwrap();
    let template = tmp.path().join("t.jinja");
    std::fs::write(
        &template,
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}",
    )
    .unwrap();
    let gguf = Server::start(&[
        "--model".into(),
        bos.join("llama-bpe-add-bos-true.gguf")
            .display()
            .to_string(),
        "--backend".into(),
        "cpu".into(),
        "--chat-template".into(),
        template.display().to_string(),
    ]);
    let chat = gguf.ok("/tokenize", &json!({"messages": conv}));
    assert_eq!(chat["tokens"][0], 512, "{chat}");
    let r = gguf.post(
        "/tokenize",
        &json!({"messages": conv, "add_special_tokens": false}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"]["param"], "add_special_tokens");
}

/// vLLM's template switches on chat and /tokenize: `continue_final_message` feeds the model
/// the final (assistant) message open, so the answer goes on from its last word;
/// `chat_template_kwargs` and `documents` reach the template (SmolLM2's reads neither, so the
/// prompt is unchanged).
#[test]
fn template_switches_reach_the_template() {
    let Some(a) = assets() else { return };
    let s = Server::start(&a.model_args());
    let begun = json!([{"role": "user", "content": "Describe the sky."},
                       {"role": "assistant", "content": "The sky today is"}]);
    let t = s.ok(
        "/tokenize",
        &json!({"messages": begun, "continue_final_message": true}),
    );
    let text = s.ok("/detokenize", &json!({"tokens": t["tokens"]}));
    assert!(
        text["prompt"]
            .as_str()
            .unwrap()
            .ends_with("<|im_start|>assistant\nThe sky today is"),
        "{text}"
    );
    let chat = s.ok(
        "/v1/chat/completions",
        &json!({"model": "boolq", "max_tokens": 8, "temperature": 0, "messages": begun,
                "continue_final_message": true}),
    );
    assert_eq!(chat["usage"]["prompt_tokens"], t["count"], "{chat}");
    // Opening a new turn instead: a longer prompt (the end of turn and a new header).
    let new_turn = s.ok("/tokenize", &json!({"messages": begun}));
    assert!(new_turn["count"].as_u64() > t["count"].as_u64());
    let plain = s.ok("/tokenize", &json!({"messages": [begun[0]]}));
    let extra = s.ok(
        "/tokenize",
        &json!({"messages": [begun[0]], "chat_template_kwargs": {"enable_thinking": false}}),
    );
    assert_eq!(extra["tokens"], plain["tokens"]);
    let docs = s.ok(
        "/v1/chat/completions",
        &json!({"model": "boolq", "max_tokens": 1, "messages": [begun[0]],
                "documents": [{"title": "Sky", "text": "Blue."}]}),
    );
    assert_eq!(docs["usage"]["prompt_tokens"], plain["count"]);
    let docs = s.ok(
        "/tokenize",
        &json!({"messages": [begun[0]], "documents": [{"title": "Sky", "text": "Blue."}]}),
    );
    assert_eq!(docs["count"], plain["count"]);
}
