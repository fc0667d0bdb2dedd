//! Stopping one generation of the indexer subsystem: shared by the shutdown sequence and
//! by in-process restarts, so both drain it the same way.

use std::time::Duration;

use mpc_indexer::IndexerHandle;
use near_async::ActorSystem;

/// Extra time given to tasks after they were aborted at the deadline, to unwind.
pub const ABORT_GRACE: Duration = Duration::from_millis(500);

/// How stopping the indexer thread went.
pub struct ThreadStop {
    /// True if it stopped within the bound without escalation.
    pub joined_in_time: bool,
    /// Tasks aborted because they ignored cancellation.
    pub aborted: Vec<String>,
    /// True if even after aborting the thread did not end.
    pub still_running: bool,
    /// `Arc<IndexerState>` references still alive after the join (should be 0).
    pub state_references: usize,
}

/// Waits up to `bound` for the (already cancelled) indexer thread; on time-out aborts
/// its remaining tasks and gives them [`ABORT_GRACE`] to unwind.
pub async fn stop_indexer_thread(indexer: &mut IndexerHandle, bound: Duration) -> ThreadStop {
    let joined_in_time = indexer.join(bound).await;
    let mut aborted = Vec::new();
    let mut still_running = false;
    if !joined_in_time {
        aborted = indexer.tasks.abort_running();
        still_running = !indexer.join(ABORT_GRACE).await;
    }
    ThreadStop { joined_in_time, aborted, still_running, state_references: indexer.state_strong_count() }
}

/// Stops the actor systems of stopped subsystems.
///
/// near-async's global `shutdown_all_actors()` panics once the process has created more
/// than one `ActorSystem` (it cannot tell which one is meant), and an in-process restart
/// creates a new one per generation. So the global call is used only while exactly one
/// system was ever created (the upstream contract, for the plain start-then-stop case);
/// otherwise each system we created is stopped explicitly.
pub fn stop_actor_systems(systems: Vec<ActorSystem>, systems_created: usize) {
    if systems_created <= 1 && !systems.is_empty() {
        near_async::shutdown_all_actors();
    } else {
        for system in systems {
            system.stop();
        }
    }
}

/// Waits up to `bound` for the stores of `group` (all stores when `None`) to close,
/// logging every second which stores and holders it is still waiting for.
pub async fn wait_for_stores_closed(group: Option<&str>, bound: Duration) -> Result<(), Vec<mpc_store::OpenInstance>> {
    let started = std::time::Instant::now();
    loop {
        let slice = bound.saturating_sub(started.elapsed()).min(Duration::from_secs(1));
        let group_owned = group.map(str::to_owned);
        let waited = tokio::task::spawn_blocking(move || match &group_owned {
            Some(group) => mpc_store::wait_until_group_instances_are_dropped(group, slice),
            None => mpc_store::wait_until_all_instances_are_dropped(slice),
        })
        .await
        .unwrap_or_else(|_| Err(mpc_store::open_instances()));
        match waited {
            Ok(()) => return Ok(()),
            Err(open) if started.elapsed() >= bound => return Err(open),
            Err(open) => {
                let open: Vec<String> = open.iter().map(ToString::to_string).collect();
                tracing::info!(waited_s = started.elapsed().as_secs(), open = ?open, "waiting for stores to close");
            }
        }
    }
}
