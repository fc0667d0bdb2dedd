//! The operator contract of `mpc-node start`, tested on the real binary with real
//! signals: every stop goes through one sequence, within Docker's grace period, and
//! leaves stores that `mpc-node check` finds consistent.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use mpc_node_process_tests::{
    DOCKER_GRACE, NodeProcess, START_PATIENCE, assert_consistent, fast_node_args, home_indexed_to,
    rewrite_node_store_at_version,
};

const PHASES: [&str; 7] = [
    "mark_not_ready",
    "cancel_root_token",
    "drain_node_tasks",
    "join_indexer_thread",
    "stop_actor_system",
    "close_node_store",
    "wait_for_rocksdb_instances",
];

fn args(extra: &[&str]) -> Vec<String> {
    let mut args = fast_node_args();
    args.extend(extra.iter().map(|arg| arg.to_string()));
    args
}

fn assert_graceful_report(node: &NodeProcess, reason_kind: &str, exit_code: i64) {
    let log = node.log();
    for phase in PHASES {
        assert!(log.contains(&format!("shutdown phase done phase=\"{phase}\"")), "phase {phase} not logged:\n{log}");
    }
    let report = node.shutdown_report().unwrap_or_else(|| panic!("no ShutdownReport line:\n{log}"));
    assert_eq!(report["reason"]["kind"], reason_kind, "{report}");
    assert_eq!(report["final_instance_count"], 0, "{report}");
    assert_eq!(report["exit_code"], exit_code, "{report}");
    assert_eq!(report["aborted_tasks"].as_array().map(Vec::len), Some(0), "{report}");
}

#[test]
fn sigterm_while_indexing_exits_0_through_every_phase_and_a_restart_resumes_at_cursor_plus_one() {
    let home = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(home.path(), &args(&[]), &[]);
    node.wait_for_log("node ready: first block indexed", START_PATIENCE);
    std::thread::sleep(Duration::from_millis(300));
    node.signal(libc::SIGTERM);
    let status = node.wait_exit(DOCKER_GRACE);
    assert_eq!(status.code(), Some(0), "{}", node.log());
    assert!(node.log().contains(" WARN SIGTERM received, initiating graceful shutdown"), "{}", node.log());
    assert_graceful_report(&node, "signal", 0);
    let cursor = assert_consistent(home.path());
    assert!(cursor > 1);

    let mut restarted = NodeProcess::start(home.path(), &args(&[]), &[]);
    restarted.wait_for_log(&format!("streamer started start_height={}", cursor + 1), START_PATIENCE);
    restarted.wait_for_log("node ready", START_PATIENCE);
    restarted.stop_gracefully();
    assert!(assert_consistent(home.path()) > cursor);
}

#[test]
fn sigint_behaves_like_sigterm() {
    let home = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(home.path(), &args(&[]), &[]);
    node.wait_for_log("node ready", START_PATIENCE);
    node.signal(libc::SIGINT);
    assert_eq!(node.wait_exit(DOCKER_GRACE).code(), Some(0), "{}", node.log());
    assert!(node.log().contains(" WARN SIGINT received, initiating graceful shutdown"), "{}", node.log());
    assert_graceful_report(&node, "signal", 0);
    assert_consistent(home.path());
}

#[test]
fn sigterm_during_catch_up_of_a_large_history_exits_0_with_a_consistent_store() {
    let home = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(home.path(), &args(&["--sandbox-history-blocks", "1000000"]), &[]);
    node.wait_for_log("node ready", START_PATIENCE);
    std::thread::sleep(Duration::from_millis(400));
    node.stop_gracefully();
    assert_graceful_report(&node, "signal", 0);
    let indexed = assert_consistent(home.path());
    assert!(indexed < 1_000_000, "the history was not still being caught up");
}

