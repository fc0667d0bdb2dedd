//! The MPC contract as the chain host runs it: `Initializing` until every participant
//! voted the same public key, then `Running { public_key }`, answering each sign request
//! with at most one response that verifies under that key.
//!
//! Pure rules: [`MpcContract::apply`] takes a transaction and the requests it may touch
//! and says what changes, or why the transaction fails (it is then included with a
//! failed outcome that changes nothing). Storing is `produce`'s.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;
use serde_json::{Value, json};

use super::network::{NetworkConfig, Participant, parse_public_key};
use super::transaction::{Action, SignedTransaction, parse_signature};

/// Where the contract is in its life.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ContractPhase {
    /// Waiting for every participant's vote for one public key.
    Initializing {
        /// Each participant's latest vote.
        votes: BTreeMap<String, String>,
    },
    /// Serving sign requests under `public_key`.
    Running {
        /// The network's public key, 64 hex digits.
        public_key: String,
    },
}

/// The contract's whole state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MpcContract {
    threshold: u32,
    participants: Vec<Participant>,
    phase: ContractPhase,
}

/// A sign request as the contract keeps it (and `/v1/requests` shows it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RequestRecord {
    /// The request's id (its receipt's), 64 hex digits.
    pub request_id: String,
    /// The block that carried it.
    pub height: u64,
    /// The bytes to sign, hex.
    pub payload: String,
    /// The key derivation path.
    pub path: String,
    /// The accepted response, once there is one.
    pub response: Option<ResponseRecord>,
}

/// The one accepted response to a request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResponseRecord {
    /// The signature, 128 hex digits (R then s).
    pub signature: String,
    /// The participant whose `respond` was accepted.
    pub responder: String,
    /// The block that carried it.
    pub height: u64,
    /// The signers' nonce commitments, as the response gave them (hex, by account).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub commitments: BTreeMap<String, String>,
}

/// What an accepted transaction changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The contract's state changed (a vote, the start of `Running`).
    StateChanged,
    /// A request now has its response (the updated record).
    Answered(RequestRecord),
    /// A new sign request with this payload and path.
    NewRequest {
        /// Hex.
        payload: String,
        /// The derivation path.
        path: String,
    },
}

/// Longest payload a sign request may carry, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 1024;

impl MpcContract {
    /// The contract at genesis: `Initializing`, or `Running` when the network file gives
    /// the key.
    pub fn genesis(network: &NetworkConfig) -> Self {
        let phase = match &network.public_key {
            Some(public_key) => ContractPhase::Running { public_key: public_key.clone() },
            None => ContractPhase::Initializing { votes: BTreeMap::new() },
        };
        MpcContract { threshold: network.threshold, participants: network.participants.clone(), phase }
    }

    /// The public view (`GET /v1/contract`, and the `state` view method every node
    /// indexes): `{"state", "threshold", "participants", "public_key"}`.
    pub fn view(&self) -> Value {
        let (state, public_key) = match &self.phase {
            ContractPhase::Initializing { .. } => ("initializing", Value::Null),
            ContractPhase::Running { public_key } => ("running", json!(public_key)),
        };
        json!({
            "state": state,
            "threshold": self.threshold,
            "participants": self.participants,
            "public_key": public_key,
        })
    }

    /// Whether the contract serves sign requests.
    pub fn is_running(&self) -> bool {
        matches!(self.phase, ContractPhase::Running { .. })
    }

    fn running_key(&self) -> Result<VerifyingKey, String> {
        match &self.phase {
            ContractPhase::Running { public_key } => parse_public_key(public_key),
            ContractPhase::Initializing { .. } => Err("the contract is not running yet".into()),
        }
    }

    fn is_participant(&self, account: &str) -> bool {
        self.participants.iter().any(|participant| participant.account_id == account)
    }

    /// Applies `transaction` at `height`; `request` finds a request by id (as it stands
    /// in this block). `Err` is why it fails: included, it changes nothing.
    pub fn apply(
        &mut self,
        transaction: &SignedTransaction,
        height: u64,
        request: impl Fn(&str) -> Option<RequestRecord>,
    ) -> Result<Effect, String> {
        match &transaction.action {
            Action::VotePk { public_key } => self.vote(&transaction.sender, public_key),
            Action::Respond { request_id, signature, commitments } => {
                if !self.is_participant(&transaction.sender) {
                    return Err(format!("{} is not a participant", transaction.sender));
                }
                let key = self.running_key()?;
                let mut record = request(request_id).ok_or_else(|| format!("no request {request_id}"))?;
                if record.response.is_some() {
                    return Err(format!("request {request_id} is answered already"));
                }
                let payload = hex::decode(&record.payload).map_err(|err| format!("request payload: {err}"))?;
                let parsed = parse_signature(signature)?;
                key.verify_strict(&payload, &parsed).map_err(|_| {
                    format!("the signature does not verify under the contract's key over request {request_id}")
                })?;
                record.response = Some(ResponseRecord {
                    signature: signature.clone(),
                    responder: transaction.sender.clone(),
                    height,
                    commitments: commitments.clone(),
                });
                Ok(Effect::Answered(record))
            }
            Action::Sign { payload, path } => {
                self.running_key()?;
                let bytes = hex::decode(payload).map_err(|err| format!("payload is not hex: {err}"))?;
                if bytes.is_empty() || bytes.len() > MAX_PAYLOAD_BYTES {
                    return Err(format!("payload of {} bytes (1 to {MAX_PAYLOAD_BYTES})", bytes.len()));
                }
                Ok(Effect::NewRequest { payload: payload.to_ascii_lowercase(), path: path.clone() })
            }
        }
    }

