//! One attempt of FROST distributed key generation (`frost_ed25519::keys::dkg` parts 1
//! to 3) as a state machine: messages in, messages out, a key package at the end. No
//! I/O here; `keys` drives it over the mesh and stores what it yields.
//!
//! Every participant takes part (the key needs all n round-1 commitments). Round 1 is
//! a broadcast the mesh cannot make consistent by itself, so each round-2 message
//! carries a digest of every round-1 package its sender used: a participant that showed
//! two peers different commitments is caught before anyone stores a share.

use std::collections::BTreeMap;

use frost_ed25519::Identifier;
use frost_ed25519::keys::dkg::{self, round1, round2};
use frost_ed25519::keys::{KeyPackage, PublicKeyPackage};
use sha2::{Digest, Sha256};

use crate::messages::SignerMessage;

/// Messages to send: (peer account, message).
pub type Outgoing = Vec<(String, SignerMessage)>;

/// Why an attempt cannot finish; a new attempt is the remedy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DkgFault {
    /// A peer sent something that breaks the protocol.
    #[error("{peer}: {detail}")]
    Peer {
        /// The peer's account.
        peer: String,
        /// What it did.
        detail: String,
    },
    /// This side's own step failed.
    #[error("{0}")]
    Local(String),
}

/// One attempt of key generation, from this participant's side.
pub struct DkgAttempt {
    attempt: u64,
    me: Identifier,
    peers: BTreeMap<Identifier, String>,
    round1_secret: Option<round1::SecretPackage>,
    my_round1: round1::Package,
    round1: BTreeMap<Identifier, round1::Package>,
    round2_secret: Option<round2::SecretPackage>,
    my_round2: BTreeMap<Identifier, round2::Package>,
    digest: Option<[u8; 32]>,
    round2: BTreeMap<Identifier, (round2::Package, [u8; 32])>,
    finished: bool,
}

impl DkgAttempt {
    /// Starts attempt `attempt` as participant `me` among `peers` (every other
    /// participant, by identifier) at `threshold`; returns it and its round-1 messages.
    pub fn start(
        attempt: u64,
        me: Identifier,
        peers: BTreeMap<Identifier, String>,
        threshold: u16,
    ) -> Result<(DkgAttempt, Outgoing), DkgFault> {
        let count = peers.len() as u16 + 1;
        let (secret, package) = dkg::part1(me, count, threshold, rand::rngs::OsRng)
            .map_err(|err| DkgFault::Local(format!("round 1: {err}")))?;
        let dkg = DkgAttempt {
            attempt,
            me,
            peers,
            round1_secret: Some(secret),
            my_round1: package,
            round1: BTreeMap::new(),
            round2_secret: None,
            my_round2: BTreeMap::new(),
            digest: None,
            round2: BTreeMap::new(),
            finished: false,
        };
        let outgoing = dkg.peers.values().filter_map(|peer| Some((peer.clone(), dkg.round1_message()?))).collect();
        Ok((dkg, outgoing))
    }

    /// The attempt's number.
    pub fn attempt(&self) -> u64 {
        self.attempt
    }

