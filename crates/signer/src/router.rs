//! Hands each message from a peer to what it is for: key generation messages to the key
//! generation, a leader's requests to the member's side (each as a tracked protocol),
//! replies to the session this node leads. A message that is not one, or is for no
//! session, is logged and dropped: a peer can make its own sessions fail, never this
//! node panic or hold more than the bounded tables.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mpc_mesh::Inbound;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::messages::{SessionId, SignerMessage};
use crate::presign;
use crate::presign::owner::{generation_session, use_session};
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
            let request = CommitRequest { session, request_id, payload, signers };
            let (work_context, leader) = (context.clone(), from.clone());
            let work = async move { member::commit(&work_context, &leader, request).await };
            let description = format!("sign {} (member for {from})", hex::encode(request_id));
            answer(&context, from, description, work, move |reason| SignerMessage::Refused { session, reason });
        }
        SignerMessage::ShareRequest { session, signing_package } => {
            let Some(context) = signing else {
                routes.stats.failed(FailureKind::PeerProtocol);
                tracing::warn!(peer = %from, "share request before this node's key is loaded; dropped");
                return;
            };
            let (work_context, leader) = (context.clone(), from.clone());
            let work = async move { member::sign(&work_context, &leader, session, &signing_package) };
            let description = format!("send a signature share to {from}");
            answer(&context, from, description, work, move |reason| SignerMessage::Refused { session, reason });
        }
        SignerMessage::Commitment { session, .. }
        | SignerMessage::Share { session, .. }
        | SignerMessage::Refused { session, .. } => route_reply(signing.as_deref(), from, session, message),
        SignerMessage::PresignStored { id, .. } => {
            route_reply(signing.as_deref(), from, generation_session(id), message)
        }
        SignerMessage::PresignShare { id, .. } => route_reply(signing.as_deref(), from, use_session(id), message),
        SignerMessage::PresignRefused { id, reason } => {
            // A refusal names the id only: it is for the generation or the use in flight.
            let context = signing.as_deref();
            let refused = |session| SignerMessage::Refused { session, reason: reason.clone() };
            if !context.is_some_and(|context| {
                context.route_reply(&generation_session(id), (from.clone(), refused(generation_session(id))))
            }) {
                route_reply(context, from, use_session(id), refused(use_session(id)));
            }
        }
        SignerMessage::PresignGenerate { id, signers } => {
            let Some(context) = signing else { return presign_before_key(&from, "generate") };
            let (work_context, owner) = (context.clone(), from.clone());
            let work = async move { presign::member::store_nonces(&work_context, &owner, id, signers).await };
            let description = format!("presignature {id} of {from} (member)");
            answer(&context, from, description, work, move |reason| SignerMessage::PresignRefused { id, reason });
        }
        SignerMessage::PresignSign { id, request_id, signing_package } => {
            let Some(context) = signing else { return presign_before_key(&from, "sign") };
            let (work_context, owner) = (context.clone(), from.clone());
            let work = async move {
                presign::member::sign_presigned(&work_context, &owner, id, request_id, &signing_package).await
            };
            let description = format!("sign {} with presignature {id} of {from} (member)", hex::encode(request_id));
            answer(&context, from, description, work, move |reason| SignerMessage::PresignRefused { id, reason });
        }
        SignerMessage::PresignInventory { live, below } => {
            let Some(context) = signing else { return presign_before_key(&from, "inventory") };
            let task_context = context.clone();
            context.protocols.spawn(format!("orphans of {from}"), async move {
                if let Err(error) = presign::member::collect_orphans(&task_context, &from, &live, below).await {
                    tracing::warn!(owner = %from, %error, "orphaned nonces not deleted; the next inventory tries again");
                }
            });
        }
    }
}

/// Runs a member's `work` as a tracked protocol and sends its answer to `leader`: the
/// message it made, or the refusal `refuse` makes of its error (logged and counted).
fn answer(
    context: &Arc<SigningContext>,
    leader: String,
    description: String,
    work: impl Future<Output = Result<SignerMessage, String>> + Send + 'static,
    refuse: impl FnOnce(String) -> SignerMessage + Send + 'static,
) {
    let task_context = context.clone();
    let accepted = context.protocols.spawn(description, async move {
        let reply = match work.await {
            Ok(reply) => reply,
            Err(reason) => {
                if task_context.protocols.accepting() {
                    task_context.stats.failed(FailureKind::PeerProtocol);
                    tracing::warn!(%leader, %reason, "refused a leader's request");
                }
                refuse(reason)
            }
        };
        let _ = task_context.send(&leader, reply).await;
    });
    if !accepted {
        tracing::debug!("a leader's request while stopping; dropped");
    }
}

/// Hands a reply to the session this node leads, if it leads it.
fn route_reply(context: Option<&SigningContext>, from: String, session: SessionId, message: SignerMessage) {
    let kind = message.kind();
    if !context.is_some_and(|context| context.route_reply(&session, (from.clone(), message))) {
        tracing::debug!(peer = %from, kind, "reply for a session this node does not lead (ended or unknown)");
    }
}

fn presign_before_key(from: &str, what: &str) {
    tracing::debug!(peer = %from, what, "presignature message before this node's key is loaded; dropped");
}
