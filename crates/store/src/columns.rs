//! The one list of column families, shared by every store of the node.

/// A RocksDB column family. All stores open the same set, like nearcore's `DBCol`,
/// so there is one place that names every kind of record on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    /// Store metadata: schema version, migration progress, cursors, applied tokens.
    Misc,
    /// Chain: block height (u64 big-endian) to the block: a JSON `BlockView` (schema
    /// v1), a block record (v2), or the block with its chunks as one bundle (v3).
    Blocks,
    /// Chain: block hash to block height.
    BlockHeightByHash,
    /// Chain: chunk hash to the chunk (header, transactions, receipts) as JSON (v1) or a
    /// record (v2), or to where the chunk sits in its block's bundle (v3).
    Chunks,
    /// Chain: (height, shard) to the receipt execution outcomes of that shard as JSON
    /// (v1) or a record (v2), or a mark that they are the bundled chunk's receipts (v3).
    Outcomes,
    /// Chain: MPC contract state by view-method name, as JSON.
    ContractState,
    /// Node: sign requests seen by the indexer, keyed by (height, index in block).
    SignRequests,
    /// Node: secondary index from request id to the `SignRequests` key (schema v3).
    SignRequestsById,
    /// Node: responses seen by the indexer, keyed by request id.
    SignResponses,
    /// Node: height of every indexed block, for the exactly-once check.
    IndexedBlocks,
    /// Chain: block height to the contract state changes the block made, by view
    /// method (schema v4), so a follower syncs each block with its changes.
    ContractChanges,
    /// Chain host: arrival sequence to a transaction acknowledged and not yet in a
    /// block (the transaction pool).
    PendingTransactions,
    /// Chain host: transaction id to where the transaction is: pending (its sequence)
    /// or included (its height); makes a transaction posted twice count once.
    Transactions,
    /// Chain host: the contract's sign requests, keyed by (height, index in block), with
    /// the accepted response once there is one.
    ContractRequests,
    /// Chain host: request id to its `ContractRequests` key.
    ContractRequestIds,
    /// Assets: this node's presignatures as their owner (leader), by id, sealed: the
    /// signing set, every member's commitments and this node's own nonces.
    Presignatures,
    /// Assets: the nonces this node holds as a member of another owner's presignature,
    /// by (owner, id), sealed.
    HeldNonces,
}

impl Column {
    /// Every column, in a fixed order; the store opens all of them.
    pub const ALL: [Column; 17] = [
        Column::Misc,
        Column::Blocks,
        Column::BlockHeightByHash,
        Column::Chunks,
        Column::Outcomes,
        Column::ContractState,
        Column::SignRequests,
        Column::SignRequestsById,
        Column::SignResponses,
        Column::IndexedBlocks,
        Column::ContractChanges,
        Column::PendingTransactions,
        Column::Transactions,
        Column::ContractRequests,
        Column::ContractRequestIds,
        Column::Presignatures,
        Column::HeldNonces,
    ];

    /// The column-family name on disk. `Misc` is RocksDB's default family, which always
    /// exists, so an empty directory and a store of ours are told apart by the others.
    pub fn name(self) -> &'static str {
        match self {
            Column::Misc => "default",
            Column::Blocks => "blocks",
            Column::BlockHeightByHash => "block_height_by_hash",
            Column::Chunks => "chunks",
            Column::Outcomes => "outcomes",
            Column::ContractState => "contract_state",
            Column::SignRequests => "sign_requests",
            Column::SignRequestsById => "sign_requests_by_id",
            Column::SignResponses => "sign_responses",
            Column::IndexedBlocks => "indexed_blocks",
            Column::ContractChanges => "contract_changes",
            Column::PendingTransactions => "pending_transactions",
            Column::Transactions => "transactions",
            Column::ContractRequests => "contract_requests",
            Column::ContractRequestIds => "contract_request_ids",
            Column::Presignatures => "presignatures",
            Column::HeldNonces => "held_nonces",
        }
    }

    /// Columns that every store of ours has had since its first schema version. An
    /// existing store without them is not ours or is damaged; later columns are created
    /// at open, which is how a migration gains a new family.
    pub const BASE: [Column; 3] = [Column::Misc, Column::Blocks, Column::SignRequests];
}