    fn vote(&mut self, sender: &str, public_key: &str) -> Result<Effect, String> {
        if !self.is_participant(sender) {
            return Err(format!("{sender} is not a participant"));
        }
        parse_public_key(public_key)?;
        let participants = self.participants.len();
        let ContractPhase::Initializing { votes } = &mut self.phase else {
            return Err("the contract is running; votes are counted only while it initializes".into());
        };
        votes.insert(sender.to_owned(), public_key.to_ascii_lowercase());
        let agreed = votes.len() == participants && votes.values().all(|vote| *vote == public_key.to_ascii_lowercase());
        if agreed {
            self.phase = ContractPhase::Running { public_key: public_key.to_ascii_lowercase() };
        }
        Ok(Effect::StateChanged)
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;

    fn participant_key(index: u8) -> SigningKey {
        SigningKey::from_bytes(&[index + 1; 32])
    }

    fn network() -> NetworkConfig {
        NetworkConfig {
            threshold: 2,
            participants: (0..3)
                .map(|index| Participant {
                    account_id: format!("node{index}.sandbox"),
                    p2p_addr: format!("127.0.0.1:{}", 3041 + u32::from(index)),
                    p2p_public_key: hex::encode(participant_key(index).verifying_key().to_bytes()),
                })
                .collect(),
            public_key: None,
        }
    }

    fn from(index: u8, action: Action) -> SignedTransaction {
        SignedTransaction::sign(&format!("node{index}.sandbox"), &participant_key(index), 0, action)
    }

    fn no_request(_: &str) -> Option<RequestRecord> {
        None
    }

    #[test]
    fn the_contract_runs_once_every_participant_voted_the_same_key_and_not_before() {
        let group_key = SigningKey::from_bytes(&[42; 32]);
        let group = hex::encode(group_key.verifying_key().to_bytes());
        let other = hex::encode(SigningKey::from_bytes(&[43; 32]).verifying_key().to_bytes());
        let mut contract = MpcContract::genesis(&network());
        assert_eq!(contract.view()["state"], "initializing");
        for (index, key) in [(0, &group), (1, &other), (2, &group)] {
            contract.apply(&from(index, Action::VotePk { public_key: key.clone() }), 5, no_request).unwrap();
        }
        assert_eq!(contract.view()["state"], "initializing", "disagreeing votes keep it initializing");
        let user =
            SignedTransaction::sign("alice.sandbox", &group_key, 0, Action::VotePk { public_key: group.clone() });
        assert!(contract.apply(&user, 6, no_request).unwrap_err().contains("not a participant"));
        contract.apply(&from(1, Action::VotePk { public_key: group.clone() }), 6, no_request).unwrap();
        assert_eq!(contract.view()["state"], "running");
        assert_eq!(contract.view()["public_key"], group);
        let late = contract.apply(&from(0, Action::VotePk { public_key: other }), 7, no_request);
        assert!(late.unwrap_err().contains("running"), "a vote once running changes nothing");
    }

    #[test]
    fn a_response_is_accepted_once_and_only_when_it_verifies_over_the_request_payload() {
        let group_key = SigningKey::from_bytes(&[42; 32]);
        let network =
            NetworkConfig { public_key: Some(hex::encode(group_key.verifying_key().to_bytes())), ..network() };
        let mut contract = MpcContract::genesis(&network);
        let payload = b"pay me";
        let request = RequestRecord {
            request_id: "aa".repeat(32),
            height: 3,
            payload: hex::encode(payload),
            path: "m/0".into(),
            response: None,
        };
        let lookup = |id: &str| (id == request.request_id).then(|| request.clone());
        let respond = |index: u8, signature: &[u8]| {
            from(
                index,
                Action::Respond {
                    request_id: request.request_id.clone(),
                    signature: hex::encode(signature),
                    commitments: Default::default(),
                },
            )
        };
        let good = group_key.sign(payload).to_bytes();
        let wrong_message = group_key.sign(b"something else").to_bytes();
        let wrong_key = participant_key(0).sign(payload).to_bytes();
        for bad in [wrong_message, wrong_key] {
            assert!(contract.apply(&respond(0, &bad), 4, lookup).unwrap_err().contains("does not verify"));
        }
        let unknown = from(
            0,
            Action::Respond {
                request_id: "bb".repeat(32),
                signature: hex::encode(good),
                commitments: Default::default(),
            },
        );
        assert!(contract.apply(&unknown, 4, lookup).unwrap_err().contains("no request"));
        let Effect::Answered(answered) = contract.apply(&respond(1, &good), 4, lookup).unwrap() else { panic!() };
        assert_eq!(answered.response.as_ref().unwrap().responder, "node1.sandbox");
        let again = contract.apply(&respond(2, &good), 5, |_| Some(answered.clone()));
        assert!(again.unwrap_err().contains("answered already"), "a second valid response changes nothing");
    }
}
