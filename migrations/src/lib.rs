//! The node store's on-disk layout and its history.
//!
//! [`layout`] is the current format, used by the indexer and by `mpc-node check`. Each
//! `vN_to_vM_*` module is one version step, applied in order by the store's migration
//! runner when an older store is opened. Old formats can be written by [`legacy`]
//! (feature `test-hooks`, test code only), so every step is tested from a real
//! old store.

pub mod layout;
#[cfg(feature = "test-hooks")]
pub mod legacy;
mod v1_to_v2_cursor_fixed_width;
mod v2_to_v3_request_id_index;

use mpc_store::migration::{MigrationStep, Schema};

/// Schema version this binary writes for the node store.
#[cfg(not(previous_release))]
pub const NODE_SCHEMA_VERSION: u32 = 3;

/// Schema version the previous release wrote: only in the build the upgrade-rollout tests
/// run as the old image (`MPC_BUILD_PREVIOUS_RELEASE=1`, see `build.rs`).
#[cfg(previous_release)]
pub const NODE_SCHEMA_VERSION: u32 = 2;

/// Entries per batch of the resumable steps unless the operator sets another size: small
/// enough that a batch commits in a few milliseconds, so cancellation is prompt.
pub const DEFAULT_MIGRATION_CHUNK_SIZE: u64 = 2_000;

/// The node store's schema: every step from the oldest supported version to the latest.
pub fn node_schema() -> Schema {
    node_schema_with_chunk_size(DEFAULT_MIGRATION_CHUNK_SIZE)
}

/// Like [`node_schema`] with an explicit batch size for the resumable steps; smaller
/// batches make cancellation points more frequent.
pub fn node_schema_with_chunk_size(chunk_size: u64) -> Schema {
    let chunk_size = usize::try_from(chunk_size).unwrap_or(usize::MAX);
    let steps: Vec<Box<dyn MigrationStep>> = vec![
        Box::new(v1_to_v2_cursor_fixed_width::CursorFixedWidth),
        Box::new(v2_to_v3_request_id_index::RequestIdIndex { chunk_size: chunk_size.max(1) }),
    ];
    Schema::new(
        NODE_SCHEMA_VERSION,
        steps.into_iter().filter(|step| step.source_version() < NODE_SCHEMA_VERSION).collect(),
    )
}
