//! Text tokenizer and chat template: from an HF `tokenizer.json` (with `tokenizer_config.json` /
//! `chat_template.jinja` beside it) or rebuilt from a GGUF file's `tokenizer.ggml.*` metadata as
//! the same byte-level BPE that llama.cpp runs.

mod bound;
pub use bound::MinTokens;
mod bytes;
mod gguf;
mod sentencepiece;
pub use bytes::token_name;
pub mod chat;
mod messages;
pub use messages::{text_of_part, ChatMessage, ChatRequest};
mod stream;
pub use stream::StreamDecoder;

use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use tokenizers::Tokenizer;

use crate::error::{Error, Result};

/// The special-token strings a template may write.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpecialTokens {
    /// `bos_token`
    pub bos: Option<String>,
    /// `eos_token`
    pub eos: Option<String>,
    /// `pad_token`
    pub pad: Option<String>,
    /// `unk_token`
    pub unk: Option<String>,
}

/// A tokenizer plus what is needed to build chat prompts and detect their end.
pub struct TextTokenizer {
    tok: Tokenizer,
    chat_template: Option<String>,
    /// Where a chat template was looked for, for the error when there is none.
    template_source: String,
    /// Where the chat template came from (a file, or a field of one): its errors name it.
    template_name: String,
    /// The model's `tool_use` template and where it came from: transformers and llama.cpp
    /// render a conversation with tools through it, when the model has one (Hermes 2 Pro and
    /// 3, Command-R).
    tool_use_template: Option<(String, String)>,
    special: SpecialTokens,
    eos_ids: Vec<u32>,
    /// Ids of the special tokens (left out of decoded text unless asked), sorted.
    special_ids: Vec<u32>,
    /// The ids that go in front of a prompt and after a raw one, and whether chat prompts get
    /// the front ones too: what an HF tokenizer's post-processor adds (`<s> $A </s>`) goes
    /// around raw prompts only (transformers encodes a rendered chat with
    /// `add_special_tokens=False`); a GGUF's BOS (llama.cpp's `add_bos`) in front of both.
    prompt_prefix: Vec<u32>,
    raw_suffix: Vec<u32>,
    bos_on_chat: bool,
    /// How many tokens a text's length proves, when known ([`TextTokenizer::min_tokens`]).
    token_bound: Option<bound::TokenBound>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("special", &self.special)
            .field("chat_template", &self.chat_template.is_some())
            .finish()
    }
}

/// A `tokenizer.json`, checked as JSON first and parsed with the tokenizers library, whose
/// deserializers panic on some malformed inputs instead of erring: such a panic is caught and
/// reported as the error it is (fuzzing found them). Its truncation and padding are turned off.
pub fn parse_tokenizer_json(bytes: &[u8]) -> std::result::Result<Tokenizer, String> {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(|e| e.to_string())?;
    match std::panic::catch_unwind(|| Tokenizer::from_bytes(bytes)) {
        // transformers encodes a prompt without the file's truncation and padding (its
        // default `truncation=False, padding=False`), and so do we.
        Ok(r) => r.map_err(|e| e.to_string()).map(|mut t| {
            t.with_padding(None);
            let _ = t.with_truncation(None);
            t
        }),
        Err(p) => Err(format!(
            "the tokenizers library failed on it: {}",
            p.downcast_ref::<String>()
                .map(String::as_str)
                .or(p.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)")
        )),
    }
}

/// The ids of `tok`'s special added tokens, sorted.
fn special_ids(tok: &Tokenizer) -> Vec<u32> {
    let mut ids: Vec<u32> = (tok.get_added_tokens_decoder().into_iter())
        .filter(|(_, t)| t.special)
        .map(|(id, _)| id)
        .collect();
    ids.sort_unstable();
    ids
}

