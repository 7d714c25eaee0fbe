//! A request body: its bytes, or why they could not be read; read as JSON, one object,
//! nothing after it, no key twice, and the field at fault named in every error.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;

use super::error::{ApiError, CLIENT_CLOSED};

/// The body, or the reason it could not be read (413 past the size limit) as an OpenAI error.
/// A client that closed its connection partway through the body gets 499 (nginx's "client
/// closed request"; nobody reads it, but the request counts say what happened).
pub(super) fn bytes(b: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    b.map_err(|r| {
        let (status, why) = match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => (
                r.status(),
                "it grew past the size limit (--max-body-mib)".into(),
            ),
            _ if client_left(&r) => (
                CLIENT_CLOSED,
                "the client closed the connection before the whole body arrived".into(),
            ),
            s => (s, r.body_text()),
        };
        ApiError::status(status, format!("the request body could not be read: {why}"))
    })
}

/// Whether a body read failed because the connection ended, not because the body was
/// malformed (a bad chunk size is `InvalidData`/`InvalidInput`: the client's fault, a 400).
/// hyper reports a `Content-Length` or chunked body cut short by the client as an
/// `UnexpectedEof` I/O error, and a connection it dropped mid-body as an incomplete message.
/// A failed write while the body is unread (a `100 Continue` to a client that reset) carries
/// no I/O error and stays a 400.
pub(super) fn client_left(r: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind as K;
    let mut e = Some(r);
    while let Some(err) = e {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe
            );
        }
        if err
            .downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_incomplete_message() || h.is_closed() || h.is_canceled())
        {
            return true;
        }
        e = err.source();
    }
    false
}

/// The first field of object `o` not in `known`, null ones counting as absent (SDKs write
/// every field of an object back, unset ones as null); `None` for a value not an object.
pub(super) fn unknown_field<'a>(o: &'a serde_json::Value, known: &[&str]) -> Option<&'a str> {
    (o.as_object().into_iter().flatten())
        .find(|(k, v)| !v.is_null() && !known.contains(&k.as_str()))
        .map(|(k, _)| k.as_str())
}

/// ` (did you mean `K`?)` for the known field `K` most like a misspelt `field`, else "".
pub(super) fn did_you_mean<S: AsRef<str>>(field: &str, known: &[S]) -> String {
    crate::mix_args::closest_name(field, known)
        .map_or(String::new(), |n| format!(" (did you mean `{n}`?)"))
}

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
        let mut msg = integer_ranges(inner.to_string());
        let unknown = msg
            .strip_prefix("unknown field `")
            .and_then(|m| m.split('`').next())
            .map(str::to_string);
        // serde lists the expected fields: the closest one to a misspelt field, first.
        if let Some(u) = &unknown {
            let expected: Vec<&str> = msg.split('`').skip(3).step_by(2).collect();
            let near = did_you_mean(u, &expected);
            let at = format!("unknown field `{u}`");
            msg = msg.replacen(&at, &format!("{at}{near}"), 1);
        }
        // A syntax error has no field (serde_path_to_error writes `?` where it stopped).
        // A number past f64 (`1e999`) is a syntax error to serde_json, but one of a field.
        let out_of_range = msg.starts_with("number out of range");
        let syntax = (inner.is_syntax() || inner.is_eof()) && !out_of_range;
        let known = path != "." && !path.is_empty() && !syntax;
        // Where a syntax error stopped, as far as the fields go (`messages[1].content`), helps
        // find it in a long body; `?` stands for a key not yet read.
        let inside = match path.trim_end_matches(".?") {
            "" | "." | "?" => String::new(),
            p => format!(" (inside `{p}`)"),
        };
        // An unknown field inside an object field is named by its whole path.
        let param = match (unknown, known) {
            (Some(u), true) if path != u && !path.ends_with(&format!(".{u}")) => {
                Some(format!("{path}.{u}"))
            }
            (Some(_), true) | (None, true) => Some(path),
            (u, false) => u,
        };
        let what = if syntax {
            format!("the request body is not valid JSON: {msg}{inside}")
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
    let msg = match found {
        Some((at, len, words)) => format!("{}{words}{}", &msg[..at], &msg[at + len..]),
        None => msg,
    };
    whole_float_as_range(msg)
}

