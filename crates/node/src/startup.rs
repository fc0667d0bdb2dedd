//! Start-up, as the run loop's first future: open (and migrate) the node store, with the
//! chain store opening beside it, finish or apply a data wipe, start the wipe-token
//! watcher and the first generation of the indexer, and hand what it opened back to the
//! run loop.
//!
//! Why it returns what it opened: if a shutdown overtakes start-up, the run loop drops
//! this future, and with it everything it holds; nothing is left in a place the
//! shutdown sequence would have to know about. The blocking open runs in a supervised
//! node task and hands its result back through a channel, so an open that finishes
//! after start-up was abandoned drops (closes) its store inside that task, which the
//! shutdown sequence drains before it waits for every RocksDB instance.

use std::sync::Arc;
use std::time::Instant;

use mpc_indexer::Indexer;
use mpc_lifecycle::{LifecyclePhase, Supervisor, millis};
use mpc_migrations::node_schema_with_chunk_size;
use mpc_store::migration::{MigrationSettings, SchemaOutcome, open_migrated};
use mpc_store::{OwnedStore, Store, StoreOptions};
use tokio::sync::{mpsc, oneshot};

use crate::data_wipe::{finish_wipes_at_start, watch_data_wipe_token, wipe_may_be_due_at_start};
use crate::error::NodeError;
use crate::generation::{GenerationContext, IndexerGeneration, chain_store_for_generation, indexer_config};
use crate::home::Home;
use crate::test_hooks::TestHooks;

/// Tracker group of the node's own store.
pub const NODE_STORE_GROUP: &str = "node";

/// What the run loop owns while the node runs: the node store, the chain store's owner
/// and the generation of the indexer that runs on them.
pub struct RunningNode {
    /// The node's own store, opened and migrated.
    pub node_store: Arc<Store>,
    /// The chain store's one owner: it keeps the store open from one generation to the
    /// next, and closes it when a restart must reopen it or the node stops.
    pub chain_store: OwnedStore,
    /// The current generation of the indexer subsystem.
    pub generation: IndexerGeneration,
}

/// What start-up needs from the run loop.
pub struct StartupContext {
    /// What every generation is started with.
    pub generation: GenerationContext,
    /// Node-level supervised tasks (the store open, the wipe-token watcher).
    pub node_tasks: Supervisor,
    /// Where the wipe-token watcher sends new tokens.
    pub wipe_requests: mpsc::UnboundedSender<String>,
    /// Fault hooks of the process tests.
    pub test_hooks: TestHooks,
}

/// Starts the node. Every step either runs where the run loop still receives signals
/// or checks the root token, so a stop in any phase is honoured.
pub async fn start_node(context: StartupContext) -> Result<RunningNode, NodeError> {
    let chain_store_ahead = open_chain_store_ahead(&context);
    let node_store = open_node_store(&context).await?;
    let mut chain_store = OwnedStore::default();
    if let Some(ended) = chain_store_ahead
        && let Ok(Ok(Some(store))) = ended.await
    {
        chain_store = OwnedStore::opened_ahead(store);
    }
    let home = Home::new(&context.generation.args.home);
    let chain_store = finish_wipes_on_node_task(&context, &home, &node_store, chain_store).await?;
    let holder = node_store.holder("data_wipe_watcher");
    let wipe_requests = context.wipe_requests;
    context
        .node_tasks
        .spawn("data_wipe_watcher", move |cancel| watch_data_wipe_token(home, holder, wipe_requests, cancel));
    let handed = chain_store_for_generation(chain_store, &context.generation).await;
    let chain_store = handed.owner;
    let generation = IndexerGeneration::start(&context.generation, &node_store, handed.store?)?;
    Ok(RunningNode { node_store, chain_store, generation })
}

/// Finishes or applies a data wipe due at start ([`finish_wipes_at_start`]) on a node
/// task, and hands the chain store's owner back.
async fn finish_wipes_on_node_task(
    context: &StartupContext,
    home: &Home,
    node_store: &Arc<Store>,
    mut chain_store: OwnedStore,
) -> Result<OwnedStore, NodeError> {
    let (home, node_store) = (home.clone(), node_store.clone());
    let finished = run_blocking_on_node_task(&context.node_tasks, "finish_data_wipe", move || {
        finish_wipes_at_start(&home, &node_store, &mut chain_store).map(|()| chain_store)
    });
    match finished.await {
        Ok(Ok(finished)) => finished,
        Ok(Err(join_error)) => Err(NodeError::NotStopped(format!("the data wipe task failed: {join_error}"))),
        Err(_) => Err(NodeError::NotStopped("the data wipe task ended without a result".into())),
    }
}

