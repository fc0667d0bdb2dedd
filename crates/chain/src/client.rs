//! The chain's client actor on the `near-async` actor system: it brings blocks into the
//! chain store, each as one batch, so a SIGKILL leaves the store at a block boundary.
//!
//! How depends on the chain's mode ([`ChainMode`]): the embedded chain produces each
//! block from the workload; a chain host produces each block from the workload and its
//! pooled transactions, applied to the contract; a follower applies the blocks its sync
//! task fetched from the host ([`ApplySyncedBlocks`]), after checking that each follows
//! its head. All three first catch up (history, or the host's head) as fast as they can,
//! then keep pace: a block per interval, or as the host produces them.

use mpc_store::StoreHolder;
use near_async::futures::{DelayedActionRunner, DelayedActionRunnerExt};
use near_async::messaging::{Actor, Handler};
use tokio::sync::watch;

use crate::config::{ChainConfig, ChainMode};
use crate::host::{SyncError, SyncedBlock};
use crate::records::BlockRecord;
use crate::schema::ValueEncoding;
use crate::store::{block_record, block_update, write_block};

/// Blocks produced per actor message while catching up history: enough for speed, few
/// enough that a stop request is seen within milliseconds.
const HISTORY_BLOCKS_PER_MESSAGE: u64 = 32;

/// Heads behind the latest block that count as final, like NEAR's doomslug finality.
pub const FINALITY_LAG: u64 = 2;

/// Brings blocks into the chain store, as its mode says.
pub struct ClientActor {
    store: StoreHolder,
    config: ChainConfig,
    /// The stored head: its height and record (`None` before a follower's genesis).
    head: Option<BlockRecord>,
    /// The hash of the block before the head (a host block names it as final).
    before_head: [u8; 32],
    /// Produce history up to this height as fast as possible; for a follower, the
    /// host's head as it last said.
    target: u64,
    /// Why the chain stopped: its store failed. The indexer restarts over it.
    failure: Option<String>,
    /// Why a follower's last sync failed (the host down, an answer refused): the node
    /// waits and retries, not ready meanwhile.
    sync_failure: Option<String>,
    head_height: watch::Sender<u64>,
}

impl ClientActor {
    /// A client continuing from the store's head; history (or catching up with a host)
    /// goes up to `target`. `head_height` is told every new head.
    pub(crate) fn new(
        store: StoreHolder,
        config: ChainConfig,
        target: u64,
        head_height: watch::Sender<u64>,
    ) -> Result<Self, mpc_store::StoreError> {
        let height = crate::store::chain_head(&store)?;
        let head = match height {
            Some(height) => block_record(&store, height)?,
            None => None,
        };
        let before_head = match height.and_then(|height| height.checked_sub(1)) {
            Some(before) => block_record(&store, before)?.map_or([0; 32], |record| record.hash),
            None => [0; 32],
        };
        head_height.send_replace(height.unwrap_or(0));
        Ok(ClientActor { store, config, head, before_head, target, failure: None, sync_failure: None, head_height })
    }

    /// The height of the stored head (0 before genesis).
    fn head_height(&self) -> u64 {
        match &self.head {
            Some(head) => head.height,
            None => crate::store::chain_head(&self.store).ok().flatten().unwrap_or(0),
        }
    }

    fn schedule(ctx: &mut dyn DelayedActionRunner<Self>, delay: std::time::Duration) {
        let delay = near_async::time::Duration::try_from(delay).unwrap_or(near_async::time::Duration::ZERO);
        ctx.run_later("produce_blocks", delay, |actor, ctx| actor.produce(ctx));
    }

    fn produce(&mut self, ctx: &mut dyn DelayedActionRunner<Self>) {
        let catching_up = self.head_height() < self.target;
        let count = if catching_up { (self.target - self.head_height()).min(HISTORY_BLOCKS_PER_MESSAGE) } else { 1 };
        for _ in 0..count {
            let height = self.head_height() + 1;
            if let Err(err) = self.produce_one(height) {
                tracing::error!(height, error = %err, "sandbox chain failed to store a block; block production stopped");
                self.failure = Some(err.to_string());
                return;
            }
        }
        let delay =
            if self.head_height() < self.target { std::time::Duration::ZERO } else { self.config.block_interval };
        Self::schedule(ctx, delay);
    }

