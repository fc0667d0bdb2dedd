//! The upstream contract: `block_until_all_instances_are_dropped` returns once the last
//! store is closed. Alone in its own test binary because it waits for every instance
//! of the process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

mod common;

use common::wal_bytes;
use mpc_store::{Column, Store, StoreOptions, StoreUpdate, block_until_all_instances_are_dropped, instance_count};

#[test]
fn block_until_all_instances_are_dropped_returns_after_the_last_close_and_data_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = Store::open(&path, &StoreOptions::new("only", "unbounded")).unwrap();
    let mut update = StoreUpdate::new();
    update.put(Column::Misc, b"key", b"value");
    store.commit(update).unwrap();
    assert_eq!(instance_count(), 1);

    let dropped = Arc::new(AtomicBool::new(false));
    let closer = {
        let dropped = dropped.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            dropped.store(true, Ordering::SeqCst);
            drop(store);
        })
    };
    block_until_all_instances_are_dropped();
    assert!(dropped.load(Ordering::SeqCst), "returned before the store was dropped");
    assert_eq!(instance_count(), 0);
    closer.join().unwrap();

    // Closed with the WAL synced, not flushed to table files: the batch is in the WAL
    // and the next open replays it.
    assert!(wal_bytes(&path) > 0, "the close left no WAL behind: it flushed, or the batch is lost");
    let reopened = Store::open(&path, &StoreOptions::new("only", "unbounded")).unwrap();
    assert_eq!(reopened.get(Column::Misc, b"key").unwrap().as_deref(), Some(&b"value"[..]));
}
