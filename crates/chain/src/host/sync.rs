//! The block sync protocol between a chain host and the nodes that follow it.
//!
//! `GET /v1/blocks?after=H&limit=N` answers with the blocks after height `H` (from
//! genesis without `after`) in the chain store's own compact encoding: borsh, a count
//! then each block's record, chunks, failed receipts and contract changes, which is
//! exactly what the host's batch for that block held. A follower checks that each block
//! follows its head (height, previous hash) and that its hash covers its content, and
//! writes it as one batch, the host's batch for it.

use borsh::{BorshDeserialize, BorshSerialize};
use mpc_store::{Column, Store, StoreError, StoreResult};

use super::produce::content_hash;
use crate::records::{BlockRecord, ChunkRecord, FAILURES_TAG, ProducedBlock, ReceiptFailure};
use crate::store::{block_bundle, outcome_marks};

/// Most blocks one answer carries.
pub const MAX_BLOCKS_PER_ANSWER: u64 = 512;

/// One block as it travels from the host to a follower.
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct SyncedBlock {
    block: BlockRecord,
    chunks: Vec<ChunkRecord>,
    failures: Vec<Vec<ReceiptFailure>>,
    /// Contract changes, each view as JSON text.
    contract_changes: Vec<(String, String)>,
}

/// Why a synced block is refused; nothing of it is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// The answer is not a batch of blocks.
    #[error("the host's answer does not decode: {0}")]
    Garbage(String),
    /// The block is not the next one after the follower's head.
    #[error("block {height} does not follow the head {head:?}: {detail}")]
    DoesNotFollow { height: u64, head: Option<u64>, detail: String },
    /// The block's hash does not cover its content.
    #[error("block {0} does not match its hash: its content was altered")]
    Altered(u64),
    /// The block could not be stored; the follower's store failed, not the host.
    #[error("storing block {height}: {detail}")]
    Store { height: u64, detail: String },
}

impl SyncedBlock {
    /// The block's height.
    pub fn height(&self) -> u64 {
        self.block.height
    }

    /// The block's hash.
    pub fn hash(&self) -> [u8; 32] {
        self.block.hash
    }

