//! How presignatures and held nonces are stored: keys in clear, values borsh-encoded
//! and sealed by the asset store.

use borsh::{BorshDeserialize, BorshSerialize};

/// A presignature, as its owner stores it under its id in `Presignatures`.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct PresignatureRecord {
    /// Its id (the owner is this node).
    pub id: u64,
    /// The signing set, owner included, sorted.
    pub signers: Vec<String>,
    /// Every signer's round-1 commitments (`SigningCommitments`), by account.
    pub commitments: Vec<(String, Vec<u8>)>,
    /// The owner's own secret nonces (`SigningNonces`).
    pub own_nonces: Vec<u8>,
}

/// The nonces a member holds for another owner's presignature, under (owner, id) in
/// `HeldNonces`.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct HeldNonceRecord {
    /// The presignature's signing set, sorted.
    pub signers: Vec<String>,
    /// The member's secret nonces (`SigningNonces`).
    pub nonces: Vec<u8>,
    /// Their commitments (`SigningCommitments`), as sent to the owner.
    pub commitments: Vec<u8>,
}

/// Key of a presignature in `Presignatures`: its id, big-endian (so in id order).
pub fn presignature_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// Key of held nonces in `HeldNonces`: the owner's account (length first), then the id
/// big-endian, so one owner's nonces are one prefix, in id order.
pub fn held_nonce_key(owner: &str, id: u64) -> Vec<u8> {
    let mut key = owner_prefix(owner);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// The prefix of one owner's held nonces.
pub fn owner_prefix(owner: &str) -> Vec<u8> {
    let mut key = vec![owner.len() as u8];
    key.extend_from_slice(owner.as_bytes());
    key
}

/// The (owner, id) of a held nonce's key.
pub fn parse_held_nonce_key(key: &[u8]) -> Option<(String, u64)> {
    let (&length, rest) = key.split_first()?;
    let (owner, id) = rest.split_at_checked(usize::from(length))?;
    Some((String::from_utf8(owner.to_vec()).ok()?, u64::from_be_bytes(id.try_into().ok()?)))
}

/// The id of a presignature's key.
pub fn parse_presignature_key(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// Encodes a record.
pub fn encode(record: &impl BorshSerialize) -> Vec<u8> {
    borsh::to_vec(record).expect("serialising into a Vec cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_one_owner_is_one_prefix() {
        let key = held_nonce_key("node1.sandbox", 42);
        assert_eq!(parse_held_nonce_key(&key), Some(("node1.sandbox".into(), 42)));
        assert!(key.starts_with(&owner_prefix("node1.sandbox")));
        assert!(!key.starts_with(&owner_prefix("node1.sandbox2")));
        assert!(held_nonce_key("a", 1) < held_nonce_key("a", 256), "id order within an owner");
        assert_eq!(parse_presignature_key(&presignature_key(7)), Some(7));
        assert_eq!(parse_held_nonce_key(&[200, 1]), None);
    }
}
