//! `TextTokenizer::min_tokens`: the lower bound on a text's tokens that a server checks
//! against the context before tokenizing. It must never exceed the real count (that would
//! refuse a prompt that fits), and it must be absent for tokenizers it cannot bound.

mod common;

use common::{fixture, scratch, GGUF};
use dlp_engine::loader::gguf::GgufFile;
use dlp_engine::tokenizer::TextTokenizer;
use serde_json::{json, Value};

/// xorshift64*: reproducible texts without a dependency.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// Asserts the bound holds on `text` and returns (bound, real count).
fn check(tok: &TextTokenizer, text: &str, what: &str) -> (usize, usize) {
    let bound = tok.min_tokens(text).expect(what).tokens;
    let real = tok.encode(text).unwrap().len();
    assert!(
        bound <= real,
        "{what}: bound {bound} > real {real} tokens on {:?}",
        &text[..text.len().min(120)]
    );
    (bound, real)
}

#[test]
fn smollm2_bound_holds_on_texts_made_of_its_longest_pieces() {
    let (Some(tp), Some(gp)) = (fixture("smollm2/tokenizer/tokenizer.json"), fixture(GGUF)) else {
        return;
    };
    let json = TextTokenizer::from_file(&tp).unwrap();
    let gguf = TextTokenizer::from_gguf(&GgufFile::open(&gp).unwrap()).unwrap();
    // The longest vocabulary string: a newline and 80 spaces (81 bytes, byte-level).
    for tok in [&json, &gguf] {
        let m = tok.min_tokens("a\u{4}é").unwrap();
        assert_eq!(
            (m.per_token, m.unit, m.len),
            (81, "bytes", 3),
            "0x04 is not counted"
        );
    }
    // The pieces an adversary would use: the 300 longest, decoded to their text.
    let vocab = json.hf_tokenizer().get_vocab(true);
    let mut ids: Vec<(usize, u32)> = vocab.iter().map(|(s, &i)| (s.len(), i)).collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    let pieces: Vec<String> = ids[..300]
        .iter()
        .map(|&(_, i)| json.decode(&[i], false).unwrap())
        .collect();
    let longest = &pieces[0];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for (tok, what) in [(&json, "tokenizer.json"), (&gguf, "gguf")] {
        // One piece repeated: the bound is within a factor 2 of the truth, not just valid.
        let (bound, real) = check(tok, &longest.repeat(200), what);
        assert!(
            2 * bound >= real,
            "{what}: bound {bound} vs {real} is loose"
        );
        for round in 0..40 {
            let mut text = String::new();
            for _ in 0..50 + rng.below(200) {
                match rng.below(4) {
                    0 => text.push_str(&pieces[rng.below(pieces.len())]),
                    // 0x04 is one of the control bytes SmolLM2's vocabulary cannot spell.
                    1 => text.push_str(
                        [
                            "<|im_start|>",
                            "<|im_end|>",
                            "∑∫ 한국어",
                            "🦀",
                            "\u{4}\u{4}",
                        ][rng.below(5)],
                    ),
                    2 => text.push_str(&" ".repeat(rng.below(100))),
                    _ => text.push_str("The quick brown fox. "),
                }
            }
            check(tok, &text, &format!("{what}, text {round}"));
        }
    }
}

/// A SentencePiece-style BPE (Llama 2, Mistral): spaces become ▁ in the normalizer, no
/// pre-tokenizer, byte fallback. Its longest string is `▁aaaaaaaa` (9 characters).
fn sentencepiece_like() -> Value {
    let mut vocab = serde_json::Map::new();
    vocab.insert("<unk>".into(), json!(0));
    vocab.insert("<s>".into(), json!(1));
    for b in 0..=255u32 {
        vocab.insert(format!("<0x{b:02X}>"), json!(2 + b));
    }
    for (i, s) in ["▁", "a", "aa", "aaaa", "aaaaaaaa", "▁aaaa", "▁aaaaaaaa"]
        .iter()
        .enumerate()
    {
        vocab.insert(s.to_string(), json!(258 + i));
    }
    let special = |id: u32, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [special(0, "<unk>"), special(1, "<s>")],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": null, "post_processor": null, "decoder": null,
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>",
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
            "vocab": vocab,
            "merges": ["a a", "aa aa", "▁ aaaa", "▁aaaa aaaa", "aaaa aaaa"]}
    })
}

fn load(v: &Value, name: &str) -> TextTokenizer {
    let dir = scratch(&format!("bound-{name}"));
    let p = dir.join("tokenizer.json");
    std::fs::write(&p, serde_json::to_vec(v).unwrap()).unwrap();
    TextTokenizer::from_file(&p).unwrap()
}

#[test]
fn sentencepiece_style_bound_is_tight_and_holds() {
    let tok = load(&sentencepiece_like(), "sp");
    assert_eq!(tok.min_tokens("").unwrap().per_token, 9);
    // "aaaaaaaa aaaaaaaa" reads as ▁aaaaaaaa▁aaaaaaaa: 2 tokens of 9 characters each.
    assert_eq!(check(&tok, "aaaaaaaa aaaaaaaa", "sp"), (2, 2));
    let mut rng = Rng(7);
    for round in 0..100 {
        let text: String = (0..rng.below(400))
            .map(|_| ['a', 'a', 'a', ' ', 'é', '\u{301}', '🦀'][rng.below(7)])
            .collect();
        check(&tok, &text, &format!("sp, text {round}"));
    }
}

