//! In-process restart of the indexer subsystem (the chain node, the indexer thread and
//! its monitors) without exiting the process.
//!
//! The same drain as shutdown, scoped to the subsystem: cancel the subsystem's child
//! token, join its thread, stop its actor system, wait until its own stores (tracker
//! group `indexer`) are closed, optionally wipe the chain data, start a new generation.
//! Everything stays recorded in [`SharedResources`] while it happens, so a shutdown
//! that interrupts a restart (the run loop drops this future) still stops all of it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use mpc_indexer::{INDEXER_STORE_GROUP, IndexerError};
use mpc_lifecycle::LifecyclePhase;
use mpc_store::{Column, Store, StoreUpdate};
use tokio::sync::oneshot;

use crate::home::Home;
use crate::ops_state::LastSequence;
use crate::resources::SharedResources;
use crate::startup::{SubsystemContext, start_indexer_subsystem};
use crate::subsystem_stop::{stop_indexer_thread, wait_for_stores_closed};

/// Key in the node store's `Misc` column of the last applied data-wipe token.
pub const APPLIED_WIPE_TOKEN_KEY: &[u8] = b"applied_data_wipe_token";

/// Why and how to restart.
#[derive(Debug, Clone)]
pub struct RestartRequest {
    /// Logged reason.
    pub why: String,
    /// Wipe the chain data and record this token as applied.
    pub wipe_token: Option<String>,
    /// Pause between stopping and starting (backoff after failures).
    pub backoff: Duration,
}

/// The receiver of the new generation's indexer exit.
pub type IndexerExit = oneshot::Receiver<Result<(), IndexerError>>;

/// Phase timings of one restart, logged and kept for the operations endpoints.
struct RestartTimings {
    started: Instant,
    phase_started: Instant,
    phases: Vec<(String, f64)>,
}

impl RestartTimings {
    fn new() -> Self {
        RestartTimings {
            started: Instant::now(),
            phase_started: Instant::now(),
            phases: Vec::new(),
        }
    }

    fn done(&mut self, phase: &str) {
        let seconds = self.phase_started.elapsed().as_secs_f64();
        tracing::info!(phase, duration_ms = mpc_lifecycle::three_decimals(seconds * 1e3), "restart phase done");
        self.phases.push((phase.to_owned(), seconds));
        self.phase_started = Instant::now();
    }

    fn finish(self, why: &str) -> LastSequence {
        let total_ms = mpc_lifecycle::millis(self.started.elapsed());
        let report = serde_json::json!({"kind": "restart", "why": why, "phases": self.phases, "total_ms": total_ms});
        LastSequence {
            kind: "restart",
            phases: self.phases,
            report,
        }
    }
}

/// Takes the indexer handle out of the resources for joining, and puts it back as
/// "retiring" if the restart is dropped before the join finished.
struct Retiring {
    resources: SharedResources,
    handle: Option<mpc_indexer::IndexerHandle>,
}

impl Drop for Retiring {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.resources.lock().retiring_indexer = Some(handle);
        }
    }
}

