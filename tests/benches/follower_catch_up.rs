//! Catch-up of a node that follows a chain host, against the embedded single-node chain
//! on the same workload: the time from the node's spawn until it has indexed the whole
//! history, for each.
//!
//! Run: `cargo bench --workspace --all-features --bench follower_catch_up`
//! (`MPC_BENCH_BLOCKS`, default 10,000 blocks of history; `MPC_BENCH_REQUESTS_PER_BLOCK`,
//! default 4; `MPC_BENCH_RUNS` of each, default 3, alternated).
//!
//! The host produces its history first (its contract runs from genesis, so every block
//! carries its sign requests) and then no more blocks; the embedded node produces the
//! same history as it indexes it, as a single node does at its first start.

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use mpc_node_process_tests::sandbox_network::{Network, follower_args, host_head, wait_until, wait_until_indexed};
use mpc_node_process_tests::{NodeProcess, env_number, fast_node_args};

/// How long a run may take.
const PATIENCE: Duration = Duration::from_secs(600);

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Spawns `args` on a fresh home and returns the seconds until it indexed `height`.
fn catch_up(args: &[String], height: u64) -> f64 {
    let home = tempfile::tempdir().expect("home");
    let started = Instant::now();
    let mut node = NodeProcess::start(home.path(), args, &[]);
    wait_until_indexed(&mut node, height, PATIENCE);
    let took = started.elapsed().as_secs_f64();
    node.stop_gracefully();
    took
}

fn main() {
    let blocks = env_number("MPC_BENCH_BLOCKS", 10_000);
    let requests = env_number("MPC_BENCH_REQUESTS_PER_BLOCK", 4).to_string();
    let runs = env_number("MPC_BENCH_RUNS", 3);
    let workload = |history: &str| {
        [
            "--sandbox-block-interval",
            "1h",
            "--sandbox-history-blocks",
            history,
            "--sandbox-requests-per-block",
            &requests,
        ]
        .map(String::from)
        .to_vec()
    };
    let dir = tempfile::tempdir().expect("dir");
    let network = Network::write(dir.path(), 3, 2, Some(SigningKey::from_bytes(&[42; 32])));
    let mut host = NodeProcess::sandbox_chain(&dir.path().join("host"), &network.path, &workload(&blocks.to_string()));
    let rpc = host.rpc_addr();
    wait_until("the host produced its history", PATIENCE, || host_head(rpc) >= blocks);
    // Both index up to the last final block of the history.
    let target = blocks - mpc_chain::FINALITY_LAG;

    let mut embedded_args = fast_node_args();
    embedded_args.extend(workload(&blocks.to_string()));
    let followers = follower_args(rpc);
    let (mut embedded, mut following) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        embedded.push(catch_up(&embedded_args, target));
        following.push(catch_up(&followers, target));
    }
    let (embedded, following) = (median(embedded), median(following));
    let rate = |seconds: f64| target as f64 / seconds;
    println!(
        "catch-up of {target} blocks ({requests} requests per block), median of {runs}: \
         embedded {:.3} s ({:.0} blocks/s), following the host {:.3} s ({:.0} blocks/s), ratio {:.3} (goal >= 0.5)",
        embedded,
        rate(embedded),
        following,
        rate(following),
        rate(following) / rate(embedded)
    );
    host.stop_gracefully();
}
