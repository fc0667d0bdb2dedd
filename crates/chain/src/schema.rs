//! The chain store's schema history: which version writes which encoding, and the steps
//! between versions.
//!
//! - v1: blocks, chunks and outcomes stored as JSON views.
//! - v2: stored as compact records (`crate::records`); JSON values of v1 stay and are
//!   read as such, so the step only bumps the version. It exists so that an older
//!   binary refuses a store holding records instead of failing on the first one.
//! - v3: a block and its chunks as one bundle under the height (`crate::records`); the
//!   values of v1 and v2 stay and are read as such, so again the step only bumps the
//!   version.
//! - v4: a shard's outcomes mark may list receipts that failed (transactions a chain
//!   host's contract refused), and each block's contract changes are kept under its
//!   height, for the nodes that sync from a host. Nothing stored changes meaning, so
//!   the step only bumps the version: a v3 binary would misread such a mark.
//!
//! The previous release, rebuilt for the upgrade-rollout tests (`previous_release`
//! cfg, see `migrations/build.rs`), writes v1.

use mpc_store::migration::{MigrationStep, Schema, bump_version};
use mpc_store::{Store, StoreResult, StoreUpdate};
use tokio_util::sync::CancellationToken;

/// Schema version of the chain store this binary writes.
#[cfg(not(previous_release))]
pub const CHAIN_SCHEMA_VERSION: u32 = 4;
/// Schema version of the chain store this binary writes.
#[cfg(previous_release)]
pub const CHAIN_SCHEMA_VERSION: u32 = 1;

/// How blocks, chunks and outcomes are encoded in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueEncoding {
    /// JSON views (schema v1).
    Json,
    /// Tagged compact records, one per block, chunk and shard's outcomes (schema v2).
    Record,
    /// A bundle of block and chunks per height (schema v3 and later).
    Bundle,
}

impl ValueEncoding {
    /// What a binary at schema `version` writes.
    pub(crate) fn of_version(version: u32) -> Self {
        match version {
            0 | 1 => ValueEncoding::Json,
            2 => ValueEncoding::Record,
            // v4 adds failure marks and contract changes to v3's bundles.
            _ => ValueEncoding::Bundle,
        }
    }

    /// What this binary writes.
    pub(crate) fn current() -> Self {
        Self::of_version(CHAIN_SCHEMA_VERSION)
    }
}

/// The chain store's schema: the runner refuses a store written by a newer binary and
/// applies the steps to an older one.
pub fn chain_schema() -> Schema {
    let changes = [
        EncodingChange {
            source_version: 1,
            description: "store new blocks as compact records (stored JSON blocks stay and are still read)",
        },
        EncodingChange {
            source_version: 2,
            description: "store new blocks with their chunks as one bundle (stored blocks stay and are still read)",
        },
        EncodingChange {
            source_version: 3,
            description: "keep failed receipts and each block's contract changes (stored blocks stay and are still read)",
        },
    ];
    let steps = changes
        .into_iter()
        .filter(|change| change.source_version < CHAIN_SCHEMA_VERSION)
        .map(|change| Box::new(change) as Box<dyn MigrationStep>)
        .collect();
    Schema::new(CHAIN_SCHEMA_VERSION, steps)
}

/// A step to a new value encoding: new blocks are written in it from then on and
/// nothing stored is rewritten (every older encoding is still read), so the step only
/// bumps the version, which makes an older binary refuse the store.
struct EncodingChange {
    source_version: u32,
    description: &'static str,
}

impl MigrationStep for EncodingChange {
    fn source_version(&self) -> u32 {
        self.source_version
    }

    fn description(&self) -> &'static str {
        self.description
    }

    fn run(&self, store: &Store, _cancel: &CancellationToken) -> StoreResult<()> {
        let mut update = StoreUpdate::new();
        bump_version(&mut update, self.source_version + 1);
        store.commit(update)
    }
}
