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
//! Request bodies get the same deadline in [`super::http`]'s body middleware.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

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
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
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
