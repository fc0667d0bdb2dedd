//! Upgrade rollouts: old-schema homes are migrated by `start` (or `migrate`), a SIGKILL
//! during that migration is completed by the next start, `rollback` restores the old
//! store, a home of the previous release goes forward and back, and three nodes are
//! rolled one at a time with at least two always ready.

use std::time::Duration;

use mpc_chain::CHAIN_SCHEMA_VERSION;
use mpc_node_process_tests::docker_engine::{Release, release_binary};
use mpc_node_process_tests::{
    NodeProcess, START_PATIENCE, assert_consistent, chain_store_version, fast_node_args, home_indexed_to,
    rewrite_node_store_at_version, run_binary_command, run_node_command,
};
use mpc_store::migration::read_version;
use mpc_store::{Store, StoreOptions};

fn schema_version(home: &std::path::Path) -> Option<u32> {
    let store = Store::open_read_only(&home.join("node"), &StoreOptions::new("node", "upgrade-test")).unwrap();
    read_version(&store).unwrap()
}

fn fast_history(blocks: u64) -> Vec<String> {
    let mut args = fast_node_args();
    args.extend([
        "--sandbox-block-interval".into(),
        "0ms".into(),
        "--sandbox-history-blocks".into(),
        blocks.to_string(),
    ]);
    args
}

#[test]
fn start_migrates_every_older_schema_and_indexing_continues_gap_free() {
    for version in [1, 2] {
        let home = home_indexed_to(120, &fast_history(120));
        let cursor = assert_consistent(home.path());
        rewrite_node_store_at_version(home.path(), version);
        assert_eq!(schema_version(home.path()), Some(version));

        let mut node = NodeProcess::start(home.path(), &fast_node_args(), &[]);
        node.wait_for_log(&format!("node store migrated from={version} to=3"), START_PATIENCE);
        node.wait_for_log(&format!("streamer started start_height={}", cursor + 1), START_PATIENCE);
        node.wait_for_log("node ready", START_PATIENCE);
        node.stop_gracefully();
        assert!(assert_consistent(home.path()) > cursor, "from v{version}");
    }
}

#[test]
fn a_sigkill_during_migration_is_completed_by_the_next_start() {
    let home = home_indexed_to(1500, &fast_history(1500));
    rewrite_node_store_at_version(home.path(), 2);
    let slow = [("MPC_MIGRATION_CHUNK_SIZE", "1")];
    let mut node = NodeProcess::start(home.path(), &fast_node_args(), &slow);
    node.wait_for_log("migrating store schema", START_PATIENCE);
    // The step commits one entry per batch (thousands of them, milliseconds in all), and
    // the log is polled every 5 ms: kill at once so the kill lands inside the step.
    std::thread::sleep(Duration::from_millis(1));
    node.kill();
    assert_eq!(schema_version(home.path()), Some(2), "the kill landed after the migration; the test proved nothing");

    let mut node = NodeProcess::start(home.path(), &fast_node_args(), &[]);
    node.wait_for_log("resuming an interrupted request-index migration", START_PATIENCE);
    node.wait_for_log("node store migrated", START_PATIENCE);
    node.wait_for_log("node ready", START_PATIENCE);
    node.stop_gracefully();
    assert_consistent(home.path());
}

#[test]
fn migrate_lists_and_applies_steps_and_rollback_restores_the_old_store() {
    let home = home_indexed_to(60, &fast_history(60));
    rewrite_node_store_at_version(home.path(), 1);
    let home_arg = home.path().to_str().unwrap();

    let dry_run = run_node_command(&["migrate", "--home", home_arg, "--dry-run"]);
    assert_eq!(dry_run.code, 0, "{}", dry_run.output);
    assert!(
        dry_run.output.contains("pending: v1 -> v2") && dry_run.output.contains("pending: v2 -> v3"),
        "{}",
        dry_run.output
    );
    assert_eq!(schema_version(home.path()), Some(1), "--dry-run changed the store");

    let migrated = run_node_command(&["migrate", "--home", home_arg, "--keep-checkpoint"]);
    assert_eq!(migrated.code, 0, "{}", migrated.output);
    assert_eq!(schema_version(home.path()), Some(3));
    assert_consistent(home.path());

    let rolled_back = run_node_command(&["rollback", "--home", home_arg]);
    assert_eq!(rolled_back.code, 0, "{}", rolled_back.output);
    assert_eq!(schema_version(home.path()), Some(1));
    let again = run_node_command(&["rollback", "--home", home_arg]);
    assert_eq!(again.code, 3, "{}", again.output);
    assert!(again.output.contains("no pre-migration checkpoint"), "{}", again.output);
}