/// Opens the chain store on a node task while the node store opens: a process start
/// then waits for the longer of the two opens, not for both in turn. Skipped (`None`)
/// when a data wipe may be due at this start; the first generation then opens the
/// store after the wipe, as an in-process restart does. Otherwise returns what hands
/// the opened store over (`None` if the open failed: the first generation opens it
/// again and reports the error as its own).
fn open_chain_store_ahead(
    context: &StartupContext,
) -> Option<oneshot::Receiver<Result<Option<Arc<Store>>, tokio::task::JoinError>>> {
    if wipe_may_be_due_at_start(&Home::new(&context.generation.args.home)) {
        tracing::debug!("a data wipe may be due: the chain store opens after the node store");
        return None;
    }
    let config = indexer_config(&context.generation);
    Some(run_blocking_on_node_task(&context.node_tasks, "open_chain_store", move || {
        let started = Instant::now();
        match Indexer::open_chain_store(&config, false) {
            Ok(store) => {
                tracing::info!(duration_ms = millis(started.elapsed()), "chain store opened beside the node store");
                Some(store)
            }
            Err(error) => {
                tracing::debug!(%error, "chain store not opened ahead");
                None
            }
        }
    }))
}
/// Runs the blocking `work` (a store open) on a supervised node task and hands its
/// result back. A result nobody waits for any more (start-up abandoned) is dropped
/// inside that task, which the shutdown sequence drains before it waits for every
/// RocksDB instance.
fn run_blocking_on_node_task<T: Send + 'static>(
    tasks: &Supervisor,
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> oneshot::Receiver<Result<T, tokio::task::JoinError>> {
    let (done_sender, done) = oneshot::channel();
    tasks.spawn(name, move |_cancel| async move {
        let _ = done_sender.send(tokio::task::spawn_blocking(work).await);
        Ok::<(), std::convert::Infallible>(())
    });
    done
}

/// Opens the node store, migrating it if it is older than this binary (a migration
/// stops between chunks when the root token is cancelled).
async fn open_node_store(context: &StartupContext) -> Result<Arc<Store>, NodeError> {
    let GenerationContext { args, phase, root_token, .. } = &context.generation;
    phase.set(LifecyclePhase::OpeningStores);
    let path = Home::new(&args.home).node_store();
    let options = node_store_options(args.sync_writes);
    let schema = node_schema_with_chunk_size(args.migration.chunk_size);
    let phase = phase.clone();
    let settings = MigrationSettings {
        keep_checkpoint: args.keep_migration_checkpoint,
        cancel: root_token.child_token(),
        on_start: Some(Arc::new(move |from, to| {
            phase.set(LifecyclePhase::Migrating);
            tracing::info!(from, to, "node store needs migration");
        })),
        ..MigrationSettings::default()
    };
    let test_hooks = context.test_hooks.clone();
    let opened = run_blocking_on_node_task(&context.node_tasks, "open_node_store", move || {
        let opened = open_migrated(&path, &options, &schema, &settings);
        test_hooks.after_node_store_open();
        opened
    });
    let (node_store, outcome) = match opened.await {
        Ok(Ok(opened)) => opened?,
        Ok(Err(join_error)) => return Err(NodeError::NotStopped(format!("the store open task failed: {join_error}"))),
        Err(_) => return Err(NodeError::NotStopped("the store open task ended without a result".into())),
    };
    if let Some(damage) = node_store.recovered_from() {
        let cursor = mpc_migrations::layout::read_cursor(&node_store)?.map(|cursor| cursor.height);
        tracing::warn!(
            recovered_cursor = ?cursor, %damage,
            "node store recovered to the last consistent write before its damaged log; the blocks after the cursor are indexed again"
        );
    }
    match outcome {
        SchemaOutcome::Created { version } => tracing::info!(version, "node store created"),
        SchemaOutcome::Current { version } => tracing::info!(version, "node store opened"),
        SchemaOutcome::Migrated { from, to, checkpoint } => match checkpoint {
            Some(checkpoint) => tracing::info!(from, to, checkpoint = %checkpoint.display(), "node store migrated"),
            None => tracing::info!(from, to, "node store migrated"),
        },
    }
    Ok(node_store)
}

/// How the node store opens: every block it holds can be indexed again from the chain,
/// so a log damaged before its end is recovered to its last consistent write (and the
/// blocks after the cursor indexed again) rather than refused.
pub fn node_store_options(sync_writes: bool) -> StoreOptions {
    StoreOptions { sync_writes, ..StoreOptions::new("node", NODE_STORE_GROUP).recovering_damaged_log() }
}
