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
/// grammar ended it (its end or an allowed EOS) rather than `max`.
fn sample(
    g: &Grammars,
    tok: &TextTokenizer,
    eos: &[u32],
    format: &OutputFormat,
    seed: u64,
    max: usize,
) -> (String, bool) {
    let mut c = g.compile(format).unwrap().0;
    let vocab = tok.vocab_size();
    let mut sampler = Sampler::new(SamplingParams {
        temperature: 0.7,
        seed,
        ..SamplingParams::default()
    });
    let mut rng = seed.wrapping_add(17);
    let mut ids = Vec::new();
    for _ in 0..max {
        let logits = noise(vocab, &mut rng);
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
        );
        assert!(done && choices.contains(&t), "{t:?}");
    }
    let re = regex::Regex::new(r"^[0-9]{3}-[a-z]{2,4}$").unwrap();
    for seed in 0..6 {
        let f = OutputFormat::Regex(r"[0-9]{3}-[a-z]{2,4}".into());
        let (t, done) = sample(&g, &tok, &eos, &f, seed, 40);
        assert!(done && re.is_match(&t), "{t:?}");
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
    // Any object: random logits rarely close one, so check only that every prefix is one.
    for seed in 0..3 {
        let (t, done) = sample(&g, &tok, &eos, &OutputFormat::JsonObject, seed, 30);
        assert!(t.starts_with('{'), "{t:?}");
        if done {
            let v: Value = serde_json::from_str(&t).unwrap_or_else(|e| panic!("{e}: {t:?}"));
            assert!(v.is_object());
        }
    }
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
    ] {
        let e = g
            .compile(&f)
            .err()
            .unwrap_or_else(|| panic!("{f:?} compiled"));
        assert!(e.contains(words), "{f:?}: {e}");
    }
    assert!(Grammars::new(&tok, tok.vocab_size(), &[]).is_err());
}
