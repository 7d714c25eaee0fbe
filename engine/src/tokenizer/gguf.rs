//! A tokenizer rebuilt from a GGUF file's own vocabulary (`tokenizer.ggml.*`), as llama.cpp
//! reads it: byte-level BPE with llama.cpp's pre-tokenizer for `tokenizer.ggml.pre`, its
//! `add_bos` rule, control and user-defined tokens, and the file's chat templates.

use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::{bound, file_name, special_ids, SpecialTokens, TextTokenizer};
use crate::error::{Error, Result};
use crate::loader::gguf::{GgufFile, GgufValue};

/// A GGUF's `tool_use` template (llama.cpp's converter writes named templates as
/// `tokenizer.chat_template.NAME`) and where it came from.
fn gguf_tool_use_template(g: &GgufFile) -> Option<(String, String)> {
    let t = g
        .metadata
        .get("tokenizer.chat_template.tool_use")?
        .as_str()?;
    let name = format!("tokenizer.chat_template.tool_use of {}", file_name(&g.path));
    Some((t.to_string(), name))
}

impl TextTokenizer {
    /// What a tokenizer.json beside a GGUF (without a tokenizer_config.json) takes from the
    /// GGUF: its chat templates (the `tool_use` one too) where the tokenizer has none; the
    /// texts of its start and end tokens (`tokenizer.ggml.bos_token_id` / `eos_token_id`, read
    /// in this tokenizer's vocabulary) where the tokenizer names none, so that a template's
    /// `{{ bos_token }}` writes llama.cpp's BOS; and llama.cpp's end-of-generation tokens by
    /// their text (Gemma's `<end_of_turn>`) as end ids. A tokenizer rebuilt from the GGUF has
    /// all of them already.
    pub fn adopt_gguf(&mut self, g: &GgufFile) {
        if self.chat_template.is_none() {
            let origin = format!("tokenizer.chat_template of {}", file_name(&g.path));
            self.set_chat_template(g.chat_template(), &origin);
            self.tool_use_template = gguf_tool_use_template(g);
        }
        let id = |k: &str| g.metadata.get(k).and_then(GgufValue::as_u64);
        let text = |i: Option<u64>| i.and_then(|i| self.tok.id_to_token(u32::try_from(i).ok()?));
        if self.special.bos.is_none() {
            self.special.bos = text(id("tokenizer.ggml.bos_token_id"));
        }
        if self.special.eos.is_none() {
            self.special.eos = text(id("tokenizer.ggml.eos_token_id"));
        }
        let ends = (self.special.eos.iter().map(String::as_str))
            .chain(crate::loader::gguf::EOG_TEXTS)
            .filter_map(|t| self.tok.token_to_id(t))
            .collect::<Vec<u32>>();
        for i in ends {
            if !self.eos_ids.contains(&i) {
                self.eos_ids.push(i);
            }
        }
    }

    /// Why the vocabulary of GGUF file `g` cannot be rebuilt as a tokenizer (its
    /// `tokenizer.ggml.model` missing, or neither `gpt2` nor `llama`: T5's Unigram, BERT's
    /// WordPiece, ...), naming the file; None when [`TextTokenizer::from_gguf`] reads it.
    pub fn gguf_unsupported(g: &GgufFile) -> Option<String> {
        let p = g.path.display();
        match g.metadata.get("tokenizer.ggml.model").map(GgufValue::as_str) {
            Some(Some("gpt2")) => {
                let pre = (g.metadata.get("tokenizer.ggml.pre"))
                    .and_then(GgufValue::as_str)
                    .unwrap_or("default");
                (pre_group(pre).is_none()).then(|| format!("{p}: {}", unknown_pre(pre)))
            }
            Some(Some("llama")) => None,
            None => Some(format!("{p}: no `tokenizer.ggml.model` in its metadata, so no vocabulary to read text with")),
            Some(Some(m)) => Some(format!(
                "{p}: GGUF tokenizer model `{m}` is not rebuilt (`gpt2`, byte-level BPE, and `llama`, SentencePiece, are)"
            )),
            Some(None) => Some(format!("{p}: `tokenizer.ggml.model` is not a string")),
        }
    }

