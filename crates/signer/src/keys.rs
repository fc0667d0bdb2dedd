//! Getting this node's key share: the stored one once the contract runs, or a
//! distributed key generation over the mesh while it initializes.
//!
//! A key generation runs in numbered attempts. A node starts an attempt (its number
//! made durable before any message of it leaves) when it has no share yet; a peer that
//! hears of a higher attempt joins it. A node killed during key generation **restarts**
//! it: its next start begins a new attempt, numbered above any it took part in, and its
//! peers join that one (the key material of the interrupted attempt was only in
//! memory). An attempt that does not finish within [`ATTEMPT_TIMEOUT`] while every peer
//! is connected is replaced by the next.
//!
//! Each finished attempt's share is stored (sealed, crash-atomically, see `key_share`)
//! before its key is voted; the contract runs once every participant voted the same
//! key, and then the share of that key is the one used (the others are dropped).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use frost_ed25519::Identifier;
use mpc_chain::host::{Action, SignedTransaction};
use mpc_chain::host_client::HostClient;
use mpc_mesh::Mesh;
use mpc_store::{Column, StoreUpdate};
use rand::RngCore;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::chain_view::{ChainView, ContractState, ContractView};
use crate::dkg::{DkgAttempt, DkgFault, Outgoing};
use crate::hooks::crash_point;
use crate::key_share::{KeyShare, KeyShareError, share_of_key, write_key_shares};
use crate::messages::SignerMessage;
use crate::secrets::SecretsKey;
use crate::stats::{FailureKind, SignerStats};

/// An attempt that has not finished this long while every peer is connected is
/// replaced by the next.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the contract's state is read while the key is generated.
const CONTRACT_POLL: Duration = Duration::from_millis(100);
/// Tries of one vote before it is scheduled again.
const VOTE_ATTEMPTS: u32 = 10;
/// Pause before a vote that was not acknowledged is sent again.
const VOTE_RETRY: Duration = Duration::from_secs(2);
/// Key of the highest attempt this node took part in, in the node store's `Misc`.
const ATTEMPT_KEY: &[u8] = b"signer/dkg_attempt";

/// What the key generation works with.
pub struct KeysSetup {
    /// The node's home (the key share file).
    pub home: PathBuf,
    /// Seals the key share.
    pub secrets: Arc<SecretsKey>,
    /// Signs the vote.
    pub p2p_key: SigningKey,
    /// This participant's account.
    pub me: String,
    /// The contract when the signing side started (participants and threshold).
    pub contract: ContractView,
    /// The peers.
    pub mesh: Mesh,
    /// This node's chain.
    pub chain: ChainView,
    /// Where the vote goes.
    pub host: HostClient,
    /// Failures are counted here.
    pub stats: Arc<SignerStats>,
}

/// How getting the key share ended.
#[derive(Debug)]
pub enum KeysOutcome {
    /// The share of the contract's key.
    Ready(Box<KeyShare>),
    /// The contract runs under a key this node has no (usable) share of.
    Unusable(KeyShareError),
    /// The node stops.
    Cancelled,
    /// Something this node cannot go on without failed (its store, its disk).
    Failed(String),
}

