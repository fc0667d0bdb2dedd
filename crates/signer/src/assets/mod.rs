//! The asset store: a third RocksDB store in the home (`<home>/assets`) for the secrets
//! that are used once, presignatures and the nonces this node holds for its peers'.
//!
//! Through the store crate like the node's other stores: the instance tracker (its
//! holders named, its close counted by the shutdown's wait), crash-atomic creation, a
//! schema version under the migration runner. What is particular to it:
//!
//! - **Every write synced** (`sync_writes`): a delete that is not durable could bring a
//!   used nonce back after a power loss.
//! - **A damaged log is refused** (the store crate's default): RocksDB's point-in-time
//!   recovery would drop every write after the damage, deletes included. A torn last
//!   record from a kill is tolerated, as for every store.
//! - **Every value sealed** with the secrets key (AES-256-GCM), bound to its column and
//!   key as associated data: a value moved under another key does not open. Keys (ids,
//!   owners) are in clear.
//! - **A key check** written with the store: a sealed constant that the open decrypts
//!   before anything else, so a wrong or missing secrets key stops the node (exit 3)
//!   before a byte is read or written.

pub mod allocator;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mpc_store::migration::{MigrationSettings, Schema, open_migrated_with_initial};
use mpc_store::{Column, Store, StoreError, StoreOptions, StoreUpdate};

use crate::secrets::SecretsKey;

/// The asset store's directory in the home.
pub const ASSET_STORE_DIR: &str = "assets";
/// Tracker group of the asset store.
pub const ASSET_STORE_GROUP: &str = "signer";
/// The asset store's schema version.
pub const ASSET_SCHEMA_VERSION: u32 = 1;
/// Key in `Misc` of the sealed key check.
const KEY_CHECK_KEY: &[u8] = b"assets/key_check";
/// What the key check holds.
const KEY_CHECK_PLAINTEXT: &[u8] = b"mpc-node asset store";

/// Why the asset store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AssetStoreError {
    /// The store cannot be opened, read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The secrets key does not open the store's key check.
    #[error(
        "asset store {} was written with another secrets key (its key check does not decrypt); give the secrets key it was written with (MPC_SECRETS_KEY, MPC_SECRETS_KEY_FILE or <home>/secrets-key). Nothing was changed",
        path.display()
    )]
    WrongKey {
        /// The store.
        path: PathBuf,
    },
    /// A value does not open or does not decode.
    #[error("asset store {}: {what} is damaged: {detail}", path.display())]
    Damaged {
        /// The store.
        path: PathBuf,
        /// Which value.
        what: String,
        /// What is wrong.
        detail: String,
    },
}

/// The asset store's path in `home`.
pub fn asset_store_path(home: &Path) -> PathBuf {
    home.join(ASSET_STORE_DIR)
}

/// The asset store's options: every write synced, a damaged log refused.
pub fn asset_store_options() -> StoreOptions {
    StoreOptions { sync_writes: true, ..StoreOptions::new("assets", ASSET_STORE_GROUP) }
}

/// The asset store's layout history (no step yet).
pub fn asset_schema() -> Schema {
    Schema::new(ASSET_SCHEMA_VERSION, Vec::new())
}

/// A key and its opened value.
pub type OpenedEntry = (Vec<u8>, Vec<u8>);

/// The open asset store and the key its values are sealed with. Cheap to clone.
#[derive(Clone)]
pub struct AssetStore {
    store: Arc<Store>,
    secrets: Arc<SecretsKey>,
}

impl std::fmt::Debug for AssetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssetStore").field("path", &self.store.path()).finish_non_exhaustive()
    }
}

impl AssetStore {
    /// Opens (creating it with its key check at the first start) the asset store of
    /// `home`, and checks that `secrets` is its key.
    pub fn open(home: &Path, secrets: Arc<SecretsKey>) -> Result<AssetStore, AssetStoreError> {
        let path = asset_store_path(home);
        // The key is checked on a read-only open first: a wrong key leaves every file of
        // the store as it was (a read-write open starts a new log and manifest).
        drop(Self::open_read_only(home, secrets.clone())?);
        let initial = || {
            let mut update = StoreUpdate::new();
            update.put(Column::Misc, KEY_CHECK_KEY, seal(&secrets, Column::Misc, KEY_CHECK_KEY, KEY_CHECK_PLAINTEXT));
            update
        };
        let (store, _) = open_migrated_with_initial(
            &path,
            &asset_store_options(),
            &asset_schema(),
            &MigrationSettings::default(),
            initial,
        )?;
        let assets = AssetStore { store, secrets };
        assets.check_key()?;
        Ok(assets)
    }

    /// Opens the asset store of `home` for reading only (`mpc-node check`), checking
    /// `secrets` against it; `None` when the home has none.
    pub fn open_read_only(home: &Path, secrets: Arc<SecretsKey>) -> Result<Option<AssetStore>, AssetStoreError> {
        let path = asset_store_path(home);
        if !path.exists() {
            return Ok(None);
        }
        let store = Store::open_read_only(&path, &asset_store_options())?;
        let assets = AssetStore { store, secrets };
        assets.check_key()?;
        Ok(Some(assets))
    }

