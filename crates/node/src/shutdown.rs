//! The shutdown sequence: the same for every reason, timed phase by phase.
//!
//! Order matters (docs/architecture.md): readiness goes first (no new traffic), then the
//! signing side (no new protocols, the ones in flight finish or are abandoned within
//! its bound, the peers are told, its tasks joined: while it drains, the indexer still
//! runs for the members that wait for their own chain), then the
//! root token (everything starts draining at once), then node tasks, then the indexer
//! generation (its thread, whose monitors release `Arc<IndexerState>`, then its actor
//! system, which lets go of the chain store), then the operations server, then the
//! node store and the kept chain store, and only then the wait for every RocksDB
//! instance to close. Each phase is bounded by the shared deadline; a phase that
//! overruns is escalated (tasks aborted) and named in the report, and the process
//! exits 4.

use std::time::{Duration, Instant};

use mpc_lifecycle::{
    Deadline, ExitCode, LifecyclePhase, PhaseOutcome, PhaseTracker, ShutdownReason, ShutdownReport, Supervisor,
};
use mpc_store::{OwnedStore, Store};
use tokio_util::sync::CancellationToken;

use crate::generation::{ABORT_GRACE, GenerationStop, StopFor};
use crate::indexer_slot::{IndexerSlot, TakenOver};
use crate::sd_notify::Notifier;
use crate::stores_closed::wait_for_stores_closed;

/// What the sequence stops besides the indexer side.
pub struct ShutdownContext {
    /// Readiness and phase.
    pub phase: PhaseTracker,
    /// The root token.
    pub root_token: CancellationToken,
    /// Node-level supervised tasks.
    pub node_tasks: Supervisor,
    /// The operations server, stopped after the indexer drained.
    pub ops_tasks: Supervisor,
    /// systemd notifications.
    pub notifier: Notifier,
    /// Budget for the whole sequence (`--shutdown-timeout`).
    pub timeout: Duration,
    /// The signing side, if it runs.
    pub signer: Option<mpc_signer::Signer>,
}

/// Runs the sequence for `reason`, stopping whatever `indexer` holds, and returns the
/// report (already logged).
pub async fn shut_down(reason: ShutdownReason, indexer: IndexerSlot, context: ShutdownContext) -> ShutdownReport {
    let ShutdownContext { phase, root_token, node_tasks, ops_tasks, notifier, timeout, signer } = context;
    let deadline = Deadline::after(timeout);
    tracing::info!(%reason, timeout_ms = timeout.as_millis() as u64, "shutdown sequence started");
    let mut report = ShutdownReport::new(reason);
    let timings = &mut report.timings;

    timings
        .phase("mark_not_ready", async {
            phase.set(LifecyclePhase::ShuttingDown);
            notifier.notify("STOPPING=1");
            notifier.extend_timeout(timeout + ABORT_GRACE);
        })
        .await;
    let signer_stop = match signer {
        Some(signer) => timings.phase("stop_signer", signer.stop(deadline.remaining())).await,
        None => mpc_signer::SignerStop::default(),
    };
    timings.phase("cancel_root_token", async { root_token.cancel() }).await;
    let node_drain = timings.phase("drain_node_tasks", drain(&node_tasks, deadline.remaining())).await;

    let TakenOver { node_store, chain_store, generation, earlier_stop } = indexer.take_over(deadline, timings).await;
    let generation_stop = match generation {
        Some(generation) => generation.stop(deadline.remaining(), timings, StopFor::Exit).await,
        None => GenerationStop::default(),
    };

    // The server closes its connections within its own grace, whatever its clients do;
    // this bound only guards against a bug in that.
    let ops_bound = (crate::ops_connections::CLOSE_GRACE + ABORT_GRACE).min(deadline.remaining().max(ABORT_GRACE));
    let ops_drain = timings
        .phase("stop_ops_server", async {
            ops_tasks.cancel();
            drain(&ops_tasks, ops_bound).await
        })
        .await;

    let closed = close_stores(node_store, chain_store, deadline, timings).await;

    for stop in [earlier_stop, generation_stop] {
        report.aborted_tasks.extend(stop.aborted);
        report.not_stopped.extend(stop.not_stopped);
    }
    report.aborted_tasks.extend(node_drain.aborted.into_iter().chain(ops_drain.aborted).chain(signer_stop.aborted));
    report.abandoned_protocols = signer_stop.abandoned;
    if let Err(open) = closed {
        report.holders_alive = open.0.iter().map(ToString::to_string).collect();
    }
    report.final_instance_count = mpc_store::instance_count();
    report.timings.finish();
    if report.was_forced() {
        report.exit_code = ExitCode::DEADLINE_EXCEEDED.0;
    }
    phase.set(LifecyclePhase::Stopped);
    tracing::info!("ShutdownReport {}", report.to_json());
    report
}

/// How draining a supervisor went.
pub(crate) struct Drained {
    /// The tasks aborted at the bound.
    pub aborted: Vec<String>,
}

impl PhaseOutcome for Drained {
    fn unfinished(&self) -> Option<String> {
        (!self.aborted.is_empty()).then(|| format!("aborted: {}", self.aborted.join(", ")))
    }
}

/// Waits up to `bound` for the (cancelled) tasks of `tasks`, aborting the stragglers.
pub(crate) async fn drain(tasks: &Supervisor, bound: Duration) -> Drained {
    let aborted = if tasks.wait(bound).await { Vec::new() } else { tasks.abort_running() };
    Drained { aborted }
}

