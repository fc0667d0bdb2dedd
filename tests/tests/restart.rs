//! In-process restarts of the indexer subsystem: SIGHUP, a changed data-wipe token, and
//! failures under the restart policy; a shutdown during a restart wins. Also how a
//! process start gets its chain store: opened beside the node store, unless a data wipe
//! may be due.

use std::time::{Duration, Instant};

use mpc_node_process_tests::{
    DOCKER_GRACE, NodeProcess, START_PATIENCE, assert_consistent, count_in_log, env_number, fast_node_args,
    home_indexed_to, open_fds, proc_status_value, wait_for_count,
};

const RESTARTED: &str = "indexer subsystem restarted";
const READY: &str = "node ready: first block indexed";
/// How a generation's chain says it got its store.
const CHAIN_STORE_OPENED: &str = "chain_store=\"opened\"";
const CHAIN_STORE_KEPT: &str = "chain_store=\"kept open\"";
/// Start-up opened the chain store while the node store opened.
const CHAIN_STORE_AHEAD: &str = "chain store opened beside the node store";

/// A node on `home` with the fast test settings, once it has indexed its first block.
fn start_until_ready(home: &std::path::Path) -> NodeProcess {
    let mut node = NodeProcess::start(home, &fast_node_args(), &[]);
    node.wait_for_log(READY, START_PATIENCE);
    node
}

/// The number right after `prefix` on each line of `log` that has one.
fn numbers_after<'a>(log: &'a str, prefix: &'a str) -> impl Iterator<Item = u64> + 'a {
    log.lines().filter_map(move |line| line.split(prefix).nth(1)?.split_whitespace().next()?.parse().ok())
}

/// The chain head each chain node of the log started from.
fn chain_start_heads(log: &str) -> Vec<u64> {
    numbers_after(log, "sandbox chain starting head=").collect()
}

fn start_heights(log: &str) -> Vec<u64> {
    numbers_after(log, "streamer started start_height=").collect()
}

/// What both stores' memtables held at each restart, in KiB, in restart order; a
/// restart line without both figures is left out.
fn memtable_kib_by_restart(log: &str) -> Vec<f64> {
    log.lines()
        .filter(|line| line.contains(RESTARTED))
        .filter_map(|line| {
            let node = numbers_after(line, "node_memtable_bytes=").next()?;
            let chain = numbers_after(line, "chain_memtable_bytes=").next()?;
            Some((node + chain) as f64 / 1024.0)
        })
        .collect()
}

/// RSS, threads and file descriptors other than RocksDB table files, after `cycle`
/// restarts.
struct Sample {
    cycle: u64,
    rss_kib: u64,
    threads: u64,
    fds: usize,
}

/// Least-squares slope of `(cycle, value)` points, in units of value per cycle.
fn slope_per_cycle(points: &[(u64, f64)]) -> f64 {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|(cycle, _)| *cycle as f64).sum::<f64>() / n;
    let mean_y = points.iter().map(|(_, value)| value).sum::<f64>() / n;
    let covariance: f64 = points.iter().map(|(cycle, value)| (*cycle as f64 - mean_x) * (value - mean_y)).sum();
    let variance: f64 = points.iter().map(|(cycle, _)| (*cycle as f64 - mean_x).powi(2)).sum();
    covariance / variance
}

