//! `listen_blocks`: consumes the stream and commits each block's effects together with
//! the cursor, in one batch.
//!
//! Upstream saved its cursor when a message *entered* the channel, so a crash lost up to
//! a channel's worth of blocks. Here the cursor is written in the same RocksDB batch as
//! the block's requests and responses, so after a crash the store is at a block
//! boundary and `FromInterruption` resumes at cursor + 1: every block applied once.

use std::sync::Arc;

use mpc_migrations::layout::{block_update, read_applied_requests, read_cursor};
use mpc_store::StoreError;
use near_indexer_primitives::StreamerMessage;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{IndexerState, IndexerTestHooks};
use crate::extract::extract_block_effects;

/// Why `listen_blocks` stopped without being cancelled.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The stream ended (the streamer failed or stopped).
    #[error("block stream ended unexpectedly")]
    StreamEnded,
    /// A block arrived out of order: applying it would leave a gap.
    #[error("block {got} arrived but {expected} was expected next")]
    Gap { expected: u64, got: u64 },
    /// A block at the cursor's height has another hash: the chain changed under us.
    #[error("block {height} has hash {got}, but the store committed {committed}")]
    ForkDetected { height: u64, committed: String, got: String },
    /// The node store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Commits every block from `stream` until `cancel` fires (between blocks: a block being
/// committed is always finished) or the stream ends.
pub async fn listen_blocks(
    stream: mpsc::Receiver<StreamerMessage>,
    state: Arc<IndexerState>,
    cancel: CancellationToken,
) -> Result<(), ListenError> {
    listen_blocks_with_hooks(stream, state, cancel, &IndexerTestHooks::default()).await
}

/// [`listen_blocks`] with the process tests' fault hooks (no-ops in production builds).
pub(crate) async fn listen_blocks_with_hooks(
    mut stream: mpsc::Receiver<StreamerMessage>,
    state: Arc<IndexerState>,
    cancel: CancellationToken,
    #[cfg_attr(not(feature = "test-hooks"), allow(unused_variables))] hooks: &IndexerTestHooks,
) -> Result<(), ListenError> {
    let store = &state.node_store;
    let mut cursor = read_cursor(store)?;
    let mut applied = read_applied_requests(store)?;
    #[cfg(feature = "test-hooks")]
    let mut committed_here = 0u64;
    loop {
        // Fast path while the streamer is ahead: a queued block is taken without
        // registering a cancellation waiter; the token is still checked before every block.
        if cancel.is_cancelled() {
            return Ok(());
        }
        let message = match stream.try_recv() {
            Ok(message) => message,
            Err(mpsc::error::TryRecvError::Disconnected) if cancel.is_cancelled() => return Ok(()),
            Err(mpsc::error::TryRecvError::Disconnected) => return Err(ListenError::StreamEnded),
            Err(mpsc::error::TryRecvError::Empty) => tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(()),
                message = stream.recv() => match message {
                    Some(message) => message,
                    None if cancel.is_cancelled() => return Ok(()),
                    None => return Err(ListenError::StreamEnded),
                },
            },
        };
        let effects = extract_block_effects(&message, &state.contract_id);
        let height = effects.cursor.height;
        if let Some(committed) = cursor {
            if height <= committed.height {
                if height == committed.height && effects.cursor.block_hash != committed.block_hash {
                    return Err(ListenError::ForkDetected {
                        height,
                        committed: committed.block_hash.to_hex(),
                        got: effects.cursor.block_hash.to_hex(),
                    });
                }
                tracing::debug!(height, "block already applied, skipping");
                continue;
            }
            if height != committed.height + 1 {
                return Err(ListenError::Gap { expected: committed.height + 1, got: height });
            }
        }
        store.commit(block_update(&effects, applied))?;
        applied += effects.requests.len() as u64;
        cursor = Some(effects.cursor);
        {
            let mut stats = state.stats();
            stats.first_height.get_or_insert(height);
            stats.last_height = Some(height);
            stats.blocks_indexed += 1;
            stats.requests_indexed += effects.requests.len() as u64;
        }
        crate::counters::count_block(effects.requests.len() as u64);
        state.indexed_height.send_replace(Some(height));
        #[cfg(feature = "test-hooks")]
        {
            committed_here += 1;
            if hooks.fail_listen_after_blocks.is_some_and(|limit| committed_here >= limit) {
                tracing::warn!(height, "test hook: failing listen_blocks");
                return Err(ListenError::StreamEnded);
            }
        }
    }
}
