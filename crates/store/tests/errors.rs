//! Bad stores give typed errors, never a panic, and are not modified.

use std::collections::BTreeMap;
use std::path::Path;

mod common;

use common::commit_and_close;
use mpc_store::migration::{MigrationSettings, Schema, SchemaOutcome, bump_version, open_migrated};
use mpc_store::{Column, Store, StoreError, StoreOptions, StoreUpdate};

fn options() -> StoreOptions {
    StoreOptions::new("errors", "errors-test")
}

fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| (entry.file_name().to_string_lossy().into_owned(), std::fs::read(entry.path()).unwrap()))
        .collect()
}

fn schema(latest: u32) -> Schema {
    Schema::new(latest, Vec::new())
}

/// Writes a store at schema `version` with one entry.
fn write_at_version(path: &Path, version: u32) {
    let mut update = StoreUpdate::new();
    bump_version(&mut update, version);
    update.put(Column::SignRequests, b"k", b"v");
    commit_and_close(path, &options(), update);
}

#[test]
fn newer_schema_is_refused_with_both_versions_and_left_byte_for_byte_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    write_at_version(&path, 9);
    let before = snapshot(&path);
    let err = open_migrated(&path, &options(), &schema(3), &MigrationSettings::default()).err().unwrap();
    assert!(matches!(err, StoreError::SchemaTooNew { found: 9, supported: 3, .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("version 9") && message.contains("version 3"), "{message}");
    assert_eq!(snapshot(&path), before, "refusing a newer store must not change a byte");
}

#[test]
fn a_directory_that_is_not_our_store_is_a_missing_column_family_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("foreign");
    {
        let mut raw = rocksdb::Options::default();
        raw.create_if_missing(true);
        let db = rocksdb::DB::open(&raw, &path).unwrap();
        db.put(b"foreign", b"data").unwrap();
    }
    let err = Store::open(&path, &options()).err().unwrap();
    assert!(matches!(err, StoreError::MissingColumnFamily { .. }), "{err:?}");
}

#[test]
fn damaged_files_are_a_corrupt_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(Store::open(&path, &options()).unwrap());
    let manifest = std::fs::read_dir(&path)
        .unwrap()
        .filter_map(Result::ok)
        .find(|entry| entry.file_name().to_string_lossy().starts_with("MANIFEST"))
        .unwrap();
    std::fs::write(manifest.path(), b"this is not a manifest").unwrap();
    let err = Store::open(&path, &options()).err().unwrap();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
}

#[test]
fn data_without_a_schema_version_is_refused_instead_of_guessed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut update = StoreUpdate::new();
    update.put(Column::SignRequests, b"k", b"v");
    commit_and_close(&path, &options(), update);
    let err = open_migrated(&path, &options(), &schema(1), &MigrationSettings::default()).err().unwrap();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
}

#[test]
fn a_new_store_is_created_at_the_latest_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let (store, outcome) = open_migrated(&path, &options(), &schema(5), &MigrationSettings::default()).unwrap();
    assert_eq!(outcome, mpc_store::migration::SchemaOutcome::Created { version: 5 });
    assert_eq!(mpc_store::migration::read_version(&store).unwrap(), Some(5));
}

#[test]
fn a_schema_verified_by_an_earlier_open_skips_the_probe_yet_a_newer_store_is_still_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Verified at the latest version, then rewritten behind the opener's back (what the
    // owner's exclusive use rules out): the reopen skips the probe, and the version read
    // after the open still refuses it.
    let ours = dir.path().join("ours");
    let (store, outcome) = open_migrated(&ours, &options(), &schema(3), &MigrationSettings::default()).unwrap();
    assert_eq!(outcome, SchemaOutcome::Created { version: 3 });
    drop(store);
    let verified = MigrationSettings { schema_verified_earlier: true, ..MigrationSettings::default() };
    let (store, outcome) = open_migrated(&ours, &options(), &schema(3), &verified).unwrap();
    assert_eq!(outcome, SchemaOutcome::Current { version: 3 });
    drop(store);
    write_at_version(&ours, 9);
    let err = open_migrated(&ours, &options(), &schema(3), &verified).err().unwrap();
    assert!(matches!(err, StoreError::SchemaTooNew { found: 9, supported: 3, .. }), "{err:?}");
}