/// `bos_token` / `eos_token` in `tokenizer_config.json`: a string or an AddedToken object.
fn token_string(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::String(s) => Some(s.clone()),
        Json::Object(o) => o.get("content")?.as_str().map(String::from),
        _ => None,
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json`, plus `tokenizer_config.json` (chat template, bos/eos strings) and
    /// `chat_template.jinja` (transformers 5; wins over the config's template) beside it.
    pub fn from_file(tokenizer_json: &Path) -> Result<Self> {
        let p = tokenizer_json;
        let bytes = std::fs::read(p).map_err(|e| Error::io(p, e))?;
        let tok = parse_tokenizer_json(&bytes)
            .map_err(|e| Error::format(p, format!("not a valid tokenizer.json: {e}")))?;
        let dir = p
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let cfg_path = dir.join("tokenizer_config.json");
        let jinja_path = dir.join("chat_template.jinja");
        let cfg: Json = match std::fs::read_to_string(&cfg_path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| Error::format(&cfg_path, format!("not valid JSON: {e}")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Json::Null,
            Err(e) => return Err(Error::io(&cfg_path, e)),
        };
        let (chat_template, template_name, tool_use_template) =
            match std::fs::read_to_string(&jinja_path) {
                // transformers 5 writes other named templates beside it.
                Ok(t) => {
                    let tool_path = dir.join("additional_chat_templates/tool_use.jinja");
                    let tool_use = match std::fs::read_to_string(&tool_path) {
                        Ok(t) => Some((
                            t,
                            format!("additional_chat_templates/{}", file_name(&tool_path)),
                        )),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                        Err(e) => return Err(Error::io(&tool_path, e)),
                    };
                    (Some(t), file_name(&jinja_path), tool_use)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
                    config_template(&cfg, "default"),
                    format!("chat_template of {}", file_name(&cfg_path)),
                    config_template(&cfg, "tool_use").map(|t| {
                        (
                            t,
                            format!("the tool_use chat_template of {}", file_name(&cfg_path)),
                        )
                    }),
                ),
                Err(e) => return Err(Error::io(&jinja_path, e)),
            };
        let special = SpecialTokens {
            bos: token_string(cfg.get("bos_token")),
            eos: token_string(cfg.get("eos_token")),
            pad: token_string(cfg.get("pad_token")),
            unk: token_string(cfg.get("unk_token")),
        };
        let eos_ids = special
            .eos
            .iter()
            .filter_map(|s| tok.token_to_id(s))
            .collect();
        // The ids transformers' post-processor puts around a raw prompt (Llama 3's
        // <|begin_of_text|>; `<s> $A </s>`), found by comparing encodings with and without
        // special tokens.
        let (prompt_prefix, raw_suffix) = match (tok.encode("a", true), tok.encode("a", false)) {
            (Ok(w), Ok(wo)) => added_around(w.get_ids(), wo.get_ids()),
            _ => (Vec::new(), Vec::new()),
        };
        let token_bound = bound::token_bound(&tok);
        let special_ids = special_ids(&tok);
        Ok(TextTokenizer {
            tok,
            chat_template,
            // File names only: a server's answers must not show where its files are.
            template_source: format!(
                "{} and the `chat_template` field of {}",
                file_name(&jinja_path),
                file_name(&cfg_path)
            ),
            template_name,
            tool_use_template,
            special,
            eos_ids,
            special_ids,
            prompt_prefix,
            raw_suffix,
            bos_on_chat: false,
            token_bound,
        })
    }

    /// The tokenizer of an HF model directory; `Ok(None)` if it has no `tokenizer.json`.
    pub fn from_hf_dir(dir: &Path) -> Result<Option<Self>> {
        let p = dir.join("tokenizer.json");
        if p.is_file() {
            Self::from_file(&p).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Replaces (or removes) the chat template, e.g. with one given on the command line, and
    /// with it any `tool_use` template; `origin` (its file, say) is what its errors name as
    /// `(in ORIGIN:LINE)`.
    pub fn set_chat_template(&mut self, t: Option<String>, origin: &str) {
        if t.is_some() {
            self.template_source = "the chat template that was set".into();
            self.template_name = origin.to_string();
            self.tool_use_template = None;
        }
        self.chat_template = t;
    }

    /// The chat template of conversations without tools, if any.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// The chat template a conversation renders with: with `tools` given (even an empty list,
    /// as transformers' `tools is not None`), the model's `tool_use` template where it has one
    /// (transformers' `get_chat_template`, llama.cpp's `template_tool_use`), else
    /// [`TextTokenizer::chat_template`].
    pub fn chat_template_for(&self, tools: bool) -> Option<&str> {
        match &self.tool_use_template {
            Some((t, _)) if tools => Some(t),
            _ => self.chat_template(),
        }
    }

    /// Token ids of `text`. Adds no BOS/EOS, but special tokens written in the text
    /// (`<|im_start|>`) become their single ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tok
            .encode(text, false)
            .map_err(|e| Error::invalid(format!("tokenizing failed: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// vLLM's `bad_words` as token sequences for [`crate::SamplingParams::bad_words_ids`]:
    /// each word (leading spaces dropped) alone, and after a space where that starts with a
    /// token of its own and takes as many tokens (" word" is then another spelling of it).
    pub fn bad_words_ids(&self, words: &[String]) -> Result<Vec<Vec<u32>>> {
        let mut out: Vec<Vec<u32>> = Vec::new();
        for w in words {
            let bare = self.encode(w.trim_start())?;
            let spaced = self.encode(&format!(" {}", w.trim_start()))?;
            let differs = spaced.first() != bare.first() && spaced.len() == bare.len();
            for ids in [Some(bare), differs.then_some(spaced)]
                .into_iter()
                .flatten()
            {
                if !ids.is_empty() && !out.contains(&ids) {
                    out.push(ids);
                }
            }
        }
        Ok(out)
    }

    /// Token ids of `text` (as [`TextTokenizer::encode`]) with the byte offset in `text` where
    /// each token starts; tokens that cover no text (added specials) take the previous token's
    /// end, so the offsets never decrease. Used to map sentences to tokens for routing.
    pub fn encode_with_offsets(&self, text: &str) -> Result<(Vec<u32>, Vec<usize>)> {
        let enc = self
            .tok
            .encode(text, false)
            .map_err(|e| Error::invalid(format!("tokenizing failed: {e}")))?;
        let mut starts = Vec::with_capacity(enc.len());
        let mut last = 0usize;
        for &(s, e) in enc.get_offsets() {
            let s = if e > s { s.max(last) } else { last };
            starts.push(s);
            last = last.max(e);
        }
        Ok((enc.get_ids().to_vec(), starts))
    }

    /// Text of `ids`; `skip_special` drops special tokens.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.tok
            .decode(ids, skip_special)
            .map_err(|e| Error::invalid(format!("detokenizing failed: {e}")))
    }

    /// An incremental detokenizer for streaming output; `skip_special` drops special tokens
    /// (`<|im_end|>`, ...), as transformers' `skip_special_tokens` does.
    pub fn stream_decoder(&self, skip_special: bool) -> StreamDecoder<'_> {
        StreamDecoder::new(&self.tok, skip_special)
    }

    /// The underlying Hugging Face tokenizer (e.g. for a router that reads with it).
    pub fn hf_tokenizer(&self) -> &Tokenizer {
        &self.tok
    }

    /// Whether `id` is a special token: one decoding leaves out unless asked (`skip_special`).
    pub fn is_special(&self, id: u32) -> bool {
        self.special_ids.binary_search(&id).is_ok()
    }

    /// Id of a token string (special or not).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.tok.token_to_id(token)
    }

    /// Number of ids, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.tok.get_vocab_size(true)
    }

    /// The (first) id that goes in front of a prompt, if any: for an HF tokenizer what
    /// transformers adds to raw text (`add_special_tokens=True`) and nothing in front of a
    /// rendered chat (transformers encodes it with `add_special_tokens=False`: only what the
    /// template writes); for a GGUF what llama.cpp adds (`add_bos`) in both cases.
    pub fn bos_prefix(&self, chat: bool) -> Option<u32> {
        (self.prompt_prefix.first().copied()).filter(|_| !chat || self.bos_on_chat)
    }

    /// The ids fed to the model for a prompt (raw text, or a rendered chat with `chat`): the
    /// text's ids with what the tokenizer adds around them (see [`TextTokenizer::bos_prefix`];
    /// after a raw prompt, what an HF post-processor appends, as transformers'
    /// `tokenizer(text)`), and the byte offset where each token starts (see
    /// [`TextTokenizer::encode_with_offsets`]; added tokens at the start or the end). A
    /// rendered chat that starts with the BOS token's text (Llama 3's templates write
    /// `{{- bos_token }}`) gets no second one: llama.cpp strips that text before tokenizing
    /// when it adds BOS itself (`common/chat.cpp`, "To avoid double BOS / EOS tokens").
    pub fn encode_prompt(&self, text: &str, chat: bool) -> Result<(Vec<u32>, Vec<usize>)> {
        let (ids, starts) = self.encode_with_offsets(text)?;
        let written = (self.special.bos.as_deref())
            .is_some_and(|b| chat && !b.is_empty() && text.starts_with(b));
        let prefix: &[u32] = match !chat || (self.bos_on_chat && !written) {
            true => &self.prompt_prefix,
            false => &[],
        };
        let suffix: &[u32] = if chat { &[] } else { &self.raw_suffix };
        if prefix.is_empty() && suffix.is_empty() {
            return Ok((ids, starts));
        }
        let all = [prefix, &ids, suffix].concat();
        let at = [
            vec![0; prefix.len()],
            starts,
            vec![text.len(); suffix.len()],
        ]
        .concat();
        Ok((all, at))
    }

    /// The special-token strings (`bos_token`, ...).
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    /// Ids that end generation: the eos token (and GGUF's eot / eom), if known.
    pub fn eos_token_ids(&self) -> Vec<u32> {
        self.eos_ids.clone()
    }

    /// Renders `messages` with the chat template as transformers' `apply_chat_template` does
    /// (no tools, no documents).
    pub fn render_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        self.render_chat_request(&ChatRequest {
            messages: messages.to_vec(),
            add_generation_prompt,
            ..Default::default()
        })
    }

    /// Renders a full `apply_chat_template` request (see [`chat`] for the environment).
    pub fn render_chat_request(&self, req: &ChatRequest) -> Result<String> {
        if let (Some((t, name)), Some(_)) = (&self.tool_use_template, &req.tools) {
            return chat::render(t, name, req, &self.special);
        }
        let t = self.chat_template.as_deref().ok_or_else(|| {
            Error::invalid(format!(
                "the model has no chat template (looked in {}); give one with --chat-template FILE, or use a raw prompt",
                self.template_source
            ))
        })?;
        chat::render(t, &self.template_name, req, &self.special)
    }
}

/// A file's name without its folder: what a template's errors name (a server's answers must
/// not show where its files are).
pub fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// `chat_template` of a tokenizer_config.json: a string, or a list of named templates.
/// For `name` "default": a string, or the list's `default` entry (its first without one);
/// for another name, that entry of the list.
fn config_template(cfg: &Json, name: &str) -> Option<String> {
    match cfg.get("chat_template")? {
        Json::String(s) if name == "default" => Some(s.clone()),
        Json::Array(list) => {
            let named = |n: &str| {
                list.iter()
                    .find(|t| t.get("name").and_then(Json::as_str) == Some(n))
            };
            let first = list.first().filter(|_| name == "default");
            named(name)
                .or(first)?
                .get("template")?
                .as_str()
                .map(String::from)
        }
        _ => None,
    }
}

/// What a post-processor adds around a text's ids: `with` (special tokens added) split around
/// the first place `without` occurs in it; nothing when it does not occur.
fn added_around(with: &[u32], without: &[u32]) -> (Vec<u32>, Vec<u32>) {
    let n = without.len();
    (0..=with.len().saturating_sub(n))
        .find(|&i| with.get(i..i + n) == Some(without))
        .map_or((Vec::new(), Vec::new()), |i| {
            (with[..i].to_vec(), with[i + n..].to_vec())
        })
}
