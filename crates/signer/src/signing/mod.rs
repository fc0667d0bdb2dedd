//! Signing sign requests with FROST (round 1: commitments, round 2: shares, then the
//! leader aggregates) by a signing set of `threshold` live participants.
//!
//! - [`schedule`]: who leads a request, who signs with the leader.
//! - [`leader`]: one session as its leader, up to the verified signature.
//! - [`member`]: the member's side, which signs only what its own chain shows.
//! - [`coordinator`]: the pending requests, rebuilt from the node store at every
//!   start, and the sessions this node leads for them.
//!
//! Nonces are made per session, kept only in memory, and taken out of the session
//! before they are used: a nonce is never used for two signature shares.

pub mod coordinator;
pub mod leader;
pub mod member;
pub mod schedule;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ed25519_dalek::{SigningKey, VerifyingKey};
use mpc_chain::host_client::HostClient;
use mpc_mesh::Mesh;
use tokio::sync::{mpsc, watch};

use crate::chain_view::{ChainView, ContractView};
use crate::hooks::SignerTestHooks;
use crate::key_share::KeyShare;
use crate::messages::{SessionId, SignerMessage};
use crate::protocols::Protocols;
use crate::stats::SignerStats;

/// A reply to a session this node leads: (member, message).
pub type Reply = (String, SignerMessage);

/// Everything a signing session needs; one per node, shared by every session.
pub struct SigningContext {
    /// This participant's account.
    pub me: String,
    /// The contract (participants, threshold).
    pub contract: ContractView,
    /// The network's key, which every signature must verify under.
    pub public_key: VerifyingKey,
    /// This node's share of it.
    pub share: KeyShare,
    /// The peers.
    pub mesh: Mesh,
    /// This node's chain.
    pub chain: ChainView,
    /// Where `respond` transactions go.
    pub host: HostClient,
    /// Signs the `respond` transactions.
    pub p2p_key: SigningKey,
    /// Counters.
    pub stats: Arc<SignerStats>,
    /// The protocols in flight.
    pub protocols: Arc<Protocols>,
    /// Height of the last block this node indexed, told at every change.
    pub indexed: watch::Receiver<u64>,
    /// The sessions this node leads, by id: where their replies go.
    pub led: Mutex<HashMap<SessionId, mpsc::Sender<Reply>>>,
    /// The sessions this node takes part in as a member.
    pub members: member::MemberSessions,
    /// Presignatures: this node's pools, the nonces it holds for others.
    pub presign: Arc<crate::presign::Presignatures>,
    /// Pool sizes and generation rate.
    pub presign_settings: crate::presign::PresignSettings,
    /// Requests waiting for this node to lead them, as the coordinator last counted:
    /// presignature generation waits while there are any.
    pub backlog: std::sync::atomic::AtomicUsize,
    /// Test hooks.
    pub hooks: SignerTestHooks,
}

impl SigningContext {
    /// Hands a reply to the session it names, if this node leads it; `false` if not.
    pub fn route_reply(&self, session: &SessionId, reply: Reply) -> bool {
        let led = self.led.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match led.get(session) {
            // A full queue means the session got more replies than it has members: the
            // extra ones are dropped.
            Some(sender) => {
                let _ = sender.try_send(reply);
                true
            }
            None => false,
        }
    }

    /// Sends `message` to `peer`, logging (not failing) when it cannot.
    pub async fn send(&self, peer: &str, message: SignerMessage) -> Result<(), mpc_mesh::SendError> {
        let kind = message.kind();
        let sent = self.mesh.send(peer, message.encode()).await;
        if let Err(error) = &sent {
            tracing::debug!(peer, kind, %error, "message not sent");
        }
        sent
    }
}

/// Registers a session this node leads; unregisters it when dropped.
pub struct LedSession<'a> {
    context: &'a SigningContext,
    session: SessionId,
}

impl<'a> LedSession<'a> {
    /// Registers `session`; its replies come out of the returned receiver.
    pub fn register(context: &'a SigningContext, session: SessionId, capacity: usize) -> (Self, mpsc::Receiver<Reply>) {
        let (sender, replies) = mpsc::channel(capacity.max(1));
        context.led.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(session, sender);
        (LedSession { context, session }, replies)
    }
}

impl Drop for LedSession<'_> {
    fn drop(&mut self) {
        self.context.led.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&self.session);
    }
}
