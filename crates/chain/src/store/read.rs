//! Reading the chain store's values in the current encoding (a block and its chunks as
//! one bundle, schema v3; its shards' outcome marks, which since v4 may list failed
//! receipts) into the views the view client serves; values of older schemas go to
//! `legacy_read`.

use borsh::BorshDeserialize;
use mpc_store::{Column, Store, StoreResult};
use near_indexer_primitives::views::BlockView;
use near_indexer_primitives::{CryptoHash, IndexerChunkView, IndexerExecutionOutcomeWithReceipt};

use super::legacy_read::older_view;
use super::{decode, decode_error, outcome_key};
use crate::records::{
    BlockBundle, BlockRecord, ChunkLocation, ChunkRecord, OutcomesRecord, ReceiptFailure, StoredValue,
};
use crate::views::{block_view, chunk_view, outcomes_view};

/// The bundle of block `height` (schema v3), or `None` if that block is missing or was
/// stored by an older schema.
pub(super) fn read_bundle(store: &Store, height: u64) -> StoreResult<Option<BlockBundle>> {
    match store.get(Column::Blocks, height.to_be_bytes())? {
        Some(bytes) => match StoredValue::of(&bytes) {
            StoredValue::Bundle(bundle) => decode(store, "block", bundle).map(Some),
            _ => Ok(None),
        },
        None => Ok(None),
    }
}

/// The bundle of block `height`, which a v3 entry (chunk location, outcomes mark) named
/// `what` points to: a decode error if that block is not stored as a bundle.
fn pointed_bundle(store: &Store, height: u64, what: &str) -> StoreResult<BlockBundle> {
    read_bundle(store, height)?
        .ok_or_else(|| decode_error(store, what, "points at a block that is not stored as a bundle"))
}

/// The chunk at `index` of `bundle`, which a v3 entry named `what` points to.
fn chunk_at(store: &Store, bundle: BlockBundle, index: usize, what: &str) -> StoreResult<ChunkRecord> {
    bundle.chunks.into_iter().nth(index).ok_or_else(|| decode_error(store, what, "points past the chunks of its block"))
}

/// The view of a shard's outcomes: the chunk's receipts, executed in the block, each
/// succeeded unless its outcomes mark `mark` lists it as failed.
pub(super) fn outcomes_of(
    store: &Store,
    block_hash: [u8; 32],
    chunk: &ChunkRecord,
    mark: &[u8],
) -> StoreResult<Vec<IndexerExecutionOutcomeWithReceipt>> {
    let failures = failures_in(store, mark)?;
    outcomes_view(OutcomesRecord { block_hash, receipts: chunk.receipts.clone() }, &failures)
        .map_err(|err| decode_error(store, "execution outcomes", err))
}

/// The failed receipts an outcomes mark lists (none for a plain mark).
fn failures_in(store: &Store, mark: &[u8]) -> StoreResult<Vec<ReceiptFailure>> {
    match StoredValue::of(mark) {
        StoredValue::Failures(failures) => decode(store, "outcomes mark", failures),
        _ => Ok(Vec::new()),
    }
}

/// The bundle of block `height` (the encoding of schema v3 and later), for a host that
/// serves the block to its followers.
pub(crate) fn block_bundle(store: &Store, height: u64) -> StoreResult<Option<BlockBundle>> {
    read_bundle(store, height)
}

/// The outcome marks of the `shards` shards of block `height`, in shard order (an empty
/// mark for a shard without one).
pub(crate) fn outcome_marks(store: &Store, height: u64, shards: usize) -> StoreResult<Vec<Vec<u8>>> {
    (0..shards).map(|shard| Ok(store.get(Column::Outcomes, outcome_key(height, shard))?.unwrap_or_default())).collect()
}

/// The record of block `height` stored as a bundle (a chain host's blocks always are).
pub(crate) fn block_record(store: &Store, height: u64) -> StoreResult<Option<BlockRecord>> {
    Ok(read_bundle(store, height)?.map(|bundle| bundle.block))
}

/// The stored block at `height`.
pub(crate) fn read_block(store: &Store, height: u64) -> StoreResult<Option<BlockView>> {
    match store.get(Column::Blocks, height.to_be_bytes())? {
        Some(bytes) => block_of(store, &bytes).map(Some),
        None => Ok(None),
    }
}

/// The view of a value of the `Blocks` column, in any schema's encoding.
pub(super) fn block_of(store: &Store, bytes: &[u8]) -> StoreResult<BlockView> {
    match StoredValue::of(bytes) {
        // The bundle starts with the block: the chunks after it need not be decoded.
        StoredValue::Bundle(mut bundle) => {
            let block = BlockRecord::deserialize(&mut bundle).map_err(|err| decode_error(store, "block", err))?;
            block_view(&block).map_err(|err| decode_error(store, "block", err))
        }
        _ => older_view(store, "block", bytes, |record: BlockRecord| block_view(&record)),
    }
}

/// The stored chunk with `hash`.
pub(crate) fn read_chunk(store: &Store, hash: &CryptoHash) -> StoreResult<Option<IndexerChunkView>> {
    let Some(bytes) = store.get(Column::Chunks, hash.0)? else {
        return Ok(None);
    };
    let view = match StoredValue::of(&bytes) {
        StoredValue::Bundle(location) => {
            let location: ChunkLocation = decode(store, "chunk location", location)?;
            let bundle = pointed_bundle(store, location.height, "chunk location")?;
            let chunk = chunk_at(store, bundle, location.index as usize, "chunk location")?;
            chunk_view(chunk).map_err(|err| decode_error(store, "chunk", err))?
        }
        _ => older_view(store, "chunk", &bytes, chunk_view)?,
    };
    Ok(Some(view))
}

