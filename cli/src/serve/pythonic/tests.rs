//! The pythonic reader's tests: literals, what stays text, mutations, round trips.

use super::*;
use serde_json::json;

fn one(name: &str, args: Value) -> Vec<(String, Value)> {
    vec![(name.to_string(), args)]
}

#[test]
fn reads_lists_of_calls_with_literal_arguments() {
    assert_eq!(
        parse("[get_weather(city='Paris', days=3)]"),
        Some(one("get_weather", json!({"city": "Paris", "days": 3})))
    );
    assert_eq!(
        parse(" \n[f(), g(x=-1.5e3, y=None, z=True, w=false,)]\n"),
        Some(vec![
            ("f".into(), json!({})),
            (
                "g".into(),
                json!({"x": -1500.0, "y": null, "z": true, "w": false})
            )
        ])
    );
    let nested = r#"[search(q="a \"b\"\n\tc\\d \u00e9\x41\101 'q'", filters={'k': [1, 2.5, {"deep": null}], 3: "n"}, tags=[])]"#;
    assert_eq!(
        parse(nested),
        Some(one(
            "search",
            json!({"q": "a \"b\"\n\tc\\d éAA 'q'", "filters": {"k": [1, 2.5, {"deep": null}], "3": "n"}, "tags": []})
        ))
    );
    // Llama 4's markers, shown with special tokens.
    assert_eq!(
        parse("<|python_start|>[f(a=1)]<|python_end|>"),
        Some(one("f", json!({"a": 1})))
    );
    // Python's other integer spellings; raw, triple-quoted and joined strings.
    assert_eq!(
        parse("[f(a=1_000, b=0x_FF, c=-0o17, d=0b1010, e=1_0.2_5e1_0, f=0_0)]"),
        Some(one(
            "f",
            json!({"a": 1000, "b": 255, "c": -15, "d": 10, "e": 10.25e10, "f": 0})
        ))
    );
    let strings = r#"[f(a=r'C:\new\x', b=R"\"", c='''two
lines 'q' \t''', d="""""", e='a' "b"
  u'c')]"#;
    assert_eq!(
        parse(strings),
        Some(one(
            "f",
            json!({"a": "C:\\new\\x", "b": "\\\"", "c": "two\nlines 'q' \t", "d": "", "e": "abc"})
        ))
    );
    // Non-ASCII text and a big unsigned integer.
    assert_eq!(
        parse("[f(s=\"日本\", n=18446744073709551615)]"),
        Some(one("f", json!({"s": "日本", "n": 18446744073709551615u64})))
    );
}

#[test]
fn anything_else_is_text() {
    for text in [
        "The weather is fine.",
        "[]",
        "[f(x=1)] and more",
        "Sure: [f(x=1)]",
        "[f(1)]",
        "[f(x=y)]",
        "[f(x=1+2)]",
        "[f(x=(1, 2))]",
        "[f(x=1, x=2)]",
        "[f(x=1)",
        "[f(x='a)]",
        "[f(x='a\nb')]",
        "[f(x={[1]: 2})]",
        "[f(x=99999999999999999999)]",
        "[f(x=0x1_0000_0000_0000_0000)]",
        "[f(x=1__0)]",
        "[f(x=1_)]",
        "[f(x=0_7)]",
        "[f(x=1_.5)]",
        "[f(x=0x)]",
        "[f(x=0b12)]",
        "[f(x=b'a')]",
        "[f(x=f'a')]",
        "[f(x='a' 1)]",
        "[f(x='''a)]",
        "[f(x=r'a\\')]",
        "[f(x=1e999)]",
        "[f(x='\\ud800')]",
        "[f(x='\\N{BULLET}')]",
        "[obj.f(x=1)]",
        "[1f(x=1)]",
        "[f(x=1)(y=2)]",
        "[f(x=1),, g()]",
        "[f(x=007)]",
        "[f(x='\\x+1')]",
        "[f(x='\\u+123')]",
        "[f(from=1)]",
        "[None(x=1)]",
        "[class()]",
    ] {
        assert_eq!(parse(text), None, "{text}");
    }
    let deep = format!("[f(x={}{})]", "[".repeat(100), "]".repeat(100));
    assert_eq!(parse(&deep), None, "past MAX_DEPTH");
    let ok = format!("[f(x={}{})]", "[".repeat(10), "]".repeat(10));
    assert!(parse(&ok).is_some());
}

/// Answers cut and spliced at random never panic, and whatever reads as calls writes back
/// as text that reads as the same calls.
#[test]
fn mutated_answers_never_panic_and_round_trip() {
    use rand::{Rng, SeedableRng};
    let seeds = [
        r#"[f(a="x\"y", b=[1, -2.5e-3, {'k': None}], c=True), g()]"#,
        "<|python_start|>[h(x='\\u00e9\\x41\\101', y={1: [[]]})]<|python_end|>",
        "[f(n=18446744073709551615, m=-9223372036854775808, e=.5)]",
        r#"[f(a=1_000, b=-0x_ff, c=0o7, d=0b1, e=1_0.5e-1_0, s=r'a\b' u"c" '''d
e''')]"#,
    ];
    let pieces: &[&str] = &[
        "[", "]", "(", ")", "{", "}", "=", ",", "'", "\"", "\\", "e", "-", "é", "\n", "_", "0x",
        "0b", "r", "u", "'''", "\"\"\"", " ",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut calls_seen = 0;
    for i in 0..20_000 {
        let mut t: Vec<char> = seeds[i % seeds.len()].chars().collect();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..=t.len());
            match rng.random_range(0..3) {
                0 if at < t.len() => {
                    t.remove(at);
                }
                1 => {
                    let p = pieces[rng.random_range(0..pieces.len())];
                    t.splice(at..at, p.chars());
                }
                _ => t.truncate(at),
            }
        }
        let text: String = t.into_iter().collect();
        if let Some(calls) = parse(&text) {
            calls_seen += 1;
            assert_eq!(parse(&write(&calls)).as_ref(), Some(&calls), "{text}");
        }
    }
    assert!(
        calls_seen > 100,
        "only {calls_seen} mutated answers read as calls"
    );
}

#[test]
fn what_write_gives_parse_reads_back() {
    let calls = vec![
        (
            "f".to_string(),
            json!({"s": "it's \"q\"\n\u{1}é", "n": -3, "x": 0.25, "b": [true, false, null],
                   "o": {"k": {"l": []}}}),
        ),
        ("g".to_string(), json!({})),
    ];
    let text = write(&calls);
    assert!(text.starts_with("[f(s=\"it's"), "{text}");
    assert!(text.contains("b=[True, False, None]"), "{text}");
    assert_eq!(parse(&text), Some(calls));
    // Keys that are no Python name go in `**{...}`; zeros and exponents as Python writes them.
    let odd = vec![(
        "f".to_string(),
        json!({"ok": 1, "my-key": "v", "class": 1e16, "z": 0, "zz": -0.0}),
    )];
    assert_eq!(
        write(&odd),
        r#"[f(ok=1, z=0, zz=-0.0, **{"my-key": "v", "class": 1e+16})]"#
    );
    assert_eq!(
        parse("[f(a=00, b=0.0, c=00.5, d=-0)]"),
        Some(one("f", json!({"a": 0, "b": 0.0, "c": 0.5, "d": 0})))
    );
}
