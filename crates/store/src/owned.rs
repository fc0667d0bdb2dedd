//! A store with one owner across the generations of its users.
//!
//! Why: an in-process restart replaces the users of a store (the chain's actors), not
//! the store. Closing and reopening RocksDB on every restart cost most of the restart
//! (a new MANIFEST, OPTIONS file and WAL, each synced, and the WAL replayed), and every
//! open left a timer entry in RocksDB's process-wide scheduler.
//! An [`OwnedStore`] is the one value that keeps the store open from one generation of
//! users to the next: it hands each generation the open instance, knows whether this
//! process has verified the store's schema (so a reopen can skip the read-only probe),
//! and gives the store up when it must be reopened (a wipe, a failure) or the process
//! stops. It is moved, never shared: whoever holds it decides when the store closes.
//!
//! The old users must be gone before new ones start, or two generations would write
//! the same store at once: [`OwnedStore::wait_until_unheld`] waits for that.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::tracker::wait_until_no_holders;
use crate::{OpenInstance, Store};

/// The one owner of a store whose users come and go.
#[derive(Default)]
pub struct OwnedStore {
    store: Option<Arc<Store>>,
    /// Whether a user has been handed the open instance yet.
    handed_out: bool,
    /// Whether an open by this owner found the store at the latest schema.
    schema_verified: bool,
}

/// Whether [`OwnedStore::hand_out`] opened the store for this user or handed out the
/// instance an earlier user had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Opened for this user: now, or ahead of it ([`OwnedStore::opened_ahead`]).
    Opened,
    /// The instance an earlier user had.
    Reused,
}

impl OwnedStore {
    /// An owner of `store`, opened before its first user needs it (a process start
    /// opens it beside another store). Its open verified the schema.
    pub fn opened_ahead(store: Arc<Store>) -> Self {
        OwnedStore { store: Some(store), handed_out: false, schema_verified: true }
    }

    /// The open store for the next user, or the one `open` returns, which is kept from
    /// then on. `open` is told whether an earlier open by this owner verified the
    /// store's schema (it may then skip the read-only probe); a successful open did.
    pub fn hand_out<E>(&mut self, open: impl FnOnce(bool) -> Result<Arc<Store>, E>) -> Result<(Arc<Store>, Reuse), E> {
        let reuse = match &self.store {
            Some(_) if self.handed_out => Reuse::Reused,
            Some(_) => Reuse::Opened,
            None => {
                self.store = Some(open(self.schema_verified)?);
                self.schema_verified = true;
                Reuse::Opened
            }
        };
        self.handed_out = true;
        let store = self.store.clone().expect("a store is held after an open");
        Ok((store, reuse))
    }

    /// The store, if one is open; for reading its figures. Taking a clone of it makes
    /// the reader a user that [`OwnedStore::wait_until_unheld`] waits for.
    pub fn get(&self) -> Option<&Arc<Store>> {
        self.store.as_ref()
    }

    /// Gives up the open store, for the caller to drop where a close may block (a
    /// blocking thread); it closes once its last user lets go. The schema stays
    /// verified for the next open.
    #[must_use = "dropping the store closes it; drop it where a close may block"]
    pub fn release(&mut self) -> Option<Arc<Store>> {
        self.handed_out = false;
        self.store.take()
    }

