//! What the operations endpoints read: one snapshot source for `/readyz`, `/metrics`
//! and `/debug/lifecycle`, so they never disagree. It reads a `watch` of the current
//! generation and never locks anything the lifecycle holds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use mpc_lifecycle::{LifecycleSender, PhaseTracker, RestartReport, Supervisor, TaskInfo};
use tokio::sync::watch;

use crate::generation::GenerationView;

/// Counters and records the endpoints expose, written by the run loop.
#[derive(Clone, Default)]
pub struct LifecycleHistory {
    restarts: Arc<AtomicU64>,
    last_restart: Arc<Mutex<Option<RestartReport>>>,
}

impl LifecycleHistory {
    /// Records a finished restart; `succeeded` ones are counted.
    pub fn record_restart(&self, report: RestartReport, succeeded: bool) {
        if succeeded {
            self.restarts.fetch_add(1, Ordering::Relaxed);
        }
        *self.last_restart.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(report);
    }

    /// Completed in-process restarts.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// The report of the last restart.
    pub fn last_restart(&self) -> Option<RestartReport> {
        self.last_restart.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// Shared state of the operations server.
#[derive(Clone)]
pub struct OpsState {
    /// Lifecycle phase (readiness).
    pub phase: PhaseTracker,
    /// The current generation of the indexer, if one runs.
    pub generation: watch::Receiver<Option<GenerationView>>,
    /// Node-level tasks.
    pub node_tasks: Supervisor,
    /// Where admin requests go: the same channel as every other stop reason.
    pub lifecycle: LifecycleSender,
    /// Bearer token of the admin endpoints.
    pub admin_token: Arc<String>,
    /// Failed admin attempts, for the brute-force limit.
    pub admin_guard: crate::admin_guard::AdminGuard,
    /// Restarts and the last restart's report.
    pub history: LifecycleHistory,
    /// The signing side.
    pub signing: crate::signing::SigningView,
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
    /// Every supervised task of the node and of the current generation.
    pub fn tasks(&self) -> Vec<TaskInfo> {
        let mut tasks = self.node_tasks.snapshot();
        if let Some(view) = &*self.generation.borrow() {
            tasks.extend(view.indexer_tasks.snapshot());
            tasks.extend(view.watchers.snapshot());
        }
        if let Some(signer) = &*self.signing.handle.borrow() {
            tasks.extend(signer.tasks());
        }
        tasks
    }

    /// The current generation's progress.
    pub fn progress(&self) -> IndexerProgress {
        let Some(view) = self.generation.borrow().clone() else { return IndexerProgress::default() };
        let latest_height = *view.indexed_height.borrow();
        let stats = view.stats.lock().map(|stats| stats.clone()).ok();
        IndexerProgress {
            latest_height,
            blocks_per_s: stats.as_ref().map_or(0.0, |stats| stats.blocks_per_s),
            lag_blocks: stats.as_ref().map_or(0, |stats| stats.chain_head.saturating_sub(latest_height.unwrap_or(0))),
        }
    }
}
