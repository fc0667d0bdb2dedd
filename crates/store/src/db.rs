//! One RocksDB instance: open with typed errors, atomic commits, typed reads. How a
//! close persists the WAL and when a store flushes is `wal_policy`'s concern; what an
//! open does with a damaged log is [`DamagedLog`]'s.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{
    Cache, ColumnFamilyDescriptor, DB, DEFAULT_COLUMN_FAMILY_NAME as DEFAULT_COLUMN_FAMILY, IteratorMode, Options,
    WriteBatch, WriteOptions,
};

use crate::log_damage::{LogDamage, find_log_damage};
use crate::options::{Replay, base_options, new_block_cache};
use crate::tracker::InstanceGuard;
use crate::wal_policy::{flush_all_families, flush_replayed_wal_if_large, persist_at_close};
use crate::{Column, StoreError, StoreHolder, StoreResult, StoreUpdate};

/// One raw entry of a column: key and value.
pub type Entry = (Box<[u8]>, Box<[u8]>);

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Short name used in logs and in the tracker ("node", "chain").
    pub name: String,
    /// Subsystem the store belongs to; a restart waits for its own group only.
    pub group: String,
    /// `fsync` the WAL on every commit. Off trades the last few commits on power loss
    /// (never on a process crash: the WAL is always written) for throughput.
    pub sync_writes: bool,
    /// What an open does with a write-ahead log damaged before its end.
    pub damaged_log: DamagedLog,
}

/// What an open does when the store's write-ahead log is damaged before its end (a disk
/// error, not a write cut short by a kill, which every open tolerates). Chosen per
/// store, by whether the writes after the damage can be redone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamagedLog {
    /// Refuse to open ([`StoreError::DamagedLog`]), changing nothing: for a store whose
    /// lost writes cannot be redone. A secret store is one: a lost delete would bring a
    /// used nonce back.
    Refuse,
    /// Open at the last consistent write before the damage, drop every later write,
    /// and say so: a warning names the file and counts what was dropped, and
    /// [`Store::recovered_from`] lets the owner say what that means for its data. For a
    /// store whose data can be rebuilt (indexed state, a chain that can be synced again).
    RecoverToLastConsistentWrite,
}

impl StoreOptions {
    /// Options for a store called `name` in subsystem `group`, with synchronous writes off
    /// and a damaged log refused (the safe choice; a store whose data can be rebuilt opts
    /// into recovery with [`StoreOptions::recovering_damaged_log`]).
    pub fn new(name: &str, group: &str) -> Self {
        StoreOptions {
            name: name.to_owned(),
            group: group.to_owned(),
            sync_writes: false,
            damaged_log: DamagedLog::Refuse,
        }
    }

    /// These options with a damaged log recovered to its last consistent write.
    pub fn recovering_damaged_log(self) -> Self {
        StoreOptions { damaged_log: DamagedLog::RecoverToLastConsistentWrite, ..self }
    }
}

/// A [`StoreUpdate`] already in RocksDB's form for one open store instance, written
/// by that instance's [`Store::write`]. The update itself is kept beside its batch:
/// RocksDB consumes a batch it refuses during a write stall, and the retry rebuilds it.
#[must_use = "a prepared update does nothing until it is written"]
pub struct PreparedUpdate {
    batch: WriteBatch,
    update: StoreUpdate,
    instance: u64,
}

/// An open RocksDB instance, counted by the process-wide tracker until it is closed.
pub struct Store {
    db: DB,
    path: PathBuf,
    name: String,
    read_only: bool,
    write_options: WriteOptions,
    /// This store's own block cache, shared by its column families and released with
    /// it (see `options`).
    block_cache: Cache,
    /// Tries RocksDB refused because writes were stalled (see [`Store::write`]).
    stalled_writes: std::sync::atomic::AtomicU64,
    /// The damaged log this open recovered past, if it did.
    recovered_from: Option<LogDamage>,
    /// Last field on purpose: fields drop in order, so RocksDB is closed before the
    /// tracker's count goes down, and "count is 0" really means "all closed".
    instance: InstanceGuard,
}

/// True when `path` holds a RocksDB instance (its `CURRENT` file exists).
pub(crate) fn store_exists(path: &Path) -> bool {
    path.join("CURRENT").is_file()
}

