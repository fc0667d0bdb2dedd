//! Indexing throughput and the hot-path cost of the lifecycle machinery.
//!
//! Run: `cargo bench --workspace --all-features --bench indexing_throughput`
//! (`MPC_BENCH_BLOCKS` sets the chain length, default 3000; `MPC_BENCH_REQUESTS_PER_BLOCK`
//! runs only that workload instead of 4 and 32).
//!
//! 1. Throughput: a sandbox chain of N blocks is produced first; then the real indexing
//!    path (streamer querying the view-client actor, `listen_blocks` committing each
//!    block with its cursor) indexes it into a fresh node store. Beside it, the same
//!    batches (built from the chain's own record) are committed straight into a fresh
//!    store: raw RocksDB writing the same bytes, one batch per block (the issue's
//!    baseline), and again in the batch sizes `listen_blocks` uses while catching up
//!    (the blocks queued behind each other, up to `MAX_WRITES_PER_BATCH` writes).
//! 2. Machinery cost: `listen_blocks` over a prefilled channel of the same messages,
//!    against a bare loop on one thread doing only extract + build the batch of the
//!    queued blocks + commit (no second stage, no cancellation select, no stats, no
//!    watch publish, no holder).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mpc_chain::{ChainConfig, GetStatus, stored_streamer_message};
use mpc_indexer::{
    Indexer, IndexerConfig, IndexerState, IndexerStats, MAX_WRITES_PER_BATCH, SyncModeEnum, extract_block_effects,
    listen_blocks,
};
use mpc_lifecycle::{Supervisor, lifecycle_channel};
use mpc_migrations::layout::{block_update, read_cursor};
use mpc_store::{Store, StoreOptions, StoreUpdate};
use near_async::ActorSystem;
use near_async::messaging::CanSendAsync;
use near_indexer_primitives::StreamerMessage;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Opens the chain store of `config` and starts its chain node on `system`; the
/// node's actors are the store's only users, so it closes when they stop.
fn start_chain(config: &IndexerConfig, system: &ActorSystem) -> mpc_indexer::NearNode {
    let store = Indexer::open_chain_store(config, false).unwrap();
    Indexer::start_near_node(config, store, mpc_store::Reuse::Opened, system, &CancellationToken::new()).unwrap()
}

/// The node binary's allocator, so the benchmark measures what the node does.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// CPU seconds (user + system) used so far by every thread of this process: the
/// actors, the runtime's workers and RocksDB's background threads alike.
fn process_cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Wall and CPU seconds of one run.
struct Run {
    wall: f64,
    cpu: f64,
}

/// Times `work` in wall-clock and process CPU seconds.
async fn timed<F: std::future::Future<Output = ()>>(work: F) -> Run {
    let (wall, cpu) = (Instant::now(), process_cpu_seconds());
    work.await;
    Run { wall: wall.elapsed().as_secs_f64(), cpu: process_cpu_seconds() - cpu }
}

struct Workload {
    chain_home: tempfile::TempDir,
    config: IndexerConfig,
    messages: Vec<StreamerMessage>,
}

