//! What the operations endpoints read: one snapshot source for `/readyz`, `/metrics`
//! and `/debug/lifecycle`, so they never disagree.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use mpc_lifecycle::{PhaseTracker, ShutdownSender, Supervisor, TaskInfo};

use crate::resources::SharedResources;

/// Phase timings of the last shutdown or in-process restart.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LastSequence {
    /// "restart" or "shutdown".
    pub kind: &'static str,
    /// `(phase, seconds)` in order.
    pub phases: Vec<(String, f64)>,
    /// The full report (JSON) for `/debug/lifecycle`.
    pub report: serde_json::Value,
}

/// Counters and records the endpoints expose, written by the run loop.
#[derive(Clone, Default)]
pub struct LifecycleHistory {
    restarts: Arc<AtomicU64>,
    last_sequence: Arc<Mutex<Option<LastSequence>>>,
}

impl LifecycleHistory {
    /// Counts one completed in-process restart.
    pub fn count_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// Completed in-process restarts.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Records the phases of a finished shutdown or restart.
    pub fn record(&self, sequence: LastSequence) {
        *self.last_sequence.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(sequence);
    }

    /// The last recorded sequence.
    pub fn last_sequence(&self) -> Option<LastSequence> {
        self.last_sequence.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// Shared state of the operations server.
#[derive(Clone)]
pub struct OpsState {
    /// Lifecycle phase (readiness).
    pub phase: PhaseTracker,
    /// What the node runs (indexer handle, stores).
    pub resources: SharedResources,
    /// Node-level tasks.
    pub node_tasks: Supervisor,
    /// Where admin requests go: the same channel as every other stop reason.
    pub shutdown_signal_sender: ShutdownSender,
    /// Bearer token of the admin endpoints.
    pub admin_token: Arc<String>,
    /// Failed admin attempts, for the brute-force limit.
    pub admin_guard: crate::web::AdminGuard,
    /// Restarts and the last sequence.
    pub history: LifecycleHistory,
}

/// Indexer progress as the endpoints show it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IndexerProgress {
    /// Last committed height.
    pub latest_height: Option<u64>,
    /// Blocks per second over the last stats interval.
    pub blocks_per_s: f64,
    /// Chain head minus latest height, as of the last stats interval.
    pub lag_blocks: u64,
}

impl OpsState {
    /// Every supervised task of the node and of the current indexer.
    pub fn tasks(&self) -> Vec<TaskInfo> {
        let mut tasks = self.node_tasks.snapshot();
        if let Some(indexer) = &self.resources.lock().indexer {
            tasks.extend(indexer.tasks.snapshot());
        }
        tasks
    }

    /// The current indexer's progress.
    pub fn progress(&self) -> IndexerProgress {
        let resources = self.resources.lock();
        let Some(indexer) = &resources.indexer else { return IndexerProgress::default() };
        let latest_height = *indexer.indexed_height.borrow();
        let stats = indexer.stats.lock().map(|stats| stats.clone()).ok();
        IndexerProgress {
            latest_height,
            blocks_per_s: stats.as_ref().map_or(0.0, |stats| stats.blocks_per_s),
            lag_blocks: stats
                .as_ref()
                .map_or(0, |stats| stats.chain_head.saturating_sub(latest_height.unwrap_or(0))),
        }
    }
}
