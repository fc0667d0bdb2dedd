//! The watchers that follow one generation of the indexer: they turn what the indexer
//! observes into lifecycle decisions (stop on a revoked image hash, become ready on the
//! first indexed block, not ready while the chain cannot sync from its host). They run
//! under the generation's own supervisor, so they end with it.

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
    let (indexed_height, chain_link) = (indexer.indexed_height.clone(), indexer.chain_link.clone());
    watchers.spawn("readiness", move |cancel| follow_readiness(indexed_height, chain_link, phase, cancel));
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

/// Flips the node to ready once the generation has committed its first block; then,
/// for a node that follows a chain host, back to catching up while its chain cannot
/// sync from the host (the indexer would only index stale blocks), and to ready again
/// once it can.
async fn follow_readiness(
    mut indexed_height: watch::Receiver<Option<u64>>,
    mut chain_link: watch::Receiver<Option<String>>,
    phase: PhaseTracker,
    cancel: CancellationToken,
) -> Result<(), Infallible> {
    tokio::select! {
        _ = cancel.cancelled() => return Ok(()),
        first = indexed_height.wait_for(Option::is_some) => {
            let Ok(height) = first else { return Ok(()) };
            let height = height.unwrap_or_default();
            phase.advance_from(LifecyclePhase::CatchingUp, LifecyclePhase::Ready);
            tracing::info!(height, "node ready: first block indexed");
        }
    }
    loop {
        let failure = chain_link.borrow_and_update().clone();
        match failure {
            Some(failure) if phase.current() == LifecyclePhase::Ready => {
                phase.advance_from(LifecyclePhase::Ready, LifecyclePhase::CatchingUp);
                tracing::warn!(%failure, "node not ready: its chain cannot sync from the chain host");
            }
            None if phase.current() == LifecyclePhase::CatchingUp => {
                phase.advance_from(LifecyclePhase::CatchingUp, LifecyclePhase::Ready);
                tracing::info!("node ready again: its chain syncs from the chain host");
            }
            _ => {}
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            changed = chain_link.changed() => if changed.is_err() { return Ok(()) },
        }
    }
}
