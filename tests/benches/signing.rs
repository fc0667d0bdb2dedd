//! Signing on a network of three nodes and a chain host on this machine: the sign
//! latency with a warm pool of presignatures and online, the signatures per second the
//! network sustains with presignatures generated at the same time, and SIGTERM to exit
//! of a node while the others sign at that rate.
//!
//! Run: `cargo bench --workspace --all-features --bench signing`
//! - `MPC_BENCH_SIGNATURES` (default 10000): signatures timed on each path, with
//!   `MPC_BENCH_LATENCY_REQUESTS_PER_BLOCK` (default 4) at a block every 100 ms;
//! - `MPC_BENCH_LOAD_REQUESTS_PER_BLOCK` (default 100) at a block every 100 ms: the
//!   offered load of the sustained run, and `MPC_BENCH_LOAD_SECONDS` (default 30) its
//!   length;
//! - `MPC_BENCH_RUNS` (default 30): stops timed under that load;
//! - `MPC_BENCH_ONLY=latency|load`: one part only.
//!
//! Latency is the leader's, from the request indexed on it to the signature aggregated
//! and verified (every node journals each signature it makes, test builds only).

use std::time::{Duration, Instant};

use mpc_node_process_tests::percentile;
use mpc_node_process_tests::signing_network::{ANSWER_PATIENCE, SigningNetwork, answered};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

