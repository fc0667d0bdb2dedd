//! The shutdown sequence: the same for every reason, timed phase by phase.
//!
//! Order matters (docs/architecture.md): readiness goes first (no new traffic), then the
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
use mpc_store::{KeptStore, Store};
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
    /// The chain store the generations kept open, closed with the node store.
    pub chain_store: KeptStore,
}

/// Runs the sequence for `reason`, stopping whatever `indexer` holds, and returns the
/// report (already logged).
pub async fn shut_down(reason: ShutdownReason, indexer: IndexerSlot, context: ShutdownContext) -> ShutdownReport {
    let ShutdownContext { phase, root_token, node_tasks, ops_tasks, notifier, timeout, chain_store } = context;
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
    timings.phase("cancel_root_token", async { root_token.cancel() }).await;
    let node_drain = timings.phase("drain_node_tasks", drain(&node_tasks, deadline.remaining())).await;

    let TakenOver { node_store, generation, earlier_stop } = indexer.take_over(deadline, timings).await;
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
    report.aborted_tasks.extend(node_drain.aborted.into_iter().chain(ops_drain.aborted));
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
struct Drained {
    aborted: Vec<String>,
}

impl PhaseOutcome for Drained {
    fn unfinished(&self) -> Option<String> {
        (!self.aborted.is_empty()).then(|| format!("aborted: {}", self.aborted.join(", ")))
    }
}

/// Waits up to `bound` for the (cancelled) tasks of `tasks`, aborting the stragglers.
async fn drain(tasks: &Supervisor, bound: Duration) -> Drained {
    let aborted = if tasks.wait(bound).await { Vec::new() } else { tasks.abort_running() };
    Drained { aborted }
}

/// Closes the node store on a blocking thread (WAL sync, running background jobs
/// finished) while the chain store, which the stopped actors let go of, closes on
/// another: the two closes overlap, and the wait for every RocksDB instance covers both.
async fn close_stores(
    node_store: Option<std::sync::Arc<Store>>,
    chain_store: KeptStore,
    deadline: Deadline,
    timings: &mut mpc_lifecycle::PhaseTimings,
) -> Result<(), crate::stores_closed::StillOpen> {
    let started = Instant::now();
    // Not awaited: the wait below covers its close like any other instance's.
    drop(tokio::task::spawn_blocking(move || chain_store.release()));
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
