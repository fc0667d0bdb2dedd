//! One generation of the indexer subsystem, with one owner from start to stop.
//!
//! A generation is what an in-process restart replaces: a child token of the root token,
//! the chain's actors (which use the chain store) with their own stop token, the
//! indexer thread (streamer, monitors, `listen_blocks`) and the watchers that follow it.
//! The chain store itself outlives the generation: its owner (the run loop's
//! [`OwnedStore`], moved with the node store) hands each generation the open store. The
//! actors run on the process's one actor system. Whoever holds an
//! [`IndexerGeneration`] owns all of that: [`IndexerGeneration::start`] returns it,
//! [`IndexerGeneration::stop`] consumes it, so no stopped generation can be left
//! half-running and no running one can be forgotten. Observers (the operations server,
//! the forced-exit path) read a [`GenerationView`] from a `watch` instead.

use std::sync::Arc;
use std::time::Duration;

use mpc_chain::{ChainMode, ImageHashRevocation};
use mpc_indexer::{
    IndexerConfig, IndexerError, IndexerHandle, IndexerTestHooks, IndexerThreadParams, MonitorIntervals, SharedStats,
    ThreadAlive, spawn_indexer_thread,
};
use mpc_lifecycle::{LifecyclePhase, LifecycleSender, PhaseOutcome, PhaseTimings, PhaseTracker, Supervisor};
use mpc_store::{OwnedStore, Reuse, Store};
use near_async::ActorSystem;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::cli::StartArgs;
use crate::error::NodeError;

/// Extra time given to tasks after they were aborted at a deadline, to unwind.
pub const ABORT_GRACE: Duration = Duration::from_millis(500);

/// What every generation is started with; the same for all generations of a process.
#[derive(Clone)]
pub struct GenerationContext {
    /// Parsed `start` flags.
    pub args: Arc<StartArgs>,
    /// Lifecycle phase, for readiness.
    pub phase: PhaseTracker,
    /// Each generation's token is a child of this one.
    pub root_token: CancellationToken,
    /// Where failures and the image-hash revocation are reported.
    pub lifecycle: LifecycleSender,
    /// Where the current generation is published for observers.
    pub view: watch::Sender<Option<GenerationView>>,
    /// Fault hooks of the process tests (empty in production builds).
    pub test_hooks: IndexerTestHooks,
    /// The process's one actor system: every generation's chain actors run on it and
    /// stop through the generation's own token; at exit near-async's
    /// `shutdown_all_actors()` stops it.
    pub actor_system: ActorSystem,
}

/// What observers may see of the running generation; holds no store.
#[derive(Clone)]
pub struct GenerationView {
    /// The indexer's supervised tasks (streamer, monitors).
    pub indexer_tasks: Supervisor,
    /// The generation's watchers (image hash, readiness).
    pub watchers: Supervisor,
    /// Height of the last committed block.
    pub indexed_height: watch::Receiver<Option<u64>>,
    /// Progress counters.
    pub stats: SharedStats,
    /// Whether the indexer thread still runs.
    pub thread_alive: ThreadAlive,
}

/// How the indexer thread of a generation ended on its own (`Ok` only when the node
/// asked it to stop; an `Err` from the channel when it vanished without a word).
pub type IndexerExit = Result<Result<(), IndexerError>, oneshot::error::RecvError>;

/// Why a generation is stopped: for a restart another one follows in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopFor {
    /// An in-process restart: the generation's chain actors stop, the actor system
    /// stays for the next generation.
    Restart,
    /// The process exits after this stop: the actor system stops too.
    Exit,
}

/// A running generation of the indexer subsystem.
pub struct IndexerGeneration {
    token: CancellationToken,
    chain_stop: CancellationToken,
    indexer: IndexerHandle,
    exit: oneshot::Receiver<Result<(), IndexerError>>,
    watchers: Supervisor,
    view: watch::Sender<Option<GenerationView>>,
}