/// SIGHUP restarts in a row (100 in CI; `MPC_SOAK_RESTARTS=1000` for the soak in
/// docs/benchmarks.md, which then also requires RSS beyond the stores' memtables to be
/// flat after warm-up). Every sample goes to `MPC_SOAK_CSV` if set.
#[test]
fn sighup_restarts_in_a_row_resume_gap_free_and_leak_no_threads_fds_or_stores() {
    let cycles = env_number("MPC_SOAK_RESTARTS", 100);
    // A chain that grows fast makes the cycles short; a soak that measures memory per
    // cycle wants a chain that barely grows (`MPC_SOAK_BLOCK_INTERVAL=200ms`), since the
    // stores' own memory grows with their data.
    let block_interval = std::env::var("MPC_SOAK_BLOCK_INTERVAL").unwrap_or_else(|_| "5ms".into());
    // Each restart indexes at least one new block, and its data stays in the stores'
    // memtables until they fill; `MPC_SOAK_REQUESTS_PER_BLOCK=0` (empty blocks) leaves
    // only what a restart itself costs.
    let requests_per_block = env_number("MPC_SOAK_REQUESTS_PER_BLOCK", 4);
    let home = tempfile::tempdir().unwrap();
    let mut args = fast_node_args();
    args.extend(["--sandbox-block-interval".into(), block_interval]);
    args.extend(["--sandbox-requests-per-block".into(), requests_per_block.to_string()]);
    let mut node = NodeProcess::start(home.path(), &args, &[]);
    node.wait_for_log(READY, START_PATIENCE);
    std::thread::sleep(Duration::from_millis(300));
    let pid = node.pid();
    let sample = |cycle| Sample {
        cycle,
        rss_kib: proc_status_value(pid, "VmRSS"),
        threads: proc_status_value(pid, "Threads"),
        fds: open_fds(pid),
    };
    let mut samples = vec![sample(0)];
    for cycle in 1..=cycles {
        node.signal(libc::SIGHUP);
        wait_for_count(&mut node, RESTARTED, cycle as usize, START_PATIENCE);
        wait_for_count(&mut node, READY, cycle as usize + 1, START_PATIENCE);
        if cycle % 10 == 0 {
            samples.push(sample(cycle));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let (first, last) = (&samples[0], sample(cycles));
    let log = node.log();
    let memtables = memtable_kib_by_restart(&log);
    assert_eq!(memtables.len() as u64, cycles, "a restart did not log its stores' memtables:\n{log}");
    assert!(memtables.iter().any(|kib| *kib > 0.0), "the stores' memtables were never counted: {memtables:?}");
    // The memtables each sample saw: those the restart of its cycle logged.
    let memtable_kib = |sample: &Sample| sample.cycle.checked_sub(1).map(|restart| memtables[restart as usize]);
    let rss: Vec<_> = samples.iter().map(|s| (s.cycle, s.rss_kib)).collect();
    eprintln!(
        "threads {} -> {}, fds {} -> {}, rss KiB by cycle {rss:?}",
        first.threads, last.threads, first.fds, last.fds
    );
    if let Ok(path) = std::env::var("MPC_SOAK_CSV") {
        let row = |s: &Sample| {
            let memtables = memtable_kib(s).map(|kib| format!("{kib:.1}")).unwrap_or_default();
            format!("{},{},{},{},{memtables}\n", s.cycle, s.rss_kib, s.threads, s.fds)
        };
        let rows: String = samples.iter().map(row).collect();
        std::fs::write(path, format!("cycle,rss_kib,threads,fds,memtable_kib\n{rows}")).unwrap();
    }

    // Each restart logged the open-instance count right after starting the new
    // generation: the node store and the one chain store, kept open from the first
    // generation to the next (a restart that opened another would count three).
    assert_eq!(count_in_log(&node, "indexer subsystem restarted") as u64, cycles);
    let two_open = log.matches("open_instances=2 ").count() + log.matches("open_instances=2\n").count();
    assert_eq!(two_open as u64, cycles, "{log}");
    assert_eq!(log.matches(CHAIN_STORE_OPENED).count(), 1, "{log}");
    assert_eq!(log.matches(CHAIN_STORE_KEPT).count() as u64, cycles, "{log}");
    let heights = start_heights(&log);
    assert_eq!(heights.len() as u64, cycles + 1);
    assert!(heights.windows(2).all(|pair| pair[1] > pair[0]), "a restart went backwards: {heights:?}");
    // A few pool threads may come and go; a leak would be one or more per cycle.
    assert!(last.threads <= first.threads + 3, "threads {} -> {}", first.threads, last.threads);
    assert!(last.fds <= first.fds + 3, "fds {} -> {}", first.fds, last.fds);
    if cycles >= 1000 {
        // Every cycle adds a block to the chain store's memtables, which flush only when
        // a write buffer fills, after the soak; what a leak would show is RSS beyond
        // them. RocksDB counts memtables by the arena blocks they allocated (256 KiB
        // each) while RSS grows as those fill, so the leak check fits a line to all but
        // the first tenth of the cycles, where the steps and jemalloc's returning of
        // start-up pages weigh least; the goal's figure is the RSS slope over the last
        // half (docs/benchmarks.md).
        let series = |from: u64, value: &dyn Fn(&Sample) -> f64| -> Vec<(u64, f64)> {
            samples.iter().filter(|s| s.cycle >= from).map(|s| (s.cycle, value(s))).collect()
        };
        // Every sample from the first tenth on follows a restart, so has its memtables.
        let counted_memtable_kib = |s: &Sample| memtable_kib(s).unwrap_or(0.0);
        let rss_kib = |s: &Sample| s.rss_kib as f64;
        let rss = slope_per_cycle(&series(cycles / 2, &rss_kib));
        let in_memtables = slope_per_cycle(&series(cycles / 10, &counted_memtable_kib));
        let beyond = slope_per_cycle(&series(cycles / 10, &|s| rss_kib(s) - counted_memtable_kib(s)));
        eprintln!(
            "RSS slope over the last {} cycles: {rss:.3} KiB per cycle; over the last {} cycles: memtables {in_memtables:.3}, RSS beyond the memtables {beyond:.3} KiB per cycle",
            cycles / 2,
            cycles - cycles / 10
        );
        assert!(beyond < 1.0, "RSS beyond the stores' memtables grows {beyond:.3} KiB per cycle after warm-up");
    }

    node.stop_gracefully();
    assert_eq!(node.shutdown_report().expect("report")["final_instance_count"], 0);
    assert!(assert_consistent(home.path()) >= *heights.last().unwrap());
}

#[test]
fn a_shutdown_signal_during_a_restart_wins_within_the_deadline() {
    let home = tempfile::tempdir().unwrap();
    let mut args = fast_node_args();
    args.extend(["--shutdown-timeout".into(), "2s".into()]);
    // The hung monitor keeps the restart waiting, so the SIGTERM surely lands inside it.
    let hung = [("MPC_TEST_HANG_MONITOR", "monitor_tee_accounts")];
    let mut node = NodeProcess::start(home.path(), &args, &hung);
    node.wait_for_log(READY, START_PATIENCE);
    node.signal(libc::SIGHUP);
    node.wait_for_log("restarting indexer subsystem", DOCKER_GRACE);
    let sent = Instant::now();
    node.signal(libc::SIGTERM);
    let status = node.wait_exit(DOCKER_GRACE);
    assert!(sent.elapsed() < DOCKER_GRACE);
    assert_eq!(status.code(), Some(4), "the hung task is aborted at the deadline:\n{}", node.log());
    assert!(!node.log().contains(RESTARTED), "the restart completed instead of the shutdown:\n{}", node.log());
    let report = node.shutdown_report().expect("report");
    assert_eq!(report["reason"]["kind"], "signal", "{report}");
    assert_eq!(report["aborted_tasks"], serde_json::json!(["monitor_tee_accounts"]), "{report}");
    assert_eq!(report["final_instance_count"], 0, "{report}");
    assert_consistent(home.path());
}

#[test]
fn indexer_failures_are_restarted_with_backoff_until_too_many_make_it_fatal() {
    let home = tempfile::tempdir().unwrap();
    let failing = [("MPC_TEST_FAIL_LISTEN_AFTER_BLOCKS", "5")];
    let mut node = NodeProcess::start(home.path(), &fast_node_args(), &failing);
    let status = node.wait_exit(START_PATIENCE);
    assert_eq!(status.code(), Some(1), "{}", node.log());
    assert_eq!(count_in_log(&node, "restarting indexer subsystem why=indexer failed"), 3, "{}", node.log());
    let report = node.shutdown_report().expect("a ShutdownReport");
    assert_eq!(report["exit_code"], 1, "{report}");
    assert!(report["reason"].to_string().contains("too many failures"), "the report says why: {report}");
    assert_eq!(report["final_instance_count"], 0, "{report}");
    // The store may be what failed, so every restart after a failure reopened it.
    assert_eq!(count_in_log(&node, CHAIN_STORE_OPENED), 4, "{}", node.log());
    assert_eq!(count_in_log(&node, CHAIN_STORE_KEPT), 0, "{}", node.log());
    let report = node.shutdown_report().expect("report");
    assert_eq!(report["reason"]["kind"], "indexer_exited", "{report}");
    assert_eq!(report["final_instance_count"], 0, "{report}");
    assert!(assert_consistent(home.path()) >= 20);
}

#[test]
fn a_new_data_wipe_token_wipes_the_chain_data_once_and_indexing_resumes_gap_free() {
    let home = tempfile::tempdir().unwrap();
    let mut node = start_until_ready(home.path());
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(home.path().join("data-wipe-token"), "wipe-2026-11-23\n").unwrap();
    node.wait_for_log("chain data wiped", DOCKER_GRACE);
    wait_for_count(&mut node, READY, 2, START_PATIENCE);
    std::thread::sleep(Duration::from_millis(200));
    node.stop_gracefully();
    let heights = start_heights(&node.log());
    assert_eq!(heights.len(), 2);
    assert!(heights[1] > heights[0]);
    // The wiped store was closed before the wipe and a new one opened after it.
    assert_eq!(count_in_log(&node, CHAIN_STORE_OPENED), 2, "{}", node.log());
    let indexed = assert_consistent(home.path());

    let mut node = start_until_ready(home.path());
    std::thread::sleep(Duration::from_millis(1200));
    node.stop_gracefully();
    assert!(!node.log().contains("data-wipe token changed"), "an applied token wiped again:\n{}", node.log());
    assert!(assert_consistent(home.path()) > indexed);
}

#[test]
fn a_start_opens_the_chain_store_beside_the_node_store_unless_a_data_wipe_may_be_due() {
    let home = tempfile::tempdir().unwrap();
    let mut node = start_until_ready(home.path());
    std::thread::sleep(Duration::from_millis(300));
    node.stop_gracefully();
    assert_eq!(count_in_log(&node, CHAIN_STORE_AHEAD), 1, "{}", node.log());
    assert_eq!(
        count_in_log(&node, CHAIN_STORE_OPENED),
        1,
        "the first generation takes the store opened ahead:\n{}",
        node.log()
    );
    let indexed = assert_consistent(home.path());

    // A token the node store has not seen: the wipe comes first, then the open.
    std::fs::write(home.path().join("data-wipe-token"), "wipe-at-start\n").unwrap();
    let mut node = start_until_ready(home.path());
    node.stop_gracefully();
    assert!(node.log().contains("chain data wiped"), "{}", node.log());
    assert_eq!(count_in_log(&node, CHAIN_STORE_AHEAD), 0, "opened ahead with a wipe due:\n{}", node.log());
    assert_eq!(chain_start_heads(&node.log()), vec![0], "the chain starts again from genesis:\n{}", node.log());
    assert_eq!(node.shutdown_report().expect("report")["final_instance_count"], 0);
    assert!(assert_consistent(home.path()) > indexed);
}

#[test]
fn a_wipe_token_written_while_the_node_store_opens_wipes_the_chain_store_opened_ahead_after_closing_it() {
    let home = home_indexed_to(20, &fast_node_args());
    let indexed = assert_consistent(home.path());

    // Start-up holds after the node store opened: the chain store is open by then (its
    // open is awaited after the hold), and the token arrives after start-up looked.
    let hold = [("MPC_TEST_HOLD_AFTER_NODE_STORE_OPEN_MS", "1000")];
    let mut node = NodeProcess::start(home.path(), &fast_node_args(), &hold);
    node.wait_for_log("test hook: holding start-up after the node store opened", START_PATIENCE);
    node.wait_for_log(CHAIN_STORE_AHEAD, START_PATIENCE);
    std::fs::write(home.path().join("data-wipe-token"), "wipe-during-start-up\n").unwrap();
    node.wait_for_log(READY, START_PATIENCE);
    std::thread::sleep(Duration::from_millis(300));
    node.stop_gracefully();
    assert!(node.log().contains("data-wipe token pending at start"), "{}", node.log());
    // Had the open store been renamed and deleted under the kept instance, the chain
    // would have resumed from its old head out of deleted files.
    assert_eq!(chain_start_heads(&node.log()), vec![0], "the chain starts again from genesis:\n{}", node.log());
    let report = node.shutdown_report().expect("report");
    assert_eq!(report["final_instance_count"], 0, "{report}");
    assert!(assert_consistent(home.path()) > indexed);
}
