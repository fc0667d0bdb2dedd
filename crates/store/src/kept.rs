//! A store kept open from one generation of its users to the next.
//!
//! Why: an in-process restart replaces the users of a store (the chain's actors), not
//! the store. Closing and reopening RocksDB on every restart cost most of the restart
//! (a new MANIFEST, OPTIONS file and WAL, each synced, and the WAL replayed; about
//! 16 ms of a 30 ms cycle on a slow machine), and every open left a timer entry in
//! RocksDB's process-wide scheduler (docs/benchmarks.md). A [`KeptStore`] holds the one
//! reference that outlives the users: the next generation takes the same instance, and
//! the owner closes it by [`KeptStore::release`] when a restart has to reopen the store
//! (a wipe, a failure) or the process stops.
//!
//! A process start can fill the slot ahead of the first user ([`KeptStore::open_ahead`]),
//! so that open overlaps with another one instead of following it.
//!
//! The old users must be gone before new ones start, or two generations would write
//! the same store at once: [`KeptStore::wait_until_unheld`] waits for that.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::tracker::wait_until_no_holders;
use crate::{OpenInstance, Store};

/// The process's reference to a store that outlives its users. Cheap to clone; clones
/// share the one slot.
#[derive(Clone, Default)]
pub struct KeptStore(Arc<Mutex<Option<Kept>>>);

/// The instance in the slot, and whether a user has taken it yet.
struct Kept {
    store: Arc<Store>,
    handed_out: bool,
}

/// Whether [`KeptStore::open_or_reuse`] opened the store for this user or handed out
/// the one an earlier user had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Opened for this user: now, or ahead of it by [`KeptStore::open_ahead`].
    Opened,
    /// The instance an earlier user opened.
    Reused,
}

impl KeptStore {
    fn slot(&self) -> MutexGuard<'_, Option<Kept>> {
        // The slot is replaced whole, never half-updated, so a poisoned lock is safe.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The kept store, or the one `open` returns, which is kept from then on. The lock
    /// is held while `open` runs, so a user that comes while [`KeptStore::open_ahead`]
    /// opens the store waits for that open instead of starting a second one.
    pub fn open_or_reuse<E>(&self, open: impl FnOnce() -> Result<Arc<Store>, E>) -> Result<(Arc<Store>, Reuse), E> {
        let mut slot = self.slot();
        if let Some(kept) = slot.as_mut() {
            let reuse = if kept.handed_out { Reuse::Reused } else { Reuse::Opened };
            kept.handed_out = true;
            return Ok((kept.store.clone(), reuse));
        }
        let store = open()?;
        *slot = Some(Kept { store: store.clone(), handed_out: true });
        Ok((store, Reuse::Opened))
    }

    /// Opens the store before its first user needs it (a process start opens it beside
    /// another store), unless one is kept already. The slot is its only reference, so a
    /// [`KeptStore::release`] after this returns closes it at once.
    pub fn open_ahead<E>(&self, open: impl FnOnce() -> Result<Arc<Store>, E>) -> Result<(), E> {
        let mut slot = self.slot();
        if slot.is_none() {
            *slot = Some(Kept { store: open()?, handed_out: false });
        }
        Ok(())
    }

    /// Whether a store is kept now.
    pub fn is_kept(&self) -> bool {
        self.slot().is_some()
    }

    /// What `look` reads of the kept store, if one is kept. It runs under the slot's
    /// lock and takes no reference, so the close never ends up on the reader's thread
    /// (a reader's `Arc` could be the last one when the slot is released meanwhile).
    pub fn inspect<T>(&self, look: impl FnOnce(&Store) -> T) -> Option<T> {
        self.slot().as_ref().map(|kept| look(&kept.store))
    }

    /// Gives up the kept reference: the store closes once its last user lets go.
    pub fn release(&self) {
        // Taken out of the slot first, so the close runs without the lock held.
        let kept = self.slot().take();
        drop(kept);
    }

