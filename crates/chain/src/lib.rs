//! An embedded sandbox chain: a small NEAR-like chain node on the real `near-async`
//! actor system, producing blocks with the real `near-indexer-primitives` view types
//! into its own RocksDB hot store.
//!
//! Why it exists: the real `near-indexer`/`nearcore` cannot be built here, yet the
//! node's lifecycle must be exercised against the same shape of system it meets in
//! production: an actor system, a store written block by block, a view client the
//! indexer polls. The chain is deterministic from a seed, so tests can compare what the
//! indexer recorded with what the chain produced.

mod actors;
mod client;
mod config;
mod follower;
pub mod host;
pub mod host_client;
mod node;
mod records;
mod schema;
mod store;
mod views;
pub mod workload;

#[cfg(feature = "test-hooks")]
pub use actors::FaultInjectionStore;
pub use actors::{
    BlockQuery, ContractView, GetChunk, GetOutcomes, GetStreamerMessage, GetStreamerMessages, StreamerMessages,
    ViewClientActor, ViewError,
};
pub use client::{ChainStatus, ClientActor, FINALITY_LAG, GetStatus};
pub use config::{
    ChainConfig, ChainMode, DEFAULT_IMAGE_HASH, ImageHashRevocation, NEXT_IMAGE_HASH, default_contract_id,
};
pub use node::{ChainError, ChainNode, ClientHandle, ViewClientHandle};
pub use schema::{CHAIN_SCHEMA_VERSION, chain_schema};
pub use store::{ChainStoreError, chain_head, open_chain_store, stored_streamer_message};
#[cfg(feature = "test-hooks")]
pub use store::{delete_outcomes_for_test, restore_outcomes_for_test, rewrite_as_v1_for_test};
