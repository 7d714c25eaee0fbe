//! Python's `%` string formatting in chat templates (`'%d of %s' % (a, b)`), which Jinja2 has
//! from Python and minijinja's `%` (a number operator) does not: each such product is
//! rewritten into a call of `__percent_format`, found by reading the template's tags as Jinja
//! reads them. A string literal's own `%` (`strftime_now("%Y")`), text outside tags, comments
//! and `{% raw %}` blocks are never touched (a regex over the raw text had paired one
//! literal's closing quote with the next one's opening quote).

use minijinja::value::ValueKind;
use minijinja::{ErrorKind, Value};

/// The function the rewrite calls.
pub const FUNCTION: &str = "__percent_format";

/// `template` with every `LITERAL % OPERAND` inside `{{ }}` and `{% %}` made
/// `__percent_format(LITERAL, OPERAND, TUPLE)` (whether the operand is a tuple display). The operand is what Jinja2 binds to `%` (its
/// `parse_unary`): a literal, name, parenthesised tuple, list or dict, with attributes,
/// subscripts, calls and filters (`'%s' % x|upper` formats `x|upper`).
pub fn rewrite(template: &str) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut i = 0;
    while let Some(k) = template[i..].find('{') {
        let open = i + k;
        let kind = template.as_bytes().get(open + 1).copied();
        let close = match kind {
            Some(b'{') => "}}",
            Some(b'%') => "%}",
            Some(b'#') => "#}",
            _ => {
                out.push_str(&template[i..=open]);
                i = open + 1;
                continue;
            }
        };
        let body = open + 2;
        if kind == Some(b'#') {
            let end = template[body..]
                .find(close)
                .map_or(template.len(), |e| body + e + 2);
            out.push_str(&template[i..end]);
            i = end;
            continue;
        }
        let end = tag_end(template, body, close);
        out.push_str(&template[i..body]);
        let inner = &template[body..end];
        if kind == Some(b'%') && is_raw(inner) {
            // Everything up to the end of `{% endraw %}` as written.
            let stop = find_endraw(template, end).unwrap_or(template.len());
            out.push_str(&template[body..stop]);
            i = stop;
            continue;
        }
        out.push_str(&rewrite_expression(inner));
        i = end;
    }
    out.push_str(&template[i..]);
    out
}

/// Where the tag opened before `from` ends: the first `close` outside string literals and
/// dict braces (`{{ {'a': {'b': 1}} }}`), the template's length if none.
fn tag_end(t: &str, from: usize, close: &str) -> usize {
    let b = t.as_bytes();
    let (mut i, mut depth) = (from, 0usize);
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => i = string_end(b, i),
            // Bytes: `i` may sit inside a character written outside quotes.
            _ if depth == 0 && b[i..].starts_with(close.as_bytes()) => return i,
            c => {
                match c {
                    b'{' => depth += 1,
                    b'}' => depth = depth.saturating_sub(1),
                    _ => {}
                }
                i += 1;
            }
        }
    }
    b.len()
}

/// The index after the string literal opening at `i` (backslash escapes skipped).
fn string_end(b: &[u8], i: usize) -> usize {
    let q = b[i];
    let mut j = i + 1;
    while j < b.len() && b[j] != q {
        j += if b[j] == b'\\' { 2 } else { 1 };
    }
    (j + 1).min(b.len())
}

/// `{% raw %}` with its whitespace markers.
fn is_raw(inner: &str) -> bool {
    inner.trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace()) == "raw"
}

/// The index after the `{% endraw %}` tag at or after `from`.
fn find_endraw(t: &str, from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(k) = t[i..].find("{%") {
        let body = i + k + 2;
        let end = t[body..].find("%}")? + body;
        if t[body..end].trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace())
            == "endraw"
        {
            return Some(end + 2);
        }
        i = body;
    }
    None
}

/// One tag's inside with its `LITERAL % OPERAND` products rewritten (operands too).
fn rewrite_expression(e: &str) -> String {
    let b = e.as_bytes();
    let mut out = String::with_capacity(e.len());
    let (mut i, mut copied) = (0, 0);
    while i < b.len() {
        if b[i] != b'\'' && b[i] != b'"' {
            i += 1;
            continue;
        }
        let lit_end = string_end(b, i);
        let pct = skip_ws(b, lit_end);
        // `%` that is an operator: not `%}` (the tag's end is outside `e`) nor `%=`.
        if b.get(pct) == Some(&b'%') && b.get(pct + 1) != Some(&b'=') {
            let start = skip_ws(b, pct + 1);
            if let Some(end) = operand_end(b, start) {
                out.push_str(&e[copied..i]);
                // Python unpacks a tuple into the arguments, and takes anything else whole.
                let tuple = is_tuple(b, start, end);
                out.push_str(&format!(
                    "{FUNCTION}({}, {}, {tuple})",
                    python_literal(&e[i..lit_end]),
                    rewrite_expression(&e[start..end])
                ));
                i = end;
                copied = end;
                continue;
            }
        }
        out.push_str(&e[copied..i]);
        out.push_str(&python_literal(&e[i..lit_end]));
        copied = lit_end;
        i = lit_end;
    }
    out.push_str(&e[copied..]);
    out
}

