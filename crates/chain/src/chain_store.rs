//! The chain's hot store: one RocksDB instance under `<home>/data`, written one block
//! per batch, so a SIGKILL leaves it at a block boundary and a restart resumes from the
//! stored head.

use std::path::Path;
use std::sync::Arc;

use mpc_store::migration::{MigrationSettings, Schema, SchemaVerified, open_migrated_with_initial};
use mpc_store::{Column, Store, StoreError, StoreOptions, StoreResult, StoreUpdate};
use near_indexer_primitives::views::BlockView;
use near_indexer_primitives::{CryptoHash, IndexerChunkView, IndexerExecutionOutcomeWithReceipt};

use crate::config::ChainConfig;
use crate::views::{ProducedBlock, build_block};
use crate::workload;

/// Schema version of the chain store.
pub const CHAIN_SCHEMA_VERSION: u32 = 1;

const HEAD_KEY: &[u8] = b"chain_head";
const SEED_KEY: &[u8] = b"chain_seed";

/// Why the chain store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ChainStoreError {
    /// The store itself failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store was produced from another seed; continuing would mix two chains.
    #[error(
        "chain store at {path} was created with seed {stored}, but the configured seed is {configured}"
    )]
    SeedMismatch {
        path: String,
        stored: u64,
        configured: u64,
    },
}

/// The chain store's schema: one version so far, but the runner still refuses a store
/// written by a newer binary.
pub fn chain_schema() -> Schema {
    Schema {
        latest: CHAIN_SCHEMA_VERSION,
        steps: Vec::new(),
    }
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
    let (store, _) = open_migrated_with_initial(path, options, &chain_schema(), &settings, || genesis(config))?;
    match store.get(Column::Misc, SEED_KEY)? {
        Some(bytes) => {
            let stored = <[u8; 8]>::try_from(bytes.as_slice())
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Decode {
                    path: path.to_path_buf(),
                    what: "chain seed".into(),
                    detail: "bad length".into(),
                })?;
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
    let mut update = block_update(&build_block(config, 0));
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
        Some(bytes) => <[u8; 8]>::try_from(bytes.as_slice())
            .map(u64::from_be_bytes)
            .map(Some)
            .map_err(|_| StoreError::Decode {
                path: store.path().to_path_buf(),
                what: "chain head".into(),
                detail: "bad length".into(),
            }),
    }
}

fn outcome_key(height: u64, shard: usize) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[..8].copy_from_slice(&height.to_be_bytes());
    key[8] = shard as u8;
    key
}

/// Everything of one block, head included, as one batch.
fn block_update(produced: &ProducedBlock) -> StoreUpdate {
    let mut update = StoreUpdate::new();
    let height = produced.block.header.height;
    update.put_json(Column::Blocks, height.to_be_bytes(), &produced.block);
    update.put(
        Column::BlockHeightByHash,
        produced.block.header.hash.0,
        height.to_be_bytes(),
    );
    for chunk in &produced.chunks {
        update.put_json(Column::Chunks, chunk.header.chunk_hash.0, chunk);
    }
    for (shard, outcomes) in produced.outcomes.iter().enumerate() {
        update.put_json(Column::Outcomes, outcome_key(height, shard), outcomes);
    }
    for (method, value) in &produced.contract_changes {
        update.put_json(Column::ContractState, method, value);
    }
    update.put(Column::Misc, HEAD_KEY, height.to_be_bytes());
    update
}

/// Produces and stores block `height` in one batch.
pub(crate) fn write_block(store: &Store, config: &ChainConfig, height: u64) -> StoreResult<()> {
    store.commit(block_update(&build_block(config, height)))
}

/// The stored block at `height`.
pub(crate) fn read_block(store: &Store, height: u64) -> StoreResult<Option<BlockView>> {
    store.get_json(Column::Blocks, height.to_be_bytes())
}

/// The stored chunk with `hash`.
pub(crate) fn read_chunk(
    store: &Store,
    hash: &CryptoHash,
) -> StoreResult<Option<IndexerChunkView>> {
    store.get_json(Column::Chunks, hash.0)
}

/// The stored receipt execution outcomes of one shard of one block.
pub(crate) fn read_outcomes(
    store: &Store,
    height: u64,
    shard: usize,
) -> StoreResult<Option<Vec<IndexerExecutionOutcomeWithReceipt>>> {
    store.get_json(Column::Outcomes, outcome_key(height, shard))
}

/// Deletes the stored outcomes of one shard of one block, returning them: the "receipt
/// missing" fault of the upstream indexer. Test-only (feature `test-faults`).
#[cfg(feature = "test-faults")]
pub fn delete_outcomes_for_test(
    store: &Store,
    height: u64,
    shard: usize,
) -> StoreResult<Option<Vec<u8>>> {
    let previous = store.get(Column::Outcomes, outcome_key(height, shard))?;
    let mut update = StoreUpdate::new();
    update.delete(Column::Outcomes, outcome_key(height, shard));
    store.commit(update)?;
    Ok(previous)
}

/// Puts back what [`delete_outcomes_for_test`] removed. Test-only (feature `test-faults`).
#[cfg(feature = "test-faults")]
pub fn restore_outcomes_for_test(
    store: &Store,
    height: u64,
    shard: usize,
    bytes: &[u8],
) -> StoreResult<()> {
    let mut update = StoreUpdate::new();
    update.put(Column::Outcomes, outcome_key(height, shard), bytes);
    store.commit(update)
}

/// The stored value of a contract view method.
pub(crate) fn read_contract_view(
    store: &Store,
    method: &str,
) -> StoreResult<Option<serde_json::Value>> {
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
    let Some(block) = read_block(store, height)? else {
        return Ok(Err(MissingPiece::Block));
    };
    let mut shards = Vec::with_capacity(block.chunks.len());
    for (shard, header) in block.chunks.iter().enumerate() {
        let Some(chunk) = read_chunk(store, &header.chunk_hash)? else {
            return Ok(Err(MissingPiece::Chunk(header.chunk_hash)));
        };
        let Some(outcomes) = read_outcomes(store, height, shard)? else {
            return Ok(Err(MissingPiece::Outcomes(shard)));
        };
        shards.push(near_indexer_primitives::IndexerShard {
            shard_id: header.shard_id,
            chunk: Some(chunk),
            receipt_execution_outcomes: outcomes,
            state_changes: vec![],
        });
    }
    Ok(Ok(near_indexer_primitives::StreamerMessage {
        block,
        shards,
    }))
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
