//! The chain store's schema history: which version writes which encoding, and the steps
//! between versions.
//!
//! - v1: blocks, chunks and outcomes stored as JSON views.
//! - v2: stored as compact records (`crate::records`); JSON values of v1 stay and are
//!   read as such, so the step only bumps the version. It exists so that an older
//!   binary refuses a store holding records instead of failing on the first one.
//!
//! The previous release, rebuilt for the upgrade-rollout tests (`previous_release`
//! cfg, see `migrations/build.rs`), writes v1.

use mpc_store::migration::{MigrationStep, Schema, bump_version};
use mpc_store::{Store, StoreResult, StoreUpdate};
use tokio_util::sync::CancellationToken;

/// Schema version of the chain store this binary writes.
#[cfg(not(previous_release))]
pub const CHAIN_SCHEMA_VERSION: u32 = 2;
/// Schema version of the chain store this binary writes.
#[cfg(previous_release)]
pub const CHAIN_SCHEMA_VERSION: u32 = 1;

/// How blocks, chunks and outcomes are encoded in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueEncoding {
    /// JSON views (schema v1).
    Json,
    /// Tagged compact records (schema v2 and later).
    Record,
}

impl ValueEncoding {
    /// What a binary at schema `version` writes.
    pub(crate) fn of_version(version: u32) -> Self {
        if version >= 2 { ValueEncoding::Record } else { ValueEncoding::Json }
    }

    /// What this binary writes.
    pub(crate) fn current() -> Self {
        Self::of_version(CHAIN_SCHEMA_VERSION)
    }
}

/// The chain store's schema: the runner refuses a store written by a newer binary and
/// applies the steps to an older one.
pub fn chain_schema() -> Schema {
    let mut steps: Vec<Box<dyn MigrationStep>> = Vec::new();
    if CHAIN_SCHEMA_VERSION >= 2 {
        steps.push(Box::new(CompactRecords));
    }
    Schema { latest: CHAIN_SCHEMA_VERSION, steps }
}

/// v1 -> v2: new blocks are written as records; nothing stored is rewritten.
struct CompactRecords;

impl MigrationStep for CompactRecords {
    fn source_version(&self) -> u32 {
        1
    }

    fn description(&self) -> &'static str {
        "store new blocks as compact records (stored JSON blocks stay and are still read)"
    }

    fn run(&self, store: &Store, _cancel: &CancellationToken) -> StoreResult<()> {
        let mut update = StoreUpdate::new();
        bump_version(&mut update, 2);
        store.commit(update)
    }
}