    /// Whether it yielded its key package.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn round1_message(&self) -> Option<SignerMessage> {
        let package = self.my_round1.serialize().ok()?;
        Some(SignerMessage::DkgRound1 { attempt: self.attempt, package })
    }

    fn round2_message(&self, peer: &Identifier) -> Option<SignerMessage> {
        let package = self.my_round2.get(peer)?.serialize().ok()?;
        Some(SignerMessage::DkgRound2 { attempt: self.attempt, round1_digest: self.digest?, package })
    }

    fn peer_identifier(&self, account: &str) -> Option<Identifier> {
        self.peers.iter().find(|(_, peer)| peer.as_str() == account).map(|(identifier, _)| *identifier)
    }

    /// What `peer` needs from this side again after a reconnect: the round-1 package and,
    /// once computed, its round-2 package. Receivers ignore what they already have.
    pub fn resend_to(&self, peer: &str) -> Outgoing {
        let Some(identifier) = self.peer_identifier(peer) else { return Vec::new() };
        [self.round1_message(), self.round2_message(&identifier)]
            .into_iter()
            .flatten()
            .map(|message| (peer.to_owned(), message))
            .collect()
    }

    /// Takes `peer`'s round-1 package; once every peer's is in, computes round 2 and
    /// returns its messages.
    pub fn on_round1(&mut self, peer: &str, package: &[u8]) -> Result<Outgoing, DkgFault> {
        let fault = |detail: String| DkgFault::Peer { peer: peer.to_owned(), detail };
        let identifier = self.peer_identifier(peer).ok_or_else(|| fault("not a participant of this attempt".into()))?;
        let package = round1::Package::deserialize(package).map_err(|err| fault(format!("round-1 package: {err}")))?;
        match self.round1.get(&identifier) {
            Some(known) if *known == package => return Ok(Vec::new()),
            Some(_) => return Err(fault("sent two different round-1 packages in one attempt".into())),
            None => {}
        }
        self.round1.insert(identifier, package);
        if self.round1.len() < self.peers.len() {
            return Ok(Vec::new());
        }
        let Some(secret) = self.round1_secret.take() else { return Ok(Vec::new()) };
        let (secret, packages) = dkg::part2(secret, &self.round1).map_err(|err| self.blame(err, "round 2"))?;
        self.round2_secret = Some(secret);
        self.my_round2 = packages;
        self.digest = Some(self.round1_digest());
        Ok(self
            .peers
            .iter()
            .filter_map(|(identifier, peer)| Some((peer.clone(), self.round2_message(identifier)?)))
            .collect())
    }

    /// Takes `peer`'s round-2 package and the digest of the round-1 packages it used.
    pub fn on_round2(&mut self, peer: &str, digest: [u8; 32], package: &[u8]) -> Result<(), DkgFault> {
        let fault = |detail: String| DkgFault::Peer { peer: peer.to_owned(), detail };
        let identifier = self.peer_identifier(peer).ok_or_else(|| fault("not a participant of this attempt".into()))?;
        let package = round2::Package::deserialize(package).map_err(|err| fault(format!("round-2 package: {err}")))?;
        match self.round2.get(&identifier) {
            Some(known) if *known == (package.clone(), digest) => Ok(()),
            Some(_) => Err(fault("sent two different round-2 packages in one attempt".into())),
            None => {
                self.round2.insert(identifier, (package, digest));
                Ok(())
            }
        }
    }

    /// The key package and the group's public key package, once every round-2 package is
    /// in and every peer used the same round-1 packages as this side; `None` until then
    /// and after it was returned once.
    pub fn try_finish(&mut self) -> Result<Option<(KeyPackage, PublicKeyPackage)>, DkgFault> {
        if self.finished || self.round2.len() < self.peers.len() {
            return Ok(None);
        }
        let (Some(secret), Some(digest)) = (&self.round2_secret, self.digest) else { return Ok(None) };
        for (identifier, (_, theirs)) in &self.round2 {
            if *theirs != digest {
                let peer = self.peers.get(identifier).cloned().unwrap_or_default();
                return Err(DkgFault::Peer {
                    peer,
                    detail: "used other round-1 packages than this side (someone sent different commitments)".into(),
                });
            }
        }
        let packages: BTreeMap<Identifier, round2::Package> =
            self.round2.iter().map(|(identifier, (package, _))| (*identifier, package.clone())).collect();
        let (key_package, public_key_package) =
            dkg::part3(secret, &self.round1, &packages).map_err(|err| self.blame(err, "round 3"))?;
        self.finished = true;
        Ok(Some((key_package, public_key_package)))
    }

    /// SHA-256 over every participant's round-1 package (this side's included), in
    /// identifier order.
    fn round1_digest(&self) -> [u8; 32] {
        let mut all: BTreeMap<Identifier, &round1::Package> = self.round1.iter().map(|(id, p)| (*id, p)).collect();
        all.insert(self.me, &self.my_round1);
        let mut hasher = Sha256::new();
        for (identifier, package) in all {
            hasher.update(identifier.serialize());
            let bytes = package.serialize().unwrap_or_default();
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        }
        hasher.finalize().into()
    }

    /// A FROST error of a step, blamed on the peer it names when it names one.
    fn blame(&self, error: frost_ed25519::Error, step: &str) -> DkgFault {
        match error.culprits().first().and_then(|culprit| self.peers.get(culprit)) {
            Some(peer) => DkgFault::Peer { peer: peer.clone(), detail: format!("{step}: {error}") },
            None => DkgFault::Local(format!("{step}: {error}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts() -> Vec<String> {
        (0..3).map(|index| format!("node{index}.sandbox")).collect()
    }

    fn identifier(index: usize) -> Identifier {
        Identifier::try_from(index as u16 + 1).unwrap()
    }

    fn peers_of(me: usize) -> BTreeMap<Identifier, String> {
        accounts().into_iter().enumerate().filter(|(index, _)| *index != me).map(|(i, a)| (identifier(i), a)).collect()
    }

    fn index_of(account: &str) -> usize {
        accounts().iter().position(|known| known == account).unwrap()
    }

    /// Delivers every message until none is left; returns each participant's result.
    fn run(dkgs: &mut [DkgAttempt], mut queue: Vec<(usize, String, SignerMessage)>) -> Vec<Result<(), DkgFault>> {
        let mut results: Vec<Result<(), DkgFault>> = vec![Ok(()); dkgs.len()];
        while let Some((from, to, message)) = queue.pop() {
            let to = index_of(&to);
            let sender = accounts()[from].clone();
            let outcome = match message {
                SignerMessage::DkgRound1 { package, .. } => dkgs[to].on_round1(&sender, &package),
                SignerMessage::DkgRound2 { round1_digest, package, .. } => {
                    dkgs[to].on_round2(&sender, round1_digest, &package).map(|()| Vec::new())
                }
                other => panic!("unexpected {other:?}"),
            };
            match outcome {
                Ok(out) => queue.extend(out.into_iter().map(|(peer, message)| (to, peer, message))),
                Err(fault) => results[to] = Err(fault),
            }
        }
        results
    }

    fn start_all() -> (Vec<DkgAttempt>, Vec<(usize, String, SignerMessage)>) {
        let mut dkgs = Vec::new();
        let mut queue = Vec::new();
        for me in 0..3 {
            let (dkg, out) = DkgAttempt::start(1, identifier(me), peers_of(me), 2).unwrap();
            dkgs.push(dkg);
            queue.extend(out.into_iter().map(|(peer, message)| (me, peer, message)));
        }
        (dkgs, queue)
    }

    #[test]
    fn three_participants_agree_on_one_key_and_every_pair_of_shares_signs_under_it() {
        let (mut dkgs, queue) = start_all();
        assert!(run(&mut dkgs, queue).iter().all(Result::is_ok));
        let finished: Vec<(KeyPackage, PublicKeyPackage)> =
            dkgs.iter_mut().map(|dkg| dkg.try_finish().unwrap().expect("finished")).collect();
        assert!(dkgs.iter_mut().all(|dkg| dkg.try_finish().unwrap().is_none()), "yielded once");
        let group = finished[0].1.verifying_key();
        assert!(finished.iter().all(|(_, public)| public.verifying_key() == group));
        let key = ed25519_dalek::VerifyingKey::from_bytes(&group.serialize().unwrap().try_into().unwrap()).unwrap();
        for pair in [[0, 1], [0, 2], [1, 2]] {
            let message = format!("signed by {pair:?}");
            let mut nonces = BTreeMap::new();
            let mut commitments = BTreeMap::new();
            for index in pair {
                let (nonce, commitment) =
                    frost_ed25519::round1::commit(finished[index].0.signing_share(), &mut rand::rngs::OsRng);
                nonces.insert(identifier(index), nonce);
                commitments.insert(identifier(index), commitment);
            }
            let package = frost_ed25519::SigningPackage::new(commitments, message.as_bytes());
            let shares: BTreeMap<_, _> = pair
                .iter()
                .map(|index| {
                    let id = identifier(*index);
                    (id, frost_ed25519::round2::sign(&package, &nonces[&id], &finished[*index].0).unwrap())
                })
                .collect();
            let signature = frost_ed25519::aggregate(&package, &shares, &finished[0].1).unwrap();
            let bytes: [u8; 64] = signature.serialize().unwrap().try_into().unwrap();
            key.verify_strict(message.as_bytes(), &ed25519_dalek::Signature::from_bytes(&bytes)).unwrap();
        }
    }

    #[test]
    fn a_participant_that_shows_two_peers_different_commitments_is_caught_before_any_share_is_stored() {
        let (mut dkgs, mut queue) = start_all();
        // node0 sends node2 the round-1 package of another attempt of its own.
        let (_, other) = DkgAttempt::start(1, identifier(0), peers_of(0), 2).unwrap();
        let forged = other.into_iter().find(|(peer, _)| peer == "node2.sandbox").unwrap().1;
        for (from, to, message) in queue.iter_mut() {
            if *from == 0 && to == "node2.sandbox" {
                *message = forged.clone();
            }
        }
        assert!(run(&mut dkgs, queue).iter().all(Result::is_ok), "each round on its own looks fine");
        let outcomes: Vec<_> = dkgs.iter_mut().map(DkgAttempt::try_finish).collect();
        assert!(outcomes.iter().all(Result::is_err), "nobody finishes: {outcomes:?}");
    }

    #[test]
    fn garbage_and_repeats_are_faults_or_ignored_never_panics() {
        let (mut dkgs, _) = start_all();
        assert!(matches!(dkgs[0].on_round1("node1.sandbox", b"garbage"), Err(DkgFault::Peer { .. })));
        assert!(matches!(dkgs[0].on_round1("stranger.sandbox", b""), Err(DkgFault::Peer { .. })));
        assert!(matches!(dkgs[0].on_round2("node1.sandbox", [0; 32], &[1, 2, 3]), Err(DkgFault::Peer { .. })));
        let resend = dkgs[1].resend_to("node0.sandbox");
        let SignerMessage::DkgRound1 { package, .. } = &resend[0].1 else { panic!() };
        assert!(dkgs[0].on_round1("node1.sandbox", package).unwrap().is_empty());
        assert!(dkgs[0].on_round1("node1.sandbox", package).unwrap().is_empty(), "a repeat is ignored");
        assert!(dkgs[0].try_finish().unwrap().is_none());
    }
}
