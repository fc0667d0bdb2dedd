//! Assembling, from the store alone, the message the indexer streams for a height:
//! the block, its chunks and each shard's outcomes, in any schema's encoding.

use mpc_store::{Column, Store, StoreResult};
use near_indexer_primitives::{CryptoHash, IndexerChunkView, IndexerExecutionOutcomeWithReceipt};

use super::read::{block_of, outcomes_of, read_chunk, read_outcomes};
use super::{decode, decode_error, decode_u64, outcome_key};
use crate::records::{BlockBundle, StoredValue};
use crate::views::{block_view, chunk_view};

/// The first piece of a block found missing while reassembling its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MissingPiece {
    /// The block itself.
    Block,
    /// A chunk, by hash.
    Chunk(CryptoHash),
    /// The outcomes of a shard.
    Outcomes(usize),
}

/// Reassembles, from the store alone, the message the indexer streams for `height`, or
/// names the first piece that is missing.
pub(crate) fn read_streamer_message(
    store: &Store,
    height: u64,
) -> StoreResult<Result<near_indexer_primitives::StreamerMessage, MissingPiece>> {
    let Some(bytes) = store.get(Column::Blocks, height.to_be_bytes())? else {
        return Ok(Err(MissingPiece::Block));
    };
    streamer_message_of(store, height, &bytes, |shard| store.get(Column::Outcomes, outcome_key(height, shard)))
}

/// Where a range of streamer messages stopped: the first height that could not be
/// assembled and the piece of it that is missing.
pub(crate) type StoppedAt = Option<(u64, MissingPiece)>;

/// The messages of heights `start..start + count`, in order, up to the first height that
/// cannot be assembled (named in the second value). Read with one pass over the blocks
/// and one over the outcome marks: a lookup per piece was most of the view client's
/// time while the indexer catches up.
pub(crate) fn read_streamer_messages(
    store: &Store,
    start: u64,
    count: u64,
) -> StoreResult<(Vec<near_indexer_primitives::StreamerMessage>, StoppedAt)> {
    let end = start.saturating_add(count);
    let mut blocks = Vec::with_capacity(count.min(1024) as usize);
    for entry in store.iter(Column::Blocks, Some(&start.to_be_bytes()))? {
        let (key, bytes) = entry?;
        let height = decode_u64(store, "block key", &key)?;
        if height >= end {
            break;
        }
        blocks.push((height, bytes));
    }
    // Read after the blocks, so a mark written with a block read above is seen.
    let mut outcome_marks = std::collections::HashMap::new();
    for entry in store.iter(Column::Outcomes, Some(&outcome_key(start, 0)))? {
        let (key, mark) = entry?;
        let height = key.get(..8).map(|height| decode_u64(store, "outcomes key", height)).transpose()?;
        if height.is_none_or(|height| height >= end) {
            break;
        }
        outcome_marks.insert(key, mark);
    }
    let mut messages = Vec::with_capacity(blocks.len());
    for (expected, (height, bytes)) in (start..).zip(blocks) {
        if height != expected {
            return Ok((messages, Some((expected, MissingPiece::Block))));
        }
        let message = streamer_message_of(store, height, &bytes, |shard| {
            Ok(outcome_marks.get(outcome_key(height, shard).as_slice()).map(|mark| mark.to_vec()))
        })?;
        match message {
            Ok(message) => messages.push(message),
            Err(missing) => return Ok((messages, Some((height, missing)))),
        }
    }
    let next = start + messages.len() as u64;
    Ok((messages, (next < end).then_some((next, MissingPiece::Block))))
}

/// The message of block `height` from its stored value `bytes`, in any schema's
/// encoding; `outcome_mark` gives a shard's outcomes mark (schema v3 and later), if
/// stored.
fn streamer_message_of(
    store: &Store,
    height: u64,
    bytes: &[u8],
    outcome_mark: impl Fn(usize) -> StoreResult<Option<Vec<u8>>>,
) -> StoreResult<Result<near_indexer_primitives::StreamerMessage, MissingPiece>> {
    if let StoredValue::Bundle(bundle) = StoredValue::of(bytes) {
        return bundled_streamer_message(store, decode(store, "block", bundle)?, outcome_mark);
    }
    let block = block_of(store, bytes)?;
    let mut shards = Vec::with_capacity(block.chunks.len());
    for (shard, header) in block.chunks.iter().enumerate() {
        let Some(chunk) = read_chunk(store, &header.chunk_hash)? else {
            return Ok(Err(MissingPiece::Chunk(header.chunk_hash)));
        };
        let Some(outcomes) = read_outcomes(store, height, shard)? else {
            return Ok(Err(MissingPiece::Outcomes(shard)));
        };
        shards.push(indexer_shard(header.shard_id, chunk, outcomes));
    }
    Ok(Ok(near_indexer_primitives::StreamerMessage { block, shards }))
}

