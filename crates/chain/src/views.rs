//! Builds the real `near-indexer-primitives` views from the chain store's records: the
//! record's varying fields plus the constants every sandbox block shares.

use near_crypto::{KeyType, PublicKey, Signature};
use near_indexer_primitives::near_primitives::errors::{
    ActionError, ActionErrorKind, FunctionCallError, TxExecutionError,
};
use near_indexer_primitives::types::{AccountId, Balance, FunctionArgs, Gas, ShardId};
use near_indexer_primitives::views::{
    ActionView, BlockHeaderView, BlockView, ChunkHeaderView, ExecutionMetadataView, ExecutionOutcomeView,
    ExecutionOutcomeWithIdView, ExecutionStatusView, ReceiptEnumView, ReceiptView,
};
use near_indexer_primitives::{CryptoHash, IndexerChunkView, IndexerExecutionOutcomeWithReceipt};

use crate::records::{BlockRecord, CallRecord, ChunkHeaderRecord, ChunkRecord, OutcomesRecord, ReceiptFailure};

/// Protocol version the sandbox blocks claim.
const PROTOCOL_VERSION: u32 = 80;

/// A record field that is not a valid account id (a corrupted record).
#[derive(Debug, thiserror::Error)]
#[error("invalid account id {0:?} in a stored record")]
pub(crate) struct InvalidAccountId(String);

fn account(id: &str) -> Result<AccountId, InvalidAccountId> {
    id.parse().map_err(|_| InvalidAccountId(id.to_owned()))
}

fn receipt_view(call: CallRecord) -> Result<ReceiptView, InvalidAccountId> {
    let predecessor_id = account(&call.predecessor_id)?;
    Ok(ReceiptView {
        predecessor_id: predecessor_id.clone(),
        receiver_id: account(&call.receiver_id)?,
        receipt_id: CryptoHash(call.receipt_id),
        receipt: ReceiptEnumView::Action {
            signer_id: predecessor_id,
            signer_public_key: PublicKey::empty(KeyType::ED25519),
            gas_price: Balance::from_yoctonear(100_000_000),
            output_data_receivers: vec![],
            input_data_ids: vec![],
            actions: vec![ActionView::FunctionCall {
                method_name: call.method_name,
                args: FunctionArgs::from(call.args),
                gas: Gas::from_teragas(15),
                deposit: Balance::from_yoctonear(1),
            }],
            is_promise_yield: false,
            refund_to: None,
        },
        _priority: 0,
    })
}

/// The status of a receipt the sandbox executed: success, or the failure the contract
/// gave, as NEAR reports a failed function call.
fn status_of(failure: Option<&str>) -> ExecutionStatusView {
    match failure {
        None => ExecutionStatusView::SuccessValue(vec![]),
        Some(error) => ExecutionStatusView::Failure(TxExecutionError::ActionError(ActionError {
            index: Some(0),
            kind: ActionErrorKind::FunctionCallError(FunctionCallError::ExecutionError(error.to_owned())),
        })),
    }
}

fn executed(receipt: ReceiptView, block_hash: CryptoHash, failure: Option<&str>) -> IndexerExecutionOutcomeWithReceipt {
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
                status: status_of(failure),
                metadata: ExecutionMetadataView::default(),
            },
        },
        receipt,
    }
}

fn chunk_header_view(header: &ChunkHeaderRecord) -> ChunkHeaderView {
    ChunkHeaderView {
        chunk_hash: CryptoHash(header.chunk_hash),
        prev_block_hash: CryptoHash(header.prev_block_hash),
        outcome_root: CryptoHash::default(),
        prev_state_root: CryptoHash::default(),
        encoded_merkle_root: CryptoHash::default(),
        encoded_length: 0,
        height_created: header.height,
        height_included: header.height,
        shard_id: ShardId::new(header.shard_id),
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

/// The view of a stored block.
pub(crate) fn block_view(block: &BlockRecord) -> Result<BlockView, InvalidAccountId> {
    let header = BlockHeaderView {
        height: block.height,
        prev_height: block.prev_height,
        hash: CryptoHash(block.hash),
        prev_hash: CryptoHash(block.prev_hash),
        timestamp: block.timestamp_ns,
        timestamp_nanosec: block.timestamp_ns,
        chunks_included: block.chunks.len() as u64,
        chunk_mask: vec![true; block.chunks.len()],
        latest_protocol_version: PROTOCOL_VERSION,
        last_final_block: CryptoHash(block.last_final_block),
        last_ds_final_block: CryptoHash(block.last_ds_final_block),
        ..BlockHeaderView::default()
    };
    Ok(BlockView {
        author: account(&block.author)?,
        header,
        chunks: block.chunks.iter().map(chunk_header_view).collect(),
    })
}

/// The view of a stored chunk.
pub(crate) fn chunk_view(chunk: ChunkRecord) -> Result<IndexerChunkView, InvalidAccountId> {
    Ok(IndexerChunkView {
        author: account(&chunk.author)?,
        header: chunk_header_view(&chunk.header),
        transactions: vec![],
        receipts: chunk.receipts.into_iter().map(receipt_view).collect::<Result<_, _>>()?,
        local_receipts: vec![],
        instant_receipts: vec![],
    })
}

/// The views of the stored execution outcomes of one shard of a block: each receipt
/// succeeded, but those `failures` names.
pub(crate) fn outcomes_view(
    outcomes: OutcomesRecord,
    failures: &[ReceiptFailure],
) -> Result<Vec<IndexerExecutionOutcomeWithReceipt>, InvalidAccountId> {
    let block_hash = CryptoHash(outcomes.block_hash);
    outcomes
        .receipts
        .into_iter()
        .enumerate()
        .map(|(index, call)| {
            let failure = failures.iter().find(|failure| failure.receipt as usize == index);
            Ok(executed(receipt_view(call)?, block_hash, failure.map(|failure| failure.error.as_str())))
        })
        .collect()
}