    /// Waits up to `timeout` until nothing but this slot references the kept store
    /// (no named holder, no other `Arc`). On time-out returns the store with the
    /// holders still keeping it. Returns at once when no store is kept.
    pub fn wait_until_unheld(&self, timeout: Duration) -> Result<(), OpenInstance> {
        let Some(store) = self.slot().as_ref().map(|kept| kept.store.clone()) else { return Ok(()) };
        let deadline = Instant::now() + timeout;
        wait_until_no_holders(store.instance_guard(), timeout)?;
        // A holder's own `Arc` drops just after it signs off, and an unnamed user holds
        // a bare `Arc`: both show in the count (the slot and `store` above are two).
        while Arc::strong_count(&store) > 2 {
            if Instant::now() >= deadline {
                return Err(store.instance_guard().describe());
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        Ok(())
    }
}

impl std::fmt::Debug for KeptStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("KeptStore").field(&self.slot().as_ref().map(|kept| kept.store.name().to_owned())).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{StoreOptions, open_instances};

    fn open(dir: &std::path::Path, group: &str) -> Result<Arc<Store>, crate::StoreError> {
        Store::open(&dir.join("kept"), &StoreOptions::new("kept", group))
    }

    /// Stores of `group` open now (each test has its own group: tests run in parallel).
    fn open_in(group: &str) -> usize {
        open_instances().iter().filter(|instance| instance.group == group).count()
    }

    #[test]
    fn the_next_user_gets_the_instance_the_first_one_opened() {
        let dir = tempfile::tempdir().unwrap();
        let kept = KeptStore::default();
        let (first, how) = kept.open_or_reuse(|| open(dir.path(), "kept-reuse")).unwrap();
        assert_eq!(how, Reuse::Opened);
        drop(first);
        assert!(kept.is_kept(), "the slot keeps the store after its first user let go");
        let (second, how) =
            kept.open_or_reuse(|| -> Result<_, crate::StoreError> { panic!("must not reopen") }).unwrap();
        assert_eq!(how, Reuse::Reused);
        drop(second);
        kept.release();
        assert!(!kept.is_kept());
        assert_eq!(open_in("kept-reuse"), 0, "released and unused: closed");
        let (third, how) = kept.open_or_reuse(|| open(dir.path(), "kept-reuse")).unwrap();
        assert_eq!(how, Reuse::Opened, "after a release the store is opened again");
        drop(third);
        kept.release();
    }

    #[test]
    fn inspecting_reads_the_kept_store_without_keeping_it_open() {
        let dir = tempfile::tempdir().unwrap();
        let kept = KeptStore::default();
        assert_eq!(kept.inspect(|store| store.name().to_owned()), None);
        kept.open_ahead(|| open(dir.path(), "kept-inspect")).unwrap();
        assert_eq!(kept.inspect(|store| store.name().to_owned()).as_deref(), Some("kept"));
        kept.release();
        assert_eq!(open_in("kept-inspect"), 0, "the inspection kept the store open");
        assert_eq!(kept.inspect(|store| store.name().to_owned()), None);
    }

    #[test]
    fn a_store_opened_ahead_is_the_first_users_own_open_and_closes_with_the_release() {
        let dir = tempfile::tempdir().unwrap();
        let kept = KeptStore::default();
        kept.open_ahead(|| open(dir.path(), "kept-ahead")).unwrap();
        kept.open_ahead(|| -> Result<_, crate::StoreError> { panic!("kept already: must not open again") }).unwrap();
        assert_eq!(open_in("kept-ahead"), 1);
        let must_not_open = || -> Result<Arc<Store>, crate::StoreError> { panic!("opened ahead: must not reopen") };
        let (first, how) = kept.open_or_reuse(must_not_open).unwrap();
        assert_eq!(how, Reuse::Opened, "the first user gets the store opened for it");
        drop(first);
        let (second, how) = kept.open_or_reuse(must_not_open).unwrap();
        assert_eq!(how, Reuse::Reused);
        drop(second);
        kept.release();
        assert_eq!(open_in("kept-ahead"), 0);

        kept.open_ahead(|| open(dir.path(), "kept-ahead")).unwrap();
        kept.release();
        assert_eq!(open_in("kept-ahead"), 0, "opened ahead and never used: the release alone closes it");
        assert_eq!(kept.open_ahead(|| Err::<Arc<Store>, _>("no disk")), Err("no disk"));
        assert!(!kept.is_kept(), "a failed open ahead keeps nothing");
    }

    #[test]
    fn a_failed_open_keeps_nothing() {
        let kept = KeptStore::default();
        let failed = kept.open_or_reuse(|| Err::<Arc<Store>, _>("no disk"));
        assert_eq!(failed.err(), Some("no disk"));
        assert!(!kept.is_kept());
    }

    #[test]
    fn waiting_until_unheld_ends_when_the_last_holder_lets_go_and_names_it_until_then() {
        let dir = tempfile::tempdir().unwrap();
        let kept = KeptStore::default();
        let (store, _) = kept.open_or_reuse(|| open(dir.path(), "kept-wait")).unwrap();
        let holder = store.holder("old_generation_actor");
        drop(store);
        let stuck = kept.wait_until_unheld(Duration::from_millis(20)).unwrap_err();
        assert_eq!(stuck.holders, vec!["old_generation_actor".to_owned()]);
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            drop(holder);
        });
        kept.wait_until_unheld(Duration::from_secs(30)).unwrap();
        releaser.join().unwrap();
        let (bare, _) = kept.open_or_reuse(|| open(dir.path(), "kept-wait")).unwrap();
        assert!(kept.wait_until_unheld(Duration::from_millis(20)).is_err(), "a bare Arc is a user too");
        drop(bare);
        kept.wait_until_unheld(Duration::from_millis(20)).unwrap();
        assert_eq!(open_in("kept-wait"), 1);
        kept.release();
        assert_eq!(open_in("kept-wait"), 0, "releasing the last reference closes the store");
    }
}
