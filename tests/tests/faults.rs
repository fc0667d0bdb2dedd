//! Fault injection on the real binary: a full disk (under a node or a chain host) and a
//! corrupted store file give a clear error and a non-zero exit, never a panic, and lose
//! nothing committed.

use std::process::Command;

use mpc_node_process_tests::sandbox_network::Network;
use mpc_node_process_tests::{
    DOCKER_GRACE, NodeProcess, fast_node_args, free_port, home_indexed_to, last_lines, node_binary,
};

#[test]
fn a_full_disk_stops_the_node_with_an_error_and_the_next_start_after_the_fault_clears_is_consistent() {
    // The home lives on a 6 MiB tmpfs in a private user and mount namespace (no root
    // needed). The node fills it, must stop with a non-zero exit and a clear message;
    // then the file system grows, `check` must pass and a new start must resume.
    let binary = node_binary();
    let args = fast_node_args().join(" ");
    let (dir, stdout) = on_a_small_disk(|m| {
        format!(
            "{b} start --home {m}/home {args} --sandbox-block-interval 0ms --sandbox-history-blocks 1000000 \
                 --sandbox-requests-per-block 64 2>{m}/../first.log; echo \"first-exit $?\"
             mount -o remount,size=256m {m} || exit 91
             {b} check --home {m}/home; echo \"check-exit $?\"
             timeout --preserve-status -s TERM 3 {b} start --home {m}/home {args} 2>{m}/../second.log; echo \"second-exit $?\"
             {b} check --home {m}/home; echo \"final-check-exit $?\"",
            b = binary.display(),
        )
    });
    let first_log = std::fs::read_to_string(dir.path().join("first.log")).unwrap_or_default();
    let second_log = std::fs::read_to_string(dir.path().join("second.log")).unwrap_or_default();
    let context = format!("stdout:\n{stdout}\nfirst run:\n{}\nsecond run:\n{second_log}", tail(&first_log));
    let first_exit = field(&stdout, "first-exit").unwrap_or_else(|| panic!("{context}"));
    assert!(first_exit != 0 && first_exit < 128, "the full disk must end the node with an error exit: {context}");
    assert!(first_log.contains("no space left on device"), "no clear disk-full message: {context}");
    assert!(!first_log.contains("panicked"), "{context}");
    assert_eq!(field(&stdout, "check-exit"), Some(0), "store inconsistent after the disk filled: {context}");
    assert_eq!(field(&stdout, "second-exit"), Some(0), "the next start did not run and stop cleanly: {context}");
    assert!(second_log.contains("node ready"), "{context}");
    assert_eq!(field(&stdout, "final-check-exit"), Some(0), "{context}");
}

#[test]
fn a_chain_host_whose_disk_fills_stops_with_an_error_instead_of_serving_a_chain_that_no_longer_grows() {
    // As above, the host's home on a 6 MiB tmpfs. Block production stops at the full
    // disk; the host must then exit with an error (its orchestrator restarts it or
    // alerts), not go on answering as if healthy. A host that stays up is stopped by
    // `timeout` with SIGTERM and exits 0, which fails the test.
    let network_dir = tempfile::tempdir().unwrap();
    let network = Network::write(network_dir.path(), 3, 2, None);
    let (dir, stdout) = on_a_small_disk(|m| {
        format!(
            "timeout -s TERM 60 {b} sandbox-chain --home {m}/host --listen 127.0.0.1:{port} --network {net} \
                 --sandbox-block-interval 0ms --sandbox-history-blocks 1000000 --sandbox-requests-per-block 64 \
                 2>{m}/../host.log; echo \"host-exit $?\"",
            b = node_binary().display(),
            port = free_port(),
            net = network.path.display(),
        )
    });
    let log = std::fs::read_to_string(dir.path().join("host.log")).unwrap_or_default();
    let context = format!("stdout:\n{stdout}\nhost:\n{}", tail(&log));
    let exit = field(&stdout, "host-exit").unwrap_or_else(|| panic!("{context}"));
    assert_eq!(exit, 1, "the host must fail once its chain stopped growing: {context}");
    assert!(log.contains("block production stopped") && log.contains("no space left on device"), "{context}");
    let report = mpc_node_process_tests::last_shutdown_report(&log).expect("a ShutdownReport");
    assert_eq!(report["reason"]["kind"], "task_failed", "{report}");
    assert_eq!(report["final_instance_count"], 0, "{report}");
    assert!(!log.contains("panicked"), "{context}");
}

/// Runs the shell commands `steps(M)` (which print `name code` lines) after mounting a
/// 6 MiB tmpfs at `M`, in a private user and mount namespace (no root needed), at most
/// 120 s. Returns the directory that holds `M` (logs may go next to it) and what the
/// commands printed.
fn on_a_small_disk(steps: impl FnOnce(&str) -> String) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("small");
    std::fs::create_dir(&mount).unwrap();
    let mount = mount.display().to_string();
    let script = format!("mount -t tmpfs -o size=6m tmpfs {mount} || exit 90\n{}", steps(&mount));
    let output = Command::new("timeout")
        .args(["120", "unshare", "--user", "--map-root-user", "--mount", "sh", "-c", &script])
        .output()
        .unwrap();
    (dir, String::from_utf8_lossy(&output.stdout).into_owned())
}

fn field(stdout: &str, name: &str) -> Option<i32> {
    stdout.lines().find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
}

fn tail(log: &str) -> String {
    last_lines(log.lines(), 30)
}

#[test]
fn a_corrupted_store_file_exits_3_with_a_clear_message_and_no_panic() {
    let home = home_indexed_to(20, &fast_node_args());
    let node_store = home.path().join("node");
    let manifest = std::fs::read_dir(&node_store)
        .unwrap()
        .filter_map(Result::ok)
        .find(|entry| entry.file_name().to_string_lossy().starts_with("MANIFEST"))
        .unwrap();
    std::fs::write(manifest.path(), b"definitely not a manifest").unwrap();
    let mut node = NodeProcess::start(home.path(), &fast_node_args(), &[]);
    let status = node.wait_exit(DOCKER_GRACE);
    assert_eq!(status.code(), Some(3), "{}", node.log());
    assert!(node.log().contains("is corrupt or unreadable"), "{}", node.log());
    assert!(!node.log().contains("panicked"), "{}", node.log());
}
