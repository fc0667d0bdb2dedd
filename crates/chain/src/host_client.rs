//! The HTTP client of a chain host's RPC, for the nodes that follow it: the follower's
//! block sync, and the transactions a node submits (`vote_pk`, `respond`).
//!
//! Loopback (or a private network's) plain HTTP/1.1. Every call is bounded in time, and
//! answers are bounded in size; [`HostClient::submit_with_retries`] retries a
//! transaction with backoff under the caller's cancellation token. A transaction the
//! host acknowledged twice counts once (the host knows its id), so a retry after a lost
//! answer is safe.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

use crate::host::{BlocksAnswer, RequestRecord, SignedTransaction, TransactionStatus};

/// Largest answer to a block fetch (a full answer of the largest blocks fits).
const MAX_BLOCKS_ANSWER_BYTES: usize = 64 * 1024 * 1024;
/// Largest answer to any other call.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// Bound of a call, beyond the time the host may wait for new blocks.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call to the host failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// No connection (refused, reset, unresolvable).
    #[error("chain host {host} unreachable: {detail}")]
    Unreachable { host: String, detail: String },
    /// No answer within the bound.
    #[error("chain host {host} did not answer within {seconds} s")]
    Timeout { host: String, seconds: u64 },
    /// The host refused the request (HTTP 400): the request is wrong, a retry cannot help.
    #[error("chain host {host} refused the request: {reason}")]
    Refused { host: String, reason: String },
    /// Any other status, or an answer that does not decode.
    #[error("chain host {host} answered badly: {detail}")]
    BadAnswer { host: String, detail: String },
    /// The caller's token was cancelled.
    #[error("cancelled")]
    Cancelled,
}

impl HostError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(self, HostError::Refused { .. } | HostError::Cancelled)
    }
}

/// What the host said of a submitted transaction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Submitted {
    /// The transaction's id, 64 hex digits.
    pub id: String,
    /// Pending in the pool, or included at a height.
    pub status: TransactionStatus,
}

/// A client of one chain host. Cheap to clone.
#[derive(Clone)]
pub struct HostClient {
    base: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for HostClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostClient").field("base", &self.base).finish()
    }
}

impl HostClient {
    /// A client of the host at `base` (`http://HOST:PORT`).
    pub fn new(base: &str) -> Result<Self, String> {
        let base = base.trim_end_matches('/');
        let uri: hyper::Uri = base.parse().map_err(|err| format!("chain host URL {base:?}: {err}"))?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() || uri.path() != "/" {
            return Err(format!("chain host URL {base:?}: expected http://HOST:PORT"));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new()).build(connector);
        Ok(HostClient { base: base.to_owned(), http })
    }

    /// The host's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The blocks after `after` (from genesis with `None`), at most `limit`; when there
    /// are none yet the host waits up to `wait` for the next one.
    pub async fn blocks_after(
        &self,
        after: Option<u64>,
        limit: u64,
        wait: Duration,
    ) -> Result<BlocksAnswer, HostError> {
        let after = after.map(|after| format!("after={after}&")).unwrap_or_default();
        let path = format!("/v1/blocks?{after}limit={limit}&wait_ms={}", wait.as_millis());
        let body = self.call(Method::GET, &path, None, wait + CALL_TIMEOUT, MAX_BLOCKS_ANSWER_BYTES).await?;
        BlocksAnswer::decode(&body).map_err(|err| self.bad_answer(err.to_string()))
    }

    /// Posts `transaction`; the host answers once it is durably in its pool (or known).
    pub async fn submit(&self, transaction: &SignedTransaction) -> Result<Submitted, HostError> {
        let body = serde_json::to_vec(transaction).expect("a transaction serialises");
        let answer = self.call(Method::POST, "/v1/transactions", Some(body), CALL_TIMEOUT, MAX_ANSWER_BYTES).await?;
        serde_json::from_slice(&answer).map_err(|err| self.bad_answer(err.to_string()))
    }

    /// Posts `transaction`, trying again after a transient failure with backoff (from
    /// 100 ms, doubling to 2 s), at most `attempts` times, until `cancel` is cancelled.
    /// Every failed attempt is logged with what comes next.
    pub async fn submit_with_retries(
        &self,
        transaction: &SignedTransaction,
        attempts: u32,
        cancel: &CancellationToken,
    ) -> Result<Submitted, HostError> {
        let mut pause = Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            let outcome = tokio::select! {
                _ = cancel.cancelled() => return Err(HostError::Cancelled),
                outcome = self.submit(transaction) => outcome,
            };
            match outcome {
                Err(error) if error.is_transient() && attempt < attempts => {
                    tracing::warn!(
                        %error, attempt, attempts, retry_in_ms = pause.as_millis() as u64,
                        method = transaction.action.method(), "transaction not acknowledged; trying again"
                    );
                    tokio::select! {
                        _ = cancel.cancelled() => return Err(HostError::Cancelled),
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(Duration::from_secs(2));
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    /// The contract's public view (`GET /v1/contract`).
    pub async fn contract(&self) -> Result<serde_json::Value, HostError> {
        let answer = self.call(Method::GET, "/v1/contract", None, CALL_TIMEOUT, MAX_ANSWER_BYTES).await?;
        serde_json::from_slice(&answer).map_err(|err| self.bad_answer(err.to_string()))
    }

    /// The height of the host's last block (`GET /v1/status`).
    pub async fn head(&self) -> Result<u64, HostError> {
        let answer = self.call(Method::GET, "/v1/status", None, CALL_TIMEOUT, MAX_ANSWER_BYTES).await?;
        let status: serde_json::Value =
            serde_json::from_slice(&answer).map_err(|err| self.bad_answer(err.to_string()))?;
        status["head_height"].as_u64().ok_or_else(|| self.bad_answer("no head_height in the status".into()))
    }

    /// The sign requests of heights `from..=to` with their accepted responses.
    pub async fn requests(&self, from: u64, to: u64) -> Result<Vec<RequestRecord>, HostError> {
        let path = format!("/v1/requests?from_height={from}&to_height={to}");
        let answer = self.call(Method::GET, &path, None, CALL_TIMEOUT, MAX_ANSWER_BYTES).await?;
        serde_json::from_slice(&answer).map_err(|err| self.bad_answer(err.to_string()))
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<Bytes, HostError> {
        let mut request = Request::builder().method(method).uri(format!("{}{path}", self.base));
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|err| self.bad_answer(format!("building the request: {err}")))?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|err| HostError::Unreachable { host: self.base.clone(), detail: error_chain(&err) })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), max_bytes)
                .collect()
                .await
                .map_err(|err| self.bad_answer(format!("reading the answer: {err}")))?
                .to_bytes();
            Ok::<_, HostError>((status, body))
        };
        let (status, body) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| HostError::Timeout { host: self.base.clone(), seconds: timeout.as_secs() })??;
        match status {
            StatusCode::OK => Ok(body),
            StatusCode::BAD_REQUEST => Err(HostError::Refused {
                host: self.base.clone(),
                reason: String::from_utf8_lossy(&body).chars().take(500).collect(),
            }),
            other => Err(self.bad_answer(format!("HTTP {other}"))),
        }
    }

    fn bad_answer(&self, detail: String) -> HostError {
        HostError::BadAnswer { host: self.base.clone(), detail }
    }
}

/// An error with its sources, one line (hyper's own message says little alone).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
