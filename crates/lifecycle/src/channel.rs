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
    /// Restart the indexer subsystem without exiting.
    RestartIndexer { why: String },
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
        if self.sender.send(LifecycleRequest::Shutdown(reason.clone())).is_err() {
            tracing::debug!(%reason, "shutdown requested after the run loop ended");
        }
    }

    /// Asks for an in-process restart of the indexer subsystem.
    pub fn restart_indexer(&self, why: &str) {
        let _ = self.sender.send(LifecycleRequest::RestartIndexer { why: why.to_owned() });
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
