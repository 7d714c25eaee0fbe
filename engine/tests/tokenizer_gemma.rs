//! A Gemma tokenizer as transformers 5 writes one (BPE with byte fallback, `▁` for spaces, no
//! prefix space, `<bos>` before raw text) with Gemma 3's chat template, against transformers'
//! own answers (`tests/fixtures/gemma-tokenizer`, made by
//! `tests/fixtures/make_gemma_tokenizer.py`): raw-text ids, their decoding (whole and
//! streamed), rendered chats and their ids (one `<bos>`, the template's), and the template's
//! own error for roles that do not alternate.

use dlp_engine::tokenizer::{ChatMessage, TextTokenizer};
use serde_json::Value;

fn ids(v: &Value) -> Vec<u32> {
    (v.as_array().unwrap().iter())
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn gemma_tokenizer_and_chat_template_as_transformers() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/gemma-tokenizer");
    let tok = TextTokenizer::from_hf_dir(&dir).unwrap().unwrap();
    let text = std::fs::read_to_string(dir.join("expected.json")).unwrap();
    let expected: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        tok.vocab_size() as u64,
        expected["vocab_size"].as_u64().unwrap()
    );
    let cases = expected["cases"].as_array().unwrap();
    assert!(cases.len() >= 12);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["ids"]);
        let (got, _) = tok.encode_prompt(text, false).unwrap();
        assert_eq!(got, want, "ids of {text:?}");
        let decoded = case["decoded"].as_str().unwrap();
        assert_eq!(tok.decode(&got, true).unwrap(), decoded, "text of {text:?}");
        let mut stream = tok.stream_decoder(true);
        let mut streamed = String::new();
        for &id in &got {
            streamed += &stream.push(id).unwrap().unwrap_or_default();
        }
        streamed += &stream.finish().unwrap().unwrap_or_default();
        assert_eq!(streamed, decoded, "streamed text of {text:?}");
    }
    for chat in expected["chats"].as_array().unwrap() {
        let messages: Vec<ChatMessage> = (chat["messages"].as_array().unwrap().iter())
            .map(|m| ChatMessage::try_from(m.as_object().unwrap().clone()).unwrap())
            .collect();
        let rendered = tok.render_chat(&messages, true).unwrap();
        assert_eq!(rendered, chat["rendered"].as_str().unwrap());
        let (got, _) = tok.encode_prompt(&rendered, true).unwrap();
        assert_eq!(got, ids(&chat["ids"]), "ids of {rendered:?}");
    }
    let wrong = [ChatMessage::new("assistant", "x")];
    let e = tok.render_chat(&wrong, false).unwrap_err().to_string();
    assert!(e.contains(expected["error"].as_str().unwrap()), "{e}");
}

#[allow(dead_code)]
#[path = "gguf/writer.rs"]
mod writer;

/// A GGUF with a tokenizer.json beside it and no tokenizer_config.json (what the loader's
/// warning advises for a vocabulary it does not rebuild): the GGUF's chat template, its BOS
/// text for the template's `{{ bos_token }}` (one `<bos>` in front of a chat, as the HF
/// tokenizer gives), and `<end_of_turn>` as an end id by its text, as llama.cpp reads them.
#[test]
fn tokenizer_json_beside_a_gguf_takes_its_template_and_special_tokens() {
    use dlp_engine::loader::gguf::GgufFile;
    use writer::{Writer, M};
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/gemma-tokenizer");
    let dir = std::env::temp_dir().join(format!("dlp-gemma-beside-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixture.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let template = std::fs::read_to_string(fixture.join("chat_template.jinja")).unwrap();
    let kv = vec![
        ("general.architecture".to_string(), M::Str("gemma3")),
        ("tokenizer.ggml.bos_token_id".into(), M::U32(2)),
        ("tokenizer.ggml.eos_token_id".into(), M::U32(1)),
        ("tokenizer.chat_template".into(), M::Str(template.leak())),
    ];
    let gguf = dir.join("model.gguf");
    let w = Writer {
        version: 3,
        kv,
        tensors: vec![],
    };
    std::fs::write(&gguf, w.bytes()).unwrap();
    let g = GgufFile::open(&gguf).unwrap();
    let mut tok = TextTokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    assert_eq!(tok.special_tokens().bos, None);
    tok.adopt_gguf(&g);
    assert_eq!(tok.special_tokens().bos.as_deref(), Some("<bos>"));
    let end_of_turn = tok.token_id("<end_of_turn>").unwrap();
    assert!(tok.eos_token_ids().contains(&1) && tok.eos_token_ids().contains(&end_of_turn));
    let text = std::fs::read_to_string(fixture.join("expected.json")).unwrap();
    let expected: Value = serde_json::from_str(&text).unwrap();
    let chat = &expected["chats"][0];
    let messages: Vec<ChatMessage> = (chat["messages"].as_array().unwrap().iter())
        .map(|m| ChatMessage::try_from(m.as_object().unwrap().clone()).unwrap())
        .collect();
    let rendered = tok.render_chat(&messages, true).unwrap();
    assert_eq!(rendered, chat["rendered"].as_str().unwrap());
    assert_eq!(
        tok.encode_prompt(&rendered, true).unwrap().0,
        ids(&chat["ids"])
    );
    let _ = std::fs::remove_dir_all(dir);
}
