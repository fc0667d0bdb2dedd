//! A close syncs the WAL instead of flushing memtables; the next open replays it. What
//! a store must still guarantee across many such cycles.

use std::path::Path;

use mpc_store::{Column, Store, StoreOptions, StoreUpdate};

fn options() -> StoreOptions {
    StoreOptions::new("cycles", "close-and-reopen-test")
}

fn files_ending_with(path: &Path, suffix: &str) -> usize {
    std::fs::read_dir(path)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(suffix))
        .count()
}

/// Each open replays the last run's WAL and starts a new one. Unless the replayed
/// writes reach table files, every run's WAL would stay, and every open would replay
/// all of them; runs too short for the background flush are the hard case.
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
        most_wal_files = most_wal_files.max(files_ending_with(&path, ".log"));
    }
    // At most 3 found by an open that does not wait, the one it starts, and the one
    // its flush switches to.
    assert!(most_wal_files <= 5, "up to {most_wal_files} WAL files over {CYCLES} cycles");
    assert!(files_ending_with(&path, ".sst") > 0, "nothing ever reached a table file");
}