    fn check_key(&self) -> Result<(), AssetStoreError> {
        let sealed =
            self.store.get(Column::Misc, KEY_CHECK_KEY)?.ok_or_else(|| self.damaged("the key check", "missing"))?;
        match self.secrets.open(&associated_data(Column::Misc, KEY_CHECK_KEY), &sealed) {
            Ok(plaintext) if plaintext == KEY_CHECK_PLAINTEXT => Ok(()),
            Ok(_) => Err(self.damaged("the key check", "another value")),
            Err(_) => Err(AssetStoreError::WrongKey { path: self.store.path().to_path_buf() }),
        }
    }

    fn damaged(&self, what: &str, detail: impl Into<String>) -> AssetStoreError {
        AssetStoreError::Damaged { path: self.store.path().to_path_buf(), what: what.to_owned(), detail: detail.into() }
    }

    /// The store, for a named holder or a raw read (the allocator's mark).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Adds to `update` the sealed `plaintext` under `key` in `column`.
    pub fn put_sealed(&self, update: &mut StoreUpdate, column: Column, key: &[u8], plaintext: &[u8]) {
        update.put(column, key, seal(&self.secrets, column, key, plaintext));
    }

    /// The value under `key` in `column`, opened.
    pub fn get_sealed(&self, column: Column, key: &[u8]) -> Result<Option<Vec<u8>>, AssetStoreError> {
        match self.store.get(column, key)? {
            None => Ok(None),
            Some(sealed) => self.open_value(column, key, &sealed).map(Some),
        }
    }

    /// Every entry of `column` whose key starts with `prefix`, opened, in key order.
    pub fn scan_sealed(&self, column: Column, prefix: &[u8]) -> Result<Vec<OpenedEntry>, AssetStoreError> {
        let mut entries = Vec::new();
        for entry in self.store.iter(column, Some(prefix))? {
            let (key, sealed) = entry?;
            if !key.starts_with(prefix) {
                break;
            }
            let plaintext = self.open_value(column, &key, &sealed)?;
            entries.push((key.to_vec(), plaintext));
        }
        Ok(entries)
    }

    fn open_value(&self, column: Column, key: &[u8], sealed: &[u8]) -> Result<Vec<u8>, AssetStoreError> {
        self.secrets
            .open(&associated_data(column, key), sealed)
            .map_err(|err| self.damaged(&format!("{} {}", column.name(), hex::encode(key)), err.to_string()))
    }

    /// Applies `update` as one batch, synced before this returns.
    pub fn commit(&self, update: StoreUpdate) -> Result<(), AssetStoreError> {
        self.store.commit_durably(update).map_err(AssetStoreError::Store)
    }
}

/// What a value is bound to: its column and key.
fn associated_data(column: Column, key: &[u8]) -> Vec<u8> {
    let mut data = b"mpc-node/asset/".to_vec();
    data.extend_from_slice(column.name().as_bytes());
    data.push(0);
    data.extend_from_slice(key);
    data
}

fn seal(secrets: &SecretsKey, column: Column, key: &[u8], plaintext: &[u8]) -> Vec<u8> {
    secrets.seal(&associated_data(column, key), plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_open_only_under_their_key_and_a_wrong_secrets_key_is_refused_untouched() {
        let home = tempfile::tempdir().unwrap();
        let assets = AssetStore::open(home.path(), Arc::new(SecretsKey::for_tests(1))).unwrap();
        let mut update = StoreUpdate::new();
        assets.put_sealed(&mut update, Column::HeldNonces, b"k1", b"nonce bytes");
        assets.commit(update).unwrap();
        assert_eq!(assets.get_sealed(Column::HeldNonces, b"k1").unwrap().unwrap(), b"nonce bytes");
        let moved = assets.store().get(Column::HeldNonces, b"k1").unwrap().unwrap();
        let mut update = StoreUpdate::new();
        update.put(Column::HeldNonces, b"k2", moved);
        assets.commit(update).unwrap();
        assert!(matches!(assets.get_sealed(Column::HeldNonces, b"k2"), Err(AssetStoreError::Damaged { .. })));
        drop(assets);

        let before = std::fs::read_dir(asset_store_path(home.path())).unwrap().count();
        let wrong = AssetStore::open(home.path(), Arc::new(SecretsKey::for_tests(2))).unwrap_err();
        assert!(matches!(wrong, AssetStoreError::WrongKey { .. }), "{wrong}");
        assert_eq!(std::fs::read_dir(asset_store_path(home.path())).unwrap().count(), before);
        let reopened = AssetStore::open(home.path(), Arc::new(SecretsKey::for_tests(1))).unwrap();
        assert_eq!(reopened.scan_sealed(Column::HeldNonces, b"k1").unwrap().len(), 1);
    }
}
