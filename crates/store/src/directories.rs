//! Crash-atomic operations on store directories: create and delete, and the removal of
//! what an interrupted one left. Generic: they know directories, not what a store holds
//! or why it is created (the checkpoints of a migration are `checkpoint`'s).
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
use crate::{Store, StoreError, StoreOptions, StoreResult, StoreUpdate};

/// Suffix of the directory a new store is built in before it is renamed into place.
const CREATING_SUFFIX: &str = ".creating";

/// Suffix a directory is renamed to before it is removed.
pub(crate) const DELETING_SUFFIX: &str = ".deleting";

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
pub(crate) fn remove_if_present(path: &Path) -> StoreResult<()> {
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

/// Removes what interrupted creations and deletions of the directory at `path` left
/// next to it: a half-built `<path>.creating` and a half-removed `<path>.deleting`.
/// Neither is ever read as a store.
pub fn remove_interrupted_leftovers(path: &Path) -> StoreResult<()> {
    remove_if_present(&sibling(path, CREATING_SUFFIX))?;
    remove_if_present(&sibling(path, DELETING_SUFFIX))
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

/// Suffix of the file a [`write_file_durably`] stages its bytes in.
pub const STAGING_SUFFIX: &str = ".tmp";

/// Writes `bytes` to the file at `path` so that, at every instant, the file is either
/// absent, or as it was, or whole with the new bytes, and the new bytes survive a power
/// loss once this returns: a staging file (`<path>.tmp`, created with `mode`) is
/// written and synced, renamed into place, and the directory synced. `on_staged` runs
/// between the sync and the rename (a crash point's place). A leftover staging file is
/// never read; the next write replaces it.
pub fn write_file_durably(path: &Path, bytes: &[u8], mode: u32, on_staged: impl FnOnce()) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let staging = sibling(path, STAGING_SUFFIX);
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&staging)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    on_staged();
    std::fs::rename(&staging, path)?;
    sync_parent(path).map_err(std::io::Error::other)
}
