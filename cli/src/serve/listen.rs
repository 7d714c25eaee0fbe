//! The accept loop: hyper's HTTP/1 connections with the limits a server facing a network
//! needs, which `axum::serve` leaves out (it sets no timer, so hyper's timeouts are off).
//! - a client must send a request's headers within the read timeout, and an idle keep-alive
//!   connection is closed after it (so connections that trickle or stall are dropped);
//! - at most `max_connections` are open; past that, new ones wait in the kernel's backlog;
//! - an EOF from the client ends its request, as nginx and uvicorn treat it: that is how a
//!   client that gave up on a long non-streamed answer frees its sequence at once. A client
//!   that half-closes after sending (`nc -N`) is therefore taken as gone.
//! - on shutdown, no new connections; open ones finish their requests.
//!
//! Request bodies get the same deadline from [`read_body`], a middleware of every route.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::error::ApiError;
use super::http::body;

/// How long accept waits after an error such as "too many open files" before trying again
/// (retrying at once would spin).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `shutdown` resolves, then waits for the open connections'
/// requests to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    read_timeout: Duration,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(read_timeout)
        .keep_alive(true);
    let slots = Arc::new(Semaphore::new(max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // A client gone before it was accepted: nothing to wait for.
                    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
                    if !matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
                        tracing::warn!("accepting a connection failed: {e}");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let conn =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A client that vanished or timed out: nothing to report.
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Reads the whole body before the handler, within `timeout`: a client that sends part of its
/// body and stalls gets a 408 instead of holding the request open. A `Content-Length` past
/// the size limit is refused (413) before any byte is read, as are bodies that grow past it.
pub(super) async fn read_body(
    State((timeout, max_body)): State<(Duration, usize)>,
    req: Request,
    next: Next,
) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(n) = declared.filter(|&n| n > max_body as u64) {
        return ApiError::status(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is {n} bytes; at most {max_body} are accepted (--max-body-mib)"
            ),
        )
        .into_response();
    }
    let (parts, stream) = req.into_parts();
    let req = Request::from_parts(parts.clone(), stream);
    match tokio::time::timeout(timeout, Bytes::from_request(req, &())).await {
        Err(_) => ApiError::status(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s (--read-timeout)",
                timeout.as_secs()
            ),
        )
        .into_response(),
        Ok(b) => match body(b) {
            Ok(bytes) => next.run(Request::from_parts(parts, bytes.into())).await,
            Err(e) => e.into_response(),
        },
    }
}