/// Gets the key share: waits for the contract to run, generating the key with the peers
/// meanwhile if this node has no share of it. `shares` are the ones stored; `inbox`
/// brings the peers' key generation messages.
pub async fn obtain_key_share(
    setup: KeysSetup,
    shares: Vec<KeyShare>,
    mut inbox: mpsc::Receiver<(String, SignerMessage)>,
    cancel: CancellationToken,
) -> KeysOutcome {
    let mut generation = match KeyGeneration::new(&setup, shares) {
        Ok(generation) => generation,
        Err(error) => return KeysOutcome::Failed(error),
    };
    let mut connected_changes = setup.mesh.watch_connected();
    let mut connected = BTreeSet::new();
    let mut poll = tokio::time::interval(CONTRACT_POLL);
    let mut began = false;
    loop {
        let step = tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                generation.stop_voting().await;
                return KeysOutcome::Cancelled;
            }
            _ = poll.tick() => {
                match setup.chain.contract() {
                    Err(error) => Err(format!("reading the contract's state: {error}")),
                    Ok(Some(contract)) if contract.state == ContractState::Running => {
                        generation.stop_voting().await;
                        return generation.settle(contract.public_key.as_deref().unwrap_or_default());
                    }
                    Ok(_) if !began => {
                        began = true;
                        generation.begin(&cancel).await
                    }
                    Ok(_) => generation.on_tick(&cancel).await,
                }
            }
            changed = connected_changes.changed() => {
                if changed.is_err() {
                    return KeysOutcome::Cancelled;
                }
                let now = connected_changes.borrow_and_update().clone();
                let new: Vec<String> = now.difference(&connected).cloned().collect();
                connected = now;
                generation.resend_to(&new).await;
                Ok(())
            }
            Some((from, message)) = inbox.recv() => generation.on_message(&from, message, &cancel).await,
        };
        if let Err(error) = step {
            generation.stop_voting().await;
            return KeysOutcome::Failed(error);
        }
    }
}

/// The key generation's state on this node.
struct KeyGeneration<'a> {
    setup: &'a KeysSetup,
    shares: Vec<KeyShare>,
    current: Option<(DkgAttempt, Instant)>,
    highest: u64,
    me: Identifier,
    peers: BTreeMap<Identifier, String>,
    voting: Option<(CancellationToken, JoinHandle<bool>)>,
    vote_due: Option<(KeyShare, Instant)>,
}

impl<'a> KeyGeneration<'a> {
    fn new(setup: &'a KeysSetup, shares: Vec<KeyShare>) -> Result<Self, String> {
        let me = setup
            .contract
            .identifier_of(&setup.me)
            .ok_or_else(|| format!("{} is not a participant of the contract", setup.me))?;
        let peers = setup
            .contract
            .participants
            .iter()
            .filter(|participant| participant.account_id != setup.me)
            .filter_map(|participant| {
                Some((setup.contract.identifier_of(&participant.account_id)?, participant.account_id.clone()))
            })
            .collect();
        let stored = match setup.chain.store().get(Column::Misc, ATTEMPT_KEY) {
            Ok(Some(bytes)) => <[u8; 8]>::try_from(bytes.as_slice()).map(u64::from_be_bytes).unwrap_or(0),
            Ok(None) => 0,
            Err(error) => return Err(format!("reading the key generation's attempt: {error}")),
        };
        let highest = shares.iter().map(|share| share.attempt).fold(stored, u64::max);
        Ok(KeyGeneration { setup, shares, current: None, highest, me, peers, voting: None, vote_due: None })
    }

    /// The contract initializes: vote the latest stored share again, or start an attempt.
    async fn begin(&mut self, cancel: &CancellationToken) -> Result<(), String> {
        match self.shares.last() {
            Some(latest) => {
                tracing::info!(
                    attempt = latest.attempt, public_key = %latest.public_key_hex(),
                    "the contract is initializing; voting this node's key share again"
                );
                self.vote_due = Some((latest.clone(), Instant::now()));
                self.on_tick(cancel).await
            }
            None => self.start_attempt(self.highest + 1).await,
        }
    }

    /// The contract runs under `contract_key`: the share of that key, and the others
    /// dropped from the file.
    fn settle(&self, contract_key: &str) -> KeysOutcome {
        let home = &self.setup.home;
        match share_of_key(home, &self.shares, contract_key) {
            Err(error) => KeysOutcome::Unusable(error),
            Ok(share) => {
                if self.shares.len() > 1 {
                    let kept = std::slice::from_ref(&share);
                    if let Err(error) = write_key_shares(home, &self.setup.secrets, kept, || {}) {
                        return KeysOutcome::Failed(error.to_string());
                    }
                    tracing::info!(dropped = self.shares.len() - 1, "dropped the key shares of superseded attempts");
                }
                tracing::info!(attempt = share.attempt, public_key = %share.public_key_hex(), "key share loaded");
                KeysOutcome::Ready(Box::new(share))
            }
        }
    }

