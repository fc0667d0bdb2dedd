//! Shutdown latency: SIGTERM to process exit while the indexer catches up at full speed,
//! and in steady state (a block every 200 ms, the default).
//!
//! Run: `cargo bench --workspace --all-features --bench shutdown_latency`
//! (`MPC_BENCH_RUNS` sets the number of runs, default 30). Prints p50/p95/p99 of the
//! wall time from `kill(SIGTERM)` to the reaped exit, and of the node's own measure of
//! its shutdown sequence (`ShutdownReport.total_ms`), and what the stop leaves to the
//! next start: a new process on the same home, from spawn to its first indexed block
//! (it replays the WAL the stop left behind).

use std::time::{Duration, Instant};

use mpc_node_process_tests::{DOCKER_GRACE, NodeProcess, START_PATIENCE, percentile, wait_for_first_block_count};

fn summary(name: &str, mut values: Vec<f64>) {
    values.sort_by(f64::total_cmp);
    println!(
        "{name}: n={} p50={:.1} ms p95={:.1} ms p99={:.1} ms max={:.1} ms",
        values.len(),
        percentile(&values, 50.0),
        percentile(&values, 95.0),
        percentile(&values, 99.0),
        values[values.len() - 1]
    );
}

/// One scenario: how the chain produces blocks while the node runs.
struct Scenario {
    name: &'static str,
    block_interval: &'static str,
    history_blocks: &'static str,
}

const SCENARIOS: [Scenario; 2] = [
    // The indexer catching up as fast as it can: the most unflushed data at the stop.
    Scenario { name: "full speed", block_interval: "0ms", history_blocks: "1000000" },
    // The default block interval, history indexed: what a running node usually is.
    Scenario { name: "steady state", block_interval: "200ms", history_blocks: "50" },
];

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let runs: usize = std::env::var("MPC_BENCH_RUNS").ok().and_then(|runs| runs.parse().ok()).unwrap_or(30);
    for scenario in &SCENARIOS {
        measure(scenario, runs);
    }
}

fn measure(scenario: &Scenario, runs: usize) {
    let args: Vec<String> = [
        "--sandbox-block-interval",
        scenario.block_interval,
        "--sandbox-history-blocks",
        scenario.history_blocks,
        "--sandbox-requests-per-block",
        "8",
        "--stats-interval",
        "1s",
        "--web-addr",
        "127.0.0.1:0",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let mut exit_ms = Vec::new();
    let mut sequence_ms = Vec::new();
    let mut next_start_ms = Vec::new();
    for run in 0..runs {
        let home = tempfile::tempdir().expect("temporary home");
        let mut node = NodeProcess::start(home.path(), &args, &[]);
        node.wait_for_log("node ready", START_PATIENCE);
        std::thread::sleep(Duration::from_millis(700));
        let sent = Instant::now();
        node.signal(libc::SIGTERM);
        let status = node.wait_exit(DOCKER_GRACE);
        // To the reap itself: joining the harness's log readers is not the node's stop.
        let reaped = node.reaped_at().expect("reaped by wait_exit");
        let elapsed = reaped.duration_since(sent).as_secs_f64() * 1000.0;
        assert_eq!(status.code(), Some(0), "{} run {run}: {}", scenario.name, node.log());
        let report = node.shutdown_report().expect("ShutdownReport");
        assert_eq!(report["final_instance_count"], 0);
        exit_ms.push(elapsed);
        sequence_ms.push(report["total_ms"].as_f64().unwrap_or(f64::NAN));
        let spawned = Instant::now();
        let mut next = NodeProcess::start(home.path(), &args, &[]);
        wait_for_first_block_count(&mut next, 1);
        next_start_ms.push(spawned.elapsed().as_secs_f64() * 1000.0);
        next.stop_gracefully();
    }
    summary(&format!("{}: SIGTERM to exit", scenario.name), exit_ms);
    summary(&format!("{}: shutdown sequence (ShutdownReport.total_ms)", scenario.name), sequence_ms);
    summary(&format!("{}: next start, spawn to first indexed block", scenario.name), next_start_ms);
}
