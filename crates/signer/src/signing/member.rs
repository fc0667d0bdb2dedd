//! The member's side of a signing session. A member commits only to a request its own
//! chain has indexed, with the same payload, not answered yet, in a signing set of the
//! contract's participants that names it and the leader; and it signs only the package
//! of that request with its own commitment in it. Its nonces leave the session table
//! before they are used, so a session can yield one share at most.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use frost_ed25519::round1::{SigningCommitments, SigningNonces};
use frost_ed25519::{Identifier, SigningPackage};

use super::SigningContext;
use crate::messages::{SessionId, SignerMessage};

/// Sessions a member keeps at once; a leader asking for more is refused.
pub const MAX_MEMBER_SESSIONS: usize = 4096;
/// A session whose leader never sent round 2 is dropped after this long.
pub const SESSION_TTL: Duration = Duration::from_secs(30);
/// How long a member waits for its own chain to index a request a leader asks about.
pub const CHAIN_WAIT: Duration = Duration::from_secs(2);

/// One session a member committed to.
struct MemberSession {
    leader: String,
    payload: Vec<u8>,
    signers: BTreeSet<Identifier>,
    nonces: SigningNonces,
    commitments: SigningCommitments,
    created: Instant,
}

/// The sessions this node committed to as a member, and the commit requests it is
/// still checking: together never more than [`MAX_MEMBER_SESSIONS`].
#[derive(Default)]
pub struct MemberSessions {
    sessions: Mutex<HashMap<SessionId, MemberSession>>,
    checking: AtomicUsize,
}

/// Counts a commit request being checked until it is dropped.
struct Checking<'a>(&'a AtomicUsize);

impl Drop for Checking<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A commit request, as the leader sent it.
pub struct CommitRequest {
    /// The session.
    pub session: SessionId,
    /// The request.
    pub request_id: [u8; 32],
    /// What the leader asks to sign.
    pub payload: Vec<u8>,
    /// The signing set.
    pub signers: Vec<String>,
}

impl MemberSessions {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, MemberSession>> {
        self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sessions held now.
    pub fn len(&self) -> usize {
        self.sessions().len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the sessions older than [`SESSION_TTL`] (their nonces with them).
    pub fn expire(&self) {
        self.sessions().retain(|_, session| session.created.elapsed() < SESSION_TTL);
    }
}

/// Answers a leader's commit request: a commitment, or why not.
pub async fn commit(context: &SigningContext, leader: &str, request: CommitRequest) -> Result<SignerMessage, String> {
    let CommitRequest { session, request_id, payload, signers } = request;
    if !context.protocols.accepting() {
        return Err("this node is stopping".into());
    }
    let signers = signing_set(context, leader, &signers)?;
    let checking = context.members.checking.fetch_add(1, Ordering::Relaxed);
    let _checking = Checking(&context.members.checking);
    if checking + context.members.len() >= MAX_MEMBER_SESSIONS {
        return Err("too many sessions in flight".into());
    }
    let indexed = wait_for_request(context, &request_id).await?;
    if indexed.payload != payload {
        return Err(format!("the payload differs from request {} on this node's chain", hex::encode(request_id)));
    }
    if context.chain.is_answered(&request_id).map_err(|err| err.to_string())? {
        return Err(format!("request {} is answered already", hex::encode(request_id)));
    }
    let (nonces, commitments) =
        frost_ed25519::round1::commit(context.share.key_package.signing_share(), &mut rand::rngs::OsRng);
    let encoded = commitments.serialize().map_err(|err| err.to_string())?;
    let mut sessions = context.members.sessions();
    if sessions.contains_key(&session) {
        return Err("the session id is in use".into());
    }
    let created = Instant::now();
    sessions
        .insert(session, MemberSession { leader: leader.to_owned(), payload, signers, nonces, commitments, created });
    Ok(SignerMessage::Commitment { session, commitments: encoded })
}

/// Answers a leader's share request: the signature share, or why not. The session's
/// nonces are taken out of the table first, whatever happens next.
pub fn sign(
    context: &SigningContext,
    leader: &str,
    session: SessionId,
    package: &[u8],
) -> Result<SignerMessage, String> {
    let taken = {
        let mut sessions = context.members.sessions();
        match sessions.get(&session) {
            Some(known) if known.leader == leader => sessions.remove(&session),
            _ => None,
        }
    };
    let member = taken.ok_or("unknown session (never committed to, expired, or signed already)")?;
    let package = SigningPackage::deserialize(package).map_err(|err| format!("signing package: {err}"))?;
    if package.message() != &member.payload {
        return Err("the signing package is of other bytes than the ones committed to".into());
    }
    let me = context.contract.identifier_of(&context.me).ok_or("this node has no identifier")?;
    if package.signing_commitment(&me) != Some(member.commitments) {
        return Err("the signing package does not hold this node's commitment".into());
    }
    let named: BTreeSet<Identifier> = package.signing_commitments().keys().copied().collect();
    if named != member.signers {
        return Err("the signing package's signers are not the signing set committed to".into());
    }
    let share = frost_ed25519::round2::sign(&package, &member.nonces, &context.share.key_package)
        .map_err(|err| format!("signing: {err}"))?;
    Ok(SignerMessage::Share { session, share: share.serialize() })
}

/// The signing set as identifiers, checked: `threshold` distinct participants, this
/// node and the leader among them.
pub(crate) fn signing_set(
    context: &SigningContext,
    leader: &str,
    signers: &[String],
) -> Result<BTreeSet<Identifier>, String> {
    let mut set = BTreeSet::new();
    for signer in signers {
        let identifier =
            context.contract.identifier_of(signer).ok_or_else(|| format!("{signer} is not a participant"))?;
        if !set.insert(identifier) {
            return Err(format!("{signer} is in the signing set twice"));
        }
    }
    if set.len() != usize::from(context.contract.threshold) {
        return Err(format!("a signing set of {} (the threshold is {})", set.len(), context.contract.threshold));
    }
    if !signers.iter().any(|signer| signer == leader) || !signers.contains(&context.me) {
        return Err("the signing set does not name both the leader and this node".into());
    }
    Ok(set)
}

/// The request from this node's chain, waiting up to [`CHAIN_WAIT`] for it to be indexed
/// (a leader's chain may be a block ahead).
pub(crate) async fn wait_for_request(
    context: &SigningContext,
    request_id: &[u8; 32],
) -> Result<crate::chain_view::IndexedRequest, String> {
    let deadline = tokio::time::Instant::now() + CHAIN_WAIT;
    let mut indexed = context.indexed.clone();
    loop {
        if let Some(request) = context.chain.request(request_id).map_err(|err| err.to_string())? {
            return Ok(request);
        }
        let next_block = tokio::time::timeout_at(deadline, indexed.changed());
        match next_block.await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => {
                return Err(format!("request {} is not on this node's chain", hex::encode(request_id)));
            }
        }
    }
}
