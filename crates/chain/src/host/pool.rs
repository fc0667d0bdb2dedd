//! The host's transaction pool: transactions acknowledged and not yet in a block.
//!
//! A transaction is acknowledged (`POST /v1/transactions` answers 200) only after it is
//! in the pool with a synced write, so no kill and no power loss loses it; the block
//! that includes it takes it out of the pool in that block's own batch, so a kill leaves
//! it either still pending or included, never both and never neither. Its id is kept
//! with where it is (pending, or the height that included it), so a transaction posted
//! again, say by a client that retried after a lost answer, is acknowledged again and
//! included once.

use std::sync::Mutex;

use mpc_store::{Column, Store, StoreError, StoreResult, StoreUpdate};

use super::transaction::{SignedTransaction, TxId};

/// Key in [`Column::Misc`] of the next sequence a pooled transaction gets.
const NEXT_SEQUENCE_KEY: &[u8] = b"pool_next_sequence";

/// Where a transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionStatus {
    /// In the pool, at this sequence.
    Pending(u64),
    /// In the block at this height.
    Included(u64),
}

/// The host's pool over its chain store. Admissions are serialised (each takes the next
/// sequence); the block producer reads and empties the pool in its own batches.
pub struct TransactionPool {
    admissions: Mutex<()>,
}

impl Default for TransactionPool {
    fn default() -> Self {
        TransactionPool { admissions: Mutex::new(()) }
    }
}

impl TransactionPool {
    /// Adds `transaction` (already verified) to the pool durably, unless it is there or
    /// in a block already; returns where it is now.
    pub fn admit(&self, store: &Store, transaction: &SignedTransaction) -> StoreResult<TransactionStatus> {
        let _admission = self.admissions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let id = transaction.id();
        if let Some(status) = transaction_status(store, &id)? {
            return Ok(status);
        }
        let sequence = match store.get(Column::Misc, NEXT_SEQUENCE_KEY)? {
            Some(bytes) => decode_u64(store, "pool sequence", &bytes)?,
            None => 0,
        };
        let mut update = StoreUpdate::new();
        update.put_json(Column::PendingTransactions, sequence.to_be_bytes(), transaction);
        update.put_json(Column::Transactions, id, &TransactionStatus::Pending(sequence));
        update.put(Column::Misc, NEXT_SEQUENCE_KEY, (sequence + 1).to_be_bytes());
        store.commit_durably(update)?;
        Ok(TransactionStatus::Pending(sequence))
    }
}

/// Where the transaction with `id` is, if the host has it.
pub fn transaction_status(store: &Store, id: &TxId) -> StoreResult<Option<TransactionStatus>> {
    store.get_json(Column::Transactions, id)
}

/// Up to `limit` pending transactions, oldest first, with their sequences.
pub(crate) fn pending(store: &Store, limit: usize) -> StoreResult<Vec<(u64, SignedTransaction)>> {
    let mut pending = Vec::new();
    for entry in store.iter(Column::PendingTransactions, None)? {
        if pending.len() >= limit {
            break;
        }
        let (key, value) = entry?;
        let sequence = decode_u64(store, "pool key", &key)?;
        let transaction = serde_json::from_slice(&value).map_err(|err| StoreError::Decode {
            path: store.path().to_path_buf(),
            what: format!("pooled transaction {sequence}"),
            detail: err.to_string(),
        })?;
        pending.push((sequence, transaction));
    }
    Ok(pending)
}

/// Takes the transaction at `sequence` with `id` out of the pool, as included at
/// `height`, in `update` (the including block's batch).
pub(crate) fn mark_included(update: &mut StoreUpdate, sequence: u64, id: &TxId, height: u64) {
    update.delete(Column::PendingTransactions, sequence.to_be_bytes());
    update.put_json(Column::Transactions, id, &TransactionStatus::Included(height));
}

fn decode_u64(store: &Store, what: &str, bytes: &[u8]) -> StoreResult<u64> {
    <[u8; 8]>::try_from(bytes).map(u64::from_be_bytes).map_err(|_| StoreError::Decode {
        path: store.path().to_path_buf(),
        what: what.into(),
        detail: format!("{} bytes, expected 8", bytes.len()),
    })
}
