//! State shared by the indexer's tasks.

use std::sync::Mutex;
use std::time::Instant;

use mpc_chain::{ClientHandle, ViewClientHandle};
use mpc_store::StoreHolder;
use near_indexer_primitives::types::AccountId;
use tokio::sync::watch;

/// Progress counters, updated by `listen_blocks` and the stats logger.
#[derive(Debug, Clone)]
pub struct IndexerStats {
    /// When indexing started (this thread).
    pub started: Instant,
    /// First height indexed by this thread.
    pub first_height: Option<u64>,
    /// Last height committed.
    pub last_height: Option<u64>,
    /// Blocks committed by this thread.
    pub blocks_indexed: u64,
    /// Requests committed by this thread.
    pub requests_indexed: u64,
    /// Latest chain head seen.
    pub chain_head: u64,
    /// Blocks per second over the last stats interval.
    pub blocks_per_s: f64,
}

impl IndexerStats {
    /// Counters of a thread that starts indexing now.
    pub fn starting_now() -> Self {
        IndexerStats {
            started: Instant::now(),
            first_height: None,
            last_height: None,
            blocks_indexed: 0,
            requests_indexed: 0,
            chain_head: 0,
            blocks_per_s: 0.0,
        }
    }
}

/// Progress counters shared by the indexer's tasks and the node's metrics. Separate from
/// `IndexerState` on purpose: the node may keep this after the thread is gone, while
/// nothing outside the thread may keep `IndexerState` (it holds a store).
pub type SharedStats = std::sync::Arc<Mutex<IndexerStats>>;

/// What every indexer task shares, behind one `Arc`. Upstream's equivalent kept
/// RocksDB alive forever because nothing cancelled its holders; here every task that
/// holds a clone also holds a child token, and the indexer thread waits for them all
/// before it returns, so after the join this is dropped and its store holder with it.
pub struct IndexerState {
    /// Client actor (chain status).
    pub client: ClientHandle,
    /// View-client actor (blocks, chunks, outcomes, contract views).
    pub view_client: ViewClientHandle,
    /// The MPC contract account.
    pub contract_id: AccountId,
    /// Progress counters.
    pub stats: SharedStats,
    /// The node store, named for diagnostics.
    pub node_store: StoreHolder,
    /// Height of the last committed block, for readiness and metrics.
    pub indexed_height: watch::Sender<Option<u64>>,
}

impl IndexerState {
    /// Locks the stats; a panic elsewhere never leaves them unusable.
    pub fn stats(&self) -> std::sync::MutexGuard<'_, IndexerStats> {
        self.stats.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