    /// Waits up to `timeout` until nothing but this owner references the store (no
    /// named holder, no other `Arc`). On time-out returns the store with the holders
    /// still keeping it. Returns at once when no store is open.
    pub fn wait_until_unheld(&self, timeout: Duration) -> Result<(), OpenInstance> {
        let Some(store) = &self.store else { return Ok(()) };
        let deadline = Instant::now() + timeout;
        wait_until_no_holders(store.instance_guard(), timeout)?;
        // A holder's own `Arc` drops just after it signs off, and an unnamed user holds
        // a bare `Arc`: both show in the count.
        while Arc::strong_count(store) > 1 {
            if Instant::now() >= deadline {
                return Err(store.instance_guard().describe());
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        Ok(())
    }
}

impl std::fmt::Debug for OwnedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedStore")
            .field("store", &self.store.as_ref().map(|store| store.name().to_owned()))
            .field("handed_out", &self.handed_out)
            .field("schema_verified", &self.schema_verified)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{StoreOptions, open_instances};

    fn open(dir: &std::path::Path, group: &str) -> Result<Arc<Store>, crate::StoreError> {
        Store::open(&dir.join("owned"), &StoreOptions::new("owned", group))
    }

    /// Stores of `group` open now (each test has its own group: tests run in parallel).
    fn open_in(group: &str) -> usize {
        open_instances().iter().filter(|instance| instance.group == group).count()
    }

    #[test]
    fn the_next_user_gets_the_instance_the_first_one_opened_and_a_reopen_knows_the_schema() {
        let dir = tempfile::tempdir().unwrap();
        let mut owned = OwnedStore::default();
        let (first, how) = owned
            .hand_out(|verified| {
                assert!(!verified, "nothing verified the schema yet");
                open(dir.path(), "owned-reuse")
            })
            .unwrap();
        assert_eq!(how, Reuse::Opened);
        drop(first);
        assert!(owned.get().is_some(), "the owner keeps the store after its first user let go");
        let (second, how) = owned.hand_out(|_| -> Result<_, crate::StoreError> { panic!("must not reopen") }).unwrap();
        assert_eq!(how, Reuse::Reused);
        drop(second);
        drop(owned.release());
        assert!(owned.get().is_none());
        assert_eq!(open_in("owned-reuse"), 0, "released and unused: closed");
        let (third, how) = owned
            .hand_out(|verified| {
                assert!(verified, "the first open verified the schema");
                open(dir.path(), "owned-reuse")
            })
            .unwrap();
        assert_eq!(how, Reuse::Opened, "after a release the store is opened again");
        drop(third);
        drop(owned.release());
    }

    #[test]
    fn a_store_opened_ahead_is_the_first_users_own_open_and_closes_with_the_release() {
        let dir = tempfile::tempdir().unwrap();
        let mut owned = OwnedStore::opened_ahead(open(dir.path(), "owned-ahead").unwrap());
        assert_eq!(open_in("owned-ahead"), 1);
        let must_not_open = |_| -> Result<Arc<Store>, crate::StoreError> { panic!("opened ahead: must not reopen") };
        let (first, how) = owned.hand_out(must_not_open).unwrap();
        assert_eq!(how, Reuse::Opened, "the first user gets the store opened for it");
        drop(first);
        let (second, how) = owned.hand_out(must_not_open).unwrap();
        assert_eq!(how, Reuse::Reused);
        drop(second);
        drop(owned.release());
        assert_eq!(open_in("owned-ahead"), 0);

        let mut owned = OwnedStore::opened_ahead(open(dir.path(), "owned-ahead").unwrap());
        drop(owned.release());
        assert_eq!(open_in("owned-ahead"), 0, "opened ahead and never used: the release alone closes it");
    }

    #[test]
    fn a_failed_open_keeps_nothing_and_verifies_nothing() {
        let mut owned = OwnedStore::default();
        let failed = owned.hand_out(|_| Err::<Arc<Store>, _>("no disk"));
        assert_eq!(failed.err(), Some("no disk"));
        assert!(owned.get().is_none());
        let dir = tempfile::tempdir().unwrap();
        owned
            .hand_out(|verified| {
                assert!(!verified, "a failed open verified nothing");
                open(dir.path(), "owned-failed")
            })
            .unwrap();
        drop(owned.release());
    }

    #[test]
    fn waiting_until_unheld_ends_when_the_last_holder_lets_go_and_names_it_until_then() {
        let dir = tempfile::tempdir().unwrap();
        let mut owned = OwnedStore::default();
        let (store, _) = owned.hand_out(|_| open(dir.path(), "owned-wait")).unwrap();
        let holder = store.holder("old_generation_actor");
        drop(store);
        let stuck = owned.wait_until_unheld(Duration::from_millis(20)).unwrap_err();
        assert_eq!(stuck.holders, vec!["old_generation_actor".to_owned()]);
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            drop(holder);
        });
        owned.wait_until_unheld(Duration::from_secs(30)).unwrap();
        releaser.join().unwrap();
        let (bare, _) = owned.hand_out(|_| open(dir.path(), "owned-wait")).unwrap();
        assert!(owned.wait_until_unheld(Duration::from_millis(20)).is_err(), "a bare Arc is a user too");
        drop(bare);
        owned.wait_until_unheld(Duration::from_millis(20)).unwrap();
        assert_eq!(open_in("owned-wait"), 1);
        drop(owned.release());
        assert_eq!(open_in("owned-wait"), 0, "releasing the last reference closes the store");
    }
}
