//! Chat templates rendered with minijinja the way transformers renders them with Jinja2:
//! `trim_blocks` + `lstrip_blocks`, `raise_exception`, a `tojson` that prints like Python's
//! `json.dumps`, and the Python string / dict methods that HF templates call.

use minijinja::value::{from_args, Kwargs, ValueKind};
use minijinja::{context, Environment, ErrorKind, State, Value};

use super::ChatMessage;
use crate::error::{Error, Result};

/// Renders `template` for `messages`.
pub(super) fn render(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    bos_token: Option<&str>,
    eos_token: Option<&str>,
) -> Result<String> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(py_method);
    env.add_filter("tojson", tojson);
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<Value, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        },
    );
    let fail = |e: minijinja::Error| {
        let mut msg = format!("chat template: {e}");
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        Error::invalid(msg)
    };
    env.add_template("chat_template", template).map_err(fail)?;
    let tmpl = env.get_template("chat_template").map_err(fail)?;
    tmpl.render(context! {
        messages => messages,
        add_generation_prompt => add_generation_prompt,
        bos_token => bos_token.unwrap_or(""),
        eos_token => eos_token.unwrap_or(""),
    })
    .map_err(fail)
}

fn unknown() -> minijinja::Error {
    minijinja::Error::from(ErrorKind::UnknownMethod)
}

/// Python `str` / `dict` methods that minijinja lacks (`.strip()`, `.startswith()`, `.items()`...).
fn py_method(
    _: &State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> std::result::Result<Value, minijinja::Error> {
    if let Some(s) = value.as_str() {
        return str_method(s, method, args);
    }
    if value.kind() != ValueKind::Map {
        return Err(unknown());
    }
    let pairs = || -> std::result::Result<Vec<(Value, Value)>, minijinja::Error> {
        value
            .try_iter()?
            .map(|k| Ok((k.clone(), value.get_item(&k)?)))
            .collect()
    };
    Ok(match method {
        "items" => {
            let _: () = from_args(args)?;
            pairs()?
                .into_iter()
                .map(|(k, v)| Value::from(vec![k, v]))
                .collect::<Vec<_>>()
                .into()
        }
        "keys" => {
            let _: () = from_args(args)?;
            pairs()?
                .into_iter()
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
                .into()
        }
        "values" => {
            let _: () = from_args(args)?;
            pairs()?
                .into_iter()
                .map(|(_, v)| v)
                .collect::<Vec<_>>()
                .into()
        }
        "get" => {
            let (key, default): (Value, Option<Value>) = from_args(args)?;
            match value.get_item(&key)? {
                v if v.is_undefined() => default.unwrap_or(Value::from(())),
                v => v,
            }
        }
        _ => return Err(unknown()),
    })
}

fn str_method(
    s: &str,
    method: &str,
    args: &[Value],
) -> std::result::Result<Value, minijinja::Error> {
    let strip = |chars: Option<String>, left: bool, right: bool| -> String {
        let f = |c: char| {
            chars
                .as_deref()
                .map_or(c.is_whitespace(), |set| set.contains(c))
        };
        let t = if left { s.trim_start_matches(f) } else { s };
        (if right { t.trim_end_matches(f) } else { t }).to_string()
    };
    // startswith / endswith take a string or a tuple of strings.
    let affixes = |v: &Value| -> Vec<String> {
        match v.as_str() {
            Some(x) => vec![x.to_string()],
            None => v
                .try_iter()
                .map(|it| it.map(|x| x.to_string()).collect())
                .unwrap_or_default(),
        }
    };
    Ok(match method {
        "strip" => strip(from_args::<(Option<String>,)>(args)?.0, true, true).into(),
        "lstrip" => strip(from_args::<(Option<String>,)>(args)?.0, true, false).into(),
        "rstrip" => strip(from_args::<(Option<String>,)>(args)?.0, false, true).into(),
        "startswith" => {
            let (p,): (Value,) = from_args(args)?;
            affixes(&p).iter().any(|x| s.starts_with(x.as_str())).into()
        }
        "endswith" => {
            let (p,): (Value,) = from_args(args)?;
            affixes(&p).iter().any(|x| s.ends_with(x.as_str())).into()
        }
        "split" => {
            let (sep, max): (Option<String>, Option<i64>) = from_args(args)?;
            let parts: Vec<Value> = match (sep, max) {
                (None, _) => s.split_whitespace().map(Value::from).collect(),
                (Some(sep), Some(m)) if m >= 0 => s
                    .splitn(m as usize + 1, sep.as_str())
                    .map(Value::from)
                    .collect(),
                (Some(sep), _) => s.split(sep.as_str()).map(Value::from).collect(),
            };
            parts.into()
        }
        "upper" => s.to_uppercase().into(),
        "lower" => s.to_lowercase().into(),
        "capitalize" => {
            let mut c = s.chars();
            c.next()
                .map_or(String::new(), |f| {
                    f.to_uppercase()
                        .chain(c.flat_map(char::to_lowercase))
                        .collect()
                })
                .into()
        }
        "title" => {
            let mut out = String::with_capacity(s.len());
            let mut prev_alpha = false;
            for c in s.chars() {
                if prev_alpha {
                    out.extend(c.to_lowercase());
                } else {
                    out.extend(c.to_uppercase());
                }
                prev_alpha = c.is_alphabetic();
            }
            out.into()
        }
        "replace" => {
            let (old, new, count): (String, String, Option<i64>) = from_args(args)?;
            match count {
                Some(n) if n >= 0 => s.replacen(old.as_str(), &new, n as usize),
                _ => s.replace(old.as_str(), &new),
            }
            .into()
        }
        "find" => {
            let (sub,): (String,) = from_args(args)?;
            s.find(sub.as_str())
                .map_or(-1, |b| s[..b].chars().count() as i64)
                .into()
        }
        "join" => {
            let (items,): (Value,) = from_args(args)?;
            items
                .try_iter()?
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(s)
                .into()
        }
        _ => return Err(unknown()),
    })
}

/// transformers' `tojson`: `json.dumps(x, ensure_ascii=False, indent=None, sort_keys=False)`,
/// i.e. `", "` / `": "` separators without indent, and no HTML escaping.
fn tojson(value: &Value, kwargs: Kwargs) -> std::result::Result<Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let sort: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_json(
        value,
        indent,
        0,
        ascii.unwrap_or(false),
        sort.unwrap_or(false),
        &mut out,
    )?;
    Ok(Value::from_safe_string(out))
}

