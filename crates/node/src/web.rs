//! The operations HTTP server (axum), bound to `--web-addr`.
//!
//! `/healthz` answers while the process runs its loop; `/readyz` is 200 only in the
//! `ready` phase (and, for a signing node, with its key loaded and enough peers) and 503
//! from the instant a shutdown or restart begins; `/readyz?exclude=peers` leaves the
//! peers out, for health checks that decide whether peers can find the node at all; `/metrics` and
//! `/debug/lifecycle` describe the same snapshot. The admin endpoints send into the same
//! shutdown channel as signals and require the bearer token from `<home>/admin-token`
//! on every address, and are locked for a while after repeated failures. The server
//! runs until the shutdown sequence stops it after the indexer has drained, so probes
//! can watch the whole drain; its connections are bounded by `ops_connections`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use mpc_lifecycle::ShutdownReason;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::ops_state::OpsState;

/// Longest a request may take once its head is read; every handler answers from memory
/// in microseconds, so this only ends requests that something has stalled.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest request body accepted: no endpoint takes one (admin requests are body-less
/// POSTs), so any body is refused with 413 before a handler runs.
pub const MAX_BODY_BYTES: usize = 0;

/// Serves until `cancel` fires, then closes every connection within
/// [`crate::ops_connections::CLOSE_GRACE`].
pub async fn serve(listener: TcpListener, state: OpsState, cancel: CancellationToken) -> Result<(), Infallible> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/debug/lifecycle", get(debug_lifecycle))
        .route("/admin/shutdown", post(admin_shutdown))
        .route("/admin/restart-indexer", post(admin_restart_indexer))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .with_state(state);
    crate::ops_connections::serve(listener, app, cancel).await
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// The checks `/readyz` may leave out: `?exclude=peers` (Kubernetes' `/readyz?exclude=`
/// convention).
#[derive(Debug, serde::Deserialize)]
struct ReadyzQuery {
    exclude: Option<String>,
}

/// Ready in the `ready` phase, and for a signing node also with its key loaded and
/// `threshold - 1` peers connected; the body says which of the two holds it back.
/// `?exclude=peers` leaves the peers out; any other exclusion is refused (400), so a
/// misspelt probe fails loudly instead of checking less than its author meant.
async fn readyz(State(state): State<OpsState>, Query(query): Query<ReadyzQuery>) -> Response {
    let exclude_peers = match query.exclude.as_deref() {
        None => false,
        Some("peers") => true,
        Some(other) => {
            return (StatusCode::BAD_REQUEST, format!("unknown check to exclude: {other:?} (known: peers)\n"))
                .into_response();
        }
    };
    let phase = state.phase.current();
    match state.signing.not_ready_because(exclude_peers) {
        Some(why) if state.phase.is_ready() => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("{}; signing not ready: {why}\n", phase.name())).into_response()
        }
        _ => {
            let status = if state.phase.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            (status, format!("{}\n", phase.name())).into_response()
        }
    }
}

async fn metrics(State(state): State<OpsState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render(&state)).into_response()
}

async fn debug_lifecycle(State(state): State<OpsState>) -> Json<serde_json::Value> {
    let stores = mpc_store::open_instances();
    Json(serde_json::json!({
        "phase": state.phase.current(),
        "tasks": state.tasks(),
        "store_holders": stores,
        "indexer": state.progress(),
        "restarts": state.history.restarts(),
        "last_report": state.history.last_restart(),
        "signer": state.signing.handle.borrow().as_ref().map(|signer| signer.status()),
    }))
}

async fn admin_shutdown(
    State(state): State<OpsState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = state.admin_guard.refusal(&headers, peer, &state.admin_token) {
        return refused;
    }
    tracing::warn!("admin request: shutdown");
    state.lifecycle.shutdown(ShutdownReason::AdminRequest);
    (StatusCode::ACCEPTED, "shutting down\n").into_response()
}

async fn admin_restart_indexer(
    State(state): State<OpsState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = state.admin_guard.refusal(&headers, peer, &state.admin_token) {
        return refused;
    }
    tracing::warn!("admin request: restart the indexer subsystem");
    state.lifecycle.restart("admin request");
    (StatusCode::ACCEPTED, "restarting the indexer\n").into_response()
}
