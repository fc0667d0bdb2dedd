//! Current (v3) layout of the node store.
//!
//! - `Misc/indexer_cursor`: the last block whose effects are committed, as 8 bytes of
//!   big-endian height followed by the 32-byte block hash (since v2; v1 wrote the height
//!   as a decimal string and no hash).
//! - `Misc/applied_requests_total`: count of requests ever applied, bumped in the same
//!   batch as the requests, so applying a block twice is visible to `check`.
//! - `SignRequests/(height, index)`: each sign request, JSON.
//! - `SignRequestsById/request_id`: the `SignRequests` key of that request (since v3).
//! - `SignResponses/request_id`: the block that answered the request, JSON.
//! - `IndexedBlocks/height`: hash and counts of every indexed block, JSON.
//! - `Misc/monitor/<monitor>`: the last value each contract monitor saw, JSON (the
//!   contract's state under [`monitor_key`]`(`[`CONTRACT_STATE_MONITOR`]`)`).

use mpc_store::{Column, Store, StoreError, StoreResult, StoreUpdate};

/// Key of the indexer cursor in [`Column::Misc`].
pub const CURSOR_KEY: &[u8] = b"indexer_cursor";
/// Key of the applied-requests counter in [`Column::Misc`].
pub const APPLIED_REQUESTS_KEY: &[u8] = b"applied_requests_total";

/// The monitor of the contract's `state` view: its last value is what the signing side
/// reads the participants, the threshold and the public key from.
pub const CONTRACT_STATE_MONITOR: &str = "monitor_contract_state";

/// Key in [`Column::Misc`] of the last value the monitor `name` saw.
pub fn monitor_key(name: &str) -> String {
    format!("monitor/{name}")
}

/// A 32-byte hash (block hash or request id) that prints as hex.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash32(pub [u8; 32]);

impl Hash32 {
    /// Lower-case hex form. (Every stored request and response carries one, so it is
    /// on the indexing hot path: a `format!` per byte cost 14 % of a benchmark's time.)
    pub fn to_hex(&self) -> String {
        self.with_hex(str::to_owned)
    }

    /// Hands the hex form to `use_hex` from a stack buffer, without allocating.
    fn with_hex<R>(&self, use_hex: impl FnOnce(&str) -> R) -> R {
        let mut digits = [0u8; 64];
        hex::encode_to_slice(self.0, &mut digits).expect("64 digits for 32 bytes");
        use_hex(std::str::from_utf8(&digits).expect("hex digits are ASCII"))
    }

    /// Parses the hex form; `None` if it is not 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(Hash32(bytes))
    }
}

impl std::fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.with_hex(|hex| f.write_str(hex))
    }
}

impl std::fmt::Display for Hash32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.with_hex(|hex| f.write_str(hex))
    }
}

impl serde::Serialize for Hash32 {
    /// The hex form from a stack buffer: every stored request and response writes one,
    /// and a `String` per hash was an allocation per record on the indexing hot path.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.with_hex(|hex| serializer.serialize_str(hex))
    }
}

impl<'de> serde::Deserialize<'de> for Hash32 {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Hash32::from_hex(&text).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

/// The last block whose effects are committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// Height of that block.
    pub height: u64,
    /// Hash of that block, so a resume can detect a chain that changed under it.
    pub block_hash: Hash32,
}

impl Cursor {
    /// Fixed-width encoding: 8 bytes big-endian height, then the 32-byte hash.
    pub fn encode(&self) -> [u8; 40] {
        let mut bytes = [0u8; 40];
        bytes[..8].copy_from_slice(&self.height.to_be_bytes());
        bytes[8..].copy_from_slice(&self.block_hash.0);
        bytes
    }

