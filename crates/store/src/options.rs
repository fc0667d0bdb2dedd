//! The RocksDB options every store is opened with, including the one the `rocksdb`
//! crate has no setter for.
//!
//! Why a close may leave memtables unflushed: a stop waits for the close, and the
//! flush (one table file per column family, each synced, plus a manifest sync) was
//! most of a stop even when the memtables held a few kilobytes. The WAL, synced at
//! close, already holds every committed batch. So a close with little in memtables
//! only syncs the WAL (see `Store`'s `Drop`), and the next open replays it and, with
//! `avoid_flush_during_recovery`, keeps it in memtables instead of writing table
//! files before the open returns. A close with a large WAL still flushes:
//! replaying megabytes costs the next start more than the flush costs the stop
//! (docs/benchmarks.md); that flush writes level 0 uncompressed, and an open that
//! finds such a WAL already starts it in the background (`Store::open`).
//!
//! `avoid_flush_during_recovery` is a RocksDB option that neither the `rocksdb` crate
//! 0.24 nor RocksDB's C API sets directly. RocksDB does load any option from its own
//! options-file format (`LoadLatestOptions`, public in the crate as
//! `Options::load_latest`), so the options start from such a file, written once per
//! process into a private temporary directory that is removed right after loading.
//!
//! Why each store has a block cache of its own: options copied from one template share
//! the template's table factory, and with it RocksDB's default block cache (32 MiB),
//! which then lives as long as the process. Every in-process restart reopens the chain
//! store, whose compactions write new table files, so that cache filled with blocks of
//! files long gone: 8.6 KiB of live heap per restart until it reached 32 MiB (heap
//! profiles in docs/benchmarks.md). A cache made at open and released at close keeps
//! a store's memory bounded by its own use.

use std::sync::OnceLock;

use rocksdb::{BlockBasedOptions, Cache, DBCompressionType, Env, Options};

/// Block cache of one store (all of its column families share it), freed at close.
const BLOCK_CACHE_BYTES: usize = 8 * 1024 * 1024;

/// Memtable size per column family: small, so background flushes keep up while the
/// node runs and a close that does flush has little to write.
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

/// The options of a store and of each of its column families, all reading through
/// `block_cache`.
pub(crate) fn base_options(block_cache: &Cache) -> Options {
    let mut options = recovery_options().clone();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.set_keep_log_file_num(4);
    options.set_max_open_files(512);
    options.set_compression_type(DBCompressionType::Lz4);
    // Table files a flush writes (level 0) are not compressed: a stop that flushes waits
    // for them, and compressing took about a seventh of a full-speed stop
    // (docs/benchmarks.md). Compactions compress the data into the levels below.
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
    // starting the threads cost more than the opens (with them a read-only open took
    // about 5 ms and a read-write open 10 ms; without, 2.5 and 6.5).
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
    let (options, _families) = Options::load_latest(directory.path(), env, false, Cache::new_lru_cache(0))
        .map_err(|err| err.to_string())?;
    Ok(options)
}
