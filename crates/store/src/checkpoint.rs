//! The pre-migration checkpoint of a store: its name, how it is found, taken and
//! removed, the marker that says whether it is to be kept, and the rollback to it with
//! the recovery of a rollback a crash interrupted.
//!
//! Why one module: a checkpoint is a copy of a whole store beside it
//! (`<store>.pre-migration-v<N>`), written before a migration changes the store and
//! removed after it unless the operator asked to keep it. Every step of that (take,
//! mark, remove, restore) must survive a kill at any instant, and the next start must
//! tell a checkpoint kept on purpose from one whose removal was cut short. Those rules
//! belong together; the directory operations they use are generic (`directories`).

use std::path::{Path, PathBuf};

use crate::crash_points;
use crate::db::store_exists;
use crate::directories::{
    delete_dir_atomically, remove_if_present, remove_interrupted_leftovers, rename_durably, sibling, sync_parent,
};
use crate::{Store, StoreError, StoreOptions, StoreResult};

/// What follows a store's directory name in the name of its checkpoints, before the
/// version: `node.pre-migration-v2`.
const CHECKPOINT_INFIX: &str = ".pre-migration-v";

/// Suffix of the store set aside by a rollback until its checkpoint is in place.
pub const REPLACED_BY_ROLLBACK_SUFFIX: &str = ".replaced-by-rollback";

/// File in a pre-migration checkpoint whose migration was not asked to keep it.
///
/// Why a file: the checkpoint is removed after the last step commits, and a crash in
/// between would otherwise leave it for good, indistinguishable from one kept on
/// purpose (`--keep-checkpoint`). With the marker, the next open that finds the store
/// migrated removes it.
const REMOVE_AFTER_MIGRATION: &str = "REMOVE-AFTER-MIGRATION";

/// Where the pre-migration checkpoint of the store at `path` taken at `version` lives.
pub fn checkpoint_path(path: &Path, version: u32) -> PathBuf {
    sibling(path, &format!("{CHECKPOINT_INFIX}{version}"))
}

/// The existing pre-migration checkpoint of the store at `path`, with its version.
pub fn find_checkpoint(path: &Path) -> Option<(u32, PathBuf)> {
    let parent = path.parent()?;
    let prefix = format!("{}{CHECKPOINT_INFIX}", path.file_name()?.to_string_lossy());
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(parent)
        .ok()?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version = name.strip_prefix(&prefix)?.parse::<u32>().ok()?;
            store_exists(&entry.path()).then(|| (version, entry.path()))
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

/// The checkpoint of `store` (at `version`) for a migration about to begin: the one an
/// interrupted attempt took, or a new one. Marked for removal after the migration
/// unless `keep`; every attempt sets the marker, so the attempt that finishes the
/// migration decides whether the checkpoint stays.
pub(crate) fn take_checkpoint(store: &Store, version: u32, keep: bool) -> StoreResult<PathBuf> {
    let checkpoint = match find_checkpoint(store.path()) {
        Some((_, existing)) => existing,
        None => {
            let destination = checkpoint_path(store.path(), version);
            store.create_checkpoint(&destination)?;
            sync_parent(&destination)?;
            destination
        }
    };
    mark_for_removal(&checkpoint, !keep)?;
    Ok(checkpoint)
}

/// Adds (`remove` true) or takes away the removal marker of `checkpoint`, durably.
fn mark_for_removal(checkpoint: &Path, remove: bool) -> StoreResult<()> {
    let marker = checkpoint.join(REMOVE_AFTER_MIGRATION);
    if remove == marker.exists() {
        return Ok(());
    }
    let result = if remove {
        std::fs::File::create(&marker).and_then(|file| file.sync_all())
    } else {
        std::fs::remove_file(&marker)
    };
    result.map_err(|err| StoreError::from_io(&marker, err))?;
    sync_parent(&marker)
}

/// Removes a checkpoint left by a finished migration that was not asked to keep it
/// (the process died between the last step and the removal).
pub(crate) fn remove_checkpoint_of_a_finished_migration(path: &Path) -> StoreResult<()> {
    if let Some((version, checkpoint)) = find_checkpoint(path)
        && checkpoint.join(REMOVE_AFTER_MIGRATION).exists()
    {
        delete_dir_atomically(&checkpoint)?;
        tracing::info!(
            path = %path.display(), checkpoint_version = version,
            "removed the pre-migration checkpoint of a finished migration (its removal had been interrupted)"
        );
    }
    Ok(())
}

/// Removes what interrupted operations left of the checkpoints of the store at `path`:
/// a half-removed `….deleting` and RocksDB's own `.tmp` staging directory of a
/// checkpoint being written. Neither is ever read as a checkpoint.
fn remove_checkpoint_leftovers(path: &Path) -> StoreResult<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(());
    };
    let prefix = format!("{}{CHECKPOINT_INFIX}", name.to_string_lossy());
    let entries = match std::fs::read_dir(parent) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(StoreError::from_io(parent, err)),
    };
    for entry in entries.filter_map(Result::ok) {
        let entry_name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = entry_name.strip_prefix(&prefix) else {
            continue;
        };
        if rest.ends_with(crate::directories::DELETING_SUFFIX) || rest.ends_with(".tmp") {
            remove_if_present(&entry.path())?;
        }
    }
    Ok(())
}

