//! The contract's sign requests as the host stores them: by (height, index in block),
//! with an index by request id, each with its accepted response once there is one.
//! `GET /v1/requests` reads them by height range.

use mpc_store::{Column, Store, StoreError, StoreResult, StoreUpdate};

use super::contract::RequestRecord;

/// Longest height range one `/v1/requests` query may ask for.
pub const MAX_REQUEST_RANGE: u64 = 10_000;

/// Key of a request: height then index, both big-endian, so keys sort in chain order.
fn request_key(height: u64, index: u32) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&height.to_be_bytes());
    key[8..].copy_from_slice(&index.to_be_bytes());
    key
}

/// The stored request with id `request_id` (64 hex digits), if any.
pub fn request_by_id(store: &Store, request_id: &str) -> StoreResult<Option<RequestRecord>> {
    let mut id = [0u8; 32];
    if hex::decode_to_slice(request_id, &mut id).is_err() {
        return Ok(None);
    }
    let Some(key) = store.get(Column::ContractRequestIds, id)? else { return Ok(None) };
    store.get_json(Column::ContractRequests, key)
}

/// Puts `record`, the `index`-th request of its block, into `update`; a record already
/// stored (a request that got its response) keeps its key.
pub(crate) fn put_request(update: &mut StoreUpdate, record: &RequestRecord, index: u32) {
    let key = request_key(record.height, index);
    let mut id = [0u8; 32];
    // Request ids are made by the host from 32-byte hashes: always 64 hex digits.
    hex::decode_to_slice(&record.request_id, &mut id).expect("a request id is 64 hex digits");
    update.put_json(Column::ContractRequests, key, record);
    update.put(Column::ContractRequestIds, id, key);
}

/// The key a stored request with id `request_id` is under, to update it in place.
pub(crate) fn stored_index(store: &Store, request_id: &str) -> StoreResult<Option<u32>> {
    let mut id = [0u8; 32];
    if hex::decode_to_slice(request_id, &mut id).is_err() {
        return Ok(None);
    }
    Ok(store
        .get(Column::ContractRequestIds, id)?
        .and_then(|key| key.get(8..12)?.try_into().ok())
        .map(u32::from_be_bytes))
}

/// The requests of heights `from..=to`, in chain order.
pub fn requests_in(store: &Store, from: u64, to: u64) -> StoreResult<Vec<RequestRecord>> {
    let mut records = Vec::new();
    for entry in store.iter(Column::ContractRequests, Some(&request_key(from, 0)))? {
        let (key, value) = entry?;
        let height = key.get(..8).and_then(|height| height.try_into().ok()).map(u64::from_be_bytes);
        if height.is_none_or(|height| height > to) {
            break;
        }
        records.push(serde_json::from_slice(&value).map_err(|err| StoreError::Decode {
            path: store.path().to_path_buf(),
            what: "contract request".into(),
            detail: err.to_string(),
        })?);
    }
    Ok(records)
}
