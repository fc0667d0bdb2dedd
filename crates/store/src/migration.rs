//! Schema versions and the migration runner.
//!
//! Why it lives in the store crate while the steps live in `migrations/`: the runner's
//! guarantees (probe before writing, checkpoint before changing, crash-safe steps,
//! cancellation at safe points) are the same for every store, while the steps are the
//! history of one store's layout.
//!
//! A step is crash-safe in one of two ways: its whole effect and the version bump are
//! one batch ([`bump_version`] in the step's last update), or it works in chunks and
//! records its position with [`put_progress`] in each chunk's batch, so a SIGKILL at any
//! moment leaves a store the next open migrates to completion.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use crate::checkpoint::recover_interrupted_operations;
use crate::checkpoint::{remove_checkpoint_of_a_finished_migration, take_checkpoint};
use crate::crash_points;
use crate::db::store_exists;
use crate::directories::{create_store_atomically, delete_dir_atomically, ensure_creatable};
use crate::{Column, Store, StoreError, StoreOptions, StoreResult, StoreUpdate};

/// Key in [`Column::Misc`] holding the schema version as a 4-byte big-endian integer.
pub const SCHEMA_VERSION_KEY: &[u8] = b"schema_version";

/// One version step of a store's layout.
pub trait MigrationStep: Send + Sync {
    /// The version this step starts from; it leaves the store at `source_version() + 1`.
    fn source_version(&self) -> u32;
    /// One line for logs and `migrate --dry-run`.
    fn description(&self) -> &'static str;
    /// Applies the step. Must end with a batch that includes [`bump_version`], check
    /// `cancel` between chunks and return [`StoreError::Cancelled`] at a safe point.
    fn run(&self, store: &Store, cancel: &CancellationToken) -> StoreResult<()>;
}

/// The layout history of one store: its steps and the version a new store starts at.
pub struct Schema {
    latest: u32,
    steps: Vec<Box<dyn MigrationStep>>,
}

impl Schema {
    /// The history of a store this binary writes at version `latest`, migrating older
    /// versions with `steps`: one per version, consecutive, the last one ending at
    /// `latest` (`steps[i]` starts from `latest - steps.len() + i`). A history that
    /// breaks this rule is a bug of the binary, which would skip or repeat a step on
    /// somebody's data, so it stops the process before any store is touched.
    pub fn new(latest: u32, steps: Vec<Box<dyn MigrationStep>>) -> Self {
        if let Err(problem) = check_consecutive(latest, &steps) {
            panic!("invalid schema history: {problem}");
        }
        Schema { latest, steps }
    }

    /// Version this binary writes; a new store is created at it.
    pub fn latest(&self) -> u32 {
        self.latest
    }

    /// The steps, oldest first.
    pub fn steps(&self) -> &[Box<dyn MigrationStep>] {
        &self.steps
    }

    /// The oldest version this binary can migrate from.
    pub fn oldest(&self) -> u32 {
        self.latest - self.steps.len() as u32
    }

    fn pending(&self, from: u32) -> impl Iterator<Item = &dyn MigrationStep> {
        self.steps.iter().map(|step| step.as_ref()).filter(move |step| step.source_version() >= from)
    }
}

/// Why `steps` cannot migrate consecutive versions up to `latest`, if they cannot.
fn check_consecutive(latest: u32, steps: &[Box<dyn MigrationStep>]) -> Result<(), String> {
    let Some(oldest) = latest.checked_sub(steps.len() as u32) else {
        return Err(format!("{} steps cannot end at version {latest}", steps.len()));
    };
    for (index, step) in steps.iter().enumerate() {
        let expected = oldest + index as u32;
        if step.source_version() != expected {
            return Err(format!(
                "step {index} ({}) starts from v{}, expected v{expected} (oldest v{oldest}, latest v{latest})",
                step.description(),
                step.source_version()
            ));
        }
    }
    Ok(())
}

/// How [`open_migrated`] treats a store that needs migrating.
#[derive(Clone, Default)]
pub struct MigrationSettings {
    /// Keep the pre-migration checkpoint after success (for `mpc-node rollback`).
    pub keep_checkpoint: bool,
    /// Stops the migration at the next safe point.
    pub cancel: CancellationToken,
    /// Called once with the store's version and the target, before a migration begins
    /// (before its checkpoint), so a caller can report a phase that may take long without
    /// opening the store a second time to find out.
    pub on_start: Option<Arc<dyn Fn(u32, u32) + Send + Sync>>,
    /// Skip the read-only probe of the version before the open: only for a store that
    /// an earlier open of this same process found at the latest schema (every
    /// [`SchemaOutcome`] says so), by an owner that has excluded every other writer
    /// since (the node holds its home lock for its whole life).
    ///
    /// Why that is safe: the probe protects a store written by a newer binary from being
    /// touched before it is refused. A store this process verified, closed and reopens
    /// (the chain store across in-process restarts of the indexer) can only have changed
    /// if another process wrote it in between. The version read after the open is still
    /// checked.
    pub schema_verified_earlier: bool,
}