    /// Checks that this block is the one after `head` (height and hash; `None` before
    /// genesis) and that its hash covers its content, and turns it into what the chain
    /// store writes.
    pub(crate) fn into_produced(self, head: Option<(u64, [u8; 32])>) -> Result<ProducedBlock, SyncError> {
        let block = &self.block;
        let follows = |detail: String| SyncError::DoesNotFollow {
            height: block.height,
            head: head.map(|(height, _)| height),
            detail,
        };
        match head {
            None if block.height != 0 || block.prev_height.is_some() => {
                return Err(follows("the first block synced must be genesis".into()));
            }
            Some((height, hash)) => {
                if block.height != height + 1 || block.prev_height != Some(height) {
                    return Err(follows(format!("height {} after {height}", block.height)));
                }
                if block.prev_hash != hash {
                    return Err(follows("its previous hash is not the head's hash".into()));
                }
            }
            None => {}
        }
        let consistent =
            self.chunks.len() == block.chunks.len()
                && self
                    .chunks
                    .iter()
                    .zip(&block.chunks)
                    .all(|(chunk, header)| chunk.header == *header && header.height == block.height)
                && self.failures.len() == self.chunks.len()
                && self.failures.iter().zip(&self.chunks).all(|(failed, chunk)| {
                    failed.iter().all(|failure| (failure.receipt as usize) < chunk.receipts.len())
                });
        if !consistent {
            return Err(follows("its chunks do not match its header".into()));
        }
        let changes = self
            .contract_changes
            .iter()
            .map(|(method, value)| serde_json::from_str(value).map(|value| (method.clone(), value)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| SyncError::Garbage(format!("contract change of block {}: {err}", block.height)))?;
        if content_hash(block, &self.chunks, &self.failures, &changes) != block.hash {
            return Err(SyncError::Altered(block.height));
        }
        Ok(ProducedBlock::new(self.block, self.chunks, self.failures, changes))
    }
}

/// The stored blocks after `after` (from genesis when `None`), at most `limit`, as a
/// host serves them.
pub fn blocks_after(store: &Store, after: Option<u64>, limit: u64) -> StoreResult<Vec<SyncedBlock>> {
    let start = after.map_or(0, |after| after + 1);
    let limit = limit.clamp(1, MAX_BLOCKS_PER_ANSWER);
    let mut blocks = Vec::new();
    for height in start..start.saturating_add(limit) {
        let Some(bundle) = block_bundle(store, height)? else { break };
        let marks = outcome_marks(store, height, bundle.chunks.len())?;
        let failures = marks
            .iter()
            .map(|mark| match mark.split_first() {
                Some((&FAILURES_TAG, encoded)) => {
                    Vec::<ReceiptFailure>::try_from_slice(encoded).map_err(|err| StoreError::Decode {
                        path: store.path().to_path_buf(),
                        what: "outcomes mark".into(),
                        detail: err.to_string(),
                    })
                }
                _ => Ok(Vec::new()),
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let contract_changes = match store.get(Column::ContractChanges, height.to_be_bytes())? {
            Some(bytes) => Vec::<(String, String)>::try_from_slice(&bytes).map_err(|err| StoreError::Decode {
                path: store.path().to_path_buf(),
                what: "contract changes".into(),
                detail: err.to_string(),
            })?,
            None => Vec::new(),
        };
        blocks.push(SyncedBlock { block: bundle.block, chunks: bundle.chunks, failures, contract_changes });
    }
    Ok(blocks)
}

/// What `GET /v1/blocks` answers: the host's head, then the blocks asked for.
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct BlocksAnswer {
    /// The host's head when it answered.
    pub host_head: u64,
    /// The blocks after the height asked for, in order.
    pub blocks: Vec<SyncedBlock>,
}

impl BlocksAnswer {
    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("serialising into a Vec cannot fail")
    }

    /// Reads an answer; anything that is not one is [`SyncError::Garbage`].
    pub fn decode(bytes: &[u8]) -> Result<Self, SyncError> {
        BlocksAnswer::try_from_slice(bytes).map_err(|err| SyncError::Garbage(err.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use mpc_store::{Store, StoreOptions};

    use super::*;
    use crate::config::{ChainConfig, ChainMode};
    use crate::host::network::{NetworkConfig, Participant};
    use crate::schema::ValueEncoding;
    use crate::store::{block_record, block_update};

    fn host_config() -> ChainConfig {
        let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let network = NetworkConfig {
            threshold: 1,
            participants: vec![Participant {
                account_id: "node0.sandbox".into(),
                p2p_addr: "127.0.0.1:1".into(),
                p2p_public_key: hex::encode(key.verifying_key().to_bytes()),
            }],
            public_key: Some(hex::encode(key.verifying_key().to_bytes())),
        };
        ChainConfig { mode: ChainMode::Host(network), ..ChainConfig::sandbox_default() }
    }

    /// Blocks a host stored are served as they were produced, and a follower that
    /// applies them in order gets the host's blocks, hash for hash; one out of order,
    /// altered or from another chain is refused.
    #[test]
    fn a_follower_takes_the_hosts_blocks_in_order_and_refuses_any_other() {
        let config = host_config();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::new("host", "sync-test")).unwrap();
        let (genesis, contract) = crate::host::genesis(
            &config,
            match &config.mode {
                ChainMode::Host(network) => network,
                _ => unreachable!(),
            },
        );
        let mut update = block_update(&genesis, ValueEncoding::current());
        update.append(contract);
        store.commit(update).unwrap();
        let mut before = [0; 32];
        for height in 1..=5 {
            let previous = block_record(&store, height - 1).unwrap().unwrap();
            let (produced, rest) = crate::host::produce(&store, &config, height, &previous, before).unwrap();
            before = previous.hash;
            let mut update = block_update(&produced, ValueEncoding::current());
            update.append(rest);
            store.commit(update).unwrap();
        }
        let blocks = blocks_after(&store, None, 100).unwrap();
        assert_eq!(blocks.len(), 6);
        let mut head = None;
        for block in blocks.clone() {
            let height = block.height();
            let produced = block.into_produced(head).unwrap_or_else(|err| panic!("block {height}: {err}"));
            head = Some((height, produced.block.hash));
        }
        let refused = blocks[3].clone().into_produced(Some((1, blocks[1].hash())));
        assert!(matches!(refused, Err(SyncError::DoesNotFollow { .. })), "{refused:?}");
        let mut altered = blocks[2].clone();
        altered.contract_changes.push(("state".into(), "{}".into()));
        let refused = altered.into_produced(Some((1, blocks[1].hash())));
        assert_eq!(refused.unwrap_err(), SyncError::Altered(2));
    }
}