fn write_json(
    v: &Value,
    indent: Option<usize>,
    level: usize,
    ascii: bool,
    sort: bool,
    out: &mut String,
) -> std::result::Result<(), minijinja::Error> {
    let newline = |out: &mut String, level: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * level));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => match (v.as_i64(), f64::try_from(v.clone())) {
            (Some(i), _) if v.is_integer() => out.push_str(&i.to_string()),
            (_, Ok(f)) => out.push_str(&py_float(f)),
            _ => out.push_str(&v.to_string()),
        },
        ValueKind::String => json_str(v.as_str().unwrap_or(""), ascii, out),
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if sort {
                keys.sort_by_key(|k| k.to_string());
            }
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                json_str(&k.to_string(), ascii, out);
                out.push_str(": ");
                write_json(&v.get_item(k)?, indent, level + 1, ascii, sort, out)?;
            }
            newline(out, level);
            out.push('}');
        }
        _ => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                write_json(x, indent, level + 1, ascii, sort, out)?;
            }
            newline(out, level);
            out.push(']');
        }
    }
    Ok(())
}

/// A JSON string literal escaped as Python's json module escapes it.
fn json_str(s: &str, ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ascii && !c.is_ascii()) => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: shortest round-trip digits, exponent form outside 1e-4..1e16.
fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(v: &[(&str, &str)]) -> Vec<ChatMessage> {
        v.iter()
            .map(|(r, c)| ChatMessage {
                role: r.to_string(),
                content: c.to_string(),
            })
            .collect()
    }

    #[test]
    fn python_methods_and_tojson() {
        let t =
            "{% for m in messages %}{{ m.content.strip().upper() }}|{{ m.content.split(',')[1] }}|\
                 {{ m.content.startswith((' x', ' a')) }}|{{ m | tojson }}{% endfor %}";
        let out = render(t, &msgs(&[("user", " a,b ")]), false, None, None).unwrap();
        assert_eq!(out, r#"A,B|b |True|{"role": "user", "content": " a,b "}"#);
    }

    #[test]
    fn tojson_indent_and_escapes() {
        let t = "{{ {'a': [1, 2.5, 1e-05, none], 'b': 'é\"\\n<'} | tojson(indent=2) }}";
        let out = render(t, &[], false, None, None).unwrap();
        assert_eq!(out, "{\n  \"a\": [\n    1,\n    2.5,\n    1e-05,\n    null\n  ],\n  \"b\": \"é\\\"\\n<\"\n}");
    }

    #[test]
    fn raise_exception_is_an_error() {
        let t = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first must be user') }}{% endif %}ok";
        let e = render(t, &msgs(&[("assistant", "x")]), false, None, None).unwrap_err();
        assert!(e.to_string().contains("first must be user"), "{e}");
        assert_eq!(
            render(t, &msgs(&[("user", "x")]), false, None, None).unwrap(),
            "ok"
        );
    }

    #[test]
    fn blocks_are_trimmed_like_transformers() {
        let t = "{{ bos_token }}\n{% for m in messages %}\n  {% if m.role == 'user' %}\n[{{ m.content }}]\n  {% endif %}\n{% endfor %}";
        let out = render(t, &msgs(&[("user", "hi")]), true, Some("<s>"), None).unwrap();
        assert_eq!(out, "<s>\n[hi]\n");
    }

    #[test]
    fn python_float_repr() {
        assert_eq!(py_float(1.0), "1.0");
        assert_eq!(py_float(0.1), "0.1");
        assert_eq!(py_float(1e-5), "1e-05");
        assert_eq!(py_float(1e16), "1e+16");
        assert_eq!(py_float(123456.75), "123456.75");
    }
}
