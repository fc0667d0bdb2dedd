//! One signing session as its leader: commitments from the members, the signing
//! package back to them, their shares, aggregation, and a check of the signature with
//! ed25519-dalek before anything is submitted.

use std::collections::BTreeMap;
use std::time::Duration;

use frost_ed25519::round1::SigningCommitments;
use frost_ed25519::round2::SignatureShare;
use frost_ed25519::{Identifier, SigningPackage};
use rand::RngCore;
use tokio::sync::mpsc;

use super::{LedSession, Reply, SigningContext};
use crate::chain_view::IndexedRequest;
use crate::messages::{SessionId, SignerMessage};
use crate::stats::FailureKind;

/// How long a leader waits for every member's answer in each round.
pub const ROUND_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a session failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// A member did not answer in time (or could not be reached).
    #[error("{member} did not answer in round {round}")]
    Timeout {
        /// The member.
        member: String,
        /// 1 (commitments) or 2 (shares).
        round: u8,
    },
    /// A member left the mesh (it stopped, or its connection broke) before it answered.
    #[error("{member} left before answering in round {round}")]
    Left {
        /// The member.
        member: String,
        /// 1 (commitments) or 2 (shares).
        round: u8,
    },
    /// A member refused.
    #[error("{member} refused: {reason}")]
    Refused {
        /// The member.
        member: String,
        /// Its reason.
        reason: String,
    },
    /// A member sent something that breaks the protocol.
    #[error("{member} broke the protocol: {detail}")]
    Protocol {
        /// The member.
        member: String,
        /// What it sent.
        detail: String,
    },
    /// The shares do not make a signature that verifies.
    #[error("no valid signature: {0}")]
    Invalid(String),
}

impl SessionError {
    /// The member to leave out of the next try, if one is to blame.
    pub fn member(&self) -> Option<&str> {
        match self {
            SessionError::Timeout { member, .. }
            | SessionError::Left { member, .. }
            | SessionError::Refused { member, .. }
            | SessionError::Protocol { member, .. } => Some(member),
            SessionError::Invalid(_) => None,
        }
    }

    /// How `/metrics` counts it.
    pub fn kind(&self) -> FailureKind {
        match self {
            SessionError::Timeout { .. } => FailureKind::MemberTimeout,
            SessionError::Left { .. } => FailureKind::MemberLeft,
            SessionError::Refused { .. } => FailureKind::MemberRefused,
            SessionError::Protocol { .. } => FailureKind::PeerProtocol,
            SessionError::Invalid(_) => FailureKind::InvalidSignature,
        }
    }
}

/// Signs `request` with `members`: returns the signature (R ‖ s), verified under the
/// network's key over the request's payload, with its nonce commitments.
pub async fn lead(
    context: &SigningContext,
    request: &IndexedRequest,
    members: &[String],
) -> Result<Signed, SessionError> {
    let mut session: SessionId = [0; 16];
    rand::rngs::OsRng.fill_bytes(&mut session);
    let (_registration, mut replies) = LedSession::register(context, session, 2 * members.len() + 2);
    let mut signers: Vec<String> = members.to_vec();
    signers.push(context.me.clone());
    let payload = context.hooks.payload_to_ask(&request.payload);

    let (nonces, own_commitments) =
        frost_ed25519::round1::commit(context.share.key_package.signing_share(), &mut rand::rngs::OsRng);
    let ask = SignerMessage::CommitRequest {
        session,
        request_id: request.request_id,
        payload: payload.clone(),
        signers: signers.clone(),
    };
    ask_all(context, members, &ask, 1).await?;
    let mut commitments: BTreeMap<Identifier, SigningCommitments> =
        collect(context, &mut replies, members, 1, |member, message| match message {
            SignerMessage::Commitment { commitments, .. } => {
                Some(decoded(context, member, "commitments", SigningCommitments::deserialize(&commitments)))
            }
            _ => None,
        })
        .await?;
    commitments.insert(identifier(context, &context.me)?, own_commitments);

    let package = SigningPackage::new(commitments, &payload);
    let bytes = package.serialize().map_err(|err| SessionError::Invalid(format!("signing package: {err}")))?;
    let ask = SignerMessage::ShareRequest { session, signing_package: bytes };
    ask_all(context, members, &ask, 2).await?;
    let mut shares: BTreeMap<Identifier, SignatureShare> =
        collect(context, &mut replies, members, 2, |member, message| match message {
            SignerMessage::Share { share, .. } => {
                Some(decoded(context, member, "share", SignatureShare::deserialize(&share)))
            }
            _ => None,
        })
        .await?;
    let own_share = frost_ed25519::round2::sign(&package, &nonces, &context.share.key_package)
        .map_err(|err| SessionError::Invalid(format!("own share: {err}")))?;
    drop(nonces);
    shares.insert(identifier(context, &context.me)?, own_share);
    verified_signature(context, &package, &shares, &request.payload)
}