    /// Decodes [`Cursor::encode`]; `None` for any other length.
    pub fn decode(bytes: &[u8]) -> Option<Cursor> {
        let bytes: &[u8; 40] = bytes.try_into().ok()?;
        let height = u64::from_be_bytes(bytes[..8].try_into().ok()?);
        let block_hash = Hash32(bytes[8..].try_into().ok()?);
        Some(Cursor { height, block_hash })
    }
}

/// A sign request as the indexer recorded it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignRequestRecord {
    /// Unique id of the request (derived from the receipt that created it).
    pub request_id: Hash32,
    /// Account that called `sign`.
    pub predecessor_id: String,
    /// Payload to sign, hex.
    pub payload: String,
    /// Key derivation path.
    pub path: String,
    /// Block that carried the request.
    pub height: u64,
}

/// A response as the indexer recorded it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignResponseRecord {
    /// The request answered.
    pub request_id: Hash32,
    /// Block that carried the response.
    pub height: u64,
}

/// What the indexer committed for one block.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IndexedBlockRecord {
    /// Hash of the block.
    pub block_hash: Hash32,
    /// Requests the block carried.
    pub requests: u32,
    /// Responses the block carried.
    pub responses: u32,
}

/// Key of a request in [`Column::SignRequests`]: height then index, both big-endian, so
/// iteration is in chain order.
pub fn request_key(height: u64, index: u32) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&height.to_be_bytes());
    key[8..].copy_from_slice(&index.to_be_bytes());
    key
}

/// Height part of a [`request_key`].
pub fn request_key_height(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(..8)?.try_into().ok()?))
}

/// Key of a block in [`Column::IndexedBlocks`].
pub fn height_key(height: u64) -> [u8; 8] {
    height.to_be_bytes()
}

fn decode_error(store: &Store, what: &str, detail: String) -> StoreError {
    StoreError::Decode { path: store.path().to_path_buf(), what: what.to_owned(), detail }
}

/// Reads the committed cursor (`None` before the first indexed block).
pub fn read_cursor(store: &Store) -> StoreResult<Option<Cursor>> {
    match store.get(Column::Misc, CURSOR_KEY)? {
        None => Ok(None),
        Some(bytes) => Cursor::decode(&bytes)
            .map(Some)
            .ok_or_else(|| decode_error(store, "indexer cursor", format!("expected 40 bytes, found {}", bytes.len()))),
    }
}

/// Reads the applied-requests counter.
pub fn read_applied_requests(store: &Store) -> StoreResult<u64> {
    match store.get(Column::Misc, APPLIED_REQUESTS_KEY)? {
        None => Ok(0),
        Some(bytes) => <[u8; 8]>::try_from(bytes.as_slice())
            .map(u64::from_be_bytes)
            .map_err(|_| decode_error(store, "applied requests counter", format!("{} bytes", bytes.len()))),
    }
}

/// Everything the indexer commits for one block, as one batch with the cursor.
#[derive(Debug, Clone)]
pub struct BlockEffects {
    /// The block's cursor after it is applied.
    pub cursor: Cursor,
    /// Requests carried by the block, in order.
    pub requests: Vec<SignRequestRecord>,
    /// Responses carried by the block.
    pub responses: Vec<SignResponseRecord>,
}

/// The parts of a block's batch whose encoding changed between schema versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockEncoding {
    /// Write `SignRequestsById` entries (since v3).
    pub request_id_index: bool,
    /// Write the cursor as a decimal height (v1) instead of fixed width (since v2).
    pub decimal_cursor: bool,
}

impl BlockEncoding {
    /// The encoding of the current schema.
    pub const CURRENT: BlockEncoding = BlockEncoding::of_version(crate::NODE_SCHEMA_VERSION);

    /// The encoding schema `version` wrote: the one place that says which version
    /// changed what.
    pub const fn of_version(version: u32) -> BlockEncoding {
        BlockEncoding { request_id_index: version >= 3, decimal_cursor: version == 1 }
    }
}