    /// Rebuilds the tokenizer stored in a GGUF file: byte-level BPE (`tokenizer.ggml.model` =
    /// `gpt2`) with llama.cpp's pre-tokenizer for `tokenizer.ggml.pre`, or a SentencePiece
    /// vocabulary (`llama`, see `sentencepiece.rs`); control tokens as special tokens and
    /// user-defined ones as added text tokens (both matched whole), and the file's chat
    /// template.
    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        g.check_not_split()?;
        let p = &g.path;
        let meta = |k: &str| g.metadata.get(k);
        if let Some(why) = Self::gguf_unsupported(g) {
            return Err(Error::unsupported(format!(
                "{why}; put the model's tokenizer.json in the .gguf's folder"
            )));
        }
        let strings = |k: &str| -> Result<Vec<&str>> {
            let a = meta(k)
                .and_then(GgufValue::as_array)
                .ok_or_else(|| Error::format(p, format!("missing metadata array `{k}`")))?;
            a.iter()
                .map(|v| {
                    v.as_str().ok_or_else(|| {
                        Error::format(p, format!("`{k}`: expected strings, found {v:?}"))
                    })
                })
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        if tokens.is_empty() {
            return Err(Error::format(p, "`tokenizer.ggml.tokens` is empty"));
        }
        let sentencepiece =
            meta("tokenizer.ggml.model").and_then(GgufValue::as_str) == Some("llama");
        let ids: Vec<(&str, Option<u32>)> = SPECIAL_IDS
            .iter()
            .map(|&(k, default)| {
                (
                    k,
                    special_id(g, k, default.filter(|_| sentencepiece), tokens.len()),
                )
            })
            .collect();
        let id = |k: &str| ids.iter().find(|(key, _)| *key == k).and_then(|(_, i)| *i);
        let (mut tok, group) = if sentencepiece {
            let unk = id("tokenizer.ggml.unknown_token_id").unwrap_or(0);
            (super::sentencepiece::build(g, &tokens, unk as usize)?, None)
        } else {
            let (tok, group) = byte_level(g, &tokens, strings("tokenizer.ggml.merges")?)?;
            (tok, Some(group))
        };
        // llama.cpp token types: 2 = unknown, 3 = control, 4 = user-defined; all are matched
        // whole in text (llama.cpp matches the first two where it parses special tokens, as
        // chat prompts are). Only they are special (left out of generated text): user-defined
        // tokens are text, as llama.cpp prints them (Qwen's `<tool_call>`, which a tool-call
        // parser reads, is one: transformers marks it `special: false`). Not normalised: the
        // text between them is a piece of its own (SentencePiece's prefix space included).
        if let Some(types) = meta("tokenizer.ggml.token_type").and_then(GgufValue::as_array) {
            let of_type = |want: &[u64], special: bool| -> Vec<AddedToken> {
                (types.iter().zip(&tokens))
                    .filter(|(ty, _)| ty.as_u64().is_some_and(|t| want.contains(&t)))
                    .map(|(_, t)| AddedToken::from(t.to_string(), special).normalized(false))
                    .collect()
            };
            // Byte-level files mark their unknown token so rarely that transformers' list
            // (control only) is kept for them.
            tok.add_special_tokens(&of_type(if sentencepiece { &[2, 3] } else { &[3] }, true));
            tok.add_tokens(&of_type(&[4], false));
        }
        let name = |i: Option<u32>| {
            i.and_then(|i| tokens.get(i as usize))
                .map(|s| s.to_string())
        };
        let mut eos_ids = Vec::new();
        for k in [
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.eot_token_id",
            "tokenizer.ggml.eom_token_id",
        ] {
            if let Some(i) = id(k).filter(|i| !eos_ids.contains(i)) {
                eos_ids.push(i);
            }
        }
        // llama.cpp (llama-vocab.cpp, `load`): SentencePiece vocabularies and the Llama-3
        // family of pre-tokenizers turn add_bos on; the metadata key, when present, decides.
        let add_bos = match meta("tokenizer.ggml.add_bos_token") {
            Some(v) => *v == GgufValue::Bool(true),
            None => group.is_none_or(|g| g == PreGroup::Llama3),
        };
        let token_bound = bound::token_bound(&tok);
        Ok(TextTokenizer {
            special_ids: special_ids(&tok),
            tok,
            chat_template: g.chat_template(),
            template_source: format!("metadata `tokenizer.chat_template` of {}", file_name(p)),
            template_name: format!("tokenizer.chat_template of {}", file_name(p)),
            // llama.cpp's converter writes named templates as `tokenizer.chat_template.NAME`.
            tool_use_template: gguf_tool_use_template(g),
            special: SpecialTokens {
                bos: name(id("tokenizer.ggml.bos_token_id")),
                eos: name(id("tokenizer.ggml.eos_token_id")),
                pad: name(id("tokenizer.ggml.padding_token_id")),
                unk: name(id("tokenizer.ggml.unknown_token_id")),
            },
            eos_ids,
            prompt_prefix: match add_bos {
                true => id("tokenizer.ggml.bos_token_id").into_iter().collect(),
                false => Vec::new(),
            },
            // llama.cpp appends EOS to a raw prompt where the file sets add_eos (chat prompts
            // are left as the template writes them here).
            raw_suffix: match meta("tokenizer.ggml.add_eos_token") {
                Some(GgufValue::Bool(true)) => {
                    id("tokenizer.ggml.eos_token_id").into_iter().collect()
                }
                _ => Vec::new(),
            },
            bos_on_chat: true,
            token_bound,
        })
    }
}