/// Sends `ask` to every member; a member that cannot be reached fails `round` at once.
pub(crate) async fn ask_all(
    context: &SigningContext,
    members: &[String],
    ask: &SignerMessage,
    round: u8,
) -> Result<(), SessionError> {
    for member in members {
        if context.send(member, ask.clone()).await.is_err() {
            return Err(SessionError::Timeout { member: member.clone(), round });
        }
    }
    Ok(())
}

/// A member's decoded `what`, keyed by its identifier; a part that does not decode
/// breaks the protocol.
pub(crate) fn decoded<T>(
    context: &SigningContext,
    member: &str,
    what: &str,
    decoded: Result<T, frost_ed25519::Error>,
) -> Result<(Identifier, T), SessionError> {
    let value = decoded
        .map_err(|err| SessionError::Protocol { member: member.to_owned(), detail: format!("{what}: {err}") })?;
    Ok((identifier(context, member)?, value))
}

/// The FROST identifier of `account`.
pub(crate) fn identifier(context: &SigningContext, account: &str) -> Result<Identifier, SessionError> {
    context.contract.identifier_of(account).ok_or_else(|| SessionError::Invalid(format!("{account} has no identifier")))
}

/// A verified signature and the nonce commitments it was made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// R ‖ s.
    pub signature: [u8; 64],
    /// Each signer's `SigningCommitments` (hex), by account: published with the response.
    pub commitments: BTreeMap<String, String>,
}

/// Aggregates `shares` over `package` and checks the signature with ed25519-dalek over
/// `payload` under the network's key: a signature is returned only if it verifies.
pub(crate) fn verified_signature(
    context: &SigningContext,
    package: &SigningPackage,
    shares: &BTreeMap<Identifier, SignatureShare>,
    payload: &[u8],
) -> Result<Signed, SessionError> {
    let signature = frost_ed25519::aggregate(package, shares, &context.share.public_key_package)
        .map_err(|err| SessionError::Invalid(format!("aggregation: {err}")))?;
    let bytes: [u8; 64] = signature
        .serialize()
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| SessionError::Invalid("a signature of another length than 64 bytes".into()))?;
    context.public_key.verify_strict(payload, &ed25519_dalek::Signature::from_bytes(&bytes)).map_err(|_| {
        SessionError::Invalid("the aggregated signature does not verify over the request's payload".into())
    })?;
    let mut commitments = BTreeMap::new();
    for (identifier, signer_commitments) in package.signing_commitments() {
        let account = context.contract.account_of(identifier).unwrap_or_default().to_owned();
        let bytes = signer_commitments.serialize().map_err(|err| SessionError::Invalid(err.to_string()))?;
        commitments.insert(account, hex::encode(bytes));
    }
    Ok(Signed { signature: bytes, commitments })
}

/// Collects one answer per member of `round` from `replies`: `accept` turns a reply into
/// an entry (`None` for a reply of another kind, ignored); a refusal ends the session.
pub(crate) async fn collect<T>(
    context: &SigningContext,
    replies: &mut mpsc::Receiver<Reply>,
    members: &[String],
    round: u8,
    accept: impl Fn(&str, SignerMessage) -> Option<Result<(Identifier, T), SessionError>>,
) -> Result<BTreeMap<Identifier, T>, SessionError> {
    let mut answered: BTreeMap<Identifier, T> = BTreeMap::new();
    let mut heard: Vec<&str> = Vec::new();
    let mut connected = context.mesh.watch_connected();
    let mut watching = true;
    let deadline = tokio::time::Instant::now() + ROUND_TIMEOUT;
    while heard.len() < members.len() {
        // A member that left (its goodbye, or a broken connection) fails the round at
        // once: nobody waits for the timeout of a peer known to be gone.
        let unheard = || members.iter().filter(|member| !heard.contains(&member.as_str()));
        if let Some(gone) = unheard().find(|member| !connected.borrow_and_update().contains(*member)) {
            return Err(SessionError::Left { member: gone.clone(), round });
        }
        let reply = tokio::select! {
            reply = tokio::time::timeout_at(deadline, replies.recv()) => reply,
            changed = connected.changed(), if watching => {
                // With the mesh gone, only a reply or the timeout ends the round.
                watching = changed.is_ok();
                continue;
            }
        };
        let Ok(Some((from, message))) = reply else {
            let member = unheard().next().cloned().unwrap_or_default();
            return Err(SessionError::Timeout { member, round });
        };
        let Some(member) = members.iter().find(|member| **member == from) else { continue };
        if heard.contains(&member.as_str()) {
            continue;
        }
        if let SignerMessage::Refused { reason, .. } = message {
            return Err(SessionError::Refused { member: member.clone(), reason });
        }
        if let Some(entry) = accept(member, message) {
            let (identifier, value) = entry?;
            answered.insert(identifier, value);
            heard.push(member);
        }
    }
    Ok(answered)
}