/// The stored receipt execution outcomes of one shard of one block.
pub(crate) fn read_outcomes(
    store: &Store,
    height: u64,
    shard: usize,
) -> StoreResult<Option<Vec<IndexerExecutionOutcomeWithReceipt>>> {
    let Some(bytes) = store.get(Column::Outcomes, outcome_key(height, shard))? else {
        return Ok(None);
    };
    match StoredValue::of(&bytes) {
        StoredValue::Bundle(_) | StoredValue::Failures(_) => {
            let bundle = pointed_bundle(store, height, "execution outcomes")?;
            let block_hash = bundle.block.hash;
            let chunk = chunk_at(store, bundle, shard, "execution outcomes")?;
            outcomes_of(store, block_hash, &chunk, &bytes).map(Some)
        }
        _ => older_view(store, "execution outcomes", &bytes, |outcomes| outcomes_view(outcomes, &[])).map(Some),
    }
}

/// The stored value of a contract view method.
pub(crate) fn read_contract_view(store: &Store, method: &str) -> StoreResult<Option<serde_json::Value>> {
    store.get_json(Column::ContractState, method)
}

#[cfg(test)]
mod tests {
    use mpc_store::StoreUpdate;
    use serde_json::Value;

    use super::*;
    use crate::records::{BUNDLE_TAG, RECORD_TAG, encode, produce_block};
    use crate::schema::ValueEncoding;
    use crate::store::read_streamer_message;
    use crate::store::test_support::{golden_config, message_json, open_test_store};
    use crate::store::write::block_update;
    use crate::workload;

    /// What the chain served before it stored records (JSON views written by schema v1,
    /// produced by the code of that time) is what it serves from the records of v2 and
    /// the bundles of v3, whether a block is read whole or a chunk or a shard's
    /// outcomes alone: the records hold every field that varies, the view builder
    /// every constant.
    #[test]
    fn records_and_bundles_serve_the_views_the_json_store_served() {
        let golden: Value =
            serde_json::from_str(include_str!("../../tests/data/streamer-messages-before-records.json")).unwrap();
        let config = golden_config();
        for encoding in [ValueEncoding::Record, ValueEncoding::Bundle] {
            let dir = tempfile::tempdir().unwrap();
            let store = open_test_store(dir.path());
            for height in [0u64, 1, 4, 120, 300] {
                store.commit(block_update(&produce_block(&config, height), encoding)).unwrap();
                let expected = &golden[height.to_string()];
                assert_eq!(&message_json(&store, height), expected, "{encoding:?} block {height}");
                let block = read_block(&store, height).unwrap().unwrap();
                assert_eq!(
                    serde_json::to_value(&block).unwrap(),
                    expected["block"],
                    "{encoding:?} block view {height}"
                );
                for (shard, header) in block.chunks.iter().enumerate() {
                    let chunk = read_chunk(&store, &header.chunk_hash).unwrap().unwrap();
                    assert_eq!(
                        serde_json::to_value(chunk).unwrap(),
                        expected["shards"][shard]["chunk"],
                        "{encoding:?} {height}/{shard}"
                    );
                    let outcomes = read_outcomes(&store, height, shard).unwrap().unwrap();
                    assert_eq!(
                        serde_json::to_value(outcomes).unwrap(),
                        expected["shards"][shard]["receipt_execution_outcomes"],
                        "{encoding:?} outcomes {height}/{shard}"
                    );
                }
            }
            for method in workload::VIEW_METHODS {
                let state = read_contract_view(&store, method).unwrap().unwrap();
                assert_eq!(state, golden["contract_state"][method], "contract state {method}");
            }
        }
    }

    /// A damaged record or bundle is a decode error naming what it was, never a panic.
    #[test]
    fn a_damaged_record_is_a_decode_error() {
        let config = golden_config();
        for encoding in [ValueEncoding::Record, ValueEncoding::Bundle] {
            let dir = tempfile::tempdir().unwrap();
            let store = open_test_store(dir.path());
            let mut produced = produce_block(&config, 5);
            produced.chunks[0].author = "Not An Account".into();
            store.commit(block_update(&produced, encoding)).unwrap();
            let hash = CryptoHash(produced.chunks[0].header.chunk_hash);
            let chunk = read_chunk(&store, &hash).unwrap_err().to_string();
            assert!(chunk.contains("chunk") && chunk.contains("Not An Account"), "{encoding:?}: {chunk}");
            assert!(
                read_outcomes(&store, 5, 0).unwrap().is_some(),
                "{encoding:?}: the block's other records still read"
            );

            let tag = if encoding == ValueEncoding::Bundle { BUNDLE_TAG } else { RECORD_TAG };
            let mut truncated = StoreUpdate::new();
            truncated.put(Column::Blocks, 5u64.to_be_bytes(), [tag, 0xff]);
            store.commit(truncated).unwrap();
            let block = read_block(&store, 5).unwrap_err().to_string();
            assert!(block.contains("block"), "{encoding:?}: {block}");
            assert!(read_streamer_message(&store, 5).is_err(), "{encoding:?}");

            // A chunk location or outcomes mark whose block is not a bundle.
            if encoding == ValueEncoding::Bundle {
                let mut older = StoreUpdate::new();
                older.put(Column::Blocks, 5u64.to_be_bytes(), encode(RECORD_TAG, &produced.block));
                store.commit(older).unwrap();
                let chunk = read_chunk(&store, &hash).unwrap_err().to_string();
                assert!(chunk.contains("chunk location") && chunk.contains("not stored as a bundle"), "{chunk}");
                let outcomes = read_outcomes(&store, 5, 0).unwrap_err().to_string();
                assert!(outcomes.contains("execution outcomes"), "{outcomes}");
            }
        }
    }
}
