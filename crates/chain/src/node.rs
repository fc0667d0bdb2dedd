//! Starting the chain node on an actor system.

use std::path::Path;
use std::sync::Arc;

use mpc_store::{Reuse, Store, StoreOptions};
use near_async::ActorSystem;
use near_async::futures::FutureSpawnerExt;
use near_async::tokio::TokioRuntimeHandle;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::actors::ViewClientActor;
use crate::client::ClientActor;
use crate::config::{ChainConfig, ChainMode};
use crate::follower::follow_host;
use crate::host_client::HostClient;
use crate::store::{ChainStoreError, chain_head, open_chain_store};

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
/// the chain store: once they stop, only the store's owner keeps it open.
#[derive(Clone)]
pub struct ChainNode {
    /// The block producer.
    pub client: ClientHandle,
    /// The query endpoint.
    pub view_client: ViewClientHandle,
    /// Settings the chain runs with.
    pub config: ChainConfig,
    /// The height of the stored head, told at every new block.
    pub head_height: watch::Receiver<u64>,
}

impl ChainNode {
    /// Opens (or creates) the chain store at `data_dir` for a chain with `config`,
    /// counted in tracker group `store_group`. `schema_verified_earlier` skips the
    /// read-only schema probe for a store this process opened at the latest schema
    /// before. The caller owns the store: it hands it to [`ChainNode::start`] for each
    /// chain node it runs on it, and closes it.
    pub fn open_store(
        config: &ChainConfig,
        data_dir: &Path,
        store_group: &str,
        schema_verified_earlier: bool,
    ) -> Result<Arc<Store>, ChainError> {
        config.validate().map_err(ChainError::Config)?;
        // Every block can be produced (or synced) again, so a log damaged before its
        // end is recovered to its last consistent write rather than refused.
        let options = StoreOptions::new("chain", store_group).recovering_damaged_log();
        let store = open_chain_store(data_dir, config, &options, schema_verified_earlier)?;
        if let Some(damage) = store.recovered_from() {
            let head = chain_head(&store).map_err(ChainStoreError::from)?;
            tracing::warn!(
                ?head, %damage,
                "chain store recovered to the last block before its damaged log; the chain continues from there"
            );
        }
        Ok(store)
    }

    /// Starts the client and view-client actors of a chain with `config` on
    /// `actor_system`, on `store` (opened by [`ChainNode::open_store`]); `reuse` says
    /// whether the store was opened for this node or kept open from the one before, for
    /// the log. The actors take named holders of the store; when they stop, they let go
    /// of it, and the store closes once its owner lets go too.
    ///
    /// The actors stop when `stop` is cancelled, or with the whole actor system. A
    /// process keeps one actor system for its life and stops each chain node it starts
    /// through that node's own token: near-async keeps every actor system ever created
    /// in a global list (and its `shutdown_all_actors()` accepts only one), so a system
    /// per restart grew that list with every restart.
    pub fn start(
        config: &ChainConfig,
        store: Arc<Store>,
        reuse: Reuse,
        actor_system: &ActorSystem,
        stop: &CancellationToken,
    ) -> Result<ChainNode, ChainError> {
        config.validate().map_err(ChainError::Config)?;
        let host = match &config.mode {
            ChainMode::Follower { host } => Some(HostClient::new(host).map_err(ChainError::Config)?),
            _ => None,
        };
        let head = chain_head(&store).map_err(ChainStoreError::from)?.unwrap_or(0);
        // History is produced once, at first start: a restarted chain only resumes. A
        // follower learns how far it has to go from the host.
        let history_target = if host.is_some() { head } else { config.history_blocks.max(head) };
        let store_was = match reuse {
            Reuse::Opened => "opened",
            Reuse::Reused => "kept open",
        };
        tracing::info!(
            head, history_target, path = %store.path().display(), chain_store = store_was, mode = config.mode.source(),
            "sandbox chain starting"
        );
        let (head_sender, head_height) = watch::channel(head);
        let client = ClientActor::new(store.holder("client_actor"), config.clone(), history_target, head_sender)
            .map_err(ChainStoreError::from)?;
        let view_client = ViewClientActor::new(store.holder("view_client_actor"));
        drop(store);
        let client = actor_system.spawn_tokio_actor(client);
        let view_client = actor_system.spawn_tokio_actor(view_client);
        stop_when_cancelled(&client, stop);
        stop_when_cancelled(&view_client, stop);
        if let Some(host) = host {
            client.spawn("follow_host", follow_host(host, client.sender(), stop.clone()));
        }
        Ok(ChainNode {
            client: client.sender(),
            view_client: view_client.sender(),
            config: config.clone(),
            head_height,
        })
    }
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
