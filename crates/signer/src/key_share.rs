//! This node's shares of the network's key, as the key generation left them: sealed
//! with the secrets key and written crash-atomically to `<home>/key-share`.
//!
//! Why shares, plural: while the contract initializes, an attempt that finished here
//! may still be superseded by a later one (a peer was killed before it finished). A
//! node never knows whether every participant voted for the earlier key before that, so
//! it keeps every finished attempt's share until the contract runs, then keeps only the
//! one of the contract's key. Overwriting an earlier share could lose the key the
//! contract ends up running under.
//!
//! The write goes through a staging file (`key-share.tmp`: written, synced, renamed into
//! place, directory synced), so at every instant the file is absent, the previous
//! share, or the whole new one; the staging file is never read. A share that is
//! damaged, cannot be decrypted or does not belong to the contract's key is an error the
//! node stops on (exit 3), and nothing is deleted: an operator may still restore the
//! right secrets key or file.

use std::path::{Path, PathBuf};

use borsh::{BorshDeserialize, BorshSerialize};
use frost_ed25519::keys::{KeyPackage, PublicKeyPackage};

use crate::secrets::SecretsKey;

/// The file in the home that holds the key share.
pub const KEY_SHARE_FILE: &str = "key-share";
/// What a key share is sealed bound to.
const ASSOCIATED_DATA: &[u8] = b"mpc-node/key-share";
/// The record's format version.
const FORMAT_VERSION: u32 = 1;

/// Why the key share cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyShareError {
    /// The file cannot be read or written.
    #[error("key share {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The secrets key does not open the file.
    #[error(
        "key share {} {source}; give the secrets key it was written with (MPC_SECRETS_KEY, MPC_SECRETS_KEY_FILE or <home>/secrets-key). Nothing was deleted",
        path.display()
    )]
    Undecryptable {
        /// The file.
        path: PathBuf,
        /// The cipher's verdict.
        source: crate::secrets::Undecryptable,
    },
    /// The file opens but does not hold a key share.
    #[error("key share {} is damaged: {detail}. Nothing was deleted", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// No share belongs to the contract's key.
    #[error(
        "key share {} holds no share of the contract's key {contract_key} (its latest is of {share_key}); this home's secrets are not this network's. Nothing was deleted",
        path.display()
    )]
    NotTheContractsKey {
        /// The file.
        path: PathBuf,
        /// The share's group key.
        share_key: String,
        /// The contract's.
        contract_key: String,
    },
    /// The contract runs, but this node has no share of its key.
    #[error(
        "the contract runs under public key {contract_key}, but this node has no key share ({} is missing); restore it from a backup",
        path.display()
    )]
    Missing {
        /// Where the share was looked for.
        path: PathBuf,
        /// The contract's key.
        contract_key: String,
    },
}

/// One share as sealed in the file.
#[derive(BorshSerialize, BorshDeserialize)]
struct KeyShareRecord {
    attempt: u64,
    key_package: Vec<u8>,
    public_key_package: Vec<u8>,
}

/// What is sealed in the file.
#[derive(BorshSerialize, BorshDeserialize)]
struct KeyShareFile {
    version: u32,
    shares: Vec<KeyShareRecord>,
}

/// This node's share of the network's key.
#[derive(Clone)]
pub struct KeyShare {
    /// The key generation attempt it came from.
    pub attempt: u64,
    /// This node's secret share and the group's verifying key.
    pub key_package: KeyPackage,
    /// Every participant's verifying share and the group's key.
    pub public_key_package: PublicKeyPackage,
}

impl std::fmt::Debug for KeyShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyShare")
            .field("attempt", &self.attempt)
            .field("public_key", &self.public_key_hex())
            .finish_non_exhaustive()
    }
}

/// Path of the key shares in `home`.
pub fn key_share_path(home: &Path) -> PathBuf {
    home.join(KEY_SHARE_FILE)
}

impl KeyShare {
    /// The network's public key (32 bytes, as Ed25519 verifiers take it).
    pub fn public_key(&self) -> [u8; 32] {
        let bytes = self.public_key_package.verifying_key().serialize().unwrap_or_default();
        bytes.try_into().unwrap_or([0; 32])
    }

    /// [`KeyShare::public_key`] as 64 hex digits (how the contract shows it).
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.public_key())
    }

    fn record(&self) -> Result<KeyShareRecord, String> {
        Ok(KeyShareRecord {
            attempt: self.attempt,
            key_package: self.key_package.serialize().map_err(|err| err.to_string())?,
            public_key_package: self.public_key_package.serialize().map_err(|err| err.to_string())?,
        })
    }

    fn from_record(record: KeyShareRecord) -> Result<KeyShare, String> {
        let key_package = KeyPackage::deserialize(&record.key_package).map_err(|err| err.to_string())?;
        let public_key_package =
            PublicKeyPackage::deserialize(&record.public_key_package).map_err(|err| err.to_string())?;
        if key_package.verifying_key() != public_key_package.verifying_key() {
            return Err(format!(
                "the share of attempt {} has a secret share and a public key package of different keys",
                record.attempt
            ));
        }
        Ok(KeyShare { attempt: record.attempt, key_package, public_key_package })
    }
}

/// The share of `contract_key` (64 hex digits) among `shares`.
pub fn share_of_key(home: &Path, shares: &[KeyShare], contract_key: &str) -> Result<KeyShare, KeyShareError> {
    let contract_key = contract_key.to_ascii_lowercase();
    if let Some(share) = shares.iter().find(|share| share.public_key_hex() == contract_key) {
        return Ok(share.clone());
    }
    match shares.last() {
        Some(latest) => Err(KeyShareError::NotTheContractsKey {
            path: key_share_path(home),
            share_key: latest.public_key_hex(),
            contract_key,
        }),
        None => Err(KeyShareError::Missing { path: key_share_path(home), contract_key }),
    }
}

