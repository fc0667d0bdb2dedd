//! Reading values of the chain store's older schemas: JSON views (v1) and compact
//! records (v2). An upgraded store is never rewritten, so its old blocks are read here
//! for as long as it keeps them.

use borsh::BorshDeserialize;
use mpc_store::{Store, StoreResult};
use serde::de::DeserializeOwned;

use super::{decode, decode_error};
use crate::records::StoredValue;
use crate::views::InvalidAccountId;

/// Turns a stored value of schema v1 or v2 into its view: a record by `to_view`, a JSON
/// view as it is. (A v3 value is read by the caller, which knows what it points to.)
pub(super) fn older_view<R: BorshDeserialize, V: DeserializeOwned>(
    store: &Store,
    what: &str,
    bytes: &[u8],
    to_view: impl FnOnce(R) -> Result<V, InvalidAccountId>,
) -> StoreResult<V> {
    match StoredValue::of(bytes) {
        StoredValue::Record(record) => {
            to_view(decode(store, what, record)?).map_err(|err| decode_error(store, what, err))
        }
        StoredValue::Json(json) => serde_json::from_slice(json).map_err(|err| decode_error(store, what, err)),
        StoredValue::Bundle(_) | StoredValue::Failures(_) => {
            Err(decode_error(store, what, "a schema v3 value where an older one was expected"))
        }
    }
}
