//! The node's internal shutdown channel (`shutdown_signal_sender`).
//!
//! Unbounded on purpose: senders include a signal handler and `Drop`-time code paths
//! that must never wait. Only the first request ends the run loop; later ones are
//! logged by the receiver's owner.

use tokio::sync::mpsc;

use crate::ShutdownReason;

/// What a sender asks the run loop to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleRequest {
    /// Stop the process.
    Shutdown(ShutdownReason),
    /// Restart the indexer subsystem without exiting; with a wipe token, wipe the chain
    /// data first and record the token as applied. `after_failure` marks restarts caused
    /// by a failure, which the restart policy counts.
    RestartIndexer { why: String, wipe_token: Option<String>, after_failure: bool },
}

/// Sending half; cheap to clone, handed to every component that may stop the node.
#[derive(Debug, Clone)]
pub struct ShutdownSender {
    sender: mpsc::UnboundedSender<LifecycleRequest>,
}

/// Receiving half, owned by the run loop.
#[derive(Debug)]
pub struct ShutdownReceiver {
    receiver: mpsc::UnboundedReceiver<LifecycleRequest>,
}

/// Creates the channel.
pub fn shutdown_channel() -> (ShutdownSender, ShutdownReceiver) {
    let (sender, receiver) = mpsc::unbounded_channel();
    (ShutdownSender { sender }, ShutdownReceiver { receiver })
}

impl ShutdownSender {
    /// Asks for a shutdown. Never blocks; after the run loop is gone it is a no-op.
    pub fn shutdown(&self, reason: ShutdownReason) {
        self.request(LifecycleRequest::Shutdown(reason));
    }

    /// Asks for an in-process restart of the indexer subsystem.
    pub fn restart_indexer(&self, why: &str) {
        self.request(LifecycleRequest::RestartIndexer { why: why.to_owned(), wipe_token: None, after_failure: false });
    }

    /// Asks for a restart because part of the indexer subsystem failed.
    pub fn restart_indexer_after_failure(&self, why: &str) {
        self.request(LifecycleRequest::RestartIndexer { why: why.to_owned(), wipe_token: None, after_failure: true });
    }

    fn request(&self, request: LifecycleRequest) {
        if let Err(unsent) = self.sender.send(request) {
            tracing::debug!(request = ?unsent.0, "lifecycle request after the run loop ended");
        }
    }

    /// Asks for a restart that first wipes the chain data, recording `wipe_token`.
    pub fn restart_indexer_with_wipe(&self, why: &str, wipe_token: String) {
        self.request(LifecycleRequest::RestartIndexer {
            why: why.to_owned(),
            wipe_token: Some(wipe_token),
            after_failure: false,
        });
    }
}

impl ShutdownReceiver {
    /// The next request; `None` only if every sender is gone.
    pub async fn recv(&mut self) -> Option<LifecycleRequest> {
        self.receiver.recv().await
    }

    /// A request already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<LifecycleRequest> {
        self.receiver.try_recv().ok()
    }
}
