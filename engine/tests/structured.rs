//! Structured output: every text sampled under a compiled format, from random logits (any
//! token the mask lets through may win), is in the format; formats that cannot compile are
//! errors with llguidance's reason.

mod common;

use common::{fixture, GGUF};
use dlp_engine::loader::gguf::GgufFile;
use dlp_engine::structured::{Grammars, OutputFormat};
use dlp_engine::tokenizer::TextTokenizer;
use dlp_engine::{Sampler, SamplingParams};
use serde_json::{json, Value};

/// Logits uniform in [-8, 8) from an LCG: any allowed token may be the argmax.
fn noise(n: usize, seed: &mut u64) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (*seed >> 40) as f32 / (1u64 << 24) as f32 * 16.0 - 8.0
        })
        .collect()
}

/// Samples up to `max` tokens under `format` from random logits; the text, and whether the
/// grammar ended it (its end or an allowed EOS) rather than `max`. Rows past the tokenizer's
/// vocabulary (a model's padding, when `g` was built for more logits) get logit 50: the mask
/// must keep them out.
fn sample(
    g: &Grammars,
    tok: &TextTokenizer,
    eos: &[u32],
    format: &OutputFormat,
    seed: u64,
    max: usize,
    vocab: usize,
) -> (String, bool) {
    let mut c = g.compile(format).unwrap().0;
    let mut sampler = Sampler::new(SamplingParams {
        temperature: 0.7,
        seed,
        ..SamplingParams::default()
    });
    let mut rng = seed.wrapping_add(17);
    let mut ids = Vec::new();
    for _ in 0..max {
        let mut logits = noise(vocab, &mut rng);
        logits[tok.vocab_size()..].fill(50.0);
        let id = sampler
            .try_sample_constrained(&logits, &ids, c.as_mut())
            .unwrap()
            .unwrap();
        if eos.contains(&id) {
            return (tok.decode(&ids, false).unwrap(), true);
        }
        c.accept(id).unwrap();
        ids.push(id);
        if c.finished() {
            return (tok.decode(&ids, false).unwrap(), true);
        }
    }
    (tok.decode(&ids, false).unwrap(), false)
}

#[test]
fn sampled_text_is_in_the_format() {
    let Some(gp) = fixture(GGUF) else { return };
    let tok = TextTokenizer::from_gguf(&GgufFile::open(&gp).unwrap()).unwrap();
    let eos = tok.eos_token_ids();
    let g = Grammars::new(&tok, tok.vocab_size(), &eos).unwrap();

    let choices = vec!["yes".to_string(), "no".into(), "a/b (c)?".into()];
    for seed in 0..6 {
        let (t, done) = sample(
            &g,
            &tok,
            &eos,
            &OutputFormat::Choice(choices.clone()),
            seed,
            40,
            tok.vocab_size(),
        );
        assert!(done && choices.contains(&t), "{t:?}");
    }
    let re = regex::Regex::new(r"^[0-9]{3}-[a-z]{2,4}$").unwrap();
    for seed in 0..6 {
        let f = OutputFormat::Regex(r"[0-9]{3}-[a-z]{2,4}".into());
        let (t, done) = sample(&g, &tok, &eos, &f, seed, 40, tok.vocab_size());
        assert!(done && re.is_match(&t), "{t:?}");
    }
    // A context-free grammar (a left-recursive sum; a JSON value inside a grammar).
    let sum = "start: expr\nexpr: num | expr \" + \" num\nnum: /[0-9]{1,3}/\n";
    let whole = regex::Regex::new(r"^[0-9]{1,3}( \+ [0-9]{1,3})*$").unwrap();
    // Cut by the token limit: a sum so far, perhaps ending inside a ` + ` or a number.
    let prefix = regex::Regex::new(r"^[0-9]{1,3}( \+ [0-9]{1,3})*( \+ ?)?$").unwrap();
    for seed in 0..6 {
        let f = OutputFormat::Grammar(sum.into());
        let (t, done) = sample(&g, &tok, &eos, &f, seed, 40, tok.vocab_size());
        let ok = if done { &whole } else { &prefix };
        assert!(ok.is_match(&t), "{t:?} (ended by the grammar: {done})");
    }
    let answer = r#"start: "Answer: " %json {"type": "boolean"}"#;
    for seed in 0..4 {
        let f = OutputFormat::Grammar(answer.into());
        let (t, done) = sample(&g, &tok, &eos, &f, seed, 20, tok.vocab_size());
        assert!(
            done && (t == "Answer: true" || t == "Answer: false"),
            "{t:?}"
        );
    }
    let schema = json!({"type": "object", "properties": {
        "answer": {"type": "boolean"},
        "n": {"type": "integer", "minimum": 0, "maximum": 99},
        "tag": {"enum": ["x", "y"]}},
        "required": ["answer", "n", "tag"], "additionalProperties": false});
    for seed in 0..6 {
        let (t, done) = sample(
            &g,
            &tok,
            &eos,
            &OutputFormat::JsonSchema(schema.clone()),
            seed,
            60,
            tok.vocab_size(),
        );
        assert!(done, "{t:?}");
        let v: Value = serde_json::from_str(&t).unwrap_or_else(|e| panic!("{e}: {t:?}"));
        assert!(v["answer"].is_boolean(), "{t}");
        assert!((0..=99).contains(&v["n"].as_i64().unwrap()), "{t}");
        assert!(v["tag"] == "x" || v["tag"] == "y", "{t}");
        assert_eq!(v.as_object().unwrap().len(), 3, "{t}");
        // Python's json.dumps layout, no free whitespace.
        assert!(t.starts_with("{\"") && t.contains("\": "), "{t}");
    }
    // Any object: random logits do not always close one within the budget; those that do
    // are objects, and some do.
    let mut closed = 0;
    for seed in 0..8 {
        let (t, done) = sample(
            &g,
            &tok,
            &eos,
            &OutputFormat::JsonObject,
            seed,
            120,
            tok.vocab_size(),
        );
        assert!(t.starts_with('{'), "{t:?}");
        if done {
            let v: Value = serde_json::from_str(&t).unwrap_or_else(|e| panic!("{e}: {t:?}"));
            assert!(v.is_object(), "{t}");
            closed += 1;
        }
    }
    assert!(closed > 0, "no object closed in 8 tries");
}

