//! Jinja2's Python behaviour where minijinja's differs and real chat templates show it: how a
//! value prints (`{{ tools }}`, `x|string`: Python's `str`, so lists and dicts in `repr` with
//! single quotes, `None`, `True`, floats as `1e-05`), `indent` (Jinja2 keeps a trailing
//! newline), and the `iterable`, `sequence` and `number` tests (None is no iterable; strings
//! and dicts are sequences; booleans are numbers, as in Python).

use std::fmt::Write;

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, Output, State, Value};

/// Python's `repr(float)` digits (shortest round trip, exponent form outside 1e-4..1e16),
/// with `special` the spellings of NaN, +infinity and -infinity (`nan`/`inf` for Python's own,
/// `NaN`/`Infinity` for its `json.dumps`).
pub fn float(f: f64, special: [&str; 3]) -> String {
    if f.is_nan() {
        return special[0].into();
    }
    if f.is_infinite() {
        return special[if f > 0.0 { 1 } else { 2 }].into();
    }
    let sci = format!("{f:e}"); // shortest digits, e.g. "1.5e-5"
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let s = format!("{f}");
        if s.contains('.') {
            s
        } else {
            s + ".0"
        }
    } else {
        format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    }
}

const PY_SPECIAL: [&str; 3] = ["nan", "inf", "-inf"];

/// Python's `str(value)` where it is not minijinja's: containers and floats; None for the rest.
fn py_str(v: &Value) -> Option<String> {
    match v.kind() {
        ValueKind::Seq | ValueKind::Map => {
            let mut s = String::new();
            repr(v, &mut s);
            Some(s)
        }
        ValueKind::Number if !v.is_integer() => {
            f64::try_from(v.clone()).ok().map(|f| float(f, PY_SPECIAL))
        }
        _ => None,
    }
}

/// Python's `repr` of a template value (into `out`).
fn repr(v: &Value, out: &mut String) {
    match v.kind() {
        ValueKind::String => repr_str(v.as_str().unwrap_or(""), out),
        ValueKind::Seq => {
            out.push('[');
            for (i, item) in v.try_iter().into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                repr(&item, out);
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            for (i, k) in v.try_iter().into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                repr(&k, out);
                out.push_str(": ");
                repr(&v.get_item(&k).unwrap_or_default(), out);
            }
            out.push('}');
        }
        ValueKind::Undefined | ValueKind::None => out.push_str("None"),
        _ => match py_str(v) {
            Some(s) => out.push_str(&s),
            None => {
                let _ = write!(out, "{v}");
            }
        },
    }
}

/// Python's `repr(str)`: single quotes unless the text holds `'` and no `"`; backslash, the
/// quote, `\n`, `\r`, `\t` escaped, other control and invisible format characters as `\x..`,
/// `\u....` (Python escapes every character `str.isprintable` refuses; this covers the
/// control, line/paragraph separator and zero-width ones).
fn repr_str(s: &str, out: &mut String) {
    let q = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || (0x7f..=0xa0).contains(&(c as u32)) || c == '\u{ad}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{feff}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(q);
}

/// The output formatter: Python's `str` for containers and floats, minijinja's for the rest.
pub fn formatter(out: &mut Output, state: &State, v: &Value) -> Result<(), Error> {
    match py_str(v) {
        Some(s) => out
            .write_str(&s)
            .map_err(|e| Error::new(ErrorKind::WriteFailure, "writing a value").with_source(e)),
        None => minijinja::escape_formatter(out, state, v),
    }
}

/// The `string` filter: Python's `str`.
pub fn string(v: Value) -> Value {
    match py_str(&v) {
        Some(s) => Value::from(s),
        None if v.kind() == ValueKind::String => v,
        None => Value::from(v.to_string()),
    }
}

/// Jinja2's `trim(chars=None)`: the value as Python's `str` writes it (a list system message
/// in Llama 3.2 Vision's template), stripped of whitespace or of `chars`.
pub fn trim(v: Value, chars: Option<String>) -> String {
    let s = string(v).to_string();
    match chars {
        Some(c) => s
            .trim_matches(&c.chars().collect::<Vec<_>>()[..])
            .to_string(),
        None => s.trim().to_string(),
    }
}

/// Jinja2's `join(d="", attribute=None)`: each item (or its `attribute`) as Python's `str`
/// writes it, joined by `d`.
pub fn join(v: Value, d: Option<String>, kwargs: Kwargs) -> Result<String, Error> {
    let d = match d {
        Some(d) => d,
        None => kwargs.get::<Option<String>>("d")?.unwrap_or_default(),
    };
    let attribute: Option<Value> = kwargs.get("attribute")?;
    kwargs.assert_all_used()?;
    if let Some(s) = v.as_str() {
        // A string joins its characters.
        return Ok(s.chars().map(String::from).collect::<Vec<_>>().join(&d));
    }
    let mut parts = Vec::new();
    for item in v.try_iter()? {
        let item = match &attribute {
            Some(a) => item.get_item(a)?,
            None => item,
        };
        parts.push(string(item).to_string());
    }
    Ok(parts.join(&d))
}