    /// Makes `attempt` durable, then starts it and sends its round 1.
    async fn start_attempt(&mut self, attempt: u64) -> Result<(), String> {
        let mut update = StoreUpdate::new();
        update.put(Column::Misc, ATTEMPT_KEY, attempt.to_be_bytes());
        let chain = self.setup.chain.clone();
        tokio::task::spawn_blocking(move || chain.store().commit_durably(update))
            .await
            .map_err(|err| format!("recording the key generation's attempt: {err}"))?
            .map_err(|err| format!("recording the key generation's attempt: {err}"))?;
        crash_point("dkg:attempt_stored");
        self.highest = self.highest.max(attempt);
        let threshold = self.setup.contract.threshold;
        let (dkg, outgoing) =
            DkgAttempt::start(attempt, self.me, self.peers.clone(), threshold).map_err(|err| err.to_string())?;
        tracing::info!(attempt, participants = self.peers.len() + 1, threshold, "key generation attempt started");
        self.current = Some((dkg, Instant::now()));
        self.send(outgoing).await;
        crash_point("dkg:round1_sent");
        Ok(())
    }

    async fn send(&self, outgoing: Outgoing) {
        for (peer, message) in outgoing {
            if let Err(error) = self.setup.mesh.send(&peer, message.encode()).await {
                tracing::debug!(%peer, %error, "key generation message not sent; it is sent again on reconnect");
            }
        }
    }

    /// Sends what the newly connected `peers` need of the current attempt.
    async fn resend_to(&self, peers: &[String]) {
        if let Some((dkg, _)) = &self.current {
            for peer in peers {
                self.send(dkg.resend_to(peer)).await;
            }
        }
    }

    async fn on_message(
        &mut self,
        from: &str,
        message: SignerMessage,
        cancel: &CancellationToken,
    ) -> Result<(), String> {
        let fault = match message {
            SignerMessage::DkgRound1 { attempt, package } => self.on_round1(from, attempt, &package).await?,
            SignerMessage::DkgRound2 { attempt, round1_digest, package } => match &mut self.current {
                Some((dkg, _)) if dkg.attempt() == attempt => dkg.on_round2(from, round1_digest, &package).err(),
                _ => None,
            },
            _ => None,
        };
        let fault = match fault {
            Some(fault) => Some(fault),
            None => self.finish_if_done(cancel).await?,
        };
        if let Some(fault) = fault {
            self.setup.stats.failed(FailureKind::KeyGeneration);
            let next = self.highest + 1;
            tracing::warn!(%fault, next_attempt = next, "key generation attempt failed; starting the next");
            self.start_attempt(next).await?;
        }
        Ok(())
    }

    async fn on_round1(&mut self, from: &str, attempt: u64, package: &[u8]) -> Result<Option<DkgFault>, String> {
        let current = self.current.as_ref().map(|(dkg, _)| dkg.attempt());
        let finished = self.shares.last().map_or(0, |share| share.attempt);
        match current {
            Some(current) if attempt < current => {
                if let Some((dkg, _)) = &self.current {
                    self.send(dkg.resend_to(from)).await;
                }
                return Ok(None);
            }
            Some(current) if attempt > current => self.start_attempt(attempt).await?,
            Some(_) => {}
            None if attempt > finished => self.start_attempt(attempt).await?,
            None => {
                let next = self.highest.max(attempt) + 1;
                tracing::info!(
                    peer = from,
                    attempt,
                    next_attempt = next,
                    "a peer is in a key generation attempt this node cannot finish any more (it restarted); starting the next"
                );
                self.start_attempt(next).await?;
                return Ok(None);
            }
        }
        let Some((dkg, _)) = &mut self.current else { return Ok(None) };
        match dkg.on_round1(from, package) {
            Ok(outgoing) if outgoing.is_empty() => Ok(None),
            Ok(outgoing) => {
                self.send(outgoing).await;
                crash_point("dkg:round2_sent");
                Ok(None)
            }
            Err(fault) => Ok(Some(fault)),
        }
    }