/// How a store is opened.
#[derive(Clone, Copy)]
enum Access<'a> {
    /// For reading and writing; created if missing.
    ReadWrite,
    /// For reading only, with only these columns readable (the open replays the WAL
    /// into their memtables only).
    ReadOnly(&'a [Column]),
}

impl Store {
    /// Opens (or creates) the store at `path`. Refuses an existing directory that is not
    /// one of our stores, and reports a second process on the same path as
    /// [`StoreError::Locked`].
    pub fn open(path: &Path, options: &StoreOptions) -> StoreResult<Arc<Store>> {
        std::fs::create_dir_all(path).map_err(|err| StoreError::from_io(path, err))?;
        Self::open_as(path, options, Access::ReadWrite)
    }

    /// Opens an existing store without writing anything to its directory (no lock, no
    /// new manifest, the info log goes elsewhere). Used by `mpc-node check`.
    pub fn open_read_only(path: &Path, options: &StoreOptions) -> StoreResult<Arc<Store>> {
        Self::open_read_only_columns(path, options, &Column::ALL)
    }

    /// [`Store::open_read_only`] with only `columns` readable: the open replays the WAL
    /// into the memtables of those columns only. Used to read the schema version (one
    /// key) before deciding whether the store may be opened for writing.
    pub fn open_read_only_columns(path: &Path, options: &StoreOptions, columns: &[Column]) -> StoreResult<Arc<Store>> {
        if !store_exists(path) {
            return Err(StoreError::Corrupt { path: path.to_path_buf(), detail: "no RocksDB store here".into() });
        }
        Self::open_as(path, options, Access::ReadOnly(columns))
    }

    /// The one way a [`Store`] comes to be: the whole log replayed, or, when RocksDB
    /// refuses a log damaged before its end, what `options.damaged_log` says.
    fn open_as(path: &Path, options: &StoreOptions, access: Access) -> StoreResult<Arc<Store>> {
        let existing = existing_column_families(path)?;
        let block_cache = new_block_cache();
        let (db, recovered_from) = match open_db(path, &existing, &block_cache, access, Replay::Whole) {
            Ok(db) => (db, None),
            Err(err) => {
                let Some(damage) = damage_behind(path, &err) else { return Err(err) };
                if options.damaged_log == DamagedLog::Refuse {
                    return Err(StoreError::DamagedLog { path: path.to_path_buf(), damage });
                }
                let db = open_db(path, &existing, &block_cache, access, Replay::ToLastConsistentWrite)?;
                if matches!(access, Access::ReadWrite) {
                    tracing::warn!(
                        store = %options.name, %damage,
                        "store recovered to the last consistent write before its damaged log; the writes after it are dropped"
                    );
                }
                (db, Some(damage))
            }
        };
        let read_only = matches!(access, Access::ReadOnly(_));
        let mut write_options = WriteOptions::default();
        if !read_only {
            write_options.set_sync(options.sync_writes);
            write_options.disable_wal(false);
            write_options.set_no_slowdown(true);
            flush_replayed_wal_if_large(&db, path, &options.name);
        }
        tracing::debug!(store = %options.name, path = %path.display(), read_only, "store opened");
        Ok(Arc::new(Store {
            db,
            path: path.to_path_buf(),
            name: options.name.clone(),
            read_only,
            write_options,
            block_cache,
            stalled_writes: Default::default(),
            recovered_from,
            instance: InstanceGuard::register(&options.name, path.to_path_buf(), &options.group),
        }))
    }

    /// The damaged write-ahead log this open recovered past
    /// ([`DamagedLog::RecoverToLastConsistentWrite`]), so the owner can say what the
    /// dropped writes were in its own terms (which blocks will be indexed again).
    pub fn recovered_from(&self) -> Option<&LogDamage> {
        self.recovered_from.as_ref()
    }

    /// Short name of the store.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Directory of the store.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes this store's block cache holds now (blocks read from its table files).
    pub fn block_cache_bytes(&self) -> usize {
        self.block_cache.get_usage()
    }