/// What the OpenAI SDK sends for a pydantic model (`client.beta.chat.completions.parse`):
/// `$defs` and `$ref`, a nullable field as `anyOf` with null, a union as `oneOf`, `title`s and
/// `strict`-style `additionalProperties: false`.
#[test]
fn sdk_shaped_schemas_compile_and_hold() {
    let Some(gp) = fixture(GGUF) else { return };
    let tok = TextTokenizer::from_gguf(&GgufFile::open(&gp).unwrap()).unwrap();
    let eos = tok.eos_token_ids();
    let g = Grammars::new(&tok, tok.vocab_size(), &eos).unwrap();
    let pet = |kind: &str| {
        json!({"title": kind, "type": "object", "additionalProperties": false,
               "properties": {"kind": {"const": kind, "type": "string", "title": "Kind"},
                              "name": {"type": "string", "maxLength": 8, "title": "Name"}},
               "required": ["kind", "name"]})
    };
    let schema = json!({"title": "Owner", "type": "object", "additionalProperties": false,
        "$defs": {"Cat": pet("cat"), "Dog": pet("dog")},
        "properties": {
            "owner": {"anyOf": [{"type": "string", "maxLength": 10}, {"type": "null"}],
                      "title": "Owner"},
            "pet": {"oneOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}],
                    "discriminator": {"propertyName": "kind"}}},
        "required": ["owner", "pet"]});
    for seed in 0..6 {
        let f = OutputFormat::JsonSchema(schema.clone());
        let (t, done) = sample(&g, &tok, &eos, &f, seed, 200, tok.vocab_size());
        assert!(done, "{t:?}");
        let v: Value = serde_json::from_str(&t).unwrap_or_else(|e| panic!("{e}: {t:?}"));
        assert!(
            v["owner"].is_null() || v["owner"].as_str().unwrap().chars().count() <= 10,
            "{t}"
        );
        let kind = v["pet"]["kind"].as_str().unwrap();
        assert!(kind == "cat" || kind == "dog", "{t}");
        assert!(
            v["pet"]["name"].as_str().unwrap().chars().count() <= 8,
            "{t}"
        );
        assert_eq!(v.as_object().unwrap().len(), 2, "{t}");
        assert_eq!(v["pet"].as_object().unwrap().len(), 2, "{t}");
    }
}

