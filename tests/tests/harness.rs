//! The harness runs a node built with the test hooks, and refuses any other: a test
//! whose crash point or fault hook cannot fire would otherwise fail late and obscurely,
//! or pass without testing anything.

use std::process::Command;

use mpc_node_process_tests::docker_engine::production_binary;
use mpc_node_process_tests::{has_test_hooks, node_binary};

/// Set in the child run of the refusal test.
const CHILD: &str = "MPC_HARNESS_REFUSAL_CHILD";

#[test]
fn the_tests_run_a_build_with_test_hooks_and_the_images_one_without() {
    assert!(has_test_hooks(&node_binary()), "{}", node_binary().display());
    assert!(!has_test_hooks(&production_binary()), "{}", production_binary().display());
}

#[test]
fn a_node_binary_without_test_hooks_is_refused_with_how_to_build_one() {
    if std::env::var_os(CHILD).is_some() {
        node_binary();
        return;
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_node_binary_without_test_hooks_is_refused_with_how_to_build_one", "--nocapture"])
        .env(CHILD, "1")
        .env("MPC_NODE_BIN", production_binary())
        .output()
        .unwrap();
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!output.status.success(), "a production build was accepted:\n{printed}");
    assert!(printed.contains("was built without the test hooks"), "{printed}");
    assert!(printed.contains("cargo build --release --workspace --all-features --bins"), "{printed}");
}