/// How a generation's stop went, for the caller's report.
#[derive(Debug, Default)]
pub struct GenerationStop {
    /// Tasks aborted because they ignored cancellation.
    pub aborted: Vec<String>,
    /// What did not stop even after aborting (the indexer thread, live state references).
    pub not_stopped: Vec<String>,
}

/// The indexer settings `start` runs with (and start-up opens the chain store with).
pub(crate) fn indexer_config(context: &GenerationContext) -> IndexerConfig {
    let args = &context.args;
    let revocation = args
        .sandbox_revoke_image_hash_at
        .map(|at_height| ImageHashRevocation { image_hash: args.image_hash.clone(), at_height });
    let mode = match &args.chain {
        Some(host) => ChainMode::Follower { host: host.clone() },
        None => ChainMode::Embedded,
    };
    let chain = args.sandbox.chain_config(mode, revocation);
    IndexerConfig { test_hooks: context.test_hooks.clone(), ..IndexerConfig::new(args.home.clone(), chain) }
}

/// What [`chain_store_for_generation`] hands back: the chain store's owner, always,
/// and the store for the next generation or why there is none.
pub(crate) struct ChainStoreHandedOut {
    /// The owner, holding the store if it is open.
    pub owner: OwnedStore,
    /// The store and whether it was opened for this generation, or the open's error.
    pub store: Result<(Arc<Store>, Reuse), NodeError>,
}

impl PhaseOutcome for ChainStoreHandedOut {
    fn unfinished(&self) -> Option<String> {
        self.store.as_ref().err().map(ToString::to_string)
    }
}

/// The chain store for the next generation: the one `owner` keeps open, or one opened
/// now (on a blocking thread: an open replays the WAL and syncs a new manifest). Hands
/// the owner back with the store or the error; if the caller is dropped meanwhile, the
/// owner is dropped on that thread, which closes any store it holds.
pub(crate) async fn chain_store_for_generation(
    mut owner: OwnedStore,
    context: &GenerationContext,
) -> ChainStoreHandedOut {
    let config = indexer_config(context);
    let opened = tokio::task::spawn_blocking(move || {
        let store = owner.hand_out(|verified| mpc_indexer::Indexer::open_chain_store(&config, verified));
        (owner, store)
    })
    .await;
    match opened {
        Ok((owner, store)) => ChainStoreHandedOut { owner, store: store.map_err(NodeError::Chain) },
        Err(join_error) => ChainStoreHandedOut {
            owner: OwnedStore::default(),
            store: Err(NodeError::NotStopped(format!("the chain store open failed: {join_error}"))),
        },
    }
}

impl IndexerGeneration {
    /// Starts a generation on `node_store` and `chain_store` (from
    /// [`chain_store_for_generation`]): the indexer thread under a fresh child of the
    /// root token (it starts the chain's actors on the chain store), and its watchers.
    /// Returns at once; the thread starts the chain and catches up on its own. Refused
    /// once a shutdown has begun.
    pub fn start(
        context: &GenerationContext,
        node_store: &Arc<Store>,
        chain_store: (Arc<Store>, Reuse),
    ) -> Result<Self, NodeError> {
        if context.root_token.is_cancelled() {
            return Err(NodeError::Cancelled);
        }
        let args = &context.args;
        context.phase.set(LifecyclePhase::StartingIndexer);
        let token = context.root_token.child_token();
        // Not a child of the root token: the chain's actors must outlive the indexer's
        // drain, so they are stopped after the join, not when the shutdown begins.
        let chain_stop = CancellationToken::new();
        let params = IndexerThreadParams {
            config: indexer_config(context),
            node_store: node_store.clone(),
            chain_store,
            actor_system: context.actor_system.clone(),
            chain_stop: chain_stop.clone(),
            intervals: MonitorIntervals {
                contract_state: args.monitor_interval,
                allowed_image_hashes: args.monitor_interval,
                tee_accounts: args.monitor_interval,
                migration_info: args.monitor_interval,
                stats: args.stats_interval,
            },
            failures: context.lifecycle.clone(),
        };
        let (exit_sender, exit) = oneshot::channel();
        let indexer = match spawn_indexer_thread(params, token.clone(), exit_sender) {
            Ok(indexer) => indexer,
            Err(source) => return Err(NodeError::Spawn { what: "indexer", source }),
        };
        context.phase.set(LifecyclePhase::CatchingUp);
        let watchers = Supervisor::new("generation", token.child_token(), context.lifecycle.clone());
        crate::watchers::spawn_generation_watchers(
            &watchers,
            &indexer,
            args.image_hash.clone(),
            context.phase.clone(),
            context.lifecycle.clone(),
        );
        context.view.send_replace(Some(GenerationView {
            indexer_tasks: indexer.tasks.clone(),
            watchers: watchers.clone(),
            indexed_height: indexer.indexed_height.clone(),
            stats: indexer.stats.clone(),
            thread_alive: indexer.alive.clone(),
        }));
        Ok(IndexerGeneration { token, chain_stop, indexer, exit, watchers, view: context.view.clone() })
    }

