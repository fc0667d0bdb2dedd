//! The chain's hot store: one RocksDB instance under `<home>/data`, written one block
//! per batch, so a SIGKILL leaves it at a block boundary and a restart resumes from the
//! stored head.

use std::path::Path;
use std::sync::Arc;

use borsh::BorshDeserialize;
use mpc_store::migration::{MigrationSettings, SchemaOutcome, SchemaVerified, open_migrated_with_initial};
use mpc_store::{Column, Store, StoreError, StoreOptions, StoreResult, StoreUpdate};
use near_indexer_primitives::views::BlockView;
use near_indexer_primitives::{CryptoHash, IndexerChunkView, IndexerExecutionOutcomeWithReceipt};
use serde::de::DeserializeOwned;

use crate::config::ChainConfig;
use crate::records::{
    BUNDLE_TAG, BlockBundle, BlockBundleRef, BlockRecord, ChunkLocation, ChunkRecord, OutcomesRecord, ProducedBlock,
    RECORD_TAG, StoredValue, encode, produce_block,
};
use crate::schema::{ValueEncoding, chain_schema};
use crate::views::{InvalidAccountId, block_view, chunk_view, outcomes_view};
use crate::workload;

const HEAD_KEY: &[u8] = b"chain_head";
const SEED_KEY: &[u8] = b"chain_seed";

/// Why the chain store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ChainStoreError {
    /// The store itself failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store was produced from another seed; continuing would mix two chains.
    #[error("chain store at {path} was created with seed {stored}, but the configured seed is {configured}")]
    SeedMismatch { path: String, stored: u64, configured: u64 },
}

/// Opens the chain store at `path`. A new store is created with its genesis block, its
/// contract state and its seed in the same batch as its schema version, so no crash
/// leaves a chain store without them. `schema_verified` is shared by the opens of one
/// process (see [`SchemaVerified`]).
pub fn open_chain_store(
    path: &Path,
    config: &ChainConfig,
    options: &StoreOptions,
    schema_verified: &SchemaVerified,
) -> Result<Arc<Store>, ChainStoreError> {
    let settings = MigrationSettings { schema_verified: schema_verified.clone(), ..MigrationSettings::default() };
    let (store, outcome) = open_migrated_with_initial(path, options, &chain_schema(), &settings, || genesis(config))?;
    if let SchemaOutcome::Migrated { from, to, .. } = outcome {
        tracing::info!(from, to, path = %path.display(), "chain store migrated");
    }
    match store.get(Column::Misc, SEED_KEY)? {
        Some(bytes) => {
            let stored = decode_u64(&store, "chain seed", &bytes)?;
            if stored != config.seed {
                return Err(ChainStoreError::SeedMismatch {
                    path: path.display().to_string(),
                    stored,
                    configured: config.seed,
                });
            }
        }
        // Written by an older binary that was killed between the version and genesis.
        None => store.commit(genesis(config))?,
    }
    Ok(store)
}

/// Block 0, the contract's initial state and the seed, as one batch.
fn genesis(config: &ChainConfig) -> StoreUpdate {
    let mut update = block_update(&produce_block(config, 0), ValueEncoding::current());
    for (method, value) in workload::genesis_contract_state(config) {
        update.put_json(Column::ContractState, method, &value);
    }
    update.put(Column::Misc, SEED_KEY, config.seed.to_be_bytes());
    update
}

/// Height of the last stored block (`None` before genesis is written).
pub fn chain_head(store: &Store) -> StoreResult<Option<u64>> {
    match store.get(Column::Misc, HEAD_KEY)? {
        None => Ok(None),
        Some(bytes) => decode_u64(store, "chain head", &bytes).map(Some),
    }
}

/// An 8-byte big-endian number of the store (the seed, the head, a height key), or a
/// decode error naming `what`.
fn decode_u64(store: &Store, what: &str, bytes: &[u8]) -> StoreResult<u64> {
    <[u8; 8]>::try_from(bytes).map(u64::from_be_bytes).map_err(|_| StoreError::Decode {
        path: store.path().to_path_buf(),
        what: what.into(),
        detail: "bad length".into(),
    })
}

fn outcome_key(height: u64, shard: usize) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[..8].copy_from_slice(&height.to_be_bytes());
    key[8] = shard as u8;
    key
}

