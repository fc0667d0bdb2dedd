//! Starting the chain node on an actor system.

use std::path::Path;
use std::sync::Arc;

use mpc_store::migration::SchemaVerified;
use mpc_store::{KeptStore, Reuse, StoreOptions};
use near_async::ActorSystem;
use near_async::futures::FutureSpawnerExt;
use near_async::tokio::TokioRuntimeHandle;
use tokio_util::sync::CancellationToken;

use crate::actors::{ClientActor, ViewClientActor};
use crate::chain_store::{ChainStoreError, chain_head, open_chain_store};
use crate::config::ChainConfig;

/// Handle for messages to the client actor.
pub type ClientHandle = Arc<TokioRuntimeHandle<ClientActor>>;
/// Handle for queries to the view-client actor.
pub type ViewClientHandle = Arc<TokioRuntimeHandle<ViewClientActor>>;

/// Why the chain could not start.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// Settings the chain cannot honour.
    #[error("invalid sandbox chain settings: {0}")]
    Config(String),
    /// The chain store could not be opened or initialised.
    #[error(transparent)]
    Store(#[from] ChainStoreError),
}

/// A running sandbox chain: handles to its actors. The actors, not these handles, hold
/// the chain store, so stopping them is what closes it (unless a [`KeptStore`] keeps it
/// open for the next chain node of the process).
#[derive(Clone)]
pub struct ChainNode {
    /// The block producer.
    pub client: ClientHandle,
    /// The query endpoint.
    pub view_client: ViewClientHandle,
    /// Settings the chain runs with.
    pub config: ChainConfig,
}

impl ChainNode {
    /// Opens (or creates) the chain store at `data_dir` and starts the client and
    /// view-client actors on `actor_system`. The store is counted in tracker group
    /// `store_group`, so a restart of this subsystem can wait for it alone;
    /// `schema_verified` lets the opens after the first in one process skip the
    /// read-only schema probe. With `kept`, the store an earlier chain node of this
    /// process left there is used instead of opening it again (and a store opened now
    /// is left there for the next one).
    ///
    /// The actors stop when `stop` is cancelled, or with the whole actor system. A
    /// process keeps one actor system for its life and stops each chain node it starts
    /// through that node's own token: near-async keeps every actor system ever created
    /// in a global list (and its `shutdown_all_actors()` accepts only one), so a system
    /// per restart grew that list with every restart.
    pub fn start(
        config: &ChainConfig,
        data_dir: &Path,
        store_group: &str,
        schema_verified: &SchemaVerified,
        kept: Option<&KeptStore>,
        actor_system: &ActorSystem,
        stop: &CancellationToken,
    ) -> Result<ChainNode, ChainError> {
        config.validate().map_err(ChainError::Config)?;
        let open = || open_store(config, data_dir, store_group, schema_verified);
        let (store, reuse) = match kept {
            Some(kept) => kept.open_or_reuse(open)?,
            None => (open()?, Reuse::Opened),
        };
        let head = chain_head(&store).map_err(ChainStoreError::from)?.unwrap_or(0);
        // History is produced once, at first start: a restarted chain only resumes.
        let history_target = config.history_blocks.max(head);
        let store_was = match reuse {
            Reuse::Opened => "opened",
            Reuse::Reused => "kept open",
        };
        tracing::info!(head, history_target, path = %data_dir.display(), chain_store = store_was, "sandbox chain starting");
        let client = ClientActor::new(store.holder("client_actor"), config.clone(), head, history_target);
        let view_client = ViewClientActor::new(store.holder("view_client_actor"));
        drop(store);
        let client = actor_system.spawn_tokio_actor(client);
        let view_client = actor_system.spawn_tokio_actor(view_client);
        stop_when_cancelled(&client, stop);
        stop_when_cancelled(&view_client, stop);
        Ok(ChainNode { client: client.sender(), view_client: view_client.sender(), config: config.clone() })
    }

    /// Opens the chain store into `kept` before the first chain node of the process
    /// starts, with the same settings [`ChainNode::start`] would use, so the node's
    /// start-up can open it beside its own store; that start then takes this instance.
    /// Does nothing when `kept` holds a store already.
    pub fn open_store_ahead(
        config: &ChainConfig,
        data_dir: &Path,
        store_group: &str,
        schema_verified: &SchemaVerified,
        kept: &KeptStore,
    ) -> Result<(), ChainError> {
        config.validate().map_err(ChainError::Config)?;
        Ok(kept.open_ahead(|| open_store(config, data_dir, store_group, schema_verified))?)
    }
}

/// Opens (or creates) the chain store of a chain node counted in `store_group`.
fn open_store(
    config: &ChainConfig,
    data_dir: &Path,
    store_group: &str,
    schema_verified: &SchemaVerified,
) -> Result<Arc<mpc_store::Store>, ChainStoreError> {
    open_chain_store(data_dir, config, &StoreOptions::new("chain", store_group), schema_verified)
}

/// Stops the actor behind `handle` once `stop` is cancelled. The wait runs on the
/// actor's own runtime, so it ends with the actor however the actor is stopped.
fn stop_when_cancelled<A: 'static>(handle: &TokioRuntimeHandle<A>, stop: &CancellationToken) {
    let (actor, stop) = (handle.clone(), stop.clone());
    handle.spawn("stop_when_cancelled", async move {
        stop.cancelled().await;
        actor.stop();
    });
}