/// What opening did to the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaOutcome {
    /// The store did not exist and was created at the latest version.
    Created { version: u32 },
    /// The store was already at the latest version.
    Current { version: u32 },
    /// The store was migrated.
    Migrated { from: u32, to: u32, checkpoint: Option<PathBuf> },
}

/// Steps that an open would apply, for `migrate --dry-run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationPlan {
    /// Version on disk (`None`: no store yet).
    pub current: Option<u32>,
    /// Version this binary writes.
    pub latest: u32,
    /// `(from_version, description)` of every pending step, in order.
    pub steps: Vec<(u32, &'static str)>,
}

/// Reads the schema version of an open store.
pub fn read_version(store: &Store) -> StoreResult<Option<u32>> {
    match store.get(Column::Misc, SCHEMA_VERSION_KEY)? {
        None => Ok(None),
        Some(bytes) => match <[u8; 4]>::try_from(bytes.as_slice()) {
            Ok(raw) => Ok(Some(u32::from_be_bytes(raw))),
            Err(_) => Err(StoreError::Decode {
                path: store.path().to_path_buf(),
                what: "schema version".into(),
                detail: format!("expected 4 bytes, found {}", bytes.len()),
            }),
        },
    }
}

/// Adds the version bump to a step's final batch, so effect and version land together.
pub fn bump_version(update: &mut StoreUpdate, version: u32) {
    update.put(Column::Misc, SCHEMA_VERSION_KEY, version.to_be_bytes());
}

fn progress_key(from_version: u32) -> Vec<u8> {
    format!("migration_progress_from_v{from_version}").into_bytes()
}

/// Reads the position a resumable step recorded before it was interrupted.
pub fn read_progress(store: &Store, from_version: u32) -> StoreResult<Option<Vec<u8>>> {
    store.get(Column::Misc, progress_key(from_version))
}

/// Records a resumable step's position in the same batch as the chunk it finished.
pub fn put_progress(update: &mut StoreUpdate, from_version: u32, position: &[u8]) {
    update.put(Column::Misc, progress_key(from_version), position);
}

/// Removes the position marker, in the step's final batch.
pub fn clear_progress(update: &mut StoreUpdate, from_version: u32) {
    update.delete(Column::Misc, progress_key(from_version));
}

/// Reads the schema version without writing anything to the directory.
pub fn probe_version(path: &Path, options: &StoreOptions) -> StoreResult<Option<u32>> {
    if !store_exists(path) {
        return Ok(None);
    }
    let store = Store::open_read_only_columns(path, options, &[Column::Misc])?;
    read_version(&store)
}

/// Lists the steps an open would apply, without changing anything.
pub fn plan(path: &Path, options: &StoreOptions, schema: &Schema) -> StoreResult<MigrationPlan> {
    let current = probe_version(path, options)?;
    check_supported(path, current, schema)?;
    let steps = match current {
        None => Vec::new(),
        Some(version) => schema.pending(version).map(|step| (step.source_version(), step.description())).collect(),
    };
    Ok(MigrationPlan { current, latest: schema.latest, steps })
}

fn check_supported(path: &Path, version: Option<u32>, schema: &Schema) -> StoreResult<()> {
    match version {
        Some(found) if found > schema.latest => {
            Err(StoreError::SchemaTooNew { path: path.to_path_buf(), found, supported: schema.latest })
        }
        Some(found) if found < schema.oldest() => {
            Err(StoreError::SchemaTooOld { path: path.to_path_buf(), found, oldest: schema.oldest() })
        }
        _ => Ok(()),
    }
}

/// Opens the store at `path` and brings it to `schema.latest`.
///
/// The version is read through a read-only open first, so a store that is newer than
/// this binary is refused before a single byte of it changes. A missing store is
/// created crash-atomically (see [`crate::directories`]). Before the first step a
/// RocksDB checkpoint of the old version is taken (kept across interrupted attempts);
/// it is removed after success unless `settings.keep_checkpoint`.
pub fn open_migrated(
    path: &Path,
    options: &StoreOptions,
    schema: &Schema,
    settings: &MigrationSettings,
) -> StoreResult<(Arc<Store>, SchemaOutcome)> {
    open_migrated_with_initial(path, options, schema, settings, StoreUpdate::new)
}

