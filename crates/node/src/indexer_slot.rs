//! What the run loop owns of the indexer side at each moment, as one value.
//!
//! The run loop holds exactly one [`IndexerSlot`]: start-up in flight, a running node
//! (node store, chain store owner and current generation), a restart in flight (which
//! owns them until it hands them back), or nothing running after a failed start-up or
//! restart. Moving between them is
//! moving values, so the type says who owns a generation at any moment; the shutdown
//! sequence takes the slot by value and stops whatever is in it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use mpc_lifecycle::{Deadline, PhaseOutcome, PhaseTimings};
use mpc_store::{OwnedStore, Store};

use crate::error::NodeError;
use crate::generation::{ABORT_GRACE, GenerationContext, GenerationStop, IndexerGeneration};
use crate::ops_state::LifecycleHistory;
use crate::restart::{RestartOutcome, RestartRequest, restart};
use crate::restart_control::{Event, Stage};
use crate::startup::RunningNode;

type Starting = Pin<Box<dyn Future<Output = Result<RunningNode, NodeError>>>>;
type Restarting = Pin<Box<dyn Future<Output = RestartOutcome>>>;

/// The indexer side of the node, owned by the run loop.
pub enum IndexerSlot {
    /// Start-up in flight.
    Starting(Starting),
    /// The node store, the chain store and the current generation.
    Running(RunningNode),
    /// A restart in flight; it owns the node store, the chain store and the generation.
    Restarting(Restarting),
    /// No generation runs: start-up or a restart failed. What is left to close and
    /// report.
    Failed {
        /// The node store, if it was opened.
        node_store: Option<Arc<Store>>,
        /// The chain store's owner (holding the store if it is still open).
        chain_store: OwnedStore,
        /// How the last generation's stop went.
        last_stop: GenerationStop,
    },
}

/// What a shutdown finds in the slot, once any restart in flight has finished.
#[derive(Default)]
pub struct TakenOver {
    /// The node store, if open.
    pub node_store: Option<Arc<Store>>,
    /// The chain store's owner, closed with the node store.
    pub chain_store: OwnedStore,
    /// The generation still to stop.
    pub generation: Option<IndexerGeneration>,
    /// What an earlier stop (by a restart) aborted or could not stop.
    pub earlier_stop: GenerationStop,
}

impl PhaseOutcome for TakenOver {
    fn unfinished(&self) -> Option<String> {
        let GenerationStop { aborted, not_stopped } = &self.earlier_stop;
        let parts: Vec<String> = [("aborted", aborted), ("not stopped", not_stopped)]
            .into_iter()
            .filter(|(_, names)| !names.is_empty())
            .map(|(what, names)| format!("{what}: {}", names.join(", ")))
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

impl IndexerSlot {
    /// Start-up, as the slot's first content.
    pub fn starting(startup: impl Future<Output = Result<RunningNode, NodeError>> + 'static) -> Self {
        IndexerSlot::Starting(Box::pin(startup))
    }

    /// The node store, while a generation runs on it.
    pub fn node_store(&self) -> Option<&Arc<Store>> {
        match self {
            IndexerSlot::Running(running) => Some(&running.node_store),
            _ => None,
        }
    }

    /// Where the indexer side is, for the restart controller.
    pub fn stage(&self) -> Stage {
        match self {
            IndexerSlot::Starting(_) => Stage::Starting,
            IndexerSlot::Running(_) => Stage::Indexing,
            IndexerSlot::Restarting(_) => Stage::Restarting,
            IndexerSlot::Failed { .. } => Stage::Failed,
        }
    }

    /// Waits for the next thing that happens to the indexer side and moves the slot on
    /// accordingly. Cancel-safe: the slot changes only when a future it owns completes.
    pub async fn next_event(&mut self, history: &LifecycleHistory) -> Event {
        match self {
            IndexerSlot::Starting(startup) => match startup.as_mut().await {
                Ok(running) => {
                    *self = IndexerSlot::Running(running);
                    Event::Started
                }
                Err(error) => {
                    *self = IndexerSlot::failed();
                    Event::StartupFailed(error)
                }
            },
            IndexerSlot::Running(running) => Event::IndexerExited(running.generation.exited().await),
            IndexerSlot::Restarting(restarting) => {
                let RestartOutcome { node_store, chain_store, generation, stop, report } = restarting.as_mut().await;
                history.record_restart(report, generation.is_ok());
                match generation {
                    Ok(generation) => {
                        *self = IndexerSlot::Running(RunningNode { node_store, chain_store, generation });
                        Event::Restarted
                    }
                    Err(error) => {
                        *self = IndexerSlot::Failed { node_store: Some(node_store), chain_store, last_stop: stop };
                        Event::RestartFailed(error)
                    }
                }
            }
            IndexerSlot::Failed { .. } => std::future::pending().await,
        }
    }

    /// A slot where start-up failed: nothing opened is left in it.
    fn failed() -> Self {
        IndexerSlot::Failed {
            node_store: None,
            chain_store: OwnedStore::default(),
            last_stop: GenerationStop::default(),
        }
    }

    /// Begins a restart of the running generation; anything else is left as it is (the
    /// restart controller only asks while a generation runs).
    pub fn restart(&mut self, request: RestartRequest, context: &GenerationContext, bound: Duration) {
        *self = match std::mem::replace(self, IndexerSlot::failed()) {
            IndexerSlot::Running(running) => {
                IndexerSlot::Restarting(Box::pin(restart(running, request, context.clone(), bound)))
            }
            other => other,
        };
    }

    /// Hands everything over to the shutdown sequence: start-up in flight is dropped
    /// (with whatever it opened), a restart in flight is let finish within `deadline`
    /// (the root token is cancelled by then, so it does not start a new generation) and
    /// timed as the phase `finish_interrupted_restart`.
    pub async fn take_over(self, deadline: Deadline, timings: &mut PhaseTimings) -> TakenOver {
        match self {
            IndexerSlot::Starting(startup) => {
                drop(startup);
                TakenOver::default()
            }
            IndexerSlot::Running(RunningNode { node_store, chain_store, generation }) => TakenOver {
                node_store: Some(node_store),
                chain_store,
                generation: Some(generation),
                earlier_stop: GenerationStop::default(),
            },
            IndexerSlot::Failed { node_store, chain_store, last_stop } => {
                TakenOver { node_store, chain_store, generation: None, earlier_stop: last_stop }
            }
            IndexerSlot::Restarting(restarting) => {
                timings.phase("finish_interrupted_restart", finish_restart(restarting, deadline)).await
            }
        }
    }
}

/// Lets a restart in flight finish within `deadline` plus the grace every phase gets
/// after aborting (its own bounds began before the shutdown's, so its drain, aborts
/// included, ends first); if it does not, it is dropped with what it owns, and the
/// report names it.
async fn finish_restart(restarting: Restarting, deadline: Deadline) -> TakenOver {
    match tokio::time::timeout(deadline.remaining() + ABORT_GRACE, restarting).await {
        Ok(RestartOutcome { node_store, chain_store, generation, stop, .. }) => {
            TakenOver { node_store: Some(node_store), chain_store, generation: generation.ok(), earlier_stop: stop }
        }
        Err(_) => TakenOver {
            earlier_stop: GenerationStop { aborted: Vec::new(), not_stopped: vec!["restart in flight".to_owned()] },
            ..TakenOver::default()
        },
    }
}
