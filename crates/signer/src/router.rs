//! Hands each message from a peer to what it is for: key generation messages to the key
//! generation, a leader's requests to the member's side (each as a tracked protocol),
//! replies to the session this node leads. A message that is not one, or is for no
//! session, is logged and dropped: a peer can make its own sessions fail, never this
//! node panic or hold more than the bounded tables.

use std::sync::Arc;
use std::time::Duration;

use mpc_mesh::Inbound;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::messages::SignerMessage;
use crate::protocols::Protocols;
use crate::signing::SigningContext;
use crate::signing::member::{self, CommitRequest};
use crate::stats::{FailureKind, SignerStats};

/// How often expired member sessions are dropped.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(5);

/// Where the router hands messages.
pub struct Routes {
    /// The key generation's inbox (closed once the key is loaded).
    pub key_generation: mpsc::Sender<(String, SignerMessage)>,
    /// The signing side, once the key is loaded.
    pub signing: watch::Receiver<Option<Arc<SigningContext>>>,
    /// The protocols in flight.
    pub protocols: Arc<Protocols>,
    /// Counters.
    pub stats: Arc<SignerStats>,
    /// The peers, for refusals sent before the key is loaded.
    pub mesh: mpc_mesh::Mesh,
}

/// Routes the peers' messages until cancelled or the mesh ends.
pub async fn route(
    mut inbound: mpsc::Receiver<Inbound>,
    routes: Routes,
    cancel: CancellationToken,
) -> Result<(), String> {
    let mut expiry = tokio::time::interval(EXPIRY_INTERVAL);
    loop {
        let Inbound { from, payload } = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = expiry.tick() => {
                if let Some(context) = &*routes.signing.borrow() {
                    context.members.expire();
                }
                continue;
            }
            next = inbound.recv() => match next {
                Some(message) => message,
                None => return Ok(()),
            },
        };
        let message = match SignerMessage::decode(&payload) {
            Ok(message) => message,
            Err(error) => {
                routes.stats.failed(FailureKind::PeerProtocol);
                tracing::warn!(peer = %from, %error, bytes = payload.len(), "peer sent a message that is not one; dropped");
                continue;
            }
        };
        dispatch(&routes, from, message);
    }
}

fn dispatch(routes: &Routes, from: String, message: SignerMessage) {
    let signing = routes.signing.borrow().clone();
    match message {
        SignerMessage::DkgRound1 { .. } | SignerMessage::DkgRound2 { .. } => {
            if routes.key_generation.try_send((from, message)).is_err() {
                tracing::debug!("key generation message dropped (the key is loaded, or its inbox is full)");
            }
        }
        SignerMessage::CommitRequest { session, request_id, payload, signers } => {
            let Some(context) = signing else {
                // Told at once, so the leader picks another member instead of waiting.
                let (mesh, refusal) =
                    (routes.mesh.clone(), SignerMessage::Refused { session, reason: "no key share loaded yet".into() });
                routes.protocols.spawn(format!("refuse a commit request of {from}"), async move {
                    let _ = mesh.send(&from, refusal.encode()).await;
                });
                return;
            };
            let description = format!("sign {} (member for {from})", hex::encode(request_id));
            let request = CommitRequest { session, request_id, payload, signers };
            let task_context = context.clone();
            let accepted = context.protocols.spawn(description, async move {
                let reply = match member::commit(&task_context, &from, request).await {
                    Ok(reply) => reply,
                    Err(reason) => refusal(&task_context, &from, session, reason),
                };
                let _ = task_context.send(&from, reply).await;
            });
            if !accepted {
                tracing::debug!("commit request while stopping; dropped");
            }
        }
        SignerMessage::ShareRequest { session, signing_package } => {
            let Some(context) = signing else {
                routes.stats.failed(FailureKind::PeerProtocol);
                tracing::warn!(peer = %from, "share request before this node's key is loaded; dropped");
                return;
            };
            let reply = match member::sign(&context, &from, session, &signing_package) {
                Ok(reply) => reply,
                Err(reason) => refusal(&context, &from, session, reason),
            };
            let task_context = context.clone();
            let description = format!("send a signature share to {from}");
            context.protocols.spawn(description, async move {
                let _ = task_context.send(&from, reply).await;
            });
        }
        SignerMessage::Commitment { session, .. }
        | SignerMessage::Share { session, .. }
        | SignerMessage::Refused { session, .. } => {
            let kind = message.kind();
            if !signing.is_some_and(|context| context.route_reply(&session, (from.clone(), message))) {
                tracing::debug!(peer = %from, kind, "reply for a session this node does not lead (ended or unknown)");
            }
        }
    }
}

/// Logs and counts a refusal, and makes the message that tells the leader.
fn refusal(
    context: &SigningContext,
    leader: &str,
    session: crate::messages::SessionId,
    reason: String,
) -> SignerMessage {
    if context.protocols.accepting() {
        context.stats.failed(FailureKind::PeerProtocol);
        tracing::warn!(%leader, %reason, "refused a leader's request");
    }
    SignerMessage::Refused { session, reason }
}
