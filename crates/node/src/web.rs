//! The operations HTTP server (axum), bound to `--web-addr`.
//!
//! `/healthz` answers while the process runs its loop; `/readyz` is 200 only in the
//! `ready` phase and 503 from the instant a shutdown or restart begins; `/metrics` and
//! `/debug/lifecycle` describe the same snapshot. The admin endpoints send into the same
//! shutdown channel as signals and require the bearer token from `<home>/admin-token`
//! on every address. The server runs until the shutdown sequence stops it after the
//! indexer has drained, so probes can watch the whole drain.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use mpc_lifecycle::ShutdownReason;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::ops_state::OpsState;

/// Serves until `cancel` fires, then finishes in-flight requests.
pub async fn serve(listener: TcpListener, state: OpsState, cancel: CancellationToken) -> Result<(), String> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/debug/lifecycle", get(debug_lifecycle))
        .route("/admin/shutdown", post(admin_shutdown))
        .route("/admin/restart-indexer", post(admin_restart_indexer))
        .with_state(state);
    axum::serve(listener, app).with_graceful_shutdown(cancel.cancelled_owned()).await.map_err(|err| err.to_string())
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<OpsState>) -> Response {
    let phase = state.phase.current();
    let status = if state.phase.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, format!("{}\n", phase.name())).into_response()
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
        "last_report": state.history.last_sequence().map(|last| last.report),
    }))
}

/// Compares in time independent of where the first difference is.
fn same_token(given: &str, expected: &str) -> bool {
    given.len() == expected.len() && given.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// `None` when the request carries the admin token; otherwise the refusal: 401 without
/// a bearer token, 403 with a wrong one.
fn refusal(headers: &HeaderMap, state: &OpsState) -> Option<Response> {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()) else {
        return Some((StatusCode::UNAUTHORIZED, "missing bearer token\n").into_response());
    };
    match value.strip_prefix("Bearer ") {
        Some(token) if same_token(token.trim(), &state.admin_token) => None,
        _ => Some((StatusCode::FORBIDDEN, "invalid token\n").into_response()),
    }
}

async fn admin_shutdown(State(state): State<OpsState>, headers: HeaderMap) -> Response {
    if let Some(refused) = refusal(&headers, &state) {
        return refused;
    }
    tracing::warn!("admin request: shutdown");
    state.shutdown_signal_sender.shutdown(ShutdownReason::AdminRequest);
    (StatusCode::ACCEPTED, "shutting down\n").into_response()
}

async fn admin_restart_indexer(State(state): State<OpsState>, headers: HeaderMap) -> Response {
    if let Some(refused) = refusal(&headers, &state) {
        return refused;
    }
    tracing::warn!("admin request: restart the indexer subsystem");
    state.shutdown_signal_sender.restart_indexer("admin request");
    (StatusCode::ACCEPTED, "restarting the indexer\n").into_response()
}
