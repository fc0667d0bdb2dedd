//! Invariant 1 at every instant that creates, renames or deletes a store directory: a
//! SIGKILL there leaves a home that the next start brings up and `mpc-node check` passes.
//!
//! Two kinds of kill. A crash point (feature `test-hooks`, `MPC_TEST_CRASH_AT`) makes the
//! process SIGKILL itself at one named step, so each window, even one of microseconds
//! between two renames, is hit for certain, and the test asserts it was. Kills at random
//! moments of a first start cover whatever the named points do not know about.
//!
//! `MPC_BIRTH_ROUNDS` sets the random rounds (default 30 in CI; the full run is 200).

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use mpc_chain::CHAIN_SCHEMA_VERSION;
use mpc_node_process_tests::{
    CRASH_POINT_REACHED, DOCKER_GRACE, NodeProcess, START_PATIENCE, assert_consistent, assert_starts_ready_and_checks,
    chain_store_version, fast_node_args, home_indexed_to, rewrite_chain_store_at_version_1,
    rewrite_node_store_at_version, run_node_command_with_env,
};
use rand::Rng;

/// Starts a node armed with `crash_point` and asserts that it died there.
fn start_until_crash(home: &Path, crash_point: &str, while_running: impl FnOnce(&mut NodeProcess)) {
    let mut node = NodeProcess::start(home, &fast_node_args(), &[("MPC_TEST_CRASH_AT", crash_point)]);
    while_running(&mut node);
    let status = node.wait_exit(START_PATIENCE);
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "{crash_point}: expected a self-SIGKILL, got {status}:\n{}",
        node.log()
    );
    assert!(node.log().contains(CRASH_POINT_REACHED), "{crash_point}: the kill did not land there:\n{}", node.log());
}

/// Runs an offline command armed with `crash_point` and asserts that it died there.
fn run_until_crash(args: &[&str], crash_point: &str) {
    let result = run_node_command_with_env(args, &[("MPC_TEST_CRASH_AT", crash_point)]);
    assert_eq!(result.code, -libc::SIGKILL, "{crash_point}: expected a self-SIGKILL:\n{}", result.output);
    assert!(
        result.output.contains(CRASH_POINT_REACHED),
        "{crash_point}: the kill did not land there:\n{}",
        result.output
    );
}

/// Names next to the stores that only an interrupted operation leaves behind.
fn leftovers(home: &Path) -> Vec<String> {
    std::fs::read_dir(home)
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            [".creating", ".deleting", ".tmp", ".wiping", ".replaced-by-rollback"].iter().any(|s| name.ends_with(s))
        })
        .collect()
}

/// The next start comes up ready, `check` passes, and no leftover stays behind.
fn assert_recovered(home: &Path, point: &str) -> u64 {
    let cursor = assert_starts_ready_and_checks(home, point);
    assert_eq!(leftovers(home), Vec::<String>::new(), "{point}: leftovers not cleaned up");
    cursor
}

fn home_str(home: &Path) -> &str {
    home.to_str().expect("utf-8 path")
}

#[test]
fn a_sigkill_at_every_step_of_a_first_start_leaves_a_home_the_next_start_brings_up() {
    let steps =
        ["staging_dir_made", "staging_store_open", "staging_version_committed", "staging_closed", "renamed_into_place"];
    let mut points: Vec<String> = ["node", "chain"]
        .iter()
        .flat_map(|store| steps.iter().map(move |step| format!("create:{step}@{store}")))
        .collect();
    points.push("admin_token:staged".into());
    for point in &points {
        let home = tempfile::tempdir().unwrap();
        start_until_crash(home.path(), point, |_| {});
        assert_recovered(home.path(), point);
    }
}

#[test]
fn sigkills_at_random_moments_of_a_first_start_never_leave_a_home_unstartable() {
    let rounds = mpc_node_process_tests::env_number("MPC_BIRTH_ROUNDS", 30);
    let mut rng = rand::thread_rng();
    let (mut during_creation, mut before_any_store, mut between_stores, mut after_both) = (0, 0, 0, 0);
    for round in 0..rounds {
        let home = tempfile::tempdir().unwrap();
        let mut node = NodeProcess::start(home.path(), &fast_node_args(), &[]);
        std::thread::sleep(Duration::from_micros(rng.gen_range(0..60_000)));
        node.kill();
        let left = leftovers(home.path());
        let stores = ["node", "data"].iter().filter(|name| home.path().join(name).exists()).count();
        match (left.is_empty(), stores) {
            (false, _) => during_creation += 1,
            (true, 0) => before_any_store += 1,
            (true, 1) => between_stores += 1,
            (true, _) => after_both += 1,
        }
        let context = format!("round {round} (left behind {left:?})");
        assert_starts_ready_and_checks(home.path(), &context);
    }
    eprintln!(
        "{rounds} fresh homes killed in their first 60 ms: {during_creation} during store creation, \
         {before_any_store} before any store, {between_stores} between the two, {after_both} after both; all started again and passed check"
    );
    assert!(during_creation > 0, "no kill landed while a store was being created; the test proves nothing");
}

#[test]
fn a_data_wipe_killed_at_every_step_is_finished_by_the_next_start() {
    let home = home_indexed_to(60, &fast_node_args());
    let points = [
        "wipe:data_set_aside",
        "wipe:token_recorded",
        "create:staging_store_open@chain",
        "create:renamed_into_place@chain",
    ];
    for (index, point) in points.iter().enumerate() {
        let before = assert_consistent(home.path());
        start_until_crash(home.path(), point, |node| {
            node.wait_for_log("node ready", START_PATIENCE);
            std::fs::write(home.path().join("data-wipe-token"), format!("wipe-{index}\n")).unwrap();
        });
        let after = assert_recovered(home.path(), point);
        assert!(after >= before, "{point}: the cursor went back from {before} to {after}");
    }
}