/// Like [`open_migrated`]; a store created by this call also gets the writes of
/// `initial()` (a chain's genesis, say) in the same batch as its schema version, so it
/// never exists without them.
pub fn open_migrated_with_initial(
    path: &Path,
    options: &StoreOptions,
    schema: &Schema,
    settings: &MigrationSettings,
    initial: impl FnOnce() -> StoreUpdate,
) -> StoreResult<(Arc<Store>, SchemaOutcome)> {
    recover_interrupted_operations(path)?;
    if !settings.schema_verified_earlier {
        check_supported(path, probe_version(path, options)?, schema)?;
    }
    let creation_batch = |initial: StoreUpdate| {
        let mut update = initial;
        bump_version(&mut update, schema.latest);
        update
    };
    if !store_exists(path) {
        ensure_creatable(path)?;
        create_store_atomically(path, options, creation_batch(initial()))?;
        // A new store beside the marked checkpoint of an interrupted migration: the
        // migrated store is gone (a data wipe took it), its checkpoint is a leftover.
        remove_checkpoint_of_a_finished_migration(path)?;
        let store = Store::open(path, options)?;
        return Ok((store, SchemaOutcome::Created { version: schema.latest }));
    }
    let store = Store::open(path, options)?;
    let version = match read_version(&store)? {
        Some(version) => version,
        None => {
            // Only an empty store of an older binary that was killed while creating it
            // gets here (see `ensure_empty`); it is finished in one batch.
            ensure_empty(&store)?;
            store.commit(creation_batch(initial()))?;
            tracing::info!(store = %options.name, version = schema.latest, "finished creating a store whose creation was interrupted");
            return Ok((store, SchemaOutcome::Created { version: schema.latest }));
        }
    };
    check_supported(path, Some(version), schema)?;
    if version == schema.latest {
        remove_checkpoint_of_a_finished_migration(path)?;
        return Ok((store, SchemaOutcome::Current { version }));
    }
    if let Some(on_start) = &settings.on_start {
        on_start(version, schema.latest);
    }
    let checkpoint = take_checkpoint(&store, version, settings.keep_checkpoint)?;
    crash_points::reached("migrate:checkpoint_taken", &options.name);
    tracing::info!(
        store = %options.name, from = version, to = schema.latest, checkpoint = %checkpoint.display(),
        "migrating store schema"
    );
    for step in schema.pending(version) {
        if settings.cancel.is_cancelled() {
            tracing::warn!(store = %options.name, at_version = step.source_version(), "migration stopped at a safe point");
            return Err(StoreError::Cancelled);
        }
        let started = std::time::Instant::now();
        if let Err(err) = step.run(&store, &settings.cancel) {
            if matches!(err, StoreError::Cancelled) {
                tracing::warn!(store = %options.name, at_version = step.source_version(), "migration stopped at a safe point");
            }
            return Err(err);
        }
        let reached = read_version(&store)?;
        if reached != Some(step.source_version() + 1) {
            return Err(StoreError::Decode {
                path: path.to_path_buf(),
                what: "schema version after a migration step".into(),
                detail: format!("step from v{} left the store at {reached:?}", step.source_version()),
            });
        }
        tracing::info!(
            store = %options.name, from = step.source_version(), to = step.source_version() + 1,
            step = step.description(), elapsed_ms = started.elapsed().as_millis() as u64,
            "migration step applied"
        );
    }
    store.flush()?;
    crash_points::reached("migrate:steps_done", &options.name);
    let kept = if settings.keep_checkpoint {
        Some(checkpoint)
    } else {
        delete_dir_atomically(&checkpoint)?;
        None
    };
    Ok((store, SchemaOutcome::Migrated { from: version, to: schema.latest, checkpoint: kept }))
}

/// A store without a version may only be one whose creation was interrupted before its
/// first commit; anything with data in it but no version is not ours to guess about.
fn ensure_empty(store: &Store) -> StoreResult<()> {
    for column in Column::ALL {
        if store.iter(column, None)?.next().is_some() {
            return Err(StoreError::Corrupt {
                path: store.path().to_path_buf(),
                detail: format!("store has data in `{}` but no schema version", column.name()),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step that only says where it starts.
    struct StepFrom(u32);

    impl MigrationStep for StepFrom {
        fn source_version(&self) -> u32 {
            self.0
        }
        fn description(&self) -> &'static str {
            "test step"
        }
        fn run(&self, _store: &Store, _cancel: &CancellationToken) -> StoreResult<()> {
            Ok(())
        }
    }

    fn steps(from: &[u32]) -> Vec<Box<dyn MigrationStep>> {
        from.iter().map(|version| Box::new(StepFrom(*version)) as Box<dyn MigrationStep>).collect()
    }

    #[test]
    fn a_history_of_consecutive_steps_ending_at_the_latest_version_is_accepted() {
        assert_eq!(check_consecutive(5, &steps(&[2, 3, 4])), Ok(()));
        assert_eq!(check_consecutive(1, &steps(&[])), Ok(()));
        assert_eq!(Schema::new(5, steps(&[2, 3, 4])).oldest(), 2);
    }

    #[test]
    fn a_history_with_a_gap_a_repeat_or_a_wrong_end_is_refused() {
        for (latest, from) in [(5, &[2, 4][..]), (5, &[3, 3]), (5, &[3, 4, 5]), (4, &[1, 2]), (1, &[0, 1, 2])] {
            let problem = check_consecutive(latest, &steps(from)).unwrap_err();
            assert!(problem.contains("expected") || problem.contains("cannot end"), "{latest} {from:?}: {problem}");
        }
        let refused = std::panic::catch_unwind(|| Schema::new(3, steps(&[1, 1])));
        assert!(refused.is_err(), "Schema::new must refuse a history with a repeated step");
    }
}