/// The byte-level BPE of a `gpt2` vocabulary (`tokens` and their `merges`), split as
/// llama.cpp splits text for the file's `tokenizer.ggml.pre`, and that pre-tokenizer's group.
fn byte_level(g: &GgufFile, tokens: &[&str], merges: Vec<&str>) -> Result<(Tokenizer, PreGroup)> {
    let p = &g.path;
    let meta = |k: &str| g.metadata.get(k);
    let mut vocab = Vocab::default();
    for (i, t) in tokens.iter().enumerate() {
        vocab.entry(t.to_string()).or_insert(i as u32);
    }
    let merges = merges
        .iter()
        .map(|m| {
            // Like llama.cpp: split at the first space after the first character.
            let pos = m
                .char_indices()
                .skip(1)
                .find(|&(_, c)| c == ' ')
                .map(|(i, _)| i);
            pos.map(|i| (m[..i].to_string(), m[i + 1..].to_string()))
                .ok_or_else(|| {
                    Error::format(
                        p,
                        format!("tokenizer.ggml.merges: entry {m:?} is not \"left right\""),
                    )
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let pre = meta("tokenizer.ggml.pre")
        .and_then(GgufValue::as_str)
        .unwrap_or("default");
    let group = pre_group(pre).ok_or_else(|| Error::unsupported(unknown_pre(pre)))?;
    let (pre_tok, ignore_merges) = pre_tokenizer(group)?;
    if pre == "default" {
        tracing::warn!(
            "{}: no tokenizer.ggml.pre: its text is split with GPT-2's pre-tokenizer, which may not be the model's (llama.cpp warns that generation quality may suffer); a tokenizer.json beside the .gguf is read instead",
            file_name(p)
        );
    }
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(ignore_merges)
        .build()
        .map_err(|e| Error::format(p, format!("cannot build the BPE tokenizer: {e}")))?;
    let mut tok = Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(pre_tok));
    tok.with_decoder(Some(ByteLevel::default()));
    Ok((tok, group))
}

/// The special-token ids a GGUF names, with llama.cpp's defaults for a SentencePiece
/// vocabulary (llama-vocab.cpp: <unk> 0, <s> 1, </s> 2).
const SPECIAL_IDS: [(&str, Option<u64>); 6] = [
    ("tokenizer.ggml.bos_token_id", Some(1)),
    ("tokenizer.ggml.eos_token_id", Some(2)),
    ("tokenizer.ggml.unknown_token_id", Some(0)),
    ("tokenizer.ggml.eot_token_id", None),
    ("tokenizer.ggml.eom_token_id", None),
    ("tokenizer.ggml.padding_token_id", None),
];

/// Special id `key` of `g` as llama.cpp reads it: the file's, or `default` where the file has
/// none, or one outside the vocabulary or not an integer (with a warning, as llama.cpp's "bad
/// special token"); `None` where neither gives one.
fn special_id(g: &GgufFile, key: &str, default: Option<u64>, n_tokens: usize) -> Option<u32> {
    let fallback = default
        .filter(|&d| (d as usize) < n_tokens)
        .map(|d| d as u32);
    let Some(v) = g.metadata.get(key) else {
        return fallback;
    };
    match v.as_u64() {
        Some(i) if (i as usize) < n_tokens => Some(i as u32),
        _ => {
            tracing::warn!(
                "{}: `{key}` {v:?} is not an id of the vocabulary ({n_tokens} tokens); {}",
                file_name(&g.path),
                fallback.map_or("left out".to_string(), |d| format!(
                    "{d} is used, as llama.cpp does"
                ))
            );
            fallback
        }
    }
}

const LLAMA3_RE: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_RE: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// llama.cpp's `DEEPSEEK3_LLM` splits (llama-vocab.cpp), applied in turn: digit groups of up
/// to three, runs of CJK ideographs and kana, then words (an ASCII punctuation mark may lead
/// one), punctuation runs and whitespace.
const DEEPSEEK3_RES: [&str; 3] = [
    r"\p{N}{1,3}",
    r"[一-龥぀-ゟ゠-ヿ]+",
    r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
];
/// o200k's (GPT-4o's tokenizer.json, the form llama.cpp's GPT4O regex is rewritten from): a
/// capitalised word splits from the one before it, contractions stay on their word. As the
/// model's training and transformers split: llama.cpp's rewrite for its regex engine splits
/// combining marks off words and treats non-ASCII letters as both cases (`cafe\u{301}`,
/// `ÉCOLE`), so on accented, Greek, Cyrillic or Indic text its ids differ from these.
const O200K_RE: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How llama.cpp splits a group of `tokenizer.ggml.pre` values (llama-vocab.cpp).
#[derive(Debug, Clone, Copy, PartialEq)]
enum PreGroup {
    Gpt2,
    Digits,
    Llama3,
    Llama3Merged,
    Qwen2,
    Gpt4o,
    Deepseek3,
}

/// The group of a `tokenizer.ggml.pre` value; None for one not rebuilt here. No value
/// (`default`, old conversions) splits as GPT-2 here; llama.cpp's own default splits
/// punctuation runs and digit groups first, and warns that quality will suffer.
fn pre_group(pre: &str) -> Option<PreGroup> {
    [
        (&PRE_GPT2[..], PreGroup::Gpt2),
        (&["default"], PreGroup::Gpt2),
        (&PRE_DIGITS, PreGroup::Digits),
        (&PRE_LLAMA3, PreGroup::Llama3),
        (&PRE_LLAMA3_MERGED, PreGroup::Llama3Merged),
        (&PRE_QWEN2, PreGroup::Qwen2),
        (&PRE_GPT4O, PreGroup::Gpt4o),
        (&PRE_DEEPSEEK3, PreGroup::Deepseek3),
    ]
    .into_iter()
    .find_map(|(names, group)| names.contains(&pre).then_some(group))
}

/// llama.cpp's pre-tokenizer for a group, as HF pre-tokenizers: regex splits followed by the
/// byte-level mapping. Also whether BPE merges are skipped for words that are whole tokens
/// (llama.cpp does so for the Llama 3 group only).
fn pre_tokenizer(group: PreGroup) -> Result<(PreTokenizerWrapper, bool)> {
    let split = |re: &str| -> Result<PreTokenizerWrapper> {
        Split::new(
            SplitPattern::Regex(re.into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map(PreTokenizerWrapper::from)
        .map_err(|e| Error::invalid(format!("pre-tokenizer regex: {e}")))
    };
    let bytes = |use_regex| PreTokenizerWrapper::from(ByteLevel::new(false, true, use_regex));
    let seq = |v: Vec<PreTokenizerWrapper>| PreTokenizerWrapper::from(Sequence::new(v));
    Ok(match group {
        PreGroup::Gpt2 => (bytes(true), false),
        PreGroup::Digits => (seq(vec![split(r"\p{N}")?, bytes(true)]), false),
        PreGroup::Llama3 => (seq(vec![split(LLAMA3_RE)?, bytes(false)]), true),
        PreGroup::Llama3Merged => (seq(vec![split(LLAMA3_RE)?, bytes(false)]), false),
        PreGroup::Qwen2 => (seq(vec![split(QWEN2_RE)?, bytes(false)]), false),
        PreGroup::Gpt4o => (seq(vec![split(O200K_RE)?, bytes(false)]), false),
        PreGroup::Deepseek3 => {
            let mut v = DEEPSEEK3_RES
                .map(split)
                .into_iter()
                .collect::<Result<Vec<_>>>()?;
            v.push(bytes(false));
            (seq(v), false)
        }
    })
}

/// The message for a `tokenizer.ggml.pre` not rebuilt here.
fn unknown_pre(pre: &str) -> String {
    format!(
        "GGUF tokenizer.ggml.pre `{pre}` (llama.cpp's pre-tokenizer) is not one this build rebuilds (it does {}, {}, {}, {}, {}, {} and {}); its text would be split wrongly",
        PRE_GPT2.join("/"),
        PRE_DIGITS.join("/"),
        PRE_LLAMA3.join("/"),
        PRE_LLAMA3_MERGED.join("/"),
        PRE_QWEN2.join("/"),
        PRE_GPT4O.join("/"),
        PRE_DEEPSEEK3.join("/")
    )
}

/// `tokenizer.ggml.pre` values by how llama.cpp splits them (llama-vocab.cpp). GPT-2's regex
/// alone. `smollm`: llama.cpp isolates digits first, but transformers (the reference the
/// fixtures were made with, and the tokenizer the shared adapters were trained with) converts
/// this GGUF to plain GPT-2 splitting; ids follow the reference (they differ where spaces
/// run into a digit: "a  1").
const PRE_GPT2: [&str; 13] = [
    "gpt2",
    "gpt-2",
    "phi-2",
    "mpt",
    "olmo",
    "jais",
    "trillion",
    "smollm",
    "exaone4",
    "gigachat",
    "a.x-4.0",
    "mellum",
    "modern-bert",
];
/// Digits one by one, then GPT-2's regex (the StarCoder family).
const PRE_DIGITS: [&str; 6] = [
    "starcoder",
    "refact",
    "command-r",
    "codeshell",
    "exaone",
    "minerva-7b",
];
/// Llama 3's regex, whole-word tokens taken before merges.
const PRE_LLAMA3: [&str; 9] = [
    "llama3",
    "llama-v3",
    "llama-bpe",
    "falcon3",
    "falcon-h1",
    "pixtral",
    "midm-2.0",
    "lfm2",
    "jina-v5-nano",
];
/// Llama 3's regex with every word merged.
const PRE_LLAMA3_MERGED: [&str; 4] = ["smaug-bpe", "dbrx", "chatglm-bpe", "glm4"];
/// DeepSeek V3's three regexes, one after the other (HunYuan dense's; llama.cpp's
/// `DEEPSEEK3_LLM` group).
const PRE_DEEPSEEK3: [&str; 4] = ["deepseek-v3", "hunyuan-dense", "joyai-llm", "hy_v4"];
/// o200k's regex (Phi-4-mini, Llama 4).
const PRE_GPT4O: [&str; 4] = ["gpt-4o", "llama4", "kanana2", "talkie"];
/// Qwen2's regex (digits one by one).
const PRE_QWEN2: [&str; 5] = [
    "qwen2",
    "stablelm2",
    "deepseek-r1-qwen",
    "hunyuan",
    "megrez",
];
