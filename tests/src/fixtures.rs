//! Homes and stores prepared for a test: a home indexed to a height, and stores
//! rewritten as older binaries left them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::node_process::{NodeProcess, START_PATIENCE};

/// Rewrites the home's chain store as the previous release wrote it (schema v1, JSON
/// views), so the next start upgrades it.
pub fn rewrite_chain_store_at_version_1(home: &Path) {
    mpc_chain::rewrite_as_v1_for_test(&home.join("data")).unwrap();
}

/// Schema version of the home's chain store, read without writing.
pub fn chain_store_version(home: &Path) -> Option<u32> {
    mpc_store::migration::probe_version(&home.join("data"), &mpc_store::StoreOptions::new("chain", "fixture")).unwrap()
}

/// Rewrites the node store of a stopped node at `home` in the format of schema
/// `version`, with the same blocks as its chain: an old-schema home, as an older binary
/// would have left it, for upgrade tests.
pub fn rewrite_node_store_at_version(home: &Path, version: u32) {
    let node_path = home.join("node");
    let cursor = {
        let store =
            mpc_store::Store::open_read_only(&node_path, &mpc_store::StoreOptions::new("node", "fixture")).unwrap();
        mpc_migrations::layout::read_cursor(&store).unwrap().expect("the node indexed something").height
    };
    let chain = mpc_store::Store::open_read_only(&home.join("data"), &mpc_store::StoreOptions::new("chain", "fixture"))
        .unwrap();
    let contract = mpc_chain::default_contract_id();
    let blocks: Vec<_> = (1..=cursor)
        .map(|height| {
            let message = mpc_chain::stored_streamer_message(&chain, height).unwrap().expect("block in chain store");
            mpc_indexer::extract_block_effects(&message, &contract)
        })
        .collect();
    drop(chain);
    std::fs::remove_dir_all(&node_path).unwrap();
    mpc_migrations::legacy::write_store(&node_path, version, &blocks).unwrap();
}

/// Runs a node on a new home until it has indexed at least `height`, then stops it
/// with SIGTERM. Returns the temporary home.
pub fn home_indexed_to(height: u64, args: &[String]) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(home.path(), args, &[]);
    let started = Instant::now();
    loop {
        node.wait_for_log("indexer stats", START_PATIENCE);
        let indexed = node
            .log()
            .lines()
            .rev()
            .find_map(|line| line.split("height=").nth(1)?.split_whitespace().next()?.parse::<u64>().ok());
        if indexed.is_some_and(|indexed| indexed >= height) {
            break;
        }
        assert!(started.elapsed() < START_PATIENCE, "did not index {height} blocks:\n{}", node.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    node.stop_gracefully();
    home
}

/// The write-ahead logs of the store at `store`, oldest first (RocksDB numbers them in
/// the order it writes them).
pub fn logs(store: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(store)
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .collect();
    logs.sort();
    logs
}

/// The newest write-ahead log of the store at `store` that holds a few commits, for
/// damage in its middle.
pub fn newest_log(store: &Path) -> PathBuf {
    logs(store)
        .into_iter()
        .rfind(|path| std::fs::metadata(path).is_ok_and(|metadata| metadata.len() > 4096))
        .unwrap_or_else(|| panic!("no write-ahead log with commits in {}", store.display()))
}

/// Flips bytes in the middle of `log`, as a disk error would.
pub fn damage_the_middle(log: &Path) {
    let middle = std::fs::metadata(log).unwrap().len() as usize / 2;
    damage_at(log, middle);
}

/// Flips 8 bytes of `log` from `offset`, as a disk error would.
pub fn damage_at(log: &Path, offset: usize) {
    let mut bytes = std::fs::read(log).unwrap();
    for byte in &mut bytes[offset..offset + 8] {
        *byte ^= 0xa5;
    }
    std::fs::write(log, bytes).unwrap();
}

/// A free loopback port for a process the test starts later (bound and released).
///
/// Taken below the kernel's ephemeral range: a port from that range (what binding port
/// 0 returns) can become the local port of any process's outgoing connection before
/// the node binds it, and its listener then fails with "address in use". Each test
/// process walks its own stretch of the range below, starting from its pid.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOWEST: u32 = 10_000;
    let ephemeral_start: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768);
    let span = ephemeral_start.saturating_sub(LOWEST).max(1);
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id().wrapping_mul(2_654_435_761) % span;
    for _ in 0..span {
        let port = LOWEST + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
    panic!("no free loopback port below {ephemeral_start}");
}

/// The `p`-th percentile (0 to 100) of `sorted` (ascending, not empty), by the
/// nearest-rank method the benchmarks report.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
