//! Presignature ids: (owner, counter), the counter from a durable allocator, never from
//! the clock. The store keeps a mark below which every id may have been handed out;
//! ids are handed out from blocks reserved by raising the mark (a synced write) before
//! any id of the block is used. A start resumes at the mark, so ids stay unique and
//! increasing across any number of restarts per second (the unused rest of a block is
//! skipped, never reused).

use mpc_store::{Column, StoreUpdate};

use super::{AssetStore, AssetStoreError};
use crate::hooks::crash_point;

/// Ids reserved per synced write.
pub const ID_BLOCK: u64 = 64;
/// Key in `Misc` of the mark: every id below it may have been handed out.
const MARK_KEY: &[u8] = b"allocator/mark";

/// Hands out presignature ids.
#[derive(Debug)]
pub struct IdAllocator {
    next: u64,
    reserved_until: u64,
}

impl IdAllocator {
    /// Resumes at the stored mark (1 for a new store).
    pub fn load(assets: &AssetStore) -> Result<IdAllocator, AssetStoreError> {
        let mark = stored_mark(assets)?.unwrap_or(1);
        Ok(IdAllocator { next: mark, reserved_until: mark })
    }

    /// The next id; reserves a block first when the last one is used up.
    pub fn next(&mut self, assets: &AssetStore) -> Result<u64, AssetStoreError> {
        if self.next == self.reserved_until {
            let until = self.next + ID_BLOCK;
            let mut update = StoreUpdate::new();
            update.put(Column::Misc, MARK_KEY, until.to_be_bytes());
            assets.commit(update)?;
            crash_point("presign:ids_reserved");
            crate::hooks::journal(|| format!("reserved {} {until}", self.next));
            self.reserved_until = until;
        }
        let id = self.next;
        self.next += 1;
        Ok(id)
    }

    /// The next id it would hand out: every id below it is used or dead.
    pub fn next_unused(&self) -> u64 {
        self.next
    }
}

/// The stored mark, if the store has one.
pub fn stored_mark(assets: &AssetStore) -> Result<Option<u64>, AssetStoreError> {
    match assets.store().get(Column::Misc, MARK_KEY)? {
        None => Ok(None),
        Some(bytes) => {
            <[u8; 8]>::try_from(bytes.as_slice()).map(|bytes| Some(u64::from_be_bytes(bytes))).map_err(|_| {
                AssetStoreError::Damaged {
                    path: assets.store().path().to_path_buf(),
                    what: "the id allocator's mark".into(),
                    detail: format!("{} bytes", bytes.len()),
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::secrets::SecretsKey;

    #[test]
    fn ids_stay_unique_and_increasing_across_reopens_and_the_rest_of_a_block_is_skipped() {
        let home = tempfile::tempdir().unwrap();
        let secrets = Arc::new(SecretsKey::for_tests(1));
        let mut seen = Vec::new();
        for _ in 0..5 {
            let assets = AssetStore::open(home.path(), secrets.clone()).unwrap();
            let mut allocator = IdAllocator::load(&assets).unwrap();
            for _ in 0..3 {
                seen.push(allocator.next(&assets).unwrap());
            }
        }
        assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "{seen:?}");
        assert_eq!(seen[3], 1 + ID_BLOCK, "a reopen starts after the last reserved block");
    }
}