/// Restarts the subsystem; `bound` limits each waiting phase. Returns the new
/// generation's exit receiver, or why the restart failed (which is fatal).
pub async fn restart_indexer_subsystem(
    context: SubsystemContext,
    request: RestartRequest,
    bound: Duration,
) -> Result<(IndexerExit, LastSequence), String> {
    let mut timings = RestartTimings::new();
    context.phase.set(LifecyclePhase::Restarting);
    tracing::warn!(why = %request.why, wipe = request.wipe_token.is_some(), "restarting indexer subsystem");

    let handle = {
        let mut resources = context.resources.lock();
        if let Some(token) = resources.subsystem_token.take() {
            token.cancel();
        }
        resources
            .indexer
            .take()
            .or_else(|| resources.retiring_indexer.take())
    };
    let mut retiring = Retiring {
        resources: context.resources.clone(),
        handle,
    };
    if let Some(handle) = retiring.handle.as_mut() {
        let stop = stop_indexer_thread(handle, bound).await;
        if stop.still_running {
            return Err(format!(
                "indexer thread did not stop (stuck tasks: {})",
                stop.aborted.join(", ")
            ));
        }
        if !stop.aborted.is_empty() {
            tracing::warn!(aborted = ?stop.aborted, "restart aborted tasks that ignored cancellation");
        }
        retiring.handle = None;
    }
    timings.done("join_indexer_thread");

    // Never `shutdown_all_actors()` here: a new actor system follows, after which the
    // global call would panic. Each stopped generation's system is stopped explicitly.
    let systems = std::mem::take(&mut context.resources.lock().actor_systems);
    for system in systems {
        system.stop();
    }
    if let Err(open) = wait_for_stores_closed(Some(INDEXER_STORE_GROUP), bound).await {
        let holders: Vec<String> = open.iter().map(ToString::to_string).collect();
        return Err(format!(
            "chain store still open after the restart drain: {}",
            holders.join("; ")
        ));
    }
    timings.done("close_subsystem_stores");

    if let Some(token) = &request.wipe_token {
        let node_store = context.resources.lock().node_store.clone().ok_or("node store is not open")?;
        wipe_chain_data(&Home::new(&context.args.home), &node_store, token)?;
        timings.done("wipe_chain_data");
    }
    if !request.backoff.is_zero() {
        tracing::info!(
            backoff_ms = request.backoff.as_millis() as u64,
            "waiting before starting the indexer again"
        );
        tokio::time::sleep(request.backoff).await;
    }

    let (exit_sender, exit_receiver) = oneshot::channel();
    start_indexer_subsystem(&context, exit_sender).map_err(|err| err.message)?;
    timings.done("start_indexer_subsystem");
    tracing::info!(
        elapsed_ms = timings.started.elapsed().as_millis() as u64,
        open_instances = mpc_store::instance_count(),
        "indexer subsystem restarted"
    );
    Ok((exit_receiver, timings.finish(&request.why)))
}

/// Wipes `<home>/data` atomically (rename, record the token durably, then delete), as
/// upstream's data wipe does. An interrupted wipe leaves `data.wiping`, removed at the
/// next start by [`finish_interrupted_wipe`]; the new chain store is created
/// crash-atomically by the next generation.
fn wipe_chain_data(home: &Home, node_store: &Store, token: &str) -> Result<(), String> {
    let (data, wiping) = (home.chain_data(), home.chain_data_wiping());
    if data.exists() {
        mpc_store::directories::rename_durably(&data, &wiping)
            .map_err(|err| format!("cannot move {} aside: {err}", data.display()))?;
        mpc_store::crash_points::reached("wipe:data_set_aside", "chain");
    }
    record_applied_wipe_token(node_store, token).map_err(|err| err.to_string())?;
    mpc_store::crash_points::reached("wipe:token_recorded", "chain");
    finish_interrupted_wipe(home)?;
    tracing::warn!(token, "chain data wiped");
    Ok(())
}

/// Removes what an interrupted wipe left behind.
pub fn finish_interrupted_wipe(home: &Home) -> Result<(), String> {
    let wiping = home.chain_data_wiping();
    if wiping.exists() {
        std::fs::remove_dir_all(&wiping)
            .map_err(|err| format!("cannot remove {}: {err}", wiping.display()))?;
    }
    Ok(())
}

fn record_applied_wipe_token(store: &Store, token: &str) -> mpc_store::StoreResult<()> {
    let mut update = StoreUpdate::new();
    update.put(Column::Misc, APPLIED_WIPE_TOKEN_KEY, token.as_bytes());
    store.commit(update)?;
    store.flush()
}

