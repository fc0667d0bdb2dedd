//! Harness for process-level tests: runs the real `mpc-node` binary with a temporary
//! home, captures its logs, sends real signals, reaps it by pid, and reads what it left.
//!
//! The binary is this package's `mpc-node-test-hooks` (the node's `main` with feature
//! `test-hooks`), or `MPC_NODE_BIN`; see [`node_binary`].

pub mod docker_engine;
mod fixtures;
mod http;
pub mod network_stack;
mod node_process;
mod outcome;
mod proc_status;
pub mod sandbox_network;
pub mod signing_network;
pub mod swarm;

pub use fixtures::*;
pub use http::*;
pub use node_process::*;
pub use outcome::*;
pub use proc_status::*;

/// A count from the environment (rounds of a randomized test), or `default`: CI runs
/// the default, a person the full count.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

/// Log line of a crash point that killed the process (feature `test-hooks`).
pub const CRASH_POINT_REACHED: &str = "test hook: crash point reached";
