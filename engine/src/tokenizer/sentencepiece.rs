//! SentencePiece vocabularies stored in GGUF files (`tokenizer.ggml.model` = `llama`: Llama 2,
//! Mistral, TinyLlama, CodeLlama, ...), rebuilt as the BPE tokenizer the Llama 2
//! `tokenizer.json` describes: a space in front of each piece of text, spaces as `▁`, BPE with
//! byte fallback (`<0xAB>` pieces for what the vocabulary lacks), and a decoder that undoes
//! all three.
//!
//! Such a file stores no merges, only each token's score. The merges are rebuilt from the
//! scores as transformers does for these files (`generate_merges`, tokenization_utils_base.py):
//! every split of a token into two tokens is a merge, ranked by the whole token's score. That
//! is llama.cpp's SentencePiece algorithm too (llm_tokenizer_spm: the best-scoring adjacent
//! pair is merged first). Where transformers and llama.cpp part, the pieces of text follow
//! llama.cpp and SentencePiece: a piece that starts with a space still gets the prefix space
//! (transformers' Metaspace adds none there), and the text after a control or user-defined
//! token is a piece of its own with its own prefix space (`tests/fixtures/make_spm_vocab.py`).

use std::collections::HashMap;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::{NormalizerWrapper, Tokenizer};

use crate::error::{Error, Result};
use crate::loader::gguf::{GgufFile, GgufValue};

/// The longest token (in bytes) whose splits become merges.
const MAX_MERGED_BYTES: usize = 1024;

/// SentencePiece's word-boundary mark, which stands for a space.
const SPACE: &str = "\u{2581}";

/// The tokenizer of `g`'s SentencePiece vocabulary `tokens` (control and user-defined tokens
/// are added by the caller; `unk_id`, an index of `tokens`, is the unknown token).
/// `tokenizer.ggml.add_space_prefix` (default true, as llama.cpp) decides the prefix space.
pub(super) fn build(g: &GgufFile, tokens: &[&str], unk_id: usize) -> Result<Tokenizer> {
    let p = &g.path;
    let key = "tokenizer.ggml.scores";
    let scores = g
        .metadata
        .get(key)
        .and_then(GgufValue::as_array)
        .ok_or_else(|| {
            Error::format(
                p,
                format!("missing metadata array `{key}` (a SentencePiece vocabulary's scores)"),
            )
        })?;
    if scores.len() != tokens.len() {
        return Err(Error::format(
            p,
            format!(
                "`{key}` has {} entries for {} tokens",
                scores.len(),
                tokens.len()
            ),
        ));
    }
    let scores = scores
        .iter()
        .map(|v| {
            (v.as_f64())
                .map(|s| s as f32)
                .ok_or_else(|| Error::format(p, format!("`{key}`: expected numbers, found {v:?}")))
        })
        .collect::<Result<Vec<f32>>>()?;
    let meta = |k: &str| g.metadata.get(k);
    let unk = tokens[unk_id];
    // A token written twice is its later id, as in llama.cpp's and transformers' maps.
    let vocab: Vocab = (tokens.iter().enumerate())
        .map(|(i, t)| (t.to_string(), i as u32))
        .collect();
    // Scores that do not rank the tokens (llama.cpp writes -1000 for every token of a
    // vocabulary converted from a tokenizer.json alone): llama.cpp then merges the leftmost of
    // equal pairs first, which ranked merges cannot reproduce.
    let mut distinct: Vec<u32> = scores.iter().map(|s| s.to_bits()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() * 2 < tokens.len() {
        tracing::warn!(
            "{}: only {} different scores for {} tokens: ties between merges are broken as transformers breaks them, not as llama.cpp does (leftmost first); for the model's own tokenization put its tokenizer.json beside the .gguf",
            super::file_name(p),
            distinct.len(),
            tokens.len()
        );
    }
    let merges = merges_from_scores(tokens, &scores);
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .unk_token(unk.to_string())
        .fuse_unk(true)
        .byte_fallback(true)
        .build()
        .map_err(|e| Error::format(p, format!("cannot build the BPE tokenizer: {e}")))?;
    let mut tok = Tokenizer::new(bpe);
    let prefix = !matches!(
        meta("tokenizer.ggml.add_space_prefix"),
        Some(GgufValue::Bool(false))
    );
    let replace = Replace::new(" ", SPACE)
        .map_err(|e| Error::invalid(format!("SentencePiece normaliser: {e}")))?;
    let mut normalizers = vec![NormalizerWrapper::from(replace)];
    if prefix {
        normalizers.insert(0, Prepend::new(SPACE.into()).into());
    }
    tok.with_normalizer(Some(NormalizerSequence::new(normalizers)));
    let unspace = Replace::new(SPACE, " ")
        .map_err(|e| Error::invalid(format!("SentencePiece decoder: {e}")))?;
    let mut decoders = vec![
        DecoderWrapper::Replace(unspace),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    tok.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(tok)
}

/// BPE merges implied by a SentencePiece vocabulary (transformers' `generate_merges` with
/// scores): for each token in order (a repeated one at its last place), each split into two
/// tokens (ordered by their ids), then
/// all of them by the whole token's score, best first, ties by the longer left part and the
/// longer right part (in characters), else in that order.
fn merges_from_scores(tokens: &[&str], scores: &[f32]) -> Vec<(String, String)> {
    let ids: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, &t)| (t, i)).collect();
    struct Merge<'a> {
        left: &'a str,
        right: &'a str,
        score: f32,
        chars: (usize, usize),
    }
    let mut merges = Vec::new();
    for (i, &token) in tokens.iter().enumerate() {
        if ids[token] != i {
            continue; // a repeated token: its last entry stands
        }
        // Every cut of a token hashes both halves: quadratic in its length. Real pieces are
        // short (SentencePiece's default limit is 16 characters); a hostile file's megabyte
        // token gets no merges (it can then only be matched whole, as no text reaches it).
        if token.len() > MAX_MERGED_BYTES {
            continue;
        }
        let at = merges.len();
        let n = token.chars().count();
        for (k, (cut, _)) in token.char_indices().skip(1).enumerate() {
            let (left, right) = token.split_at(cut);
            if ids.contains_key(left) && ids.contains_key(right) {
                let chars = (k + 1, n - k - 1);
                let score = scores[i];
                merges.push(Merge {
                    left,
                    right,
                    score,
                    chars,
                });
            }
        }
        merges[at..].sort_by_key(|m| (ids[m.left], ids[m.right]));
    }
    // Stable: equal keys keep the order above, as Python's sorted(reverse=True) does.
    merges.sort_by(|a, b| {
        (b.score.total_cmp(&a.score))
            .then(b.chars.0.cmp(&a.chars.0))
            .then(b.chars.1.cmp(&a.chars.1))
    });
    merges
        .into_iter()
        .map(|m| (m.left.to_string(), m.right.to_string()))
        .collect()
}
