//! Restart time: SIGTERM to the new process indexing its next block, and the cycle time
//! of an in-process restart (SIGHUP to the next block indexed).
//!
//! Run: `cargo bench --workspace --all-features --bench restart_time`
//! (`MPC_BENCH_RUNS` sets the runs of each, default 20).

use std::time::{Duration, Instant};

use mpc_node_process_tests::{NodeProcess, fast_node_args, percentile, wait_for_first_block_count};

fn summary(name: &str, mut values: Vec<f64>) {
    values.sort_by(f64::total_cmp);
    let at = |p: f64| percentile(&values, p);
    println!("{name}: n={} p50={:.1} ms p95={:.1} ms max={:.1} ms", values.len(), at(50.0), at(95.0), at(100.0));
}

fn main() {
    let runs: usize = std::env::var("MPC_BENCH_RUNS").ok().and_then(|runs| runs.parse().ok()).unwrap_or(20);
    let mut args = fast_node_args();
    args.extend(["--sandbox-block-interval".into(), "2ms".into()]);

    let home = tempfile::tempdir().expect("home");
    let mut restart_ms = Vec::new();
    let mut node = NodeProcess::start(home.path(), &args, &[]);
    wait_for_first_block_count(&mut node, 1);
    for _ in 0..runs {
        std::thread::sleep(Duration::from_millis(300));
        let sent = Instant::now();
        node.stop_gracefully();
        node = NodeProcess::start(home.path(), &args, &[]);
        wait_for_first_block_count(&mut node, 1);
        restart_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
    }

    let mut cycle_ms = Vec::new();
    for cycle in 0..runs {
        std::thread::sleep(Duration::from_millis(100));
        let sent = Instant::now();
        node.signal(libc::SIGHUP);
        wait_for_first_block_count(&mut node, cycle + 2);
        cycle_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    node.stop_gracefully();
    summary("process restart (SIGTERM to the new process's first indexed block)", restart_ms);
    summary("in-process restart cycle (SIGHUP to the next first indexed block)", cycle_ms);
}
