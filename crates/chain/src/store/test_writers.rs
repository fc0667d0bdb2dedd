//! Writers that damage or downgrade a chain store, for tests only (feature
//! `test-hooks`): the "receipt missing" fault of the upstream indexer, and a store
//! rewritten as the previous release wrote it.

use std::path::Path;

use mpc_store::{Column, Store, StoreOptions, StoreResult, StoreUpdate};

use super::read::{read_block, read_chunk, read_outcomes};
use super::{ChainStoreError, decode_u64, outcome_key};

/// Deletes the stored outcomes of one shard of one block, returning them: the "receipt
/// missing" fault of the upstream indexer.
pub fn delete_outcomes_for_test(store: &Store, height: u64, shard: usize) -> StoreResult<Option<Vec<u8>>> {
    let previous = store.get(Column::Outcomes, outcome_key(height, shard))?;
    let mut update = StoreUpdate::new();
    update.delete(Column::Outcomes, outcome_key(height, shard));
    store.commit(update)?;
    Ok(previous)
}

/// Puts back what [`delete_outcomes_for_test`] removed.
pub fn restore_outcomes_for_test(store: &Store, height: u64, shard: usize, bytes: &[u8]) -> StoreResult<()> {
    let mut update = StoreUpdate::new();
    update.put(Column::Outcomes, outcome_key(height, shard), bytes);
    store.commit(update)
}

/// Rewrites the chain store at `path` as a binary of schema v1 would have written it:
/// every block, chunk and outcome list as its JSON view, version 1.
pub fn rewrite_as_v1_for_test(path: &Path) -> Result<(), ChainStoreError> {
    let store = Store::open(path, &StoreOptions::new("chain", "legacy-writer"))?;
    let mut update = StoreUpdate::new();
    for entry in store.iter(Column::Blocks, None)? {
        let (key, _) = entry?;
        let height = decode_u64(&store, "block key", &key)?;
        let Some(block) = read_block(&store, height)? else { continue };
        for (shard, header) in block.chunks.iter().enumerate() {
            if let Some(chunk) = read_chunk(&store, &header.chunk_hash)? {
                update.put_json(Column::Chunks, header.chunk_hash.0, &chunk);
            }
            if let Some(outcomes) = read_outcomes(&store, height, shard)? {
                update.put_json(Column::Outcomes, outcome_key(height, shard), &outcomes);
            }
        }
        update.put_json(Column::Blocks, key, &block);
    }
    mpc_store::migration::bump_version(&mut update, 1);
    store.commit(update)?;
    Ok(store.flush()?)
}
