//! In-process restarts of the indexer subsystem: SIGHUP, a changed data-wipe token, and
//! failures under the restart policy; a shutdown during a restart wins.

use std::time::{Duration, Instant};

use mpc_node_process_tests::{
    DOCKER_GRACE, NodeProcess, START_PATIENCE, assert_consistent, count_in_log, fast_node_args, open_fds,
    proc_status_value, wait_for_count,
};

const RESTARTED: &str = "indexer subsystem restarted";
const READY: &str = "node ready: first block indexed";

fn start_heights(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|line| line.split("streamer started start_height=").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn a_hundred_sighup_restarts_resume_gap_free_and_leak_no_threads_fds_or_stores() {
    let home = tempfile::tempdir().unwrap();
    let mut args = fast_node_args();
    args.extend(["--sandbox-block-interval".into(), "5ms".into()]);
    let mut node = NodeProcess::start(home.path(), &args, &[]);
    node.wait_for_log(READY, START_PATIENCE);
    std::thread::sleep(Duration::from_millis(300));
    let pid = node.pid();
    let (threads_at_start, fds_at_start) = (proc_status_value(pid, "Threads"), open_fds(pid));
    let mut rss_kib = vec![(0, proc_status_value(pid, "VmRSS"))];
    for cycle in 1..=100 {
        node.signal(libc::SIGHUP);
        wait_for_count(&mut node, RESTARTED, cycle, START_PATIENCE);
        wait_for_count(&mut node, READY, cycle + 1, START_PATIENCE);
        if cycle % 10 == 0 {
            rss_kib.push((cycle, proc_status_value(pid, "VmRSS")));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let (threads_at_end, fds_at_end) = (proc_status_value(pid, "Threads"), open_fds(pid));
    eprintln!("threads {threads_at_start} -> {threads_at_end}, fds {fds_at_start} -> {fds_at_end}, rss KiB by cycle {rss_kib:?}");

    let log = node.log();
    // Each restart logged the open-instance count right after starting the new
    // generation: only the node store, so the old chain store had closed.
    assert_eq!(count_in_log(&node, "indexer subsystem restarted"), 100);
    assert_eq!(log.matches("open_instances=1 ").count() + log.matches("open_instances=1\n").count(), 100, "{log}");
    let heights = start_heights(&log);
    assert_eq!(heights.len(), 101);
    assert!(heights.windows(2).all(|pair| pair[1] > pair[0]), "a restart went backwards: {heights:?}");
    // A few pool threads may come and go; a leak would be one or more per cycle.
    assert!(threads_at_end <= threads_at_start + 3, "threads {threads_at_start} -> {threads_at_end}");
    assert!(fds_at_end <= fds_at_start + 3, "fds {fds_at_start} -> {fds_at_end}");

    node.stop_gracefully();
    assert_eq!(node.shutdown_report().expect("report")["final_instance_count"], 0);
    assert!(assert_consistent(home.path()) >= *heights.last().unwrap());
}

#[test]
fn a_shutdown_signal_during_a_restart_wins_within_the_deadline() {
    let home = tempfile::tempdir().unwrap();
    let mut args = fast_node_args();
    args.extend(["--shutdown-timeout".into(), "2s".into()]);
    // The hung monitor keeps the restart waiting, so the SIGTERM surely lands inside it.
    let hung = [("MPC_TEST_HANG_MONITOR", "monitor_tee_accounts")];
    let mut node = NodeProcess::start(home.path(), &args, &hung);
    node.wait_for_log(READY, START_PATIENCE);
    node.signal(libc::SIGHUP);
    node.wait_for_log("restarting indexer subsystem", DOCKER_GRACE);
    let sent = Instant::now();
    node.signal(libc::SIGTERM);
    let status = node.wait_exit(DOCKER_GRACE);
    assert!(sent.elapsed() < DOCKER_GRACE);
    assert_eq!(status.code(), Some(4), "the hung task is aborted at the deadline:\n{}", node.log());
    assert!(!node.log().contains(RESTARTED), "the restart completed instead of the shutdown:\n{}", node.log());
    let report = node.shutdown_report().expect("report");
    assert_eq!(report["reason"]["kind"], "signal", "{report}");
    assert_eq!(report["aborted_tasks"], serde_json::json!(["monitor_tee_accounts"]), "{report}");
    assert_eq!(report["final_instance_count"], 0, "{report}");
    assert_consistent(home.path());
}

#[test]
fn indexer_failures_are_restarted_with_backoff_until_too_many_make_it_fatal() {
    let home = tempfile::tempdir().unwrap();
    let failing = [("MPC_TEST_FAIL_LISTEN_AFTER_BLOCKS", "5")];
    let mut node = NodeProcess::start(home.path(), &fast_node_args(), &failing);
    let status = node.wait_exit(START_PATIENCE);
    assert_eq!(status.code(), Some(1), "{}", node.log());
    assert_eq!(count_in_log(&node, "restarting indexer subsystem why=indexer failed"), 3, "{}", node.log());
    assert!(node.log().contains("too many failures"), "{}", node.log());
    let report = node.shutdown_report().expect("report");
    assert_eq!(report["reason"]["kind"], "indexer_exited", "{report}");
    assert_eq!(report["final_instance_count"], 0, "{report}");
    assert!(assert_consistent(home.path()) >= 20);
}

#[test]
fn a_new_data_wipe_token_wipes_the_chain_data_once_and_indexing_resumes_gap_free() {
    let home = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(home.path(), &fast_node_args(), &[]);
    node.wait_for_log(READY, START_PATIENCE);
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(home.path().join("data-wipe-token"), "wipe-2026-11-23\n").unwrap();
    node.wait_for_log("chain data wiped", DOCKER_GRACE);
    wait_for_count(&mut node, READY, 2, START_PATIENCE);
    std::thread::sleep(Duration::from_millis(200));
    node.stop_gracefully();
    let heights = start_heights(&node.log());
    assert_eq!(heights.len(), 2);
    assert!(heights[1] > heights[0]);
    let indexed = assert_consistent(home.path());

    let mut node = NodeProcess::start(home.path(), &fast_node_args(), &[]);
    node.wait_for_log(READY, START_PATIENCE);
    std::thread::sleep(Duration::from_millis(1200));
    node.stop_gracefully();
    assert!(!node.log().contains("data-wipe token changed"), "an applied token wiped again:\n{}", node.log());
    assert!(assert_consistent(home.path()) > indexed);
}
