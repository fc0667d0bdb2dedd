//! How the chain host produces a block: the workload's sign requests while the contract
//! runs, then every pooled transaction as a receipt, applied to the contract in order;
//! those the contract refuses are included with a failed outcome that changes nothing.
//! The block, the contract's new state, its request records and the pool entries it
//! includes are one batch.
//!
//! A host block's hash covers its content (its height, the previous hash, its chunks,
//! failures and contract changes), so a follower can tell a block that was altered on
//! the way from one that was not ([`content_hash`]).

use std::collections::HashMap;

use borsh::BorshSerialize;
use mpc_store::{Column, Store, StoreError, StoreResult, StoreUpdate};
use near_indexer_primitives::CryptoHash;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::contract::{Effect, MpcContract, RequestRecord};
use super::network::NetworkConfig;
use super::pool::{mark_included, pending};
use super::requests::{put_request, request_by_id, stored_index};
use crate::config::ChainConfig;
use crate::records::{BlockRecord, CallRecord, ChunkRecord, ProducedBlock, ReceiptFailure, call, chunks_of};
use crate::workload::{self, GENESIS_TIMESTAMP_NS};

/// Key in [`Column::Misc`] of the contract's whole state (votes included).
const CONTRACT_KEY: &[u8] = b"host_contract";

/// Most transactions one block includes; the rest wait for the next.
const MAX_TRANSACTIONS_PER_BLOCK: usize = 4096;

/// The author of every host block.
const PRODUCER: &str = "host.sandbox";

/// Block 0 of a host's chain and the contract's first state, as one batch's pieces.
pub(crate) fn genesis(config: &ChainConfig, network: &NetworkConfig) -> (ProducedBlock, StoreUpdate) {
    let contract = MpcContract::genesis(network);
    let mut changes: Vec<(String, Value)> = workload::genesis_contract_state(config)
        .into_iter()
        .filter(|(method, _)| *method != "state")
        .map(|(method, value)| (method.to_owned(), value))
        .collect();
    changes.push(("state".into(), contract.view()));
    let shards = config.num_shards as usize;
    let produced = assemble(0, [0; 32], [[0; 32]; 2], vec![Vec::new(); shards], vec![Vec::new(); shards], changes);
    let mut update = StoreUpdate::new();
    update.put_json(Column::Misc, CONTRACT_KEY, &contract);
    (produced, update)
}

/// Produces block `height` after `previous` (the stored head): returns the block and
/// the rest of its batch (contract, requests, pool).
pub(crate) fn produce(
    store: &Store,
    config: &ChainConfig,
    height: u64,
    previous: &BlockRecord,
    before_previous: [u8; 32],
) -> StoreResult<(ProducedBlock, StoreUpdate)> {
    let mut contract: MpcContract = store.get_json(Column::Misc, CONTRACT_KEY)?.ok_or_else(|| StoreError::Decode {
        path: store.path().to_path_buf(),
        what: "host contract state".into(),
        detail: "missing (not a chain host's store?)".into(),
    })?;
    let contract_before = contract.clone();
    let shards = config.num_shards as usize;
    let mut calls: Vec<Vec<CallRecord>> = vec![Vec::new(); shards];
    let mut failures: Vec<Vec<ReceiptFailure>> = vec![Vec::new(); shards];
    let mut touched = TouchedRequests::default();
    let mut update = StoreUpdate::new();

    if contract.is_running() {
        for request in workload::sign_calls(config, height) {
            let payload = hex::encode(CryptoHash::hash_bytes(format!("payload/{}", request.receipt_id).as_bytes()).0);
            let args = json!({"request": {"payload": payload, "path": request.path, "domain_id": 0}});
            let shard = request.shard as usize;
            calls[shard].push(call(request.receipt_id.0, request.predecessor_id.to_string(), config, "sign", &args));
            touched.add(RequestRecord {
                request_id: hex::encode(request.receipt_id.0),
                height,
                payload,
                path: request.path,
                response: None,
            });
        }
    }

    for (sequence, transaction) in pending(store, MAX_TRANSACTIONS_PER_BLOCK)? {
        let id = transaction.id();
        let shard = id[0] as usize % shards;
        let index = calls[shard].len() as u32;
        let lookup = |request_id: &str| touched.get(store, request_id);
        match contract.apply(&transaction, height, lookup) {
            Ok(Effect::NewRequest { payload, path }) => {
                touched.add(RequestRecord { request_id: hex::encode(id), height, payload, path, response: None })
            }
            Ok(Effect::Answered(record)) => touched.answer(store, record)?,
            Ok(Effect::StateChanged) => {}
            Err(error) => {
                tracing::debug!(height, sender = %transaction.sender, method = transaction.action.method(), %error, "transaction failed");
                failures[shard].push(ReceiptFailure { receipt: index, error });
            }
        }
        let method = transaction.action.method();
        calls[shard].push(call(id, transaction.sender.clone(), config, method, &transaction.action.args()));
        mark_included(&mut update, sequence, &id, height);
    }

    let mut changes = Vec::new();
    if contract != contract_before {
        // A vote changes the contract without changing its view.
        if contract.view() != contract_before.view() {
            changes.push(("state".to_owned(), contract.view()));
        }
        update.put_json(Column::Misc, CONTRACT_KEY, &contract);
    }
    for (method, value) in workload::governance_changes(config, height) {
        if method == "allowed_docker_image_hashes" {
            changes.push((method.to_owned(), value));
        }
    }
    touched.write(&mut update);
    let produced = assemble(height, previous.hash, [before_previous, previous.hash], calls, failures, changes);
    Ok((produced, update))
}

