//! Errors as OpenAI's API returns them: an HTTP status and
//! `{"error": {"message", "type", "param", "code"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// nginx's 499 "client closed request": the status of a request whose client left before
/// its answer (nobody reads it; the request counts say what happened).
pub const CLIENT_CLOSED: StatusCode = match StatusCode::from_u16(499) {
    Ok(s) => s,
    Err(_) => panic!("499 is a valid status"),
};

/// An error answered to the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong and what was expected, in words.
    pub message: String,
    /// The request field at fault (`temperature`, `messages[1].content`), if one is.
    pub param: Option<String>,
    /// A machine-readable code (`model_not_found`, `context_length_exceeded`, ...).
    pub code: Option<&'static str>,
    /// Seconds after which a retry may succeed (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// 400: the request is malformed or a value is out of range.
    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 400 about field `param`.
    pub fn bad_param(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::bad(message).param(param)
    }

    /// 404: an unknown model, adapter or path.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 401: a missing or wrong API key.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message).code("invalid_api_key")
    }

    /// 403: something this server is not allowed to do.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 429: the queue is full; retry after `secs`.
    pub fn busy(message: impl Into<String>, secs: u64) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, message).code("queue_full");
        e.retry_after = Some(secs);
        e
    }

    /// 503: the server is shutting down.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message).code("shutting_down")
    }

    /// 500: the engine failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// Another status.
    pub fn status(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(status, message)
    }

    /// Names the field at fault.
    pub fn param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Sets the machine-readable code.
    pub fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// OpenAI's error `type` for the status.
    fn kind(&self) -> &'static str {
        match self.status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::FORBIDDEN => "permission_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        }
    }

    /// The JSON body. A message or param that echoes a huge client value (a key of megabytes
    /// in an unknown-field error) is cut, so the answer stays small.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": cut(&self.message, MAX_MESSAGE_CHARS),
            "type": self.kind(),
            "param": self.param.as_deref().map(|p| cut(p, MAX_PARAM_CHARS)),
            "code": self.code,
        }})
    }
}

/// Longest `message` and `param` of an error body, in characters.
const MAX_MESSAGE_CHARS: usize = 2048;
const MAX_PARAM_CHARS: usize = 256;

/// `s` up to `max` characters, with `…` where it was cut.
fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::ApiError;

    #[test]
    fn a_huge_echoed_value_is_cut() {
        let key = "k".repeat(1 << 20);
        let body = ApiError::bad_param(&key, format!("unknown field `{key}`")).body();
        let (m, p) = (&body["error"]["message"], &body["error"]["param"]);
        assert_eq!(m.as_str().unwrap().chars().count(), 2049);
        assert!(m.as_str().unwrap().starts_with("unknown field `kkk"));
        assert_eq!(p.as_str().unwrap().chars().count(), 257);
        assert!(p.as_str().unwrap().ends_with('…'));
        let short = ApiError::bad_param("n", "`n` is 0").body();
        assert_eq!(short["error"]["message"], "`n` is 0");
        assert_eq!(short["error"]["param"], "n");
    }
}
