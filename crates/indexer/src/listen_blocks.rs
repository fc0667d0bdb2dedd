//! `listen_blocks`: consumes the stream and commits each block's effects together with
//! the cursor, in one batch.
//!
//! Upstream saved its cursor when a message *entered* the channel, so a crash lost up to
//! a channel's worth of blocks. Here the cursor is written in the same RocksDB batch as
//! the block's requests and responses, so after a crash the store is at a block
//! boundary and `FromInterruption` resumes at cursor + 1: every block applied once.
//! While catching up, the blocks already queued behind the next one go into its batch
//! too (up to [`MAX_WRITES_PER_BATCH`] writes), with the last one's cursor: still whole
//! blocks, and one RocksDB write costs less than one per block.
//!
//! Two stages, so that catching up uses both of the indexer's worker threads: one takes
//! the blocks from the stream, checks that each comes next, extracts its effects, builds
//! the batch and frees the blocks' views; the other writes the prepared batches in
//! height order and publishes each batch's last height. When one thread did all of it,
//! that thread was the limit of indexing. Batches prepared but not yet written when a
//! stop comes are dropped: nothing of them is in the store, so the next start fetches
//! those blocks again.

use std::sync::Arc;

use mpc_migrations::layout::{Cursor, block_update, read_applied_requests, read_cursor};
use mpc_store::{PreparedUpdate, StoreError, StoreUpdate};
use near_indexer_primitives::StreamerMessage;
use near_indexer_primitives::types::AccountId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::extract::extract_block_effects;
use crate::{IndexerState, IndexerTestHooks};

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

/// Commits every block from `stream` until `cancel` fires (between batches: a batch being
/// written is always finished) or the stream ends.
pub async fn listen_blocks(
    stream: mpsc::Receiver<StreamerMessage>,
    state: Arc<IndexerState>,
    cancel: CancellationToken,
) -> Result<(), ListenError> {
    listen_blocks_with_hooks(stream, state, cancel, &IndexerTestHooks::default()).await
}

/// How many prepared batches may wait for the committing stage: enough that it never
/// waits while the next one is prepared, few enough that little is dropped at a stop.
const PREPARED_AHEAD: usize = 8;

/// Most writes in one batch. While catching up, the blocks already queued are written
/// together, which costs RocksDB less per block than a write each; the cap keeps each
/// write short (a stop waits for the one in progress).
pub const MAX_WRITES_PER_BATCH: usize = 256;

/// Consecutive blocks ready to be committed in one batch (cursor included).
struct PreparedBlocks {
    update: PreparedUpdate,
    range: BlockRange,
}

/// Which blocks a batch holds, and their requests: what is published once it is written.
#[derive(Default)]
struct BlockRange {
    last_height: u64,
    blocks: u64,
    requests: u64,
}

impl BlockRange {
    /// The batch's first height: its blocks are consecutive (each one is gathered only
    /// if it comes next), and a batch is only sent with at least one.
    fn first_height(&self) -> u64 {
        self.last_height + 1 - self.blocks
    }
}

/// [`listen_blocks`] with the process tests' fault hooks (no-ops in production builds).
pub(crate) async fn listen_blocks_with_hooks(
    stream: mpsc::Receiver<StreamerMessage>,
    state: Arc<IndexerState>,
    cancel: CancellationToken,
    hooks: &IndexerTestHooks,
) -> Result<(), ListenError> {
    let next = NextBlock { last: read_cursor(&state.node_store)?, applied: read_applied_requests(&state.node_store)? };
    let (prepared_sender, prepared) = mpsc::channel(PREPARED_AHEAD);
    // Awaited below on every path; the abort on drop only matters when this future is
    // itself dropped, so that the committing stage never outlives it with the store.
    let committer =
        AbortOnDropHandle::new(tokio::spawn(commit_in_order(prepared, state.clone(), cancel.clone(), hooks.clone())));
    let preparing = prepare_in_order(stream, &state, next, &cancel, prepared_sender).await;
    // The committing stage writes what was prepared before a gap, a fork or the end of
    // the stream, as the one-stage loop did, and stops at once when cancelled.
    match committer.await {
        Ok(committing) => committing?,
        Err(join_error) if join_error.is_panic() => std::panic::resume_unwind(join_error.into_panic()),
        // Aborted: only when the runtime shuts down under us, which drops this future too.
        Err(_) => {}
    }
    preparing
}

/// Where the first stage stands: the last block it prepared (at first the store's
/// cursor) and the requests applied up to it.
struct NextBlock {
    last: Option<Cursor>,
    applied: u64,
}

/// Blocks gathered for one batch.
#[derive(Default)]
struct Gathered {
    update: StoreUpdate,
    range: BlockRange,
}

impl NextBlock {
    /// Adds `message`'s effects to `gathered` if it is the next block (skips one already
    /// applied; a gap or a fork is an error), and frees the block's views.
    fn gather(
        &mut self,
        message: StreamerMessage,
        contract_id: &AccountId,
        gathered: &mut Gathered,
    ) -> Result<(), ListenError> {
        let effects = extract_block_effects(&message, contract_id);
        // Freed here, not on the committing thread.
        drop(message);
        if !comes_next(self.last.as_ref(), &effects.cursor)? {
            tracing::debug!(height = effects.cursor.height, "block already applied, skipping");
            return Ok(());
        }
        let requests = effects.requests.len() as u64;
        gathered.update.append(block_update(&effects, self.applied));
        let range = &mut gathered.range;
        range.last_height = effects.cursor.height;
        range.blocks += 1;
        range.requests += requests;
        self.applied += requests;
        self.last = Some(effects.cursor);
        Ok(())
    }
}

