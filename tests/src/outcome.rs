//! What a stopped node left to read: its `ShutdownReport`, and `mpc-node check` and the
//! other offline commands run to completion.

use std::path::Path;
use std::process::Command;

use crate::node_process::{NodeProcess, START_PATIENCE, fast_node_args, node_binary};

/// The last `ShutdownReport {...}` line of a log (a process's, a container's, a unit's
/// journal) as JSON.
pub fn last_shutdown_report(log: &str) -> Option<serde_json::Value> {
    let line = log.lines().rfind(|line| line.contains("ShutdownReport {"))?;
    serde_json::from_str(&line[line.find('{')?..]).ok()
}

/// Result of `mpc-node check`.
pub struct CheckResult {
    /// Exit code.
    pub code: i32,
    /// Stdout and stderr.
    pub output: String,
}

impl CheckResult {
    /// The "last indexed height" the summary printed.
    pub fn last_indexed_height(&self) -> Option<u64> {
        self.output.lines().find_map(|line| line.strip_prefix("last indexed height: ")?.trim().parse().ok())
    }
}

/// Runs `mpc-node <args...>` to completion.
pub fn run_node_command(args: &[&str]) -> CheckResult {
    run_node_command_with_env(args, &[])
}

/// Runs `mpc-node <args...>` to completion with extra environment `env`. A process
/// killed by a signal reports code `-signal`.
pub fn run_node_command_with_env(args: &[&str], env: &[(&str, &str)]) -> CheckResult {
    run_binary_command(&node_binary(), args, env)
}

/// Like [`run_node_command_with_env`], with another build of the node.
pub fn run_binary_command(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> CheckResult {
    use std::os::unix::process::ExitStatusExt;
    let mut command = Command::new(binary);
    command.args(args).env("RUST_LOG", "info");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run mpc-node");
    CheckResult {
        code: output.status.code().or_else(|| output.status.signal().map(|signal| -signal)).unwrap_or(-1),
        output: format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
    }
}

/// Runs `mpc-node check --home <home>`.
pub fn check(home: &Path) -> CheckResult {
    run_node_command(&["check", "--home", home.to_str().expect("utf-8 path")])
}

/// Asserts the home passes `mpc-node check` and returns the last indexed height.
pub fn assert_consistent(home: &Path) -> u64 {
    let result = check(home);
    assert_eq!(result.code, 0, "check failed:\n{}", result.output);
    result.last_indexed_height().expect("check printed the last indexed height")
}

/// Starts a node on `home`, waits until it is ready, stops it with SIGTERM (exit 0) and
/// asserts the home passes `check`: what "the home is startable" means.
pub fn assert_starts_ready_and_checks(home: &Path, context: &str) -> u64 {
    let mut node = NodeProcess::start(home, &fast_node_args(), &[]);
    node.wait_for_log("node ready", START_PATIENCE);
    node.stop_gracefully();
    let result = check(home);
    assert_eq!(result.code, 0, "{context}: check failed:\n{}", result.output);
    result.last_indexed_height().expect("check printed the last indexed height")
}

/// The last `count` of `lines` (a log's, perhaps filtered), each ending in a newline:
/// the end of a log for a failure's message.
pub fn last_lines<'a>(lines: impl DoubleEndedIterator<Item = &'a str>, count: usize) -> String {
    let mut tail: Vec<&str> = lines.rev().take(count).collect();
    tail.reverse();
    tail.into_iter().map(|line| format!("{line}\n")).collect()
}
