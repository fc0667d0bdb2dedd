//! The watchers that follow one generation of the indexer: they turn what the indexer
//! observes into lifecycle decisions (stop on a revoked image hash, become ready on the
//! first indexed block). They run under the generation's own supervisor, so they end
//! with it.

use std::convert::Infallible;

use mpc_indexer::{IndexerHandle, Observed};
use mpc_lifecycle::{LifecyclePhase, LifecycleSender, PhaseTracker, ShutdownReason, Supervisor};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Spawns the image-hash watcher (which stops the node when the contract no longer
/// allows `own_hash`) and the readiness watcher of a new generation on `watchers`.
pub fn spawn_generation_watchers(
    watchers: &Supervisor,
    indexer: &IndexerHandle,
    own_hash: String,
    phase: PhaseTracker,
    lifecycle: LifecycleSender,
) {
    let allowed = indexer.allowed_image_hashes.clone();
    watchers.spawn("image_hash_watcher", move |cancel| watch_image_hash(allowed, own_hash, lifecycle, cancel));
    let indexed_height = indexer.indexed_height.clone();
    watchers.spawn("readiness", move |cancel| mark_ready_after_first_block(indexed_height, phase, cancel));
}

/// Sends `ImageHashRevoked` into the shutdown channel once the contract's allowed list
/// is known and no longer contains this node's hash.
async fn watch_image_hash(
    mut allowed: watch::Receiver<Observed<Vec<String>>>,
    own_hash: String,
    lifecycle: LifecycleSender,
    cancel: CancellationToken,
) -> Result<(), Infallible> {
    loop {
        if let Observed::Known(list) = &*allowed.borrow_and_update()
            && !list.contains(&own_hash)
        {
            tracing::error!(image_hash = %own_hash, "own image hash is no longer allowed by the contract, shutting down");
            lifecycle.shutdown(ShutdownReason::ImageHashRevoked { image_hash: own_hash });
            return Ok(());
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            changed = allowed.changed() => if changed.is_err() { return Ok(()) },
        }
    }
}

/// Flips the node to ready once the generation has committed its first block.
async fn mark_ready_after_first_block(
    mut indexed_height: watch::Receiver<Option<u64>>,
    phase: PhaseTracker,
    cancel: CancellationToken,
) -> Result<(), Infallible> {
    tokio::select! {
        _ = cancel.cancelled() => {}
        first = indexed_height.wait_for(Option::is_some) => {
            if let Ok(height) = first {
                let height = height.unwrap_or_default();
                phase.advance_from(LifecyclePhase::CatchingUp, LifecyclePhase::Ready);
                tracing::info!(height, "node ready: first block indexed");
            }
        }
    }
    Ok(())
}