/// Builds the batch that applies `effects` on top of `applied_before` requests.
pub fn block_update(effects: &BlockEffects, applied_before: u64) -> StoreUpdate {
    block_update_encoded(effects, applied_before, BlockEncoding::CURRENT)
}

/// Like [`block_update`], in the encoding of an older schema (for the old-format writers).
pub fn block_update_encoded(effects: &BlockEffects, applied_before: u64, encoding: BlockEncoding) -> StoreUpdate {
    let mut update = StoreUpdate::new();
    let height = effects.cursor.height;
    for (index, request) in effects.requests.iter().enumerate() {
        let key = request_key(height, index as u32);
        update.put_json(Column::SignRequests, key, request);
        if encoding.request_id_index {
            update.put(Column::SignRequestsById, request.request_id.0, key);
        }
    }
    for response in &effects.responses {
        update.put_json(Column::SignResponses, response.request_id.0, response);
    }
    let record = IndexedBlockRecord {
        block_hash: effects.cursor.block_hash,
        requests: effects.requests.len() as u32,
        responses: effects.responses.len() as u32,
    };
    update.put_json(Column::IndexedBlocks, height_key(height), &record);
    update.put(Column::Misc, APPLIED_REQUESTS_KEY, (applied_before + effects.requests.len() as u64).to_be_bytes());
    if encoding.decimal_cursor {
        update.put(Column::Misc, CURSOR_KEY, height.to_string());
    } else {
        update.put(Column::Misc, CURSOR_KEY, effects.cursor.encode());
    }
    update
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_sorts_by_height_as_bytes() {
        let cursor = Cursor { height: 0x0102_0304_0506_0708, block_hash: Hash32([0xab; 32]) };
        let bytes = cursor.encode();
        assert_eq!(&bytes[..8], &[1, 2, 3, 4, 5, 6, 7, 8], "height first, big-endian");
        assert_eq!(Cursor::decode(&bytes), Some(cursor));
        let lower = Cursor { height: 255, block_hash: Hash32([0xff; 32]) }.encode();
        let higher = Cursor { height: 256, block_hash: Hash32([0; 32]) }.encode();
        assert!(lower < higher, "byte order is height order");
    }

    #[test]
    fn a_cursor_of_any_other_length_is_refused_not_misread() {
        let bytes = Cursor { height: 7, block_hash: Hash32::default() }.encode();
        assert_eq!(Cursor::decode(&bytes[..39]), None);
        assert_eq!(Cursor::decode(&[bytes.as_slice(), &[0]].concat()), None);
        assert_eq!(Cursor::decode(b"42"), None, "a v1 decimal cursor is not a v2 cursor");
        assert_eq!(Cursor::decode(&[]), None);
    }

    #[test]
    fn hashes_print_as_hex_and_parse_back_only_from_64_hex_digits() {
        let hash = Hash32([0x0f; 32]);
        assert_eq!(hash.to_hex(), "0f".repeat(32));
        assert_eq!(Hash32::from_hex(&hash.to_hex()), Some(hash));
        assert_eq!(Hash32::from_hex(&"0f".repeat(31)), None);
        assert_eq!(Hash32::from_hex(&"zz".repeat(32)), None);
        assert_eq!(Hash32::from_hex(&"é".repeat(32)), None, "multi-byte text is refused, not sliced");
        let json = serde_json::to_string(&Hash32([0xa5; 32])).unwrap();
        assert_eq!(json, format!("\"{}\"", "a5".repeat(32)), "stored as its hex string");
        assert_eq!(serde_json::from_str::<Hash32>(&json).unwrap(), Hash32([0xa5; 32]));
    }

    #[test]
    fn request_keys_sort_in_chain_order_and_give_back_their_height() {
        assert!(request_key(1, u32::MAX) < request_key(2, 0));
        assert_eq!(request_key_height(&request_key(99, 3)), Some(99));
        assert_eq!(request_key_height(&[1, 2, 3]), None);
    }
}