/// A block of host content, its hash over that content.
fn assemble(
    height: u64,
    prev_hash: [u8; 32],
    finality: [[u8; 32]; 2],
    calls: Vec<Vec<CallRecord>>,
    failures: Vec<Vec<ReceiptFailure>>,
    contract_changes: Vec<(String, Value)>,
) -> ProducedBlock {
    let chunk_hashes: Vec<[u8; 32]> = calls
        .iter()
        .enumerate()
        .map(|(shard, receipts)| sha256_of(&(b"chunk", height, shard as u64, receipts)))
        .collect();
    let chunks = chunks_of(calls, |shard| chunk_hashes[shard], prev_hash, height);
    let mut block = BlockRecord {
        height,
        prev_height: height.checked_sub(1),
        hash: [0; 32],
        prev_hash,
        timestamp_ns: GENESIS_TIMESTAMP_NS + height * 1_000_000_000,
        last_final_block: finality[0],
        last_ds_final_block: finality[1],
        author: PRODUCER.to_owned(),
        chunks: chunks.iter().map(|chunk| chunk.header.clone()).collect(),
    };
    block.hash = content_hash(&block, &chunks, &failures, &contract_changes);
    ProducedBlock::new(block, chunks, failures, contract_changes)
}

/// The hash of a host block: SHA-256 over everything it holds but its own hash.
pub(crate) fn content_hash(
    block: &BlockRecord,
    chunks: &[ChunkRecord],
    failures: &[Vec<ReceiptFailure>],
    contract_changes: &[(String, Value)],
) -> [u8; 32] {
    let header = BlockRecord { hash: [0; 32], ..block.clone() };
    let changes: Vec<(&str, String)> =
        contract_changes.iter().map(|(method, value)| (method.as_str(), value.to_string())).collect();
    sha256_of(&(b"block", header, chunks, failures, changes))
}

fn sha256_of(value: &impl BorshSerialize) -> [u8; 32] {
    let mut bytes = Vec::new();
    value.serialize(&mut bytes).expect("serialising into a Vec cannot fail");
    Sha256::digest(&bytes).into()
}

/// The requests a block creates or answers, as they stand within it.
#[derive(Default)]
struct TouchedRequests {
    /// Request id to the record and its index in its block.
    records: HashMap<String, (RequestRecord, u32)>,
    /// Requests created in this block so far.
    created: u32,
}

impl TouchedRequests {
    fn add(&mut self, record: RequestRecord) {
        self.records.insert(record.request_id.clone(), (record, self.created));
        self.created += 1;
    }

    fn get(&self, store: &Store, request_id: &str) -> Option<RequestRecord> {
        match self.records.get(request_id) {
            Some((record, _)) => Some(record.clone()),
            // A request the store cannot read is no request to answer: the response
            // fails and is retried by its sender; the store's error surfaces elsewhere.
            None => request_by_id(store, request_id).ok().flatten(),
        }
    }

    fn answer(&mut self, store: &Store, record: RequestRecord) -> StoreResult<()> {
        let index = match self.records.get(&record.request_id) {
            Some((_, index)) => *index,
            None => stored_index(store, &record.request_id)?.ok_or_else(|| StoreError::Decode {
                path: store.path().to_path_buf(),
                what: "contract request index".into(),
                detail: format!("request {} has a record but no index", record.request_id),
            })?,
        };
        self.records.insert(record.request_id.clone(), (record, index));
        Ok(())
    }

    fn write(&self, update: &mut StoreUpdate) {
        for (record, index) in self.records.values() {
            put_request(update, record, *index);
        }
    }
}