/// A string literal (quotes included) with Python's escapes that minijinja reads otherwise
/// written as minijinja reads them: Jinja2 decodes literals with Python's `unicode-escape`, so
/// a backslash before a line break continues the line (Mistral Small 3.1's template builds its
/// system prompt so), `\a` and `\v` are control characters, `\U0001F600` a character, and
/// `\/` stays two characters (minijinja reads JSON's `\/`).
fn python_literal(lit: &str) -> std::borrow::Cow<'_, str> {
    let q = lit.chars().next().unwrap_or('"');
    if !lit.contains('\\') || lit.len() < 2 || !lit.ends_with(q) {
        return lit.into();
    }
    let mut out = String::with_capacity(lit.len());
    out.push(q);
    let mut chars = lit[1..lit.len() - 1].chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            None => out.push('\\'),
            Some('\n') => {}
            Some('a') => out.push_str("\\x07"),
            Some('v') => out.push_str("\\x0b"),
            Some('/') => out.push_str("\\\\/"),
            Some('U') => {
                let hex: String = chars.clone().take(8).collect();
                match u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 8)
                    .and_then(char::from_u32)
                {
                    Some(ch) => {
                        chars.nth(7);
                        if ch == q || ch == '\\' {
                            out.push('\\');
                        }
                        out.push(ch);
                    }
                    None => out.push_str("\\U"),
                }
            }
            Some(d) => {
                out.push('\\');
                out.push(d);
            }
        }
    }
    out.push(q);
    out.into()
}

/// Whether `b[start..end]` is a tuple display: `()`, or parentheses around a top-level comma.
fn is_tuple(b: &[u8], start: usize, end: usize) -> bool {
    if b.get(start) != Some(&b'(') || group_end(b, start) != Some(end) {
        return false;
    }
    let mut depth = 0usize;
    let mut j = start + 1;
    let mut empty = true;
    while j + 1 < end {
        match b[j] {
            b'\'' | b'"' => {
                j = string_end(b, j);
                empty = false;
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b',' if depth == 0 => return true,
            c if !c.is_ascii_whitespace() => empty = false,
            _ => {}
        }
        j += 1;
    }
    empty
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

fn is_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The index after the bracketed group opening at `i` (`(`, `[` or `{`), strings skipped.
fn group_end(b: &[u8], i: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut j = i;
    while j < b.len() {
        match b[j] {
            b'\'' | b'"' => {
                j = string_end(b, j);
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(j + 1);
                }
            }
            _ => {}
        }
        j += 1;
    }
    None
}

/// The index after the operand starting at `i`: a primary (literal, number, name, group),
/// then `.name`, `[...]`, `(...)` and `|filter(...)` as Jinja2's unary expression takes them.
/// None when no operand starts there.
fn operand_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = match *b.get(i)? {
        b'\'' | b'"' => string_end(b, i),
        b'(' | b'[' | b'{' => group_end(b, i)?,
        c if is_name_byte(c) => {
            let mut j = i;
            let number = b[i].is_ascii_digit();
            while j < b.len()
                && (is_name_byte(b[j])
                    || (number && b[j] == b'.')
                    // An exponent's sign: 1e-5.
                    || (number && matches!(b[j], b'+' | b'-') && matches!(b[j - 1], b'e' | b'E')))
            {
                j += 1;
            }
            j
        }
        _ => return None,
    };
    loop {
        match b.get(j) {
            Some(b'.') if b.get(j + 1).is_some_and(|&c| is_name_byte(c)) => {
                j += 1;
                while j < b.len() && is_name_byte(b[j]) {
                    j += 1;
                }
            }
            Some(b'[') | Some(b'(') => j = group_end(b, j)?,
            _ => {
                // Filters, with spaces around `|` as templates write them.
                let bar = skip_ws(b, j);
                if b.get(bar) != Some(&b'|') {
                    return Some(j);
                }
                let name = skip_ws(b, bar + 1);
                let mut k = name;
                while k < b.len() && is_name_byte(b[k]) {
                    k += 1;
                }
                if k == name {
                    return Some(j);
                }
                j = k;
            }
        }
    }
}

