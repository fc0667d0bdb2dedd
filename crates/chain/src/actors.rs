//! The view client on the `near-async` actor system: it answers queries from the stored
//! chain (the client, which produces or syncs the chain, is `crate::client`).

use mpc_store::StoreHolder;
use near_async::messaging::{Actor, Handler};
use near_indexer_primitives::types::Finality;
use near_indexer_primitives::views::BlockView;
use near_indexer_primitives::{CryptoHash, IndexerChunkView, IndexerExecutionOutcomeWithReceipt};

use crate::client::FINALITY_LAG;
use crate::store::{
    MissingPiece, read_block, read_chunk, read_contract_view, read_outcomes, read_streamer_message,
    read_streamer_messages,
};

/// Why a view query could not be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    /// No block at that height (yet).
    #[error("unknown block at height {0}")]
    UnknownBlock(u64),
    /// No chunk with that hash.
    #[error("unknown chunk {0}")]
    UnknownChunk(CryptoHash),
    /// The outcomes of a shard of a stored block are missing.
    #[error("execution outcomes of shard {shard} at height {height} are missing")]
    MissingOutcomes { height: u64, shard: usize },
    /// The contract has no such view method.
    #[error("unknown contract view method `{0}`")]
    UnknownMethod(String),
    /// The store failed.
    #[error("chain store error: {0}")]
    Store(String),
}

impl From<mpc_store::StoreError> for ViewError {
    fn from(err: mpc_store::StoreError) -> Self {
        ViewError::Store(err.to_string())
    }
}

/// A block by height or by finality.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockQuery {
    /// The block at this height.
    Height(u64),
    /// The latest block with this finality.
    Finality(Finality),
}

/// A chunk by hash.
#[derive(Debug, Clone, Copy)]
pub struct GetChunk(pub CryptoHash);

/// The receipt execution outcomes of one shard of a block.
#[derive(Debug, Clone, Copy)]
pub struct GetOutcomes {
    /// Block height.
    pub height: u64,
    /// Shard index.
    pub shard: usize,
}

/// Everything the indexer streams for one height (block, chunks, outcomes) in one
/// round-trip to the view client, instead of one query per piece.
#[derive(Debug, Clone, Copy)]
pub struct GetStreamerMessage(pub u64);

/// The messages of up to `count` consecutive heights from `start` in one round-trip,
/// so that the indexer's streamer pays one actor round-trip per batch rather than per
/// height while catching up.
#[derive(Debug, Clone, Copy)]
pub struct GetStreamerMessages {
    /// First height.
    pub start: u64,
    /// Heights asked for, at least one.
    pub count: u64,
}

/// The answer to [`GetStreamerMessages`]: the messages of consecutive heights from the
/// first one asked for, and why the height after the last one could not be assembled,
/// if the batch stopped early.
#[derive(Debug)]
pub struct StreamerMessages {
    /// Messages of `start`, `start + 1`, ... in order.
    pub messages: Vec<near_indexer_primitives::StreamerMessage>,
    /// Why height `start + messages.len()` is missing; `None` if all were assembled.
    pub stopped_by: Option<ViewError>,
}

/// A view call on the MPC contract (`state`, `allowed_docker_image_hashes`,
/// `get_tee_accounts`, `migration_info`).
#[derive(Debug, Clone)]
pub struct ContractView(pub String);

/// Answers queries from the chain store.
pub struct ViewClientActor {
    store: StoreHolder,
}

impl ViewClientActor {
    pub(crate) fn new(store: StoreHolder) -> Self {
        ViewClientActor { store }
    }

    fn head(&self) -> Result<u64, ViewError> {
        crate::store::chain_head(&self.store)?.ok_or(ViewError::UnknownBlock(0))
    }
}

impl Actor for ViewClientActor {}

impl Handler<BlockQuery, Result<BlockView, ViewError>> for ViewClientActor {
    fn handle(&mut self, query: BlockQuery) -> Result<BlockView, ViewError> {
        let height = match query {
            BlockQuery::Height(height) => height,
            BlockQuery::Finality(Finality::Final) => self.head()?.saturating_sub(FINALITY_LAG),
            BlockQuery::Finality(Finality::DoomSlug) => self.head()?.saturating_sub(1),
            BlockQuery::Finality(Finality::None) => self.head()?,
        };
        read_block(&self.store, height)?.ok_or(ViewError::UnknownBlock(height))
    }
}

impl Handler<GetChunk, Result<IndexerChunkView, ViewError>> for ViewClientActor {
    fn handle(&mut self, query: GetChunk) -> Result<IndexerChunkView, ViewError> {
        read_chunk(&self.store, &query.0)?.ok_or(ViewError::UnknownChunk(query.0))
    }
}

impl Handler<GetOutcomes, Result<Vec<IndexerExecutionOutcomeWithReceipt>, ViewError>> for ViewClientActor {
    fn handle(&mut self, query: GetOutcomes) -> Result<Vec<IndexerExecutionOutcomeWithReceipt>, ViewError> {
        read_outcomes(&self.store, query.height, query.shard)?
            .ok_or(ViewError::MissingOutcomes { height: query.height, shard: query.shard })
    }
}

impl ViewClientActor {
    fn streamer_message(&self, height: u64) -> Result<near_indexer_primitives::StreamerMessage, ViewError> {
        read_streamer_message(&self.store, height)?.map_err(|missing| view_error(height, missing))
    }
}

/// The error that names the piece of block `height` found missing.
fn view_error(height: u64, missing: MissingPiece) -> ViewError {
    match missing {
        MissingPiece::Block => ViewError::UnknownBlock(height),
        MissingPiece::Chunk(hash) => ViewError::UnknownChunk(hash),
        MissingPiece::Outcomes(shard) => ViewError::MissingOutcomes { height, shard },
    }
}

impl Handler<GetStreamerMessage, Result<near_indexer_primitives::StreamerMessage, ViewError>> for ViewClientActor {
    fn handle(&mut self, query: GetStreamerMessage) -> Result<near_indexer_primitives::StreamerMessage, ViewError> {
        self.streamer_message(query.0)
    }
}

impl Handler<GetStreamerMessages, StreamerMessages> for ViewClientActor {
    fn handle(&mut self, query: GetStreamerMessages) -> StreamerMessages {
        match read_streamer_messages(&self.store, query.start, query.count) {
            Ok((messages, stopped_at)) => StreamerMessages {
                messages,
                stopped_by: stopped_at.map(|(height, missing)| view_error(height, missing)),
            },
            Err(err) => StreamerMessages { messages: Vec::new(), stopped_by: Some(err.into()) },
        }
    }
}

impl Handler<ContractView, Result<serde_json::Value, ViewError>> for ViewClientActor {
    fn handle(&mut self, query: ContractView) -> Result<serde_json::Value, ViewError> {
        read_contract_view(&self.store, &query.0)?.ok_or(ViewError::UnknownMethod(query.0))
    }
}

/// Asks the view client for a named holder of the chain store, so a test can inject
/// faults into the running chain. Test-only (feature `test-hooks`).
#[cfg(feature = "test-hooks")]
#[derive(Debug)]
pub struct FaultInjectionStore;

#[cfg(feature = "test-hooks")]
impl Handler<FaultInjectionStore, StoreHolder> for ViewClientActor {
    fn handle(&mut self, _: FaultInjectionStore) -> StoreHolder {
        self.store.holder("test_fault_injector")
    }
}
