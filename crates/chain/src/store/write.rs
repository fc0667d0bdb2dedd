//! Writing the chain store: a block's batch in the encoding of each schema (this binary
//! writes the current one; the older ones serve the upgrade tests), and genesis.

use mpc_store::{Column, Store, StoreResult, StoreUpdate};

use super::{HEAD_KEY, SEED_KEY, outcome_key};
use crate::config::{ChainConfig, ChainMode};
use crate::records::{
    BUNDLE_TAG, BlockBundleRef, ChunkLocation, FAILURES_TAG, ProducedBlock, RECORD_TAG, encode, produce_block,
};
use crate::schema::ValueEncoding;
use crate::views::{block_view, chunk_view, outcomes_view};
use crate::workload;

/// What a new chain store holds besides its schema version, as one batch: block 0 with
/// the contract's initial state, the seed and the chain's kind; a follower's store only
/// its kind (its genesis is the host's, the first block it syncs).
pub(super) fn genesis(config: &ChainConfig) -> StoreUpdate {
    let mut update = match &config.mode {
        ChainMode::Embedded => {
            let mut block = produce_block(config, 0);
            block.contract_changes = workload::genesis_contract_state(config)
                .into_iter()
                .map(|(method, value)| (method.to_owned(), value))
                .collect();
            block_update(&block, ValueEncoding::current())
        }
        ChainMode::Host(network) => {
            let (block, contract) = crate::host::genesis(config, network);
            let mut update = block_update(&block, ValueEncoding::current());
            update.append(contract);
            update
        }
        ChainMode::Follower { .. } => StoreUpdate::new(),
    };
    if !matches!(config.mode, ChainMode::Follower { .. }) {
        update.put(Column::Misc, SEED_KEY, config.seed.to_be_bytes());
    }
    super::put_source(&mut update, config);
    update
}

/// Everything of one block, head included, as one batch, its values in `encoding`.
pub(crate) fn block_update(produced: &ProducedBlock, encoding: ValueEncoding) -> StoreUpdate {
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
                let failures = produced.failures_of(index);
                if failures.is_empty() {
                    update.put(Column::Outcomes, outcome_key(height, index), [BUNDLE_TAG]);
                } else {
                    update.put(Column::Outcomes, outcome_key(height, index), encode(FAILURES_TAG, &failures));
                }
            }
            if !produced.contract_changes.is_empty() {
                let changes: Vec<(&str, String)> = produced
                    .contract_changes
                    .iter()
                    .map(|(method, value)| (method.as_str(), value.to_string()))
                    .collect();
                update.put(Column::ContractChanges, height.to_be_bytes(), borsh::to_vec(&changes).expect("into a Vec"));
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
                    &outcomes_view(outcomes.clone(), produced.failures_of(shard)).expect(VIEWS_BUILD),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::golden_config;

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
}
