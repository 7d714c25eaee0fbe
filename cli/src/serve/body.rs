//! A request body read as JSON: one object, nothing after it, no key twice, and the field at
//! fault named in every error.

use super::error::ApiError;

/// Parses a JSON object into `T`, naming the field at fault when a value has the wrong type.
/// Only an object, and nothing after it: serde would read an array's elements as the fields in
/// order, and stop at the end of the first value.
pub(super) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // A gzip stream (magic 1F 8B) sent without its Content-Encoding header.
    if body.starts_with(&[0x1F, 0x8B]) {
        return Err(ApiError::bad(
            "the request body is gzip-compressed; send the JSON object uncompressed (this server takes no Content-Encoding)",
        ));
    }
    // RFC 8259 §8.1: JSON between systems is UTF-8. UTF-16 or UTF-32 shows as a byte order
    // mark or as NUL bytes beside the ASCII of `{` (`7B 00` in UTF-16LE).
    if body.starts_with(b"\xFE\xFF")
        || body.starts_with(b"\xFF\xFE")
        || body[..body.len().min(4)].contains(&0)
    {
        return Err(ApiError::bad(
            "the request body is not UTF-8 text (a UTF-16 byte order mark, or NUL bytes at its start: UTF-16 or UTF-32?); send the JSON object encoded as UTF-8",
        ));
    }
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => {
            return Err(ApiError::bad(
                "the request body is empty; expected a JSON object",
            ))
        }
        Some(b'{') => {}
        Some(_) if body.starts_with(b"\xEF\xBB\xBF") => {
            return Err(ApiError::bad(
                "the request body starts with a UTF-8 byte order mark (EF BB BF); send the JSON object without it",
            ))
        }
        Some(_) => {
            return Err(ApiError::bad(
                "the request body must be a JSON object ({\"model\": ..., ...})",
            ))
        }
    }
    if let Some(path) = crate::json_keys::duplicate_key(body) {
        return Err(ApiError::bad_param(
            &path,
            format!("invalid request field `{path}`: duplicate field (a key may appear once per object)"),
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = integer_ranges(inner.to_string());
        let unknown = msg
            .strip_prefix("unknown field `")
            .and_then(|m| m.split('`').next())
            .map(str::to_string);
        // A syntax error has no field (serde_path_to_error writes `?` where it stopped).
        let syntax = inner.is_syntax() || inner.is_eof();
        let known = path != "." && !path.is_empty() && !syntax;
        // An unknown field inside an object field is named by its whole path.
        let param = match (unknown, known) {
            (Some(u), true) if path != u && !path.ends_with(&format!(".{u}")) => {
                Some(format!("{path}.{u}"))
            }
            (Some(_), true) | (None, true) => Some(path),
            (u, false) => u,
        };
        let what = if syntax {
            format!("the request body is not valid JSON: {msg}")
        } else {
            match &param {
                Some(p) => format!("invalid request field `{p}`: {msg}"),
                None => format!("invalid request: {msg}"),
            }
        };
        let e = ApiError::bad(what);
        match param {
            Some(p) => e.param(p),
            None => e,
        }
    })?;
    de.end().map_err(|e| {
        ApiError::bad(format!(
            "the request body is not valid JSON: {e} (after the object)"
        ))
    })?;
    Ok(value)
}

/// serde's names of integer types (`expected u32`) in words a client reads: the range.
fn integer_ranges(msg: String) -> String {
    const RANGES: [(&str, &str); 6] = [
        ("expected i64", "expected an integer from -2^63 to 2^63-1"),
        ("expected u64", "expected an integer from 0 to 2^64-1"),
        ("expected u32", "expected an integer from 0 to 4294967295"),
        (
            "expected i32",
            "expected an integer from -2147483648 to 2147483647",
        ),
        ("expected usize", "expected an integer from 0 to 2^64-1"),
        ("expected u16", "expected an integer from 0 to 65535"),
    ];
    // The message goes on with the place (` at line 1 column 9`) or ends there.
    let ends_at = |at: usize| msg[at..].is_empty() || msg[at..].starts_with(' ');
    let found = RANGES.iter().find_map(|&(serde, words)| {
        let at = msg.find(serde)?;
        ends_at(at + serde.len()).then_some((at, serde.len(), words))
    });
    match found {
        Some((at, len, words)) => format!("{}{words}{}", &msg[..at], &msg[at + len..]),
        None => msg,
    }
}
