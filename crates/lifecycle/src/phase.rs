//! The node's lifecycle phase, observable by readiness checks, metrics and logs.

use tokio::sync::watch;

/// Where the node is in its life. Readiness is `Ready` only; it flips away the instant
/// a shutdown or restart begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecyclePhase {
    /// Signal handlers installed, nothing opened yet.
    Starting,
    /// Opening stores (and migrating them if needed).
    OpeningStores,
    /// Applying schema migrations.
    Migrating,
    /// Starting the chain node and the indexer thread.
    StartingIndexer,
    /// Indexing, not yet caught up with the chain or no block indexed yet.
    CatchingUp,
    /// Migrated, streaming and at least one block indexed.
    Ready,
    /// Restarting the indexer subsystem in-process.
    Restarting,
    /// Running the shutdown sequence.
    ShuttingDown,
    /// Shutdown finished.
    Stopped,
}

impl LifecyclePhase {
    /// Stable lower-case name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            LifecyclePhase::Starting => "starting",
            LifecyclePhase::OpeningStores => "opening_stores",
            LifecyclePhase::Migrating => "migrating",
            LifecyclePhase::StartingIndexer => "starting_indexer",
            LifecyclePhase::CatchingUp => "catching_up",
            LifecyclePhase::Ready => "ready",
            LifecyclePhase::Restarting => "restarting",
            LifecyclePhase::ShuttingDown => "shutting_down",
            LifecyclePhase::Stopped => "stopped",
        }
    }
}

/// Shared, observable lifecycle phase. Cloning shares the same phase.
#[derive(Debug, Clone)]
pub struct PhaseTracker {
    sender: watch::Sender<LifecyclePhase>,
}

impl Default for PhaseTracker {
    fn default() -> Self {
        PhaseTracker { sender: watch::Sender::new(LifecyclePhase::Starting) }
    }
}

impl PhaseTracker {
    /// Moves to `phase`, logging the change once. Once shutdown has begun, only
    /// `Stopped` may follow: a late "ready" from a draining task must not flip readiness
    /// back on.
    pub fn set(&self, phase: LifecyclePhase) {
        self.sender.send_if_modified(|current| {
            let shutting_down = matches!(*current, LifecyclePhase::ShuttingDown | LifecyclePhase::Stopped);
            if *current == phase || (shutting_down && phase != LifecyclePhase::Stopped) {
                return false;
            }
            tracing::info!(from = current.name(), to = phase.name(), "lifecycle phase changed");
            *current = phase;
            true
        });
    }

    /// Moves from `expected` to `phase` only if the node is still in `expected`.
    pub fn advance_from(&self, expected: LifecyclePhase, phase: LifecyclePhase) {
        if self.current() == expected {
            self.set(phase);
        }
    }

    /// The current phase.
    pub fn current(&self) -> LifecyclePhase {
        *self.sender.borrow()
    }

    /// True only in [`LifecyclePhase::Ready`].
    pub fn is_ready(&self) -> bool {
        self.current() == LifecyclePhase::Ready
    }

    /// A receiver that sees every change.
    pub fn subscribe(&self) -> watch::Receiver<LifecyclePhase> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_is_ready_only_and_a_shutdown_cannot_be_undone_by_a_late_phase() {
        let phase = PhaseTracker::default();
        assert!(!phase.is_ready());
        phase.advance_from(LifecyclePhase::CatchingUp, LifecyclePhase::Ready);
        assert_eq!(phase.current(), LifecyclePhase::Starting, "advance_from only from the expected phase");
        phase.set(LifecyclePhase::CatchingUp);
        phase.advance_from(LifecyclePhase::CatchingUp, LifecyclePhase::Ready);
        assert!(phase.is_ready());
        phase.set(LifecyclePhase::ShuttingDown);
        phase.set(LifecyclePhase::Ready);
        assert_eq!(phase.current(), LifecyclePhase::ShuttingDown, "a late ready must not flip readiness back on");
        phase.set(LifecyclePhase::Stopped);
        assert_eq!(phase.current(), LifecyclePhase::Stopped);
    }
}