/// Replaces the store at `path` by its kept pre-migration checkpoint.
///
/// The store must be closed (the call takes its lock first, so a running node makes it
/// fail with [`StoreError::Locked`]). Renames only: the store is set aside as
/// `<path>.replaced-by-rollback`, the checkpoint is renamed into place, the set-aside
/// store is removed. A crash between any two steps is finished by the next call of
/// [`recover_interrupted_operations`] (every open for writing and every rollback).
pub fn rollback(path: &Path, options: &StoreOptions) -> StoreResult<u32> {
    recover_interrupted_operations(path)?;
    let (version, checkpoint) =
        find_checkpoint(path).ok_or_else(|| StoreError::NoCheckpoint { path: path.to_path_buf() })?;
    // The restored store must not carry the marker into the live directory.
    mark_for_removal(&checkpoint, false)?;
    let aside = sibling(path, REPLACED_BY_ROLLBACK_SUFFIX);
    if store_exists(path) {
        drop(Store::open(path, options)?);
        rename_durably(path, &aside)?;
        crash_points::reached("rollback:store_set_aside", &options.name);
    }
    rename_durably(&checkpoint, path)?;
    crash_points::reached("rollback:checkpoint_restored", &options.name);
    if aside.exists() {
        std::fs::remove_dir_all(&aside).map_err(|err| StoreError::from_io(&aside, err))?;
    }
    tracing::info!(store = %options.name, version, "store rolled back to its pre-migration checkpoint");
    Ok(version)
}

/// Brings the directories around the store at `path` back to a state a crash cannot
/// leave ambiguous: finishes an interrupted rollback and removes the leftovers of
/// interrupted creations, deletions and checkpoints. Run before anything opens the
/// store for writing.
pub fn recover_interrupted_operations(path: &Path) -> StoreResult<()> {
    finish_interrupted_rollback(path)?;
    remove_interrupted_leftovers(path)?;
    remove_checkpoint_leftovers(path)
}

/// Finishes a rollback of the store at `path` that a crash interrupted. A rollback sets
/// the store aside, renames the checkpoint into place, then removes the set-aside
/// store; the set-aside directory tells how far it got.
fn finish_interrupted_rollback(path: &Path) -> StoreResult<()> {
    let aside = sibling(path, REPLACED_BY_ROLLBACK_SUFFIX);
    if !aside.exists() {
        return Ok(());
    }
    if store_exists(path) {
        // The checkpoint is in place; only the removal of the old store was cut short.
        tracing::warn!(path = %path.display(), "finishing an interrupted rollback: removing the replaced store");
        return remove_if_present(&aside);
    }
    match find_checkpoint(path) {
        Some((version, checkpoint)) => {
            tracing::warn!(path = %path.display(), version, "finishing an interrupted rollback: restoring the checkpoint");
            rename_durably(&checkpoint, path)?;
            remove_if_present(&aside)
        }
        None => {
            tracing::warn!(path = %path.display(), "undoing an interrupted rollback: no checkpoint, putting the store back");
            rename_durably(&aside, path)
        }
    }
}
