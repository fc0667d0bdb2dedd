//! The network file: who takes part in a sandbox network, at which threshold.
//!
//! One JSON file, given to the chain host (`--network`) and, through the contract's
//! view, seen by every node:
//!
//! ```json
//! {"threshold": 2, "participants": [
//!   {"account_id": "node0.sandbox", "p2p_addr": "127.0.0.1:3041", "p2p_public_key": "<64 hex digits>"}, ...]}
//! ```
//!
//! `public_key` (optional, 64 hex digits) starts the contract `running` under that key,
//! for a chain exercised without a key generation (benchmarks, tests of the chain
//! alone); a network that generates its key leaves it out.

use std::collections::BTreeSet;
use std::path::Path;

use ed25519_dalek::VerifyingKey;

/// One participant of the network.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Participant {
    /// Its account: the sender of its transactions.
    pub account_id: String,
    /// Where its peers reach it.
    pub p2p_addr: String,
    /// Its P2P key (Ed25519, 64 hex digits): its transactions are signed with it, and
    /// its peers accept only a connection that presents it.
    pub p2p_public_key: String,
}

/// The participants and the threshold of a sandbox network.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetworkConfig {
    /// Signers needed for a signature.
    pub threshold: u32,
    /// Every participant, in a fixed order.
    pub participants: Vec<Participant>,
    /// A public key the contract runs under from genesis, instead of one voted by the
    /// participants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

/// Why a network file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NetworkFileError {
    /// The file cannot be read.
    #[error("cannot read the network file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    /// The file is not a network description.
    #[error("network file {path}: {detail}")]
    Invalid { path: String, detail: String },
}

impl NetworkConfig {
    /// Reads and checks the network file at `path`.
    pub fn load(path: &Path) -> Result<Self, NetworkFileError> {
        let shown = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| NetworkFileError::Read { path: shown.clone(), source })?;
        let network: NetworkConfig = serde_json::from_str(&text)
            .map_err(|err| NetworkFileError::Invalid { path: shown.clone(), detail: err.to_string() })?;
        network.validate().map_err(|detail| NetworkFileError::Invalid { path: shown, detail })?;
        Ok(network)
    }

    /// Checks what the file's format cannot: a threshold between 1 and the number of
    /// participants, distinct accounts, addresses and keys, keys that are Ed25519 points.
    pub fn validate(&self) -> Result<(), String> {
        let count = self.participants.len() as u32;
        if count == 0 {
            return Err("no participants".into());
        }
        if self.threshold == 0 || self.threshold > count {
            return Err(format!("threshold {} is not between 1 and the {count} participants", self.threshold));
        }
        let mut accounts = BTreeSet::new();
        let mut addresses = BTreeSet::new();
        let mut keys = BTreeSet::new();
        for participant in &self.participants {
            participant
                .account_id
                .parse::<near_indexer_primitives::types::AccountId>()
                .map_err(|err| format!("account {:?}: {err}", participant.account_id))?;
            if !accounts.insert(&participant.account_id) {
                return Err(format!("account {} is listed twice", participant.account_id));
            }
            if !addresses.insert(&participant.p2p_addr) {
                return Err(format!("address {} is listed twice", participant.p2p_addr));
            }
            parse_public_key(&participant.p2p_public_key)
                .map_err(|err| format!("participant {}: p2p_public_key {err}", participant.account_id))?;
            if !keys.insert(&participant.p2p_public_key) {
                return Err(format!("key {} is listed twice", participant.p2p_public_key));
            }
        }
        if let Some(public_key) = &self.public_key {
            parse_public_key(public_key).map_err(|err| format!("public_key {err}"))?;
        }
        Ok(())
    }

    /// The participant with account `account_id`, if there is one.
    pub fn participant(&self, account_id: &str) -> Option<&Participant> {
        self.participants.iter().find(|participant| participant.account_id == account_id)
    }
}

/// An Ed25519 public key from its 64 hex digits.
pub fn parse_public_key(hex_key: &str) -> Result<VerifyingKey, String> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_key, &mut bytes).map_err(|err| format!("is not 64 hex digits: {err}"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|err| format!("is not an Ed25519 public key: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> String {
        hex::encode(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key().to_bytes())
    }

    fn network(threshold: u32) -> NetworkConfig {
        NetworkConfig {
            threshold,
            participants: (0..3)
                .map(|index| Participant {
                    account_id: format!("node{index}.sandbox"),
                    p2p_addr: format!("127.0.0.1:{}", 3041 + index),
                    p2p_public_key: key(index as u8 + 1),
                })
                .collect(),
            public_key: None,
        }
    }

    #[test]
    fn a_sound_network_is_accepted_and_every_flaw_is_named() {
        assert_eq!(network(2).validate(), Ok(()));
        assert!(network(0).validate().unwrap_err().contains("threshold 0"));
        assert!(network(4).validate().unwrap_err().contains("threshold 4"));
        let mut twice = network(2);
        twice.participants[2].account_id = "node0.sandbox".into();
        assert!(twice.validate().unwrap_err().contains("listed twice"));
        let mut bad_key = network(2);
        bad_key.participants[1].p2p_public_key = "zz".repeat(32);
        assert!(bad_key.validate().unwrap_err().contains("node1.sandbox"));
        let mut bad_account = network(2);
        bad_account.participants[0].account_id = "Not An Account".into();
        assert!(bad_account.validate().unwrap_err().contains("Not An Account"));
    }

    #[test]
    fn the_file_round_trips_and_a_broken_one_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("network.json");
        std::fs::write(&path, serde_json::to_string_pretty(&network(2)).unwrap()).unwrap();
        assert_eq!(NetworkConfig::load(&path).unwrap(), network(2));
        std::fs::write(&path, "{\"threshold\": 2}").unwrap();
        let error = NetworkConfig::load(&path).unwrap_err().to_string();
        assert!(error.contains("network.json") && error.contains("participants"), "{error}");
    }
}
