//! Structured output: an [`OutputFormat`] (a JSON schema, any JSON object, a regular
//! expression, a list of choices, a context-free grammar) compiled against the model's
//! vocabulary into a
//! [`TokenConstraint`], with llguidance (the grammar engine behind vLLM's, SGLang's and
//! llama.cpp's structured output; its JSON-schema coverage: llguidance's docs/json_schema.md).

use std::sync::{Arc, LazyLock};

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use serde_json::{json, Value};

use crate::constraint::{Constraint, TokenConstraint};
use crate::tokenizer::TextTokenizer;

/// What the generated text must be.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputFormat {
    /// Any JSON object (OpenAI's `response_format: {"type": "json_object"}`).
    JsonObject,
    /// JSON that matches this JSON schema.
    JsonSchema(Value),
    /// Text that matches this regular expression (Rust `regex` syntax) as a whole.
    Regex(String),
    /// Exactly one of these strings.
    Choice(Vec<String>),
    /// Text of this context-free grammar, in llguidance's Lark syntax (`start: ...`, rules
    /// `name: a | b`, `"literals"`, `/regex/` terminals, `%json {schema}`; llguidance's
    /// docs/syntax.md), or in llama.cpp's GBNF (`root ::= ...`), which is turned into Lark
    /// ([`crate::gbnf`]).
    Grammar(String),
}

/// JSON is written as Python's `json.dumps` writes it (`", "`, `": "`) and without free
/// whitespace: with free whitespace, small models fill the output with newlines. `oneOf` is
/// read as `anyOf` (pydantic's unions are `oneOf` whose branches rarely overlap; llguidance
/// refuses `oneOf` otherwise).
fn json_layout(mut schema: Value) -> Value {
    if let Some(o) = schema.as_object_mut() {
        o.entry("x-guidance").or_insert(json!({
            "whitespace_flexible": false,
            "item_separator": ", ",
            "key_separator": ": ",
            "coerce_one_of": true,
        }));
    }
    schema
}

/// A grammar in GBNF (llama.cpp's `rule ::= ...`), not Lark.
fn is_gbnf(g: &str) -> bool {
    static GBNF: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"(?m)^\s*[A-Za-z][\w-]*\s*::=").expect("a valid pattern")
    });
    GBNF.is_match(g.trim_start_matches('\u{feff}'))
}

impl OutputFormat {
    fn grammar(&self) -> Result<TopLevelGrammar, String> {
        Ok(match self {
            Self::JsonObject => {
                TopLevelGrammar::from_json_schema(json_layout(json!({"type": "object"})))
            }
            Self::JsonSchema(s) => TopLevelGrammar::from_json_schema(json_layout(s.clone())),
            Self::Regex(r) => TopLevelGrammar::from_regex(r),
            Self::Choice(c) => {
                let alternatives: Vec<String> = c.iter().map(|s| regex::escape(s)).collect();
                TopLevelGrammar::from_regex(&alternatives.join("|"))
            }
            Self::Grammar(g) if is_gbnf(g) => TopLevelGrammar::from_lark(crate::gbnf::to_lark(g)?),
            Self::Grammar(g) => TopLevelGrammar::from_lark(g.clone()),
        })
    }

    /// Refuses an empty grammar (llguidance's own error says less).
    fn check(&self) -> Result<(), String> {
        match self {
            Self::Grammar(g) if g.trim().is_empty() => Err("the grammar is empty".into()),
            _ => Ok(()),
        }
    }
}

/// The vocabulary as llguidance reads it: each token's bytes in a trie.
struct Vocabulary {
    trie: TokTrie,
}

impl TokenizerEnv for Vocabulary {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    /// The trie's greedy split, which is not the tokenizer's own: see below.
    fn tokenize_bytes(&self, s: &[u8]) -> Vec<u32> {
        self.trie.greedy_tokenize(s)
    }

    /// Not canonical, so llguidance never forces the greedy split of text a grammar fixes
    /// (`{"answer": `): the mask allows every token that fits it and the model picks its
    /// own split, as the tokenizer would write it.
    fn tokenize_is_canonical(&self) -> bool {
        false
    }
}

/// Compiles output formats for one model: built once (it indexes the vocabulary), then
/// [`Grammars::compile`] per request.
pub struct Grammars {
    factory: ParserFactory,
}