    /// Stores the share of a finished attempt, then votes its key.
    async fn finish_if_done(&mut self, cancel: &CancellationToken) -> Result<Option<DkgFault>, String> {
        let Some((dkg, _)) = &mut self.current else { return Ok(None) };
        let (key_package, public_key_package) = match dkg.try_finish() {
            Ok(Some(finished)) => finished,
            Ok(None) => return Ok(None),
            Err(fault) => return Ok(Some(fault)),
        };
        let share = KeyShare { attempt: dkg.attempt(), key_package, public_key_package };
        let mut shares = self.shares.clone();
        shares.push(share.clone());
        let (home, secrets) = (self.setup.home.clone(), self.setup.secrets.clone());
        let to_write = shares.clone();
        tokio::task::spawn_blocking(move || {
            write_key_shares(&home, &secrets, &to_write, || crash_point("dkg:share_staged"))
        })
        .await
        .map_err(|err| format!("storing the key share: {err}"))?
        .map_err(|err| format!("storing the key share: {err}"))?;
        crash_point("dkg:share_stored");
        self.shares = shares;
        tracing::info!(attempt = share.attempt, public_key = %share.public_key_hex(), "key generation finished; share stored");
        self.vote_due = Some((share, Instant::now()));
        self.on_tick(cancel).await?;
        Ok(None)
    }

    /// Periodic work: a due vote (after the one in flight ended, so votes are included
    /// in the order they were made), and the replacement of a stuck attempt.
    async fn on_tick(&mut self, cancel: &CancellationToken) -> Result<(), String> {
        if let Some((_, handle)) = &self.voting
            && handle.is_finished()
        {
            let (_, handle) = self.voting.take().expect("checked above");
            if !handle.await.unwrap_or(false)
                && self.vote_due.is_none()
                && let Some(latest) = self.shares.last()
            {
                self.vote_due = Some((latest.clone(), Instant::now() + VOTE_RETRY));
            }
        }
        if let Some((share, at)) = &self.vote_due
            && *at <= Instant::now()
        {
            let share = share.clone();
            self.stop_voting().await;
            self.vote_due = None;
            self.voting = Some(self.spawn_vote(share, cancel.child_token()));
        }
        if let Some((dkg, started)) = &self.current
            && !dkg.is_finished()
            && started.elapsed() > ATTEMPT_TIMEOUT
            && self.setup.mesh.connected().len() == self.peers.len()
        {
            let next = self.highest + 1;
            tracing::warn!(
                attempt = dkg.attempt(),
                next_attempt = next,
                "key generation attempt did not finish with every peer connected; starting the next"
            );
            self.setup.stats.failed(FailureKind::KeyGeneration);
            self.start_attempt(next).await?;
        }
        Ok(())
    }

    /// Submits the vote for `share`'s key; the task says whether it was acknowledged.
    fn spawn_vote(&self, share: KeyShare, cancel: CancellationToken) -> (CancellationToken, JoinHandle<bool>) {
        let (host, key, me) = (self.setup.host.clone(), self.setup.p2p_key.clone(), self.setup.me.clone());
        let token = cancel.clone();
        let handle = tokio::spawn(async move {
            let action = Action::VotePk { public_key: share.public_key_hex() };
            let transaction = SignedTransaction::sign(&me, &key, rand::rngs::OsRng.next_u64(), action);
            match host.submit_with_retries(&transaction, VOTE_ATTEMPTS, &token).await {
                Ok(_) => {
                    crash_point("dkg:voted");
                    tracing::info!(attempt = share.attempt, public_key = %share.public_key_hex(), "key voted");
                    true
                }
                Err(error) => {
                    tracing::warn!(%error, "the key vote was not acknowledged; it is sent again");
                    false
                }
            }
        });
        (cancel, handle)
    }

    /// Cancels the vote in flight and waits for its task.
    async fn stop_voting(&mut self) {
        if let Some((token, handle)) = self.voting.take() {
            token.cancel();
            let _ = handle.await;
        }
    }
}