    /// Resolves when the indexer thread ends on its own. Cancel-safe: the run loop
    /// races it against every other request.
    pub async fn exited(&mut self) -> IndexerExit {
        (&mut self.exit).await
    }

    /// Stops the generation: cancels its token, joins the indexer thread within `bound`
    /// (aborting tasks that ignore cancellation, then [`ABORT_GRACE`] more), stops the
    /// watchers and then the chain's actors, which let go of the chain store (at exit the
    /// whole actor system). Phases are timed into `timings`, so a restart and a
    /// shutdown report them alike.
    pub async fn stop(mut self, bound: Duration, timings: &mut PhaseTimings, stop_for: StopFor) -> GenerationStop {
        self.token.cancel();
        let joined = timings.phase("join_indexer_thread", join_indexer_thread(&mut self.indexer, bound)).await;
        self.watchers.wait(ABORT_GRACE).await;
        self.view.send_replace(None);
        let mut stop = GenerationStop { aborted: joined.aborted, not_stopped: Vec::new() };
        if joined.still_running {
            stop.not_stopped.push("indexer thread".to_owned());
        }
        if joined.state_references > 0 {
            stop.not_stopped.push(format!("IndexerState ({} references)", joined.state_references));
        }
        let phase = match stop_for {
            StopFor::Restart => "stop_chain_actors",
            StopFor::Exit => "stop_actor_system",
        };
        let chain_stop = self.chain_stop;
        timings.phase(phase, async move { stop_chain_actors(&chain_stop, stop_for) }).await;
        stop
    }
}

/// How joining the indexer thread went.
struct ThreadJoin {
    joined_in_time: bool,
    aborted: Vec<String>,
    still_running: bool,
    state_references: usize,
}

impl PhaseOutcome for ThreadJoin {
    fn unfinished(&self) -> Option<String> {
        (!self.joined_in_time).then(|| format!("tasks still running at the deadline: {}", self.aborted.join(", ")))
    }
}

/// Waits up to `bound` for the (already cancelled) indexer thread; on time-out aborts its
/// remaining tasks and gives them [`ABORT_GRACE`] to unwind.
async fn join_indexer_thread(indexer: &mut IndexerHandle, bound: Duration) -> ThreadJoin {
    let joined_in_time = indexer.join(bound).await;
    let mut aborted = Vec::new();
    let mut still_running = false;
    if !joined_in_time {
        aborted = indexer.tasks.abort_running();
        still_running = !indexer.join(ABORT_GRACE).await;
    }
    ThreadJoin { joined_in_time, aborted, still_running, state_references: indexer.state_strong_count() }
}

/// Stops the generation's chain actors and, when the process exits, its actor system
/// through near-async's global `shutdown_all_actors()` (the upstream contract; the
/// process has one system, which is what that call requires).
fn stop_chain_actors(chain_stop: &CancellationToken, stop_for: StopFor) {
    chain_stop.cancel();
    if stop_for == StopFor::Exit {
        near_async::shutdown_all_actors();
    }
}