/// Produces a chain of `blocks` blocks and reads back every final block's message.
async fn produce_chain(blocks: u64, requests_per_block: u32) -> Workload {
    let chain_home = tempfile::tempdir().unwrap();
    let chain = ChainConfig {
        history_blocks: blocks,
        block_interval: Duration::from_secs(3600),
        sign_requests_per_block: requests_per_block,
        ..ChainConfig::sandbox_default()
    };
    let mut config = IndexerConfig::new(chain_home.path().to_path_buf(), chain);
    config.sync_mode = SyncModeEnum::FromInterruption;
    config.poll_interval = Duration::from_millis(1);
    let system = ActorSystem::new();
    let node = start_chain(&config, &system);
    while node.client.send_async(GetStatus).await.unwrap().head_height < blocks {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    system.stop();
    mpc_store::wait_until_group_instances_are_dropped(mpc_indexer::INDEXER_STORE_GROUP, Duration::from_secs(30))
        .unwrap();
    let store = Store::open_read_only(&config.chain_data_dir(), &StoreOptions::new("chain", "bench-read")).unwrap();
    let final_height = blocks - mpc_chain::FINALITY_LAG;
    let messages = (1..=final_height).map(|height| stored_streamer_message(&store, height).unwrap().unwrap()).collect();
    Workload { chain_home, config, messages }
}

fn node_store(dir: &tempfile::TempDir) -> Arc<Store> {
    Store::open(&dir.path().join("node"), &StoreOptions::new("node", "bench")).unwrap()
}

/// The state `listen_blocks` needs, over `node` and `store`.
fn bench_state(
    workload: &Workload,
    node: &mpc_chain::ChainNode,
    store: &Arc<Store>,
) -> (Arc<IndexerState>, watch::Receiver<Option<u64>>) {
    let (indexed_height, watch_height) = watch::channel(None);
    let state = Arc::new(IndexerState {
        client: node.client.clone(),
        view_client: node.view_client.clone(),
        contract_id: workload.config.chain.contract_id.clone(),
        stats: Arc::new(Mutex::new(IndexerStats::starting_now())),
        node_store: store.holder("bench"),
        indexed_height,
    });
    (state, watch_height)
}

/// The real path: streamer through the actors, then listen_blocks.
async fn index_through_the_node(workload: &Workload) -> Run {
    let system = ActorSystem::new();
    let node = start_chain(&workload.config, &system);
    let dir = tempfile::tempdir().unwrap();
    let store = node_store(&dir);
    let target = workload.messages.len() as u64;
    let token = CancellationToken::new();
    let (sender, _receiver) = lifecycle_channel();
    let tasks = Supervisor::new("bench", token.clone(), sender);
    let (state, watch_height) = bench_state(workload, &node, &store);
    let mut listener = None;
    let run = timed(async {
        let stream = Indexer::from_near_node(workload.config.clone(), &node, None, tasks.clone()).streamer();
        listener = Some(tokio::spawn(listen_blocks(stream, state.clone(), token.clone())));
        // Polled, not awaited: a waiter on the height would be woken for every block (a
        // cross-thread wake per commit, 10-15 % of the run's CPU), which no observer of
        // the node does once it is ready (the operations server only reads it).
        while !watch_height.borrow().is_some_and(|height| height >= target) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    token.cancel();
    listener.expect("spawned in the timed run").await.unwrap().unwrap();
    tasks.wait(Duration::from_secs(10)).await;
    drop(state);
    system.stop();
    mpc_store::wait_until_group_instances_are_dropped(mpc_indexer::INDEXER_STORE_GROUP, Duration::from_secs(30))
        .unwrap();
    run
}

/// Each block's batch, as `listen_blocks` builds it.
fn block_batches(workload: &Workload) -> Vec<StoreUpdate> {
    let contract = workload.config.chain.contract_id.clone();
    let mut applied = 0;
    workload
        .messages
        .iter()
        .map(|message| {
            let effects = extract_block_effects(message, &contract);
            let update = block_update(&effects, applied);
            applied += effects.requests.len() as u64;
            update
        })
        .collect()
}

/// Consecutive batches joined as `listen_blocks` joins the blocks queued behind each
/// other: up to `MAX_WRITES_PER_BATCH` writes in one.
fn joined(batches: Vec<StoreUpdate>) -> Vec<StoreUpdate> {
    let mut joined: Vec<StoreUpdate> = Vec::new();
    for batch in batches {
        match joined.last_mut() {
            Some(last) if last.len() < MAX_WRITES_PER_BATCH => last.append(batch),
            _ => joined.push(batch),
        }
    }
    joined
}

/// Raw RocksDB: `batches` committed directly into a fresh store.
async fn raw_commits(batches: Vec<StoreUpdate>) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let store = node_store(&dir);
    timed(async {
        for batch in batches {
            store.commit(batch).unwrap();
        }
    })
    .await
}

/// listen_blocks over a prefilled channel (with the machinery). Seconds.
async fn listen_prefilled(workload: &Workload, node: &mpc_chain::ChainNode) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store = node_store(&dir);
    let (sender, receiver) = mpsc::channel(workload.messages.len() + 1);
    for message in &workload.messages {
        sender.try_send(message.clone()).unwrap();
    }
    drop(sender);
    let (state, _watch) = bench_state(workload, node, &store);
    let started = Instant::now();
    let result = listen_blocks(receiver, state, CancellationToken::new()).await;
    let elapsed = started.elapsed().as_secs_f64();
    assert!(matches!(result, Err(mpc_indexer::ListenError::StreamEnded)), "{result:?}");
    assert_eq!(read_cursor(&store).unwrap().unwrap().height, workload.messages.len() as u64);
    elapsed
}

/// The bare loop: extract, build the batch of the blocks queued, commit, on one
/// thread. Seconds.
async fn bare_prefilled(workload: &Workload) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store = node_store(&dir);
    let (sender, mut receiver) = mpsc::channel(workload.messages.len() + 1);
    for message in &workload.messages {
        sender.try_send(message.clone()).unwrap();
    }
    drop(sender);
    let contract = workload.config.chain.contract_id.clone();
    let started = Instant::now();
    let mut applied = 0;
    while let Some(first) = receiver.recv().await {
        let mut update = StoreUpdate::new();
        let mut next = Some(first);
        while let Some(message) = next {
            let effects = extract_block_effects(&message, &contract);
            drop(message);
            update.append(block_update(&effects, applied));
            applied += effects.requests.len() as u64;
            next = if update.len() < MAX_WRITES_PER_BATCH { receiver.try_recv().ok() } else { None };
        }
        store.commit(update).unwrap();
    }
    started.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let blocks: u64 = std::env::var("MPC_BENCH_BLOCKS").ok().and_then(|value| value.parse().ok()).unwrap_or(3000);
    // `MPC_BENCH_ONLY=machinery` skips the throughput part (for instruction counting
    // under callgrind, where only the two loops matter); `MPC_BENCH_ONLY=node` runs only
    // the node path, for profiling it.
    let only = std::env::var("MPC_BENCH_ONLY").unwrap_or_default();
    // `MPC_BENCH_REQUESTS_PER_BLOCK` runs one workload instead of both.
    let workloads: Vec<u32> = match std::env::var("MPC_BENCH_REQUESTS_PER_BLOCK") {
        Ok(value) => vec![value.parse().expect("MPC_BENCH_REQUESTS_PER_BLOCK must be a number")],
        Err(_) => vec![4, 32],
    };
    for requests_per_block in workloads {
        let workload = produce_chain(blocks, requests_per_block).await;
        if only == "node" {
            for _ in 0..3 {
                index_through_the_node(&workload).await;
            }
            continue;
        }
        if only == "machinery" {
            let system = ActorSystem::new();
            let node = start_chain(&workload.config, &system);
            listen_prefilled(&workload, &node).await;
            bare_prefilled(&workload).await;
            system.stop();
            mpc_store::wait_until_group_instances_are_dropped(
                mpc_indexer::INDEXER_STORE_GROUP,
                Duration::from_secs(30),
            )
            .unwrap();
            continue;
        }
        let indexed = workload.messages.len() as f64;
        let requests = indexed * f64::from(requests_per_block);
        let (mut node_runs, mut raw_runs, mut joined_runs) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..3 {
            node_runs.push(index_through_the_node(&workload).await);
            raw_runs.push(raw_commits(block_batches(&workload)).await);
            joined_runs.push(raw_commits(joined(block_batches(&workload))).await);
        }
        let wall = |runs: &[Run]| median(runs.iter().map(|run| run.wall).collect());
        let cpu_per_block = |runs: &[Run]| median(runs.iter().map(|run| run.cpu).collect()) / indexed * 1e6;
        let (node_s, raw_s, joined_s) = (wall(&node_runs), wall(&raw_runs), wall(&joined_runs));
        println!(
            "throughput r={requests_per_block}: node {:.0} blocks/s {:.0} requests/s; raw RocksDB {:.0} blocks/s; ratio {:.2}; \
             CPU per block (all threads) node {:.1} us, raw {:.1} us; \
             raw in the node's batch sizes {:.0} blocks/s, ratio to it {:.2}",
            indexed / node_s,
            requests / node_s,
            indexed / raw_s,
            raw_s / node_s,
            cpu_per_block(&node_runs),
            cpu_per_block(&raw_runs),
            indexed / joined_s,
            joined_s / node_s,
        );

        let system = ActorSystem::new();
        let node = start_chain(&workload.config, &system);
        let mut with = Vec::new();
        let mut bare = Vec::new();
        // Alternate which runs first, so background work of one run (flushes,
        // compactions) does not always land on the same side.
        for round in 0..6 {
            if round % 2 == 0 {
                with.push(listen_prefilled(&workload, &node).await);
                bare.push(bare_prefilled(&workload).await);
            } else {
                bare.push(bare_prefilled(&workload).await);
                with.push(listen_prefilled(&workload, &node).await);
            }
        }
        let (with, bare) = (median(with), median(bare));
        println!(
            "machinery r={requests_per_block}: listen_blocks {:.1} us/block, bare loop {:.1} us/block, overhead {:+.1} %",
            with / indexed * 1e6,
            bare / indexed * 1e6,
            (with - bare) / bare * 100.0
        );
        system.stop();
        mpc_store::wait_until_group_instances_are_dropped(mpc_indexer::INDEXER_STORE_GROUP, Duration::from_secs(30))
            .unwrap();
        drop(workload.chain_home);
    }
}
