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

mod patterns;

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
    GBNF_RULE.is_match(g.trim_start_matches('\u{feff}'))
}

/// The start of a GBNF rule (`name ::=`).
static GBNF_RULE: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"(?m)^\s*[A-Za-z][\w-]*\s*::=").expect("a valid pattern"));

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

    /// Refuses an empty grammar (llguidance's own error says less), and grammars past what
    /// llguidance compiles safely: a chain of 400,000 rules overflowed even COMPILE_STACK
    /// (its own 65,000-symbol limit comes after chains are inlined), and 200,000
    /// alternatives took 20 s (400,000: 169 s) while every other format waited.
    fn check(&self) -> Result<(), String> {
        static LARK_RULE: LazyLock<regex::Regex> = LazyLock::new(|| {
            regex::Regex::new(r"(?m)^[ \t]*[?!]?[A-Za-z_]\w*(?:\.-?\d+)?[ \t]*:")
                .expect("a valid pattern")
        });
        let g = match self {
            Self::JsonSchema(s) => return patterns::check([s]),
            Self::Grammar(g) => g,
            _ => return Ok(()),
        };
        // A Lark grammar's `%json {...}` items are schemas too.
        let embedded: Vec<Value> = (g.match_indices("%json").filter_map(|(at, _)| {
            let mut values = serde_json::Deserializer::from_str(&g[at + 5..]).into_iter();
            values.next()?.ok()
        }))
        .collect();
        patterns::check(&embedded)?;
        if g.trim().is_empty() {
            return Err("the grammar is empty".into());
        }
        let rules = match is_gbnf(g) {
            true => GBNF_RULE.find_iter(g).count(),
            false => LARK_RULE.find_iter(g).count(),
        };
        if rules > MAX_RULES {
            return Err(format!(
                "the grammar defines {rules} rules; at most {MAX_RULES} are taken (llguidance's \
                 compiler recurses along chains of rules)"
            ));
        }
        let bars = g.matches('|').count();
        if bars > MAX_ALTERNATIVES {
            return Err(format!(
                "the grammar holds {bars} `|`; at most {MAX_ALTERNATIVES} alternatives are taken \
                 (more take llguidance minutes to compile; a list of strings compiles fast as \
                 a choice or regular expression)"
            ));
        }
        Ok(())
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
        .map_err(|e| brief(&e))
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
        let schema = !matches!(format, OutputFormat::Grammar(_));
        let first = matcher.compute_mask().map_err(|e| {
            // A grammar whose rules never end in text (`start: start "a"`) fails here, with
            // llguidance's parser state; a limit names itself.
            let e = e.to_string();
            if e.contains(ROW_LIMIT) {
                return explain(headline(&e), schema);
            }
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
        Ok(Constraint(Box::new(Grammar { matcher, schema })))
    }
}

/// The most rule (and terminal) definitions a grammar may have: about llguidance's own
/// limit of 65,535 symbols, and a chain that long fits COMPILE_STACK.
const MAX_RULES: usize = 65_000;

/// The most `|` a grammar may hold (100,000 alternatives took 4 s to compile).
const MAX_ALTERNATIVES: usize = 65_000;

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
    cut(e.lines().next().unwrap_or("").trim(), 300)
}

/// The start of llguidance's row-limit error ("Current row has 4007 items; max is 2000;
/// consider making your grammar left-recursive if it's right-recursive").
const ROW_LIMIT: &str = "Current row has";

/// An error met on a format, with what to do where llguidance's words say nothing to a client:
/// its row limit, which a JSON schema (`schema`) of hundreds of optional properties in one
/// object reaches, and whose advice (left recursion) is for grammars, which keep it.
fn explain(e: String, schema: bool) -> String {
    let Some(at) = e.find(ROW_LIMIT).filter(|_| schema) else {
        return e;
    };
    let limit = e[at..].split("; consider").next().unwrap_or_default();
    format!(
        "the format allows more ways to go on at this point of the text than llguidance \
         follows ({limit}); hundreds of optional properties in one object, or a deep chain of \
         `anyOf`, do this: mark properties `required`, or make the format simpler"
    )
}

/// `line`, cut to `n` characters (`...` marks a cut).
fn cut(line: &str, n: usize) -> String {
    match line.chars().count() > n {
        true => format!("{}...", line.chars().take(n).collect::<String>()),
        false => line.to_string(),
    }
}

/// A long error in short: regex-syntax and llguidance's Lark parser quote the input (a 2,000-
/// character pattern, a grammar's line) before or around the reason, and a message cut to
/// fit an HTTP error body lost the reason. Kept: the first line and the `error:` line, each
/// cut to 200 characters.
fn brief(e: &str) -> String {
    if e.chars().count() <= 600 {
        return e.to_string();
    }
    let first = e.lines().next().unwrap_or("").trim_end();
    let reason = e
        .lines()
        .skip(1)
        .map(str::trim)
        .find(|l| l.starts_with("error:"));
    match reason {
        Some(r) => format!(
            "{}: {}",
            cut(first.trim_end_matches(':'), 200),
            cut(r.trim_start_matches("error:").trim(), 200)
        ),
        None => cut(first, 200),
    }
}

