//! The indexer thread: its own `std::thread` and multi-thread tokio runtime, like
//! upstream's embedding of `near-indexer`, but cancellable.
//!
//! Design note. Upstream's caller blocked until the node was synced and then ran
//! `block_on(listen_blocks)` forever; its monitor tasks held `Arc<IndexerState>` (and
//! through it RocksDB) and nothing cancelled them, so `block_on` never returned and
//! `block_until_all_instances_are_dropped()` hung. Here:
//!
//! 1. [`spawn_indexer_thread`] returns at once with watch receivers (starting as
//!    "unknown") and the thread handle; nothing blocks the caller during sync, so the
//!    run loop keeps handling signals.
//! 2. When `token` is cancelled: `listen_blocks` finishes the batch it is writing and
//!    returns; the supervisor's token (a child) stops the streamer and the monitors,
//!    which finish their current write and drop their `Arc<IndexerState>`; the
//!    supervisor is awaited; `block_on` returns; the runtime is shut down.
//! 3. The chain store is opened and owned by the caller, who hands it in; the chain's
//!    actors take holders of it, not this thread, and let go of it when the caller
//!    cancels the chain's stop token, after joining the thread.

use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mpc_chain::ChainError;
use mpc_lifecycle::{LifecycleSender, OnTaskFailure, Supervisor};
use mpc_migrations::layout::read_cursor;
use mpc_store::{Reuse, Store, StoreError};
use near_async::ActorSystem;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::config::IndexerConfig;
use crate::indexer::Indexer;
use crate::listen_blocks::{ListenError, listen_blocks_with_hooks};
use crate::monitors::{MonitorIntervals, MonitorSenders, Observed, monitor_channels, spawn_monitors};
use crate::state::{IndexerState, IndexerStats, SharedStats};

/// How long the thread's runtime may take to shut down after `block_on` returned (all
/// tasks are already finished or aborted by then; this only bounds stray timers).
const RUNTIME_SHUTDOWN_TIMEOUT: Duration = Duration::from_millis(500);