    /// Bytes this store's memtables hold now, over all its columns: the commits not yet
    /// flushed to a table file, counted as RocksDB counts them, by the arena blocks
    /// allocated (a step of 256 KiB at a time). Why: they grow with every commit until
    /// a write buffer fills and flushes (2 MiB per column, see `options`), so a process
    /// whose memory grows must be read beside them to tell the stores' data from a leak.
    pub fn memtable_bytes(&self) -> u64 {
        Column::ALL
            .iter()
            .filter_map(|column| self.column_family(*column).ok())
            .filter_map(|family| {
                self.db.property_int_value_cf(family, "rocksdb.cur-size-all-mem-tables").ok().flatten()
            })
            .sum()
    }

    /// A named reference for a long-lived user; see [`StoreHolder`].
    pub fn holder(self: &Arc<Self>, name: &str) -> StoreHolder {
        StoreHolder::new(self.clone(), name)
    }

    pub(crate) fn instance_guard(&self) -> &InstanceGuard {
        &self.instance
    }

    /// Tries of a commit that RocksDB refused because writes were stalled, since the
    /// open (tests read it to know that a stall happened).
    #[cfg(test)]
    fn stalled_writes(&self) -> u64 {
        self.stalled_writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Flush jobs of this store running right now (tests read it to know a flush ran).
    #[cfg(test)]
    pub(crate) fn running_flushes(&self) -> u64 {
        crate::wal_policy::int_property(&self.db, "rocksdb.num-running-flushes")
    }

    fn column_family(&self, column: Column) -> StoreResult<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(column.name())
            .ok_or(StoreError::MissingColumnFamily { path: self.path.clone(), column: column.name() })
    }

    /// Reads the raw value under `key`.
    pub fn get(&self, column: Column, key: impl AsRef<[u8]>) -> StoreResult<Option<Vec<u8>>> {
        let family = self.column_family(column)?;
        self.db.get_cf(family, key).map_err(|err| StoreError::from_rocksdb(&self.path, err))
    }