    /// Produces and stores block `height`, as one batch.
    fn produce_one(&mut self, height: u64) -> Result<(), mpc_store::StoreError> {
        match &self.config.mode {
            ChainMode::Host(_) => {
                let previous = self.head.clone().ok_or_else(|| mpc_store::StoreError::Decode {
                    path: self.store.path().to_path_buf(),
                    what: "chain head".into(),
                    detail: "a host's store has no genesis".into(),
                })?;
                let (produced, rest) =
                    crate::host::produce(&self.store, &self.config, height, &previous, self.before_head)?;
                let mut update = block_update(&produced, ValueEncoding::current());
                update.append(rest);
                self.store.commit(update)?;
                self.advance(produced.block);
            }
            ChainMode::Embedded => {
                write_block(&self.store, &self.config, height)?;
                self.advance(BlockRecord { height, ..block_record_placeholder() });
            }
            ChainMode::Follower { .. } => {}
        }
        Ok(())
    }

    /// Makes `block`, just stored, the head.
    fn advance(&mut self, block: BlockRecord) {
        if let Some(previous) = &self.head {
            self.before_head = previous.hash;
        }
        self.head_height.send_replace(block.height);
        self.head = Some(block);
    }
}

/// The head record of the embedded chain is not read back (its hashes are the
/// workload's); only its height is kept.
fn block_record_placeholder() -> BlockRecord {
    BlockRecord {
        height: 0,
        prev_height: None,
        hash: [0; 32],
        prev_hash: [0; 32],
        timestamp_ns: 0,
        last_final_block: [0; 32],
        last_ds_final_block: [0; 32],
        author: String::new(),
        chunks: Vec::new(),
    }
}

impl Actor for ClientActor {
    fn start_actor(&mut self, ctx: &mut dyn DelayedActionRunner<Self>) {
        if !matches!(self.config.mode, ChainMode::Follower { .. }) {
            Self::schedule(ctx, std::time::Duration::ZERO);
        }
    }
}

/// Asks the client for the chain's status.
#[derive(Debug)]
pub struct GetStatus;

/// The chain's status, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainStatus {
    /// Height of the latest stored block.
    pub head_height: u64,
    /// Height of the latest final block.
    pub final_height: u64,
    /// True while history is still being produced, or the host is ahead (the node is
    /// catching up).
    pub syncing: bool,
    /// Height the history phase ends at; for a follower, the host's head as it last said.
    pub history_target: u64,
    /// Why block production (or storing a synced block) stopped: the chain's store failed.
    pub failure: Option<String>,
    /// Why a follower's last sync from its host failed; cleared by the next success.
    pub sync_failure: Option<String>,
}

impl Handler<GetStatus, ChainStatus> for ClientActor {
    fn handle(&mut self, _: GetStatus) -> ChainStatus {
        let head = self.head_height();
        ChainStatus {
            head_height: head,
            final_height: head.saturating_sub(FINALITY_LAG),
            syncing: head < self.target,
            history_target: self.target,
            failure: self.failure.clone(),
            sync_failure: self.sync_failure.clone(),
        }
    }
}

/// A follower's blocks, fetched from the host, to check and store in order, each as one
/// batch; `host_head` is the host's head when it answered.
#[derive(Debug)]
pub struct ApplySyncedBlocks {
    /// The blocks after the follower's head, in order.
    pub blocks: Vec<SyncedBlock>,
    /// The host's head.
    pub host_head: u64,
}

/// What a follower's sync task needs to ask for the next blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncHead {
    /// The stored head, `None` before genesis.
    pub height: Option<u64>,
    /// Blocks stored by this message.
    pub applied: usize,
}

impl Handler<ApplySyncedBlocks, Result<SyncHead, SyncError>> for ClientActor {
    fn handle(&mut self, message: ApplySyncedBlocks) -> Result<SyncHead, SyncError> {
        self.target = message.host_head;
        let mut applied = 0;
        for synced in message.blocks {
            let head = self.head.as_ref().map(|head| (head.height, head.hash));
            let produced = synced.into_produced(head).inspect_err(|err| self.sync_failure = Some(err.to_string()))?;
            if let Err(err) = self.store.commit(block_update(&produced, ValueEncoding::current())) {
                let failed = SyncError::Store { height: produced.block.height, detail: err.to_string() };
                self.failure = Some(failed.to_string());
                return Err(failed);
            }
            self.advance(produced.block);
            applied += 1;
        }
        self.sync_failure = None;
        Ok(SyncHead { height: self.head.as_ref().map(|head| head.height), applied })
    }
}

/// The follower's sync task failed to reach the host (or got an answer it refused):
/// the status says why until the next sync succeeds.
#[derive(Debug)]
pub struct SyncFailed(pub String);

impl Handler<SyncFailed> for ClientActor {
    fn handle(&mut self, message: SyncFailed) {
        self.sync_failure = Some(message.0);
    }
}

/// Asks a follower's client for its head, before the next fetch.
#[derive(Debug)]
pub struct GetSyncHead;

impl Handler<GetSyncHead, Option<u64>> for ClientActor {
    fn handle(&mut self, _: GetSyncHead) -> Option<u64> {
        self.head.as_ref().map(|head| head.height)
    }
}
