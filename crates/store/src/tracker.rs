//! Process-wide accounting of open RocksDB instances and of who holds them.
//!
//! Why: after the node stops its actors and its indexer thread, the last thing it must
//! know before exiting is that every RocksDB instance has been closed (WAL synced,
//! background work finished). nearcore answers that with
//! `block_until_all_instances_are_dropped()`; we keep that contract and add a bounded
//! variant that, when the deadline passes, names the stores still open and the named
//! holders keeping them open, so a stuck shutdown is diagnosable instead of a hang.
//!
//! The tracker is a `static` built by `const fn`s, so it exists before `main` and needs
//! no initialisation order. An instance is removed only when the guard stored as the
//! *last* field of [`crate::Store`] drops, i.e. after RocksDB itself has been closed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A store that is still open, with the names of the holders keeping it alive.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OpenInstance {
    /// Short name given at open ("node", "chain").
    pub name: String,
    /// Directory of the RocksDB instance.
    pub path: PathBuf,
    /// Subsystem the store belongs to, so a restart can wait for its own stores only.
    pub group: String,
    /// Names of live [`crate::StoreHolder`]s of this store.
    pub holders: Vec<String>,
}

impl std::fmt::Display for OpenInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}) held by [{}]", self.name, self.path.display(), self.holders.join(", "))
    }
}

struct InstanceRecord {
    name: String,
    path: PathBuf,
    group: String,
    holders: BTreeMap<u64, String>,
}

impl InstanceRecord {
    fn describe(&self) -> OpenInstance {
        OpenInstance {
            name: self.name.clone(),
            path: self.path.clone(),
            group: self.group.clone(),
            holders: self.holders.values().cloned().collect(),
        }
    }
}

struct TrackerState {
    next_id: u64,
    instances: BTreeMap<u64, InstanceRecord>,
}

struct InstanceTracker {
    state: Mutex<TrackerState>,
    changed: Condvar,
}

static TRACKER: InstanceTracker = InstanceTracker {
    state: Mutex::new(TrackerState { next_id: 0, instances: BTreeMap::new() }),
    changed: Condvar::new(),
};

fn lock_state() -> MutexGuard<'static, TrackerState> {
    // A panic while holding this lock cannot leave the map half-updated (every update is
    // a single insert or remove), so a poisoned lock is still safe to use.
    TRACKER.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Registration of one open RocksDB instance; dropping it removes the instance.
pub(crate) struct InstanceGuard {
    id: u64,
}

impl InstanceGuard {
    /// This instance's number, unique in the process.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn register(name: &str, path: PathBuf, group: &str) -> Self {
        let mut state = lock_state();
        let id = state.next_id;
        state.next_id += 1;
        state.instances.insert(
            id,
            InstanceRecord { name: name.to_owned(), path, group: group.to_owned(), holders: BTreeMap::new() },
        );
        InstanceGuard { id }
    }

    pub(crate) fn add_holder(&self, holder: &str) -> u64 {
        let mut state = lock_state();
        let holder_id = state.next_id;
        state.next_id += 1;
        if let Some(record) = state.instances.get_mut(&self.id) {
            record.holders.insert(holder_id, holder.to_owned());
        }
        holder_id
    }

    pub(crate) fn remove_holder(&self, holder_id: u64) {
        let mut state = lock_state();
        if let Some(record) = state.instances.get_mut(&self.id) {
            record.holders.remove(&holder_id);
        }
        drop(state);
        TRACKER.changed.notify_all();
    }

    /// This instance as [`open_instances`] would list it.
    pub(crate) fn describe(&self) -> OpenInstance {
        lock_state().instances[&self.id].describe()
    }
}

/// Waits up to `timeout` until the instance of `guard` has no named holder; on time-out
/// returns it with the holders still keeping it.
pub(crate) fn wait_until_no_holders(guard: &InstanceGuard, timeout: Duration) -> Result<(), OpenInstance> {
    wait_until(timeout, |state| state.instances.get(&guard.id).is_none_or(|record| record.holders.is_empty()))
        .map_err(|state| state.instances[&guard.id].describe())
}

/// Waits up to `timeout`, woken by every change to the tracker, until `done` holds; on
/// time-out hands back the locked state, for the caller to say what is still open.
fn wait_until(
    timeout: Duration,
    done: impl Fn(&TrackerState) -> bool,
) -> Result<(), MutexGuard<'static, TrackerState>> {
    let deadline = Instant::now() + timeout;
    let mut state = lock_state();
    loop {
        if done(&state) {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(state);
        }
        state = TRACKER.changed.wait_timeout(state, deadline - now).unwrap_or_else(|poisoned| poisoned.into_inner()).0;
    }
}

impl Drop for InstanceGuard {
    fn drop(&mut self) {
        let mut state = lock_state();
        state.instances.remove(&self.id);
        drop(state);
        TRACKER.changed.notify_all();
    }
}

fn snapshot(state: &TrackerState, group: Option<&str>) -> Vec<OpenInstance> {
    state
        .instances
        .values()
        .filter(|record| group.is_none_or(|group| record.group == group))
        .map(InstanceRecord::describe)
        .collect()
}

/// Number of RocksDB instances open in this process right now.
pub fn instance_count() -> usize {
    lock_state().instances.len()
}

/// Every open store with its live holders, for diagnostics, metrics and the shutdown report.
pub fn open_instances() -> Vec<OpenInstance> {
    snapshot(&lock_state(), None)
}

/// Blocks until no RocksDB instance is open in this process. This is the upstream
/// (near-store) contract and waits forever if something never lets go; the node's
/// shutdown path uses [`wait_until_all_instances_are_dropped`] instead.
pub fn block_until_all_instances_are_dropped() {
    let mut state = lock_state();
    while !state.instances.is_empty() {
        state = TRACKER.changed.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
    }
}

/// Waits up to `timeout` for every RocksDB instance to close. On time-out returns the
/// stores still open and their named holders, so the caller can report who is stuck.
pub fn wait_until_all_instances_are_dropped(timeout: Duration) -> Result<(), Vec<OpenInstance>> {
    wait_for(None, timeout)
}

/// Like [`wait_until_all_instances_are_dropped`], for the stores of one subsystem: an
/// in-process restart waits for its own stores only, while others stay open.
pub fn wait_until_group_instances_are_dropped(group: &str, timeout: Duration) -> Result<(), Vec<OpenInstance>> {
    wait_for(Some(group), timeout)
}

fn wait_for(group: Option<&str>, timeout: Duration) -> Result<(), Vec<OpenInstance>> {
    wait_until(timeout, |state| snapshot(state, group).is_empty()).map_err(|state| snapshot(&state, group))
}
