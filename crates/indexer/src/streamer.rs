//! The streamer: polls the view client and sends one `StreamerMessage` per height, in
//! order, into a bounded channel.
//!
//! Upstream panicked when a receipt was missing ("receipt must be present at this
//! moment"). Here a missing piece is an error: the same height is retried with backoff a
//! bounded number of times, then the streamer fails with [`StreamerError`], which the
//! node handles like any other indexer failure.

use std::time::Duration;

use mpc_chain::{ChainNode, ChainStatus, GetStatus, GetStreamerMessage, ViewError};
use near_async::messaging::CanSendAsync;
use near_indexer_primitives::types::Finality;
use near_indexer_primitives::StreamerMessage;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{AwaitForNodeSyncedEnum, IndexerConfig};

/// Why the streamer stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StreamerError {
    /// A block could not be assembled after every attempt.
    #[error("block {height} unavailable after {attempts} attempts: {last_error}")]
    BlockUnavailable { height: u64, attempts: u32, last_error: String },
    /// The chain's actors are gone (stopped or failed).
    #[error("chain actor unreachable: {0}")]
    ChainUnreachable(String),
    /// The chain stopped producing blocks because of an error.
    #[error("sandbox chain failed: {0}")]
    ChainFailed(String),
}

async fn status(node: &ChainNode) -> Result<ChainStatus, StreamerError> {
    node.client.send_async(GetStatus).await.map_err(|err| StreamerError::ChainUnreachable(format!("{err:?}")))
}

/// Height up to which blocks are available under `finality`.
fn available_height(status: &ChainStatus, finality: &Finality) -> u64 {
    match finality {
        Finality::Final => status.final_height,
        Finality::DoomSlug => status.head_height.saturating_sub(1),
        Finality::None => status.head_height,
    }
}

/// Assembles the message for `height` (the block, every chunk and its outcomes) in one
/// query to the view client.
pub(crate) async fn fetch_message(node: &ChainNode, height: u64) -> Result<StreamerMessage, ViewError> {
    node.view_client
        .send_async(GetStreamerMessage(height))
        .await
        .map_err(|err| ViewError::Store(format!("view client: {err:?}")))?
}

/// Fetches `height`, retrying with linear backoff up to `max_attempts` times. Returns
/// `Ok(None)` if cancelled while waiting.
async fn fetch_with_retries(
    node: &ChainNode,
    height: u64,
    max_attempts: u32,
    cancel: &CancellationToken,
) -> Result<Option<StreamerMessage>, StreamerError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match fetch_message(node, height).await {
            Ok(message) => return Ok(Some(message)),
            Err(err) if attempt >= max_attempts => {
                return Err(StreamerError::BlockUnavailable { height, attempts: attempt, last_error: err.to_string() });
            }
            Err(err) => {
                tracing::warn!(height, attempt, max_attempts, error = %err, "block incomplete, retrying the same height");
                let backoff = Duration::from_millis(50 * u64::from(attempt));
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(backoff) => {}
                }
            }
        }
    }
}

/// Where a stream that was asked to start "at the latest block" begins.
pub(crate) async fn latest_final_height(node: &ChainNode, finality: &Finality) -> Result<u64, StreamerError> {
    Ok(available_height(&status(node).await?, finality))
}

/// Streams heights `start..` into `sender` until cancelled or the receiver is dropped.
pub(crate) async fn run_streamer(
    node: ChainNode,
    config: IndexerConfig,
    start: u64,
    sender: mpsc::Sender<StreamerMessage>,
    cancel: CancellationToken,
) -> Result<(), StreamerError> {
    let mut next = start;
    tracing::info!(start_height = start, "streamer started");
    loop {
        let status = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            status = status(&node) => status?,
        };
        if let Some(failure) = status.failure {
            return Err(StreamerError::ChainFailed(failure));
        }
        let waiting_for_sync =
            status.syncing && config.await_for_node_synced == AwaitForNodeSyncedEnum::WaitForFullSync;
        let target = available_height(&status, &config.finality);
        while !waiting_for_sync && next <= target {
            let Some(message) = fetch_with_retries(&node, next, config.max_fetch_attempts, &cancel).await? else {
                return Ok(());
            };
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                sent = sender.send(message) => {
                    if sent.is_err() {
                        tracing::debug!("streamer receiver dropped, stopping");
                        return Ok(());
                    }
                }
            }
            next += 1;
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = sender.closed() => return Ok(()),
            _ = tokio::time::sleep(config.poll_interval) => {}
        }
    }
}
