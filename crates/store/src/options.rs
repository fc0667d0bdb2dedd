//! The RocksDB options every store is opened with, including the one the `rocksdb`
//! crate has no setter for.
//!
//! Why a close leaves the memtables unflushed: a stop waits for the close, and the
//! flush (one table file per column family, each synced, plus a manifest sync) was
//! most of a stop while catching up, when the memtables hold megabytes, CPU-bound on
//! the cores that both stores' flushes share. The WAL, synced at close, already holds every
//! committed batch, so a close only syncs it (see `Store`'s `Drop`), and the next open
//! replays it and, with `avoid_flush_during_recovery`, keeps it in memtables instead of
//! writing table files before the open returns. Building table files at the close or
//! memtables at the next open costs about the same; a stop has an orchestrator's
//! deadline and a start does not, so the work goes to the start, whose cost
//! docs/benchmarks.md shows beside the stop's. An open that replayed a large WAL
//! starts the flush in the background (`Store::open`), so a node stopped again soon
//! leaves little to the open after it.
//!
//! `avoid_flush_during_recovery` is a RocksDB option that neither the `rocksdb` crate
//! 0.24 nor RocksDB's C API sets directly. RocksDB does load any option from its own
//! options-file format (`LoadLatestOptions`, public in the crate as
//! `Options::load_latest`), so the options start from such a file, written once per
//! process into a private temporary directory that is removed right after loading.
//!
//! Why RocksDB's process-wide flush pool has a thread per store: RocksDB runs every
//! instance's background jobs on one process-wide pool per priority, sized by the
//! largest per-instance need (here one flush thread). The node store and the chain
//! store then flushed one after the other: when stops still flushed, the chain store's
//! flush waited for the node store's for half of a stop (docs/benchmarks-history.md),
//! and a store whose memtables are full still waits for the other's flush before it
//! can take more writes. With a thread each they flush at the same time, one per core.
//!
//! Why a log damaged before its end is refused: every open replays the WAL with
//! RocksDB's `TolerateCorruptedTailRecords`, which accepts a last record cut short (a
//! process killed in the middle of a write, which never acknowledged that write) and
//! refuses anything else. RocksDB's default, point-in-time recovery, stops at the first
//! bad record and opens the store as if every later write never happened, without a
//! word. Whether a store may then be recovered to that point is the owner's choice
//! (`DamagedLog`): only a replay for a store whose lost writes can be redone uses
//! point-in-time recovery, and it flushes during the open, so the damaged log is retired
//! in the same manifest write and never replayed again.
//!
//! Why each store has a block cache of its own: options copied from one template share
//! the template's table factory, and with it RocksDB's default block cache (32 MiB),
//! which then lives as long as the process. Every in-process restart reopens the chain
//! store, whose compactions write new table files, so that cache filled with blocks of
//! files long gone, and the live heap grew with every restart until the cache was full
//! (heap profiles in docs/benchmarks-history.md). A cache made at open and released at
//! close keeps a store's memory bounded by its own use.

use std::sync::OnceLock;

use rocksdb::{BlockBasedOptions, Cache, DBCompressionType, DBRecoveryMode, Env, Options};

/// Block cache of one store (all of its column families share it), freed at close.
const BLOCK_CACHE_BYTES: usize = 8 * 1024 * 1024;

/// Flush threads of the process-wide pool: one per store that may close at the same
/// time (the node store and the chain store).
const FLUSH_THREADS: i32 = 2;

/// Memtable size per column family: small, so background flushes keep up while the
/// node runs, a flush that a close waits for is short, and the WAL a close leaves to
/// the next open is too.
const WRITE_BUFFER_BYTES: usize = 2 * 1024 * 1024;

/// The options RocksDB cannot take from a setter, in RocksDB's options-file format.
/// Everything not named here keeps RocksDB's default; [`base_options`] sets the rest.
const OPTIONS_FILE: &str = "\
[Version]
  rocksdb_version=10.4.2
  options_file_version=1.1

[DBOptions]
  avoid_flush_during_recovery=true

[CFOptions \"default\"]
";

/// A block cache for one store: pass it to every [`base_options`] call of that store.
pub(crate) fn new_block_cache() -> Cache {
    Cache::new_lru_cache(BLOCK_CACHE_BYTES)
}

/// How an open replays the write-ahead log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    /// Every record, keeping them in memtables; a last record cut short is dropped,
    /// any other damage refuses the open.
    Whole,
    /// Up to the first damaged record (RocksDB's point-in-time recovery), flushing what
    /// was replayed during the open, which retires the damaged log.
    ToLastConsistentWrite,
}