#[test]
fn sigterm_in_the_first_milliseconds_of_start_is_honoured() {
    for delay_ms in [0, 1, 2, 5, 10, 25, 60] {
        let home = tempfile::tempdir().unwrap();
        let mut node = NodeProcess::start(home.path(), &args(&[]), &[]);
        node.wait_until_executing(START_PATIENCE);
        std::thread::sleep(Duration::from_millis(delay_ms));
        node.signal(libc::SIGTERM);
        let status = node.wait_exit(DOCKER_GRACE);
        assert_eq!(status.code(), Some(0), "SIGTERM after {delay_ms} ms: {status}\n{}", node.log());
        assert!(node.log().contains("SIGTERM received, initiating graceful shutdown"), "{}", node.log());
        let report = node.shutdown_report().expect("report");
        assert_eq!(report["final_instance_count"], 0, "{report}");
    }
}

#[test]
fn sigterm_during_migration_of_an_old_schema_store_exits_0_and_the_next_start_completes_it() {
    let home = home_indexed_to(1500, &args(&["--sandbox-block-interval", "0ms", "--sandbox-history-blocks", "1500"]));
    let before = assert_consistent(home.path());
    rewrite_node_store_at_version(home.path(), 1);

    let slow_migration = [("MPC_MIGRATION_CHUNK_SIZE", "1")];
    let mut node = NodeProcess::start(home.path(), &args(&[]), &slow_migration);
    node.wait_for_log("migrating store schema", START_PATIENCE);
    node.stop_gracefully();
    assert!(node.log().contains("migration stopped at a safe point"), "{}", node.log());
    assert!(!node.log().contains("migration step applied from=2"), "migration was already done:\n{}", node.log());
    assert_eq!(node.shutdown_report().expect("report")["final_instance_count"], 0);

    let mut node = NodeProcess::start(home.path(), &args(&[]), &[]);
    node.wait_for_log("node store migrated", START_PATIENCE);
    node.wait_for_log("node ready", START_PATIENCE);
    node.stop_gracefully();
    assert!(assert_consistent(home.path()) >= before);
}

#[test]
fn a_second_signal_during_shutdown_forces_exit_with_128_plus_signal_naming_what_still_runs() {
    let home = tempfile::tempdir().unwrap();
    let hung = [("MPC_TEST_HANG_MONITOR", "monitor_tee_accounts")];
    let mut node = NodeProcess::start(home.path(), &args(&["--shutdown-timeout", "8s"]), &hung);
    node.wait_for_log("node ready", START_PATIENCE);
    node.signal(libc::SIGTERM);
    node.wait_for_log("test hook: ignoring cancellation", DOCKER_GRACE);
    node.signal(libc::SIGINT);
    let status = node.wait_exit(DOCKER_GRACE);
    assert_eq!(status.code(), Some(128 + libc::SIGINT), "{}", node.log());
    let log = node.log();
    assert!(log.contains("forced exit: second signal during shutdown"), "{log}");
    assert!(log.contains("monitor_tee_accounts"), "{log}");
    assert_consistent(home.path());
}

#[test]
fn a_revoked_image_hash_stops_the_node_with_exit_1_through_the_same_sequence() {
    let home = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(home.path(), &args(&["--sandbox-revoke-image-hash-at", "80"]), &[]);
    let status = node.wait_exit(START_PATIENCE);
    assert_eq!(status.code(), Some(1), "{}", node.log());
    assert!(node.log().contains("own image hash is no longer allowed by the contract"), "{}", node.log());
    assert_graceful_report(&node, "image_hash_revoked", 1);
    assert!(assert_consistent(home.path()) >= 70);
}

#[test]
fn a_hung_monitor_makes_shutdown_exit_4_by_the_deadline_and_the_report_names_it() {
    let home = tempfile::tempdir().unwrap();
    let hung = [("MPC_TEST_HANG_MONITOR", "monitor_tee_accounts")];
    let mut node = NodeProcess::start(home.path(), &args(&["--shutdown-timeout", "1s"]), &hung);
    node.wait_for_log("node ready", START_PATIENCE);
    node.signal(libc::SIGTERM);
    let status = node.wait_exit(DOCKER_GRACE);
    assert_eq!(status.code(), Some(4), "{}", node.log());
    let report = node.shutdown_report().expect("report");
    assert_eq!(report["aborted_tasks"], serde_json::json!(["monitor_tee_accounts"]), "{report}");
    assert_eq!(report["final_instance_count"], 0, "aborting must still release the stores: {report}");
    assert_consistent(home.path());
}