/// p50 and p99 of `values`, in milliseconds.
fn quantiles_ms(values: &[Duration]) -> (f64, f64) {
    let mut ms: Vec<f64> = values.iter().map(|value| value.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    (percentile(&ms, 50.0), percentile(&ms, 99.0))
}

/// A network of three at threshold 2 whose host makes a block every `block_interval`
/// with `requests_per_block` sign requests, every node started with `node_args`,
/// signing under its key.
fn network(block_interval: &str, requests_per_block: u32, node_args: &[&str]) -> SigningNetwork {
    let requests = requests_per_block.to_string();
    let host_args = [
        "--sandbox-block-interval",
        block_interval,
        "--sandbox-history-blocks",
        "5",
        "--sandbox-requests-per-block",
        &requests,
    ];
    let mut network = SigningNetwork::create(3, 2, &host_args);
    for index in 0..3 {
        network.start_with(index, node_args, &[]);
    }
    network.wait_running();
    for index in 0..3 {
        network.wait_signing(index);
    }
    network
}

/// Signatures every node has aggregated so far (from their journals).
fn signatures_made(network: &SigningNetwork) -> usize {
    network.journals().signed.len()
}

/// The latencies of `count` signatures made on `path` after the first `skip` of the run.
fn latencies(network: &mut SigningNetwork, path: &str, count: usize, skip: usize) -> Vec<Duration> {
    let started = Instant::now();
    loop {
        let signed = network.journals().signed;
        let on_path: Vec<Duration> =
            signed.iter().filter(|(_, made_on, _)| made_on == path).skip(skip).map(|(_, _, took)| *took).collect();
        if on_path.len() >= count {
            return on_path;
        }
        assert!(started.elapsed() < Duration::from_secs(1800), "{} of {count} {path} signatures", on_path.len());
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Sign latency on one path: presigned with a warm pool, or online (no pool).
fn latency(path: &str, signatures: usize) {
    // By default 4 requests every 100 ms: about 13 per second for each leader, far
    // under each node's generation rate, so the pools stay warm.
    let node_args: &[&str] = if path == "online" { &["--presignature-pool", "0"] } else { &[] };
    let mut network = network("100ms", env_or("MPC_BENCH_LATENCY_REQUESTS_PER_BLOCK", 4), node_args);
    // Leave out the first signatures, made while the pools fill.
    let took = latencies(&mut network, path, signatures + 300, 300);
    let (p50, p99) = quantiles_ms(&took);
    let journals = network.journals();
    let on_other_path = journals.signed.iter().filter(|(_, made_on, _)| made_on != path).count();
    println!(
        "sign latency, {path}: n={} p50={p50:.3} ms p99={p99:.3} ms ({on_other_path} signatures on the other path)",
        took.len()
    );
    for index in 0..3 {
        network.stop(index);
    }
}

/// Signatures per second at an offered load, and SIGTERM to exit under it.
fn load(requests_per_block: u32, seconds: u64, stops: usize) {
    let mut network = network("100ms", requests_per_block, &[]);
    std::thread::sleep(Duration::from_secs(5));
    let (from_head, from_made, from) = (network.head(), signatures_made(&network), Instant::now());
    std::thread::sleep(Duration::from_secs(seconds));
    let (to_head, to_made, elapsed) = (network.head(), signatures_made(&network), from.elapsed());
    let offered = (to_head - from_head) as f64 * f64::from(requests_per_block) / elapsed.as_secs_f64();
    let made = (to_made - from_made) as f64 / elapsed.as_secs_f64();
    let journals = network.journals();
    let presigned = journals.signed.iter().filter(|(_, path, _)| path == "presigned").count();
    let submits: Vec<Duration> = journals.submitted.iter().map(|(_, took)| *took).collect();
    let (submit_p50, submit_p99) = quantiles_ms(&submits);
    let took: Vec<Duration> = journals.signed.iter().map(|(_, _, took)| *took).collect();
    let (sign_p50, sign_p99) = quantiles_ms(&took);
    println!(
        "under load: sign latency p50={sign_p50:.3} ms p99={sign_p99:.3} ms; \
         respond acknowledged by the host p50={submit_p50:.3} ms p99={submit_p99:.3} ms"
    );
    println!(
        "sustained: offered {offered:.0} requests/s, made {made:.0} signatures/s over {:.3} s; \
         {presigned} of {} presigned",
        elapsed.as_secs_f64(),
        journals.signed.len()
    );

    let mut exit = Vec::new();
    let mut report_ms = Vec::new();
    let mut phases: std::collections::BTreeMap<String, Vec<Duration>> = Default::default();
    for run in 0..stops {
        let index = run % 3;
        std::thread::sleep(Duration::from_millis(700));
        let node = network.node(index);
        let sent = Instant::now();
        node.signal(libc::SIGTERM);
        let status = node.wait_exit(Duration::from_secs(10));
        let reaped = node.reaped_at().expect("reaped by wait_exit");
        assert_eq!(status.code(), Some(0), "run {run}: {}", node.log());
        let report = node.shutdown_report().expect("a ShutdownReport");
        assert_eq!(report["final_instance_count"], 0, "{report}");
        exit.push(reaped.duration_since(sent));
        report_ms.push(Duration::from_secs_f64(report["total_ms"].as_f64().unwrap() / 1000.0));
        let log = node.log();
        if let Some(line) = log.lines().find(|line| line.contains("signing side stopped")) {
            for part in ["protocols_ms", "mesh_ms", "tasks_ms", "asset_store_ms"] {
                let value = line.split(&format!("{part}=")).nth(1).and_then(|rest| rest.split_whitespace().next());
                if let Some(ms) = value.and_then(|value| value.parse::<f64>().ok()) {
                    phases
                        .entry(format!("stop_signer: {part}"))
                        .or_default()
                        .push(Duration::from_secs_f64(ms / 1000.0));
                }
            }
        }
        for phase in report["phases"].as_array().unwrap() {
            let took = Duration::from_secs_f64(phase["duration_ms"].as_f64().unwrap() / 1000.0);
            phases.entry(phase["phase"].as_str().unwrap().to_owned()).or_default().push(took);
        }
        network.start(index, &[]);
        network.wait_signing(index);
    }
    if stops > 0 {
        let (p50, p99) = quantiles_ms(&exit);
        let (report_p50, report_p99) = quantiles_ms(&report_ms);
        println!(
            "SIGTERM to exit while signing: n={stops} p50={p50:.3} ms p99={p99:.3} ms \
             (ShutdownReport.total_ms p50={report_p50:.3} p99={report_p99:.3})"
        );
        for (phase, took) in phases {
            let (p50, p99) = quantiles_ms(&took);
            if p99 >= 1.0 {
                println!("  phase {phase}: p50={p50:.3} ms p99={p99:.3} ms");
            }
        }
    }
    // Everything offered is answered, and nothing was used twice.
    let requests = network.wait_answered_up_to(network.head(), ANSWER_PATIENCE);
    let answered = answered(&requests);
    println!("answered: {} requests", answered.len());
    network.journals().assert_no_presignature_used_twice();
    for index in 0..3 {
        network.stop(index);
    }
}

fn main() {
    let only = std::env::var("MPC_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "latency" {
        let signatures = env_or("MPC_BENCH_SIGNATURES", 10_000);
        latency("presigned", signatures);
        latency("online", signatures);
    }
    if only.is_empty() || only == "load" {
        load(
            env_or("MPC_BENCH_LOAD_REQUESTS_PER_BLOCK", 100),
            env_or("MPC_BENCH_LOAD_SECONDS", 30),
            env_or("MPC_BENCH_RUNS", 30),
        );
    }
}