/// `fmt % args` as Python formats strings (printf style; the items of a tuple display, or
/// the one value otherwise, are the arguments; a list or dict argument is written as Python's
/// `str` writes it), and the remainder for numbers (Python's sign: that of the divisor).
pub fn percent_format(
    lhs: Value,
    rhs: Value,
    tuple: Option<bool>,
) -> Result<Value, minijinja::Error> {
    match lhs.as_str() {
        Some(fmt) => {
            let args: Vec<Value> = match tuple.unwrap_or(false) {
                true => rhs.try_iter()?.collect(),
                false => vec![rhs],
            };
            let args: Vec<Value> = (args.into_iter())
                .map(|a| match a.kind() {
                    ValueKind::Seq | ValueKind::Map => super::python::string(a),
                    _ => a,
                })
                .collect();
            minijinja::format_filter(minijinja::FormatStyle::Printf, fmt, &args).map(Value::from)
        }
        None => {
            let (a, b) = (f64::try_from(lhs)?, f64::try_from(rhs)?);
            if b == 0.0 {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    "modulo by zero",
                ));
            }
            let r = a - b * (a / b).floor();
            Ok(if r.fract() == 0.0 && r.abs() < i64::MAX as f64 {
                Value::from(r as i64)
            } else {
                Value::from(r)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn products_of_a_literal_are_calls() {
        for (t, want) in [
            (
                "{{ '%d of %s' % (a, b.c) }}",
                "{{ __percent_format('%d of %s', (a, b.c), true) }}",
            ),
            (
                "{{ \"%s!\" % name }}",
                "{{ __percent_format(\"%s!\", name, false) }}",
            ),
            (
                "{%- set x = 'Hi %s' % messages[0]['content'] -%}",
                "{%- set x = __percent_format('Hi %s', messages[0]['content'], false) -%}",
            ),
            // Filters bind to the operand, as in Jinja2.
            (
                "{{ '%s' % x | upper ~ '!' }}",
                "{{ __percent_format('%s', x | upper, false) ~ '!' }}",
            ),
            (
                "{{ 'a' + '%s%s' % ('%d' % 3, f(y)[0]) }}",
                "{{ 'a' + __percent_format('%s%s', (__percent_format('%d', 3, false), f(y)[0]), true) }}",
            ),
            ("{{ '%.2f' % 2.5 }}", "{{ __percent_format('%.2f', 2.5, false) }}"),
            ("{{ '%s' % 1e-5 }}", "{{ __percent_format('%s', 1e-5, false) }}"),
            ("{{ '%s' % [1, 2] }}", "{{ __percent_format('%s', [1, 2], false) }}"),
            ("{{ '%s' % (x) }}", "{{ __percent_format('%s', (x), false) }}"),
            ("{{ '%s' % (x,) }}", "{{ __percent_format('%s', (x,), true) }}"),
            // Python's escapes (a literal's line continuation, \a, \U, \/).
            (
                "{{ \"a\\\nb\\a\\U0001F600\\/\" ~ '\\U0000005c' }}",
                "{{ \"ab\\x07😀\\\\/\" ~ '\\\\' }}",
            ),
            (
                "{{ {'a': {'b': 1}} ~ ('%s' % 2) }}",
                "{{ {'a': {'b': 1}} ~ (__percent_format('%s', 2, false)) }}",
            ),
        ] {
            assert_eq!(rewrite(t), want, "{t}");
        }
    }

    #[test]
    fn what_is_not_string_formatting_stays() {
        for t in [
            // A literal's own `%`, twice in a tag and across tags (the regex had paired the
            // quotes between them).
            "{{ \"Date: \" }}{{ strftime_now(\"%Y\") }}",
            "{{ 'Today Date: ' + strftime_now('%d %b %Y') + ' ' + strftime_now(\"%H\") }}",
            "{{ '%s!' | format('x') }}",
            // Text outside tags, a comment, a raw block, number modulo, the tag's own end.
            "Say \"hi\" %s {{ x }} and 'b' % c",
            "{# '%s' % x #}{{ y }}",
            "{% raw %}{{ '%s' % x }}{% endraw %}{{ 'z' }}",
            "{%- raw -%}'%s' % x{%- endraw -%}",
            "{% if loop.index % 2 %}x{% endif %}",
            "{% set s = '100%' %}{{ s }}",
            "{{ 'a' %}",
            "{{ café ~ 'é' }}é{# é #}{% if ü %}ü{% endif %}",
            "{{ 'a\\nb\\\\' ~ \"\\d\" }} 'c\\\nd'",
        ] {
            assert_eq!(rewrite(t), t, "{t}");
        }
    }
}
