//! Atomic write batches.

use crate::Column;

/// A set of writes applied all-or-nothing by [`crate::Store::commit`]. Every change of
/// indexed state goes into one update together with the cursor that records it, so a
/// crash leaves the store at a batch boundary.
#[must_use = "an update does nothing until it is committed"]
#[derive(Default)]
pub struct StoreUpdate {
    pub(crate) ops: Vec<(Column, Vec<u8>, Option<Vec<u8>>)>,
}

impl StoreUpdate {
    /// An empty update.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `value` under `key`.
    pub fn put(&mut self, column: Column, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.ops.push((column, key.as_ref().to_vec(), Some(value.as_ref().to_vec())));
    }

    /// Writes `value` as JSON under `key`.
    pub fn put_json<T: serde::Serialize>(&mut self, column: Column, key: impl AsRef<[u8]>, value: &T) {
        // Only the node's own plain record types are written (no maps with non-string
        // keys, no fallible custom serializers), so serialising cannot fail.
        let bytes = serde_json::to_vec(value).expect("store records serialise to JSON");
        // Moved in, not copied: this is on the indexing hot path, once per record.
        self.ops.push((column, key.as_ref().to_vec(), Some(bytes)));
    }

    /// Deletes `key`.
    pub fn delete(&mut self, column: Column, key: impl AsRef<[u8]>) {
        self.ops.push((column, key.as_ref().to_vec(), None));
    }

    /// Adds every write of `other` after this update's own, so that both apply in one
    /// commit (a later write of the same key wins).
    pub fn append(&mut self, mut other: StoreUpdate) {
        self.ops.append(&mut other.ops);
    }

    /// Number of writes in the update.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when the update writes nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}
