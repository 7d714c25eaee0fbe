//! The accept loop: hyper's HTTP/1 connections with the limits a server facing a network
//! needs, which `axum::serve` leaves out (it sets no timer, so hyper's timeouts are off).
//! - a client must send a request's headers within the read timeout, and an idle keep-alive
//!   connection is closed after it (so connections that trickle or stall are dropped);
//! - at most `max_connections` are open; past that, new ones wait in the kernel's backlog;
//! - an EOF from the client ends its request, as nginx and uvicorn treat it: that is how a
//!   client that gave up on a long non-streamed answer frees its sequence at once. A client
//!   that half-closes after sending (`nc -N`) is therefore taken as gone.
//! - on shutdown, no new connections; open ones finish their requests, for at most the
//!   drain time: a client that stops reading its answer cannot hold the exit for good.
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

use super::body::bytes;
use super::error::ApiError;

/// How long accept waits after an error such as "too many open files" before trying again
/// (retrying at once would spin).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `shutdown` resolves, then waits for the open connections'
/// requests to finish, until `drain` resolves (it is first polled then); connections still
/// open then (a client not reading its answer) are left to be dropped with the runtime.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    read_timeout: Duration,
    max_connections: usize,
    drain: impl Future<Output = ()>,
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
    tokio::select! {
        () = graceful.shutdown() => {}
        () = drain => tracing::warn!(
            "connections still open after the shutdown's drain (clients not reading their answers); closing them"
        ),
    }
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
        Ok(b) => match bytes(b) {
            Ok(bytes) => next.run(Request::from_parts(parts, bytes.into())).await,
            Err(e) => e.into_response(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::Instant;

    use axum::routing::get;

    use super::*;

    /// A client that asks for a large answer and never reads it keeps its connection busy
    /// writing; the shutdown still ends within the drain time.
    #[test]
    fn a_client_not_reading_cannot_hold_the_shutdown() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        // Far more than the kernel's socket buffers on both sides hold.
        let app = Router::new().route("/big", get(|| async { vec![b'x'; 256 << 20] }));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let drain = Duration::from_secs(2);
        let server = rt.spawn(serve(
            listener,
            app,
            Duration::from_secs(30),
            8,
            // Lazy: its timer starts when the shutdown begins.
            async move { tokio::time::sleep(drain).await },
            async {
                let _ = stop_rx.await;
            },
        ));
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        client
            .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        // The answer has started: the server is now writing into full buffers.
        let mut head = [0u8; 12];
        client.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        std::thread::sleep(Duration::from_millis(300));
        let t0 = Instant::now();
        stop_tx.send(()).unwrap();
        let ended = rt.block_on(async { tokio::time::timeout(drain * 5, server).await });
        let took = t0.elapsed();
        assert!(ended.is_ok(), "the server still waits after {took:?}");
        // It did wait for the answer being written (a busy machine may add to the end).
        assert!(
            took >= drain,
            "shutdown took {took:?} with a drain of {drain:?}"
        );
        drop(client);
    }
}
