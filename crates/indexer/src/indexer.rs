//! The upstream-shaped entry points: start the chain node, build an indexer on it, get
//! a stream of blocks.

use std::sync::Arc;

use mpc_chain::{ChainError, ChainNode};
use mpc_lifecycle::Supervisor;
use mpc_migrations::layout::Cursor;
use mpc_store::{Reuse, Store};
use near_async::ActorSystem;
use near_indexer_primitives::StreamerMessage;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::INDEXER_STORE_GROUP;
use crate::config::{IndexerConfig, SyncModeEnum};
use crate::streamer::{latest_final_height, run_streamer};

/// The running chain node the indexer reads from (upstream: `NearNode`, the client and
/// view-client actor handles).
pub type NearNode = ChainNode;

/// An indexer bound to a running chain node.
pub struct Indexer {
    config: IndexerConfig,
    node: NearNode,
    resume_after: Option<Cursor>,
    tasks: Supervisor,
}

impl Indexer {
    /// Opens the chain store under `config.home_dir`, counted in the indexer's tracker
    /// group; `schema_verified_earlier` as in [`ChainNode::open_store`]. The caller owns
    /// it and hands it to [`Indexer::start_near_node`].
    pub fn open_chain_store(config: &IndexerConfig, schema_verified_earlier: bool) -> Result<Arc<Store>, ChainError> {
        ChainNode::open_store(&config.chain, &config.chain_data_dir(), INDEXER_STORE_GROUP, schema_verified_earlier)
    }

    /// Starts the chain's actors on `actor_system` over `chain_store` (upstream: starts
    /// `neard` in-process); `reuse` says whether the store was opened for this node or
    /// kept open from the one before. The actors stop when `stop` is cancelled or the
    /// actor system stops.
    pub fn start_near_node(
        config: &IndexerConfig,
        chain_store: Arc<Store>,
        reuse: Reuse,
        actor_system: &ActorSystem,
        stop: &CancellationToken,
    ) -> Result<NearNode, ChainError> {
        ChainNode::start(&config.chain, chain_store, reuse, actor_system, stop)
    }

    /// An indexer over `node`. `resume_after` is the node store's committed cursor, used
    /// by [`SyncModeEnum::FromInterruption`]. Unlike upstream, the indexer's tasks are
    /// spawned on `tasks`, so they are named, cancellable and awaited at shutdown.
    pub fn from_near_node(
        config: IndexerConfig,
        node: &NearNode,
        resume_after: Option<Cursor>,
        tasks: Supervisor,
    ) -> Self {
        Indexer { config, node: node.clone(), resume_after, tasks }
    }

    /// The chain node this indexer reads from.
    pub fn node(&self) -> &NearNode {
        &self.node
    }

    /// Starts the streamer task and returns its bounded channel. The streamer stops when
    /// the supervisor's token is cancelled or the receiver is dropped.
    pub fn streamer(&self) -> mpsc::Receiver<StreamerMessage> {
        let (sender, receiver) = mpsc::channel(self.config.streamer_buffer.max(1));
        let node = self.node.clone();
        let config = self.config.clone();
        let resume_after = self.resume_after;
        self.tasks.spawn("streamer", move |cancel| async move {
            let start = match config.sync_mode {
                SyncModeEnum::FromInterruption => resume_after.map_or(1, |cursor| cursor.height + 1),
                SyncModeEnum::BlockHeight(height) => height,
                SyncModeEnum::LatestSynced => latest_final_height(&node, &config.finality).await?,
            };
            run_streamer(node, config, start, sender, cancel).await
        });
        receiver
    }
}