impl std::fmt::Debug for Grammars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Grammars")
    }
}

impl Grammars {
    /// Indexes `tok`'s vocabulary for a model of `vocab` logits whose generation ends at any
    /// of `eos` (at least one id).
    ///
    /// # Errors
    /// A tokenizer whose token bytes cannot be read (neither byte-level nor byte-fallback
    /// BPE), or no `eos`.
    pub fn new(tok: &TextTokenizer, vocab: usize, eos: &[u32]) -> Result<Self, String> {
        // The trie asserts that its ids are inside the vocabulary.
        let eos: Vec<u32> = eos
            .iter()
            .copied()
            .filter(|&t| (t as usize) < vocab)
            .collect();
        let Some(&first_eos) = eos.first() else {
            return Err("structured output needs an end-of-sequence token".into());
        };
        let json: Value = serde_json::from_str(
            &tok.hf_tokenizer()
                .to_string(false)
                .map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        // llguidance asserts on some malformed vocabularies: an error here, not a crash.
        let bytes = std::panic::catch_unwind(|| llguidance::token_bytes_from_tokenizer_json(&json))
            .map_err(|_| "the tokenizer's vocabulary could not be read".to_string())?
            .map_err(|e| {
                format!("structured output needs a byte-level or byte-fallback BPE tokenizer: {e}")
            })?;
        let mut words: Vec<Vec<u8>> = bytes.into_iter().take(vocab).collect();
        // Rows past the tokenizer (padding) become special tokens no grammar produces.
        while words.len() < vocab {
            let mut name = format!(".<[{}]>", words.len()).into_bytes();
            name[0] = TokTrie::SPECIAL_TOKEN_MARKER;
            words.push(name);
        }
        let info = TokRxInfo::new(vocab as u32, first_eos);
        let trie = std::panic::catch_unwind(|| {
            let trie = TokTrie::from(&info, &words);
            match eos.len() {
                1 => trie,
                _ => trie.with_eos_tokens(&eos),
            }
        })
        .map_err(|_| "the vocabulary could not be indexed".to_string())?;
        let env: TokEnv = Arc::new(Vocabulary { trie });
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| e.to_string())?;
        factory.quiet();
        // The lexer's cache, shared by the choices of a request: at most ~100 MB (1-2 kB a
        // state, llguidance's estimate), not the default 250,000 states.
        factory.limits_mut().max_lexer_states = 50_000;
        Ok(Self { factory })
    }

    /// The constraint for `format`, at the start of the generated text.
    ///
    /// # Errors
    /// The format does not compile: a schema keyword llguidance does not support, a schema
    /// no value satisfies, a malformed regular expression or grammar (Lark or GBNF); the
    /// message says which.
    pub fn compile(&self, format: &OutputFormat) -> Result<Constraint, String> {
        // llguidance compiles recursively, a few kB of stack per link of a chain of rules or
        // `$ref`s: chains of a few hundred overflowed a server thread's 2 MiB and aborted the
        // process. Its own limits (fewer than 65,535 symbols) bound a chain's length, and
        // COMPILE_STACK holds the longest; untouched stack costs no memory. Where the address
        // space is capped (`ulimit -v`), a smaller stack still serves the common formats.
        std::thread::scope(|scope| {
            let spawn = |stack: usize| {
                std::thread::Builder::new()
                    .name("format-compile".into())
                    .stack_size(stack)
                    .spawn_scoped(scope, || self.compile_here(format))
            };
            spawn(COMPILE_STACK)
                .or_else(|_| spawn(16 << 20))
                .map_err(|e| format!("no thread to compile the format on: {e}"))?
                .join()
                .unwrap_or_else(|_| Err("the format's compiler failed (a panic)".into()))
        })
    }

