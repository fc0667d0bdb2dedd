//! What `listen_blocks` takes from a block: the MPC contract's sign requests and
//! responses, from receipt execution outcomes.

use mpc_migrations::layout::{BlockEffects, Cursor, Hash32, SignRequestRecord, SignResponseRecord};
use near_indexer_primitives::StreamerMessage;
use near_indexer_primitives::types::AccountId;
use near_indexer_primitives::views::{ActionView, ExecutionStatusView, ReceiptEnumView};

#[derive(serde::Deserialize)]
struct SignArgs {
    request: SignArgsRequest,
}

#[derive(serde::Deserialize)]
struct SignArgsRequest {
    payload: String,
    path: String,
}

/// Borrows the id from the arguments when it has no escapes (base58 never has), so a
/// response costs no allocation before its id is decoded.
#[derive(serde::Deserialize)]
struct RespondArgs<'a> {
    #[serde(borrow)]
    request_id: std::borrow::Cow<'a, str>,
}

/// Extracts the block's effects on the node store. Malformed calls are logged and
/// skipped: a bad transaction on chain must never stop the indexer.
pub fn extract_block_effects(message: &StreamerMessage, contract_id: &AccountId) -> BlockEffects {
    let height = message.block.header.height;
    let mut effects = BlockEffects {
        cursor: Cursor { height, block_hash: Hash32(message.block.header.hash.0) },
        requests: Vec::new(),
        responses: Vec::new(),
    };
    for shard in &message.shards {
        for executed in &shard.receipt_execution_outcomes {
            let receipt = &executed.receipt;
            if &receipt.receiver_id != contract_id {
                continue;
            }
            if !matches!(
                executed.execution_outcome.outcome.status,
                ExecutionStatusView::SuccessValue(_) | ExecutionStatusView::SuccessReceiptId(_)
            ) {
                continue;
            }
            let ReceiptEnumView::Action { actions, .. } = &receipt.receipt else { continue };
            for action in actions {
                let ActionView::FunctionCall { method_name, args, .. } = action else { continue };
                match method_name.as_str() {
                    "sign" => match serde_json::from_slice::<SignArgs>(args) {
                        Ok(call) => effects.requests.push(SignRequestRecord {
                            request_id: Hash32(receipt.receipt_id.0),
                            predecessor_id: receipt.predecessor_id.as_str().to_owned(),
                            payload: call.request.payload,
                            path: call.request.path,
                            height,
                        }),
                        Err(err) => {
                            tracing::warn!(height, receipt = %receipt.receipt_id, error = %err, "skipping malformed sign call")
                        }
                    },
                    "respond" => match serde_json::from_slice::<RespondArgs>(args)
                        .ok()
                        .and_then(|call| request_id_of(&call.request_id))
                    {
                        Some(request_id) => effects.responses.push(SignResponseRecord { request_id, height }),
                        None => {
                            tracing::warn!(height, receipt = %receipt.receipt_id, "skipping malformed respond call")
                        }
                    },
                    _ => {}
                }
            }
        }
    }
    effects
}

/// A request id as a `respond` call names it: 64 hex digits (a chain host's contract),
/// or base58 (the embedded chain's made-up responses, as NEAR prints a hash).
fn request_id_of(text: &str) -> Option<Hash32> {
    if text.len() == 64 {
        return Hash32::from_hex(text);
    }
    text.parse::<near_indexer_primitives::CryptoHash>().ok().map(|hash| Hash32(hash.0))
}