/// The options of a store and of each of its column families, all reading through
/// `block_cache`, replaying the log as `replay` says.
pub(crate) fn base_options(block_cache: &Cache, replay: Replay) -> Options {
    size_flush_pool_once();
    let mut options = match replay {
        Replay::Whole => {
            let mut options = recovery_options().clone();
            options.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
            options
        }
        // RocksDB's default flushes the replayed WAL during the open.
        Replay::ToLastConsistentWrite => {
            let mut options = Options::default();
            options.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
            options
        }
    };
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.set_keep_log_file_num(4);
    options.set_max_open_files(512);
    options.set_compression_type(DBCompressionType::Lz4);
    // Table files a flush writes (level 0) are not compressed: a close waits for a flush
    // that is running, and compressing was a measurable part of it. Compactions compress
    // the data into the levels below.
    options.set_compression_per_level(&[
        DBCompressionType::None,
        DBCompressionType::Lz4,
        DBCompressionType::Lz4,
        DBCompressionType::Lz4,
        DBCompressionType::Lz4,
        DBCompressionType::Lz4,
        DBCompressionType::Lz4,
    ]);
    options.set_write_buffer_size(WRITE_BUFFER_BYTES);
    options.set_max_write_buffer_number(2);
    options.set_max_background_jobs(2);
    // One flush job (one manifest sync) for all column families, not one each.
    options.set_atomic_flush(true);
    // Table files are opened on the opening thread. RocksDB's default starts 16 threads
    // per column family to open them in parallel; for stores of a few dozen files
    // starting the threads cost more than the opens, and an open took twice as long.
    options.set_max_file_opening_threads(1);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(block_cache);
    options.set_block_based_table_factory(&table);
    // No statistics dump or persistence every 10 minutes: each open registers such
    // tasks in RocksDB's process-wide timer, and a closed store's tasks stay queued
    // until they fall due, so a process that reopens stores piled them up.
    options.set_stats_dump_period_sec(0);
    options.set_stats_persist_period_sec(0);
    options
}

/// Gives RocksDB's process-wide flush pool [`FLUSH_THREADS`] threads, once per process
/// (an open only ever raises the pool to its own need, one).
fn size_flush_pool_once() {
    static SIZED: OnceLock<()> = OnceLock::new();
    SIZED.get_or_init(|| match Env::new() {
        // `Env::new` is RocksDB's default environment, the one every store runs on.
        Ok(mut env) => env.set_high_priority_background_threads(FLUSH_THREADS),
        Err(err) => {
            tracing::warn!(error = %err, "could not size RocksDB's flush pool; stores will flush one at a time")
        }
    });
}

/// RocksDB's defaults plus [`OPTIONS_FILE`], loaded once per process.
fn recovery_options() -> &'static Options {
    static OPTIONS: OnceLock<Options> = OnceLock::new();
    OPTIONS.get_or_init(|| match load_options_file() {
        Ok(options) => options,
        // An unwritable temporary directory gets here (a RocksDB that rejected the file
        // would fail the store's tests). The stores still work with RocksDB's default,
        // which flushes the replayed WAL during the open: slower starts after a stop,
        // never lost data.
        Err(detail) => {
            tracing::warn!(%detail, "could not load the stores' recovery options; opens will flush the replayed WAL");
            Options::default()
        }
    })
}

fn load_options_file() -> Result<Options, String> {
    // A fresh directory of our own (random name, mode 0700), removed when dropped.
    let directory = tempfile::Builder::new()
        .prefix("mpc-store-options-")
        .tempdir()
        .map_err(|err| format!("temporary directory: {err}"))?;
    let file = directory.path().join("OPTIONS-000001");
    std::fs::write(&file, OPTIONS_FILE).map_err(|err| format!("{}: {err}", file.display()))?;
    let env = Env::new().map_err(|err| err.to_string())?;
    // The cache would go to the column families the file lists; only the database
    // options are kept.
    let (options, _families) =
        Options::load_latest(directory.path(), env, false, Cache::new_lru_cache(0)).map_err(|err| err.to_string())?;
    Ok(options)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use crate::{Column, Store, StoreOptions, StoreUpdate};

    /// A store with about 4.5 MiB in its memtables (under each column's 2 MiB limit, so
    /// nothing has flushed yet): a flush of it takes milliseconds.
    fn store_with_full_memtables(path: &std::path::Path) -> Arc<Store> {
        let store = Store::open(path, &StoreOptions::new("flush-pool", "flush-pool-test")).unwrap();
        let columns = [
            Column::SignRequests,
            Column::SignRequestsById,
            Column::SignResponses,
            Column::IndexedBlocks,
            Column::Misc,
        ];
        for column in columns {
            let mut update = StoreUpdate::new();
            for key in 0u32..900 {
                update.put(column, key.to_be_bytes(), [7u8; 1024]);
            }
            store.commit(update).unwrap();
        }
        store
    }

    /// The node store and the chain store flush at the same time, one per flush thread:
    /// with RocksDB's own sizing (one thread for the process) the second store's flush
    /// waited for the first one's, at a stop that flushed 16 ms of 31.
    #[test]
    fn two_stores_flush_at_the_same_time() {
        let dir = tempfile::tempdir().unwrap();
        let stores =
            [store_with_full_memtables(&dir.path().join("a")), store_with_full_memtables(&dir.path().join("b"))];
        let flushing: Vec<_> = stores
            .iter()
            .map(|store| {
                let store = store.clone();
                std::thread::spawn(move || store.flush().unwrap())
            })
            .collect();
        let mut both_at_once = false;
        let patience = Instant::now() + Duration::from_secs(10);
        while !both_at_once && !flushing.iter().all(|thread| thread.is_finished()) && Instant::now() < patience {
            both_at_once = stores.iter().all(|store| store.running_flushes() > 0);
        }
        for thread in flushing {
            thread.join().unwrap();
        }
        assert!(both_at_once, "the two stores never flushed at the same time");
    }
}
