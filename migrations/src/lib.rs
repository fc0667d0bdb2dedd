//! The node store's on-disk layout and its history.
//!
//! [`layout`] is the current format, used by the indexer and by `mpc-node check`. Each
//! `vN_to_vM_*` module is one version step, applied in order by the store's migration
//! runner when an older store is opened. Old formats can be written by [`legacy`]
//! (feature `legacy-writers`, test code only), so every step is tested from a real
//! old store.

pub mod layout;
#[cfg(feature = "legacy-writers")]
pub mod legacy;
mod v1_to_v2_cursor_fixed_width;
mod v2_to_v3_request_id_index;

use mpc_store::migration::Schema;

/// Schema version this binary writes for the node store.
pub const NODE_SCHEMA_VERSION: u32 = 3;

/// The node store's schema: every step from the oldest supported version to the latest.
pub fn node_schema() -> Schema {
    node_schema_with_chunk_size(v2_to_v3_request_id_index::chunk_size_from_env())
}

/// Like [`node_schema`] with an explicit chunk size for the resumable steps; small
/// chunks make interruption points frequent in tests.
pub fn node_schema_with_chunk_size(chunk_size: usize) -> Schema {
    Schema {
        latest: NODE_SCHEMA_VERSION,
        steps: vec![
            Box::new(v1_to_v2_cursor_fixed_width::CursorFixedWidth),
            Box::new(v2_to_v3_request_id_index::RequestIdIndex { chunk_size: chunk_size.max(1) }),
        ],
    }
}