/// Jinja2's `indent(width=4, first=False, blank=False)`: the text's lines (Python's
/// `splitlines`, after adding a newline, so a trailing newline stays) joined by `\n`, each
/// after the first indented unless blank; `width` a number of spaces or the indent itself.
pub fn indent(
    s: String,
    width: Option<Value>,
    first: Option<bool>,
    blank: Option<bool>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    let width = match width {
        Some(w) => Some(w),
        None => kwargs.get::<Option<Value>>("width")?,
    };
    let first = first
        .or(kwargs.get::<Option<bool>>("first")?)
        .unwrap_or(false);
    let blank = blank
        .or(kwargs.get::<Option<bool>>("blank")?)
        .unwrap_or(false);
    kwargs.assert_all_used()?;
    let with = match width {
        None => "    ".to_string(),
        Some(w) if w.kind() == ValueKind::String => w.as_str().unwrap_or("").to_string(),
        Some(w) => {
            let n = usize::try_from(w.clone()).map_err(|_| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    format!("indent: width {w} is neither a count of spaces nor a string"),
                )
            })?;
            " ".repeat(n)
        }
    };
    let text = s + "\n";
    let lines = splitlines(&text);
    let mut rv = String::new();
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            rv.push('\n');
            if blank || !line.is_empty() {
                rv.push_str(&with);
            }
        }
        rv.push_str(line);
    }
    if first {
        rv.insert_str(0, &with);
    }
    Ok(rv)
}

/// Python's `str.splitlines()`: lines without their ends (`\n`, `\r`, `\r\n`, `\v`, `\f`,
/// `\x1c`-`\x1e`, `\x85`, U+2028, U+2029); no empty line after a final end.
fn splitlines(s: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        let end = matches!(
            c,
            '\n' | '\r'
                | '\u{b}'
                | '\u{c}'
                | '\u{1c}'
                | '\u{1d}'
                | '\u{1e}'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        );
        if !end {
            continue;
        }
        lines.push(&s[start..i]);
        start = i + c.len_utf8();
        if c == '\r' && it.peek().is_some_and(|&(_, n)| n == '\n') {
            it.next();
            start += 1;
        }
    }
    if start < s.len() {
        lines.push(&s[start..]);
    }
    lines
}

/// Jinja2's `iterable` test: Python's `iter(x)` succeeds (None has none; undefined iterates
/// as empty, as Jinja2's `Undefined` does).
pub fn is_iterable(v: &Value) -> bool {
    !v.is_none() && v.try_iter().is_ok()
}

/// Jinja2's `sequence` test: `len(x)` and `x[...]` work, so strings, dicts and undefined
/// values (Jinja2's `Undefined` has both) are sequences.
pub fn is_sequence(v: &Value) -> bool {
    matches!(
        v.kind(),
        ValueKind::Seq | ValueKind::Map | ValueKind::String | ValueKind::Undefined
    )
}

/// Jinja2's `number` test: Python's `isinstance(x, Number)`, booleans included.
pub fn is_number(v: &Value) -> bool {
    matches!(v.kind(), ValueKind::Number | ValueKind::Bool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_python() {
        for (f, s) in [
            (1.0, "1.0"),
            (0.00001, "1e-05"),
            (1e16, "1e+16"),
            (1.5e-7, "1.5e-07"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (-0.0, "-0.0"),
            (f64::INFINITY, "inf"),
        ] {
            assert_eq!(float(f, PY_SPECIAL), s);
        }
    }

    #[test]
    fn strings_repr_as_python() {
        let r = |s: &str| {
            let mut o = String::new();
            repr_str(s, &mut o);
            o
        };
        assert_eq!(r("a"), "'a'");
        assert_eq!(r("it's"), "\"it's\"");
        assert_eq!(r("it's \"x\""), "'it\\'s \"x\"'");
        assert_eq!(r("a\nb\\\u{1}\u{200b}é"), "'a\\nb\\\\\\x01\\u200bé'");
    }

    #[test]
    fn splitlines_as_python() {
        assert_eq!(splitlines("a\r\nb\rc\n\nd\n"), ["a", "b", "c", "", "d"]);
        assert_eq!(splitlines("\n"), [""]);
        assert_eq!(splitlines(""), Vec::<&str>::new());
        assert_eq!(splitlines("x\u{2028}y"), ["x", "y"]);
    }
}
