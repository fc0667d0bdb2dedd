//! What `check` and `start` do with a home they cannot trust: a running node's home, a
//! store whose write-ahead log is damaged before its end or cut short at it, a data-wipe
//! token that cannot be read. None of them may lose data silently or be taken for a
//! decision to delete it.

use std::path::PathBuf;
use std::time::Duration;

use mpc_node_process_tests::{
    DOCKER_GRACE, NodeProcess, START_PATIENCE, assert_consistent, check, damage_the_middle, fast_node_args,
    home_indexed_to, logs, newest_log,
};

/// An indexed home whose `store` has a log damaged in the middle, the damaged file, and
/// what `check` printed of it, after asserting that check failed on it by name.
fn home_with_a_damaged_log(
    store: &str,
    name: &str,
) -> (tempfile::TempDir, u64, PathBuf, mpc_node_process_tests::CheckResult) {
    let (home, height) = indexed_home();
    let log = newest_log(&home.path().join(store));
    damage_the_middle(&log);
    let checked = check(home.path());
    assert_eq!(checked.code, 1, "a damaged log is a problem, not a verdict of consistency:\n{}", checked.output);
    let problem = format!("{name} store: write-ahead log {}", log.display());
    assert!(checked.output.contains(&problem), "check names the file:\n{}", checked.output);
    (home, height, log, checked)
}

/// A stopped home that indexed at least 60 blocks, and the height `check` reports.
fn indexed_home() -> (tempfile::TempDir, u64) {
    let home = home_indexed_to(60, &fast_node_args());
    let height = assert_consistent(home.path());
    (home, height)
}

#[test]
fn check_refuses_the_home_of_a_running_node_and_reads_it_once_the_node_stopped() {
    let home = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(home.path(), &fast_node_args(), &[]);
    node.wait_for_log("node ready", START_PATIENCE);
    let refused = check(home.path());
    assert_eq!(refused.code, 3, "check must refuse a running node's home:\n{}", refused.output);
    assert!(refused.output.contains("is another mpc-node running on this home?"), "{}", refused.output);
    assert!(!refused.output.contains("consistent:"), "no verdict on a live store:\n{}", refused.output);
    node.stop_gracefully();
    assert_consistent(home.path());
}

#[test]
fn a_node_store_log_damaged_in_the_middle_fails_check_and_start_recovers_it_with_a_warning() {
    let (home, height, log, checked) = home_with_a_damaged_log("node", "node");
    let recovered_to = checked.last_indexed_height().expect("check reports what start recovers to");
    assert!(recovered_to < height, "the writes after the damage are dropped: {recovered_to} of {height}");

    let mut node = NodeProcess::start(home.path(), &fast_node_args(), &[]);
    node.wait_for_log("node store recovered to the last consistent write", START_PATIENCE);
    let log_text = node.log();
    let warning = log_text.lines().find(|line| line.contains("node store recovered")).unwrap();
    assert!(warning.contains(&log.display().to_string()), "the warning names the damaged file: {warning}");
    assert!(warning.contains(&format!("recovered_cursor=Some({recovered_to})")), "and where it resumes: {warning}");
    node.wait_for_log(&format!("streamer started start_height={}", recovered_to + 1), START_PATIENCE);
    node.wait_for_log("node ready", START_PATIENCE);
    node.stop_gracefully();
    assert!(assert_consistent(home.path()) >= recovered_to, "the dropped blocks are indexed again");
}

#[test]
fn a_chain_store_log_damaged_in_the_middle_fails_check_and_the_chain_continues_after_recovery() {
    let (home, _, _, _) = home_with_a_damaged_log("data", "chain");

    let mut node = NodeProcess::start(home.path(), &fast_node_args(), &[]);
    node.wait_for_log("chain store recovered to the last block before its damaged log", START_PATIENCE);
    node.wait_for_log("node ready", START_PATIENCE);
    node.stop_gracefully();
    assert_consistent(home.path());
}

#[test]
fn a_log_cut_short_at_its_end_passes_check_and_starts_without_a_warning() {
    let (home, height) = indexed_home();
    let mut torn = 0;
    for store in ["node", "data"] {
        // What a kill tears is the last record of the log written last.
        let last_log = logs(&home.path().join(store)).pop().expect("a write-ahead log");
        let length = std::fs::metadata(&last_log).unwrap().len();
        if length > 64 {
            std::fs::OpenOptions::new().write(true).open(&last_log).unwrap().set_len(length - 10).unwrap();
            torn += 1;
        }
    }
    assert!(torn > 0, "no store had a record in its last log to tear; the test proved nothing");
    let checked = check(home.path());
    assert_eq!(checked.code, 0, "a torn last write is what a kill leaves:\n{}", checked.output);
    assert!(checked.last_indexed_height().unwrap() + 1 >= height, "at most the torn block is gone");
    let mut node = NodeProcess::start(home.path(), &fast_node_args(), &[]);
    node.wait_for_log("node ready", START_PATIENCE);
    node.stop_gracefully();
    assert!(!node.log().contains("recovered to the last"), "no recovery for a torn tail:\n{}", node.log());
    assert_consistent(home.path());
}

#[test]
fn an_unreadable_wipe_token_stops_the_start_with_exit_3_and_wipes_nothing() {
    let (home, height) = indexed_home();
    let token = home.path().join("data-wipe-token");
    std::fs::write(&token, [0xff, 0xfe, b'\n']).unwrap();
    let mut node = NodeProcess::start(home.path(), &fast_node_args(), &[]);
    let status = node.wait_exit(START_PATIENCE);
    assert_eq!(status.code(), Some(3), "{}", node.log());
    assert!(node.log().contains("cannot read the data-wipe token"), "{}", node.log());
    assert!(!node.log().contains("chain data wiped"), "{}", node.log());
    std::fs::remove_file(&token).unwrap();
    assert_eq!(assert_consistent(home.path()), height, "the chain store is as it was");
}

#[test]
fn a_wipe_token_that_becomes_unreadable_while_running_stops_the_node_instead_of_being_ignored() {
    let home = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(home.path(), &fast_node_args(), &[]);
    node.wait_for_log("node ready", START_PATIENCE);
    std::fs::create_dir(home.path().join("data-wipe-token")).unwrap();
    let status = node.wait_exit(DOCKER_GRACE + Duration::from_secs(5));
    assert_eq!(status.code(), Some(1), "{}", node.log());
    let report = node.shutdown_report().expect("a ShutdownReport");
    assert_eq!(report["reason"]["kind"], "task_failed", "{report}");
    assert_eq!(report["reason"]["task"], "data_wipe_watcher", "{report}");
    assert!(report["reason"]["error"].as_str().unwrap().contains("cannot read the data-wipe token"), "{report}");
    assert_eq!(report["final_instance_count"], 0, "{report}");
    std::fs::remove_dir(home.path().join("data-wipe-token")).unwrap();
    assert_consistent(home.path());
}