    /// Reads and decodes a JSON value under `key`.
    pub fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        column: Column,
        key: impl AsRef<[u8]>,
    ) -> StoreResult<Option<T>> {
        let key = key.as_ref();
        match self.get(column, key)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|err| StoreError::Decode {
                path: self.path.clone(),
                what: format!("{} record {}", column.name(), printable_key(key)),
                detail: err.to_string(),
            }),
        }
    }

    /// Iterates a column in key order, starting at `from` (inclusive) or at the start.
    pub fn iter(
        &self,
        column: Column,
        from: Option<&[u8]>,
    ) -> StoreResult<impl Iterator<Item = StoreResult<Entry>> + '_> {
        let family = self.column_family(column)?;
        let mode = match from {
            Some(key) => IteratorMode::From(key, rocksdb::Direction::Forward),
            None => IteratorMode::Start,
        };
        Ok(self.db.iterator_cf(family, mode).map(|item| item.map_err(|err| StoreError::from_rocksdb(&self.path, err))))
    }

    /// Iterates a column in reverse key order, from its last entry: for a reader that
    /// wants the newest entries of a column keyed by height first.
    pub fn iter_reverse(&self, column: Column) -> StoreResult<impl Iterator<Item = StoreResult<Entry>> + '_> {
        let family = self.column_family(column)?;
        Ok(self
            .db
            .iterator_cf(family, IteratorMode::End)
            .map(|item| item.map_err(|err| StoreError::from_rocksdb(&self.path, err))))
    }

    /// The last entry of a column in key order.
    pub fn last(&self, column: Column) -> StoreResult<Option<Entry>> {
        self.iter_reverse(column)?.next().transpose()
    }

    /// Applies every write of `update` atomically (one RocksDB `WriteBatch`, WAL on).
    pub fn commit(&self, update: StoreUpdate) -> StoreResult<()> {
        self.write(self.prepare(update)?)
    }

    /// Turns `update` into this store's RocksDB batch without writing it, so a caller
    /// that commits in order on one thread can build the next batches on another
    /// ([`Store::write`] then only writes).
    pub fn prepare(&self, update: StoreUpdate) -> StoreResult<PreparedUpdate> {
        Ok(PreparedUpdate { batch: self.batch_of(&update)?, update, instance: self.instance.id() })
    }

    /// RocksDB's batch of every write of `update`, for this instance's column families.
    fn batch_of(&self, update: &StoreUpdate) -> StoreResult<WriteBatch> {
        let mut batch = WriteBatch::default();
        for (column, key, value) in &update.ops {
            let family = self.column_family(*column)?;
            match value {
                Some(value) => batch.put_cf(family, key, value),
                None => batch.delete_cf(family, key),
            }
        }
        Ok(batch)
    }

    /// Applies a batch [`Store::prepare`] built, atomically. A batch of another store
    /// instance is refused: its column families are that instance's.
    ///
    /// RocksDB is asked not to wait inside the write when it stalls writes (memtables
    /// waiting for their flush); this waits outside instead and tries again. When the
    /// flush a writer waits for inside RocksDB meets a full disk, RocksDB's own
    /// recovery from it keeps the writer waiting until space is freed, and the
    /// recovery's flush needs the write queue that writer holds: the two wait for each
    /// other for ever (RocksDB 10.4), and the commit hung instead of failing. Outside,
    /// the next try gets the flush's error ([`StoreError::DiskFull`]).
    pub fn write(&self, prepared: PreparedUpdate) -> StoreResult<()> {
        self.write_with(prepared, &self.write_options)
    }

    /// Applies every write of `update` atomically and syncs the WAL before it returns,
    /// whatever the store's `sync_writes`: for a write that something outside the
    /// process will rely on once this returns (an acknowledged transaction, a secret
    /// that is about to be used), which must survive a power loss too.
    pub fn commit_durably(&self, update: StoreUpdate) -> StoreResult<()> {
        let mut durable = WriteOptions::default();
        durable.set_sync(true);
        durable.set_no_slowdown(true);
        self.write_with(self.prepare(update)?, &durable)
    }

    fn write_with(&self, prepared: PreparedUpdate, options: &WriteOptions) -> StoreResult<()> {
        if self.read_only {
            return Err(StoreError::Io {
                path: self.path.clone(),
                detail: "the store is open for reading only".into(),
            });
        }
        if prepared.instance != self.instance.id() {
            return Err(StoreError::ForeignBatch { path: self.path.clone() });
        }
        let PreparedUpdate { mut batch, update, .. } = prepared;
        let mut pause = FIRST_STALL_PAUSE;
        loop {
            match self.db.write_opt(batch, options) {
                Ok(()) => return Ok(()),
                Err(err) if is_write_stall(&err) => {
                    self.stalled_writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(LONGEST_STALL_PAUSE);
                    batch = self.batch_of(&update)?;
                }
                Err(err) => return Err(StoreError::from_rocksdb(&self.path, err)),
            }
        }
    }

    /// Writes a consistent copy of the store to `destination` (hard links where possible).
    pub fn create_checkpoint(&self, destination: &Path) -> StoreResult<()> {
        let checkpoint =
            rocksdb::checkpoint::Checkpoint::new(&self.db).map_err(|err| StoreError::from_rocksdb(&self.path, err))?;
        checkpoint.create_checkpoint(destination).map_err(|err| StoreError::from_rocksdb(destination, err))
    }

    /// Flushes memtables of every column family and syncs the WAL, so a later open has
    /// nothing to replay (a checkpoint or a migration wants table files only).
    pub fn flush(&self) -> StoreResult<()> {
        if self.read_only {
            return Ok(());
        }
        flush_all_families(&self.db, &self.path, true)?;
        self.sync_wal()
    }

    /// Syncs the WAL: every committed batch survives a power loss from here on.
    fn sync_wal(&self) -> StoreResult<()> {
        if self.read_only {
            return Ok(());
        }
        self.db.flush_wal(true).map_err(|err| StoreError::from_rocksdb(&self.path, err))
    }
}

/// How long a commit refused by a write stall first waits before it tries again: a
/// stall for memtables lasts until a flush ends, milliseconds. Each further refusal
/// doubles the wait up to [`LONGEST_STALL_PAUSE`]: RocksDB's slowdown for piled-up
/// level-0 files (20, below its stop at 36) counts each refused write against its write
/// rate as if it had been written, so the tries keep failing until a compaction ends
/// the slowdown, which takes longer.
const FIRST_STALL_PAUSE: std::time::Duration = std::time::Duration::from_micros(200);

