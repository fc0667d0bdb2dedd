//! The chain store's compact records: what the sandbox chain keeps of each block, with
//! hashes as bytes, encoded with borsh. Views are built from them on read
//! (`crate::views`), as nearcore's view client builds views from its borsh-encoded
//! blocks and chunks.
//!
//! Why not store the views: a view serialises every hash as base58 text and every field
//! by name, so reading a block back (JSON parsing, base58 decoding, one allocation per
//! string) was three quarters of the indexing path's cost. A record holds only what
//! varies between the sandbox's blocks; the constants of a sandbox block (gas, prices,
//! empty signatures) are filled in when the view is built.
//!
//! Stores of schema v1 hold JSON views; schema v2 writes records and reads both
//! ([`StoredValue`]), so an upgraded store is never rewritten.
//!
//! Schema v3 keeps a block and its chunks in one [`BlockBundle`] under the block's
//! height. v2 stored each chunk under its hash (random keys, so the indexer's reads of
//! consecutive blocks missed the block cache) and each shard's outcomes as a second copy
//! of the chunk's receipts. Now the chunk-hash entry is a [`ChunkLocation`] and the
//! outcomes entry only marks the shard's outcomes as stored (every sandbox receipt
//! succeeds, so the outcomes are the chunk's receipts): half the bytes per block, and
//! one read of one record per block.

use borsh::{BorshDeserialize, BorshSerialize};
use near_indexer_primitives::CryptoHash;
use serde_json::{Value, json};

use crate::config::ChainConfig;
use crate::workload::{self, GENESIS_TIMESTAMP_NS};

/// First byte of a stored record. JSON text never starts with a control byte, so one
/// byte tells a record from a view written by schema v1. A later record layout takes
/// the next tag.
pub(crate) const RECORD_TAG: u8 = 0x01;

/// First byte of a schema v3 value: a [`BlockBundle`] under a height, a
/// [`ChunkLocation`] under a chunk hash, or nothing more under an outcomes key (every
/// receipt of that shard succeeded).
pub(crate) const BUNDLE_TAG: u8 = 0x02;

/// First byte of a shard's outcomes mark (schema v4) when some of its receipts failed:
/// the [`ReceiptFailure`]s follow, borsh. Every other receipt of the shard succeeded.
pub(crate) const FAILURES_TAG: u8 = 0x03;

/// A receipt whose execution failed: a transaction the contract refused, included with
/// a failed outcome that changes nothing (schema v4).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ReceiptFailure {
    /// Index of the receipt in its chunk.
    pub receipt: u32,
    /// Why the contract refused it.
    pub error: String,
}

/// A function call to the contract: the one kind of receipt the sandbox executes.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub(crate) struct CallRecord {
    pub receipt_id: [u8; 32],
    pub predecessor_id: String,
    pub receiver_id: String,
    pub method_name: String,
    /// The call's arguments, JSON bytes as the contract receives them.
    pub args: Vec<u8>,
}

/// The varying fields of a chunk header.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub(crate) struct ChunkHeaderRecord {
    pub chunk_hash: [u8; 32],
    pub prev_block_hash: [u8; 32],
    pub height: u64,
    pub shard_id: u64,
}

/// A block: its header fields and the headers of its chunks.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub(crate) struct BlockRecord {
    pub height: u64,
    pub prev_height: Option<u64>,
    pub hash: [u8; 32],
    pub prev_hash: [u8; 32],
    pub timestamp_ns: u64,
    pub last_final_block: [u8; 32],
    pub last_ds_final_block: [u8; 32],
    pub author: String,
    pub chunks: Vec<ChunkHeaderRecord>,
}

/// A chunk: its header and the receipts it carries.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub(crate) struct ChunkRecord {
    pub author: String,
    pub header: ChunkHeaderRecord,
    pub receipts: Vec<CallRecord>,
}

/// The receipts one shard of a block executed; every sandbox receipt succeeds.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub(crate) struct OutcomesRecord {
    pub block_hash: [u8; 32],
    pub receipts: Vec<CallRecord>,
}

/// A block with its chunks (schema v3), stored under the block's height.
#[derive(Debug, Clone, PartialEq, Eq, BorshDeserialize)]
pub(crate) struct BlockBundle {
    pub block: BlockRecord,
    pub chunks: Vec<ChunkRecord>,
}

/// [`BlockBundle`] by reference, for writing without a copy (same bytes: borsh writes a
/// slice like a `Vec`).
#[derive(BorshSerialize)]
pub(crate) struct BlockBundleRef<'a> {
    pub block: &'a BlockRecord,
    pub chunks: &'a [ChunkRecord],
}

/// Where a chunk is stored (schema v3): the height of its block and its index there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub(crate) struct ChunkLocation {
    pub height: u64,
    pub index: u32,
}

/// Everything the chain stores for one block.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProducedBlock {
    pub block: BlockRecord,
    pub chunks: Vec<ChunkRecord>,
    /// Receipt execution outcomes per shard, in shard order.
    pub outcomes: Vec<OutcomesRecord>,
    /// The receipts that failed, per shard, in shard order (empty: all succeeded).
    pub failures: Vec<Vec<ReceiptFailure>>,
    /// Contract state changes, by view method.
    pub contract_changes: Vec<(String, Value)>,
}

impl ProducedBlock {
    /// A block of `block` and `chunks` whose outcomes are its chunks' receipts, failed
    /// where `failures` says.
    pub(crate) fn new(
        block: BlockRecord,
        chunks: Vec<ChunkRecord>,
        failures: Vec<Vec<ReceiptFailure>>,
        contract_changes: Vec<(String, Value)>,
    ) -> Self {
        let outcomes = chunks
            .iter()
            .map(|chunk| OutcomesRecord { block_hash: block.hash, receipts: chunk.receipts.clone() })
            .collect();
        ProducedBlock { block, chunks, outcomes, failures, contract_changes }
    }

