//! Migrations from every old version reach the latest and preserve data; a newer store
//! is refused; cancellation stops at a safe point; rollback restores the old store.

mod common;

use mpc_migrations::layout::{Cursor, read_cursor};
use mpc_migrations::legacy::{synthetic_blocks, write_store};
use mpc_migrations::{NODE_SCHEMA_VERSION, node_schema, node_schema_with_chunk_size};
use mpc_store::checkpoint::{find_checkpoint, rollback};
use mpc_store::migration::{MigrationSettings, SchemaOutcome, open_migrated, plan, read_version};
use mpc_store::{Column, Store, StoreError, StoreOptions};

use common::{assert_at_block_boundary, dump};

fn options() -> StoreOptions {
    StoreOptions::new("node", "migrate-test")
}

const DATA_COLUMNS: [Column; 3] = [Column::SignRequests, Column::SignResponses, Column::IndexedBlocks];

#[test]
fn every_old_version_migrates_to_the_latest_and_preserves_data() {
    for version in 1..NODE_SCHEMA_VERSION {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old");
        let current = dir.path().join("current");
        let blocks = synthetic_blocks(1..=120, 7);
        write_store(&old, version, &blocks).unwrap();
        write_store(&current, NODE_SCHEMA_VERSION, &blocks).unwrap();

        let (migrated, outcome) =
            open_migrated(&old, &options(), &node_schema_with_chunk_size(64), &MigrationSettings::default()).unwrap();
        assert_eq!(outcome, SchemaOutcome::Migrated { from: version, to: NODE_SCHEMA_VERSION, checkpoint: None });
        let reference = Store::open(&current, &options()).unwrap();
        assert_eq!(dump(&migrated, &DATA_COLUMNS), dump(&reference, &DATA_COLUMNS), "data changed (from v{version})");
        assert_eq!(
            dump(&migrated, &[Column::SignRequestsById]),
            dump(&reference, &[Column::SignRequestsById]),
            "index differs from one written natively (from v{version})"
        );
        assert_eq!(read_cursor(&migrated).unwrap(), Some(blocks[119].cursor));
        assert_eq!(assert_at_block_boundary(&migrated, 7, true), 120);
    }
}

#[test]
fn plan_lists_pending_steps_without_changing_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node");
    write_store(&path, 1, &synthetic_blocks(1..=5, 2)).unwrap();
    let pending = plan(&path, &options(), &node_schema()).unwrap();
    assert_eq!(pending.current, Some(1));
    assert_eq!(pending.steps.iter().map(|(from, _)| *from).collect::<Vec<_>>(), vec![1, 2]);
    let store = Store::open_read_only(&path, &options()).unwrap();
    assert_eq!(read_version(&store).unwrap(), Some(1));
}

#[test]
fn a_cancelled_migration_stops_at_a_safe_point_and_the_next_open_completes_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node");
    write_store(&path, 1, &synthetic_blocks(1..=50, 3)).unwrap();
    let settings = MigrationSettings::default();
    settings.cancel.cancel();
    let err = open_migrated(&path, &options(), &node_schema(), &settings).err().unwrap();
    assert!(matches!(err, StoreError::Cancelled), "{err:?}");
    {
        let store = Store::open_read_only(&path, &options()).unwrap();
        assert_eq!(read_version(&store).unwrap(), Some(1), "a cancelled migration must not half-apply a step");
    }
    assert!(find_checkpoint(&path).is_some(), "the pre-migration checkpoint is kept across an interruption");
    let (store, _) = open_migrated(&path, &options(), &node_schema(), &MigrationSettings::default()).unwrap();
    assert_eq!(read_version(&store).unwrap(), Some(NODE_SCHEMA_VERSION));
    assert_eq!(assert_at_block_boundary(&store, 3, true), 50);
}

#[test]
fn rollback_restores_the_kept_checkpoint_and_fails_clearly_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node");
    let blocks = synthetic_blocks(1..=30, 4);
    write_store(&path, 1, &blocks).unwrap();
    let before = {
        let store = Store::open_read_only(&path, &options()).unwrap();
        dump(&store, &[Column::Misc, Column::SignRequests, Column::IndexedBlocks])
    };
    let settings = MigrationSettings { keep_checkpoint: true, ..Default::default() };
    let (store, outcome) = open_migrated(&path, &options(), &node_schema(), &settings).unwrap();
    assert!(matches!(outcome, SchemaOutcome::Migrated { checkpoint: Some(_), .. }));
    drop(store);

    assert_eq!(rollback(&path, &options()).unwrap(), 1);
    let store = Store::open_read_only(&path, &options()).unwrap();
    assert_eq!(dump(&store, &[Column::Misc, Column::SignRequests, Column::IndexedBlocks]), before);
    drop(store);
    assert!(matches!(rollback(&path, &options()), Err(StoreError::NoCheckpoint { .. })));
}

#[test]
fn cursor_encoding_round_trips_and_rejects_other_lengths() {
    let cursor = Cursor { height: 0x0102_0304_0506_0708, block_hash: mpc_migrations::layout::Hash32([9; 32]) };
    assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
    assert_eq!(Cursor::decode(b"1234"), None);
}
