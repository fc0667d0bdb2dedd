//! What the node has started and the shutdown sequence must stop, in one place.

use std::sync::{Arc, Mutex, MutexGuard};

use mpc_indexer::IndexerHandle;
use mpc_store::Store;
use near_async::ActorSystem;

/// Everything start-up has created so far. Start-up fills it in step by step, so a
/// shutdown that begins in any phase (even mid-migration) stops exactly what exists.
#[derive(Default)]
pub struct Resources {
    /// The node's own store, opened and migrated.
    pub node_store: Option<Arc<Store>>,
    /// The current indexer thread.
    pub indexer: Option<IndexerHandle>,
    /// An indexer thread an in-process restart is stopping; kept here so a shutdown that
    /// interrupts the restart still joins it.
    pub retiring_indexer: Option<IndexerHandle>,
    /// Token of the current indexer subsystem (a child of the root token).
    pub subsystem_token: Option<tokio_util::sync::CancellationToken>,
    /// Actor systems not yet stopped (one, except in the middle of a restart).
    pub actor_systems: Vec<ActorSystem>,
    /// How many actor systems this process has created; `shutdown_all_actors()` is only
    /// valid while this is at most 1.
    pub actor_systems_created: usize,
}

/// Resources shared between start-up, the shutdown sequence and the forced-exit path.
#[derive(Clone, Default)]
pub struct SharedResources(Arc<Mutex<Resources>>);

impl SharedResources {
    /// Locks the resources. Held only for short take/insert operations, never across
    /// an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, Resources> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Like [`SharedResources::lock`] but gives up instead of waiting; for the forced-exit
    /// path, which must never block.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, Resources>> {
        self.0.try_lock().ok()
    }
}
