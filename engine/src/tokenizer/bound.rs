//! A lower bound on how many tokens a text encodes to, read off its length without encoding
//! it: what lets a server refuse a 16 MiB prompt for a context of 8,192 tokens at once instead
//! of after seconds of tokenizing.
//!
//! A BPE token stands for one vocabulary string (or one added token), so it covers at most as
//! many characters of the text the model sees as the longest of those strings has. A text of
//! `c` characters then needs at least `c / longest` tokens, provided no character is lost on
//! the way: the normalizer shrinks the text by at most a known factor, the pre-tokenizer drops
//! nothing, and the model spells every character (BPE drops a character it cannot spell when
//! it has no unknown token, and fuses a run of them into one with `fuse_unk`). A byte-level
//! vocabulary spells each byte as one character, so without a normalizer the count is of the
//! text's bytes, those the vocabulary can spell (SmolLM2's lacks 21 of the 256, among them the
//! control bytes 0x04 and 0x06, which it drops). Where a part of the pipeline is not known to
//! keep that promise (a regex replacement, stripping, an added token that strips the
//! whitespace beside it, WordPiece's whole-word `[UNK]`, ...), there is no bound: callers then
//! encode the whole text.

use serde_json::Value as Json;
use tokenizers::models::ModelWrapper;
use tokenizers::Tokenizer;

use super::TextTokenizer;

/// NFC/NFKC compose at most 4 characters into one (the longest canonical decomposition, e.g.
/// U+1F85 into α and 3 combining marks).
const COMPOSE_SHRINK: usize = 4;

/// How [`TextTokenizer::min_tokens`] measures a text, and how much of it one token covers.
#[derive(Debug, Clone)]
pub(super) struct TokenBound {
    /// The most units of the text one token covers.
    per_token: usize,
    /// `Some(spellable)`: count the bytes whose vocabulary character exists; `None`: count
    /// characters.
    bytes: Option<Box<[bool; 256]>>,
}

/// Bytes that never occur in UTF-8 (a vocabulary need not spell them).
fn never_in_utf8(b: u8) -> bool {
    matches!(b, 0xC0 | 0xC1 | 0xF5..=0xFF)
}

/// The bound of `tok` (the longest vocabulary or added-token string times the normalizer's
/// largest shrink, and what to count), or `None` when no such bound is known for it.
pub(super) fn token_bound(tok: &Tokenizer) -> Option<TokenBound> {
    let ModelWrapper::BPE(bpe) = tok.get_model() else {
        return None;
    };
    // Truncation would cut the count below any bound (the loader turns it off).
    if tok.get_truncation().is_some() {
        return None;
    }
    // An added token with lstrip/rstrip also swallows the whitespace run beside it.
    if tok
        .get_added_tokens_decoder()
        .values()
        .any(|t| t.lstrip || t.rstrip)
    {
        return None;
    }
    let normalizer = match tok.get_normalizer() {
        None => Json::Null,
        Some(n) => serde_json::to_value(n).ok()?,
    };
    let shrink = match &normalizer {
        Json::Null => 1,
        n => normalizer_shrink(n)?,
    };
    let pre = match tok.get_pre_tokenizer() {
        None => Json::Null,
        Some(p) => serde_json::to_value(p).ok()?,
    };
    if !pre.is_null() && !pre_tokenizer_keeps_all(&pre) {
        return None;
    }
    let vocab = tok.get_vocab(true);
    let has = |s: &str| vocab.contains_key(s);
    let longest = vocab.keys().map(|s| s.chars().count()).max()?;
    let per_token = longest.max(1).checked_mul(shrink)?;
    let affixes = [&bpe.continuing_subword_prefix, &bpe.end_of_word_suffix];
    let plain = affixes
        .iter()
        .all(|a| a.as_deref().unwrap_or("").is_empty());
    let byte_level = plain && (has_type(&pre, "ByteLevel") || has_type(&normalizer, "ByteLevel"));
    let mut spellable = Box::new([false; 256]);
    if byte_level {
        for (b, ok) in spellable.iter_mut().enumerate() {
            *ok = has(&byte_char(b as u8).to_string());
        }
        if normalizer.is_null() {
            // An added token is matched in the raw text and stored as it (not as byte
            // characters): it covers its UTF-8 bytes, 3 for each of 日本語's characters.
            let added = (tok.get_added_tokens_decoder().values())
                .map(|t| t.content.len())
                .max()
                .unwrap_or(0);
            return Some(TokenBound {
                per_token: per_token.max(added),
                bytes: Some(spellable),
            });
        }
    }
    // Counting characters: every character the text can hold must become tokens of its own.
    let spells_all = (byte_level && (0..=255u8).all(|b| spellable[b as usize] || never_in_utf8(b)))
        || (bpe.byte_fallback && (0..=255u8).all(|b| has(&format!("<0x{b:02X}>"))))
        || (!bpe.fuse_unk && bpe.unk_token.as_deref().is_some_and(has));
    spells_all.then_some(TokenBound {
        per_token,
        bytes: None,
    })
}