#[test]
fn migrate_and_rollback_killed_at_every_step_are_finished_by_the_next_command() {
    let home = home_indexed_to(60, &fast_node_args());
    let dir = home_str(home.path());
    // Migration: with a kept checkpoint, and without (the checkpoint is then deleted).
    // The recovery is a `start`, which finishes an interrupted migration without keeping
    // the checkpoint; a migration that had finished keeps it only if it was asked to.
    for (point, keep, checkpoint_left) in [
        ("migrate:checkpoint_taken", true, false),
        ("migrate:steps_done", true, true),
        ("migrate:steps_done", false, false),
        ("delete:renamed_aside@node", false, false),
    ] {
        rewrite_node_store_at_version(home.path(), 1);
        let mut args = vec!["migrate", "--home", dir];
        if keep {
            args.push("--keep-checkpoint");
        }
        run_until_crash(&args, point);
        assert_recovered(home.path(), point);
        let checkpoints: Vec<_> = std::fs::read_dir(home.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().contains("pre-migration"))
            .collect();
        assert_eq!(
            !checkpoints.is_empty(),
            checkpoint_left,
            "{point} (--keep-checkpoint {keep}): checkpoints after recovery: {:?}",
            checkpoints.iter().map(|entry| entry.file_name()).collect::<Vec<_>>()
        );
        for entry in checkpoints {
            std::fs::remove_dir_all(entry.path()).unwrap();
        }
    }
    // Rollback: the interrupted one is finished, leaving the pre-migration store.
    for point in ["rollback:store_set_aside", "rollback:checkpoint_restored"] {
        rewrite_node_store_at_version(home.path(), 1);
        let migrated = run_node_command_with_env(&["migrate", "--home", dir, "--keep-checkpoint"], &[]);
        assert_eq!(migrated.code, 0, "{}", migrated.output);
        run_until_crash(&["rollback", "--home", dir], point);
        let dry_run = run_node_command_with_env(&["migrate", "--home", dir, "--dry-run"], &[]);
        assert_eq!(dry_run.code, 0, "{point}: {}", dry_run.output);
        assert!(
            dry_run.output.contains("node store schema: v1"),
            "{point}: the rollback was not finished:\n{}",
            dry_run.output
        );
        assert_recovered(home.path(), point);
    }
}

/// Entries of the home whose name contains `part`.
fn entries_containing(home: &Path, part: &str) -> Vec<String> {
    std::fs::read_dir(home)
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(part))
        .collect()
}

#[test]
fn a_chain_store_upgrade_killed_at_every_step_is_finished_by_the_next_start() {
    let home = home_indexed_to(60, &fast_node_args());
    // The start upgrades the chain store (v1 -> current) through its own pre-migration
    // checkpoint, which nobody asked to keep: at the next start it must be gone.
    for point in
        ["migrate:checkpoint_taken@chain", "migrate:steps_done@chain", "delete:renamed_aside@data.pre-migration"]
    {
        rewrite_chain_store_at_version_1(home.path());
        start_until_crash(home.path(), point, |_| {});
        assert_recovered(home.path(), point);
        assert_eq!(
            chain_store_version(home.path()),
            Some(CHAIN_SCHEMA_VERSION),
            "{point}: the upgrade was not finished"
        );
        assert_eq!(entries_containing(home.path(), "pre-migration"), Vec::<String>::new(), "{point}");
    }
    // Killed after the upgrade and before its checkpoint's removal, then the chain data
    // wiped before the store is opened again: the checkpoint of the store that is gone
    // is removed too.
    rewrite_chain_store_at_version_1(home.path());
    start_until_crash(home.path(), "migrate:steps_done@chain", |_| {});
    assert_eq!(entries_containing(home.path(), "pre-migration"), vec!["data.pre-migration-v1".to_owned()]);
    std::fs::write(home.path().join("data-wipe-token"), "wipe-after-upgrade\n").unwrap();
    assert_recovered(home.path(), "wipe after an interrupted upgrade");
    assert_eq!(
        entries_containing(home.path(), "pre-migration"),
        Vec::<String>::new(),
        "checkpoint left after the wipe"
    );
}

#[test]
fn a_second_start_on_a_home_in_use_exits_3_naming_the_home_whatever_its_web_address() {
    let home = tempfile::tempdir().unwrap();
    let mut first = NodeProcess::start(home.path(), &fast_node_args(), &[]);
    let addr = first.web_addr().to_string();
    first.wait_for_log("node ready", START_PATIENCE);
    for web_addr in ["127.0.0.1:0", addr.as_str()] {
        let mut args = fast_node_args();
        args.extend(["--web-addr".to_owned(), web_addr.to_owned()]);
        let mut second = NodeProcess::start(home.path(), &args, &[]);
        let status = second.wait_exit(DOCKER_GRACE);
        assert_eq!(status.code(), Some(3), "--web-addr {web_addr}:\n{}", second.log());
        assert!(
            second.log().contains("is locked by another process (is another mpc-node running on this home?)"),
            "--web-addr {web_addr}:\n{}",
            second.log()
        );
    }
    first.stop_gracefully();
    assert_consistent(home.path());
}
