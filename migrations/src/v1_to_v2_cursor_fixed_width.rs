//! v1 -> v2: the indexer cursor, a decimal height string in v1, becomes 8 bytes of
//! big-endian height plus the 32-byte block hash, so a resume can verify it continues
//! the same chain. The hash comes from the block's `IndexedBlocks` record. Small: the
//! whole effect and the version bump are one batch.

use mpc_store::migration::{MigrationStep, bump_version};
use mpc_store::{Column, Store, StoreError, StoreResult, StoreUpdate};
use tokio_util::sync::CancellationToken;

use crate::layout::{CURSOR_KEY, Cursor, IndexedBlockRecord, height_key};

/// The v1 -> v2 step.
pub(crate) struct CursorFixedWidth;

impl MigrationStep for CursorFixedWidth {
    fn source_version(&self) -> u32 {
        1
    }

    fn description(&self) -> &'static str {
        "re-encode the indexer cursor from a decimal height to fixed-width height + block hash"
    }

    fn run(&self, store: &Store, _cancel: &CancellationToken) -> StoreResult<()> {
        let mut update = StoreUpdate::new();
        if let Some(raw) = store.get(Column::Misc, CURSOR_KEY)? {
            let decode_error = |detail: String| StoreError::Decode {
                path: store.path().to_path_buf(),
                what: "v1 indexer cursor".into(),
                detail,
            };
            let text = std::str::from_utf8(&raw).map_err(|err| decode_error(err.to_string()))?;
            let height: u64 = text.trim().parse().map_err(|_| decode_error(format!("not a height: {text:?}")))?;
            let block: IndexedBlockRecord = store
                .get_json(Column::IndexedBlocks, height_key(height))?
                .ok_or_else(|| decode_error(format!("no indexed block at cursor height {height}")))?;
            update.put(Column::Misc, CURSOR_KEY, Cursor { height, block_hash: block.block_hash }.encode());
        }
        bump_version(&mut update, 2);
        store.commit(update)
    }
}