/// The first stage: takes the blocks in order, each batch the next block and as many
/// queued behind it as fit, and hands the prepared batches on, until `cancel` fires, the
/// stream ends or the committing stage stops.
async fn prepare_in_order(
    mut stream: mpsc::Receiver<StreamerMessage>,
    state: &IndexerState,
    mut next: NextBlock,
    cancel: &CancellationToken,
    prepared: mpsc::Sender<PreparedBlocks>,
) -> Result<(), ListenError> {
    while let Some(message) = next_block(&mut stream, cancel).await? {
        let mut gathered = Gathered::default();
        let mut outcome = next.gather(message, &state.contract_id, &mut gathered);
        while outcome.is_ok() && gathered.update.len() < MAX_WRITES_PER_BATCH && !cancel.is_cancelled() {
            let Ok(message) = stream.try_recv() else { break };
            outcome = next.gather(message, &state.contract_id, &mut gathered);
        }
        // The blocks before a gap or a fork are still committed, then the error returned.
        if gathered.range.blocks > 0 {
            let blocks = PreparedBlocks { update: state.node_store.prepare(gathered.update)?, range: gathered.range };
            if prepared.send(blocks).await.is_err() {
                // The committing stage stopped (cancelled or failed); its result says which.
                return Ok(());
            }
        }
        outcome?;
    }
    Ok(())
}

/// The next block of `stream`, or `None` once `cancel` fired.
async fn next_block(
    stream: &mut mpsc::Receiver<StreamerMessage>,
    cancel: &CancellationToken,
) -> Result<Option<StreamerMessage>, ListenError> {
    // Fast path while the streamer is ahead: a queued block is taken without registering
    // a cancellation waiter; the token is still checked before every block.
    if cancel.is_cancelled() {
        return Ok(None);
    }
    match stream.try_recv() {
        Ok(message) => Ok(Some(message)),
        Err(mpsc::error::TryRecvError::Disconnected) if cancel.is_cancelled() => Ok(None),
        Err(mpsc::error::TryRecvError::Disconnected) => Err(ListenError::StreamEnded),
        Err(mpsc::error::TryRecvError::Empty) => tokio::select! {
            biased;
            _ = cancel.cancelled() => Ok(None),
            message = stream.recv() => match message {
                Some(message) => Ok(Some(message)),
                None if cancel.is_cancelled() => Ok(None),
                None => Err(ListenError::StreamEnded),
            },
        },
    }
}

/// Whether the block at `next` is the one to apply after `committed`: false for a block
/// already applied, an error for a gap or for another block at the committed height.
fn comes_next(committed: Option<&Cursor>, next: &Cursor) -> Result<bool, ListenError> {
    let Some(committed) = committed else { return Ok(true) };
    let height = next.height;
    if height <= committed.height {
        if height == committed.height && next.block_hash != committed.block_hash {
            return Err(ListenError::ForkDetected {
                height,
                committed: committed.block_hash.to_hex(),
                got: next.block_hash.to_hex(),
            });
        }
        return Ok(false);
    }
    if height != committed.height + 1 {
        return Err(ListenError::Gap { expected: committed.height + 1, got: height });
    }
    Ok(true)
}

/// The second stage: writes each prepared batch in order and publishes its last
/// height, until `cancel` fires (never inside a write) or the first stage is done.
async fn commit_in_order(
    mut prepared: mpsc::Receiver<PreparedBlocks>,
    state: Arc<IndexerState>,
    cancel: CancellationToken,
    #[cfg_attr(not(feature = "test-hooks"), allow(unused_variables))] hooks: IndexerTestHooks,
) -> Result<(), ListenError> {
    #[cfg(feature = "test-hooks")]
    let mut committed_here = 0u64;
    // Taken all at once: one wake-up of the first stage per batch of freed slots.
    let mut ready = Vec::with_capacity(PREPARED_AHEAD);
    while prepared.recv_many(&mut ready, PREPARED_AHEAD).await > 0 {
        for blocks in ready.drain(..) {
            if cancel.is_cancelled() {
                return Ok(());
            }
            state.node_store.write(blocks.update)?;
            publish_committed(&state, &blocks.range);
            #[cfg(feature = "test-hooks")]
            {
                committed_here += blocks.range.blocks;
                if hooks.fail_listen_after_blocks.is_some_and(|limit| committed_here >= limit) {
                    tracing::warn!(height = blocks.range.last_height, "test hook: failing listen_blocks");
                    return Err(ListenError::StreamEnded);
                }
            }
        }
    }
    Ok(())
}

/// Counts committed blocks and publishes the last one's height.
fn publish_committed(state: &IndexerState, range: &BlockRange) {
    {
        let mut stats = state.stats();
        stats.first_height.get_or_insert(range.first_height());
        stats.last_height = Some(range.last_height);
        stats.blocks_indexed += range.blocks;
        stats.requests_indexed += range.requests;
    }
    crate::counters::count_blocks(range.blocks, range.requests);
    state.indexed_height.send_replace(Some(range.last_height));
}