/// Why the indexer thread ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum IndexerError {
    /// The chain node could not start.
    #[error("chain node: {0}")]
    Chain(#[from] ChainError),
    /// The node store failed.
    #[error("node store: {0}")]
    Store(#[from] StoreError),
    /// `listen_blocks` failed.
    #[error("listen_blocks: {0}")]
    Listen(#[from] ListenError),
    /// The thread's runtime could not be built.
    #[error("indexer runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// Everything the indexer thread needs.
pub struct IndexerThreadParams {
    /// Indexer settings.
    pub config: IndexerConfig,
    /// The node store (already opened and migrated by the caller). The thread keeps
    /// only named holders of it, never the caller's `Arc`.
    pub node_store: Arc<Store>,
    /// The chain store, opened by the caller, who owns it (this thread only hands it to
    /// the chain's actors), and whether it was opened for this thread or kept open from
    /// the one before.
    pub chain_store: (Arc<Store>, Reuse),
    /// The actor system the chain's actors run on (one for the life of the process).
    pub actor_system: ActorSystem,
    /// Stops the chain's actors, which hold the chain store; the caller cancels it
    /// after the join.
    pub chain_stop: CancellationToken,
    /// Monitor poll intervals.
    pub intervals: MonitorIntervals,
    /// Where supervised-task failures are reported.
    pub failures: LifecycleSender,
}

/// The caller's handle: watch receivers and the thread.
pub struct IndexerHandle {
    /// Contract state as last observed.
    pub contract_state: watch::Receiver<Observed<serde_json::Value>>,
    /// Allowed image hashes as last observed.
    pub allowed_image_hashes: watch::Receiver<Observed<Vec<String>>>,
    /// TEE accounts as last observed.
    pub tee_accounts: watch::Receiver<Observed<serde_json::Value>>,
    /// Migration info as last observed.
    pub migration_info: watch::Receiver<Observed<serde_json::Value>>,
    /// Why the chain cannot sync from its host, if it cannot (always `None` for a chain
    /// that follows no host).
    pub chain_link: watch::Receiver<Option<String>>,
    /// Height of the last committed block.
    pub indexed_height: watch::Receiver<Option<u64>>,
    /// The indexer's supervised tasks (streamer, monitors), for reports and escalation.
    pub tasks: Supervisor,
    /// Progress counters, for metrics.
    pub stats: SharedStats,
    /// Whether the thread still runs, for observers that do not own this handle.
    pub alive: ThreadAlive,
    state_probe: Arc<Mutex<Weak<IndexerState>>>,
    thread: Option<JoinHandle<()>>,
}

impl IndexerHandle {
    /// A weak reference to the thread's `IndexerState`: after the join its strong count
    /// must be 0. Used by tests and by the shutdown report.
    pub fn state_strong_count(&self) -> usize {
        self.state_probe.lock().map(|weak| weak.strong_count()).unwrap_or(0)
    }

    /// Waits up to `timeout` for the thread to end and joins it; false on time-out (the
    /// handle stays joinable). Woken by the thread's own last act (no polling), so the
    /// join costs no more than the thread's exit; every second it waits it logs which
    /// tasks it is waiting for.
    pub async fn join(&mut self, timeout: Duration) -> bool {
        let started = Instant::now();
        let mut alive = self.alive.0.clone();
        loop {
            let slice = timeout.saturating_sub(started.elapsed()).min(Duration::from_secs(1));
            // An error means the sender is gone, which also means the thread ended.
            if tokio::time::timeout(slice, alive.wait_for(|alive| !*alive)).await.is_ok() {
                break;
            }
            let waited = started.elapsed();
            if waited >= timeout {
                return false;
            }
            tracing::info!(waited_s = waited.as_secs(), tasks = ?self.tasks.running(), "waiting for the indexer thread");
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("indexer thread panicked");
        }
        true
    }
}

/// Whether the indexer thread is still running. Cheap to clone; the thread clears it
/// when it ends, however it ends (a panic included), and wakes whoever waits on it.
#[derive(Debug, Clone)]
pub struct ThreadAlive(watch::Receiver<bool>);

impl ThreadAlive {
    /// True until the thread's body has returned or unwound.
    pub fn is_alive(&self) -> bool {
        *self.0.borrow()
    }
}

/// Clears [`ThreadAlive`] when dropped, at the very end of the thread.
struct ClearOnExit(watch::Sender<bool>);

impl Drop for ClearOnExit {
    fn drop(&mut self) {
        self.0.send_replace(false);
    }
}

/// Starts the indexer thread. Returns at once; the thread's result arrives on
/// `exit_sender` (`Ok` only when it stopped because `token` was cancelled).
pub fn spawn_indexer_thread(
    params: IndexerThreadParams,
    token: CancellationToken,
    exit_sender: oneshot::Sender<Result<(), IndexerError>>,
) -> std::io::Result<IndexerHandle> {
    let (senders, receivers) = monitor_channels();
    let (indexed_height_sender, indexed_height) = watch::channel(None);
    // A failed streamer or monitor restarts the subsystem (under the node's restart
    // policy) rather than stopping the process at once.
    let tasks = Supervisor::with_failure_action(
        "indexer",
        token.child_token(),
        params.failures.clone(),
        OnTaskFailure::Restart,
    );
    let state_probe = Arc::new(Mutex::new(Weak::new()));
    let stats: SharedStats = Arc::new(Mutex::new(IndexerStats::starting_now()));
    let (alive_sender, alive) = watch::channel(true);
    let alive = ThreadAlive(alive);
    let thread = {
        let tasks = tasks.clone();
        let state_probe = state_probe.clone();
        let stats = stats.clone();
        let clear_on_exit = ClearOnExit(alive_sender);
        std::thread::Builder::new().name("indexer".into()).spawn(move || {
            let _clear_on_exit = clear_on_exit;
            let links = ThreadLinks { tasks, senders, indexed_height: indexed_height_sender, state_probe, stats };
            let result = run_thread(params, token, links);
            if let Err(err) = &result {
                tracing::error!(error = %err, "indexer thread ended with an error");
            }
            let _ = exit_sender.send(result);
        })?
    };
    Ok(IndexerHandle {
        contract_state: receivers.contract_state,
        allowed_image_hashes: receivers.allowed_image_hashes,
        tee_accounts: receivers.tee_accounts,
        migration_info: receivers.migration_info,
        chain_link: receivers.chain_link,
        indexed_height,
        tasks,
        stats,
        alive,
        state_probe,
        thread: Some(thread),
    })
}

/// What the thread shares with its handle, created before the thread starts.
struct ThreadLinks {
    tasks: Supervisor,
    senders: MonitorSenders,
    indexed_height: watch::Sender<Option<u64>>,
    state_probe: Arc<Mutex<Weak<IndexerState>>>,
    stats: SharedStats,
}

fn run_thread(params: IndexerThreadParams, token: CancellationToken, links: ThreadLinks) -> Result<(), IndexerError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("indexer-worker")
        .enable_all()
        .build()?;
    let result = runtime.block_on(run_indexer(params, token, links));
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_TIMEOUT);
    tracing::info!("indexer thread: runtime shut down");
    result
}

async fn run_indexer(
    params: IndexerThreadParams,
    token: CancellationToken,
    links: ThreadLinks,
) -> Result<(), IndexerError> {
    let ThreadLinks { tasks, senders, indexed_height, state_probe, stats } = links;
    let IndexerThreadParams { mut config, node_store, chain_store, actor_system, chain_stop, intervals, failures: _ } =
        params;
    let cursor = read_cursor(&node_store)?;
    // A chain whose data was wiped re-syncs at least up to what the node already
    // indexed, like a real node syncing to the network head, so the indexer can resume.
    if let Some(cursor) = cursor {
        config.chain.history_blocks = config.chain.history_blocks.max(cursor.height);
    }
    let (chain_store, reuse) = chain_store;
    let node = Indexer::start_near_node(&config, chain_store, reuse, &actor_system, &chain_stop)?;
    let state = Arc::new(IndexerState {
        client: node.client.clone(),
        view_client: node.view_client.clone(),
        contract_id: config.chain.contract_id.clone(),
        stats,
        node_store: node_store.holder("listen_blocks"),
        indexed_height,
    });
    drop(node_store);
    if let Ok(mut probe) = state_probe.lock() {
        *probe = Arc::downgrade(&state);
    }
    spawn_monitors(&tasks, &state, senders, &intervals, &config.test_hooks);
    let test_hooks = config.test_hooks.clone();
    let indexer = Indexer::from_near_node(config, &node, cursor, tasks.clone());
    let stream = indexer.streamer();
    tracing::info!(resume_after = cursor.map(|cursor| cursor.height), "indexer thread: listening for blocks");

    let listened = listen_blocks_with_hooks(stream, state.clone(), token.clone(), &test_hooks).await;
    tracing::info!(cancelled = token.is_cancelled(), "indexer thread: listen_blocks returned");

    // Stop the streamer and monitors (also when listen_blocks failed on its own) and wait
    // for each to drop its Arc<IndexerState>. The caller bounds this wait by aborting
    // tasks that ignore cancellation.
    tasks.cancel();
    tasks.wait(Duration::MAX).await;
    drop(indexer);
    drop(state);
    tracing::info!("indexer thread: supervised tasks drained");
    listened.map_err(IndexerError::from)
}
