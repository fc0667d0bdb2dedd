//! What participants say to each other over the mesh, borsh-encoded inside a mesh data
//! frame. Every message of a signing session names the session; key generation
//! messages name their attempt. Packages travel as the FROST crate's own serialisation
//! and are decoded (and checked) only by the step that uses them.

use borsh::{BorshDeserialize, BorshSerialize};

/// The id of one signing session, chosen at random by its leader.
pub type SessionId = [u8; 16];

/// One message between participants.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum SignerMessage {
    /// Key generation, round 1: the sender's commitment, to every participant.
    DkgRound1 {
        /// The attempt it belongs to.
        attempt: u64,
        /// `frost_ed25519::keys::dkg::round1::Package`.
        package: Vec<u8>,
    },
    /// Key generation, round 2: the sender's secret share for the receiver (the mesh's
    /// TLS keeps it secret), with a digest of every round-1 package the sender used, so
    /// a participant that showed two others different commitments is caught.
    DkgRound2 {
        /// The attempt it belongs to.
        attempt: u64,
        /// SHA-256 over every participant's round-1 package, in identifier order.
        round1_digest: [u8; 32],
        /// `frost_ed25519::keys::dkg::round2::Package`.
        package: Vec<u8>,
    },
    /// A leader asks a member to take part in signing a request.
    CommitRequest {
        /// The session.
        session: SessionId,
        /// The request, as its chain names it.
        request_id: [u8; 32],
        /// The bytes to sign: the member signs only if its own chain has the request with
        /// these bytes.
        payload: Vec<u8>,
        /// The signing set, leader included.
        signers: Vec<String>,
    },
    /// A member's round-1 commitment for a session.
    Commitment {
        /// The session.
        session: SessionId,
        /// `frost_ed25519::round1::SigningCommitments`.
        commitments: Vec<u8>,
    },
    /// The leader sends the signing package (every signer's commitment and the message).
    ShareRequest {
        /// The session.
        session: SessionId,
        /// `frost_ed25519::SigningPackage`.
        signing_package: Vec<u8>,
    },
    /// A member's signature share.
    Share {
        /// The session.
        session: SessionId,
        /// `frost_ed25519::round2::SignatureShare`.
        share: Vec<u8>,
    },
    /// A member will not take part in a session, and why.
    Refused {
        /// The session.
        session: SessionId,
        /// Why, for the leader's log.
        reason: String,
    },
    /// A presignature's owner asks a member to make and store its nonces for it.
    PresignGenerate {
        /// The presignature's id (the owner is the sender).
        id: u64,
        /// The signing set, owner included.
        signers: Vec<String>,
    },
    /// A member stored its nonces for a presignature (durably), and sends its
    /// commitments.
    PresignStored {
        /// The presignature.
        id: u64,
        /// `frost_ed25519::round1::SigningCommitments`.
        commitments: Vec<u8>,
    },
    /// The owner signs a request with a presignature: the signing package made of the
    /// presignature's commitments and the request's payload.
    PresignSign {
        /// The presignature (the owner is the sender).
        id: u64,
        /// The request.
        request_id: [u8; 32],
        /// `frost_ed25519::SigningPackage`.
        signing_package: Vec<u8>,
    },
    /// A member's signature share from its stored nonces (deleted durably first).
    PresignShare {
        /// The presignature.
        id: u64,
        /// `frost_ed25519::round2::SignatureShare`.
        share: Vec<u8>,
    },
    /// A member will not generate or use a presignature, and why.
    PresignRefused {
        /// The presignature.
        id: u64,
        /// Why, for the owner's log.
        reason: String,
    },
    /// An owner's inventory for one member: which of its presignatures with that member
    /// it still holds. The member deletes every nonce it holds for this owner below
    /// `below` that is not `live` (orphans of generations that never finished, of
    /// presignatures used or lost).
    PresignInventory {
        /// Ids of the owner's presignatures whose set includes the receiver.
        live: Vec<u64>,
        /// Every id of this owner below it is either live or dead.
        below: u64,
    },
}

impl SignerMessage {
    /// The message's bytes.
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("serialising into a Vec cannot fail")
    }

    /// A message from its bytes.
    pub fn decode(bytes: &[u8]) -> Result<SignerMessage, String> {
        SignerMessage::try_from_slice(bytes).map_err(|err| format!("not a signer message: {err}"))
    }

    /// The message's kind, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            SignerMessage::DkgRound1 { .. } => "dkg_round1",
            SignerMessage::DkgRound2 { .. } => "dkg_round2",
            SignerMessage::CommitRequest { .. } => "commit_request",
            SignerMessage::Commitment { .. } => "commitment",
            SignerMessage::ShareRequest { .. } => "share_request",
            SignerMessage::Share { .. } => "share",
            SignerMessage::Refused { .. } => "refused",
            SignerMessage::PresignGenerate { .. } => "presign_generate",
            SignerMessage::PresignStored { .. } => "presign_stored",
            SignerMessage::PresignSign { .. } => "presign_sign",
            SignerMessage::PresignShare { .. } => "presign_share",
            SignerMessage::PresignRefused { .. } => "presign_refused",
            SignerMessage::PresignInventory { .. } => "presign_inventory",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_round_trips_and_garbage_is_an_error_not_a_panic() {
        let message = SignerMessage::CommitRequest {
            session: [1; 16],
            request_id: [2; 32],
            payload: b"pay".to_vec(),
            signers: vec!["a".into(), "b".into()],
        };
        assert_eq!(SignerMessage::decode(&message.encode()).unwrap(), message);
        assert!(SignerMessage::decode(&[0xff, 1, 2]).is_err());
        assert!(SignerMessage::decode(&[2, 0xff, 0xff, 0xff, 0xff]).is_err(), "a huge length is refused");
        assert!(SignerMessage::decode(&[]).is_err());
    }
}