    /// The failures of shard `shard`.
    pub(crate) fn failures_of(&self, shard: usize) -> &[ReceiptFailure] {
        self.failures.get(shard).map_or(&[], Vec::as_slice)
    }
}

/// `[tag] ++ borsh(record)`.
pub(crate) fn encode<T: BorshSerialize>(tag: u8, record: &T) -> Vec<u8> {
    let mut bytes = vec![tag];
    record.serialize(&mut bytes).expect("serialising into a Vec cannot fail");
    bytes
}

/// How one stored value is encoded.
pub(crate) enum StoredValue<'a> {
    /// A schema v3 value (bundle, chunk location or outcomes mark), without its tag.
    Bundle(&'a [u8]),
    /// A schema v4 outcomes mark with failed receipts, without its tag.
    Failures(&'a [u8]),
    /// A schema v2 record, without its tag.
    Record(&'a [u8]),
    /// A JSON view written by schema v1.
    Json(&'a [u8]),
}

impl<'a> StoredValue<'a> {
    /// Tells the encodings apart by the first byte.
    pub(crate) fn of(bytes: &'a [u8]) -> Self {
        match bytes.split_first() {
            Some((&BUNDLE_TAG, value)) => StoredValue::Bundle(value),
            Some((&FAILURES_TAG, failures)) => StoredValue::Failures(failures),
            Some((&RECORD_TAG, record)) => StoredValue::Record(record),
            _ => StoredValue::Json(bytes),
        }
    }
}

const PRODUCER: &str = "node0.sandbox";
const VOTER: &str = "node1.sandbox";

fn hash_of(parts: &str) -> [u8; 32] {
    CryptoHash::hash_bytes(parts.as_bytes()).0
}

/// A function call to the contract of `config`, as a receipt.
pub(crate) fn call(
    receipt_id: [u8; 32],
    predecessor_id: String,
    config: &ChainConfig,
    method_name: &str,
    args: &Value,
) -> CallRecord {
    CallRecord {
        receipt_id,
        predecessor_id,
        receiver_id: config.contract_id.to_string(),
        method_name: method_name.to_owned(),
        args: args.to_string().into_bytes(),
    }
}

/// Produces block `height` of the chain described by `config`: the workload's calls
/// spread over the shards, and the contract state they change.
pub(crate) fn produce_block(config: &ChainConfig, height: u64) -> ProducedBlock {
    let hash = workload::block_hash(config.seed, height).0;
    let prev_hash = if height == 0 { [0; 32] } else { workload::block_hash(config.seed, height - 1).0 };

    let mut calls_per_shard: Vec<Vec<CallRecord>> = vec![Vec::new(); config.num_shards as usize];
    for sign in workload::sign_calls(config, height) {
        let args = json!({"request": {"payload": sign.payload, "path": sign.path, "domain_id": 0}});
        let record = call(sign.receipt_id.0, sign.predecessor_id.to_string(), config, "sign", &args);
        calls_per_shard[sign.shard as usize].push(record);
    }
    for respond in workload::respond_calls(config, height) {
        let args =
            json!({"request_id": respond.request_id.to_string(), "response": {"big_r": "sandbox", "s": "sandbox"}});
        let record = call(respond.receipt_id.0, respond.responder.to_string(), config, "respond", &args);
        calls_per_shard[respond.shard as usize].push(record);
    }
    let contract_changes: Vec<(String, Value)> = workload::governance_changes(config, height)
        .into_iter()
        .map(|(method, value)| (method.to_owned(), value))
        .collect();
    for (index, (view_method, value)) in contract_changes.iter().enumerate() {
        let receipt_id = hash_of(&format!("sandbox/{}/vote/{height}/{index}", config.seed));
        let method = workload::vote_method(view_method);
        calls_per_shard[0].push(call(receipt_id, VOTER.to_owned(), config, method, value));
    }

    let chunks = chunks_of(
        calls_per_shard,
        |shard| hash_of(&format!("sandbox/{}/chunk/{height}/{shard}", config.seed)),
        prev_hash,
        height,
    );

    let block = BlockRecord {
        height,
        prev_height: height.checked_sub(1),
        hash,
        prev_hash,
        timestamp_ns: GENESIS_TIMESTAMP_NS + height * 1_000_000_000,
        last_final_block: workload::block_hash(config.seed, height.saturating_sub(2)).0,
        last_ds_final_block: workload::block_hash(config.seed, height.saturating_sub(1)).0,
        author: PRODUCER.to_owned(),
        chunks: chunks.iter().map(|chunk| chunk.header.clone()).collect(),
    };
    ProducedBlock::new(block, chunks, Vec::new(), contract_changes)
}

/// The chunks of a block at `height` after `prev_hash`, one per shard, carrying
/// `calls_per_shard`; `chunk_hash` names each shard's chunk.
pub(crate) fn chunks_of(
    calls_per_shard: Vec<Vec<CallRecord>>,
    chunk_hash: impl Fn(usize) -> [u8; 32],
    prev_hash: [u8; 32],
    height: u64,
) -> Vec<ChunkRecord> {
    calls_per_shard
        .into_iter()
        .enumerate()
        .map(|(shard, receipts)| {
            let header = ChunkHeaderRecord {
                chunk_hash: chunk_hash(shard),
                prev_block_hash: prev_hash,
                height,
                shard_id: shard as u64,
            };
            ChunkRecord { author: PRODUCER.to_owned(), header, receipts }
        })
        .collect()
}
