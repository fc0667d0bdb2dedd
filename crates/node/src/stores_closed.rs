//! Waiting for RocksDB instances to close: the last step of a shutdown (every store) and
//! of a restart's drain (the indexer's stores only).

use std::time::{Duration, Instant};

use mpc_store::{OpenInstance, OwnedStore};

/// The stores still open when a wait gave up, with their holders.
#[derive(Debug)]
pub struct StillOpen(pub Vec<OpenInstance>);

impl std::fmt::Display for StillOpen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let open: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&open.join("; "))
    }
}

/// Waits up to `bound` for the stores of `group` (all stores when `None`) to close,
/// logging every second which stores and holders it is still waiting for.
pub async fn wait_for_stores_closed(group: Option<&str>, bound: Duration) -> Result<(), StillOpen> {
    let started = Instant::now();
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
            Err(open) if started.elapsed() >= bound => return Err(StillOpen(open)),
            Err(open) => {
                let open: Vec<String> = open.iter().map(ToString::to_string).collect();
                tracing::info!(waited_s = started.elapsed().as_secs(), open = ?open, "waiting for stores to close");
            }
        }
    }
}

/// Waits up to `bound` until the users of the store `owner` keeps open (an old
/// generation's actors) have let go of it, so the next generation is its only writer.
/// Returns the store and its holders when they did not. The wait runs on a blocking
/// thread, which has the owner until it hands it back.
pub async fn wait_for_owned_store_unheld(owner: &mut OwnedStore, bound: Duration) -> Result<(), StillOpen> {
    let taken = std::mem::take(owner);
    match tokio::task::spawn_blocking(move || {
        let unheld = taken.wait_until_unheld(bound);
        (taken, unheld)
    })
    .await
    {
        Ok((taken, unheld)) => {
            *owner = taken;
            unheld.map_err(|held| StillOpen(vec![held]))
        }
        Err(_) => Err(StillOpen(mpc_store::open_instances())),
    }
}

/// Gives up the store `owner` keeps and drops it on a blocking thread (the close syncs
/// the WAL), returning once that thread let go of it: it is closed then unless a user
/// still holds it, which the caller's wait for the instance to close covers.
pub async fn release_owned_store(owner: &mut OwnedStore) {
    if let Some(store) = owner.release() {
        let _ = tokio::task::spawn_blocking(move || drop(store)).await;
    }
}
