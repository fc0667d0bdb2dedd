//! Builds the real `near-indexer-primitives` views of one sandbox block.

use near_crypto::{KeyType, PublicKey, Signature};
use near_indexer_primitives::types::{AccountId, Balance, FunctionArgs, Gas, ShardId};
use near_indexer_primitives::views::{
    ActionView, BlockHeaderView, BlockView, ChunkHeaderView, ExecutionMetadataView, ExecutionOutcomeView,
    ExecutionOutcomeWithIdView, ExecutionStatusView, ReceiptEnumView, ReceiptView,
};
use near_indexer_primitives::{CryptoHash, IndexerChunkView, IndexerExecutionOutcomeWithReceipt};
use serde_json::{Value, json};

use crate::config::ChainConfig;
use crate::workload::{self, GENESIS_TIMESTAMP_NS};

/// Protocol version the sandbox blocks claim.
const PROTOCOL_VERSION: u32 = 80;

/// Everything the chain stores for one block.
pub(crate) struct ProducedBlock {
    pub block: BlockView,
    pub chunks: Vec<IndexerChunkView>,
    /// Receipt execution outcomes per shard, in shard order.
    pub outcomes: Vec<Vec<IndexerExecutionOutcomeWithReceipt>>,
    /// Contract state changes, by view method.
    pub contract_changes: Vec<(&'static str, Value)>,
}

fn producer() -> AccountId {
    "node0.sandbox".parse().expect("a valid constant account id")
}

fn function_call_receipt(
    receipt_id: CryptoHash,
    predecessor_id: AccountId,
    receiver_id: AccountId,
    method_name: &str,
    args: Value,
) -> ReceiptView {
    ReceiptView {
        predecessor_id: predecessor_id.clone(),
        receiver_id,
        receipt_id,
        receipt: ReceiptEnumView::Action {
            signer_id: predecessor_id,
            signer_public_key: PublicKey::empty(KeyType::ED25519),
            gas_price: Balance::from_yoctonear(100_000_000),
            output_data_receivers: vec![],
            input_data_ids: vec![],
            actions: vec![ActionView::FunctionCall {
                method_name: method_name.to_owned(),
                args: FunctionArgs::from(args.to_string().into_bytes()),
                gas: Gas::from_teragas(15),
                deposit: Balance::from_yoctonear(1),
            }],
            is_promise_yield: false,
            refund_to: None,
        },
        _priority: 0,
    }
}

fn executed(receipt: ReceiptView, block_hash: CryptoHash) -> IndexerExecutionOutcomeWithReceipt {
    IndexerExecutionOutcomeWithReceipt {
        execution_outcome: ExecutionOutcomeWithIdView {
            proof: vec![],
            block_hash,
            id: receipt.receipt_id,
            outcome: ExecutionOutcomeView {
                logs: vec![],
                receipt_ids: vec![],
                gas_burnt: Gas::from_teragas(3),
                tokens_burnt: Balance::from_yoctonear(300_000_000_000_000_000_000),
                executor_id: receipt.receiver_id.clone(),
                status: ExecutionStatusView::SuccessValue(vec![]),
                metadata: ExecutionMetadataView::default(),
            },
        },
        receipt,
    }
}

fn chunk_header(config: &ChainConfig, height: u64, shard: u64, prev_block_hash: CryptoHash) -> ChunkHeaderView {
    ChunkHeaderView {
        chunk_hash: CryptoHash::hash_bytes(format!("sandbox/{}/chunk/{height}/{shard}", config.seed).as_bytes()),
        prev_block_hash,
        outcome_root: CryptoHash::default(),
        prev_state_root: CryptoHash::default(),
        encoded_merkle_root: CryptoHash::default(),
        encoded_length: 0,
        height_created: height,
        height_included: height,
        shard_id: ShardId::new(shard),
        gas_used: Gas::from_teragas(0),
        gas_limit: Gas::from_teragas(1_000),
        rent_paid: Balance::ZERO,
        validator_reward: Balance::ZERO,
        balance_burnt: Balance::ZERO,
        outgoing_receipts_root: CryptoHash::default(),
        tx_root: CryptoHash::default(),
        validator_proposals: vec![],
        congestion_info: None,
        bandwidth_requests: None,
        proposed_split: None,
        signature: Signature::empty(KeyType::ED25519),
    }
}

/// Builds block `height` of the chain described by `config`.
pub(crate) fn build_block(config: &ChainConfig, height: u64) -> ProducedBlock {
    let hash = workload::block_hash(config.seed, height);
    let prev_hash = if height == 0 { CryptoHash::default() } else { workload::block_hash(config.seed, height - 1) };
    let contract = config.contract_id.clone();

    let mut receipts_per_shard: Vec<Vec<ReceiptView>> = vec![Vec::new(); config.num_shards as usize];
    for call in workload::sign_calls(config, height) {
        let args = json!({"request": {"payload": call.payload, "path": call.path, "domain_id": 0}});
        let receipt = function_call_receipt(call.receipt_id, call.predecessor_id, contract.clone(), "sign", args);
        receipts_per_shard[call.shard as usize].push(receipt);
    }
    for call in workload::respond_calls(config, height) {
        let args = json!({"request_id": call.request_id.to_string(), "response": {"big_r": "sandbox", "s": "sandbox"}});
        let receipt = function_call_receipt(call.receipt_id, call.responder, contract.clone(), "respond", args);
        receipts_per_shard[call.shard as usize].push(receipt);
    }
    let contract_changes = workload::governance_changes(config, height);
    for (index, (view_method, value)) in contract_changes.iter().enumerate() {
        let receipt_id = CryptoHash::hash_bytes(format!("sandbox/{}/vote/{height}/{index}", config.seed).as_bytes());
        let voter: AccountId = "node1.sandbox".parse().expect("a valid constant account id");
        let method = workload::vote_method(view_method);
        receipts_per_shard[0].push(function_call_receipt(receipt_id, voter, contract.clone(), method, value.clone()));
    }

    let mut chunks = Vec::new();
    let mut outcomes = Vec::new();
    for (shard, receipts) in receipts_per_shard.into_iter().enumerate() {
        let header = chunk_header(config, height, shard as u64, prev_hash);
        outcomes.push(receipts.iter().cloned().map(|receipt| executed(receipt, hash)).collect());
        chunks.push(IndexerChunkView {
            author: producer(),
            header,
            transactions: vec![],
            receipts,
            local_receipts: vec![],
            instant_receipts: vec![],
        });
    }

    let timestamp = GENESIS_TIMESTAMP_NS + height * 1_000_000_000;
    let header = BlockHeaderView {
        height,
        prev_height: height.checked_sub(1),
        hash,
        prev_hash,
        timestamp,
        timestamp_nanosec: timestamp,
        chunks_included: config.num_shards,
        chunk_mask: vec![true; config.num_shards as usize],
        latest_protocol_version: PROTOCOL_VERSION,
        last_final_block: workload::block_hash(config.seed, height.saturating_sub(2)),
        last_ds_final_block: workload::block_hash(config.seed, height.saturating_sub(1)),
        ..BlockHeaderView::default()
    };
    let block = BlockView { author: producer(), header, chunks: chunks.iter().map(|chunk| chunk.header.clone()).collect() };
    ProducedBlock { block, chunks, outcomes, contract_changes }
}
