//! SIGKILL at random moments, restart, and the stores still agree: every block applied
//! exactly once, the chain resumed from its stored head. Bad stores at start give exit 3
//! and are left untouched.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use mpc_node_process_tests::{DOCKER_GRACE, NodeProcess, START_PATIENCE, assert_consistent, fast_node_args};
use mpc_store::migration::bump_version;
use mpc_store::{Store, StoreOptions, StoreUpdate};
use rand::{Rng, SeedableRng};

fn chain_head_logged(log: &str) -> Option<u64> {
    log.lines()
        .find_map(|line| line.split("sandbox chain starting head=").nth(1)?.split_whitespace().next()?.parse().ok())
}

#[test]
fn random_sigkills_while_indexing_lose_no_block_and_apply_none_twice() {
    let seed: u64 = std::env::var("MPC_CRASH_SEED").ok().and_then(|seed| seed.parse().ok()).unwrap_or(0x5eed);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let home = tempfile::tempdir().unwrap();
    let args = {
        let mut args = fast_node_args();
        args.extend(["--sandbox-block-interval".into(), "2ms".into(), "--sandbox-history-blocks".into(), "300".into()]);
        args
    };
    let mut indexed = 0;
    let mut chain_head = 0;
    for round in 0..6 {
        let mut node = NodeProcess::start(home.path(), &args, &[]);
        node.wait_for_log("streamer started", START_PATIENCE);
        let head = chain_head_logged(&node.log()).expect("chain logged its head");
        assert!(head >= chain_head, "round {round} (seed {seed}): chain restarted at {head}, below {chain_head}");
        std::thread::sleep(Duration::from_millis(rng.gen_range(50..700)));
        node.kill();
        let height = assert_consistent(home.path());
        assert!(height >= indexed, "round {round} (seed {seed}): indexed height went back from {indexed} to {height}");
        indexed = height;
        chain_head = head;
    }
    let mut node = NodeProcess::start(home.path(), &args, &[]);
    node.wait_for_log(&format!("streamer started start_height={}", indexed + 1), START_PATIENCE);
    node.wait_for_log("node ready", START_PATIENCE);
    node.stop_gracefully();
    assert!(assert_consistent(home.path()) > indexed);
}

fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| (entry.file_name().to_string_lossy().into_owned(), std::fs::read(entry.path()).unwrap()))
        .collect()
}

#[test]
fn a_second_node_on_the_same_home_exits_3_with_a_locked_error() {
    let home = tempfile::tempdir().unwrap();
    let mut first = NodeProcess::start(home.path(), &fast_node_args(), &[]);
    first.wait_for_log("node ready", START_PATIENCE);
    let mut second = NodeProcess::start(home.path(), &fast_node_args(), &[]);
    let status = second.wait_exit(DOCKER_GRACE);
    assert_eq!(status.code(), Some(3), "{}", second.log());
    assert!(second.log().contains("locked by another process"), "{}", second.log());
    first.stop_gracefully();
    assert_consistent(home.path());
}

#[test]
fn a_store_from_a_newer_binary_exits_3_naming_both_versions_and_is_not_changed() {
    let home = tempfile::tempdir().unwrap();
    let node_store = home.path().join("node");
    {
        let store = Store::open(&node_store, &StoreOptions::new("node", "newer")).unwrap();
        let mut update = StoreUpdate::new();
        bump_version(&mut update, 42);
        store.commit(update).unwrap();
    }
    let before = snapshot(&node_store);
    let mut node = NodeProcess::start(home.path(), &fast_node_args(), &[]);
    let status = node.wait_exit(DOCKER_GRACE);
    assert_eq!(status.code(), Some(3), "{}", node.log());
    let log = node.log();
    assert!(log.contains("schema version 42") && log.contains("up to version 3"), "{log}");
    assert_eq!(snapshot(&node_store), before, "the newer store was modified");
}

#[test]
fn usage_errors_exit_2() {
    let result = mpc_node_process_tests::run_node_command(&["start", "--home", "/tmp/x", "--sandbox-shards", "9"]);
    assert_eq!(result.code, 2, "{}", result.output);
    let result = mpc_node_process_tests::run_node_command(&["start", "--home", "/tmp/x", "--shutdown-timeout", "soon"]);
    assert_eq!(result.code, 2, "{}", result.output);
}