/// serde_json reads an integer past 64 bits (`18446744073709551616`) as an f64, and calls it
/// "invalid type: floating point `1.8446744073709552e+19`"; the client sent an integer, too
/// large: said so.
fn whole_float_as_range(msg: String) -> String {
    const FLOAT: &str = "invalid type: floating point `";
    let Some(rest) = msg.strip_prefix(FLOAT) else {
        return msg;
    };
    let Some((v, after)) = rest.split_once('`') else {
        return msg;
    };
    match v.parse::<f64>() {
        // What serde_json reads as an f64 only because no 64-bit integer holds it.
        Ok(x) if !(-9_223_372_036_854_775_808.0..18_446_744_073_709_551_616.0).contains(&x) => {
            format!("an integer past 64 bits (about {v}) is out of range{after}")
        }
        _ => msg,
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::extract::{FromRequest, Request};

    use super::*;

    /// The body's read, failed with `kind` after a first piece.
    fn read_failing(kind: std::io::ErrorKind) -> Result<Bytes, ApiError> {
        let pieces = futures_util::stream::iter([
            Ok(Bytes::from_static(b"{\"model\": ")),
            Err(std::io::Error::new(kind, "the read failed")),
        ]);
        let req = Request::new(Body::from_stream(pieces));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        bytes(rt.block_on(Bytes::from_request(req, &())))
    }

    /// A body cut short by its client is 499; one the client got wrong (a bad chunk) is 400.
    #[test]
    fn a_body_cut_short_is_499_and_a_malformed_one_400() {
        let e = read_failing(std::io::ErrorKind::UnexpectedEof).unwrap_err();
        assert_eq!(e.status, CLIENT_CLOSED, "{e}");
        assert!(e.message.contains("closed the connection"), "{e}");
        let e = read_failing(std::io::ErrorKind::InvalidData).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST, "{e}");
    }

    /// serde_json reads an integer past 64 bits as an f64: said to be out of range; a float
    /// where an integer belongs (1.5, 9.5e18) stays "floating point".
    #[test]
    fn an_integer_past_64_bits_is_out_of_range() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Seed {
            seed: i64,
        }
        let e = parse::<Seed>(br#"{"seed": 18446744073709551616}"#).unwrap_err();
        let said = e.to_string();
        assert!(said.contains("an integer past 64 bits (about 1.8446744073709552e+19) is out of range, expected an integer from -2^63 to 2^63-1"), "{said}");
        for float in ["1.5", "9.5e18"] {
            let body = format!(r#"{{"seed": {float}}}"#);
            let e = parse::<Seed>(body.as_bytes()).unwrap_err();
            assert!(e.to_string().contains("floating point `"), "{e}");
        }
    }

    /// A syntax error names the field it stopped in, never serde_path_to_error's `?` for a key
    /// not yet read.
    #[test]
    fn a_syntax_error_names_where_it_stopped() {
        let msg = |body: &str| {
            let e = parse::<serde_json::Value>(body.as_bytes()).unwrap_err();
            assert_eq!(
                (e.status, e.param.as_deref()),
                (StatusCode::BAD_REQUEST, None)
            );
            e.message
        };
        let m = msg(r#"{"model": "m", "messages": [{"role": "user", "content": "hi}]}"#);
        assert!(m.ends_with("(inside `messages[0].content`)"), "{m}");
        let m = msg(r#"{"model": "m", "messages": [{"role": "user" "content": "hi"}]}"#);
        assert!(!m.contains('?'), "{m}");
        let m = msg(r#"{"model": "m" "n": 1}"#);
        assert!(!m.contains("inside"), "{m}");
        // A number past f64 is a field's error: named as the param.
        let e = parse::<serde_json::Value>(br#"{"lora_mixture": {"a": 1e999}}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("lora_mixture.a"), "{e}");
        assert!(e.message.contains("number out of range"), "{e}");
    }
}