#[test]
fn bound_follows_the_normalizer_and_is_absent_where_unknown() {
    let per_token = |v: &Value, name: &str| load(v, name).min_tokens("x").map(|m| m.per_token);
    let with = |path: &[&str], value: Value| {
        let mut v = sentencepiece_like();
        let mut at = &mut v;
        for k in &path[..path.len() - 1] {
            at = at.get_mut(*k).unwrap();
        }
        at[path[path.len() - 1]] = value;
        v
    };
    // NFC composes up to 4 characters into one.
    let nfc = with(&["normalizer"], json!({"type": "NFC"}));
    assert_eq!(per_token(&nfc, "nfc"), Some(36));
    let nfc_tok = load(&nfc, "nfc-text");
    check(&nfc_tok, &"e\u{301}".repeat(50), "nfc");
    // A byte-level pipeline with a regex split that keeps everything still has a bound.
    let split = json!({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Isolated", "invert": false},
        {"type": "Digits", "individual_digits": true}]});
    assert_eq!(
        per_token(&with(&["pre_tokenizer"], split), "split"),
        Some(9)
    );
    // Whatever may delete characters or hide a run behind one token leaves no bound.
    for (name, v) in [
        (
            "strip",
            with(
                &["normalizer"],
                json!({"type": "Strip", "strip_left": true, "strip_right": true}),
            ),
        ),
        (
            "regex-replace",
            with(
                &["normalizer"],
                json!({"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}),
            ),
        ),
        (
            "delete",
            with(
                &["normalizer"],
                json!({"type": "Replace", "pattern": {"String": "a"}, "content": ""}),
            ),
        ),
        (
            "whitespace",
            with(&["pre_tokenizer"], json!({"type": "Whitespace"})),
        ),
        (
            "split-removed",
            with(
                &["pre_tokenizer"],
                json!({"type": "Split", "pattern": {"String": " "}, "behavior": "Removed", "invert": false}),
            ),
        ),
        ("fused-unk", with(&["model", "byte_fallback"], json!(false))),
        ("no-unk", {
            let mut v = with(&["model", "byte_fallback"], json!(false));
            v["model"]["unk_token"] = Value::Null;
            v
        }),
        ("a byte token missing", {
            let mut v = sentencepiece_like();
            v["model"]["vocab"]
                .as_object_mut()
                .unwrap()
                .remove("<0xF0>");
            v
        }),
        (
            "unicode-scripts",
            with(&["pre_tokenizer"], json!({"type": "UnicodeScripts"})),
        ),
        (
            "rstrip",
            with(
                &["added_tokens"],
                json!([{"id": 0, "content": "<unk>", "single_word": false,
            "lstrip": false, "rstrip": true, "normalized": false, "special": true}]),
            ),
        ),
    ] {
        assert_eq!(per_token(&v, name), None, "{name}");
    }
    // Replacing 3 characters by 1 divides the length by at most 3.
    let shrink3 = with(
        &["normalizer"],
        json!({"type": "Replace", "pattern": {"String": "abc"}, "content": "▁"}),
    );
    assert_eq!(per_token(&shrink3, "shrink3"), Some(27));
}

#[test]
fn unknown_characters_truncation_and_byte_level_coverage() {
    // An unknown token that stands for one character each keeps the bound.
    let mut v = sentencepiece_like();
    v["model"]["byte_fallback"] = json!(false);
    v["model"]["fuse_unk"] = json!(false);
    let tok = load(&v, "unk");
    assert_eq!(tok.min_tokens("").unwrap().per_token, 9);
    check(&tok, &"🦀é".repeat(100), "unk per character");
    // The file's truncation and padding are off, as transformers encodes a prompt.
    let mut v = sentencepiece_like();
    v["truncation"] =
        json!({"direction": "Right", "max_length": 4, "strategy": "LongestFirst", "stride": 0});
    v["padding"] = json!({"strategy": {"Fixed": 64}, "direction": "Right", "pad_to_multiple_of": null,
                          "pad_id": 0, "pad_type_id": 0, "pad_token": "<unk>"});
    let tok = load(&v, "truncation");
    let text = ["aaaaaaaa"; 10].join(" ");
    assert_eq!(check(&tok, &text, "neither truncated nor padded"), (10, 10));
    // A byte-level vocabulary without `Ā` (byte 0) drops every 0 byte: only the bytes it
    // spells count.
    let Some(p) = fixture("compat/templates/tokenizer.json") else {
        return;
    };
    let mut v: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
    assert!(load(&v, "byte-level").min_tokens("").is_some());
    v["model"]["vocab"].as_object_mut().unwrap().remove("Ā");
    let tok = load(&v, "byte-level-gap");
    let text = "\0".repeat(5000) + "ab";
    assert!(
        tok.encode(&"\0".repeat(50)).unwrap().is_empty(),
        "0 bytes are dropped"
    );
    let m = tok.min_tokens(&text).unwrap();
    assert_eq!((m.len, m.unit), (2, "bytes"));
    check(&tok, &text, "byte-level gap");
    // An added token covers its text's UTF-8 bytes, not its characters (the bound had
    // refused 200 such tokens as 600 or more).
    let mut w = v.clone();
    let long = "日本語".repeat(8);
    w["added_tokens"].as_array_mut().unwrap().push(json!({"id": 512, "content": long,
        "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": false}));
    let tok = load(&w, "byte-level-added");
    assert_eq!(tok.min_tokens("").unwrap().per_token, 72);
    assert_eq!(
        check(&tok, &long.repeat(200), "added token of 72 bytes"),
        (200, 200)
    );
    // Behind a normalizer bytes are not counted, and characters need every byte spelled.
    v["normalizer"] = json!({"type": "NFC"});
    assert_eq!(load(&v, "byte-level-gap-nfc").min_tokens(""), None);
}
