//! What the signing side knows of the chain: only what this node's own indexer wrote to
//! its node store. The contract's state (participants, threshold, key), the sign
//! requests, and which of them have an accepted response. Nothing here asks a peer or
//! the chain host: a follower signs only what its own chain shows.

use std::sync::Arc;

use mpc_chain::host::Participant;
use mpc_migrations::layout::{BlockEncoding, CONTRACT_STATE_MONITOR, Hash32, SignRequestRecord, monitor_key};
use mpc_store::{Column, Store, StoreHolder, StoreResult};

/// Where the contract is, as this node's chain shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContractState {
    /// Waiting for the participants' votes on a key.
    Initializing,
    /// Serving sign requests under `public_key`.
    Running,
}

/// The contract's `state` view, as the indexer's monitor recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractView {
    /// Initializing or running.
    pub state: ContractState,
    /// Signers needed for a signature.
    pub threshold: u16,
    /// Every participant, in the contract's order (which gives each its FROST
    /// identifier: position + 1).
    pub participants: Vec<Participant>,
    /// The network's key (64 hex digits) once running.
    pub public_key: Option<String>,
}

#[derive(serde::Deserialize)]
struct RawView {
    state: String,
    threshold: u16,
    participants: Vec<Participant>,
    public_key: Option<String>,
}

impl ContractView {
    /// The participant whose P2P key is `key`, if any.
    pub fn participant_with_key(&self, key: &[u8; 32]) -> Option<&Participant> {
        let key = hex::encode(key);
        self.participants.iter().find(|participant| participant.p2p_public_key == key)
    }

    /// The FROST identifier of `account` (its position in the contract, from 1).
    pub fn identifier_of(&self, account: &str) -> Option<frost_ed25519::Identifier> {
        let position = self.participants.iter().position(|participant| participant.account_id == account)?;
        frost_ed25519::Identifier::try_from(position as u16 + 1).ok()
    }

    /// The account of FROST identifier `identifier`.
    pub fn account_of(&self, identifier: &frost_ed25519::Identifier) -> Option<&str> {
        self.participants
            .iter()
            .enumerate()
            .find(|(position, _)| frost_ed25519::Identifier::try_from(*position as u16 + 1).ok() == Some(*identifier))
            .map(|(_, participant)| participant.account_id.as_str())
    }
}

/// A sign request waiting for a signature, with its place in the node store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedRequest {
    /// Its key in `SignRequests`: (height, index), in chain order.
    pub key: [u8; 12],
    /// The request's id.
    pub request_id: [u8; 32],
    /// The bytes to sign.
    pub payload: Vec<u8>,
    /// The block that carried it.
    pub height: u64,
}

/// Reads the node store; a named holder of it, so a stalled shutdown names the signer.
#[derive(Clone)]
pub struct ChainView {
    store: Arc<StoreHolder>,
}

impl ChainView {
    /// A view over `store`, held as `holder`.
    pub fn new(store: &Arc<Store>, holder: &str) -> ChainView {
        ChainView { store: Arc::new(store.holder(holder)) }
    }

    /// The contract's state, once the monitor has seen it in the shape of a chain
    /// host's contract (an embedded chain's contract has no participants to sign with).
    pub fn contract(&self) -> StoreResult<Option<ContractView>> {
        let Some(bytes) = self.store.get(Column::Misc, monitor_key(CONTRACT_STATE_MONITOR))? else { return Ok(None) };
        let Ok(raw) = serde_json::from_slice::<RawView>(&bytes) else { return Ok(None) };
        let state = match raw.state.as_str() {
            "initializing" => ContractState::Initializing,
            "running" => ContractState::Running,
            _ => return Ok(None),
        };
        Ok(Some(ContractView {
            state,
            threshold: raw.threshold,
            participants: raw.participants,
            public_key: raw.public_key,
        }))
    }

