//! Python's string and list methods that minijinja-contrib's `pycompat` lacks or answers
//! otherwise, as chat templates call them: `find`/`rfind`/`index`/`rindex` count characters
//! (pycompat counts bytes, so `s[:s.find(x)]` cut non-ASCII text in the wrong place) and take
//! `start`/`end`; `rsplit`, `partition`, `rpartition`, `removeprefix`, `removesuffix`,
//! `swapcase`, `center`, `ljust`, `rjust`, `zfill`; a list's `index`. Everything else goes to
//! pycompat.

use minijinja::value::{from_args, ValueKind};
use minijinja::{Error, ErrorKind, State, Value};

/// minijinja's unknown-method callback: the methods above, then pycompat's.
pub fn unknown_method(
    state: &State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    if let Some(s) = value.as_str().filter(|_| value.kind() == ValueKind::String) {
        if let Some(v) = string_method(s, method, args)? {
            return Ok(v);
        }
    }
    if value.kind() == ValueKind::Seq && method == "index" {
        let (x,): (Value,) = from_args(args)?;
        return match value.try_iter()?.position(|v| v == x) {
            Some(i) => Ok(Value::from(i)),
            None => Err(value_error(format!("{x} is not in list"))),
        };
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

fn value_error(msg: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg)
}

/// A Python slice bound (negative from the end, clamped) over `len` characters.
fn bound(i: Option<i64>, len: usize, default: usize) -> usize {
    match i {
        None => default,
        Some(i) if i < 0 => len.saturating_sub(i.unsigned_abs() as usize),
        Some(i) => (i as usize).min(len),
    }
}

/// The byte offset of character `c` in `s` (its length past the end).
fn byte_at(s: &str, c: usize) -> usize {
    s.char_indices().nth(c).map_or(s.len(), |(b, _)| b)
}

/// `s.find(sub, start, end)` (or `rfind` with `last`) in characters; None when absent.
fn find(s: &str, args: &[Value], last: bool) -> Result<Option<usize>, Error> {
    let (sub, start, end): (&str, Option<i64>, Option<i64>) = from_args(args)?;
    let len = s.chars().count();
    let (a, b) = (bound(start, len, 0), bound(end, len, len));
    if a > b {
        return Ok(None);
    }
    let window = &s[byte_at(s, a)..byte_at(s, b)];
    let at = if last {
        window.rfind(sub)
    } else {
        window.find(sub)
    };
    Ok(at.map(|byte| a + window[..byte].chars().count()))
}

/// `width` from `(width, fill)` arguments, and the fill character.
fn width_fill(args: &[Value], method: &str) -> Result<(usize, char), Error> {
    let (width, fill): (i64, Option<&str>) = from_args(args)?;
    let fill = match fill.map(|f| (f.chars().next(), f.chars().count())) {
        None => ' ',
        Some((Some(c), 1)) => c,
        Some(_) => {
            return Err(value_error(format!(
                "{method}: the fill character must be exactly one character long"
            )))
        }
    };
    Ok((width.max(0) as usize, fill))
}

/// The result of string method `method`, None when it is not one of this module's.
fn string_method(s: &str, method: &str, args: &[Value]) -> Result<Option<Value>, Error> {
    let len = s.chars().count();
    let pad = |n: usize, c: char| c.to_string().repeat(n);
    Ok(Some(match method {
        "find" | "rfind" => {
            let at = find(s, args, method == "rfind")?;
            Value::from(at.map_or(-1, |i| i as i64))
        }
        "index" | "rindex" => match find(s, args, method == "rindex")? {
            Some(i) => Value::from(i),
            None => return Err(value_error("substring not found".into())),
        },
        "rsplit" => {
            let (sep, maxsplit): (Option<&str>, Option<i64>) = from_args(args)?;
            Value::from(rsplit(s, sep, maxsplit.unwrap_or(-1))?)
        }
        "partition" | "rpartition" => {
            let (sep,): (&str,) = from_args(args)?;
            if sep.is_empty() {
                return Err(value_error("empty separator".into()));
            }
            let at = if method == "partition" {
                s.find(sep)
            } else {
                s.rfind(sep)
            };
            let parts: [&str; 3] = match at {
                Some(i) => [&s[..i], sep, &s[i + sep.len()..]],
                None if method == "partition" => [s, "", ""],
                None => ["", "", s],
            };
            Value::from(parts.map(String::from).to_vec())
        }
        "removeprefix" => {
            let (p,): (&str,) = from_args(args)?;
            Value::from(s.strip_prefix(p).unwrap_or(s))
        }
        "removesuffix" => {
            let (p,): (&str,) = from_args(args)?;
            Value::from(s.strip_suffix(p).unwrap_or(s))
        }
        "swapcase" => {
            let () = from_args(args)?;
            let swapped: String = s
                .chars()
                .flat_map(|c| {
                    let v: Vec<char> = if c.is_uppercase() {
                        c.to_lowercase().collect()
                    } else if c.is_lowercase() {
                        c.to_uppercase().collect()
                    } else {
                        vec![c]
                    };
                    v
                })
                .collect();
            Value::from(swapped)
        }
        "center" | "ljust" | "rjust" => {
            let (width, fill) = width_fill(args, method)?;
            let marg = width.saturating_sub(len);
            // CPython's pad.c: the odd character goes left when the width is odd.
            let left = match method {
                "ljust" => 0,
                "rjust" => marg,
                _ => marg / 2 + (marg & width & 1),
            };
            Value::from(format!("{}{s}{}", pad(left, fill), pad(marg - left, fill)))
        }
        "zfill" => {
            let (width,): (i64,) = from_args(args)?;
            let marg = (width.max(0) as usize).saturating_sub(len);
            let sign = s.starts_with(['+', '-']) as usize;
            Value::from(format!("{}{}{}", &s[..sign], pad(marg, '0'), &s[sign..]))
        }
        _ => return Ok(None),
    }))
}

/// Python's `str.rsplit(sep, maxsplit)`: from the right, at most `maxsplit` cuts (all when
/// negative); without `sep` on runs of whitespace, the unsplit rest keeping its leading
/// whitespace.
fn rsplit(s: &str, sep: Option<&str>, maxsplit: i64) -> Result<Vec<String>, Error> {
    let max = if maxsplit < 0 {
        usize::MAX
    } else {
        maxsplit as usize
    };
    let mut out: Vec<String> = Vec::new();
    match sep {
        Some("") => return Err(value_error("empty separator".into())),
        Some(sep) => {
            let mut rest = s;
            while out.len() < max {
                let Some(i) = rest.rfind(sep) else { break };
                out.push(rest[i + sep.len()..].to_string());
                rest = &rest[..i];
            }
            out.push(rest.to_string());
        }
        None => {
            let mut rest = s.trim_end();
            while !rest.is_empty() && out.len() < max {
                match rest.rfind(char::is_whitespace) {
                    Some(i) => {
                        let ws = rest[i..].chars().next().map_or(1, char::len_utf8);
                        out.push(rest[i + ws..].to_string());
                        rest = rest[..i].trim_end();
                    }
                    None => break,
                }
            }
            if !rest.is_empty() {
                out.push(rest.to_string());
            }
        }
    }
    out.reverse();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::rsplit;

    #[test]
    fn rsplit_as_python() {
        let r = |s, sep, n| rsplit(s, sep, n).unwrap();
        assert_eq!(r("a,b,,c", Some(","), -1), ["a", "b", "", "c"]);
        assert_eq!(r("a,b,c", Some(","), 1), ["a,b", "c"]);
        assert_eq!(r("  a b  c ", None, 1), ["  a b", "c"]);
        assert_eq!(r("  a b  c ", None, -1), ["a", "b", "c"]);
        assert_eq!(r("   ", None, -1), Vec::<String>::new());
        assert_eq!(r("a", Some(","), 0), ["a"]);
    }
}
