//! Transactions to the sandbox network's contract: what they say, how they are signed,
//! and what the host checks before it acknowledges one.
//!
//! Every transaction names its sender and carries the sender's Ed25519 public key and a
//! signature over the rest (borsh, behind a domain tag, so a signature over anything
//! else never verifies as a transaction). A participant's transactions must carry the
//! P2P key the network file lists for it; anybody else (a user asking for a signature)
//! signs with a key of its own. The id of a transaction is the SHA-256 of its signed
//! bytes and signature: it is the id of the receipt it becomes, and so the id of the
//! request a `sign` transaction makes.

use borsh::BorshSerialize;
use ed25519_dalek::{Signature, Signer, SigningKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::network::{NetworkConfig, parse_public_key};

/// What a transaction asks of the contract.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, BorshSerialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Action {
    /// A participant's vote for the network's public key (64 hex digits).
    VotePk {
        /// The key the participant's share belongs to.
        public_key: String,
    },
    /// A participant's answer to a sign request: the signature (128 hex digits) over the
    /// request's payload under the contract's public key.
    Respond {
        /// The request answered (64 hex digits).
        request_id: String,
        /// The signature.
        signature: String,
        /// Each signer's round-1 nonce commitments the signature was made with (FROST
        /// `SigningCommitments`, hex), by account: public like the signature, so anyone
        /// can check from the chain alone that R derives from them and that no nonce
        /// served two signatures. Kept, not checked, by the contract.
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        commitments: std::collections::BTreeMap<String, String>,
    },
    /// A user's request for a signature over `payload` (hex).
    Sign {
        /// The bytes to sign, hex.
        payload: String,
        /// The key derivation path.
        path: String,
    },
}

impl Action {
    /// The contract method the action calls.
    pub fn method(&self) -> &'static str {
        match self {
            Action::VotePk { .. } => "vote_pk",
            Action::Respond { .. } => "respond",
            Action::Sign { .. } => "sign",
        }
    }

    /// The call's arguments, as the contract (and the indexer) read them.
    pub fn args(&self) -> Value {
        match self {
            Action::VotePk { public_key } => json!({"public_key": public_key}),
            Action::Respond { request_id, signature, commitments } => {
                json!({"request_id": request_id, "signature": signature, "commitments": commitments})
            }
            Action::Sign { payload, path } => json!({"request": {"payload": payload, "path": path, "domain_id": 0}}),
        }
    }
}

/// A transaction as posted to the host and kept in its pool.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignedTransaction {
    /// The sender's account.
    pub sender: String,
    /// The sender's public key, 64 hex digits.
    pub public_key: String,
    /// Chosen by the sender, so that the same action sent twice is two transactions.
    pub nonce: u64,
    /// What it asks.
    pub action: Action,
    /// The sender's signature over [`SignedTransaction::signed_bytes`], 128 hex digits.
    pub signature: String,
}

/// The id of a transaction (and of its receipt).
pub type TxId = [u8; 32];

/// Why the host refuses a transaction (HTTP 400); nothing of it is kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    /// The sender is not a valid account id.
    #[error("sender {0:?} is not a valid account id")]
    Sender(String),
    /// The public key or signature is malformed.
    #[error("{0}")]
    Malformed(String),
    /// A participant's transaction signed with another key than the one listed.
    #[error("{sender} is a participant, and its transactions must be signed with the p2p key the network lists")]
    NotTheListedKey {
        /// The participant.
        sender: String,
    },
    /// The signature does not verify.
    #[error("the signature does not verify under the sender's public key")]
    BadSignature,
}

/// The domain tag in front of every signed transaction.
const DOMAIN: &[u8] = b"mpc-sandbox-transaction/v1\0";

#[derive(BorshSerialize)]
struct Unsigned<'a> {
    sender: &'a str,
    public_key: &'a str,
    nonce: u64,
    action: &'a Action,
}

