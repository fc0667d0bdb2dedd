//! The protocols in flight (signing sessions, as leader or member), tracked so that a
//! stop can let them finish, then abandon the rest within its bound and name them.
//!
//! Two tokens: `accepting` ends the intake of new work (a stop's first step), `abandon`
//! ends whatever is still running (its last). Between the two, in-flight protocols run
//! to their end, except those spawned as cut at the stop: work whose loss costs only
//! time (a session this node leads, whose request the next leader takes as soon as
//! this node has said goodbye; a presignature being generated, whose members' nonces
//! are collected), which ends when the intake stops. Nothing is stopped by dropping a
//! runtime: a protocol's future is dropped by its own task, and the stop waits for
//! that task.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The protocols in flight.
#[derive(Debug, Default)]
pub struct Protocols {
    tracker: TaskTracker,
    accepting: CancellationToken,
    abandon: CancellationToken,
    in_flight: Mutex<BTreeMap<u64, String>>,
    /// The protocols cut when the intake stopped.
    cut: Mutex<Vec<String>>,
    next_id: AtomicU64,
}

/// Removes a protocol from the in-flight list when its task ends, however it ends.
struct InFlight<'a> {
    protocols: &'a Protocols,
    id: u64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.protocols.in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&self.id);
    }
}

/// What a stop left behind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Abandoned {
    /// The protocols still running at the bound, which were abandoned.
    pub protocols: Vec<String>,
}

impl Protocols {
    /// Whether new work is still taken.
    pub fn accepting(&self) -> bool {
        !self.accepting.is_cancelled()
    }

    /// Resolves when new work is no longer taken.
    pub async fn stopped_accepting(&self) {
        self.accepting.cancelled().await
    }

    /// The token that abandons every protocol.
    pub fn abandon_token(&self) -> &CancellationToken {
        &self.abandon
    }

    /// Runs `protocol` as a tracked task named `description`; refused (`false`) once
    /// the intake has stopped.
    pub fn spawn<F>(self: &std::sync::Arc<Self>, description: String, protocol: F) -> bool
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn_tracked(description, protocol, false)
    }

    /// Like [`Protocols::spawn`], for work the stop cuts as soon as the intake stops
    /// instead of letting it finish (see the module's documentation).
    pub fn spawn_cut_at_stop<F>(self: &std::sync::Arc<Self>, description: String, protocol: F) -> bool
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn_tracked(description, protocol, true)
    }

    fn spawn_tracked<F>(self: &std::sync::Arc<Self>, description: String, protocol: F, cut_at_stop: bool) -> bool
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if !self.accepting() {
            return false;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(id, description.clone());
        let protocols = self.clone();
        self.tracker.spawn(async move {
            let _in_flight = InFlight { protocols: &protocols, id };
            tokio::select! {
                _ = protocols.abandon.cancelled() => {}
                _ = protocols.accepting.cancelled(), if cut_at_stop => {
                    protocols.cut.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(description);
                }
                () = protocol => {}
            }
        });
        true
    }

    /// The protocols running now.
    pub fn in_flight(&self) -> Vec<String> {
        self.in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).values().cloned().collect()
    }

    /// Stops the intake (which cuts the protocols spawned to be cut), lets the others
    /// finish within `bound`, abandons the rest, and waits for every task to end.
    /// Returns every protocol that did not finish, cut or abandoned, by name.
    pub async fn stop(&self, bound: Duration) -> Abandoned {
        self.accepting.cancel();
        self.tracker.close();
        let finished_in_bound = tokio::time::timeout(bound, self.tracker.wait()).await.is_ok();
        let mut late = Vec::new();
        if !finished_in_bound {
            late = self.in_flight();
            for protocol in &late {
                tracing::warn!(protocol, "abandoning a protocol still running at the stop's bound");
            }
            self.abandon.cancel();
            self.tracker.wait().await;
        }
        let mut protocols = std::mem::take(&mut *self.cut.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        if !protocols.is_empty() {
            tracing::info!(
                cut = protocols.len(),
                "cut at the stop: sessions led here (the next leader takes their requests) and presignature generations"
            );
        }
        protocols.extend(late);
        Abandoned { protocols }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_stop_cuts_what_it_may_cut_lets_quick_protocols_finish_abandons_slow_ones_and_refuses_new_work() {
        let protocols = Arc::new(Protocols::default());
        let finished = Arc::new(AtomicU64::new(0));
        let counter = finished.clone();
        assert!(protocols.spawn("quick".into(), async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            counter.fetch_add(1, Ordering::Relaxed);
        }));
        assert!(protocols.spawn("stuck".into(), std::future::pending()));
        assert!(protocols.spawn_cut_at_stop("led".into(), std::future::pending()));
        let started = tokio::time::Instant::now();
        let abandoned = protocols.stop(Duration::from_millis(200)).await;
        assert!(started.elapsed() >= Duration::from_millis(200), "the stuck one had its bound");
        assert_eq!(abandoned.protocols, vec!["led".to_owned(), "stuck".to_owned()]);
        assert_eq!(finished.load(Ordering::Relaxed), 1, "the quick one finished");
        assert!(protocols.in_flight().is_empty());
        assert!(!protocols.spawn("late".into(), async {}), "no new work after a stop");
    }

    #[tokio::test]
    async fn a_stop_with_only_cuttable_work_ends_without_waiting_for_its_bound() {
        let protocols = Arc::new(Protocols::default());
        assert!(protocols.spawn_cut_at_stop("generation".into(), std::future::pending()));
        let started = tokio::time::Instant::now();
        let abandoned = protocols.stop(Duration::from_secs(5)).await;
        assert!(started.elapsed() < Duration::from_secs(1), "cut at once, not at the bound");
        assert_eq!(abandoned.protocols, vec!["generation".to_owned()]);
        assert!(protocols.in_flight().is_empty());
    }
}
