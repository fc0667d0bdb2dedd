//! The streamer: polls the view client and sends one `StreamerMessage` per height, in
//! order, into a bounded channel.
//!
//! Upstream panicked when a receipt was missing ("receipt must be present at this
//! moment"). Here a missing piece is an error: the same height is retried with backoff a
//! bounded number of times, then the streamer fails with [`StreamerError`], which the
//! node handles like any other indexer failure.

use std::time::Duration;

use mpc_chain::{
    ChainNode, ChainStatus, GetStatus, GetStreamerMessage, GetStreamerMessages, StreamerMessages, ViewError,
};
use near_async::messaging::CanSendAsync;
use near_indexer_primitives::StreamerMessage;
use near_indexer_primitives::types::Finality;
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

/// Heights asked for in one query while catching up: enough to amortise the actor
/// round-trip, few enough that the first block of a batch reaches `listen_blocks` soon.
const FETCH_BATCH: u64 = 16;

fn view_client_gone(err: impl std::fmt::Debug) -> ViewError {
    ViewError::Store(format!("view client: {err:?}"))
}

/// Assembles the message for `height` (the block, every chunk and its outcomes) in one
/// query to the view client.
pub(crate) async fn fetch_message(node: &ChainNode, height: u64) -> Result<StreamerMessage, ViewError> {
    node.view_client.send_async(GetStreamerMessage(height)).await.map_err(view_client_gone)?
}

/// Asks the view client for the messages of `count` heights from `start` (see
/// [`StreamerMessages`]). The query is sent before this returns; the future only waits
/// for the answer, so the next batch can be asked for while this one is forwarded.
fn ask_for_batch(node: &ChainNode, start: u64, count: u64) -> impl Future<Output = AskedBatch> + Send + 'static {
    let answer = node.view_client.send_async(GetStreamerMessages { start, count });
    async move {
        let batch = match answer.await {
            Ok(batch) => batch,
            Err(err) => StreamerMessages { messages: Vec::new(), stopped_by: Some(view_client_gone(err)) },
        };
        AskedBatch { start, batch }
    }
}

/// The answer to [`ask_for_batch`], with the height it was asked from.
struct AskedBatch {
    start: u64,
    batch: StreamerMessages,
}

/// Batches asked for at once while catching up. With one, the view client waited for
/// every answer to reach the streamer and the next query to reach it: on two busy cores
/// those two thread wake-ups took as long as assembling the batch.
const BATCHES_IN_FLIGHT: usize = 2;

/// Retries `height`, whose first attempt failed with `error`, with linear backoff, up
/// to `max_attempts` attempts in all. Returns `Ok(None)` if cancelled while waiting.
async fn retry_height(
    node: &ChainNode,
    height: u64,
    mut error: ViewError,
    max_attempts: u32,
    cancel: &CancellationToken,
) -> Result<Option<StreamerMessage>, StreamerError> {
    let mut attempt = 1;
    loop {
        if attempt >= max_attempts {
            return Err(StreamerError::BlockUnavailable { height, attempts: attempt, last_error: error.to_string() });
        }
        tracing::warn!(height, attempt, max_attempts, error = %error, "block incomplete, retrying the same height");
        let backoff = Duration::from_millis(50 * u64::from(attempt));
        tokio::select! {
            _ = cancel.cancelled() => return Ok(None),
            _ = tokio::time::sleep(backoff) => {}
        }
        attempt += 1;
        match fetch_message(node, height).await {
            Ok(message) => return Ok(Some(message)),
            Err(err) => error = err,
        }
    }
}

/// Sends `messages` on, in order, unless cancelled or the receiver is gone (then
/// `false`). Waits until the channel has room for all of them and then sends them
/// together: while catching up the channel is full, and sending one at a time woke this
/// task for every block `listen_blocks` took (a thread switch per block).
async fn forward(
    sender: &mpsc::Sender<StreamerMessage>,
    messages: Vec<StreamerMessage>,
    cancel: &CancellationToken,
) -> bool {
    if messages.is_empty() {
        return true;
    }
    tokio::select! {
        _ = cancel.cancelled() => false,
        permits = sender.reserve_many(messages.len()) => match permits {
            Ok(permits) => {
                for (permit, message) in permits.zip(messages) {
                    permit.send(message);
                }
                true
            }
            Err(_) => {
                tracing::debug!("streamer receiver dropped, stopping");
                false
            }
        },
    }
}

/// Where a stream that was asked to start "at the latest block" begins.
pub(crate) async fn latest_final_height(node: &ChainNode, finality: &Finality) -> Result<u64, StreamerError> {
    Ok(available_height(&status(node).await?, finality))
}

/// Streams heights `next..=target` into `sender`, with [`BATCHES_IN_FLIGHT`] queries to
/// the view client at a time. Returns the next height to stream, or `None` once
/// cancelled or the receiver is gone.
async fn stream_up_to(
    node: &ChainNode,
    config: &IndexerConfig,
    mut next: u64,
    target: u64,
    sender: &mpsc::Sender<StreamerMessage>,
    cancel: &CancellationToken,
) -> Result<Option<u64>, StreamerError> {
    let mut asked = next;
    let mut in_flight = std::collections::VecDeque::with_capacity(BATCHES_IN_FLIGHT);
    loop {
        while in_flight.len() < BATCHES_IN_FLIGHT && asked <= target {
            let count = (target - asked + 1).min(FETCH_BATCH).min(config.streamer_buffer.max(1) as u64);
            in_flight.push_back(ask_for_batch(node, asked, count));
            asked += count;
        }
        let Some(answer) = in_flight.pop_front() else { return Ok(Some(next)) };
        let AskedBatch { start: batch_start, batch } = answer.await;
        if batch_start != next {
            // An earlier batch came back short: ask again from where it stopped.
            in_flight.clear();
            asked = next;
            continue;
        }
        let fetched = batch.messages.len() as u64;
        if !forward(sender, batch.messages, cancel).await {
            return Ok(None);
        }
        next += fetched;
        if let Some(error) = batch.stopped_by {
            // The batches asked for after this one start past the missing height.
            in_flight.clear();
            let Some(message) = retry_height(node, next, error, config.max_fetch_attempts, cancel).await? else {
                return Ok(None);
            };
            if !forward(sender, vec![message], cancel).await {
                return Ok(None);
            }
            next += 1;
            asked = next;
        }
    }
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
        if !waiting_for_sync {
            let target = available_height(&status, &config.finality);
            let Some(streamed_to) = stream_up_to(&node, &config, next, target, &sender, &cancel).await? else {
                return Ok(());
            };
            next = streamed_to;
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = sender.closed() => return Ok(()),
            _ = tokio::time::sleep(config.poll_interval) => {}
        }
    }
}