/// Seals `shares` and writes them crash-atomically; returns once they are durable.
/// `on_staged` runs between the staging file's sync and its rename.
pub fn write_key_shares(
    home: &Path,
    secrets: &SecretsKey,
    shares: &[KeyShare],
    on_staged: impl FnOnce(),
) -> Result<(), KeyShareError> {
    let path = key_share_path(home);
    let records = shares
        .iter()
        .map(KeyShare::record)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|detail| KeyShareError::Damaged { path: path.clone(), detail })?;
    let file = KeyShareFile { version: FORMAT_VERSION, shares: records };
    let plaintext = borsh::to_vec(&file).expect("serialising into a Vec cannot fail");
    let sealed = secrets.seal(ASSOCIATED_DATA, &plaintext);
    mpc_store::directories::write_file_durably(&path, &sealed, 0o600, on_staged)
        .map_err(|source| KeyShareError::Io { path: path.clone(), source })
}

/// The shares in `home`, oldest attempt first (none without the file).
pub fn load_key_shares(home: &Path, secrets: &SecretsKey) -> Result<Vec<KeyShare>, KeyShareError> {
    let path = key_share_path(home);
    let sealed = match std::fs::read(&path) {
        Ok(sealed) => sealed,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(KeyShareError::Io { path, source }),
    };
    let plaintext = secrets
        .open(ASSOCIATED_DATA, &sealed)
        .map_err(|source| KeyShareError::Undecryptable { path: path.clone(), source })?;
    let damaged = |detail: String| KeyShareError::Damaged { path: path.clone(), detail };
    let file = KeyShareFile::try_from_slice(&plaintext).map_err(|err| damaged(err.to_string()))?;
    if file.version != FORMAT_VERSION {
        return Err(damaged(format!("format version {} (this binary reads {FORMAT_VERSION})", file.version)));
    }
    file.shares.into_iter().map(KeyShare::from_record).collect::<Result<Vec<_>, _>>().map_err(damaged)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use frost_ed25519::Identifier;
    use frost_ed25519::keys::IdentifierList;

    use super::*;

    /// Shares of one key for `count` participants at `threshold`, from a trusted dealer
    /// (tests only; the node's shares come from the key generation).
    pub(crate) fn dealt_shares(count: u16, threshold: u16) -> Vec<KeyShare> {
        let (shares, public_key_package) =
            frost_ed25519::keys::generate_with_dealer(count, threshold, IdentifierList::Default, rand::rngs::OsRng)
                .unwrap();
        let shares: BTreeMap<Identifier, _> = shares;
        shares
            .into_values()
            .map(|share| KeyShare {
                attempt: 1,
                key_package: KeyPackage::try_from(share).unwrap(),
                public_key_package: public_key_package.clone(),
            })
            .collect()
    }

    #[test]
    fn shares_round_trip_and_the_contracts_key_picks_one_or_is_refused() {
        let home = tempfile::tempdir().unwrap();
        let secrets = SecretsKey::for_tests(7);
        assert!(load_key_shares(home.path(), &secrets).unwrap().is_empty());
        let first = dealt_shares(3, 2).remove(0);
        let second = KeyShare { attempt: 2, ..dealt_shares(3, 2).remove(0) };
        write_key_shares(home.path(), &secrets, &[first.clone(), second.clone()], || {}).unwrap();
        let loaded = load_key_shares(home.path(), &secrets).unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[0].key_package, first.key_package);
        let picked = share_of_key(home.path(), &loaded, &first.public_key_hex().to_uppercase()).unwrap();
        assert_eq!(picked.attempt, 1);
        assert_eq!(share_of_key(home.path(), &loaded, &second.public_key_hex()).unwrap().attempt, 2);
        let other = dealt_shares(3, 2).remove(0);
        assert!(matches!(
            share_of_key(home.path(), &loaded, &other.public_key_hex()),
            Err(KeyShareError::NotTheContractsKey { .. })
        ));
        assert!(matches!(share_of_key(home.path(), &[], &other.public_key_hex()), Err(KeyShareError::Missing { .. })));
    }

    #[test]
    fn a_share_sealed_with_another_key_or_damaged_is_refused_and_kept() {
        let home = tempfile::tempdir().unwrap();
        let secrets = SecretsKey::for_tests(7);
        write_key_shares(home.path(), &secrets, &dealt_shares(3, 2)[..1], || {}).unwrap();
        let wrong_key = load_key_shares(home.path(), &SecretsKey::for_tests(8)).unwrap_err();
        assert!(matches!(wrong_key, KeyShareError::Undecryptable { .. }), "{wrong_key}");
        let path = key_share_path(home.path());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[30] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let damaged = load_key_shares(home.path(), &secrets).unwrap_err();
        assert!(matches!(damaged, KeyShareError::Undecryptable { .. }), "{damaged}");
        assert!(path.exists(), "nothing is deleted");
    }

    #[test]
    fn a_leftover_staging_file_is_never_read() {
        let home = tempfile::tempdir().unwrap();
        let secrets = SecretsKey::for_tests(7);
        std::fs::write(mpc_store::directories::sibling(&key_share_path(home.path()), ".tmp"), b"half").unwrap();
        assert!(load_key_shares(home.path(), &secrets).unwrap().is_empty());
        let share = dealt_shares(3, 2).remove(1);
        write_key_shares(home.path(), &secrets, std::slice::from_ref(&share), || {}).unwrap();
        assert_eq!(load_key_shares(home.path(), &secrets).unwrap()[0].public_key(), share.public_key());
    }
}
