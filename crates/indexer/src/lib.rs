//! A near-indexer-shaped indexer over the embedded sandbox chain.
//!
//! The public surface mirrors upstream `near-indexer` ([`IndexerConfig`],
//! [`SyncModeEnum`], [`AwaitForNodeSyncedEnum`], [`Indexer::start_near_node`],
//! [`Indexer::from_near_node`], [`Indexer::streamer`]) so the lifecycle code is written
//! against the shape it meets in production. What differs is what upstream lacks: every
//! long-lived piece takes a `CancellationToken`, and [`spawn_indexer_thread`] drains
//! them in order so that, after the thread is joined, nothing holds a store.

mod config;
pub mod counters;
mod extract;
mod indexer;
mod listen_blocks;
mod monitors;
mod state;
mod streamer;
mod thread;

pub use config::{AwaitForNodeSyncedEnum, IndexerConfig, IndexerTestHooks, SyncModeEnum};
pub use extract::extract_block_effects;
pub use indexer::{Indexer, NearNode};
pub use listen_blocks::{ListenError, MAX_WRITES_PER_BATCH, listen_blocks};
pub use monitors::{MonitorIntervals, Observed};
pub use state::{IndexerState, IndexerStats, SharedStats};
pub use streamer::StreamerError;
pub use thread::{IndexerError, IndexerHandle, IndexerThreadParams, ThreadAlive, spawn_indexer_thread};

/// Tracker group of the indexer subsystem's stores (the chain hot store), so an
/// in-process restart can wait for exactly these to close.
pub const INDEXER_STORE_GROUP: &str = "indexer";