/// The way back from this release to the previous one (README, "Upgrading"): the node
/// store by `rollback`, the chain store by a data wipe, because the previous release
/// cannot read the chain store's new records and refuses it untouched.
#[test]
fn a_home_of_the_previous_release_upgrades_and_goes_back_with_rollback_and_a_chain_wipe() {
    let previous = release_binary(Release::Previous);
    let home = tempfile::tempdir().unwrap();
    let home_arg = home.path().to_str().unwrap();
    let run_previous = || {
        let mut node = NodeProcess::start_binary(&previous, home.path(), &fast_node_args(), &[]);
        node.wait_for_log("node ready", START_PATIENCE);
        node.stop_gracefully();
    };
    run_previous();
    assert_eq!((schema_version(home.path()), chain_store_version(home.path())), (Some(2), Some(1)));

    let migrated = run_node_command(&["migrate", "--home", home_arg, "--keep-checkpoint"]);
    assert_eq!(migrated.code, 0, "{}", migrated.output);
    let mut node = NodeProcess::start(home.path(), &fast_node_args(), &[]);
    node.wait_for_log(&format!("chain store migrated from=1 to={CHAIN_SCHEMA_VERSION}"), START_PATIENCE);
    node.wait_for_log("node ready", START_PATIENCE);
    node.stop_gracefully();
    assert_consistent(home.path());
    assert_eq!((schema_version(home.path()), chain_store_version(home.path())), (Some(3), Some(CHAIN_SCHEMA_VERSION)));

    let rolled_back = run_node_command(&["rollback", "--home", home_arg]);
    assert_eq!(rolled_back.code, 0, "{}", rolled_back.output);
    let refused = run_binary_command(&previous, &["start", "--home", home_arg, "--web-addr", "127.0.0.1:0"], &[]);
    assert_eq!(refused.code, 3, "{}", refused.output);
    let newer = format!("has schema version {CHAIN_SCHEMA_VERSION}, but this binary supports up to version 1");
    assert!(refused.output.contains(&newer), "{}", refused.output);
    assert_eq!(chain_store_version(home.path()), Some(CHAIN_SCHEMA_VERSION), "the refused chain store was changed");

    std::fs::write(home.path().join("data-wipe-token"), "back-to-the-previous-release\n").unwrap();
    run_previous();
    assert_eq!((schema_version(home.path()), chain_store_version(home.path())), (Some(2), Some(1)));
    let checked = run_binary_command(&previous, &["check", "--home", home_arg], &[]);
    assert_eq!(checked.code, 0, "{}", checked.output);
}

/// True when `node` has logged readiness and has not left the ready phase since.
fn is_ready(node: &NodeProcess) -> bool {
    let log = node.log();
    let became_ready = log.rfind("to=\"ready\"");
    let left_ready = log.rfind("from=\"ready\"");
    match (became_ready, left_ready) {
        (Some(ready), Some(left)) => ready > left,
        (Some(_), None) => true,
        _ => false,
    }
}

#[test]
fn a_rolling_upgrade_of_three_nodes_keeps_two_ready_at_every_moment() {
    let homes: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes: Vec<NodeProcess> =
        homes.iter().map(|home| NodeProcess::start(home.path(), &fast_node_args(), &[])).collect();
    for node in &mut nodes {
        node.wait_for_log("node ready", START_PATIENCE);
    }
    for upgraded in 0..nodes.len() {
        let others_ready = |nodes: &mut Vec<NodeProcess>| {
            (0..nodes.len()).filter(|index| *index != upgraded).all(|index| {
                nodes[index].assert_running();
                is_ready(&nodes[index])
            })
        };
        assert!(others_ready(&mut nodes), "fewer than two nodes ready before upgrading node {upgraded}");
        nodes[upgraded].stop_gracefully();
        assert!(others_ready(&mut nodes), "fewer than two nodes ready while node {upgraded} was down");
        // The "new binary" is this build; the upgrade path is the same stop-start on the home.
        nodes[upgraded] = NodeProcess::start(homes[upgraded].path(), &fast_node_args(), &[]);
        nodes[upgraded].wait_for_log("node ready", START_PATIENCE);
        assert!(others_ready(&mut nodes), "fewer than two nodes ready after upgrading node {upgraded}");
    }
    for node in &mut nodes {
        node.stop_gracefully();
    }
    for home in &homes {
        assert_consistent(home.path());
    }
}
