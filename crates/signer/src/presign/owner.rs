//! A presignature's owner: generating one with its set's members, and signing a request
//! with one.

use std::collections::BTreeMap;

use frost_ed25519::round1::{SigningCommitments, SigningNonces};
use frost_ed25519::round2::SignatureShare;
use frost_ed25519::{Identifier, SigningPackage};
use mpc_store::{Column, StoreUpdate};

use super::records::{PresignatureRecord, encode, presignature_key};
use super::{DecodedPresignature, Presignatures};
use crate::chain_view::IndexedRequest;
use crate::hooks::{crash_point, journal};
use crate::messages::{SessionId, SignerMessage};
use crate::signing::leader::{SessionError, Signed, ask_all, collect, decoded, identifier, verified_signature};
use crate::signing::{LedSession, SigningContext};

/// The session id under which a presignature's generation collects its replies.
pub fn generation_session(id: u64) -> SessionId {
    presignature_session(b'G', id)
}

/// The session id under which a presignature's use collects its replies.
pub fn use_session(id: u64) -> SessionId {
    presignature_session(b'U', id)
}

fn presignature_session(kind: u8, id: u64) -> SessionId {
    let mut session = [0u8; 16];
    session[0] = kind;
    session[8..].copy_from_slice(&id.to_be_bytes());
    session
}

/// Generates one presignature for `set` (sorted, this node included): an id, this
/// node's nonces, every member's nonces stored and their commitments collected, then
/// the presignature stored (synced) and added to the pool. Returns its id.
pub async fn generate(context: &SigningContext, set: Vec<String>) -> Result<u64, SessionError> {
    let presign = context.presign.clone();
    let id = tokio::task::spawn_blocking(move || presign.allocate())
        .await
        .map_err(|err| SessionError::Invalid(format!("allocating an id: {err}")))?
        .map_err(|err| SessionError::Invalid(format!("allocating an id: {err}")))?;
    let _generating = Ending { presign: &context.presign, id, end: Presignatures::generated };
    generate_with_id(context, id, &set).await.map(|()| id)
}

async fn generate_with_id(context: &SigningContext, id: u64, set: &[String]) -> Result<(), SessionError> {
    let members: Vec<String> = set.iter().filter(|member| **member != context.me).cloned().collect();
    let (_registration, mut replies) = LedSession::register(context, generation_session(id), 2 * members.len() + 2);
    let (nonces, own_commitments) =
        frost_ed25519::round1::commit(context.share.key_package.signing_share(), &mut rand::rngs::OsRng);
    ask_all(context, &members, &SignerMessage::PresignGenerate { id, signers: set.to_vec() }, 1).await?;
    let stored = collect(context, &mut replies, &members, 1, |member, message| match message {
        SignerMessage::PresignStored { commitments, .. } => {
            Some(decoded(context, member, "commitments", SigningCommitments::deserialize(&commitments)))
        }
        _ => None,
    })
    .await?;
    crash_point("presign:members_confirmed");
    let mut commitments: Vec<(String, Vec<u8>)> = Vec::new();
    for (identifier, member_commitments) in &stored {
        let account = context.contract.account_of(identifier).unwrap_or_default().to_owned();
        commitments.push((account, serialize(member_commitments.serialize())?));
    }
    commitments.push((context.me.clone(), serialize(own_commitments.serialize())?));
    let mut decoded_commitments = stored;
    decoded_commitments.insert(identifier(context, &context.me)?, own_commitments);
    let record =
        PresignatureRecord { id, signers: set.to_vec(), commitments, own_nonces: serialize(nonces.serialize())? };
    journal_nonces(&context.me, id, &nonces);
    let mut update = StoreUpdate::new();
    context.presign.assets().put_sealed(&mut update, Column::Presignatures, &presignature_key(id), &encode(&record));
    commit(context, update).await?;
    crash_point("presign:owner_stored");
    journal(|| format!("stored {} {id}", context.me));
    let decoded = DecodedPresignature { signers: set.to_vec(), nonces, commitments: decoded_commitments };
    context.presign.add_ready(set.to_vec(), id, decoded);
    Ok(())
}

