//! A close syncs the WAL instead of flushing; the next open replays it. What a store
//! must still guarantee across many such cycles, when an open flushes what it
//! replayed, and when a close must flush after all.

mod common;

use common::{commit_and_close, table_files, wal_bytes, wal_files};
use mpc_store::{Column, Store, StoreOptions, StoreUpdate};

fn options() -> StoreOptions {
    StoreOptions::new("cycles", "close-and-reopen-test")
}

/// Every open starts a new WAL file. A run that writes little (a restart loop) must not
/// leave one more each time, or every open would replay all of them.
#[test]
fn every_batch_survives_many_cycles_and_the_wal_files_do_not_pile_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    const CYCLES: u32 = 100;
    let mut most_wal_files = 0;
    for cycle in 0..CYCLES {
        let store = Store::open(&path, &options()).unwrap();
        for earlier in 0..cycle {
            assert_eq!(
                store.get(Column::Misc, earlier.to_be_bytes()).unwrap().as_deref(),
                Some(&earlier.to_le_bytes()[..]),
                "cycle {cycle}: the batch of cycle {earlier} is gone"
            );
        }
        let mut update = StoreUpdate::new();
        update.put(Column::Misc, cycle.to_be_bytes(), cycle.to_le_bytes());
        store.commit(update).unwrap();
        drop(store);
        most_wal_files = most_wal_files.max(wal_files(&path));
    }
    assert!(most_wal_files <= 3, "up to {most_wal_files} WAL files over {CYCLES} cycles");
    assert!(table_files(&path) > 0, "nothing ever reached a table file");
}

/// The open that finds more WAL files than a close may leave (every fourth open of a
/// restart loop) flushes them in the background while the store is in use, so its
/// close does not have to: the flush is off the stop.
#[test]
fn an_open_with_too_many_wal_files_flushes_them_before_the_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let write = |store: &Store, key: u32| {
        let mut update = StoreUpdate::new();
        update.put(Column::Misc, key.to_be_bytes(), key.to_le_bytes());
        store.commit(update).unwrap();
    };
    for cycle in 0..3 {
        write(&Store::open(&path, &options()).unwrap(), cycle);
    }
    assert_eq!((wal_files(&path), table_files(&path)), (3, 0), "three small runs, each left its WAL file");
    let store = Store::open(&path, &options()).unwrap();
    // Bounded so a build without the flush fails instead of hanging.
    let patience = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while wal_files(&path) > 1 && std::time::Instant::now() < patience {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(wal_files(&path), 1, "the replayed WAL files were not flushed while the store was open");
    assert!(table_files(&path) > 0);
    write(&store, 3);
    drop(store);
    let store = Store::open(&path, &options()).unwrap();
    for key in 0..4u32 {
        assert_eq!(store.get(Column::Misc, key.to_be_bytes()).unwrap().as_deref(), Some(&key.to_le_bytes()[..]));
    }
}

/// A close does not flush because of the WAL's size: even most of a memtable stays in
/// the WAL, so the stop does not wait for table files to be built. The next open
/// replays all of it and, since that is over the replay budget, flushes it in the
/// background, so that the open after it does not replay the same bytes again.
#[test]
fn a_close_leaves_a_full_wal_to_the_next_open_which_flushes_it_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut update = StoreUpdate::new();
    for key in 0u32..768 {
        update.put(Column::SignRequests, key.to_be_bytes(), [7u8; 1024]);
    }
    // 768 KiB: over the replay budget (512 KiB), under a memtable (2 MiB), so no flush
    // but the close's could have written table files here.
    commit_and_close(&path, &options(), update);
    assert!(wal_bytes(&path) > 768 * 1024, "the 768 KiB are not in the WAL");
    assert_eq!(table_files(&path), 0, "the close flushed the 768 KiB");
    let store = Store::open(&path, &options()).unwrap();
    assert_eq!(store.iter(Column::SignRequests, None).unwrap().count(), 768, "the replay lost writes");
    // Bounded so a build without the flush fails instead of hanging.
    let patience = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while (table_files(&path) == 0 || wal_bytes(&path) > 8 * 1024) && std::time::Instant::now() < patience {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(table_files(&path) > 0, "the open did not flush what it replayed");
    assert!(wal_bytes(&path) <= 8 * 1024, "the WAL still holds what the open flushed");
    drop(store);
    let store = Store::open(&path, &options()).unwrap();
    assert_eq!(store.iter(Column::SignRequests, None).unwrap().count(), 768);
}

/// The open replays a WAL the close left and keeps it in memtables: writing it to
/// table files first is the wait the close saved (`avoid_flush_during_recovery`).
#[test]
fn an_open_keeps_what_it_replays_in_memtables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut update = StoreUpdate::new();
    update.put(Column::Misc, b"key", b"value");
    commit_and_close(&path, &options(), update);
    assert_eq!(table_files(&path), 0, "the close wrote table files");
    let store = Store::open(&path, &options()).unwrap();
    assert_eq!(table_files(&path), 0, "the open flushed what it replayed");
    assert_eq!(store.get(Column::Misc, b"key").unwrap().as_deref(), Some(&b"value"[..]));
}

/// Stores used to copy their options from one template and so shared RocksDB's default
/// block cache for the life of the process: every reopen of a store filled it with
/// blocks of table files no store would read again (docs/benchmarks.md, the restart
/// soak). Each store now reads through a cache of its own, released when it closes.
#[test]
fn each_store_reads_through_a_block_cache_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let first = Store::open(&dir.path().join("first"), &options()).unwrap();
    let mut update = StoreUpdate::new();
    for key in 0u32..1000 {
        update.put(Column::Misc, key.to_be_bytes(), [7u8; 100]);
    }
    first.commit(update).unwrap();
    first.flush().unwrap();
    let second = Store::open(&dir.path().join("second"), &options()).unwrap();
    let (first_before, second_before) = (first.block_cache_bytes(), second.block_cache_bytes());
    for key in 0u32..1000 {
        assert!(first.get(Column::Misc, key.to_be_bytes()).unwrap().is_some());
    }
    assert!(first.block_cache_bytes() > first_before + 50_000, "reads of table files bypassed the store's cache");
    assert_eq!(second.block_cache_bytes(), second_before, "the second store reads through the first one's cache");
}
