//! Waiting for RocksDB instances to close: the last step of a shutdown (every store) and
//! of a restart's drain (the indexer's stores only).

use std::time::{Duration, Instant};

use mpc_store::{KeptStore, OpenInstance};

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

/// Waits up to `bound` until the users of the store `kept` keeps (an old generation's
/// actors) have let go of it, so the next generation is its only writer. Returns the
/// store and its holders when they did not.
pub async fn wait_for_kept_store_unheld(kept: &KeptStore, bound: Duration) -> Result<(), StillOpen> {
    let kept = kept.clone();
    match tokio::task::spawn_blocking(move || kept.wait_until_unheld(bound)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(held)) => Err(StillOpen(vec![held])),
        Err(_) => Err(StillOpen(mpc_store::open_instances())),
    }
}