/// The longest wait between tries of a stalled commit: a commit writes at most this
/// long after its stall ends, and rebuilds its batch at most once per such wait while
/// the stall lasts.
const LONGEST_STALL_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// Whether RocksDB refused a write only because writes are stalled (asked not to wait,
/// see [`Store::write`]). A stall that a background error ended is not one: RocksDB
/// then returns that error.
fn is_write_stall(err: &rocksdb::Error) -> bool {
    err.kind() == rocksdb::ErrorKind::Incomplete && err.as_ref().contains("Write stall")
}

impl Drop for Store {
    /// Closes with the WAL synced, leaving the memtables to the next open's replay (see
    /// `options`); flushes first only when too many WAL files would be left
    /// (`wal_policy`).
    fn drop(&mut self) {
        let started = std::time::Instant::now();
        let (flushed, wal_bytes) = persist_at_close(&self.db, &self.path, &self.name, self.read_only);
        tracing::debug!(
            store = %self.name, path = %self.path.display(), flushed, wal_bytes,
            block_cache_bytes = self.block_cache_bytes(), total_ms = started.elapsed().as_millis() as u64,
            "store closed"
        );
    }
}

/// Opens RocksDB at `path` with every family in `existing` (and ours), as `access` asks,
/// replaying the log as `replay` says.
fn open_db(path: &Path, existing: &[String], block_cache: &Cache, access: Access, replay: Replay) -> StoreResult<DB> {
    let mut db_options = base_options(block_cache, replay);
    let opened = match access {
        Access::ReadWrite => DB::open_cf_descriptors(&db_options, path, descriptors(existing, block_cache, replay)),
        Access::ReadOnly(columns) => {
            db_options.create_if_missing(false);
            let log_dir = std::env::temp_dir().join("mpc-store-read-only-logs");
            std::fs::create_dir_all(&log_dir).map_err(|err| StoreError::from_io(&log_dir, err))?;
            db_options.set_db_log_dir(&log_dir);
            let names = existing
                .iter()
                .filter(|name| *name == DEFAULT_COLUMN_FAMILY || columns.iter().any(|column| column.name() == *name));
            DB::open_cf_for_read_only(&db_options, path, names, false)
        }
    };
    opened.map_err(|err| StoreError::from_rocksdb(path, err))
}

/// The damaged log behind an open RocksDB refused as corrupt, if a log is what is
/// damaged (a damaged table file or manifest is reported as RocksDB reported it).
fn damage_behind(path: &Path, err: &StoreError) -> Option<LogDamage> {
    match err {
        StoreError::Corrupt { .. } => find_log_damage(path),
        _ => None,
    }
}

fn existing_column_families(path: &Path) -> StoreResult<Vec<String>> {
    if !store_exists(path) {
        return Ok(Vec::new());
    }
    let names = DB::list_cf(&Options::default(), path).map_err(|err| StoreError::from_rocksdb(path, err))?;
    if let Some(missing) = Column::BASE.iter().find(|column| !names.iter().any(|name| name == column.name())) {
        // A damaged manifest can also list too few families: only a store that opens
        // cleanly with what it lists is really missing a family.
        let mut probe = Options::default();
        probe.set_db_log_dir(std::env::temp_dir().join("mpc-store-read-only-logs"));
        let db = DB::open_cf_for_read_only(&probe, path, &names, false)
            .map_err(|err| StoreError::from_rocksdb(path, err))?;
        // An older binary killed while creating a store left it with some families and
        // no data at all: that is an interrupted creation, finished by the open (which
        // creates the missing families). Anything with data is not ours to adopt.
        let holds_data = names.iter().any(|name| {
            db.cf_handle(name).is_some_and(|family| db.iterator_cf(family, IteratorMode::Start).next().is_some())
        });
        if holds_data {
            return Err(StoreError::MissingColumnFamily { path: path.to_path_buf(), column: missing.name() });
        }
        tracing::warn!(path = %path.display(), "store without data or column families: finishing an interrupted creation");
    }
    Ok(names)
}

