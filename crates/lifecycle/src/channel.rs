//! The node's internal lifecycle channel: every request to shut down or to restart goes
//! through it (a [`LifecycleSender`] is its sending half; the node's components each
//! hold one, named `lifecycle`).
//!
//! Unbounded on purpose: no sender may wait. The signal listener must be back at its
//! signals at once, and a supervisor reports a failure from the task that failed, which
//! may be what the run loop is waiting for. What arrives is bounded by what happens to
//! the process (one request per signal, failure, watcher decision or admin request),
//! and the run loop, the only receiver, takes each one as it comes; it decides what each
//! request does (the first shutdown request ends the loop; a restart request may be
//! merged into one already running).

use tokio::sync::mpsc;

use crate::ShutdownReason;

/// What a sender asks the run loop to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleRequest {
    /// Stop the process.
    Shutdown(ShutdownReason),
    /// Restart the restartable part of the process without exiting; which part that is
    /// belongs to the receiver. `after_failure` marks restarts caused by a failure,
    /// which a restart policy counts.
    Restart {
        /// Why, for the logs.
        why: String,
        /// True when a failure (not an operator) asked for it.
        after_failure: bool,
    },
}

/// Sending half; cheap to clone, handed to every component that may stop the node.
#[derive(Debug, Clone)]
pub struct LifecycleSender {
    sender: mpsc::UnboundedSender<LifecycleRequest>,
}

/// Receiving half, owned by the run loop.
#[derive(Debug)]
pub struct LifecycleReceiver {
    receiver: mpsc::UnboundedReceiver<LifecycleRequest>,
}

/// Creates the channel.
pub fn lifecycle_channel() -> (LifecycleSender, LifecycleReceiver) {
    let (sender, receiver) = mpsc::unbounded_channel();
    (LifecycleSender { sender }, LifecycleReceiver { receiver })
}

impl LifecycleSender {
    /// Asks for a shutdown. Never blocks; after the run loop is gone it is a no-op.
    pub fn shutdown(&self, reason: ShutdownReason) {
        self.request(LifecycleRequest::Shutdown(reason));
    }

    /// Asks for an in-process restart on an operator's behalf.
    pub fn restart(&self, why: &str) {
        self.request(LifecycleRequest::Restart { why: why.to_owned(), after_failure: false });
    }

    /// Asks for a restart because part of the restartable subsystem failed.
    pub fn restart_after_failure(&self, why: &str) {
        self.request(LifecycleRequest::Restart { why: why.to_owned(), after_failure: true });
    }

    fn request(&self, request: LifecycleRequest) {
        if let Err(unsent) = self.sender.send(request) {
            tracing::debug!(request = ?unsent.0, "lifecycle request after the run loop ended");
        }
    }
}

impl LifecycleReceiver {
    /// The next request. `None` cannot happen while the receiver's owner also holds a
    /// sender, which the run loop does.
    pub async fn recv(&mut self) -> Option<LifecycleRequest> {
        self.receiver.recv().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_arrive_in_order_and_sending_after_the_receiver_is_gone_is_harmless() {
        let (sender, mut receiver) = lifecycle_channel();
        sender.restart("SIGHUP");
        sender.restart_after_failure("monitor failed");
        sender.shutdown(ShutdownReason::AdminRequest);
        assert_eq!(
            receiver.recv().await,
            Some(LifecycleRequest::Restart { why: "SIGHUP".into(), after_failure: false })
        );
        assert_eq!(
            receiver.recv().await,
            Some(LifecycleRequest::Restart { why: "monitor failed".into(), after_failure: true })
        );
        assert_eq!(receiver.recv().await, Some(LifecycleRequest::Shutdown(ShutdownReason::AdminRequest)));
        drop(receiver);
        sender.shutdown(ShutdownReason::AdminRequest);
    }
}
