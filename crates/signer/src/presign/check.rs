//! `mpc-node check` of the asset store: every value opens with the secrets key, every
//! record decodes, every presignature's id is below the allocator's mark, and every
//! presignature holds this node's own nonces (one without them could never be used).

use std::path::Path;
use std::sync::Arc;

use frost_ed25519::round1::{SigningCommitments, SigningNonces};
use mpc_store::{Column, StoreError};

use super::records::{HeldNonceRecord, PresignatureRecord, parse_held_nonce_key, parse_presignature_key};
use crate::assets::allocator::stored_mark;
use crate::assets::{AssetStore, AssetStoreError, asset_store_path};
use crate::secrets::SecretsKey;

/// What the check of the asset store found.
#[derive(Debug, Default)]
pub struct AssetCheck {
    /// Whether the home has an asset store.
    pub present: bool,
    /// Presignatures this node owns.
    pub presignatures: usize,
    /// Nonces it holds for others.
    pub held_nonces: usize,
    /// The allocator's mark.
    pub allocator_mark: Option<u64>,
    /// Every inconsistency found.
    pub problems: Vec<String>,
}

/// Checks the asset store of `home` (read-only; nothing is created).
pub fn check_assets(home: &Path) -> AssetCheck {
    let mut check = AssetCheck { present: asset_store_path(home).exists(), ..AssetCheck::default() };
    if !check.present {
        return check;
    }
    let secrets = match SecretsKey::load(home) {
        Ok(Some(secrets)) => Arc::new(secrets),
        Ok(None) => {
            check.problems.push(
                "asset store: no secrets key (MPC_SECRETS_KEY, MPC_SECRETS_KEY_FILE or <home>/secrets-key) to open it"
                    .into(),
            );
            return check;
        }
        Err(error) => {
            check.problems.push(format!("asset store: {error}"));
            return check;
        }
    };
    let assets = match AssetStore::open_read_only(home, secrets) {
        Ok(Some(assets)) => assets,
        Ok(None) => return check,
        Err(AssetStoreError::Store(StoreError::DamagedLog { damage, .. })) => {
            check.problems.push(format!(
                "asset store: {damage}; `mpc-node start` refuses it (a lost delete would bring a used nonce back): restore it from a backup"
            ));
            return check;
        }
        Err(error) => {
            check.problems.push(format!("asset store: {error}"));
            return check;
        }
    };
    if let Err(error) = check_records(&assets, &mut check) {
        check.problems.push(format!("asset store: {error}"));
    }
    check
}

fn check_records(assets: &AssetStore, check: &mut AssetCheck) -> Result<(), AssetStoreError> {
    check.allocator_mark = stored_mark(assets)?;
    let mark = check.allocator_mark.unwrap_or(1);
    for (key, value) in assets.scan_sealed(Column::Presignatures, &[])? {
        check.presignatures += 1;
        let id = parse_presignature_key(&key);
        match borsh::from_slice::<PresignatureRecord>(&value) {
            Err(error) => check.problems.push(format!("presignature {id:?} does not decode: {error}")),
            Ok(record) => {
                if id != Some(record.id) {
                    check.problems.push(format!("presignature {} is stored under {id:?}", record.id));
                }
                if record.id >= mark {
                    check.problems.push(format!("presignature {} is not below the allocator's mark {mark}", record.id));
                }
                if SigningNonces::deserialize(&record.own_nonces).is_err() {
                    check.problems.push(format!("presignature {} holds no usable nonces of this node", record.id));
                }
                if record.commitments.len() != record.signers.len()
                    || record.commitments.iter().any(|(_, bytes)| SigningCommitments::deserialize(bytes).is_err())
                {
                    check.problems.push(format!("presignature {}: its commitments are not its set's", record.id));
                }
            }
        }
    }
    for (key, value) in assets.scan_sealed(Column::HeldNonces, &[])? {
        check.held_nonces += 1;
        let held = parse_held_nonce_key(&key);
        let usable = borsh::from_slice::<HeldNonceRecord>(&value)
            .ok()
            .is_some_and(|record| SigningNonces::deserialize(&record.nonces).is_ok());
        if held.is_none() || !usable {
            check.problems.push(format!("held nonces {held:?} do not decode"));
        }
    }
    Ok(())
}
