//! A lower bound on how many tokens a text encodes to, read off its length without encoding
//! it: what lets a server refuse a 16 MiB prompt for a context of 8,192 tokens at once instead
//! of after seconds of tokenizing.
//!
//! A BPE token stands for one vocabulary string (or one added token), so it covers at most as
//! many characters of the text the model sees as the longest of those strings has. A text of
//! `c` characters then needs at least `c / longest` tokens, provided the normalizer cannot
//! shrink the text by more than a known factor and the pre-tokenizer drops nothing. Byte-level
//! vocabularies spell every byte as one character, so a byte-level token covers at most
//! `longest` bytes and hence at most `longest` characters too. Where a part of the pipeline
//! is not known to keep that promise (a regex replacement, stripping, an added token that
//! strips the whitespace beside it, WordPiece's whole-word `[UNK]`, a fused unknown token,
//! ...), there is no bound: callers then encode the whole text.

use serde_json::Value as Json;
use tokenizers::models::ModelWrapper;
use tokenizers::Tokenizer;

use super::TextTokenizer;

/// NFC/NFKC compose at most 4 characters into one (the longest canonical decomposition, e.g.
/// U+1F85 into α and 3 combining marks).
const COMPOSE_SHRINK: usize = 4;

/// The most characters of raw text one token of `tok` can cover (the longest vocabulary or
/// added-token string times the normalizer's largest shrink), or `None` when no such bound
/// is known for this tokenizer.
pub(super) fn max_chars_per_token(tok: &Tokenizer) -> Option<usize> {
    let ModelWrapper::BPE(bpe) = tok.get_model() else {
        return None;
    };
    // Without byte fallback, a fused unknown token stands for a whole run of unknown characters.
    if bpe.unk_token.is_some() && bpe.fuse_unk && !bpe.byte_fallback {
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
    let shrink = match tok.get_normalizer() {
        None => 1,
        Some(n) => normalizer_shrink(&serde_json::to_value(n).ok()?)?,
    };
    if let Some(p) = tok.get_pre_tokenizer() {
        if !pre_tokenizer_keeps_all(&serde_json::to_value(p).ok()?) {
            return None;
        }
    }
    let longest = tok
        .get_vocab(true)
        .keys()
        .map(|s| s.chars().count())
        .max()?;
    Some(longest.max(1) * shrink)
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
        "ByteLevel" | "Metaspace" | "Digits" | "UnicodeScripts" | "FixedLength" => true,
        "Split" | "Punctuation" => p.get("behavior").and_then(Json::as_str) != Some("Removed"),
        "Sequence" => p
            .get("pretokenizers")
            .and_then(Json::as_array)
            .is_some_and(|all| all.iter().all(pre_tokenizer_keeps_all)),
        // Whitespace, WhitespaceSplit, BertPreTokenizer, CharDelimiterSplit drop characters.
        _ => false,
    }
}

/// A lower bound on a text's tokens (see [`TextTokenizer::min_tokens`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinTokens {
    /// The text's length in characters.
    pub chars: usize,
    /// The most characters one token can cover.
    pub per_token: usize,
    /// `ceil(chars / per_token)`: the text has at least this many tokens.
    pub tokens: usize,
}

impl TextTokenizer {
    /// A lower bound on the number of tokens [`TextTokenizer::encode`] gives for `text`,
    /// computed from its length in O(length) without encoding it (the module docs give the
    /// argument); `None` when this tokenizer admits no such bound. Tokens a prompt gets in
    /// front (BOS) only add to it.
    pub fn min_tokens(&self, text: &str) -> Option<MinTokens> {
        let per_token = self.max_token_chars?;
        let chars = text.chars().count();
        Some(MinTokens {
            chars,
            per_token,
            tokens: chars.div_ceil(per_token),
        })
    }
}
