//! Crash-atomic operations on store directories: create, delete, and the recovery of
//! an interrupted rollback.
//!
//! Why: a store directory is many files written in several steps, so a process killed
//! half-way through creating one leaves a directory that looks like a damaged or
//! foreign store, and the next start refuses it. Every operation here goes through a
//! sibling directory and one `rename(2)`, which the file system applies atomically:
//!
//! | operation | staging | the next start finds |
//! |---|---|---|
//! | create `<p>` | built complete in `<p>.creating`, closed, renamed to `<p>` | no `<p>` (and a leftover `<p>.creating`, removed), or the complete store |
//! | delete `<p>` | renamed to `<p>.deleting`, then removed | `<p>` whole, or no `<p>` (and a leftover `<p>.deleting`, removed) |
//!
//! The parent directory is synced after each rename, so the rename also survives a
//! power loss, not only a process crash.

use std::path::{Path, PathBuf};

use crate::crash_points;
use crate::db::store_exists;
use crate::{Store, StoreError, StoreOptions, StoreResult, StoreUpdate};

/// Suffix of the directory a new store is built in before it is renamed into place.
const CREATING_SUFFIX: &str = ".creating";

/// Suffix a directory is renamed to before it is removed.
const DELETING_SUFFIX: &str = ".deleting";

/// `<path><suffix>`: a sibling of `path` in the same directory (so a rename between
/// the two never crosses a file system).
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|name| name.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// Syncs the directory that contains `path`, so a rename or removal in it is durable.
pub fn sync_parent(path: &Path) -> StoreResult<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::File::open(parent).and_then(|dir| dir.sync_all()).map_err(|err| StoreError::from_io(parent, err))
}

/// Renames `from` to `to` and makes the rename durable.
pub fn rename_durably(from: &Path, to: &Path) -> StoreResult<()> {
    std::fs::rename(from, to).map_err(|err| StoreError::from_io(from, err))?;
    sync_parent(to)
}

/// Removes `path` if it exists (a leftover of an interrupted operation).
fn remove_if_present(path: &Path) -> StoreResult<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => {
            tracing::info!(path = %path.display(), "removed the leftover of an interrupted operation");
            Ok(())
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(StoreError::from_io(path, err)),
    }
}

/// Deletes the directory `path` so that it is, at every instant, either whole or gone
/// from its name: renamed to `<path>.deleting` first, then removed. A leftover
/// `.deleting` directory is removed by [`remove_interrupted_leftovers`].
pub fn delete_dir_atomically(path: &Path) -> StoreResult<()> {
    let deleting = sibling(path, DELETING_SUFFIX);
    remove_if_present(&deleting)?;
    rename_durably(path, &deleting)?;
    crash_points::reached("delete:renamed_aside", &path.file_name().unwrap_or_default().to_string_lossy());
    std::fs::remove_dir_all(&deleting).map_err(|err| StoreError::from_io(&deleting, err))
}

/// Removes what interrupted operations on the store at `path` left next to it: a
/// half-built `<path>.creating`, a half-removed `<path>.deleting`, and the same of its
/// pre-migration checkpoints (including RocksDB's own `.tmp` staging directory of a
/// checkpoint). None of them is ever read as a store.
pub fn remove_interrupted_leftovers(path: &Path) -> StoreResult<()> {
    remove_if_present(&sibling(path, CREATING_SUFFIX))?;
    remove_if_present(&sibling(path, DELETING_SUFFIX))?;
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(());
    };
    let checkpoint_prefix = format!("{}.pre-migration-v", name.to_string_lossy());
    let entries = match std::fs::read_dir(parent) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(StoreError::from_io(parent, err)),
    };
    for entry in entries.filter_map(Result::ok) {
        let entry_name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = entry_name.strip_prefix(&checkpoint_prefix) else {
            continue;
        };
        if rest.ends_with(DELETING_SUFFIX) || rest.ends_with(".tmp") {
            remove_if_present(&entry.path())?;
        }
    }
    Ok(())
}

/// What may be at a path where a new store is about to be created (the caller has
/// found no store there): nothing, or an empty directory.
pub(crate) fn ensure_creatable(path: &Path) -> StoreResult<()> {
    let is_empty = match std::fs::read_dir(path) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(StoreError::from_io(path, err)),
        Ok(mut entries) => entries.next().is_none(),
    };
    // An empty directory (made by an operator, or by an older binary killed before it
    // wrote anything) is replaced by the rename.
    if is_empty {
        return Ok(());
    }
    Err(StoreError::Corrupt {
        path: path.to_path_buf(),
        detail: "the directory holds files but no RocksDB store; refusing to create a store over them".into(),
    })
}

/// Creates the store at `path`, complete (every column family and the batch `initial`,
/// which carries the schema version, closed with its WAL synced) or not at all: it is built in
/// `<path>.creating` and renamed into place. `path` must pass [`ensure_creatable`].
pub(crate) fn create_store_atomically(path: &Path, options: &StoreOptions, initial: StoreUpdate) -> StoreResult<()> {
    let staging = sibling(path, CREATING_SUFFIX);
    let subject = options.name.as_str();
    remove_if_present(&staging)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|err| StoreError::from_io(parent, err))?;
    }
    std::fs::create_dir(&staging).map_err(|err| StoreError::from_io(&staging, err))?;
    crash_points::reached("create:staging_dir_made", subject);
    {
        let store = Store::open(&staging, options)?;
        crash_points::reached("create:staging_store_open", subject);
        store.commit(initial)?;
        crash_points::reached("create:staging_version_committed", subject);
        // Dropping the only reference closes RocksDB with its WAL synced.
    }
    crash_points::reached("create:staging_closed", subject);
    if path.is_dir() {
        // Only an empty directory gets here (see `ensure_creatable`); rename(2) cannot
        // replace a directory that has entries.
        std::fs::remove_dir(path).map_err(|err| StoreError::from_io(path, err))?;
    }
    rename_durably(&staging, path)?;
    crash_points::reached("create:renamed_into_place", subject);
    tracing::info!(store = %options.name, path = %path.display(), "store created");
    Ok(())
}

/// Suffix of the store set aside by a rollback until its checkpoint is in place.
pub(crate) const REPLACED_BY_ROLLBACK_SUFFIX: &str = ".replaced-by-rollback";

/// Finishes a rollback of the store at `path` that a crash interrupted. A rollback sets
/// the store aside, renames the checkpoint into place, then removes the set-aside
/// store; the set-aside directory tells how far it got.
pub(crate) fn finish_interrupted_rollback(path: &Path) -> StoreResult<()> {
    let aside = sibling(path, REPLACED_BY_ROLLBACK_SUFFIX);
    if !aside.exists() {
        return Ok(());
    }
    if store_exists(path) {
        // The checkpoint is in place; only the removal of the old store was cut short.
        tracing::warn!(path = %path.display(), "finishing an interrupted rollback: removing the replaced store");
        return remove_if_present(&aside);
    }
    match crate::migration::find_checkpoint(path) {
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
