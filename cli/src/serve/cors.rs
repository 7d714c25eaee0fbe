//! Cross-origin requests (CORS) for clients in a web browser: `serve --allowed-origins`.
//!
//! A page may read the API's answers from a browser only when they name its origin in
//! `Access-Control-Allow-Origin`, and a JSON `POST` (or one with `Authorization`) is sent only
//! after the browser's preflight `OPTIONS` is answered (Fetch standard, "CORS protocol").
//! Off by default: with `*`, every page the user opens could use the server, and with
//! `--allow-runtime-adapters` load adapters (vLLM's and llama.cpp's servers allow `*` by
//! default; Ollama allows its own host's origins).

use std::time::Duration;

use anyhow::{bail, Result};
use axum::http::{header, HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

/// The origins `--allowed-origins` lets read the answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Origins {
    /// `*`: any page.
    Any,
    /// Serialized origins (`http://localhost:3000`, lowercase scheme and host as browsers
    /// send them; `null` for `file://` pages and sandboxed frames).
    List(Vec<String>),
}

/// The origins of `--allowed-origins` values: each a comma-separated list (or vLLM's JSON
/// list, `["http://a", "http://b"]`). None when no value is given.
///
/// Errors name the value and say what an origin is: a path or trailing `/` (which a browser
/// never sends, so the origin would never match), a scheme other than http(s), `*` beside
/// other origins, an empty list.
pub fn parse(values: &[String]) -> Result<Option<Origins>> {
    if values.is_empty() {
        return Ok(None);
    }
    let mut list = Vec::new();
    for v in values {
        let items: Vec<String> = if v.trim_start().starts_with('[') {
            match serde_json::from_str::<Vec<String>>(v) {
                Ok(items) => items,
                Err(e) => bail!("--allowed-origins {v}: not a JSON list of strings ({e})"),
            }
        } else {
            v.split(',').map(|s| s.trim().to_string()).collect()
        };
        for item in items {
            if item.is_empty() {
                bail!("--allowed-origins {v:?}: an empty origin (give `scheme://host[:port]`, e.g. http://localhost:3000, or `*`)");
            }
            list.push(normalise(&item).map_err(|why| {
                anyhow::anyhow!("--allowed-origins: `{item}` is not an origin: {why}")
            })?);
        }
    }
    if list.is_empty() {
        bail!("--allowed-origins: an empty list (give `scheme://host[:port]` origins, or `*`)");
    }
    if list.iter().any(|o| o == "*") {
        if list.len() > 1 {
            bail!(
                "--allowed-origins: `*` (any origin) beside other origins; give one or the other"
            );
        }
        return Ok(Some(Origins::Any));
    }
    list.sort();
    list.dedup();
    Ok(Some(Origins::List(list)))
}

/// An origin as a browser's `Origin` header writes it (RFC 6454, section 6.2): `*` and
/// `null` as given, else `scheme://host[:port]` with scheme and host lowercased.
fn normalise(item: &str) -> Result<String, String> {
    if item == "*" || item == "null" {
        return Ok(item.to_string());
    }
    let Some((scheme, rest)) = item.split_once("://") else {
        return Err("expected `scheme://host[:port]`, e.g. http://localhost:3000".into());
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "the scheme is `{scheme}`; browsers send http or https origins (a file:// page's origin is `null`)"
        ));
    }
    if let Some(i) = rest.find(['/', '?', '#']) {
        return Err(format!(
            "it has a path (`{}`): an origin ends after the host and port, as a browser's Origin header (`{scheme}://{}`)",
            &rest[i..],
            &rest[..i]
        ));
    }
    if rest.is_empty() || rest.contains(['@', ' ', '*']) || !rest.is_ascii() {
        return Err(
            "the host must be a name, an IPv4 address or a [bracketed] IPv6 one, with an optional :port (internationalised names in their xn-- form)".into(),
        );
    }
    let (host, port) = match rest.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, after)) => (
                addr,
                after
                    .strip_prefix(':')
                    .or((!after.is_empty()).then_some(after)),
            ),
            None => return Err("an IPv6 host's `[` has no `]`".into()),
        },
        None if rest.matches(':').count() > 1 => {
            return Err("an IPv6 host must be in brackets: http://[::1]:8080".into())
        }
        None => match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        },
    };
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    let host = host.to_ascii_lowercase();
    let port = match port {
        None => None,
        // As a browser serializes it: digits, no leading zero, the scheme's default left out.
        Some(p) => {
            let digits = !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
            match p.parse::<u16>() {
                Ok(n) if digits && n.to_string() == p => Some(n),
                _ => {
                    return Err(format!(
                        "the port `{p}` is not a number from 0 to 65535 without leading zeros"
                    ))
                }
            }
        }
    };
    let default = if scheme == "http" { 80 } else { 443 };
    let v6 = |h: String| {
        if rest.starts_with('[') {
            format!("[{h}]")
        } else {
            h
        }
    };
    Ok(match port {
        Some(p) if p != default => format!("{scheme}://{}:{p}", v6(host)),
        _ => format!("{scheme}://{}", v6(host)),
    })
}

