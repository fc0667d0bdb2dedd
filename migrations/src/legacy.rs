//! Writers of the node store's old formats, for tests only (feature `test-hooks`).
//! They write what the binary of that version wrote, so migrations are tested from
//! real old stores rather than from hand-made fragments.

use std::path::Path;
use std::sync::Arc;

use mpc_store::migration::bump_version;
use mpc_store::{Store, StoreOptions, StoreResult, StoreUpdate};

use crate::layout::{BlockEffects, BlockEncoding, block_update_encoded};

/// Creates a store at `path` with schema `version` (1, 2 or 3) holding `blocks`.
pub fn write_store(path: &Path, version: u32, blocks: &[BlockEffects]) -> StoreResult<()> {
    let store = Store::open(path, &StoreOptions::new("legacy-writer", "test"))?;
    let mut update = StoreUpdate::new();
    bump_version(&mut update, version);
    store.commit(update)?;
    append_blocks(&store, version, blocks)?;
    // In table files, not left in the WAL as a close leaves it: the open that migrates
    // this store then spends its first milliseconds on the migration, which is where
    // the crash tests kill it, not on replaying the writes.
    store.flush()
}

/// Appends `blocks` to an open store in the format of `version`, one batch per block.
pub fn append_blocks(store: &Arc<Store>, version: u32, blocks: &[BlockEffects]) -> StoreResult<()> {
    let encoding = BlockEncoding::of_version(version);
    let mut applied = crate::layout::read_applied_requests(store)?;
    for effects in blocks {
        store.commit(block_update_encoded(effects, applied, encoding))?;
        applied += effects.requests.len() as u64;
    }
    Ok(())
}

/// Synthetic blocks for tests: block `h` carries `requests_per_block` requests and
/// answers the requests of block `h - 3`, like the sandbox chain.
pub fn synthetic_blocks(heights: std::ops::RangeInclusive<u64>, requests_per_block: u32) -> Vec<BlockEffects> {
    use crate::layout::{Cursor, Hash32, SignRequestRecord, SignResponseRecord};
    let id = |height: u64, index: u32| {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&height.to_be_bytes());
        bytes[8..12].copy_from_slice(&index.to_be_bytes());
        bytes[31] = 0xaa;
        Hash32(bytes)
    };
    heights
        .map(|height| {
            let mut hash = [0u8; 32];
            hash[..8].copy_from_slice(&height.to_le_bytes());
            hash[31] = 0x5b;
            BlockEffects {
                cursor: Cursor { height, block_hash: Hash32(hash) },
                requests: (0..requests_per_block)
                    .map(|index| SignRequestRecord {
                        request_id: id(height, index),
                        predecessor_id: format!("user{index}.test"),
                        payload: format!("{height:016x}{index:08x}"),
                        path: format!("m/{index}"),
                        height,
                    })
                    .collect(),
                responses: if height > 3 {
                    (0..requests_per_block)
                        .map(|index| SignResponseRecord { request_id: id(height - 3, index), height })
                        .collect()
                } else {
                    Vec::new()
                },
            }
        })
        .collect()
}