#[test]
fn without_the_signal_handler_the_same_sigterm_kills_the_process() {
    let home = tempfile::tempdir().unwrap();
    let disabled = [("MPC_TEST_DISABLE_SIGNAL_HANDLER", "1")];
    let mut node = NodeProcess::start(home.path(), &args(&[]), &disabled);
    node.wait_for_log("node ready", START_PATIENCE);
    node.signal(libc::SIGTERM);
    let status = node.wait_exit(DOCKER_GRACE);
    assert_eq!(status.signal(), Some(libc::SIGTERM), "expected death by signal, got {status}");
    assert!(node.shutdown_report().is_none());
}

#[test]
fn sighup_does_not_terminate_the_node() {
    let home = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(home.path(), &args(&[]), &[]);
    node.wait_for_log("node ready", START_PATIENCE);
    node.signal(libc::SIGHUP);
    node.wait_for_log("SIGHUP received", DOCKER_GRACE);
    std::thread::sleep(Duration::from_millis(300));
    node.stop_gracefully();
}

#[test]
fn json_logs_are_one_object_per_line_with_the_same_stable_messages() {
    let home = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(home.path(), &args(&["--log-format", "json"]), &[]);
    node.wait_for_log("node ready", START_PATIENCE);
    node.stop_gracefully();
    let lines: Vec<serde_json::Value> = node
        .log()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}")))
        .collect();
    let warned = lines
        .iter()
        .any(|line| line["level"] == "WARN" && line["message"] == "SIGTERM received, initiating graceful shutdown");
    assert!(warned, "no structured SIGTERM warning:\n{}", node.log());
    assert!(lines.iter().any(|line| line["message"].as_str().is_some_and(|m| m.starts_with("ShutdownReport {"))));
}

#[test]
fn a_shutdown_right_after_the_node_store_opened_exits_0_with_every_store_closed() {
    // The open runs on a blocking thread; the hook keeps that task alive 500 ms after
    // the store opened, and SIGTERM arrives in that window, so the opened store reaches
    // a start-up that the shutdown has already overtaken.
    let home = tempfile::tempdir().unwrap();
    let hold = [("MPC_TEST_HOLD_AFTER_NODE_STORE_OPEN_MS", "500")];
    let mut node = NodeProcess::start(home.path(), &args(&["--shutdown-timeout", "2s"]), &hold);
    node.wait_for_log("test hook: holding start-up after the node store opened", START_PATIENCE);
    node.signal(libc::SIGTERM);
    let status = node.wait_exit(DOCKER_GRACE);
    assert_eq!(status.code(), Some(0), "{}", node.log());
    let report = node.shutdown_report().expect("report");
    assert_eq!(report["final_instance_count"], 0, "{report}");
    assert_eq!(report["holders_alive"], serde_json::json!([]), "{report}");
}

#[test]
fn sigterms_at_random_moments_of_the_first_tens_of_milliseconds_all_exit_0() {
    // `MPC_EARLY_STOP_ROUNDS` sets the rounds (CI: 30; the measurement: 300).
    use rand::Rng;
    let rounds = mpc_node_process_tests::env_number("MPC_EARLY_STOP_ROUNDS", 30);
    let mut rng = rand::thread_rng();
    for round in 0..rounds {
        let home = tempfile::tempdir().unwrap();
        let mut node = NodeProcess::start(home.path(), &args(&["--shutdown-timeout", "2s"]), &[]);
        let delay = Duration::from_micros(rng.gen_range(12_000..34_000));
        std::thread::sleep(delay);
        node.signal(libc::SIGTERM);
        let status = node.wait_exit(DOCKER_GRACE);
        assert_eq!(status.code(), Some(0), "round {round}, SIGTERM after {delay:?}: {status}\n{}", node.log());
        let report = node.shutdown_report().expect("report");
        assert_eq!(report["final_instance_count"], 0, "round {round}: {report}");
    }
}
