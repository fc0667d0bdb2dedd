//! A member of other owners' presignatures: storing its nonces for one, signing with
//! them once, and deleting the ones their owner no longer has.

use std::collections::BTreeSet;

use frost_ed25519::round1::SigningNonces;
use frost_ed25519::{Identifier, SigningPackage};
use mpc_store::{Column, StoreUpdate};

use super::MAX_HELD_PER_OWNER;
use super::owner::{commit, journal_nonces};
use super::records::{HeldNonceRecord, encode, held_nonce_key};
use crate::hooks::{crash_point, journal};
use crate::messages::SignerMessage;
use crate::signing::SigningContext;
use crate::signing::member::{signing_set, wait_for_request};

/// Makes and stores (synced) this node's nonces for `owner`'s presignature `id` of
/// `signers`; answers with their commitments, or why not.
pub async fn store_nonces(
    context: &SigningContext,
    owner: &str,
    id: u64,
    signers: Vec<String>,
) -> Result<SignerMessage, String> {
    if !context.protocols.accepting() {
        return Err("this node is stopping".into());
    }
    signing_set(context, owner, &signers)?;
    let presign = &context.presign;
    if id < presign.dead_below(owner) {
        return Err(format!("id {id} is below the ids {owner} said are dead"));
    }
    match presign.holds(owner, id) {
        (true, _) => return Err(format!("this node already holds nonces for {owner}'s presignature {id}")),
        (false, held) if held >= MAX_HELD_PER_OWNER => {
            return Err(format!("this node holds {held} nonces for {owner} already"));
        }
        _ => {}
    }
    let (nonces, commitments) =
        frost_ed25519::round1::commit(context.share.key_package.signing_share(), &mut rand::rngs::OsRng);
    let commitments = commitments.serialize().map_err(|err| err.to_string())?;
    let mut signers = signers;
    signers.sort();
    let record = HeldNonceRecord {
        signers,
        nonces: nonces.serialize().map_err(|err| err.to_string())?,
        commitments: commitments.clone(),
    };
    journal_nonces(owner, id, &nonces);
    let mut update = StoreUpdate::new();
    presign.assets().put_sealed(&mut update, Column::HeldNonces, &held_nonce_key(owner, id), &encode(&record));
    commit(context, update).await.map_err(|err| err.to_string())?;
    presign.add_held(owner, id, nonces);
    crash_point("presign:member_stored");
    Ok(SignerMessage::PresignStored { id, commitments })
}

/// Signs with the nonces held for `owner`'s presignature `id`: only a request this
/// node's chain indexed with the package's payload, only the package of the stored set
/// with this node's stored commitments; the nonces are deleted (synced) before the
/// share leaves. Answers with the share, or why not.
pub async fn sign_presigned(
    context: &SigningContext,
    owner: &str,
    id: u64,
    request_id: [u8; 32],
    package: &[u8],
) -> Result<SignerMessage, String> {
    let presign = &context.presign;
    let key = held_nonce_key(owner, id);
    let unknown = || format!("unknown presignature {id} of {owner} (used, collected, or never stored)");
    if !presign.holds(owner, id).0 {
        return Err(unknown());
    }
    let stored =
        presign.assets().get_sealed(Column::HeldNonces, &key).map_err(|err| err.to_string())?.ok_or_else(unknown)?;
    let record: HeldNonceRecord = borsh::from_slice(&stored).map_err(|err| format!("held nonces {id}: {err}"))?;
    let package = SigningPackage::deserialize(package).map_err(|err| format!("signing package: {err}"))?;
    let indexed = wait_for_request(context, &request_id).await?;
    if package.message() != &indexed.payload {
        return Err(format!("the payload differs from request {} on this node's chain", hex::encode(request_id)));
    }
    if context.chain.is_answered(&request_id).map_err(|err| err.to_string())? {
        return Err(format!("request {} is answered already", hex::encode(request_id)));
    }
    let set: BTreeSet<Identifier> =
        record.signers.iter().filter_map(|signer| context.contract.identifier_of(signer)).collect();
    let named: BTreeSet<Identifier> = package.signing_commitments().keys().copied().collect();
    if named != set {
        return Err("the signing package's signers are not the presignature's set".into());
    }
    let me = context.contract.identifier_of(&context.me).ok_or("this node has no identifier")?;
    // Compared as bytes: the stored commitment is this node's own, already valid.
    let in_package = package.signing_commitment(&me).map(|commitment| commitment.serialize());
    if !matches!(in_package, Some(Ok(bytes)) if bytes == record.commitments) {
        return Err("the signing package does not hold this node's stored commitment".into());
    }
    // Used once: out of the index first (a concurrent request for the same id fails
    // here), then out of the store, durably, before the share exists.
    let nonces = match presign.claim_held(owner, id).ok_or_else(unknown)? {
        Some(nonces) => nonces,
        None => SigningNonces::deserialize(&record.nonces).map_err(|err| format!("held nonces {id}: {err}"))?,
    };
    let mut update = StoreUpdate::new();
    update.delete(Column::HeldNonces, &key);
    commit(context, update).await.map_err(|err| err.to_string())?;
    crash_point("presign:member_deleted");
    journal(|| format!("share {owner} {id} {}", hex::encode(request_id)));
    let share = frost_ed25519::round2::sign(&package, &nonces, &context.share.key_package)
        .map_err(|err| format!("signing: {err}"))?;
    Ok(SignerMessage::PresignShare { id, share: share.serialize() })
}

/// Deletes (synced) the nonces held for `owner` below `below` that its inventory does
/// not list as `live`: the owner no longer has those presignatures. Returns how many.
pub async fn collect_orphans(context: &SigningContext, owner: &str, live: &[u64], below: u64) -> Result<usize, String> {
    let presign = &context.presign;
    presign.raise_dead_below(owner, below);
    let orphans = presign.orphans_of(owner, live, below);
    if orphans.is_empty() {
        return Ok(0);
    }
    let mut update = StoreUpdate::new();
    for id in &orphans {
        update.delete(Column::HeldNonces, held_nonce_key(owner, *id));
    }
    commit(context, update).await.map_err(|err| err.to_string())?;
    journal(|| format!("collected {owner} {orphans:?}"));
    crash_point("presign:orphans_deleted");
    tracing::info!(%owner, deleted = orphans.len(), "deleted the nonces of presignatures their owner no longer has");
    Ok(orphans.len())
}
