//! The `pythonic` tool-call syntax (vLLM's `--tool-call-parser pythonic`): the whole answer is
//! a Python list of calls with keyword arguments, `[get_weather(city="Paris", days=3),
//! get_time()]` (Llama 3.2 and Llama 4 behind their pythonic templates, ToolACE), possibly
//! between Llama 4's `<|python_start|>` and `<|python_end|>`.
//!
//! vLLM reads it with Python's `ast`; this reads Python's literals by hand: strings ('…' or
//! "…", one line, Python's escapes but `\N{…}`), decimal numbers, `True`/`False`/`None` (and
//! the JSON spellings, which models also write), lists, and dicts with string or number keys.
//! Anything else is not a call, and the answer stays text (never a call with arguments
//! guessed): a variable, an expression, a tuple, a repeated keyword, a Python keyword as a
//! name, a positional argument (vLLM drops those and keeps the call), string prefixes or
//! implicit concatenation, `0x10` or `1_000`, an integer past 64 bits or with leading zeros,
//! names outside ASCII. Unlike `ast`'s reading, `-1` and `+1` are literals here (vLLM makes the
//! answer text), and names may start with `_`.

use serde_json::{Map, Number, Value};

use dlp_engine::tokenizer::chat::python_json;

/// Llama 4's markers around its calls (control tokens: seen only when special tokens are).
pub const PYTHON_START: &str = "<|python_start|>";
const PYTHON_END: &str = "<|python_end|>";
/// Deepest nesting of lists and dicts read: a deeper answer is text (recursion stays bounded
/// whatever a grammar made the model write).
const MAX_DEPTH: usize = 64;

/// The calls of an answer that is only a list of calls (whitespace around it aside), each as
/// `(name, arguments)` with the arguments a JSON object; None otherwise (an empty list too).
pub fn parse(text: &str) -> Option<Vec<(String, Value)>> {
    let t = text.trim();
    let t = t.strip_prefix(PYTHON_START).unwrap_or(t);
    let t = t.strip_suffix(PYTHON_END).unwrap_or(t);
    let mut r = Reader {
        s: t.as_bytes(),
        at: 0,
    };
    let calls = r.calls()?;
    r.ws();
    (r.at == r.s.len() && !calls.is_empty()).then_some(calls)
}

/// Calls as the model writes them: `[name(key=value, ...), ...]`, values as Python literals
/// (JSON's spelling of strings, numbers, lists and dicts is Python's; `True`, `False`, `None`).
/// Keys that are no Python name (`my-key`, `class`) go in a trailing `**{"my-key": ...}`.
pub fn write(calls: &[(String, Value)]) -> String {
    let each: Vec<String> = calls
        .iter()
        .map(|(name, args)| {
            let (named, other): (Vec<_>, Vec<_>) = args
                .as_object()
                .into_iter()
                .flatten()
                .partition(|(k, _)| is_name(k));
            let mut kwargs: Vec<String> = named
                .into_iter()
                .map(|(k, v)| format!("{k}={}", literal(v)))
                .collect();
            if !other.is_empty() {
                let rest: Map<String, Value> = other
                    .into_iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                kwargs.push(format!("**{}", literal(&Value::Object(rest))));
            }
            format!("{name}({})", kwargs.join(", "))
        })
        .collect();
    format!("[{}]", each.join(", "))
}

/// Python's keywords: never a function's or an argument's name.
const KEYWORDS: [&str; 35] = [
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

/// Whether `s` can name an argument: ASCII letters, digits and `_`, not first a digit, no
/// keyword.
fn is_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        && !KEYWORDS.contains(&s)
}

