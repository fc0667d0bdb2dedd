//! Helpers shared by the store's integration tests.

use std::path::Path;

use mpc_store::{Store, StoreOptions, StoreUpdate};

/// The files in `path` whose names end with `suffix`, with their sizes.
fn files_ending_with(path: &Path, suffix: &str) -> Vec<u64> {
    std::fs::read_dir(path)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(suffix))
        .map(|entry| entry.metadata().unwrap().len())
        .collect()
}

/// Number of RocksDB table files in the store directory.
#[allow(dead_code)] // not every test binary uses every helper
pub fn table_files(path: &Path) -> usize {
    files_ending_with(path, ".sst").len()
}

/// Number of WAL files in the store directory.
#[allow(dead_code)]
pub fn wal_files(path: &Path) -> usize {
    files_ending_with(path, ".log").len()
}

/// Bytes in the WAL files of the store directory: what its next open replays.
#[allow(dead_code)]
pub fn wal_bytes(path: &Path) -> u64 {
    files_ending_with(path, ".log").iter().sum()
}

/// Opens (or creates) the store at `path`, commits `update` and closes it again.
#[allow(dead_code)]
pub fn commit_and_close(path: &Path, options: &StoreOptions, update: StoreUpdate) {
    let store = Store::open(path, options).unwrap();
    store.commit(update).unwrap();
}
