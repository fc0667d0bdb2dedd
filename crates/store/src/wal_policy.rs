//! When a store flushes its memtables and what its close persists: the WAL policy.
//!
//! A close syncs the WAL and leaves the memtables to the next open's replay (see
//! `options` for why), with two exceptions that keep the WAL from growing without
//! bound: an open that replayed a large WAL, or many WAL files, starts a flush in the
//! background, and a close that would leave more than [`MAX_WAL_FILES_LEFT`] files
//! flushes instead of syncing. A flush that is already running when the close begins is
//! let finish, so its table files are kept.

use std::path::Path;

use rocksdb::{DB, FlushOptions};

use crate::{Column, StoreError, StoreResult};

/// Above this many bytes of replayed WAL an open starts a background flush, so that
/// the next open does not replay the same bytes again. (The memtables' own size is no
/// measure: each column family with one entry reports a whole arena block.)
const REPLAY_BUDGET_BYTES: u64 = 512 * 1024;

/// Most WAL files a store keeps across a close: every open starts a new WAL file and
/// a close does not flush, so a run too short for the open's background flush (a
/// restart loop) would otherwise leave one more each time, and every open would replay
/// all of them. A close that finds more flushes after all; in such a run the memtables
/// hold little, so that flush is short.
const MAX_WAL_FILES_LEFT: usize = 3;

/// The WAL files of a store directory: what its next open replays.
pub(crate) struct WalFiles {
    count: usize,
    pub(crate) bytes: u64,
}

impl WalFiles {
    /// Whether an open that replayed these files should flush them in the background.
    fn worth_flushing_after_open(&self) -> bool {
        self.bytes > REPLAY_BUDGET_BYTES || self.too_many_to_leave()
    }

    /// Whether a close should flush rather than leave these files to the next open.
    fn too_many_to_leave(&self) -> bool {
        self.count > MAX_WAL_FILES_LEFT
    }
}

/// The WAL files in the store directory (none when it does not exist yet).
pub(crate) fn wal_files(path: &Path) -> WalFiles {
    let mut wal = WalFiles { count: 0, bytes: 0 };
    let Ok(entries) = std::fs::read_dir(path) else { return wal };
    for entry in entries.filter_map(Result::ok) {
        if entry.file_name().to_string_lossy().ends_with(".log") {
            wal.count += 1;
            wal.bytes += entry.metadata().map(|metadata| metadata.len()).unwrap_or(0);
        }
    }
    wal
}

/// Flushes the memtables of every column family; with `wait`, returns once the table
/// files are written, without, once the flush is scheduled.
pub(crate) fn flush_all_families(db: &DB, path: &Path, wait: bool) -> StoreResult<()> {
    let families: Vec<&rocksdb::ColumnFamily> =
        Column::ALL.iter().filter_map(|column| db.cf_handle(column.name())).collect();
    let mut flush_options = FlushOptions::default();
    flush_options.set_wait(wait);
    db.flush_cfs_opt(&families, &flush_options).map_err(|err| StoreError::from_rocksdb(path, err))
}

/// After a read-write open: starts a flush of every column family without waiting for
/// it when the open replayed more WAL than a store should keep; otherwise a node
/// stopped again soon would hand the same replayed bytes to the next open once more, or
/// leave one more WAL file than the run before (every open starts one, see
/// [`MAX_WAL_FILES_LEFT`]). The flush runs on RocksDB's background thread while the node
/// starts; a close that comes while it runs lets it finish. RocksDB only holds the call
/// while a flush would stall writes (20 level-0 files, far from what the stores'
/// compactions leave); a failure is logged and leaves the memtables to the WAL.
pub(crate) fn flush_replayed_wal_if_large(db: &DB, path: &Path, name: &str) {
    let wal = wal_files(path);
    if !wal.worth_flushing_after_open() {
        return;
    }
    match flush_all_families(db, path, false) {
        Ok(()) => tracing::debug!(
            store = %name, wal_files = wal.count, wal_bytes = wal.bytes,
            "flushing the replayed WAL in the background"
        ),
        Err(err) => tracing::warn!(
            store = %name, error = %err,
            "could not start a flush after the open; the memtables stay in the WAL"
        ),
    }
}

/// Persists what a closing store holds, as the policy says: syncs the WAL, or flushes
/// every column family when the close would leave more than [`MAX_WAL_FILES_LEFT`] WAL
/// files; then lets a flush that is already running finish, and stops RocksDB's
/// background work. `read_only` opens wrote nothing and only stop their background
/// work. Returns whether the close flushed and how much WAL it left, for the log.
pub(crate) fn persist_at_close(db: &DB, path: &Path, name: &str, read_only: bool) -> (bool, u64) {
    // A read-only open wrote nothing; its WAL is not its own to judge.
    let wal = (!read_only).then(|| wal_files(path));
    let flushed = wal.as_ref().is_some_and(WalFiles::too_many_to_leave);
    if !read_only {
        // After a flush of every family the WAL holds nothing the table files do not: no
        // write can follow it (this is the last handle), so there is no WAL left to sync.
        let persisted = if flushed {
            flush_all_families(db, path, true)
        } else {
            db.flush_wal(true).map_err(|err| StoreError::from_rocksdb(path, err))
        };
        if let Err(err) = persisted {
            tracing::warn!(
                store = %name, error = %err,
                "flush or WAL sync at close failed; the next open replays what the WAL holds"
            );
        }
        let_running_flushes_finish(db);
    }
    db.cancel_all_background_work(true);
    (flushed, wal.map_or(0, |wal| wal.bytes))
}

/// One of RocksDB's integer properties of `db` (0 if RocksDB has none by that name).
pub(crate) fn int_property(db: &DB, name: &str) -> u64 {
    db.property_int_value(name).ok().flatten().unwrap_or(0)
}

/// Waits until no flush of `db` is running. RocksDB throws away the table files of a
/// flush that ends after a close began cancelling background work, and the next open
/// then replays those memtables again (and, when they no longer fit, flushes them
/// before it returns); the close waits for such a flush either way, so it lets it
/// finish first and keep its work. A flush that has not started is left to the WAL:
/// starting it would lengthen the stop. Not after a background error (a full disk):
/// RocksDB then retries its flushes until the close cancels them.
fn let_running_flushes_finish(db: &DB) {
    while int_property(db, "rocksdb.num-running-flushes") > 0 && int_property(db, "rocksdb.background-errors") == 0 {
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}