/// `v` as a Python literal.
fn literal(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Number(_) | Value::String(_) => python_json(v),
        Value::Array(a) => format!("[{}]", a.iter().map(literal).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => {
            let items: Vec<String> = o
                .iter()
                .map(|(k, v)| format!("{}: {}", python_json(&Value::from(k.as_str())), literal(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

/// A cursor over the answer's bytes; every method returns None where the text is not what it
/// reads (the caller then gives up on the whole answer).
struct Reader<'a> {
    s: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    /// Skips whitespace, then takes `c` if it is next.
    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        let hit = self.peek() == Some(c);
        self.at += usize::from(hit);
        hit
    }

    /// `open item (, item)* ,? close`, each item read by `item`.
    fn sequence(
        &mut self,
        open: u8,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        if !self.eat(open) {
            return None;
        }
        if self.eat(close) {
            return Some(());
        }
        loop {
            item(self)?;
            if self.eat(close) {
                return Some(());
            }
            if !self.eat(b',') {
                return None;
            }
            if self.eat(close) {
                return Some(());
            }
        }
    }

    fn calls(&mut self) -> Option<Vec<(String, Value)>> {
        let mut calls = Vec::new();
        self.sequence(b'[', b']', |r| {
            calls.push(r.call()?);
            Some(())
        })?;
        Some(calls)
    }

    /// `name(key=value, ...)`.
    fn call(&mut self) -> Option<(String, Value)> {
        self.ws();
        let name = self.name()?;
        let mut args = Map::new();
        self.sequence(b'(', b')', |r| {
            r.ws();
            let key = r.name()?;
            if !r.eat(b'=') || args.contains_key(&key) {
                return None; // a positional argument, or a keyword given twice
            }
            let v = r.value(0)?;
            args.insert(key, v);
            Some(())
        })?;
        Some((name, Value::Object(args)))
    }

    /// A name ([`is_name`]); `True`, `False` and `None` read by [`Self::value`] only.
    fn name(&mut self) -> Option<String> {
        let id = self.word()?;
        is_name(&id).then_some(id)
    }

    /// A non-empty run of ASCII letters, digits and `_` ([`Self::name`] and [`Self::value`]
    /// say which are names and literals).
    fn word(&mut self) -> Option<String> {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
        {
            self.at += 1;
        }
        let id = &self.s[start..self.at];
        (!id.is_empty()).then(|| String::from_utf8_lossy(id).into())
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        match self.peek()? {
            b'"' | b'\'' => self.string().map(Value::String),
            b'[' => {
                let mut items = Vec::new();
                self.sequence(b'[', b']', |r| {
                    items.push(r.value(depth + 1)?);
                    Some(())
                })?;
                Some(Value::Array(items))
            }
            b'{' => {
                let mut map = Map::new();
                self.sequence(b'{', b'}', |r| {
                    let key = match r.value(depth + 1)? {
                        Value::String(s) => s,
                        // As json.dumps writes a number key.
                        Value::Number(n) => n.to_string(),
                        _ => return None,
                    };
                    if !r.eat(b':') {
                        return None;
                    }
                    map.insert(key, r.value(depth + 1)?);
                    Some(())
                })?;
                Some(Value::Object(map))
            }
            c if c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.') => self.number(),
            _ => match self.word()?.as_str() {
                "True" | "true" => Some(Value::Bool(true)),
                "False" | "false" => Some(Value::Bool(false)),
                "None" | "null" => Some(Value::Null),
                _ => None, // a variable or a call: not a literal
            },
        }
    }

    /// A decimal integer (64 bits, no leading zeros but in `0`, `00`, ...) or a finite float,
    /// with an optional sign.
    fn number(&mut self) -> Option<Value> {
        let start = self.at;
        if matches!(self.peek(), Some(b'-' | b'+')) {
            self.at += 1;
        }
        let mut float = false;
        while let Some(c) = self.peek() {
            match c {
                b'0'..=b'9' => {}
                b'.' | b'e' | b'E' => float = true,
                // An exponent's sign.
                b'-' | b'+' if self.at > start && matches!(self.s[self.at - 1], b'e' | b'E') => {}
                _ => break,
            }
            self.at += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.at]).ok()?;
        let text = text.strip_prefix('+').unwrap_or(text);
        let digits = text.trim_start_matches('-');
        if !float && digits.len() > 1 && digits.starts_with('0') && digits.contains(|c| c != '0') {
            return None; // `007`: a SyntaxError in Python 3
        }
        if float {
            let f: f64 = text.parse().ok()?;
            Number::from_f64(f).map(Value::Number)
        } else if let Ok(i) = text.parse::<i64>() {
            Some(Value::from(i))
        } else {
            text.parse::<u64>().ok().map(Value::from)
        }
    }

    /// A single-line string in either quote, with Python's escapes.
    fn string(&mut self) -> Option<String> {
        let quote = self.peek()?;
        self.at += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let c = self.peek()?;
            self.at += 1;
            match c {
                _ if c == quote => break,
                b'\n' => return None, // only triple-quoted strings span lines
                b'\\' => self.escape(&mut out)?,
                _ => out.push(c),
            }
        }
        String::from_utf8(out).ok()
    }

    /// The escape after a backslash, appended to `out` as UTF-8.
    fn escape(&mut self, out: &mut Vec<u8>) -> Option<()> {
        let c = self.peek()?;
        self.at += 1;
        let simple = match c {
            b'\n' => return Some(()), // a line continuation
            b'\\' | b'\'' | b'"' => c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'b' => 8,
            b'f' => 12,
            b'v' => 11,
            b'a' => 7,
            b'0'..=b'7' => {
                // Up to three octal digits.
                let mut v = u32::from(c - b'0');
                for _ in 0..2 {
                    match self.peek() {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            self.at += 1;
                        }
                        _ => break,
                    }
                }
                return push_char(out, v);
            }
            b'x' | b'u' | b'U' => {
                let digits = match c {
                    b'x' => 2,
                    b'u' => 4,
                    _ => 8,
                };
                let hex = self.s.get(self.at..self.at + digits)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None; // from_str_radix would take a sign
                }
                let v = u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                self.at += digits;
                return push_char(out, v);
            }
            b'N' => return None, // \N{name}: no table of names here
            // Python keeps an unknown escape as written.
            _ => {
                out.extend([b'\\', c]);
                return Some(());
            }
        };
        out.push(simple);
        Some(())
    }
}

/// Appends code point `v` (None for a surrogate or past U+10FFFF: JSON text cannot hold it).
fn push_char(out: &mut Vec<u8>, v: u32) -> Option<()> {
    let c = char::from_u32(v)?;
    out.extend(c.encode_utf8(&mut [0; 4]).as_bytes());
    Some(())
}

#[cfg(test)]
mod tests {
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
            "[f(x=0x10)]",
            "[f(x=1_000)]",
            "[f(x=r'a')]",
            "[f(x='a' 'b')]",
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
        ];
        let pieces: &[&str] = &[
            "[", "]", "(", ")", "{", "}", "=", ",", "'", "\"", "\\", "e", "-", "é", "\n",
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
}
