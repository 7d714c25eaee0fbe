//! SentencePiece vocabularies in GGUF files (`tokenizer.ggml.model` = `llama`: Llama 2,
//! Mistral, TinyLlama): the ids of a vocabulary trained by SentencePiece itself, against the
//! ids llama.cpp's rule gives (`tests/fixtures/spm-vocab`, made by
//! `tests/fixtures/make_spm_vocab.py`), and small hand-written vocabularies for the merge
//! order, the prefix-space switch and the errors.

#[allow(dead_code)]
mod common;
#[allow(dead_code)]
#[path = "gguf/writer.rs"]
mod writer;

use common::scratch;
use dlp_engine::loader::gguf::GgufFile;
use dlp_engine::tokenizer::TextTokenizer;
use serde_json::Value;
use writer::{Writer, M};

fn fixture_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/spm-vocab")
}

#[test]
fn trained_vocabulary_tokenizes_as_llama_cpp_and_sentencepiece() {
    let dir = fixture_dir();
    let g = GgufFile::open(&dir.join("vocab.gguf")).unwrap();
    let tok = TextTokenizer::from_gguf(&g).unwrap();
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    assert_eq!(
        tok.vocab_size(),
        expected["vocab_size"].as_u64().unwrap() as usize
    );
    let cases = expected["cases"].as_array().unwrap();
    assert!(cases.len() >= 18);
    let mut differs_from_transformers = 0;
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let ids = |k: &str| -> Vec<u32> {
            (case[k].as_array().unwrap().iter())
                .map(|v| v.as_u64().unwrap() as u32)
                .collect()
        };
        let got = tok.encode(text).unwrap();
        assert_eq!(got, ids("expected"), "ids of {text:?}");
        differs_from_transformers += (got != ids("transformers")) as usize;
        // SentencePiece's decoding: the prefix space dropped, control tokens left out.
        let want = case["decoded"].as_str().unwrap();
        assert_eq!(tok.decode(&got, true).unwrap(), want, "text of {text:?}");
        let mut stream = tok.stream_decoder(true);
        let mut streamed = String::new();
        for &id in &got {
            streamed += &stream.push(id).unwrap().unwrap_or_default();
        }
        streamed += &stream.finish().unwrap().unwrap_or_default();
        assert_eq!(streamed, want, "streamed text of {text:?}");
    }
    // Where a piece starts with a space, or follows a control or user-defined token.
    assert_eq!(differs_from_transformers, 4);
    // A piece's bytes keep its space (decoding it alone drops a text's first space), for
    // logprobs and --show-tokens; byte pieces are their byte.
    let ids = tok.encode("Hello 東").unwrap();
    let bytes: Vec<Vec<u8>> = ids.iter().map(|&i| tok.token_bytes(i)).collect();
    assert_eq!(bytes.concat(), " Hello 東".as_bytes(), "{ids:?}");
    assert_eq!(bytes[0], b" H");
    assert_eq!(bytes.last().unwrap().len(), 1, "a byte-fallback piece");
    // llama.cpp's defaults for a SentencePiece vocabulary: BOS in front, `</s>` ends.
    assert_eq!(tok.bos_prefix(false), Some(1));
    assert_eq!(tok.eos_token_ids(), vec![2]);
    assert!(tok.is_special(1) && tok.is_special(0) && !tok.is_special(4));
}

/// A vocabulary written by hand: `▁`, `a`, `b`, and merges whose order the scores decide.
fn vocab(tokens: &[&str], scores: &[f32], extra: Vec<(String, M)>) -> Writer {
    let mut kv = vec![
        ("general.architecture".to_string(), M::Str("llama")),
        ("tokenizer.ggml.model".to_string(), M::Str("llama")),
        (
            "tokenizer.ggml.tokens".to_string(),
            M::Strs(tokens.iter().map(|t| t.to_string()).collect()),
        ),
        (
            "tokenizer.ggml.scores".to_string(),
            M::F32s(scores.to_vec()),
        ),
    ];
    kv.extend(extra);
    Writer {
        version: 3,
        kv,
        tensors: Vec::new(),
    }
}

fn open(dir: &std::path::Path, name: &str, w: &Writer) -> dlp_engine::Result<TextTokenizer> {
    let p = dir.join(name);
    std::fs::write(&p, w.bytes()).unwrap();
    TextTokenizer::from_gguf(&GgufFile::open(&p)?)
}