/// Everything of one block, head included, as one batch, its values in `encoding`.
fn block_update(produced: &ProducedBlock, encoding: ValueEncoding) -> StoreUpdate {
    // The views of a record the chain produced itself always build.
    const VIEWS_BUILD: &str = "records produced by the chain hold valid account ids";
    let mut update = StoreUpdate::new();
    let height = produced.block.height;
    update.put(Column::BlockHeightByHash, produced.block.hash, height.to_be_bytes());
    match encoding {
        ValueEncoding::Bundle => {
            let bundle = BlockBundleRef { block: &produced.block, chunks: &produced.chunks };
            update.put(Column::Blocks, height.to_be_bytes(), encode(BUNDLE_TAG, &bundle));
            for (index, chunk) in produced.chunks.iter().enumerate() {
                let location = ChunkLocation { height, index: index as u32 };
                update.put(Column::Chunks, chunk.header.chunk_hash, encode(BUNDLE_TAG, &location));
                update.put(Column::Outcomes, outcome_key(height, index), [BUNDLE_TAG]);
            }
        }
        ValueEncoding::Record => {
            update.put(Column::Blocks, height.to_be_bytes(), encode(RECORD_TAG, &produced.block));
            for chunk in &produced.chunks {
                update.put(Column::Chunks, chunk.header.chunk_hash, encode(RECORD_TAG, chunk));
            }
            for (shard, outcomes) in produced.outcomes.iter().enumerate() {
                update.put(Column::Outcomes, outcome_key(height, shard), encode(RECORD_TAG, outcomes));
            }
        }
        ValueEncoding::Json => {
            update.put_json(Column::Blocks, height.to_be_bytes(), &block_view(&produced.block).expect(VIEWS_BUILD));
            for chunk in &produced.chunks {
                update.put_json(
                    Column::Chunks,
                    chunk.header.chunk_hash,
                    &chunk_view(chunk.clone()).expect(VIEWS_BUILD),
                );
            }
            for (shard, outcomes) in produced.outcomes.iter().enumerate() {
                update.put_json(
                    Column::Outcomes,
                    outcome_key(height, shard),
                    &outcomes_view(outcomes.clone()).expect(VIEWS_BUILD),
                );
            }
        }
    }
    for (method, value) in &produced.contract_changes {
        update.put_json(Column::ContractState, method, value);
    }
    update.put(Column::Misc, HEAD_KEY, height.to_be_bytes());
    update
}

/// Produces and stores block `height` in one batch.
pub(crate) fn write_block(store: &Store, config: &ChainConfig, height: u64) -> StoreResult<()> {
    store.commit(block_update(&produce_block(config, height), ValueEncoding::current()))
}

/// A decode error naming `what` in the store at hand.
fn decode_error(store: &Store, what: &str, detail: impl ToString) -> StoreError {
    StoreError::Decode { path: store.path().to_path_buf(), what: what.into(), detail: detail.to_string() }
}

/// Decodes a borsh record of the store, or a decode error naming `what`.
fn decode<R: BorshDeserialize>(store: &Store, what: &str, bytes: &[u8]) -> StoreResult<R> {
    R::try_from_slice(bytes).map_err(|err| decode_error(store, what, err))
}

/// Turns a stored value of schema v1 or v2 into its view: a record by `to_view`, a JSON
/// view as it is. (A v3 value is read by the caller, which knows what it points to.)
fn older_view<R: BorshDeserialize, V: DeserializeOwned>(
    store: &Store,
    what: &str,
    bytes: &[u8],
    to_view: impl FnOnce(R) -> Result<V, InvalidAccountId>,
) -> StoreResult<V> {
    match StoredValue::of(bytes) {
        StoredValue::Record(record) => {
            to_view(decode(store, what, record)?).map_err(|err| decode_error(store, what, err))
        }
        StoredValue::Json(json) => serde_json::from_slice(json).map_err(|err| decode_error(store, what, err)),
        StoredValue::Bundle(_) => Err(decode_error(store, what, "a schema v3 value where an older one was expected")),
    }
}

/// The bundle of block `height` (schema v3), or `None` if that block is missing or was
/// stored by an older schema.
fn read_bundle(store: &Store, height: u64) -> StoreResult<Option<BlockBundle>> {
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

/// The view of a shard's outcomes: every sandbox receipt succeeds, so they are the
/// chunk's receipts, executed in the block.
fn outcomes_of(
    store: &Store,
    block_hash: [u8; 32],
    chunk: &ChunkRecord,
) -> StoreResult<Vec<IndexerExecutionOutcomeWithReceipt>> {
    outcomes_view(OutcomesRecord { block_hash, receipts: chunk.receipts.clone() })
        .map_err(|err| decode_error(store, "execution outcomes", err))
}

/// The stored block at `height`.
pub(crate) fn read_block(store: &Store, height: u64) -> StoreResult<Option<BlockView>> {
    match store.get(Column::Blocks, height.to_be_bytes())? {
        Some(bytes) => block_of(store, &bytes).map(Some),
        None => Ok(None),
    }
}

/// The view of a value of the `Blocks` column, in any schema's encoding.
fn block_of(store: &Store, bytes: &[u8]) -> StoreResult<BlockView> {
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
        StoredValue::Bundle(_) => {
            let bundle = pointed_bundle(store, height, "execution outcomes")?;
            let block_hash = bundle.block.hash;
            let chunk = chunk_at(store, bundle, shard, "execution outcomes")?;
            outcomes_of(store, block_hash, &chunk).map(Some)
        }
        _ => older_view(store, "execution outcomes", &bytes, outcomes_view).map(Some),
    }
}

