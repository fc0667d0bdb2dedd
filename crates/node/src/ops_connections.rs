//! The operations port's connections: accepted, bounded and closed by us, so that no
//! HTTP client can delay a stop or take the node down.
//!
//! Why not `axum::serve`: its graceful stop waits for every open connection, so one
//! client that sends half a request and then nothing made every SIGTERM run to the
//! deadline (exit 4). Here each connection is served by hyper's HTTP/1 connection
//! (header-read timeout, header size cap) as a task in one `JoinSet`; on cancellation
//! the accept loop stops, every connection is asked to finish its current request, and
//! whatever is still open after [`CLOSE_GRACE`] is closed. A stop costs the ops port at
//! most that grace, whatever its clients do.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// A client must send its whole request head within this time, or the connection is
/// closed: a slow or stalled client (slowloris) cannot hold a connection for longer.
/// Probes send theirs in microseconds; 5 s leaves room for a slow network.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Header-read timeout for connections accepted while more than
/// [`PRESSURE_CONNECTIONS`] are open: under pressure a connection that does not send a
/// request at once is closed quickly, so the slots stay free for probes.
pub const PRESSURE_HEADER_READ_TIMEOUT: Duration = Duration::from_millis(500);

/// Open connections above which new ones get [`PRESSURE_HEADER_READ_TIMEOUT`].
pub const PRESSURE_CONNECTIONS: usize = 256;

/// Hard cap on open connections; a connection beyond it is closed at once. Far below
/// the default 1024 file-descriptor limit minus what RocksDB keeps open, and far above
/// what probes and a Prometheus scraper need.
pub const MAX_CONNECTIONS: usize = 2048;

/// Largest request head accepted (request line plus headers); larger ones get 431 and
/// the connection is closed. Every endpoint is a short GET or a body-less POST.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// After a stop begins, connections get this long to finish their current request;
/// then they are closed. Enough for probes to watch the drain, short enough never to
/// matter against an orchestrator's grace period.
pub const CLOSE_GRACE: Duration = Duration::from_millis(250);

/// Accepts connections on `listener` and serves `app` on each until `cancel` fires,
/// then closes them all within [`CLOSE_GRACE`].
pub async fn serve(listener: TcpListener, app: Router, cancel: CancellationToken) -> Result<(), Infallible> {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors or a connection reset before accept: the
                // listener itself is fine; back off a little instead of spinning.
                tracing::warn!(error = %err, "ops server: accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let open = connections.len();
        if open >= MAX_CONNECTIONS {
            tracing::warn!(%peer, open, "ops server: connection limit reached, closing a new connection");
            continue;
        }
        let header_timeout =
            if open >= PRESSURE_CONNECTIONS { PRESSURE_HEADER_READ_TIMEOUT } else { HEADER_READ_TIMEOUT };
        connections.spawn(serve_connection(stream, peer, app.clone(), header_timeout, cancel.clone()));
    }
    drop(listener);
    let open = connections.len();
    let closed = tokio::time::timeout(CLOSE_GRACE, async { while connections.join_next().await.is_some() {} }).await;
    if closed.is_err() {
        let still_open = connections.len();
        connections.shutdown().await;
        tracing::info!(connections = still_open, "ops server: closed connections still open after the stop grace");
    } else if open > 0 {
        tracing::debug!(connections = open, "ops server: connections finished");
    }
    Ok(())
}

/// Serves one connection; on `cancel` finishes the request in flight and closes.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    header_timeout: Duration,
    cancel: CancellationToken,
) {
    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        // The read buffer bounds what one connection can make the node hold in memory.
        .max_buf_size(MAX_HEADER_BYTES);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = cancel.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(%peer, error = %err, "ops connection ended with an error");
    }
}