/// The character ByteLevel writes for byte `b` (GPT-2's `bytes_to_unicode`): printable
/// Latin-1 bytes stand for themselves, the other 68 for U+0100 upward in byte order.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        return b as char;
    }
    let n = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(0x100 + n).expect("below U+0144")
}

/// Whether a serialized normalizer or pre-tokenizer is of type `ty` or holds one (Sequence).
fn has_type(v: &Json, ty: &str) -> bool {
    match v {
        Json::Object(o) => {
            o.get("type").and_then(Json::as_str) == Some(ty) || o.values().any(|x| has_type(x, ty))
        }
        Json::Array(a) => a.iter().any(|x| has_type(x, ty)),
        _ => false,
    }
}

/// The factor by which a normalizer (as serialized in tokenizer.json) can at most divide a
/// text's character count; `None` when unbounded or unknown.
fn normalizer_shrink(n: &Json) -> Option<usize> {
    match n.get("type")?.as_str()? {
        // Only ever map a character to one or more characters, or add some.
        "NFD" | "NFKD" | "Lowercase" | "Prepend" | "ByteLevel" => Some(1),
        "NFC" | "NFKC" => Some(COMPOSE_SHRINK),
        "Replace" => {
            let pattern = n.get("pattern")?.get("String")?.as_str()?.chars().count();
            let content = n.get("content")?.as_str()?.chars().count();
            // A fixed string of `pattern` characters becomes `content` (0: deleted).
            (content > 0).then(|| pattern.div_ceil(content).max(1))
        }
        "Sequence" => n
            .get("normalizers")?
            .as_array()?
            .iter()
            .try_fold(1usize, |acc, m| acc.checked_mul(normalizer_shrink(m)?)),
        // Strip, StripAccents, BertNormalizer, Nmt, Precompiled: may delete characters.
        _ => None,
    }
}

/// Whether a pre-tokenizer (as serialized) passes every character on to the model.
fn pre_tokenizer_keeps_all(p: &Json) -> bool {
    let Some(kind) = p.get("type").and_then(Json::as_str) else {
        return false;
    };
    match kind {
        "ByteLevel" | "Metaspace" | "Digits" | "FixedLength" => true,
        "Split" | "Punctuation" => p.get("behavior").and_then(Json::as_str) != Some("Removed"),
        "Sequence" => p
            .get("pretokenizers")
            .and_then(Json::as_array)
            .is_some_and(|all| all.iter().all(pre_tokenizer_keeps_all)),
        // Whitespace, WhitespaceSplit, BertPreTokenizer, CharDelimiterSplit drop characters;
        // UnicodeScripts drops a piece's leading run of script-less characters (spaces).
        _ => false,
    }
}

/// A lower bound on a text's tokens (see [`TextTokenizer::min_tokens`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinTokens {
    /// The text's length in `unit`s.
    pub len: usize,
    /// `"bytes"` (a byte-level vocabulary without a normalizer: those it can spell) or
    /// `"characters"`.
    pub unit: &'static str,
    /// The most units one token can cover.
    pub per_token: usize,
    /// `ceil(len / per_token)`: the text has at least this many tokens.
    pub tokens: usize,
}

impl TextTokenizer {
    /// A lower bound on the number of tokens [`TextTokenizer::encode`] gives for `text`,
    /// computed from its length in O(length) without encoding it (the module docs give the
    /// argument); `None` when this tokenizer admits no such bound. Tokens a prompt gets in
    /// front (BOS) only add to it.
    pub fn min_tokens(&self, text: &str) -> Option<MinTokens> {
        let b = self.token_bound.as_ref()?;
        let (len, unit) = match &b.bytes {
            Some(ok) => (text.bytes().filter(|&x| ok[x as usize]).count(), "bytes"),
            None => (text.chars().count(), "characters"),
        };
        Some(MinTokens {
            len,
            unit,
            per_token: b.per_token,
            tokens: len.div_ceil(b.per_token),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_chars_are_byte_levels_alphabet() {
        let ours: std::collections::HashSet<char> = (0..=255u8).map(byte_char).collect();
        let theirs = tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet();
        assert_eq!(ours.len(), 256);
        assert!(ours.iter().all(|c| theirs.contains(c)) && theirs.len() == 256);
        assert_eq!(byte_char(b' '), 'Ġ');
        assert_eq!(byte_char(b'\n'), 'Ċ');
    }
}