#[test]
fn merges_follow_the_scores_and_the_prefix_switch() {
    let dir = scratch("spm");
    let tokens = ["<unk>", "▁", "a", "b", "c", "ab", "bc", "▁a", "▁ab", "abc"];
    // "abc": "ab" (score -1) beats "bc" (-2), then "abc" (-3) from ab + c.
    let scores = [0.0, -5.0, -6.0, -6.0, -6.0, -1.0, -2.0, -4.0, -3.5, -3.0];
    let tok = open(&dir, "a.gguf", &vocab(&tokens, &scores, vec![])).unwrap();
    // With the prefix space, "▁abc": a + b (-1) first; then ab + c (abc, -3) beats ▁ + ab
    // (▁ab, -3.5).
    assert_eq!(tok.encode("abc").unwrap(), vec![1, 9]);
    assert_eq!(tok.encode("ab").unwrap(), vec![8]);
    assert_eq!(tok.decode(&[8], true).unwrap(), "ab");
    // Swap the two last scores: ▁ab first, then c alone.
    let mut s2 = scores;
    s2.swap(8, 9);
    let tok = open(&dir, "b.gguf", &vocab(&tokens, &s2, vec![])).unwrap();
    assert_eq!(tok.encode("abc").unwrap(), vec![8, 4]);
    // Without the prefix space (`add_space_prefix` false): no ▁, none stripped.
    let off = vec![(
        "tokenizer.ggml.add_space_prefix".to_string(),
        M::Bool(false),
    )];
    let tok = open(&dir, "c.gguf", &vocab(&tokens, &scores, off)).unwrap();
    assert_eq!(tok.encode("abc").unwrap(), vec![9]);
    assert_eq!(tok.encode(" ab").unwrap(), vec![8]);
    assert_eq!(tok.decode(&[8], true).unwrap(), " ab");
    // Bytes the vocabulary lacks: the unknown token (no `<0x..>` pieces in this one).
    assert_eq!(tok.encode("z").unwrap(), vec![0]);
    // No special ids in the file: llama.cpp's defaults (<s> is 1), and so for one outside the
    // vocabulary (not put in front of every prompt as it is).
    assert_eq!(tok.bos_prefix(false), Some(1));
    let far = vec![("tokenizer.ggml.bos_token_id".to_string(), M::U32(999))];
    let tok = open(&dir, "d.gguf", &vocab(&tokens, &scores, far)).unwrap();
    assert_eq!(tok.bos_prefix(false), Some(1));
    let tokens2 = ["<unk>"];
    let far = vec![("tokenizer.ggml.bos_token_id".to_string(), M::U32(999))];
    let tok = open(&dir, "f.gguf", &vocab(&tokens2, &[0.0], far)).unwrap();
    assert_eq!(
        tok.bos_prefix(false),
        None,
        "no default where the vocabulary has no id 1 either"
    );
    // A token written twice is its later id (llama.cpp's map, transformers' dict).
    let mut twice = tokens.to_vec();
    twice.push("ab");
    let mut s3 = scores.to_vec();
    s3.push(-1.0);
    let tok = open(&dir, "e.gguf", &vocab(&twice, &s3, vec![])).unwrap();
    assert_eq!(tok.encode("ab").unwrap(), vec![8]);
    assert_eq!(tok.token_id("ab"), Some(10));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn broken_sentencepiece_metadata_is_named() {
    let dir = scratch("spm-bad");
    let tokens = ["<unk>", "▁", "a"];
    let mut w = vocab(&tokens, &[0.0, -1.0], vec![]);
    let e = open(&dir, "short.gguf", &w).err().unwrap().to_string();
    assert!(
        e.contains("`tokenizer.ggml.scores` has 2 entries for 3 tokens"),
        "{e}"
    );
    w.kv.retain(|(k, _)| k != "tokenizer.ggml.scores");
    let e = open(&dir, "none.gguf", &w).err().unwrap().to_string();
    assert!(
        e.contains("missing metadata array `tokenizer.ggml.scores`"),
        "{e}"
    );
    let w = vocab(
        &tokens,
        &[0.0, -1.0, -2.0],
        vec![("tokenizer.ggml.unknown_token_id".to_string(), M::U32(7))],
    );
    // An unknown id outside the vocabulary: llama.cpp's default (0) with a warning.
    let tok = open(&dir, "unk.gguf", &w).unwrap();
    assert_eq!(tok.encode("a\u{378}").unwrap(), vec![1, 2, 0]);
    let _ = std::fs::remove_dir_all(dir);
}
