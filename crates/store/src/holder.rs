//! Named holders: a long-lived user of a store says who it is.

use std::ops::Deref;
use std::sync::Arc;

use crate::Store;

/// A named, counted reference to a [`Store`]. Long-lived users (monitor tasks, the
/// streamer, actors) hold one instead of a bare `Arc<Store>` so that, if shutdown stalls,
/// the tracker can name them. Dropping it releases the reference and the name.
#[must_use = "a holder that is dropped at once names nobody; keep it for as long as the store is used"]
pub struct StoreHolder {
    store: Arc<Store>,
    holder_id: u64,
    name: String,
}

impl StoreHolder {
    pub(crate) fn new(store: Arc<Store>, name: &str) -> Self {
        let holder_id = store.instance_guard().add_holder(name);
        StoreHolder { store, holder_id, name: name.to_owned() }
    }

    /// The name this holder registered under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A second holder of the same store under another name.
    pub fn holder(&self, name: &str) -> StoreHolder {
        StoreHolder::new(self.store.clone(), name)
    }
}

impl Deref for StoreHolder {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl Drop for StoreHolder {
    fn drop(&mut self) {
        self.store.instance_guard().remove_holder(self.holder_id);
    }
}

impl std::fmt::Debug for StoreHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHolder").field("name", &self.name).field("store", &self.store.name()).finish()
    }
}