/// A compiled format at some point of the text.
struct Grammar {
    matcher: Matcher,
    /// Made from a JSON schema (not a grammar): its errors are worded for one ([`explain`]).
    schema: bool,
}

impl TokenConstraint for Grammar {
    fn mask(&mut self, logits: &mut [f32]) -> Result<(), String> {
        let allowed = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| explain(headline(&e.to_string()), self.schema))?;
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
            .map_err(|e| explain(headline(&e.to_string()), self.schema))
    }

    fn finished(&self) -> bool {
        self.matcher.is_stopped() && !self.matcher.is_error()
    }

    /// A shallow copy: the lexer cache stays shared (all sequences run on one thread).
    fn boxed_clone(&self) -> Box<dyn TokenConstraint> {
        Box::new(Grammar {
            matcher: self.matcher.clone(),
            schema: self.schema,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{OutputFormat, MAX_ALTERNATIVES, MAX_RULES};

    /// Grammars past the limits are refused before llguidance sees them (a chain of 400,000
    /// rules aborted the process); at the limits they pass the check.
    #[test]
    fn grammars_past_the_limits_are_refused() {
        let check = |g: String| OutputFormat::Grammar(g).check();
        let lark = |n: usize| {
            let chain: String = (1..n).map(|i| format!("r{i}: r{}\n", i + 1)).collect();
            format!("start: r1\n{chain}")
        };
        let gbnf = |n: usize| {
            let chain: String = (1..n).map(|i| format!("r{i} ::= r{}\n", i + 1)).collect();
            format!("root ::= r1\n{chain}")
        };
        assert!(check(lark(MAX_RULES)).is_ok());
        assert!(check(gbnf(MAX_RULES)).is_ok());
        for g in [lark(MAX_RULES + 1), gbnf(MAX_RULES + 1)] {
            let e = check(g).unwrap_err();
            assert!(e.contains("defines 65001 rules; at most 65000"), "{e}");
        }
        let alternatives = |n: usize| format!("start: {}", vec!["\"x\""; n + 1].join(" | "));
        assert!(check(alternatives(MAX_ALTERNATIVES)).is_ok());
        let e = check(alternatives(MAX_ALTERNATIVES + 1)).unwrap_err();
        assert!(e.contains("holds 65001 `|`"), "{e}");
        assert!(check(" \n".into()).unwrap_err().contains("empty"));
    }

    #[test]
    fn row_limit_errors_say_what_to_do() {
        let limit = "Current row has 4007 items; max is 2000; consider making your grammar left-recursive if it's right-recursive";
        for e in [
            format!("Parser Error: {limit}"),
            format!("parser error: {limit}"),
        ] {
            let e = super::explain(e, true);
            assert!(e.starts_with("the format allows more ways"), "{e}");
            assert!(
                e.contains("(Current row has 4007 items; max is 2000)"),
                "{e}"
            );
            assert!(
                e.contains("optional properties") && !e.contains("left-recursive"),
                "{e}"
            );
        }
        // A grammar keeps llguidance's advice, which is for grammars.
        assert_eq!(super::explain(limit.into(), false), limit);
        assert_eq!(super::explain("other".into(), true), "other");
    }

    #[test]
    fn regex_errors_lose_the_lark_wrapping() {
        let e = "at 1(8): invalid regex \"(a\" (in regex): regex parse error:\n    (a\n    ^\nerror: unclosed group\n   1 | start: /(a/\n              ^\n";
        assert_eq!(
            super::tidy(e),
            "regex parse error:\n    (a\n    ^\nerror: unclosed group"
        );
        assert_eq!(super::tidy("Unsatisfiable schema"), "Unsatisfiable schema");
        let pattern = "(".repeat(1000);
        let long = format!("regex parse error:\n    {pattern}\n    ^\nerror: exceed the maximum number of nested parentheses (250)");
        assert_eq!(
            super::brief(&long),
            "regex parse error: exceed the maximum number of nested parentheses (250)"
        );
        let lark = format!("1(9): unexpected token (at \"x\")\n   1 | start: {pattern}");
        assert_eq!(super::brief(&lark), "1(9): unexpected token (at \"x\")");
        let panic = "panic: assertion failed: grammar.symbols.len() < u16::MAX as usize - 10\n<backtrace>\n   0: llguidance::panic_utils\n";
        assert!(super::tidy(panic).starts_with("the format is too large"));
        assert_eq!(
            super::tidy("panic: index out of bounds\n<backtrace>\n  0: x"),
            "llguidance failed on this format (panic: index out of bounds)"
        );
    }
}