/// The message of a block stored as a bundle (schema v3): one record for the block and
/// its chunks, and one small mark per shard that its outcomes are stored (listing the
/// failed receipts since v4).
fn bundled_streamer_message(
    store: &Store,
    bundle: BlockBundle,
    outcome_mark: impl Fn(usize) -> StoreResult<Option<Vec<u8>>>,
) -> StoreResult<Result<near_indexer_primitives::StreamerMessage, MissingPiece>> {
    let block = block_view(&bundle.block).map_err(|err| decode_error(store, "block", err))?;
    let mut shards = Vec::with_capacity(bundle.chunks.len());
    for (shard, chunk) in bundle.chunks.into_iter().enumerate() {
        let Some(mark) = outcome_mark(shard)? else {
            return Ok(Err(MissingPiece::Outcomes(shard)));
        };
        let outcomes = outcomes_of(store, bundle.block.hash, &chunk, &mark)?;
        let shard_id = block.chunks[shard].shard_id;
        let chunk = chunk_view(chunk).map_err(|err| decode_error(store, "chunk", err))?;
        shards.push(indexer_shard(shard_id, chunk, outcomes));
    }
    Ok(Ok(near_indexer_primitives::StreamerMessage { block, shards }))
}

/// One shard of a streamer message, as the sandbox has it: a chunk, no state changes.
fn indexer_shard(
    shard_id: near_indexer_primitives::types::ShardId,
    chunk: IndexerChunkView,
    receipt_execution_outcomes: Vec<IndexerExecutionOutcomeWithReceipt>,
) -> near_indexer_primitives::IndexerShard {
    near_indexer_primitives::IndexerShard {
        shard_id,
        chunk: Some(chunk),
        receipt_execution_outcomes,
        state_changes: vec![],
    }
}

/// The chain's own record of block `height`, as the indexer streams it; used by
/// `mpc-node check` to verify what the node store applied. `None` if any piece is
/// missing.
pub fn stored_streamer_message(
    store: &Store,
    height: u64,
) -> StoreResult<Option<near_indexer_primitives::StreamerMessage>> {
    Ok(read_streamer_message(store, height)?.ok())
}

#[cfg(test)]
mod tests {
    use mpc_store::StoreUpdate;
    use serde_json::Value;

    use super::*;
    use crate::records::produce_block;
    use crate::schema::ValueEncoding;
    use crate::store::test_support::{golden_config, message_json, open_test_store};
    use crate::store::write::block_update;

    /// A range of heights read at once is the messages each height reads as, in every
    /// schema's encoding, and it stops at the first height with a piece missing, named
    /// with that piece: a shard's outcomes, or the block itself past the head.
    #[test]
    fn a_range_read_serves_each_height_as_alone_and_stops_at_the_first_missing_piece() {
        let config = golden_config();
        for encoding in [ValueEncoding::Json, ValueEncoding::Record, ValueEncoding::Bundle] {
            let dir = tempfile::tempdir().unwrap();
            let store = open_test_store(dir.path());
            for height in 0..=12 {
                store.commit(block_update(&produce_block(&config, height), encoding)).unwrap();
            }
            let range_json = |start, count| {
                let (messages, stopped_at) = read_streamer_messages(&store, start, count).unwrap();
                let messages: Vec<Value> =
                    messages.iter().map(|message| serde_json::to_value(message).unwrap()).collect();
                (messages, stopped_at)
            };
            let (messages, stopped_at) = range_json(2, 8);
            assert_eq!((messages.len(), stopped_at), (8, None), "{encoding:?}");
            assert_eq!(
                messages,
                (2..10).map(|height| message_json(&store, height)).collect::<Vec<_>>(),
                "{encoding:?}"
            );

            let (messages, stopped_at) = range_json(10, 5);
            assert_eq!(
                (messages.len(), stopped_at),
                (3, Some((13, MissingPiece::Block))),
                "{encoding:?}: 10 to 12, then none"
            );

            let mut update = StoreUpdate::new();
            update.delete(Column::Outcomes, outcome_key(6, 1));
            store.commit(update).unwrap();
            let (messages, stopped_at) = range_json(2, 8);
            assert_eq!((messages.len(), stopped_at), (4, Some((6, MissingPiece::Outcomes(1)))), "{encoding:?}");
            assert_eq!(messages, (2..6).map(|height| message_json(&store, height)).collect::<Vec<_>>(), "{encoding:?}");
            assert_eq!(read_streamer_message(&store, 6).unwrap().unwrap_err(), MissingPiece::Outcomes(1));
        }
    }
}
