//! `generate`'s structured-output flags: the answer must be JSON matching a schema, any JSON
//! object, a regular expression's match, one of a list of choices, or text of a grammar.

use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Args;
use dlp_engine::constraint::Constraint;
use dlp_engine::structured::{Grammars, OutputFormat};
use dlp_engine::tokenizer::TextTokenizer;

/// Structured output (one of these at a time; every prompt of a batch gets it).
#[derive(Debug, Args, Clone, Default)]
#[group(multiple = false)]
pub struct FormatArgs {
    /// The answer is JSON matching this JSON schema: the schema itself (`{...}`) or a file
    /// holding it. Written on one line, as Python's json.dumps writes it (`, ` and `: `).
    #[arg(long, value_name = "SCHEMA|FILE")]
    pub json_schema: Option<String>,
    /// The answer is a JSON object (any keys and values).
    #[arg(long)]
    pub json_object: bool,
    /// The answer is a match of this regular expression (Rust regex syntax), whole.
    #[arg(long, value_name = "REGEX", allow_hyphen_values = true)]
    pub regex: Option<String>,
    /// The answer is exactly one of these (repeatable: --choice yes --choice no).
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub choice: Vec<String>,
    /// The answer is text of this context-free grammar, in Lark syntax (llguidance's
    /// dialect: `start: ...`, rules `name: a | b`, `"literals"`, `/regex/` terminals,
    /// `%json {schema}`) or in llama.cpp's GBNF (`root ::= ...`, `[a-z]` classes): the
    /// grammar itself, or a file holding it (a `.lark` or `.gbnf` file, say).
    #[arg(long, value_name = "GRAMMAR|FILE", allow_hyphen_values = true)]
    pub grammar: Option<String>,
}

/// An output format and the flag that asked for it.
pub type Format = (OutputFormat, &'static str);

impl FormatArgs {
    /// The format asked for, if any, with its flag (read before the model loads, so a bad
    /// schema file fails at once).
    pub fn format(&self) -> Result<Option<Format>> {
        if let Some(s) = &self.json_schema {
            // The schema itself, or else a file holding it.
            let v: serde_json::Value = match serde_json::from_str(s) {
                Ok(v) => v,
                Err(e) if s.trim_start().starts_with('{') => {
                    bail!("--json-schema {s}: not JSON: {e}")
                }
                Err(_) => {
                    let text = std::fs::read_to_string(Path::new(s)).with_context(|| {
                        format!(
                            "--json-schema {s}: not a schema (`{{...}}`) and not a readable file"
                        )
                    })?;
                    serde_json::from_str(&text)
                        .with_context(|| format!("--json-schema {s}: not JSON"))?
                }
            };
            if !v.is_object() {
                bail!("--json-schema {s}: a JSON schema is an object (`{{\"type\": ...}}`), found {v}");
            }
            return Ok(Some((OutputFormat::JsonSchema(v), "--json-schema")));
        }
        if self.json_object {
            return Ok(Some((OutputFormat::JsonObject, "--json-object")));
        }
        if let Some(r) = &self.regex {
            return Ok(Some((OutputFormat::Regex(r.clone()), "--regex")));
        }
        if !self.choice.is_empty() {
            if self.choice.iter().any(String::is_empty) {
                bail!("--choice \"\": a choice must not be empty");
            }
            return Ok(Some((
                OutputFormat::Choice(self.choice.clone()),
                "--choice",
            )));
        }
        if let Some(g) = &self.grammar {
            // A grammar has a rule (`:`); a path to an existing file is read.
            let text = match Path::new(g).is_file() {
                true => std::fs::read_to_string(g)
                    .with_context(|| format!("--grammar {g}: reading the file"))?,
                false if g.contains(':') => g.clone(),
                false => bail!("--grammar {g}: not a grammar (Lark `start: ...` or GBNF `root ::= ...`) and not a file"),
            };
            return Ok(Some((OutputFormat::Grammar(text), "--grammar")));
        }
        Ok(None)
    }
}

/// The compiled constraint of `format` for a model of `vocab` logits ending at `eos`.
pub fn compile(
    (format, flag): &Format,
    tok: &TextTokenizer,
    vocab: usize,
    eos: &[u32],
) -> Result<Constraint> {
    let grammars = Grammars::new(tok, vocab, eos).map_err(|e| {
        anyhow::anyhow!("{flag}: structured output is not available for this model: {e}")
    })?;
    grammars
        .compile(format)
        .map_err(|e| anyhow::anyhow!("{flag}: {e}"))
}
