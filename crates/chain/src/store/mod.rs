//! The chain's hot store: one RocksDB instance under `<home>/data`, written one block
//! per batch, so a SIGKILL leaves it at a block boundary and a restart resumes from the
//! stored head.
//!
//! Its modules follow the store's seams: `write` builds a block's batch in the encoding
//! this binary writes (and genesis), `read` serves views from the current encoding and
//! `legacy_read` from the encodings of older schemas, `streamer_message` assembles what
//! the indexer streams, and `test_writers` (feature `test-hooks`) damages or downgrades
//! a store for tests.

mod legacy_read;
mod read;
mod streamer_message;
#[cfg(feature = "test-hooks")]
mod test_writers;
mod write;

use std::path::Path;
use std::sync::Arc;

use borsh::BorshDeserialize;
use mpc_store::migration::{MigrationSettings, SchemaOutcome, open_migrated_with_initial};
use mpc_store::{Column, Store, StoreError, StoreOptions, StoreResult};

pub(crate) use read::{
    block_bundle, block_record, outcome_marks, read_block, read_chunk, read_contract_view, read_outcomes,
};
pub use streamer_message::stored_streamer_message;
pub(crate) use streamer_message::{MissingPiece, read_streamer_message, read_streamer_messages};
#[cfg(feature = "test-hooks")]
pub use test_writers::{delete_outcomes_for_test, restore_outcomes_for_test, rewrite_as_v1_for_test};
pub(crate) use write::{block_update, write_block};

use crate::config::{ChainConfig, ChainMode};
use crate::schema::chain_schema;
use write::genesis;

/// Key in [`Column::Misc`] of the height of the last stored block.
const HEAD_KEY: &[u8] = b"chain_head";
/// Key in [`Column::Misc`] of the seed the chain was produced from.
const SEED_KEY: &[u8] = b"chain_seed";
/// Key in [`Column::Misc`] of where the chain comes from (`ChainMode::source`); a store
/// without it was made by a binary that had only the embedded chain.
const SOURCE_KEY: &[u8] = b"chain_source";

/// Why the chain store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ChainStoreError {
    /// The store itself failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store was produced from another seed; continuing would mix two chains.
    #[error("chain store at {path} was created with seed {stored}, but the configured seed is {configured}")]
    SeedMismatch { path: String, stored: u64, configured: u64 },
    /// The store holds a chain of another kind (an embedded chain where the node now
    /// follows a host, say); continuing would mix two chains.
    #[error(
        "chain store at {path} holds a chain of kind {stored:?}, but this node runs a chain of kind {configured:?}; \
         wipe the chain data (a new data-wipe token) or use another home"
    )]
    SourceMismatch { path: String, stored: String, configured: &'static str },
}

/// Opens the chain store at `path`. A new store is created with its genesis block, its
/// contract state, its seed and its kind in the same batch as its schema version, so no
/// crash leaves a chain store without them (a follower's store starts empty: its
/// genesis is the first block it syncs). `schema_verified_earlier` skips the read-only
/// schema probe for a store this process opened at the latest schema before (see
/// `MigrationSettings::schema_verified_earlier`).
pub fn open_chain_store(
    path: &Path,
    config: &ChainConfig,
    options: &StoreOptions,
    schema_verified_earlier: bool,
) -> Result<Arc<Store>, ChainStoreError> {
    let settings = MigrationSettings { schema_verified_earlier, ..MigrationSettings::default() };
    let (store, outcome) = open_migrated_with_initial(path, options, &chain_schema(), &settings, || genesis(config))?;
    if let SchemaOutcome::Migrated { from, to, .. } = outcome {
        tracing::info!(from, to, path = %path.display(), "chain store migrated");
    }
    let configured = config.mode.source();
    let stored = match store.get(Column::Misc, SOURCE_KEY)? {
        Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        None => "embedded".to_owned(),
    };
    if stored != configured {
        return Err(ChainStoreError::SourceMismatch { path: path.display().to_string(), stored, configured });
    }
    if matches!(config.mode, ChainMode::Follower { .. }) {
        return Ok(store);
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

/// The kind of chain a new store records, in its creation batch.
fn put_source(update: &mut mpc_store::StoreUpdate, config: &ChainConfig) {
    update.put(Column::Misc, SOURCE_KEY, config.mode.source());
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

/// A decode error naming `what` in the store at hand.
fn decode_error(store: &Store, what: &str, detail: impl ToString) -> StoreError {
    StoreError::Decode { path: store.path().to_path_buf(), what: what.into(), detail: detail.to_string() }
}

/// Decodes a borsh record of the store, or a decode error naming `what`.
fn decode<R: BorshDeserialize>(store: &Store, what: &str, bytes: &[u8]) -> StoreResult<R> {
    R::try_from_slice(bytes).map_err(|err| decode_error(store, what, err))
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::path::Path;
    use std::sync::Arc;

    use mpc_store::{Store, StoreOptions};
    use serde_json::Value;

    use super::read_streamer_message;
    use crate::config::{ChainConfig, DEFAULT_IMAGE_HASH, ImageHashRevocation};

    /// The chain of the golden file: three shards, three requests per block, a
    /// revocation at 300, so its heights cover genesis, the first responses and every
    /// kind of governance change.
    pub(crate) fn golden_config() -> ChainConfig {
        ChainConfig {
            num_shards: 3,
            sign_requests_per_block: 3,
            revocation: Some(ImageHashRevocation { image_hash: DEFAULT_IMAGE_HASH.into(), at_height: 300 }),
            ..ChainConfig::sandbox_default()
        }
    }

    pub(crate) fn open_test_store(dir: &Path) -> Arc<Store> {
        Store::open(dir, &StoreOptions::new("chain", "chain-store-test")).unwrap()
    }

    pub(crate) fn message_json(store: &Store, height: u64) -> Value {
        serde_json::to_value(read_streamer_message(store, height).unwrap().unwrap()).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use mpc_store::migration::{bump_version, read_version};

    use super::test_support::{golden_config, message_json, open_test_store};
    use super::write::{block_update, write_block};
    use super::*;
    use crate::records::{BUNDLE_TAG, RECORD_TAG, produce_block};
    use crate::schema::{CHAIN_SCHEMA_VERSION, ValueEncoding};
    use crate::workload;

    /// A store of schema v1 (JSON views) or v2 (records) opened by this binary is
    /// bumped to the current version without being rewritten: its old blocks and the
    /// blocks written after the upgrade read back as the same messages as a store that
    /// held the current encoding from genesis.
    #[test]
    fn an_older_store_keeps_its_blocks_and_continues_with_bundles() {
        let config = golden_config();
        let options = StoreOptions::new("chain", "chain-store-test");
        let fresh_dir = tempfile::tempdir().unwrap();
        let fresh = open_chain_store(fresh_dir.path(), &config, &options, false).unwrap();
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
            let store = open_chain_store(old.path(), &config, &options, false).unwrap();
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
}
