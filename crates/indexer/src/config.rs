//! Indexer settings, in the shape of upstream `near_indexer::IndexerConfig`.

use std::path::PathBuf;
use std::time::Duration;

use mpc_chain::ChainConfig;
use near_indexer_primitives::types::Finality;

/// Where the stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncModeEnum {
    /// From the latest final block at start.
    LatestSynced,
    /// From the block after the node store's committed cursor (from block 1 on a new
    /// store), so every block is applied exactly once across restarts and crashes.
    FromInterruption,
    /// From this height.
    BlockHeight(u64),
}

/// Whether to stream while the chain node is still catching up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwaitForNodeSyncedEnum {
    /// Wait until the node reports it is synced.
    WaitForFullSync,
    /// Stream blocks as soon as they are stored.
    StreamWhileSyncing,
}

/// Indexer settings.
#[derive(Debug, Clone)]
pub struct IndexerConfig {
    /// Node home; the chain store lives in `<home_dir>/data`.
    pub home_dir: PathBuf,
    /// Where the stream starts.
    pub sync_mode: SyncModeEnum,
    /// Whether to stream while syncing.
    pub await_for_node_synced: AwaitForNodeSyncedEnum,
    /// Which blocks count as available to stream.
    pub finality: Finality,
    /// The embedded chain's settings.
    pub chain: ChainConfig,
    /// Capacity of the streamer channel: how far the streamer may run ahead of
    /// `listen_blocks`. Bounded, so a slow consumer slows the streamer down.
    pub streamer_buffer: usize,
    /// Pause between polls of the chain head when there is nothing new.
    pub poll_interval: Duration,
    /// Attempts to fetch one block before the streamer gives up with an error.
    pub max_fetch_attempts: u32,
    /// Fault hooks for process tests (empty unless built with feature `test-hooks`).
    pub test_hooks: IndexerTestHooks,
}

/// Fault hooks for process tests, filled in once by the node at start. Without feature
/// `test-hooks` the type has no fields, so production code cannot set or read one.
#[derive(Debug, Clone, Default)]
pub struct IndexerTestHooks {
    /// The monitor with this name ignores cancellation (tests the shutdown deadline).
    #[cfg(feature = "test-hooks")]
    pub hang_monitor: Option<String>,
    /// `listen_blocks` fails after committing this many blocks (tests the restart
    /// policy).
    #[cfg(feature = "test-hooks")]
    pub fail_listen_after_blocks: Option<u64>,
}

impl IndexerConfig {
    /// Settings for the node at `home_dir` on the chain `chain`.
    pub fn new(home_dir: PathBuf, chain: ChainConfig) -> Self {
        IndexerConfig {
            home_dir,
            sync_mode: SyncModeEnum::FromInterruption,
            await_for_node_synced: AwaitForNodeSyncedEnum::StreamWhileSyncing,
            finality: Finality::Final,
            chain,
            streamer_buffer: 100,
            poll_interval: Duration::from_millis(20),
            max_fetch_attempts: 10,
            test_hooks: IndexerTestHooks::default(),
        }
    }

    /// Directory of the chain's hot store.
    pub fn chain_data_dir(&self) -> PathBuf {
        self.home_dir.join("data")
    }
}