/// The layer answering preflights and marking answers for `origins`: GET and POST, any
/// request header the preflight asks for (the OpenAI SDKs send `x-stainless-*` ones),
/// `x-request-id` and `retry-after` readable by the page, preflights cached 10 minutes.
/// No credentials mode: an API key travels in `Authorization`, which needs none.
pub fn layer(origins: &Origins) -> CorsLayer {
    let allow = match origins {
        Origins::Any => AllowOrigin::any(),
        Origins::List(list) => AllowOrigin::list(
            list.iter()
                .map(|o| HeaderValue::from_str(o).expect("checked by normalise: visible ASCII")),
        ),
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([HeaderName::from_static("x-request-id"), header::RETRY_AFTER])
        .max_age(Duration::from_secs(600))
}

/// The startup banner's line.
pub fn describe(origins: &Origins) -> String {
    match origins {
        Origins::Any => "CORS: any origin may call this server from a browser".to_string(),
        Origins::List(l) => format!(
            "CORS: browser pages from {} may call this server",
            l.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: &str) -> Result<Option<Origins>> {
        parse(&[v.to_string()])
    }

    #[test]
    fn origins_are_read_as_browsers_write_them() {
        assert_eq!(parse(&[]).unwrap(), None);
        assert_eq!(one("*").unwrap(), Some(Origins::Any));
        let list = |v: &[&str]| Some(Origins::List(v.iter().map(|s| s.to_string()).collect()));
        assert_eq!(
            one("HTTP://LocalHost:3000, https://a.example").unwrap(),
            list(&["http://localhost:3000", "https://a.example"])
        );
        assert_eq!(
            parse(&[
                r#"["http://[::1]:8080", "null"]"#.into(),
                "https://a.example".into()
            ])
            .unwrap(),
            list(&["http://[::1]:8080", "https://a.example", "null"])
        );
        // Repeated origins are kept once; a scheme's default port is left out, as browsers do.
        assert_eq!(
            one("http://x,http://X,http://x:80").unwrap(),
            list(&["http://x"])
        );
        assert_eq!(
            one("https://a:443,http://a:443,http://[::1]:80").unwrap(),
            list(&["http://[::1]", "http://a:443", "https://a"])
        );
    }

    #[test]
    fn what_no_browser_sends_is_refused_with_the_reason() {
        for (v, says) in [
            ("http://localhost:3000/", "has a path (`/`)"),
            ("https://a.example/app?x", "has a path (`/app?x`)"),
            ("localhost:3000", "expected `scheme://host[:port]`"),
            ("ftp://a.example", "the scheme is `ftp`"),
            ("http://a.example:99999", "the port `99999`"),
            ("http://a.example:03000", "without leading zeros"),
            ("http://a.example:+3000", "the port `+3000`"),
            ("[]", "an empty list"),
            ("http://::1", "must be in brackets"),
            ("http://user@a.example", "the host must be"),
            ("http://*.example.com", "the host must be"),
            (
                "*,http://a.example",
                "`*` (any origin) beside other origins",
            ),
            ("http://a,,http://b", "an empty origin"),
            ("[\"http://a\", 3]", "not a JSON list of strings"),
        ] {
            let e = one(v).unwrap_err().to_string();
            assert!(e.contains(says), "{v}: {e}");
            assert!(e.contains("--allowed-origins"), "{v}: {e}");
        }
    }
}