/// Our columns plus any family already on disk that this binary does not know (RocksDB
/// refuses to open a store without naming all of its families).
fn descriptors(existing: &[String], block_cache: &Cache, replay: Replay) -> Vec<ColumnFamilyDescriptor> {
    let mut names: Vec<String> = Column::ALL.iter().map(|column| column.name().to_owned()).collect();
    for name in existing {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names.into_iter().map(|name| ColumnFamilyDescriptor::new(name, base_options(block_cache, replay))).collect()
}

fn printable_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) if text.chars().all(|c| !c.is_control()) => text.to_owned(),
        _ => key.iter().map(|byte| format!("{byte:02x}")).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal_policy::wal_files;

    /// A flush running when the store closes is let finish: cancelled, RocksDB would
    /// throw its table files away and the next open would replay all of it again.
    #[test]
    fn a_flush_running_at_the_close_keeps_its_work() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = Store::open(&path, &StoreOptions::new("running-flush", "running-flush-test")).unwrap();
        // Two columns just under their 2 MiB memtables, so the flush takes a while...
        for column in [Column::SignResponses, Column::IndexedBlocks] {
            let mut update = StoreUpdate::new();
            for key in 0u32..1800 {
                update.put(column, key.to_be_bytes(), [7u8; 1024]);
            }
            store.commit(update).unwrap();
        }
        // ...and one over it: the next write switches them all and starts the flush.
        let mut update = StoreUpdate::new();
        for key in 0u32..2600 {
            update.put(Column::SignRequests, key.to_be_bytes(), [7u8; 1024]);
        }
        store.commit(update).unwrap();
        let mut update = StoreUpdate::new();
        update.put(Column::Misc, b"after the switch", b"1");
        store.commit(update).unwrap();
        let patience = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.running_flushes() == 0 && std::time::Instant::now() < patience {
            std::hint::spin_loop();
        }
        assert!(store.running_flushes() > 0, "no flush started");
        drop(store);
        let left = wal_files(&path);
        assert!(
            left.bytes < 64 * 1024,
            "the close left {} bytes of WAL: the running flush was thrown away",
            left.bytes
        );
        let store = Store::open(&path, &StoreOptions::new("running-flush", "running-flush-test")).unwrap();
        assert_eq!(store.iter(Column::SignRequests, None).unwrap().count(), 2600);
        assert_eq!(store.get(Column::Misc, b"after the switch").unwrap().as_deref(), Some(&b"1"[..]));
    }

    /// The memtables' size counts every column's commits and falls to (almost) nothing
    /// when a flush has written them to table files.
    #[test]
    fn memtable_bytes_count_every_column_until_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), &StoreOptions::new("memtables", "memtables-test")).unwrap();
        let empty = store.memtable_bytes();
        let mut sizes = vec![];
        for column in [Column::Blocks, Column::IndexedBlocks] {
            let mut update = StoreUpdate::new();
            for key in 0u32..100 {
                update.put(column, key.to_be_bytes(), [3u8; 1024]);
            }
            store.commit(update).unwrap();
            sizes.push(store.memtable_bytes());
        }
        assert!(sizes[0] >= empty + 100 * 1024, "{empty} -> {sizes:?}");
        assert!(sizes[1] >= sizes[0] + 100 * 1024, "the second column was not counted: {sizes:?}");
        store.flush().unwrap();
        // What is left is the empty memtables' own size, one small block per column.
        let flushed = store.memtable_bytes();
        assert!(flushed <= empty + 4096, "{flushed} after the flush, {empty} before any commit");
    }

    /// Commits faster than the flushes can keep up with meet write stalls; each waits
    /// outside RocksDB and is written whole once the stall ends.
    #[test]
    fn commits_that_meet_a_write_stall_are_written_once_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), &StoreOptions::new("stalls", "stalls-test")).unwrap();
        // Each commit fills more than a memtable, so every commit switches memtables
        // and the next one finds the flush of two of them still running.
        let value = [9u8; 4096];
        let commits = 24u32;
        for commit in 0..commits {
            let mut update = StoreUpdate::new();
            for key in 0u32..600 {
                update.put(Column::SignRequests, (commit * 1000 + key).to_be_bytes(), value);
            }
            update.put(Column::Misc, b"last commit", commit.to_be_bytes());
            store.commit(update).unwrap();
        }
        assert!(store.stalled_writes() > 0, "no commit met a write stall; the test proved nothing");
        assert_eq!(store.iter(Column::SignRequests, None).unwrap().count(), 600 * commits as usize);
        let last = store.get(Column::Misc, b"last commit").unwrap().unwrap();
        assert_eq!(last, (commits - 1).to_be_bytes());
    }
}