/// Signs `request` with presignature `id` (taken out of the pool by the caller): the
/// presignature is deleted (synced) before anything derived from it leaves, then one
/// round: the signing package to the members, their shares back.
pub async fn sign_with(context: &SigningContext, request: &IndexedRequest, id: u64) -> Result<Signed, SessionError> {
    let _in_use = Ending { presign: &context.presign, id, end: Presignatures::used };
    // Made by this process: decoded already; else (made before this start) read, and
    // decoded once deleted. Either way deleted, durably, before anything derived from
    // it exists.
    let presignature = match context.presign.take_decoded(id) {
        Some(decoded) => {
            delete_before_use(context, id).await?;
            decoded
        }
        None => {
            let stored = context
                .presign
                .assets()
                .get_sealed(Column::Presignatures, &presignature_key(id))
                .map_err(|err| SessionError::Invalid(format!("reading presignature {id}: {err}")))?
                .ok_or_else(|| SessionError::Invalid(format!("presignature {id} is not in the store")))?;
            delete_before_use(context, id).await?;
            decode_stored(context, id, &stored)?
        }
    };
    let DecodedPresignature { signers, nonces, commitments } = presignature;
    let members: Vec<String> = signers.iter().filter(|member| **member != context.me).cloned().collect();
    let (_registration, mut replies) = LedSession::register(context, use_session(id), 2 * members.len() + 2);
    let package = SigningPackage::new(commitments, &context.hooks.payload_to_ask(&request.payload));
    let bytes = package.serialize().map_err(|err| SessionError::Invalid(format!("signing package: {err}")))?;
    journal(|| format!("share {} {id} {}", context.me, hex::encode(request.request_id)));
    let ask = SignerMessage::PresignSign { id, request_id: request.request_id, signing_package: bytes };
    ask_all(context, &members, &ask, 2).await?;
    let own_share = frost_ed25519::round2::sign(&package, &nonces, &context.share.key_package)
        .map_err(|err| SessionError::Invalid(format!("own share: {err}")))?;
    drop(nonces);
    let mut shares = collect(context, &mut replies, &members, 2, |member, message| match message {
        SignerMessage::PresignShare { share, .. } => {
            Some(decoded(context, member, "share", SignatureShare::deserialize(&share)))
        }
        _ => None,
    })
    .await?;
    shares.insert(identifier(context, &context.me)?, own_share);
    verified_signature(context, &package, &shares, &request.payload)
}

/// Ends the generation or the use of presignature `id` in the pool's bookkeeping when
/// its session ends, however it ends (finished, failed, or cut at a stop).
struct Ending<'a> {
    presign: &'a Presignatures,
    id: u64,
    end: fn(&Presignatures, u64),
}

impl Drop for Ending<'_> {
    fn drop(&mut self) {
        (self.end)(self.presign, self.id);
    }
}

/// Deletes presignature `id` from the store (synced): the step before its use.
async fn delete_before_use(context: &SigningContext, id: u64) -> Result<(), SessionError> {
    let mut update = StoreUpdate::new();
    update.delete(Column::Presignatures, presignature_key(id));
    commit(context, update).await?;
    crash_point("presign:owner_deleted");
    Ok(())
}

/// Decodes (and validates) a presignature read from the store.
fn decode_stored(context: &SigningContext, id: u64, stored: &[u8]) -> Result<DecodedPresignature, SessionError> {
    let record: PresignatureRecord =
        borsh::from_slice(stored).map_err(|err| SessionError::Invalid(format!("presignature {id}: {err}")))?;
    let nonces = SigningNonces::deserialize(&record.own_nonces)
        .map_err(|err| SessionError::Invalid(format!("presignature {id}'s nonces: {err}")))?;
    let mut commitments: BTreeMap<Identifier, SigningCommitments> = BTreeMap::new();
    for (account, bytes) in &record.commitments {
        let (identifier, signer_commitments) =
            decoded(context, account, "commitments", SigningCommitments::deserialize(bytes))?;
        commitments.insert(identifier, signer_commitments);
    }
    Ok(DecodedPresignature { signers: record.signers, nonces, commitments })
}

fn serialize(bytes: Result<Vec<u8>, frost_ed25519::Error>) -> Result<Vec<u8>, SessionError> {
    bytes.map_err(|err| SessionError::Invalid(format!("serialising: {err}")))
}

/// Commits `update` to the asset store (synced) on a blocking thread.
pub(crate) async fn commit(context: &SigningContext, update: StoreUpdate) -> Result<(), SessionError> {
    let assets = context.presign.assets().clone();
    tokio::task::spawn_blocking(move || assets.commit(update))
        .await
        .map_err(|err| SessionError::Invalid(format!("asset store: {err}")))?
        .map_err(|err| SessionError::Invalid(format!("asset store: {err}")))
}

/// Journals the secret nonces made for (owner, id) (test builds), for the test that
/// scans the asset store's files for them.
pub(crate) fn journal_nonces(owner: &str, id: u64, nonces: &SigningNonces) {
    journal(|| {
        format!(
            "nonces {owner} {id} {} {}",
            hex::encode(nonces.hiding().serialize()),
            hex::encode(nonces.binding().serialize())
        )
    });
}
