//! The `pythonic` tool-call syntax (vLLM's `--tool-call-parser pythonic`): the whole answer is
//! a Python list of calls with keyword arguments, `[get_weather(city="Paris", days=3),
//! get_time()]` (Llama 3.2 and Llama 4 behind their pythonic templates, ToolACE), possibly
//! between Llama 4's `<|python_start|>` and `<|python_end|>`.
//!
//! vLLM reads it with Python's `ast`; this reads Python's literals by hand: strings ('…' or
//! "…", triple-quoted, `r`/`u` prefixes, side by side joined, Python's escapes but `\N{…}`),
//! numbers (`1_000`, `0x10`, `0o17`, `0b1`, floats), `True`/`False`/`None` (and the JSON
//! spellings, which models also write), lists, and dicts with string or number keys.
//! Anything else is not a call, and the answer stays text (never a call with arguments
//! guessed): a variable, an expression, a tuple, a repeated keyword, a Python keyword as a
//! name, a positional argument (vLLM drops those and keeps the call), bytes or f-strings, an
//! integer past 64 bits (JSON text here holds no more) or with leading zeros, names outside
//! ASCII. Unlike `ast`'s reading, `-1` and `+1` are literals here (vLLM makes the
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
            b'"' | b'\'' => self.strings().map(Value::String),
            _ if self.prefix().is_some() => self.strings().map(Value::String),
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

    /// An integer (64 bits; decimal without leading zeros but in `0`, `00`, ..., or `0x`,
    /// `0o`, `0b`) or a finite float, with an optional sign; `_` between digits, as Python
    /// takes it (`1_000`, `0x_ff`).
    fn number(&mut self) -> Option<Value> {
        let start = self.at;
        let negative = self.peek() == Some(b'-');
        if matches!(self.peek(), Some(b'-' | b'+')) {
            self.at += 1;
        }
        let radix = match self.s.get(self.at..self.at + 2) {
            Some([b'0', b'x' | b'X']) => 16,
            Some([b'0', b'o' | b'O']) => 8,
            Some([b'0', b'b' | b'B']) => 2,
            _ => 10,
        };
        if radix != 10 {
            self.at += 2;
            let digits = self.digits(|c| (c as char).is_digit(radix), true)?;
            let v = u64::from_str_radix(&digits, radix).ok()?;
            return match negative {
                true => 0i64.checked_sub_unsigned(v).map(Value::from),
                false => Some(Value::from(v)),
            };
        }
        let mut text = String::from_utf8_lossy(&self.s[start..self.at]).into_owned();
        let mut float = false;
        loop {
            text.push_str(&self.digits(|c| c.is_ascii_digit(), false)?);
            match self.peek() {
                Some(c @ (b'.' | b'e' | b'E')) => {
                    float = true;
                    text.push(c as char);
                    self.at += 1;
                    // An exponent's sign.
                    if matches!(c, b'e' | b'E') && matches!(self.peek(), Some(b'-' | b'+')) {
                        text.push(self.s[self.at] as char);
                        self.at += 1;
                    }
                }
                _ => break,
            }
        }
        let text = text.strip_prefix('+').unwrap_or(&text);
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

    /// A run of digits (`digit` says which) with single `_` between them (and, after a base
    /// prefix, `lead`, before the first), without the `_`; empty where none are next, None
    /// for a misplaced `_`.
    fn digits(&mut self, digit: impl Fn(u8) -> bool, lead: bool) -> Option<String> {
        let mut out = String::new();
        let mut after_digit = lead;
        while let Some(c) = self.peek() {
            if digit(c) {
                out.push(c as char);
                after_digit = true;
            } else if c == b'_' && after_digit && self.s.get(self.at + 1).is_some_and(|&d| digit(d))
            {
                after_digit = false;
            } else {
                break;
            }
            self.at += 1;
        }
        match self.peek() {
            Some(b'_') => None,
            _ => Some(out),
        }
    }

    /// The length of a string prefix at the cursor (`r`, `u`, either case; not `b` or `f`,
    /// whose literals are no JSON text) when a quote follows it, and whether it is raw.
    fn prefix(&self) -> Option<(usize, bool)> {
        let c = self.peek()?;
        let quoted = matches!(self.s.get(self.at + 1), Some(b'"' | b'\''));
        (quoted && matches!(c, b'r' | b'R' | b'u' | b'U')).then_some((1, matches!(c, b'r' | b'R')))
    }

    /// A string literal, or several side by side, which Python joins (`'a' "b"`), each with
    /// an optional [`Self::prefix`].
    fn strings(&mut self) -> Option<String> {
        let mut out = String::new();
        loop {
            let raw = match self.prefix() {
                Some((n, raw)) => {
                    self.at += n;
                    raw
                }
                None => false,
            };
            out.push_str(&self.string(raw)?);
            let end = self.at;
            self.ws();
            if !matches!(self.peek(), Some(b'"' | b'\'')) && self.prefix().is_none() {
                self.at = end;
                return Some(out);
            }
        }
    }

    /// A string in either quote, single-line or triple-quoted, with Python's escapes (none in
    /// a `raw` one, where a backslash keeps the character after it, a quote too).
    fn string(&mut self, raw: bool) -> Option<String> {
        let quote = self.peek()?;
        if !matches!(quote, b'"' | b'\'') {
            return None;
        }
        let closes = |r: &Self, n: usize| {
            r.s.get(r.at..r.at + n)
                .is_some_and(|q| q.iter().all(|&c| c == quote))
        };
        let triple = closes(self, 3);
        let width = if triple { 3 } else { 1 };
        self.at += width;
        let mut out: Vec<u8> = Vec::new();
        loop {
            if closes(self, width) {
                self.at += width;
                break;
            }
            let c = self.peek()?;
            self.at += 1;
            match c {
                b'\n' if !triple => return None, // only triple-quoted strings span lines
                b'\\' if raw => {
                    out.push(c);
                    out.push(self.peek()?);
                    self.at += 1;
                }
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
mod tests;