/// Closes the node store on a blocking thread (WAL sync, running background jobs
/// finished) while the chain store, which the stopped actors let go of, closes on
/// another: the two closes overlap, and the wait for every RocksDB instance covers both.
async fn close_stores(
    node_store: Option<std::sync::Arc<Store>>,
    mut chain_store: OwnedStore,
    deadline: Deadline,
    timings: &mut mpc_lifecycle::PhaseTimings,
) -> Result<(), crate::stores_closed::StillOpen> {
    let started = Instant::now();
    // Not awaited: the wait below covers its close like any other instance's.
    let chain_store = chain_store.release();
    drop(tokio::task::spawn_blocking(move || drop(chain_store)));
    // Dropping the last handle closes the store (mpc_store's Drop syncs the WAL).
    let closing = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        drop(node_store);
        started.elapsed()
    });
    let closed = wait_for_stores_closed(None, deadline.remaining().max(ABORT_GRACE)).await;
    if closed.is_ok()
        && let Ok(node_store_close) = closing.await
    {
        timings.record("close_node_store", node_store_close, None);
    }
    timings.record("wait_for_rocksdb_instances", started.elapsed(), closed.as_ref().err().map(ToString::to_string));
    closed
}

/// The shutdown sequence in-process, against a generation whose monitor ignores
/// cancellation (feature `test-hooks`). One test in this binary: it stops the
/// process-wide near-async actor system, which exists once per process.
#[cfg(all(test, feature = "test-hooks"))]
mod tests {
    use std::sync::Arc;

    use clap::Parser;
    use mpc_indexer::IndexerTestHooks;
    use mpc_lifecycle::{OperatorSignal, PhaseTracker, lifecycle_channel};
    use mpc_store::migration::{MigrationSettings, open_migrated};
    use near_async::ActorSystem;
    use tokio::sync::watch;

    use super::*;
    use crate::cli::{Cli, Command};
    use crate::generation::{GenerationContext, IndexerGeneration, chain_store_for_generation};
    use crate::startup::{RunningNode, node_store_options};

    /// A monitor that ignores cancellation holds the indexer thread past the deadline:
    /// the sequence aborts it, still closes every store, names the monitor in the
    /// report, marks the join as forced and exits 4 instead of hanging.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_generation_that_hangs_is_aborted_at_the_deadline_and_named_in_the_report() {
        let home = tempfile::tempdir().unwrap();
        let home_arg = home.path().to_str().unwrap();
        let Command::Start(args) = Cli::parse_from([
            "mpc-node",
            "start",
            "--home",
            home_arg,
            "--sandbox-block-interval",
            "20ms",
            "--monitor-interval",
            "20ms",
        ])
        .command
        else {
            unreachable!("a start command")
        };
        let (lifecycle, _requests) = lifecycle_channel();
        let root_token = CancellationToken::new();
        let hung = "monitor_tee_accounts";
        let context = GenerationContext {
            args: Arc::new(args),
            phase: PhaseTracker::default(),
            root_token: root_token.clone(),
            lifecycle: lifecycle.clone(),
            view: watch::channel(None).0,
            test_hooks: IndexerTestHooks { hang_monitor: Some(hung.into()), fail_listen_after_blocks: None },
            actor_system: ActorSystem::new(),
        };
        let node_path = home.path().join("node");
        let schema = mpc_migrations::node_schema();
        let (node_store, _) =
            open_migrated(&node_path, &node_store_options(false), &schema, &MigrationSettings::default()).unwrap();
        let handed = chain_store_for_generation(OwnedStore::default(), &context).await;
        let chain_store = handed.owner;
        let generation = IndexerGeneration::start(&context, &node_store, handed.store.unwrap()).unwrap();
        let mut indexed = context.view.borrow().as_ref().unwrap().indexed_height.clone();
        tokio::time::timeout(Duration::from_secs(30), indexed.wait_for(Option::is_some)).await.unwrap().unwrap();

        let slot = IndexerSlot::Running(RunningNode { node_store, chain_store, generation });
        let shutdown = ShutdownContext {
            phase: context.phase.clone(),
            root_token,
            node_tasks: Supervisor::new("node", CancellationToken::new(), lifecycle.clone()),
            ops_tasks: Supervisor::new("ops", CancellationToken::new(), lifecycle),
            notifier: Notifier::from_environment(),
            timeout: Duration::from_millis(300),
            signer: None,
        };
        let signal = ShutdownReason::Signal { signal: OperatorSignal::Terminate };
        let report = tokio::time::timeout(Duration::from_secs(30), shut_down(signal, slot, shutdown)).await.unwrap();

        assert_eq!(report.exit_code, ExitCode::DEADLINE_EXCEEDED.0, "{}", report.to_json());
        assert_eq!(report.aborted_tasks, vec![hung.to_owned()], "{}", report.to_json());
        assert!(report.not_stopped.is_empty(), "the abort stopped the thread: {}", report.to_json());
        assert_eq!(report.final_instance_count, 0, "every store closed: {}", report.to_json());
        assert!(report.holders_alive.is_empty(), "{}", report.to_json());
        let join = report.timings.phases.iter().find(|phase| phase.phase == "join_indexer_thread").unwrap();
        assert!(!join.completed, "the join overran its bound: {}", report.to_json());
        assert!(join.detail.as_deref().is_some_and(|detail| detail.contains(hung)), "{}", report.to_json());
        for phase in ["stop_actor_system", "wait_for_rocksdb_instances"] {
            let ran = report.timings.phases.iter().find(|timing| timing.phase == phase);
            assert!(ran.is_some_and(|timing| timing.completed), "{phase}: {}", report.to_json());
        }
        assert_eq!(context.phase.current(), LifecyclePhase::Stopped);
    }
}
