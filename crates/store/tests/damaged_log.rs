//! A write-ahead log damaged before its end (a disk error) is never replayed silently
//! up to the damage: a store that cannot redo the lost writes refuses to open and
//! changes nothing, one that can recovers to the last consistent write and says what it
//! dropped. A last record cut short (a write a kill interrupted) is tolerated as before.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mpc_store::{Column, Store, StoreError, StoreOptions, StoreUpdate};

/// Commits in each test store: enough records that the middle of the log is one.
const COMMITS: u32 = 200;

fn options() -> StoreOptions {
    StoreOptions::new("damaged", "damaged-log-test")
}

/// A closed store whose WAL holds `COMMITS` commits (a close syncs the WAL and leaves
/// the memtables in it), key `i` holding `i`.
fn store_with_commits(path: &Path) {
    let store = Store::open(path, &options()).unwrap();
    for index in 0..COMMITS {
        let mut update = StoreUpdate::new();
        update.put(Column::Misc, index.to_be_bytes(), [index as u8; 64]);
        store.commit(update).unwrap();
    }
}

/// A closed store of `COMMITS` commits in a new temporary directory, and its one WAL
/// file.
fn store_and_log() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    store_with_commits(&path);
    let log = only_log(&path);
    (dir, path, log)
}

/// Opens the store at `path` for reading only or for writing.
fn open(path: &Path, options: &StoreOptions, read_only: bool) -> Result<std::sync::Arc<Store>, StoreError> {
    if read_only { Store::open_read_only(path, options) } else { Store::open(path, options) }
}

/// The one WAL file of the store.
fn only_log(path: &Path) -> PathBuf {
    let logs: Vec<PathBuf> = std::fs::read_dir(path)
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    logs[0].clone()
}

/// Flips a byte in the middle of the log, as a disk error would.
fn damage_the_middle(log: &Path) -> u64 {
    let mut bytes = std::fs::read(log).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(log, bytes).unwrap();
    middle as u64
}

/// Every file of the store with its bytes (the info log aside, which any open writes).
fn snapshot(path: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(path)
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| (entry.file_name().to_string_lossy().into_owned(), entry.path()))
        .filter(|(name, _)| !name.starts_with("LOG"))
        .map(|(name, path)| (name, std::fs::read(path).unwrap()))
        .collect()
}

/// The keys present, in order.
fn keys(store: &Store) -> Vec<u32> {
    store
        .iter(Column::Misc, None)
        .unwrap()
        .map(|entry| entry.unwrap().0)
        .filter_map(|key| <[u8; 4]>::try_from(&*key).ok().map(u32::from_be_bytes))
        .collect()
}

#[test]
fn a_last_record_cut_short_is_tolerated_and_every_earlier_commit_survives() {
    let (_dir, path, log) = store_and_log();
    let length = std::fs::metadata(&log).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&log).unwrap().set_len(length - 20).unwrap();
    for read_only in [true, false] {
        let store = open(&path, &options(), read_only).unwrap();
        assert!(store.recovered_from().is_none(), "a torn tail is no damage");
        assert_eq!(
            keys(&store),
            (0..COMMITS - 1).collect::<Vec<_>>(),
            "read_only {read_only}: only the torn commit is gone"
        );
    }
}

#[test]
fn a_store_that_refuses_a_damaged_log_names_it_and_changes_nothing() {
    let (_dir, path, log) = store_and_log();
    let offset = damage_the_middle(&log);
    let before = snapshot(&path);
    for read_only in [true, false] {
        let opened = open(&path, &options(), read_only);
        let Err(StoreError::DamagedLog { damage, .. }) = opened else {
            panic!(
                "read_only {read_only}: a damaged log must be refused, got {:?}",
                opened.map(|store| keys(&store).len())
            )
        };
        assert_eq!(damage.file, log);
        assert!(
            damage.offset <= offset && offset - damage.offset < 200,
            "damage at {} for a flip at {offset}",
            damage.offset
        );
        assert!(damage.writes_after > COMMITS as u64 / 3, "{damage}");
        let message = StoreError::DamagedLog { path: path.clone(), damage }.to_string();
        assert!(message.contains(&log.display().to_string()) && message.contains("Nothing was changed"), "{message}");
        assert_eq!(snapshot(&path), before, "read_only {read_only}: the refusal changed the store");
    }
}

#[test]
fn a_store_that_recovers_keeps_the_writes_before_the_damage_says_what_it_dropped_and_retires_the_log() {
    let (_dir, path, log) = store_and_log();
    damage_the_middle(&log);
    let recovering = options().recovering_damaged_log();

    let before = snapshot(&path);
    let read_only = Store::open_read_only(&path, &recovering).unwrap();
    let kept = keys(&read_only);
    drop(read_only);
    assert_eq!(snapshot(&path), before, "a read-only recovery changes nothing");

    let store = Store::open(&path, &recovering).unwrap();
    let damage = store.recovered_from().expect("the open recovered past the damage").clone();
    assert_eq!(damage.file, log);
    assert_eq!(keys(&store), kept, "read-only and read-write recoveries agree");
    assert!(!kept.is_empty() && kept.len() < COMMITS as usize, "kept {} of {COMMITS}", kept.len());
    assert_eq!(kept, (0..kept.len() as u32).collect::<Vec<_>>(), "a consistent prefix, nothing skipped");
    let dropped = COMMITS as u64 - kept.len() as u64;
    assert!(dropped == damage.writes_after || dropped == damage.writes_after + 1, "dropped {dropped}: {damage}");
    let mut update = StoreUpdate::new();
    update.put(Column::Misc, b"after recovery", b"1");
    store.commit(update).unwrap();
    drop(store);

    assert!(!log.exists(), "the damaged log is retired by the recovering open");
    let store = Store::open(&path, &options()).unwrap();
    assert!(store.recovered_from().is_none(), "the next open finds nothing damaged");
    assert_eq!(store.get(Column::Misc, b"after recovery").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(keys(&store), kept);
}
