//! The shutdown sequence: the same for every reason, timed phase by phase.
//!
//! Order matters (docs/lifecycle.md): readiness goes first (no new traffic), then the
//! root token (everything starts draining at once), then node tasks, then the indexer
//! thread (whose monitors release `Arc<IndexerState>`), then the actor system (which
//! releases the chain store), then our own store handle, and only then the wait for
//! every RocksDB instance to close. Each phase is bounded by the shared deadline; a phase
//! that overruns is escalated (tasks aborted) and named in the report, and the process
//! exits 4.

use std::time::{Duration, Instant};

use mpc_lifecycle::{Deadline, ExitCode, LifecyclePhase, PhaseTracker, ShutdownReason, ShutdownReport, Supervisor};
use tokio_util::sync::CancellationToken;

use crate::resources::SharedResources;
use crate::sd_notify::Notifier;
use crate::subsystem_stop::{ABORT_GRACE, stop_actor_systems, stop_indexer_thread, wait_for_stores_closed};


/// What the sequence stops.
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
    /// What start-up created.
    pub resources: SharedResources,
    /// Budget for the whole sequence (`--shutdown-timeout`).
    pub timeout: Duration,
}

/// Runs the sequence for `reason` and returns the report (already logged).
pub async fn shut_down(reason: ShutdownReason, context: ShutdownContext) -> ShutdownReport {
    let ShutdownContext { phase, root_token, node_tasks, ops_tasks, resources, timeout, notifier } = context;
    let deadline = Deadline::after(timeout);
    let mut report = ShutdownReport::new(reason.clone());
    tracing::info!(%reason, timeout_ms = timeout.as_millis() as u64, "shutdown sequence started");

    let started = Instant::now();
    phase.set(LifecyclePhase::ShuttingDown);
    notifier.notify("STOPPING=1");
    notifier.extend_timeout(timeout + ABORT_GRACE);
    report.record("mark_not_ready", started.elapsed(), true, None);

    let started = Instant::now();
    root_token.cancel();
    report.record("cancel_root_token", started.elapsed(), true, None);

    let started = Instant::now();
    let drained = node_tasks.wait(deadline.remaining()).await;
    let detail = (!drained).then(|| {
        let aborted = node_tasks.abort_running();
        let detail = format!("aborted: {}", aborted.join(", "));
        report.aborted_tasks.extend(aborted);
        detail
    });
    report.record("drain_node_tasks", started.elapsed(), drained, detail);

    let indexers: Vec<_> = {
        let mut resources = resources.lock();
        [resources.retiring_indexer.take(), resources.indexer.take()].into_iter().flatten().collect()
    };
    for mut indexer in indexers {
        let started = Instant::now();
        let stop = stop_indexer_thread(&mut indexer, deadline.remaining()).await;
        let detail = (!stop.joined_in_time)
            .then(|| format!("tasks still running at the deadline: {}", stop.aborted.join(", ")));
        report.aborted_tasks.extend(stop.aborted);
        if stop.still_running {
            report.not_stopped.push("indexer thread".to_owned());
        }
        if stop.state_references > 0 {
            report.not_stopped.push(format!("IndexerState ({} references)", stop.state_references));
        }
        report.record("join_indexer_thread", started.elapsed(), stop.joined_in_time, detail);
    }

    let (actor_systems, systems_created) = {
        let mut resources = resources.lock();
        (std::mem::take(&mut resources.actor_systems), resources.actor_systems_created)
    };
    if !actor_systems.is_empty() {
        let started = Instant::now();
        stop_actor_systems(actor_systems, systems_created);
        report.record("stop_actor_system", started.elapsed(), true, None);
    }

    let started = Instant::now();
    ops_tasks.cancel();
    // The ops server closes its connections within its own grace, whatever its clients
    // do; this bound only guards against a bug in that.
    let ops_bound = (crate::ops_connections::CLOSE_GRACE + ABORT_GRACE).min(deadline.remaining().max(ABORT_GRACE));
    let stopped = ops_tasks.wait(ops_bound).await;
    if !stopped {
        report.aborted_tasks.extend(ops_tasks.abort_running());
    }
    report.record("stop_ops_server", started.elapsed(), stopped, None);

    // The node store closes (memtable flush, WAL sync) on a blocking thread while the
    // chain store, released by the actor system above, closes on the actors' threads:
    // the two flushes overlap, and the wait below covers both.
    let started = Instant::now();
    let node_store = resources.lock().node_store.take();
    let closing = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        if let Some(node_store) = node_store {
            if let Err(err) = node_store.flush() {
                tracing::warn!(error = %err, "flushing the node store failed; the next start replays its WAL");
            }
            drop(node_store);
        }
        started.elapsed()
    });
    let closed = match wait_for_stores_closed(None, deadline.remaining().max(ABORT_GRACE)).await {
        Ok(()) => true,
        Err(open) => {
            report.holders_alive = open.iter().map(ToString::to_string).collect();
            false
        }
    };
    if closed && let Ok(node_store_close) = closing.await {
        report.record("close_node_store", node_store_close, true, None);
    }
    let detail = (!closed).then(|| report.holders_alive.join("; "));
    report.record("wait_for_rocksdb_instances", started.elapsed(), closed, detail);

    report.final_instance_count = mpc_store::instance_count();
    report.total_ms = mpc_lifecycle::millis(deadline.elapsed());
    if report.was_forced() || !report.not_stopped.is_empty() {
        report.exit_code = ExitCode::DEADLINE_EXCEEDED.0;
    }
    phase.set(LifecyclePhase::Stopped);
    tracing::info!("ShutdownReport {}", report.to_json());
    report
}