/// llama.cpp's GBNF grammars are read (turned into Lark): random samples are in the
/// grammar's language, with its character classes, repeats, nested groups over lines, any
/// character (`.`) and an empty alternative.
#[test]
fn gbnf_grammars_sample_their_language() {
    let Some(gp) = fixture(GGUF) else { return };
    let tok = TextTokenizer::from_gguf(&GgufFile::open(&gp).unwrap()).unwrap();
    let eos = tok.eos_token_ids();
    let vocab = tok.vocab_size();
    let g = Grammars::new(&tok, vocab, &eos).unwrap();
    let gbnf = r#"# a list of up to four items, then an optional tail
root ::= item (", " item){0,3} tail
item ::= [a-z]{2,5} | num | (
    "(" num
    | "[" . "]"
  )
num  ::= [1-9] [0-9]?
tail ::= "." | "!" |
"#;
    let item = r"([a-z]{2,5}|[1-9][0-9]?|\([1-9][0-9]?|\[.\])";
    let re = regex::Regex::new(&format!(r"^{item}(, {item}){{0,3}}[.!]?$")).unwrap();
    // Any token but one, by id (llguidance's `<[^ID]>`).
    let not_eos = format!("root ::= \"x\" !<[{}]>", eos[0]);
    assert!(g.compile(&OutputFormat::Grammar(not_eos)).is_ok());
    let f = OutputFormat::Grammar(gbnf.into());
    for seed in 0..8 {
        let (t, done) = sample(&g, &tok, &eos, &f, seed, 40, vocab);
        assert!(done && re.is_match(&t), "seed {seed}: {t:?}");
    }
}

/// A model with more logits than its tokenizer has tokens (padding rows, as Qwen's): the
/// padding is never allowed, and an end-of-sequence id past the logits is dropped, not a panic.
#[test]
fn padding_rows_and_stray_eos_ids() {
    let Some(gp) = fixture(GGUF) else { return };
    let tok = TextTokenizer::from_gguf(&GgufFile::open(&gp).unwrap()).unwrap();
    let mut eos = tok.eos_token_ids();
    let vocab = tok.vocab_size() + 64;
    eos.push(vocab as u32 + 100);
    let g = Grammars::new(&tok, vocab, &eos).unwrap();
    let re = regex::Regex::new(r"^[a-z]{3,6}$").unwrap();
    for seed in 0..4 {
        let f = OutputFormat::Regex("[a-z]{3,6}".into());
        let (t, done) = sample(&g, &tok, &eos, &f, seed, 20, vocab);
        assert!(done && re.is_match(&t), "{t:?}");
    }
    assert!(Grammars::new(&tok, vocab, &[vocab as u32 + 1]).is_err());
}

#[test]
fn formats_that_cannot_compile_are_errors() {
    let Some(gp) = fixture(GGUF) else { return };
    let tok = TextTokenizer::from_gguf(&GgufFile::open(&gp).unwrap()).unwrap();
    let eos = tok.eos_token_ids();
    let g = Grammars::new(&tok, tok.vocab_size(), &eos).unwrap();
    for (f, words) in [
        (OutputFormat::Regex("(unclosed".into()), "("),
        (
            OutputFormat::JsonSchema(json!({"type": "integer", "minimum": 5, "maximum": 1})),
            "nsatisfiable",
        ),
        (
            OutputFormat::JsonSchema(json!({"type": "no-such-type"})),
            "no-such-type",
        ),
        (
            OutputFormat::Grammar("root ::= \"yes\" | \"no".into()),
            "GBNF line 1: expected `\"` closing the literal",
        ),
        (
            OutputFormat::Grammar("root ::= answer".into()),
            "`answer`, which it does not define",
        ),
        (OutputFormat::Grammar("start: (\"a\"".into()), "1"),
        (OutputFormat::Grammar(" \n".into()), "empty"),
        (OutputFormat::Grammar("start: nowhere".into()), "nowhere"),
        (
            OutputFormat::Grammar("start: start \"a\"".into()),
            "admits no text",
        ),
    ] {
        let e = g
            .compile(&f)
            .err()
            .unwrap_or_else(|| panic!("{f:?} compiled"));
        assert!(e.contains(words), "{f:?}: {e}");
    }
    assert!(Grammars::new(&tok, tok.vocab_size(), &[]).is_err());
}
