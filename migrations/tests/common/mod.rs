//! Helpers shared by the store crash and migration tests.

#![allow(dead_code)]

use std::path::Path;

use mpc_migrations::layout::{
    IndexedBlockRecord, SignRequestRecord, height_key, read_applied_requests, read_cursor, request_key,
};
use mpc_store::{Column, Store};

/// Asserts the store is at a block boundary: the cursor is the last of a gap-free run
/// of blocks from 1, each block has all its requests (and their index entries when
/// `indexed`), and the applied counter matches. Returns the cursor height.
pub fn assert_at_block_boundary(store: &Store, requests_per_block: u32, indexed: bool) -> u64 {
    let cursor = read_cursor(store).unwrap().map_or(0, |cursor| cursor.height);
    let blocks = store.iter(Column::IndexedBlocks, None).unwrap().count() as u64;
    assert_eq!(blocks, cursor, "indexed blocks and cursor disagree");
    for height in 1..=cursor {
        let record: IndexedBlockRecord = store.get_json(Column::IndexedBlocks, height_key(height)).unwrap().unwrap();
        assert_eq!(record.requests, requests_per_block);
        for index in 0..requests_per_block {
            let key = request_key(height, index);
            let request: SignRequestRecord = store.get_json(Column::SignRequests, key).unwrap().unwrap();
            if indexed {
                assert_eq!(
                    store.get(Column::SignRequestsById, request.request_id.0).unwrap().as_deref(),
                    Some(&key[..])
                );
            }
        }
        assert!(store.get(Column::SignRequests, request_key(height, requests_per_block)).unwrap().is_none());
    }
    assert!(store.get(Column::IndexedBlocks, height_key(cursor + 1)).unwrap().is_none(), "block past the cursor");
    assert_eq!(read_applied_requests(store).unwrap(), cursor * u64::from(requests_per_block));
    cursor
}

/// Every entry of every column, for before/after comparisons.
pub fn dump(store: &Store, columns: &[Column]) -> Vec<(Column, Vec<u8>, Vec<u8>)> {
    let mut entries = Vec::new();
    for column in columns {
        for item in store.iter(*column, None).unwrap() {
            let (key, value) = item.unwrap();
            entries.push((*column, key.to_vec(), value.to_vec()));
        }
    }
    entries
}

/// Sends SIGKILL to `child` (unless it already exited) and reaps it.
pub fn kill_and_reap(child: &mut std::process::Child) {
    if child.try_wait().unwrap().is_none() {
        // SAFETY: plain syscall on the pid of a child we spawned and have not reaped.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGKILL);
        }
    }
    child.wait().unwrap();
}

/// True when `path` holds a directory.
pub fn exists(path: &Path) -> bool {
    path.is_dir()
}