    fn compile_here(&self, format: &OutputFormat) -> Result<Constraint, String> {
        format.check()?;
        let parser = self.factory.create_parser(format.grammar()?);
        let mut matcher = Matcher::new(parser);
        if let Some(e) = matcher.get_error() {
            return Err(tidy(&e));
        }
        // The first mask builds the lexer, which llguidance otherwise does lazily on the
        // first token, on the thread every sequence shares (`a{700}{700}`: about a second);
        // here, a grammar that admits no text or blows a limit is refused before it runs.
        let first = matcher.compute_mask().map_err(|e| {
            // A grammar whose rules never end in text (`start: start "a"`) fails here, with
            // llguidance's parser state; a limit names itself.
            let e = e.to_string();
            match e.contains("limit") {
                true => e,
                false => format!(
                    "the format admits no text (llguidance: {})",
                    e.lines()
                        .next()
                        .unwrap_or("")
                        .chars()
                        .take(160)
                        .collect::<String>()
                ),
            }
        })?;
        if first.is_zero() {
            return Err("the format admits no text".into());
        }
        Ok(Constraint(Box::new(Grammar { matcher })))
    }
}

/// The stack of the thread formats compile on. The longest chains llguidance takes (64,000
/// Lark rules; 40,000 `$ref`s, a schema of more is "too large") needed more than 128 MiB
/// and at most 256 MiB in a debug build; four times the larger, as other shapes may recurse
/// deeper per link.
const COMPILE_STACK: usize = 1 << 30;

/// llguidance reports a bad regular expression inside the Lark grammar it wraps it in
/// (`at 1(8): invalid regex ... 1 | start: /(a/`): keep only regex-syntax's own message. A
/// panic it caught comes with a backtrace: only its first line is kept.
fn tidy(e: &str) -> String {
    if e.starts_with("panic:") {
        let first = headline(e);
        return match first.contains("symbols.len() < u16::MAX") {
            true => "the format is too large: it compiles to more than 65,000 grammar \
                     symbols, llguidance's limit"
                .into(),
            false => format!("llguidance failed on this format ({first})"),
        };
    }
    let Some(at) = e.find("regex parse error:") else {
        return e.to_string();
    };
    let lark_line = regex::Regex::new(r"^\s*\d+ \|").expect("a valid pattern");
    let kept: Vec<&str> = e[at..]
        .lines()
        .take_while(|l| !lark_line.is_match(l))
        .collect();
    kept.join("\n").trim_end().to_string()
}

/// The first line of an error from llguidance's matcher, which goes on with its parser's
/// whole state (kilobytes) or a panic's backtrace: that is logged, not shown.
fn headline(e: &str) -> String {
    tracing::debug!("llguidance: {e}");
    let line = e.lines().next().unwrap_or("").trim();
    match line.chars().count() > 300 {
        true => format!("{}...", line.chars().take(300).collect::<String>()),
        false => line.to_string(),
    }
}

/// A compiled format at some point of the text.
struct Grammar {
    matcher: Matcher,
}

impl TokenConstraint for Grammar {
    fn mask(&mut self, logits: &mut [f32]) -> Result<(), String> {
        let allowed = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| headline(&e.to_string()))?;
        for (t, l) in logits.iter_mut().enumerate() {
            if !allowed.is_allowed(t as u32) {
                *l = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    fn accept(&mut self, token: u32) -> Result<(), String> {
        self.matcher
            .consume_token(token)
            .map_err(|e| headline(&e.to_string()))
    }

    fn finished(&self) -> bool {
        self.matcher.is_stopped() && !self.matcher.is_error()
    }

    /// A shallow copy: the lexer cache stays shared (all sequences run on one thread).
    fn boxed_clone(&self) -> Box<dyn TokenConstraint> {
        Box::new(Grammar {
            matcher: self.matcher.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn regex_errors_lose_the_lark_wrapping() {
        let e = "at 1(8): invalid regex \"(a\" (in regex): regex parse error:\n    (a\n    ^\nerror: unclosed group\n   1 | start: /(a/\n              ^\n";
        assert_eq!(
            super::tidy(e),
            "regex parse error:\n    (a\n    ^\nerror: unclosed group"
        );
        assert_eq!(super::tidy("Unsatisfiable schema"), "Unsatisfiable schema");
        let panic = "panic: assertion failed: grammar.symbols.len() < u16::MAX as usize - 10\n<backtrace>\n   0: llguidance::panic_utils\n";
        assert!(super::tidy(panic).starts_with("the format is too large"));
        assert_eq!(
            super::tidy("panic: index out of bounds\n<backtrace>\n  0: x"),
            "llguidance failed on this format (panic: index out of bounds)"
        );
    }
}