impl SignedTransaction {
    /// A transaction from `sender` signed with `key`.
    pub fn sign(sender: &str, key: &SigningKey, nonce: u64, action: Action) -> Self {
        let public_key = hex::encode(key.verifying_key().to_bytes());
        let bytes = signed_bytes(sender, &public_key, nonce, &action);
        let signature = hex::encode(key.sign(&bytes).to_bytes());
        SignedTransaction { sender: sender.to_owned(), public_key, nonce, action, signature }
    }

    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        signed_bytes(&self.sender, &self.public_key, self.nonce, &self.action)
    }

    /// The transaction's id: SHA-256 of its signed bytes and signature.
    pub fn id(&self) -> TxId {
        let mut hasher = Sha256::new();
        hasher.update(self.signed_bytes());
        hasher.update(self.signature.as_bytes());
        hasher.finalize().into()
    }

    /// Checks what the host checks before it acknowledges the transaction: a valid
    /// sender, a participant's listed key, a signature that verifies (strictly).
    pub fn verify(&self, network: &NetworkConfig) -> Result<(), TransactionError> {
        self.sender
            .parse::<near_indexer_primitives::types::AccountId>()
            .map_err(|_| TransactionError::Sender(self.sender.clone()))?;
        let key = parse_public_key(&self.public_key)
            .map_err(|err| TransactionError::Malformed(format!("public_key {err}")))?;
        if let Some(participant) = network.participant(&self.sender)
            && participant.p2p_public_key != self.public_key
        {
            return Err(TransactionError::NotTheListedKey { sender: self.sender.clone() });
        }
        let signature =
            parse_signature(&self.signature).map_err(|err| TransactionError::Malformed(format!("signature {err}")))?;
        key.verify_strict(&self.signed_bytes(), &signature).map_err(|_| TransactionError::BadSignature)
    }
}

fn signed_bytes(sender: &str, public_key: &str, nonce: u64, action: &Action) -> Vec<u8> {
    let mut bytes = DOMAIN.to_vec();
    Unsigned { sender, public_key, nonce, action }.serialize(&mut bytes).expect("serialising into a Vec cannot fail");
    bytes
}

/// An Ed25519 signature from its 128 hex digits.
pub fn parse_signature(hex_signature: &str) -> Result<Signature, String> {
    let mut bytes = [0u8; 64];
    hex::decode_to_slice(hex_signature, &mut bytes).map_err(|err| format!("is not 128 hex digits: {err}"))?;
    Ok(Signature::from_bytes(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::network::Participant;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn network() -> NetworkConfig {
        NetworkConfig {
            threshold: 1,
            participants: vec![Participant {
                account_id: "node0.sandbox".into(),
                p2p_addr: "127.0.0.1:3041".into(),
                p2p_public_key: hex::encode(key(1).verifying_key().to_bytes()),
            }],
            public_key: None,
        }
    }

    #[test]
    fn a_signed_transaction_verifies_and_any_change_breaks_it() {
        let vote = SignedTransaction::sign("node0.sandbox", &key(1), 7, Action::VotePk { public_key: "ab".repeat(32) });
        assert_eq!(vote.verify(&network()), Ok(()));
        let user = SignedTransaction::sign(
            "alice.sandbox",
            &key(9),
            1,
            Action::Sign { payload: "00".into(), path: "p".into() },
        );
        assert_eq!(user.verify(&network()), Ok(()), "anybody else signs with a key of its own");

        let mut changed = vote.clone();
        changed.nonce = 8;
        assert_eq!(changed.verify(&network()), Err(TransactionError::BadSignature));
        let mut changed = vote.clone();
        changed.action = Action::VotePk { public_key: "cd".repeat(32) };
        assert_eq!(changed.verify(&network()), Err(TransactionError::BadSignature));
        let impostor =
            SignedTransaction::sign("node0.sandbox", &key(2), 7, Action::VotePk { public_key: "ab".repeat(32) });
        assert!(matches!(impostor.verify(&network()), Err(TransactionError::NotTheListedKey { .. })));
        let mut garbage = vote.clone();
        garbage.signature = "zz".into();
        assert!(matches!(garbage.verify(&network()), Err(TransactionError::Malformed(_))));
        assert_ne!(vote.id(), changed.id());
    }
}
