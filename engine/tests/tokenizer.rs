//! Tokenizer tests on the SmolLM2 fixture: reference ids and chat prompts made by transformers,
//! from `tokenizer.json` and from the bare GGUF.

mod common;

use common::{fixture, scratch, GGUF};
use dlp_engine::loader::gguf::GgufFile;
use dlp_engine::tokenizer::{ChatMessage, ChatRequest, TextTokenizer};
use serde_json::Value;

fn golden() -> Option<Value> {
    let p = fixture("smollm2/golden.json")?;
    Some(serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Checks `tok` against golden.json's tokenizer and chat template cases.
fn check_golden_cases(tok: &TextTokenizer, g: &Value, what: &str) {
    for case in g["tokenizer_cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let ids = tok.encode(text).unwrap();
        assert_eq!(ids, ids_of(&case["ids"]), "{what}: ids of {text:?}");
        assert_eq!(
            tok.decode(&ids, false).unwrap(),
            text,
            "{what}: decode of {text:?}"
        );
    }
    for case in g["chat_template_cases"].as_array().unwrap() {
        let msgs: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
        let out = tok.render_chat(&msgs, true).unwrap();
        assert_eq!(
            out,
            case["rendered"].as_str().unwrap(),
            "{what}: chat template"
        );
    }
    assert_eq!(tok.eos_token_ids(), vec![2], "{what}: eos ids");
    assert_eq!(tok.token_id("<|im_end|>"), Some(2));
    assert_eq!(tok.vocab_size(), 49152);
    for chat in [false, true] {
        assert_eq!(tok.bos_prefix(chat), None, "{what}: SmolLM2 adds no BOS");
    }
}

#[test]
fn tokenizer_json_matches_golden() {
    let (Some(g), Some(p)) = (golden(), fixture("smollm2/tokenizer/tokenizer.json")) else {
        return;
    };
    let tok = TextTokenizer::from_file(&p).unwrap();
    check_golden_cases(&tok, &g, "tokenizer.json");
    let dir = TextTokenizer::from_hf_dir(p.parent().unwrap())
        .unwrap()
        .expect("tokenizer.json in dir");
    assert_eq!(
        dir.encode("hello world").unwrap(),
        tok.encode("hello world").unwrap()
    );
    assert!(
        TextTokenizer::from_hf_dir(&std::env::temp_dir().join("dlp-no-such-dir"))
            .unwrap()
            .is_none()
    );
}

#[test]
fn gguf_tokenizer_matches_golden_and_tokenizer_json() {
    let (Some(g), Some(gp), Some(tp), Some(st)) = (
        golden(),
        fixture(GGUF),
        fixture("smollm2/tokenizer/tokenizer.json"),
        fixture("smollm2/golden.safetensors"),
    ) else {
        return;
    };
    let gguf = TextTokenizer::from_gguf(&GgufFile::open(&gp).unwrap()).unwrap();
    let json = TextTokenizer::from_file(&tp).unwrap();
    check_golden_cases(&gguf, &g, "gguf");
    let bytes = std::fs::read(st).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    for case in g["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let text = case["prompt_text"].as_str().unwrap();
        let n = case["prompt_len"].as_u64().unwrap() as usize;
        let view = tensors.tensor(&format!("{name}.input_ids")).unwrap();
        let want: Vec<u32> = view
            .data()
            .chunks_exact(4)
            .take(n)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as u32)
            .collect();
        assert_eq!(gguf.encode(text).unwrap(), want, "gguf: prompt of {name}");
        assert_eq!(
            json.encode(text).unwrap(),
            want,
            "tokenizer.json: prompt of {name}"
        );
    }
    // More text where both must agree: code, whitespace runs, special tokens mid-text, bytes.
    for text in [
        "Hello, world! It's 'quoted' and they're here; we'll see.",
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n",
        "fn main() {\n\tprintln!(\"{}\", 1 + 2);\n}\n\n\n   trailing   ",
        "mixed<|endoftext|>special<file_sep>tokens  <jupyter_code>",
        "e\u{301}\u{200b}\u{0}\u{7f}\u{10ffff} ∑∫ 한국어 עברית",
    ] {
        assert_eq!(
            gguf.encode(text).unwrap(),
            json.encode(text).unwrap(),
            "{text:?}"
        );
    }
    // llama.cpp's `smollm` pre-tokenizer would isolate digits first ([81, 256, 33]); the
    // reference (transformers' conversion of this GGUF) does not, and we follow the reference.
    assert_eq!(gguf.encode("a  1").unwrap(), [81, 216, 216, 33]);
    assert_eq!(json.encode("a  1").unwrap(), [81, 216, 216, 33]);
}

#[test]
fn stream_decoder_handles_split_characters() {
    let Some(p) = fixture("smollm2/tokenizer/tokenizer.json") else {
        return;
    };
    let tok = TextTokenizer::from_file(&p).unwrap();
    let text = "Unicode: café naïve 日本語 🤖👍<|im_end|>";
    let ids = tok.encode(text).unwrap();
    let mut dec = tok.stream_decoder(true);
    let (mut out, mut pending) = (String::new(), 0);
    for &id in &ids {
        match dec.push(id).unwrap() {
            Some(s) => out.push_str(&s),
            None => pending += 1,
        }
    }
    assert_eq!(
        out,
        text.trim_end_matches("<|im_end|>"),
        "special tokens are skipped"
    );
    assert!(
        pending > 0,
        "multi-byte characters span several tokens and must wait"
    );
    // Shown when asked (`skip_special_tokens: false`).
    let mut dec = tok.stream_decoder(false);
    let shown: String = ids.iter().filter_map(|&id| dec.push(id).unwrap()).collect();
    assert_eq!(shown, text);
    assert_eq!(
        dec.finish().unwrap(),
        None,
        "nothing held after whole characters"
    );

    // Cut inside a character (the robot's first bytes), or ending on a lone byte token
    // (240, `\x96`): the held bytes come out of `finish` as U+FFFD, as a whole decode gives
    // them, instead of vanishing.
    let robot = tok.encode("ok 🤖").unwrap();
    let paris = tok.encode(" Paris").unwrap();
    for ids in [
        robot[..robot.len() - 1].to_vec(),
        [&paris[..], &[240], &paris[..], &[240, 240]].concat(),
    ] {
        let mut dec = tok.stream_decoder(true);
        let mut out: String = ids.iter().filter_map(|&id| dec.push(id).unwrap()).collect();
        let tail = dec.finish().unwrap().expect("held bytes come out");
        assert!(tail.contains('\u{FFFD}'), "{tail:?}");
        out.push_str(&tail);
        assert_eq!(out, tok.decode(&ids, true).unwrap(), "{ids:?}");
        assert_eq!(dec.finish().unwrap(), None, "said once");
    }
}

#[test]
fn chat_template_errors_and_override() {
    let Some(p) = fixture("smollm2/tokenizer/tokenizer.json") else {
        return;
    };
    let mut tok = TextTokenizer::from_file(&p).unwrap();
    let msgs = [ChatMessage::new("user", "hi")];
    tok.set_chat_template(None, "");
    let e = tok.render_chat(&msgs, true).unwrap_err().to_string();
    assert!(
        e.contains("no chat template") && e.contains("chat_template.jinja"),
        "{e}"
    );
    tok.set_chat_template(
        Some(
            "{{ bos_token }}{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}"
                .into(),
        ),
        "good.jinja",
    );
    assert_eq!(
        tok.render_chat(&msgs, false).unwrap(),
        "<|im_start|>[user:hi]"
    );
    // An error names the template's origin and line.
    tok.set_chat_template(Some("\n{% for %}".into()), "bad.jinja");
    let e = tok.render_chat(&msgs, false).unwrap_err().to_string();
    assert!(
        e.contains("chat template") && e.contains("bad.jinja:2"),
        "{e}"
    );
}

/// transformers 4's tokenizer_config.json (named templates, bos/eos as objects), 5's
/// chat_template.jinja over it, and the `tool_use` template conversations with tools take.
#[test]
fn transformers4_layout_and_jinja_precedence() {
    let Some(src) = fixture("smollm2/tokenizer/tokenizer.json") else {
        return;
    };
    let dir = scratch("tf4");
    std::fs::copy(&src, dir.join("tokenizer.json")).unwrap();
    let cfg = r#"{"bos_token": "<|im_start|>", "eos_token": {"content": "<|im_end|>", "lstrip": false},
        "chat_template": [{"name": "tool_use", "template": "T"},
                          {"name": "default", "template": "{{ bos_token }}D{{ eos_token }}"}]}"#;
    std::fs::write(dir.join("tokenizer_config.json"), cfg).unwrap();
    let tok = TextTokenizer::from_hf_dir(&dir).unwrap().unwrap();
    assert_eq!(
        tok.render_chat(&[], false).unwrap(),
        "<|im_start|>D<|im_end|>"
    );
    assert_eq!(tok.eos_token_ids(), [2]);
    // With tools (an empty list too: transformers' `tools is not None`), the `tool_use` entry.
    let with_tools = |tok: &TextTokenizer, tools: Option<Value>| {
        let req = ChatRequest {
            tools,
            ..Default::default()
        };
        tok.render_chat_request(&req).unwrap()
    };
    assert_eq!(with_tools(&tok, Some(serde_json::json!([]))), "T");
    assert_eq!(with_tools(&tok, None), "<|im_start|>D<|im_end|>");
    assert_eq!(tok.chat_template_for(true), Some("T"));
    std::fs::write(dir.join("chat_template.jinja"), "J{{ messages | length }}").unwrap();
    let tok = TextTokenizer::from_hf_dir(&dir).unwrap().unwrap();
    assert_eq!(
        tok.render_chat(&[], false).unwrap(),
        "J0",
        "chat_template.jinja wins"
    );
    assert_eq!(
        with_tools(&tok, Some(serde_json::json!([]))),
        "J0",
        "over the config's list too"
    );
    // transformers 5 keeps the other named templates beside it.
    std::fs::create_dir(dir.join("additional_chat_templates")).unwrap();
    std::fs::write(
        dir.join("additional_chat_templates/tool_use.jinja"),
        "U{{ tools | length }}",
    )
    .unwrap();
    let mut tok = TextTokenizer::from_hf_dir(&dir).unwrap().unwrap();
    assert_eq!(
        with_tools(&tok, Some(serde_json::json!([{"type": "function"}]))),
        "U1"
    );
    assert_eq!(with_tools(&tok, None), "J0");
    // A template given on the command line replaces both.
    tok.set_chat_template(Some("C".into()), "c.jinja");
    assert_eq!(with_tools(&tok, Some(serde_json::json!([]))), "C");
    std::fs::write(dir.join("tokenizer_config.json"), "{not json").unwrap();
    let e = TextTokenizer::from_hf_dir(&dir).unwrap_err().to_string();
    assert!(
        e.contains("tokenizer_config.json") && e.contains("not valid JSON"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// `date +FORMAT`: today's date as `datetime.now().strftime(FORMAT)` writes it.
fn today(format: &str) -> String {
    let out = std::process::Command::new("date")
        .arg(format!("+{format}"))
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end_matches('\n')
        .to_string()
}

/// Every chat-template case of `compat/templates` (rendered by transformers): the text is
/// byte-identical (today's date where the template calls `strftime_now`), and the cases that
/// raise in transformers raise here with the same message.
#[test]
fn compat_templates_render_as_transformers() {
    let Some(dir) = fixture("compat/templates") else {
        return;
    };
    let mut tok = TextTokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let placeholder = regex::Regex::new(r"<<strftime_now:([^>]*)>>").unwrap();
    let cases = v["cases"].as_array().unwrap();
    let mut failures = Vec::new();
    for c in cases {
        let name = c["name"].as_str().unwrap();
        tok.set_chat_template(Some(c["template"].as_str().unwrap().to_string()), name);
        let req = ChatRequest {
            messages: serde_json::from_value(c["messages"].clone()).unwrap(),
            tools: c.get("tools").cloned(),
            documents: c.get("documents").cloned(),
            add_generation_prompt: c["add_generation_prompt"].as_bool().unwrap(),
            ..Default::default()
        };
        let got = tok.render_chat_request(&req);
        if c["expected_error"].as_bool() == Some(true) {
            let want = c["error_message"].as_str().unwrap();
            match got {
                Err(e) if e.to_string().contains(want) => {}
                other => failures.push(format!(
                    "{name}: expected the error {want:?}, got {other:?}"
                )),
            }
            continue;
        }
        let want = placeholder
            .replace_all(c["expected"].as_str().unwrap(), |m: &regex::Captures| {
                today(&m[1])
            })
            .into_owned();
        match got {
            Ok(text) if text == want => {}
            Ok(text) => failures.push(format!("{name}:\n  want {want:?}\n  got  {text:?}")),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} template cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// A GGUF adds BOS to a chat prompt as llama.cpp does (`add_bos`), and a template that writes
/// `bos_token` itself (Llama 3's) gets no second one: llama.cpp strips the template's leading
/// BOS text. Its place elsewhere in the text, or a template without it, changes nothing.
#[test]
fn gguf_chat_gets_one_bos_when_the_template_writes_it() {
    let (Some(on), Some(off)) = (
        fixture("compat/bos/llama-bpe-add-bos-true.gguf"),
        fixture("compat/bos/llama-bpe-add-bos-false.gguf"),
    ) else {
        return;
    };
    let msgs: Vec<ChatMessage> =
        serde_json::from_value(serde_json::json!([{"role": "user", "content": "Hi"}])).unwrap();
    let ids_with = |gguf: &std::path::Path, template: &str| {
        let mut tok = TextTokenizer::from_gguf(&GgufFile::open(gguf).unwrap()).unwrap();
        tok.set_chat_template(Some(template.to_string()), "test");
        let text = tok.render_chat(&msgs, true).unwrap();
        let bos = tok.special_tokens().bos.clone().unwrap();
        let bos_id = tok.token_id(&bos).unwrap();
        let ids = tok.encode_prompt(&text, true).unwrap().0;
        (
            ids.iter().filter(|&&i| i == bos_id).count(),
            ids[0] == bos_id,
        )
    };
    let writes_bos = "{{- bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}";
    let no_bos = "{% for m in messages %}{{ m.content }}{% endfor %}";
    let bos_later = "{% for m in messages %}{{ m.content }}{% endfor %}{{ bos_token }}";
    assert_eq!(
        ids_with(&on, writes_bos),
        (1, true),
        "add_bos + template BOS"
    );
    assert_eq!(ids_with(&on, no_bos), (1, true), "add_bos alone");
    assert_eq!(
        ids_with(&on, bos_later),
        (2, true),
        "a BOS later in the text stays"
    );
    assert_eq!(ids_with(&off, writes_bos), (1, true), "template BOS alone");
    assert_eq!(ids_with(&off, no_bos), (0, false), "neither");
    // A raw prompt that starts with the BOS text is not a chat: both stay, as in llama.cpp.
    let tok = TextTokenizer::from_gguf(&GgufFile::open(&on).unwrap()).unwrap();
    let bos = tok.special_tokens().bos.clone().unwrap();
    let raw = tok.encode_prompt(&format!("{bos}Hi"), false).unwrap().0;
    assert_eq!(raw[..2], [raw[0], raw[0]], "{raw:?}");
}

/// A raw prompt gets what the tokenizer.json's post-processor adds, before and after, as
/// transformers' `tokenizer(text)` (only a single token in front had been taken: `<s> $A </s>`
/// lost both, two in front lost both); a rendered chat gets none of it.
#[test]
fn raw_prompts_get_what_the_post_processor_adds() {
    let Some(src) = fixture("compat/templates/tokenizer.json") else {
        return;
    };
    let mut v: Value = serde_json::from_slice(&std::fs::read(src).unwrap()).unwrap();
    let dir = scratch("post");
    let special = |t: &str| serde_json::json!({"SpecialToken": {"id": t, "type_id": 0}});
    let seq = serde_json::json!({"Sequence": {"id": "A", "type_id": 0}});
    let st = |t: &str, id: u32| {
        (
            t.to_string(),
            serde_json::json!({"id": t, "ids": [id], "tokens": [t]}),
        )
    };
    let specials: serde_json::Map<String, Value> = [
        st("<|im_start|>", 1),
        st("<|im_end|>", 2),
        st("<|endoftext|>", 0),
    ]
    .into_iter()
    .collect();
    let hi = TextTokenizer::from_file(&{
        let p = dir.join("tokenizer.json");
        std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
        p
    })
    .unwrap()
    .encode("Hi there")
    .unwrap();
    for (single, before, after) in [
        (
            vec![special("<|im_start|>"), seq.clone(), special("<|im_end|>")],
            vec![1],
            vec![2],
        ),
        (vec![seq.clone(), special("<|im_end|>")], vec![], vec![2]),
        (
            vec![
                special("<|im_start|>"),
                special("<|endoftext|>"),
                seq.clone(),
            ],
            vec![1, 0],
            vec![],
        ),
        (vec![special("<|im_start|>"), seq.clone()], vec![1], vec![]),
    ] {
        v["post_processor"] = serde_json::json!({"type": "TemplateProcessing", "single": single,
            "pair": [seq.clone()], "special_tokens": specials});
        let p = dir.join("tokenizer.json");
        std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
        let tok = TextTokenizer::from_file(&p).unwrap();
        let (ids, starts) = tok.encode_prompt("Hi there", false).unwrap();
        assert_eq!(ids, [before.clone(), hi.clone(), after.clone()].concat());
        assert_eq!(starts.len(), ids.len());
        if !after.is_empty() {
            assert_eq!(
                starts.last(),
                Some(&8),
                "appended ids start at the text's end"
            );
        }
        assert_eq!(
            tok.encode_prompt("Hi there", true).unwrap().0,
            hi,
            "a chat gets none"
        );
        assert_eq!(tok.bos_prefix(false), before.first().copied());
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A byte-fallback vocabulary (Llama 2's, Mistral's): a byte token that came out, then a lone
/// invalid byte, then any token made tokenizers' stream fail ("Invalid prefix": a whole
/// decode turns both bytes into U+FFFD), which failed the request. The stream goes on, the
/// newline that came out stays, and the rest is what the held ids decode to.
#[test]
fn stream_decoding_survives_a_byte_fallback_prefix_change() {
    let mut vocab = serde_json::Map::new();
    vocab.insert("<unk>".into(), serde_json::json!(0));
    for b in 0..=255u32 {
        vocab.insert(format!("<0x{b:02X}>"), serde_json::json!(1 + b));
    }
    for (i, s) in ["▁", "x", "▁x"].iter().enumerate() {
        vocab.insert(s.to_string(), serde_json::json!(257 + i));
    }
    let v = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": null, "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>",
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
            "vocab": vocab, "merges": ["▁ x"]}
    });
    let dir = scratch("byte-fallback");
    let p = dir.join("tokenizer.json");
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
    let tok = TextTokenizer::from_file(&p).unwrap();
    let (nl, e6, x, sx) = (1 + 0x0A, 1 + 0xE6, 258, 259);
    let mut s = tok.stream_decoder(true);
    let mut text = String::new();
    for id in [x, nl, e6, x, sx, e6] {
        text.extend(s.push(id).unwrap());
    }
    text.extend(s.finish().unwrap());
    assert_eq!(text, "x\n\u{FFFD}x x\u{FFFD}");
    let _ = std::fs::remove_dir_all(dir);
}
