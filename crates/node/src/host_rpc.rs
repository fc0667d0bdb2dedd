//! The chain host's RPC (docs/sandbox-network.md): block sync for the nodes that follow
//! the host, transaction submission, and the two read-only JSON views that are the
//! network's public record.
//!
//! - `GET /v1/blocks?after=H&limit=N&wait_ms=W`: the blocks after height `H` (from
//!   genesis without `after`), at most `N` (and 512), in the chain store's compact
//!   encoding; with none yet, the answer waits up to `W` ms (at most 5 s) for the next.
//! - `POST /v1/transactions`: a signed transaction (JSON); 200 `{"id", "status"}` once it
//!   is durably in the pool (or was already known), 400 with the reason when it does not
//!   verify.
//! - `GET /v1/contract`: `{"state", "threshold", "participants", "public_key"}`.
//! - `GET /v1/requests?from_height=H&to_height=K`: the sign requests of heights `H..=K`
//!   (at most 10,000 heights) with their accepted responses.
//! - `GET /v1/status`: `{"head_height"}`.
//! - `GET /healthz`, `GET /readyz`: the host runs, and serves.
//!
//! Reads and writes of the chain store run on blocking threads.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use mpc_chain::host::{
    BlocksAnswer, MAX_BLOCKS_PER_ANSWER, NetworkConfig, SignedTransaction, TransactionPool, blocks_after,
    requests::{MAX_REQUEST_RANGE, requests_in},
};
use mpc_store::StoreHolder;
use serde_json::json;
use tokio::sync::watch;
use tower_http::limit::RequestBodyLimitLayer;

/// Largest transaction body accepted.
const MAX_TRANSACTION_BYTES: usize = 64 * 1024;
/// Longest a block fetch may wait for the next block.
const LONGEST_WAIT: Duration = Duration::from_secs(5);

/// What the RPC serves from.
#[derive(Clone)]
pub struct HostRpc {
    /// The host's chain store.
    pub store: Arc<StoreHolder>,
    /// The network file.
    pub network: Arc<NetworkConfig>,
    /// The transaction pool.
    pub pool: Arc<TransactionPool>,
    /// The chain's head height, told at every new block.
    pub head: watch::Receiver<u64>,
}

/// The RPC's routes.
pub fn router(rpc: HostRpc) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }))
        .route("/v1/blocks", get(blocks))
        .route("/v1/transactions", post(submit))
        .route("/v1/contract", get(contract))
        .route("/v1/requests", get(requests))
        .route("/v1/status", get(status))
        .layer(RequestBodyLimitLayer::new(MAX_TRANSACTION_BYTES))
        .with_state(rpc)
}

/// A failure of the host itself (its store), not of the request.
fn internal(error: impl std::fmt::Display) -> Response {
    tracing::error!(%error, "chain host RPC failed");
    (StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")).into_response()
}

/// A request the host refuses.
fn bad_request(reason: impl std::fmt::Display) -> Response {
    (StatusCode::BAD_REQUEST, format!("{reason}\n")).into_response()
}

/// Runs `read` on the store on a blocking thread.
async fn on_store<T: Send + 'static>(
    rpc: &HostRpc,
    read: impl FnOnce(&mpc_store::Store) -> mpc_store::StoreResult<T> + Send + 'static,
) -> Result<T, Response> {
    let store = rpc.store.clone();
    match tokio::task::spawn_blocking(move || read(&store)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(internal(error)),
        Err(error) => Err(internal(error)),
    }
}

#[derive(serde::Deserialize)]
struct BlocksQuery {
    after: Option<u64>,
    limit: Option<u64>,
    wait_ms: Option<u64>,
}

async fn blocks(State(rpc): State<HostRpc>, Query(query): Query<BlocksQuery>) -> Response {
    let limit = query.limit.unwrap_or(MAX_BLOCKS_PER_ANSWER);
    let wait = Duration::from_millis(query.wait_ms.unwrap_or(0)).min(LONGEST_WAIT);
    let mut head = rpc.head.clone();
    let next = query.after.map_or(0, |after| after.saturating_add(1));
    if *head.borrow_and_update() < next && !wait.is_zero() {
        let _ = tokio::time::timeout(wait, head.wait_for(|head| *head >= next)).await;
    }
    let host_head = *head.borrow();
    let after = query.after;
    match on_store(&rpc, move |store| blocks_after(store, after, limit)).await {
        Ok(blocks) => {
            let body = BlocksAnswer { host_head, blocks }.encode();
            ([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response()
        }
        Err(response) => response,
    }
}

async fn submit(State(rpc): State<HostRpc>, body: Bytes) -> Response {
    let transaction: SignedTransaction = match serde_json::from_slice(&body) {
        Ok(transaction) => transaction,
        Err(error) => return bad_request(format!("not a transaction: {error}")),
    };
    if let Err(error) = transaction.verify(&rpc.network) {
        return bad_request(error);
    }
    let id = hex::encode(transaction.id());
    let pool = rpc.pool.clone();
    match on_store(&rpc, move |store| pool.admit(store, &transaction)).await {
        Ok(status) => Json(json!({"id": id, "status": status})).into_response(),
        Err(response) => response,
    }
}

async fn contract(State(rpc): State<HostRpc>) -> Response {
    match on_store(&rpc, |store| store.get_json::<serde_json::Value>(mpc_store::Column::ContractState, "state")).await {
        Ok(Some(view)) => Json(view).into_response(),
        Ok(None) => internal("the chain store holds no contract state"),
        Err(response) => response,
    }
}

async fn status(State(rpc): State<HostRpc>) -> Response {
    Json(json!({"head_height": *rpc.head.borrow()})).into_response()
}

#[derive(serde::Deserialize)]
struct RequestsQuery {
    from_height: u64,
    to_height: u64,
}

async fn requests(State(rpc): State<HostRpc>, Query(query): Query<RequestsQuery>) -> Response {
    let RequestsQuery { from_height, to_height } = query;
    if to_height < from_height {
        return bad_request(format!("to_height {to_height} is below from_height {from_height}"));
    }
    if to_height - from_height >= MAX_REQUEST_RANGE {
        return bad_request(format!("a range of at most {MAX_REQUEST_RANGE} heights, asked for more"));
    }
    match on_store(&rpc, move |store| requests_in(store, from_height, to_height)).await {
        Ok(records) => Json(records).into_response(),
        Err(response) => response,
    }
}