/// Deletes the stored outcomes of one shard of one block, returning them: the "receipt
/// missing" fault of the upstream indexer. Test-only (feature `test-faults`).
#[cfg(feature = "test-faults")]
pub fn delete_outcomes_for_test(store: &Store, height: u64, shard: usize) -> StoreResult<Option<Vec<u8>>> {
    let previous = store.get(Column::Outcomes, outcome_key(height, shard))?;
    let mut update = StoreUpdate::new();
    update.delete(Column::Outcomes, outcome_key(height, shard));
    store.commit(update)?;
    Ok(previous)
}

/// Puts back what [`delete_outcomes_for_test`] removed. Test-only (feature `test-faults`).
#[cfg(feature = "test-faults")]
pub fn restore_outcomes_for_test(store: &Store, height: u64, shard: usize, bytes: &[u8]) -> StoreResult<()> {
    let mut update = StoreUpdate::new();
    update.put(Column::Outcomes, outcome_key(height, shard), bytes);
    store.commit(update)
}

/// Rewrites the chain store at `path` as a binary of schema v1 would have written it:
/// every block, chunk and outcome list as its JSON view, version 1. For upgrade tests
/// only (feature `legacy-writers`).
#[cfg(feature = "legacy-writers")]
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

/// The stored value of a contract view method.
pub(crate) fn read_contract_view(store: &Store, method: &str) -> StoreResult<Option<serde_json::Value>> {
    store.get_json(Column::ContractState, method)
}

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
    streamer_message_of(store, height, &bytes, |shard| {
        Ok(store.get(Column::Outcomes, outcome_key(height, shard))?.is_some())
    })
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
    let mut outcome_marks = std::collections::HashSet::new();
    for entry in store.iter(Column::Outcomes, Some(&outcome_key(start, 0)))? {
        let (key, _) = entry?;
        let height = key.get(..8).map(|height| decode_u64(store, "outcomes key", height)).transpose()?;
        if height.is_none_or(|height| height >= end) {
            break;
        }
        outcome_marks.insert(key);
    }
    let mut messages = Vec::with_capacity(blocks.len());
    for (expected, (height, bytes)) in (start..).zip(blocks) {
        if height != expected {
            return Ok((messages, Some((expected, MissingPiece::Block))));
        }
        let message = streamer_message_of(store, height, &bytes, |shard| {
            Ok(outcome_marks.contains(outcome_key(height, shard).as_slice()))
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
/// encoding; `outcomes_stored` says whether a shard's outcomes mark (schema v3) exists.
fn streamer_message_of(
    store: &Store,
    height: u64,
    bytes: &[u8],
    outcomes_stored: impl Fn(usize) -> StoreResult<bool>,
) -> StoreResult<Result<near_indexer_primitives::StreamerMessage, MissingPiece>> {
    if let StoredValue::Bundle(bundle) = StoredValue::of(bytes) {
        return bundled_streamer_message(store, decode(store, "block", bundle)?, outcomes_stored);
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
/// its chunks, and one small mark per shard that its outcomes are stored.
fn bundled_streamer_message(
    store: &Store,
    bundle: BlockBundle,
    outcomes_stored: impl Fn(usize) -> StoreResult<bool>,
) -> StoreResult<Result<near_indexer_primitives::StreamerMessage, MissingPiece>> {
    let block = block_view(&bundle.block).map_err(|err| decode_error(store, "block", err))?;
    let mut shards = Vec::with_capacity(bundle.chunks.len());
    for (shard, chunk) in bundle.chunks.into_iter().enumerate() {
        if !outcomes_stored(shard)? {
            return Ok(Err(MissingPiece::Outcomes(shard)));
        }
        let outcomes = outcomes_of(store, bundle.block.hash, &chunk)?;
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
    use mpc_store::migration::{bump_version, read_version};
    use serde_json::Value;

    use super::*;
    use crate::config::{DEFAULT_IMAGE_HASH, ImageHashRevocation};
    use crate::schema::CHAIN_SCHEMA_VERSION;

    /// The chain of the golden file: three shards, three requests per block, a
    /// revocation at 300, so its heights cover genesis, the first responses and every
    /// kind of governance change.
    fn golden_config() -> ChainConfig {
        ChainConfig {
            num_shards: 3,
            sign_requests_per_block: 3,
            revocation: Some(ImageHashRevocation { image_hash: DEFAULT_IMAGE_HASH.into(), at_height: 300 }),
            ..ChainConfig::sandbox_default()
        }
    }

    fn open_test_store(dir: &Path) -> Arc<Store> {
        Store::open(dir, &StoreOptions::new("chain", "chain-store-test")).unwrap()
    }

    fn message_json(store: &Store, height: u64) -> Value {
        serde_json::to_value(read_streamer_message(store, height).unwrap().unwrap()).unwrap()
    }

    /// What the chain served before it stored records (JSON views written by schema v1,
    /// produced by the code of that time) is what it serves from the records of v2 and
    /// the bundles of v3, whether a block is read whole or a chunk or a shard's
    /// outcomes alone: the records hold every field that varies, the view builder
    /// every constant.
    #[test]
    fn records_and_bundles_serve_the_views_the_json_store_served() {
        let golden: Value =
            serde_json::from_str(include_str!("../tests/data/streamer-messages-before-records.json")).unwrap();
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

    /// A v3 block takes 40 % fewer bytes than a v2 one (at three requests per block):
    /// its outcomes are no second copy of the chunk's receipts.
    #[test]
    fn a_bundle_stores_each_receipt_once() {
        let produced = produce_block(&golden_config(), 120);
        let records = encode(RECORD_TAG, &produced.block).len()
            + produced.chunks.iter().map(|chunk| encode(RECORD_TAG, chunk).len()).sum::<usize>()
            + produced.outcomes.iter().map(|outcomes| encode(RECORD_TAG, outcomes).len()).sum::<usize>();
        let location = encode(BUNDLE_TAG, &ChunkLocation { height: 120, index: 0 }).len();
        let bundle = encode(BUNDLE_TAG, &BlockBundleRef { block: &produced.block, chunks: &produced.chunks }).len()
            + produced.chunks.len() * (location + 1);
        assert!(bundle * 100 < records * 65, "bundle {bundle} bytes, records {records} bytes");
    }

    /// A store of schema v1 (JSON views) or v2 (records) opened by this binary is
    /// bumped to the current version without being rewritten: its old blocks and the
    /// blocks written after the upgrade read back as the same messages as a store that
    /// held the current encoding from genesis.
    #[test]
    fn an_older_store_keeps_its_blocks_and_continues_with_bundles() {
        let config = golden_config();
        let options = StoreOptions::new("chain", "chain-store-test");
        let fresh_dir = tempfile::tempdir().unwrap();
        let fresh = open_chain_store(fresh_dir.path(), &config, &options, &SchemaVerified::default()).unwrap();
        assert_eq!(read_version(&fresh).unwrap(), Some(CHAIN_SCHEMA_VERSION));
        for height in 1..=20 {
            write_block(&fresh, &config, height).unwrap();
        }
        for version in [1, 2] {
            let encoding = ValueEncoding::of_version(version);
            let old = tempfile::tempdir().unwrap();
            {
                let store = open_test_store(old.path());
                let mut creation = block_update(&produce_block(&config, 0), encoding);
                for (method, value) in workload::genesis_contract_state(&config) {
                    creation.put_json(Column::ContractState, method, &value);
                }
                creation.put(Column::Misc, SEED_KEY, config.seed.to_be_bytes());
                bump_version(&mut creation, version);
                store.commit(creation).unwrap();
                for height in 1..=10 {
                    store.commit(block_update(&produce_block(&config, height), encoding)).unwrap();
                }
            }
            let store = open_chain_store(old.path(), &config, &options, &SchemaVerified::default()).unwrap();
            assert_eq!(read_version(&store).unwrap(), Some(CHAIN_SCHEMA_VERSION), "from v{version}");
            for height in 11..=20 {
                write_block(&store, &config, height).unwrap();
            }
            let first_byte = |height: u64| store.get(Column::Blocks, height.to_be_bytes()).unwrap().unwrap()[0];
            let old_first_byte = if version == 1 { b'{' } else { RECORD_TAG };
            assert_eq!(
                first_byte(10),
                old_first_byte,
                "v{version}: blocks stored before the upgrade are not rewritten"
            );
            assert_eq!(first_byte(11), BUNDLE_TAG, "v{version}: blocks stored after the upgrade are bundles");
            for height in 0..=20 {
                assert_eq!(message_json(&store, height), message_json(&fresh, height), "v{version} block {height}");
            }
        }
    }

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