/// The data-wipe token last applied, if any.
pub fn applied_wipe_token(store: &Store) -> Option<String> {
    store
        .get(Column::Misc, APPLIED_WIPE_TOKEN_KEY)
        .ok()
        .flatten()
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

/// Restarts after failures, with exponential backoff; too many failures within a window
/// make the failure fatal.
#[derive(Debug)]
pub struct RestartPolicy {
    failures: VecDeque<Instant>,
    max_failures: usize,
    window: Duration,
    base_backoff: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            failures: VecDeque::new(),
            max_failures: 3,
            window: Duration::from_secs(60),
            base_backoff: Duration::from_millis(250),
        }
    }
}

impl RestartPolicy {
    /// Records a failure; returns the backoff before restarting, or `None` when the
    /// failures within the window exceed the limit.
    pub fn on_failure(&mut self) -> Option<Duration> {
        let now = Instant::now();
        while self
            .failures
            .front()
            .is_some_and(|at| now.duration_since(*at) > self.window)
        {
            self.failures.pop_front();
        }
        self.failures.push_back(now);
        let count = self.failures.len();
        (count <= self.max_failures)
            .then(|| self.base_backoff.saturating_mul(1 << (count - 1).min(6)))
    }
}

/// Polls `<home>/data-wipe-token` and asks for a wiping restart when it differs from
/// the token last applied. Operators change the file to wipe the chain data in place.
/// The operator's data-wipe token when it differs from the one last applied.
fn pending_wipe_token(home: &Home, store: &Store) -> Option<String> {
    let configured = std::fs::read_to_string(home.data_wipe_token()).ok()?.trim().to_owned();
    (!configured.is_empty() && applied_wipe_token(store).as_deref() != Some(configured.as_str())).then_some(configured)
}

/// Applies a pending data-wipe token before the first generation starts: a node that
/// was stopped or killed before its wipe finished completes it at the next start,
/// before it indexes anything, instead of indexing first and wiping a moment later.
pub fn apply_pending_wipe_at_start(home: &Home, resources: &SharedResources) -> Result<(), String> {
    let store = resources.lock().node_store.clone().ok_or("node store is not open")?;
    match pending_wipe_token(home, &store) {
        Some(token) => {
            tracing::warn!(token = %token, "data-wipe token pending at start, wiping before the indexer starts");
            wipe_chain_data(home, &store, &token)
        }
        None => Ok(()),
    }
}

pub async fn watch_data_wipe_token(
    home: Home,
    resources: SharedResources,
    sender: mpc_lifecycle::ShutdownSender,
    cancel: tokio_util::sync::CancellationToken,
) -> Result<(), String> {
    let mut requested: Option<String> = None;
    loop {
        let store = resources.lock().node_store.clone();
        let pending = store.and_then(|store| pending_wipe_token(&home, &store));
        if let Some(token) = pending.filter(|token| requested.as_deref() != Some(token.as_str())) {
            tracing::warn!(token = %token, "data-wipe token changed");
            sender.restart_indexer_with_wipe("data-wipe token changed", token.clone());
            requested = Some(token);
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_exponentially_and_a_fourth_within_the_window_is_fatal() {
        let mut policy = RestartPolicy::default();
        assert_eq!(policy.on_failure(), Some(Duration::from_millis(250)));
        assert_eq!(policy.on_failure(), Some(Duration::from_millis(500)));
        assert_eq!(policy.on_failure(), Some(Duration::from_millis(1000)));
        assert_eq!(policy.on_failure(), None, "more than 3 failures within 60 s stop the node");
    }

    #[test]
    fn failures_older_than_the_window_are_forgotten() {
        let mut policy = RestartPolicy { window: Duration::from_millis(10), ..RestartPolicy::default() };
        for _ in 0..3 {
            assert!(policy.on_failure().is_some());
        }
        std::thread::sleep(Duration::from_millis(15));
        assert_eq!(policy.on_failure(), Some(Duration::from_millis(250)), "the window starts over");
    }
}