    /// The request `request_id`, if this node's chain has it: through the index by
    /// request id, or, in a schema without that index (v2, the previous release), by a
    /// scan of the requests from the newest.
    pub fn request(&self, request_id: &[u8; 32]) -> StoreResult<Option<IndexedRequest>> {
        if !BlockEncoding::CURRENT.request_id_index {
            return self.scan_for_request(request_id);
        }
        let Some(key) = self.store.get(Column::SignRequestsById, request_id)? else { return Ok(None) };
        let Some(record) = self.store.get_json::<SignRequestRecord>(Column::SignRequests, &key)? else {
            return Ok(None);
        };
        let Ok(key) = <[u8; 12]>::try_from(key.as_slice()) else { return Ok(None) };
        Ok(indexed_request(key, record))
    }

    /// The request `request_id` found by reading the requests newest first (a signer
    /// asks about recent ones).
    fn scan_for_request(&self, request_id: &[u8; 32]) -> StoreResult<Option<IndexedRequest>> {
        for entry in self.store.iter_reverse(Column::SignRequests)? {
            let (key, value) = entry?;
            let Ok(key) = <[u8; 12]>::try_from(&*key) else { continue };
            if let Ok(record) = serde_json::from_slice::<SignRequestRecord>(&value)
                && record.request_id.0 == *request_id
            {
                return Ok(indexed_request(key, record));
            }
        }
        Ok(None)
    }

    /// Whether the request has an accepted response on this node's chain.
    pub fn is_answered(&self, request_id: &[u8; 32]) -> StoreResult<bool> {
        Ok(self.store.get(Column::SignResponses, request_id)?.is_some())
    }

    /// Up to `limit` requests after `after` (from the first with `None`), in chain
    /// order, answered or not.
    pub fn requests_after(&self, after: Option<[u8; 12]>, limit: usize) -> StoreResult<Vec<IndexedRequest>> {
        let mut requests = Vec::new();
        for entry in self.store.iter(Column::SignRequests, after.as_ref().map(|key| key.as_slice()))? {
            let (key, value) = entry?;
            let Ok(key) = <[u8; 12]>::try_from(&*key) else { continue };
            if Some(key) == after {
                continue;
            }
            if let Ok(record) = serde_json::from_slice::<SignRequestRecord>(&value)
                && let Some(request) = indexed_request(key, record)
            {
                requests.push(request);
            }
            if requests.len() >= limit {
                break;
            }
        }
        Ok(requests)
    }

    /// The store, for the durable records of the signing side (the key generation's
    /// attempt counter).
    pub fn store(&self) -> &Store {
        &self.store
    }
}

fn indexed_request(key: [u8; 12], record: SignRequestRecord) -> Option<IndexedRequest> {
    let payload = hex::decode(&record.payload).ok()?;
    let Hash32(request_id) = record.request_id;
    Some(IndexedRequest { key, request_id, payload, height: record.height })
}

#[cfg(test)]
mod tests {
    use mpc_migrations::layout::{BlockEffects, Cursor, block_update_encoded};
    use mpc_store::StoreOptions;

    use super::*;

    #[test]
    fn a_request_is_found_through_the_index_and_by_a_scan_where_a_v2_store_has_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("node"), &StoreOptions::new("node", "test")).unwrap();
        for (height, version) in [(1u64, 2), (2, 3)] {
            let request = SignRequestRecord {
                request_id: Hash32([height as u8; 32]),
                predecessor_id: "alice.sandbox".into(),
                payload: hex::encode([height as u8]),
                path: "m/0".into(),
                height,
            };
            let cursor = Cursor { height, block_hash: Hash32([0; 32]) };
            let effects = BlockEffects { cursor, requests: vec![request], responses: vec![] };
            store.commit(block_update_encoded(&effects, height - 1, BlockEncoding::of_version(version))).unwrap();
        }
        let view = ChainView::new(&store, "test");
        // The request of the v2 block has no index entry: only the scan finds it.
        assert!(store.get(Column::SignRequestsById, [1u8; 32]).unwrap().is_none());
        assert_eq!(view.scan_for_request(&[1; 32]).unwrap().map(|request| request.height), Some(1));
        assert_eq!(view.scan_for_request(&[2; 32]).unwrap().map(|request| request.height), Some(2));
        assert!(view.scan_for_request(&[3; 32]).unwrap().is_none());
        assert_eq!(view.request(&[2; 32]).unwrap().map(|request| request.payload), Some(vec![2]));
        assert!(view.request(&[3; 32]).unwrap().is_none());
    }
}
