//! A GGUF byte-level vocabulary split as llama.cpp splits its `tokenizer.ggml.pre` group, where
//! the groups part: o200k's (`gpt-4o`, Phi-4-mini's and Llama 4's) against Llama 3's. The
//! other groups' names: `gguf.rs`'s `gguf_pre_tokenizers_and_tool_use_template`.

#[allow(dead_code)]
#[path = "gguf/writer.rs"]
mod writer;

use dlp_engine::loader::gguf::GgufFile;
use dlp_engine::tokenizer::TextTokenizer;
use writer::{Writer, M};

/// `texts` encoded by a vocabulary of `tokens` and `merges` under `pre`.
fn encode(pre: &'static str, tokens: &[&str], merges: &[&str], texts: &[&str]) -> Vec<Vec<u32>> {
    let kv = vec![
        ("general.architecture".into(), M::Str("llama")),
        ("tokenizer.ggml.model".into(), M::Str("gpt2")),
        ("tokenizer.ggml.pre".into(), M::Str(pre)),
        (
            "tokenizer.ggml.tokens".into(),
            M::Strs(tokens.iter().map(|t| t.to_string()).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            M::I32s(vec![1; tokens.len()]),
        ),
        (
            "tokenizer.ggml.merges".into(),
            M::Strs(merges.iter().map(|m| m.to_string()).collect()),
        ),
    ];
    let w = Writer {
        version: 3,
        kv,
        tensors: Vec::new(),
    };
    let dir = std::env::temp_dir().join(format!("dlp-gguf-pre-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A file per call: the tests run side by side and write the same groups.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = dir.join(format!("{pre}-{call}.gguf"));
    std::fs::write(&p, w.bytes()).unwrap();
    let tok = TextTokenizer::from_gguf(&GgufFile::open(&p).unwrap()).unwrap();
    texts.iter().map(|t| tok.encode(t).unwrap()).collect()
}

/// "aBa" is one word to Llama 3 (`a B` merged first) and two to o200k ("a", "Ba", a capital
/// starting a word); o200k keeps a contraction on its word ("a's"), Llama 3 splits off "'s".
#[test]
fn o200k_splits_capitals_and_keeps_contractions() {
    let tokens = ["a", "B", "'", "s", "aB", "Ba", "'s", "a's"];
    let merges = ["a B", "B a", "' s", "a 's"];
    let ids = |pre| encode(pre, &tokens, &merges, &["aBa", "a's"]);
    assert_eq!(ids("gpt-4o"), [vec![0, 5], vec![7]]);
    assert_eq!(ids("llama4"), [vec![0, 5], vec![7]]);
    assert_eq!(ids("llama-bpe"), [vec![4, 0], vec![0, 6]]);
}

/// DeepSeek V3's group (HunYuan dense's `hunyuan-dense`) lets an ASCII punctuation mark lead a
/// word, so "'tis" is one piece, where Llama 3's splits the contraction "'t" off first; and it
/// splits CJK runs from the space before them, which Llama 3 keeps on the word.
#[test]
fn deepseek3_keeps_a_leading_mark_on_its_word() {
    let tokens = ["'", "t", "i", "s", "'t", "is", "'tis"];
    let merges = ["' t", "i s", "'t is"];
    let ids = |pre| encode(pre, &tokens, &merges, &["'tis"]);
    assert_eq!(ids("hunyuan-dense"), [vec![6]]);
    assert_eq!(ids("deepseek-v3"), [vec![6]]);
    assert_eq!(ids("llama-bpe"), [vec![4, 5]]);
    // " 中" byte-level: "Ġ" and the three bytes of 中 (e4 b8 ad as ä ¸ Ń).
    let tokens = ["Ġ", "ä", "¸", "Ń", "Ġä", "Ġä¸", "Ġä¸Ń", "ä¸", "ä¸Ń"];
    let merges = ["Ġ ä", "Ġä ¸", "Ġä¸ Ń", "ä ¸", "ä¸ Ń"];
    let ids = |pre| encode(pre, &tokens, &merges, &[" 中"]);
    assert_eq!(ids("hunyuan-dense"), [vec![0, 8]]);
    assert_eq!(ids("llama-bpe"), [vec![6]]);
}
