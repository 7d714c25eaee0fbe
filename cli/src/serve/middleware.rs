//! The layers every request passes: the request id, the API key, the body's encoding, the
//! request count; and the answers to paths and methods no route takes.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::http::AppState;

/// The longest client `X-Request-Id` kept (longer ones are replaced by a new id).
const MAX_REQUEST_ID: usize = 128;

/// OpenAI's `x-request-id` on every answer (the OpenAI SDK shows it as `_request_id`): the
/// client's own `X-Request-Id` when it sent a usable one (1 to 128 visible ASCII characters),
/// else a new `req_` and 32 hex digits; and the access log's line, which names it.
pub(super) async fn request_id(req: Request, next: Next) -> Response {
    let given = (req.headers().get("x-request-id"))
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=MAX_REQUEST_ID).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic())
        });
    let id = match given {
        Some(v) => v.to_string(),
        None => format!("req_{:032x}", rand::random::<u128>()),
    };
    let mut line = AccessLine {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        t0: Instant::now(),
        status: None,
        id,
    };
    let mut resp = next.run(req).await;
    line.status = Some(resp.status().as_u16());
    if let Ok(v) = header::HeaderValue::from_str(&line.id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// The access log's line of a request (`serve -v`, or RUST_LOG=dlp_run::access=info), as
/// vLLM's server writes one per answer, with the id the client sees; a stream's time is to
/// its headers. Written when dropped: a client that left before its answer (the handler
/// dropped) gets its line too, as 499, the status it is counted under.
struct AccessLine {
    method: String,
    path: String,
    t0: Instant,
    status: Option<u16>,
    id: String,
}

impl Drop for AccessLine {
    fn drop(&mut self) {
        let status = self.status.unwrap_or(super::error::CLIENT_CLOSED.as_u16());
        tracing::info!(
            target: "dlp_run::access",
            request_id = %self.id,
            "{} {} {status} in {:.1} ms",
            self.method,
            self.path,
            self.t0.elapsed().as_secs_f64() * 1e3
        );
    }
}

/// A compressed body (`Content-Encoding: gzip`) is refused with 415 naming the header: it
/// had been read as JSON ("must be a JSON object"), and a plain body labelled gzip was read
/// as plain.
pub(super) async fn identity_only(req: Request, next: Next) -> Response {
    if let Some(v) = req.headers().get(header::CONTENT_ENCODING) {
        let e = String::from_utf8_lossy(v.as_bytes()).trim().to_string();
        if !e.is_empty() && !e.eq_ignore_ascii_case("identity") {
            return ApiError::status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Encoding `{e}` is not supported: send the body uncompressed"),
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// A POST body must be labelled JSON (`application/json` or `application/*+json`), else 415
/// naming the header, as vLLM's FastAPI refuses it: a web page may send a cross-site POST
/// without asking the server first (a CORS "simple request") only as `text/plain`, a form or
/// no type at all, so this keeps pages of other sites from running requests on a local
/// server (loading adapters, spending its compute) whatever `--allowed-origins` says.
pub(super) async fn json_only(req: Request, next: Next) -> Response {
    if req.method() != axum::http::Method::POST {
        return next.run(req).await;
    }
    let given = req.headers().get(header::CONTENT_TYPE);
    let essence = given.and_then(|v| v.to_str().ok()).map(|v| {
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    let json = essence.as_deref().is_some_and(|e| {
        e == "application/json" || (e.starts_with("application/") && e.ends_with("+json"))
    });
    if !json {
        let got = match given {
            None => "none".to_string(),
            Some(v) => format!("`{}`", String::from_utf8_lossy(v.as_bytes())),
        };
        return ApiError::status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type must be application/json (got {got}): with curl, add -H 'Content-Type: application/json'"),
        )
        .into_response();
    }
    next.run(req).await
}

/// Every route but `/health` needs `Authorization: Bearer KEY` when a key is set.
pub(super) async fn auth(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(key) = &st.api_key {
        if req.uri().path() != "/health" {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(bearer_token);
            match given {
                Some(g) if constant_time_eq(g.as_bytes(), key.as_bytes()) => {}
                Some(_) => return ApiError::unauthorized("incorrect API key").into_response(),
                None => {
                    return ApiError::unauthorized(
                        "this server needs an API key: send `Authorization: Bearer KEY`",
                    )
                    .into_response()
                }
            }
        }
    }
    next.run(req).await
}

/// The credentials of a `Bearer` authorization value; the scheme name is case-insensitive
/// (RFC 9110, section 11.1), one or more spaces follow it.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

/// Compares without an early exit, so timing says nothing about where a guess went wrong.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Counts every answer by route and status.
pub(super) async fn count(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("other".to_string(), |p| p.as_str().to_string());
    let mut pending = Unanswered {
        st,
        endpoint: Some(endpoint),
    };
    let resp = next.run(req).await;
    if let Some(endpoint) = pending.endpoint.take() {
        pending
            .st
            .shared
            .metrics
            .request(&endpoint, resp.status().as_u16());
    }
    resp
}

/// A request not yet answered. A client that disconnects first drops the handler, and with it
/// this: the request counts as 499 (nginx's "client closed request"), so that the counts add
/// up to the requests received.
struct Unanswered {
    st: Arc<AppState>,
    endpoint: Option<String>,
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(endpoint) = self.endpoint.take() {
            (self.st.shared.metrics).request(&endpoint, super::error::CLIENT_CLOSED.as_u16());
        }
    }
}

/// A path no route answers: a 404 listing the routes.
pub(super) async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route {} {}; this server answers /v1/models, /v1/models/{{id}}, /v1/completions, /v1/chat/completions, /v1/responses, /tokenize, /detokenize, /v1/load_lora_adapter, /v1/unload_lora_adapter, /health and /metrics",
        req.method(),
        req.uri().path()
    ))
}

/// A route asked with another method: a 405.
pub(super) async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::status(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}
