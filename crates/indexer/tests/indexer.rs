//! The chain and the indexer in-process: determinism, gap-free streams in every sync
//! mode, retries instead of panics on a missing receipt, and a drain after which
//! nothing holds `IndexerState` or a store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mpc_chain::{
    ChainConfig, ChainNode, FaultInjectionStore, GetStatus, GetStreamerMessage, delete_outcomes_for_test,
    restore_outcomes_for_test,
};
use mpc_indexer::{
    AwaitForNodeSyncedEnum, INDEXER_STORE_GROUP, Indexer, IndexerConfig, IndexerThreadParams, MonitorIntervals,
    Observed, SyncModeEnum, spawn_indexer_thread,
};
use mpc_lifecycle::{LifecycleRequest, ShutdownReason, Supervisor, TaskState, lifecycle_channel};
use mpc_migrations::layout::{Cursor, Hash32};
use mpc_store::{Column, Store, StoreOptions, wait_until_group_instances_are_dropped};
use near_async::ActorSystem;
use near_async::messaging::CanSendAsync;
use near_indexer_primitives::StreamerMessage;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Opens the chain store of `config` and starts its chain node on `system`; the
/// node's actors are the store's only users, so it closes when they stop.
fn start_chain(config: &IndexerConfig, system: &ActorSystem) -> mpc_indexer::NearNode {
    let store = Indexer::open_chain_store(config, false).unwrap();
    Indexer::start_near_node(config, store, mpc_store::Reuse::Opened, system, &CancellationToken::new()).unwrap()
}

/// Bound on waits that should take milliseconds, so a broken build fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(30);

fn chain_config(history_blocks: u64) -> ChainConfig {
    ChainConfig { history_blocks, block_interval: Duration::from_millis(5), ..ChainConfig::sandbox_default() }
}

fn indexer_config(home: &std::path::Path, chain: ChainConfig, sync_mode: SyncModeEnum) -> IndexerConfig {
    let mut config = IndexerConfig::new(home.to_path_buf(), chain);
    config.sync_mode = sync_mode;
    config.poll_interval = Duration::from_millis(2);
    config
}

async fn wait_for_head(node: &ChainNode, height: u64) {
    let started = Instant::now();
    loop {
        let status = node.client.send_async(GetStatus).await.unwrap();
        if status.head_height >= height {
            return;
        }
        assert!(started.elapsed() < PATIENCE, "chain did not reach {height}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn next_message(stream: &mut mpsc::Receiver<StreamerMessage>) -> StreamerMessage {
    tokio::time::timeout(PATIENCE, stream.recv()).await.expect("stream stalled").expect("stream ended")
}

/// Stops `system` and waits until the chain store of `group` is closed.
fn stop_chain(system: &ActorSystem) {
    system.stop();
    wait_until_group_instances_are_dropped(INDEXER_STORE_GROUP, PATIENCE).expect("chain store still open");
}

// Tests in this file share the process-wide tracker group of the indexer subsystem, so
// they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_seed_gives_the_same_chain_and_a_restart_resumes_from_the_stored_head() {
    let _serial = SERIAL.lock().await;
    let first_dir = tempfile::tempdir().unwrap();
    let second_dir = tempfile::tempdir().unwrap();
    let mut hashes = Vec::new();
    for dir in [&first_dir, &second_dir] {
        let system = ActorSystem::new();
        let config = indexer_config(dir.path(), chain_config(40), SyncModeEnum::BlockHeight(1));
        let node = start_chain(&config, &system);
        wait_for_head(&node, 40).await;
        let mut chain = Vec::new();
        for height in 0..=40 {
            let message = fetch(&node, height).await;
            chain.push((message.block.header.hash, serde_json::to_string(&message.shards).unwrap()));
        }
        hashes.push(chain);
        stop_chain(&system);
    }
    assert_eq!(hashes[0], hashes[1], "same seed, different chain");
    assert_eq!(hashes[0][7].0, mpc_chain::workload::block_hash(7, 7));

    // Restart on the first home: the head is kept and production continues from it.
    let system = ActorSystem::new();
    let config = indexer_config(first_dir.path(), chain_config(40), SyncModeEnum::BlockHeight(1));
    let node = start_chain(&config, &system);
    let status = node.client.send_async(GetStatus).await.unwrap();
    assert!(status.head_height >= 40, "restart lost blocks: head {}", status.head_height);
    wait_for_head(&node, status.head_height + 3).await;
    assert_eq!(fetch(&node, 7).await.block.header.hash, hashes[0][7].0);
    stop_chain(&system);
}

/// The streamed message of `height`, from the view client in one query.
async fn fetch(node: &ChainNode, height: u64) -> StreamerMessage {
    node.view_client.send_async(GetStreamerMessage(height)).await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_is_gap_free_and_in_order_in_every_sync_mode() {
    let _serial = SERIAL.lock().await;
    let resume = Cursor { height: 20, block_hash: Hash32(mpc_chain::workload::block_hash(7, 20).0) };
    let cases: [(SyncModeEnum, AwaitForNodeSyncedEnum, Option<Cursor>); 5] = [
        (SyncModeEnum::FromInterruption, AwaitForNodeSyncedEnum::StreamWhileSyncing, None),
        (SyncModeEnum::FromInterruption, AwaitForNodeSyncedEnum::StreamWhileSyncing, Some(resume)),
        (SyncModeEnum::BlockHeight(33), AwaitForNodeSyncedEnum::StreamWhileSyncing, None),
        (SyncModeEnum::LatestSynced, AwaitForNodeSyncedEnum::StreamWhileSyncing, None),
        (SyncModeEnum::FromInterruption, AwaitForNodeSyncedEnum::WaitForFullSync, None),
    ];
    for (sync_mode, await_synced, cursor) in cases {
        let dir = tempfile::tempdir().unwrap();
        let system = ActorSystem::new();
        let mut config = indexer_config(dir.path(), chain_config(80), sync_mode);
        config.await_for_node_synced = await_synced;
        config.streamer_buffer = 4;
        let node = start_chain(&config, &system);
        if sync_mode == SyncModeEnum::LatestSynced {
            wait_for_head(&node, 50).await;
        }
        let (sender, _receiver) = lifecycle_channel();
        let token = CancellationToken::new();
        let tasks = Supervisor::new("test", token.clone(), sender);
        let indexer = Indexer::from_near_node(config, &node, cursor, tasks.clone());
        let mut stream = indexer.streamer();
        let first = next_message(&mut stream).await.block.header.height;
        match (sync_mode, cursor, await_synced) {
            (_, _, AwaitForNodeSyncedEnum::WaitForFullSync) => {
                assert!(first == 1, "{first}");
                let status = node.client.send_async(GetStatus).await.unwrap();
                assert!(!status.syncing, "streamed while the node was syncing");
            }
            (SyncModeEnum::FromInterruption, None, _) => assert_eq!(first, 1),
            (SyncModeEnum::FromInterruption, Some(cursor), _) => assert_eq!(first, cursor.height + 1),
            (SyncModeEnum::BlockHeight(height), _, _) => assert_eq!(first, height),
            (SyncModeEnum::LatestSynced, _, _) => assert!(first >= 48, "latest-synced started at {first}"),
        }
        let mut previous = first;
        for _ in 0..60 {
            let height = next_message(&mut stream).await.block.header.height;
            assert_eq!(height, previous + 1, "{sync_mode:?}: gap or reorder");
            previous = height;
        }
        token.cancel();
        assert!(tasks.wait(PATIENCE).await, "streamer did not stop on cancel");
        drop(stream);
        stop_chain(&system);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_receipt_is_retried_then_reported_as_an_error_not_a_panic() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let system = ActorSystem::new();
    let mut config = indexer_config(dir.path(), chain_config(30), SyncModeEnum::BlockHeight(1));
    config.max_fetch_attempts = 1_000;
    let node = start_chain(&config, &system);
    wait_for_head(&node, 14).await;
    let fault_store = node.view_client.send_async(FaultInjectionStore).await.unwrap();
    let (sender, mut failures) = lifecycle_channel();
    // A buffer of one asks for one height at a time; a large one asks for batches, the
    // first of which stops at block 12 while the next is already asked for.
    for streamer_buffer in [1, 100] {
        config.streamer_buffer = streamer_buffer;
        let removed = delete_outcomes_for_test(&fault_store, 12, 0).unwrap().expect("block 12 has outcomes");
        let token = CancellationToken::new();
        let tasks = Supervisor::new("test", token.clone(), sender.clone());
        let mut stream = Indexer::from_near_node(config.clone(), &node, None, tasks.clone()).streamer();
        for height in 1..=11 {
            assert_eq!(next_message(&mut stream).await.block.header.height, height, "buffer {streamer_buffer}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(stream.try_recv().is_err(), "buffer {streamer_buffer}: block 12 was streamed without its receipts");
        restore_outcomes_for_test(&fault_store, 12, 0, &removed).unwrap();
        for height in 12..=20 {
            assert_eq!(next_message(&mut stream).await.block.header.height, height, "buffer {streamer_buffer}");
        }
        token.cancel();
        assert!(tasks.wait(PATIENCE).await);
        drop(stream);
    }

    // With a small bound the streamer gives up with an error that names the block.
    delete_outcomes_for_test(&fault_store, 12, 0).unwrap();
    config.max_fetch_attempts = 3;
    let tasks = Supervisor::new("test", CancellationToken::new(), sender);
    let mut stream = Indexer::from_near_node(config, &node, None, tasks.clone()).streamer();
    for height in 1..=11 {
        assert_eq!(next_message(&mut stream).await.block.header.height, height);
    }
    let failure = tokio::time::timeout(PATIENCE, failures.recv()).await.unwrap().unwrap();
    let LifecycleRequest::Shutdown(ShutdownReason::TaskFailed { task, error }) = failure else {
        panic!("unexpected request {failure:?}");
    };
    assert_eq!(task, "streamer");
    assert!(error.contains("block 12 unavailable after 3 attempts"), "{error}");
    assert!(tokio::time::timeout(PATIENCE, stream.recv()).await.unwrap().is_none(), "stream must close");
    drop(fault_store);
    stop_chain(&system);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_cancel_and_join_nothing_holds_indexer_state_or_a_store_and_monitors_stop_within_a_tick() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let node_store = Store::open(&dir.path().join("node"), &StoreOptions::new("node", "drain-test")).unwrap();
    let system = ActorSystem::new();
    let chain_stop = CancellationToken::new();
    let (failures, _failure_receiver) = lifecycle_channel();
    // A tick far longer than the test: a monitor that only noticed cancellation on its
    // next tick would make the join below time out.
    let tick = Duration::from_secs(600);
    let config = indexer_config(dir.path(), chain_config(20), SyncModeEnum::FromInterruption);
    let chain_store = (Indexer::open_chain_store(&config, false).unwrap(), mpc_store::Reuse::Opened);
    let params = IndexerThreadParams {
        config,
        node_store: node_store.clone(),
        chain_store,
        actor_system: system.clone(),
        chain_stop: chain_stop.clone(),
        intervals: MonitorIntervals {
            contract_state: tick,
            allowed_image_hashes: tick,
            tee_accounts: tick,
            migration_info: tick,
            stats: tick,
        },
        failures,
    };
    let token = CancellationToken::new();
    let (exit_sender, exit_receiver) = oneshot::channel();
    let mut handle = spawn_indexer_thread(params, token.clone(), exit_sender).unwrap();
    assert_eq!(*handle.allowed_image_hashes.borrow(), Observed::Unknown, "receivers start unknown");
    tokio::time::timeout(PATIENCE, handle.indexed_height.wait_for(|height| height.is_some_and(|h| h >= 10)))
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(PATIENCE, handle.allowed_image_hashes.wait_for(|hashes| matches!(hashes, Observed::Known(_))))
        .await
        .unwrap()
        .unwrap();
    assert!(handle.state_strong_count() >= 2, "monitors share the state");
    assert!(!handle.tasks.running().is_empty());

    token.cancel();
    assert!(handle.join(Duration::from_secs(5)).await, "indexer thread did not stop well within one monitor tick");
    assert!(exit_receiver.await.unwrap().is_ok());
    assert_eq!(handle.state_strong_count(), 0, "an Arc<IndexerState> outlived the thread");
    assert!(handle.tasks.running().is_empty(), "tasks still running: {:?}", handle.tasks.running());
    let node_holders: Vec<String> = mpc_store::open_instances()
        .into_iter()
        .filter(|instance| instance.group == "drain-test")
        .flat_map(|instance| instance.holders)
        .collect();
    assert!(node_holders.is_empty(), "indexer holders of the node store still alive: {node_holders:?}");
    assert_eq!(Arc::strong_count(&node_store), 1, "the thread kept the node store");
    // The chain's own token stops its actors, and with them the chain store, while the
    // actor system stays up for a next generation.
    chain_stop.cancel();
    wait_until_group_instances_are_dropped(INDEXER_STORE_GROUP, PATIENCE).expect("chain store still open");
    system.stop();
}

/// Runs an indexer thread on `node_store` until all four monitors have published and
/// polled a few more times, then stops it and its chain; returns the tasks that failed.
async fn run_monitors_until_published(home: &std::path::Path, node_store: Arc<Store>) -> Vec<String> {
    let system = ActorSystem::new();
    let chain_stop = CancellationToken::new();
    let (failures, _failure_receiver) = lifecycle_channel();
    let tick = Duration::from_millis(5);
    // No block after the history (the chain only adds one as it starts), so the
    // contract's views stay what the first run recorded.
    let chain =
        ChainConfig { history_blocks: 20, block_interval: Duration::from_secs(3600), ..ChainConfig::sandbox_default() };
    // A height the chain never reaches: listen_blocks commits nothing, only the
    // monitors write.
    let config = indexer_config(home, chain, SyncModeEnum::BlockHeight(1_000_000));
    let chain_store = (Indexer::open_chain_store(&config, false).unwrap(), mpc_store::Reuse::Opened);
    let params = IndexerThreadParams {
        config,
        node_store,
        chain_store,
        actor_system: system.clone(),
        chain_stop: chain_stop.clone(),
        intervals: MonitorIntervals {
            contract_state: tick,
            allowed_image_hashes: tick,
            tee_accounts: tick,
            migration_info: tick,
            stats: Duration::from_secs(600),
        },
        failures,
    };
    let token = CancellationToken::new();
    let (exit_sender, _exit) = oneshot::channel();
    let mut handle = spawn_indexer_thread(params, token.clone(), exit_sender).unwrap();
    let known = |observed: &Observed<serde_json::Value>| matches!(observed, Observed::Known(_));
    for receiver in [&mut handle.contract_state, &mut handle.tee_accounts, &mut handle.migration_info] {
        tokio::time::timeout(PATIENCE, receiver.wait_for(known)).await.unwrap().unwrap();
    }
    tokio::time::timeout(PATIENCE, handle.allowed_image_hashes.wait_for(|hashes| matches!(hashes, Observed::Known(_))))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(tick * 10).await;
    let failed = handle
        .tasks
        .snapshot()
        .into_iter()
        .filter(|task| matches!(task.state, TaskState::Failed(_)))
        .map(|task| format!("{}: {:?}", task.name, task.state))
        .collect();
    token.cancel();
    assert!(handle.join(PATIENCE).await, "indexer thread did not stop");
    chain_stop.cancel();
    wait_until_group_instances_are_dropped(INDEXER_STORE_GROUP, PATIENCE).expect("chain store still open");
    system.stop();
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_generation_that_observes_the_recorded_contract_views_writes_nothing() {
    let _serial = SERIAL.lock().await;
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("node");
    let options = StoreOptions::new("node", "monitor-record-test");
    let store = Store::open(&path, &options).unwrap();
    assert_eq!(run_monitors_until_published(home.path(), store.clone()).await, Vec::<String>::new());
    for monitor in ["contract_state", "allowed_image_hashes", "tee_accounts", "migration_info"] {
        let key = format!("monitor/monitor_{monitor}");
        assert!(store.get(Column::Misc, &key).unwrap().is_some(), "{key} was not recorded");
    }
    drop(store);
    wait_until_group_instances_are_dropped("monitor-record-test", PATIENCE).unwrap();
    // Read-only, so any write fails the monitor that tries it: the next generation
    // observes the same values and must find them recorded already.
    let store = Store::open_read_only(&path, &options).unwrap();
    let failed = run_monitors_until_published(home.path(), store).await;
    assert!(failed.is_empty(), "a monitor wrote a value the store already held: {failed:?}");
}

/// The arguments of the `respond` actions of `message`, to edit.
fn respond_args(message: &mut StreamerMessage) -> Vec<&mut near_indexer_primitives::types::FunctionArgs> {
    use near_indexer_primitives::views::{ActionView, ReceiptEnumView};
    let mut found = Vec::new();
    for shard in &mut message.shards {
        for executed in &mut shard.receipt_execution_outcomes {
            let ReceiptEnumView::Action { actions, .. } = &mut executed.receipt.receipt else { continue };
            for action in actions {
                if let ActionView::FunctionCall { method_name, args, .. } = action
                    && method_name == "respond"
                {
                    found.push(args);
                }
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extraction_takes_each_sign_and_respond_call_reads_escaped_ids_and_skips_malformed_calls() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let system = ActorSystem::new();
    let config = indexer_config(dir.path(), chain_config(12), SyncModeEnum::BlockHeight(1));
    let node = start_chain(&config, &system);
    wait_for_head(&node, 12).await;
    let height = mpc_chain::workload::RESPONSE_DELAY + 5;
    let mut message = fetch(&node, height).await;
    stop_chain(&system);
    let contract = &config.chain.contract_id;
    let per_block = config.chain.sign_requests_per_block as usize;

    let effects = mpc_indexer::extract_block_effects(&message, contract);
    assert_eq!(effects.cursor, Cursor { height, block_hash: Hash32(message.block.header.hash.0) });
    assert_eq!(effects.requests.len(), per_block);
    assert_eq!(effects.responses.len(), per_block);
    for (index, request) in effects.requests.iter().enumerate() {
        assert_eq!(request.height, height, "request {index}");
        assert!(!request.payload.is_empty() && !request.path.is_empty(), "request {index}: {request:?}");
        assert!(request.predecessor_id.ends_with(".sandbox"), "request {index}: {request:?}");
    }

    // The same ids with their first character JSON-escaped read the same; a malformed
    // call is skipped, not an error.
    let mut args = respond_args(&mut message);
    assert_eq!(args.len(), per_block);
    for args in args.iter_mut().skip(1) {
        let text = String::from_utf8(args.to_vec()).unwrap();
        let (before, id) = text.split_once(":\"").unwrap();
        let first = id.chars().next().unwrap();
        **args = format!("{before}:\"\\u{:04x}{}", first as u32, &id[first.len_utf8()..]).into_bytes().into();
    }
    *args[0] = b"{\"request_id\": 7}".to_vec().into();
    let edited = mpc_indexer::extract_block_effects(&message, contract);
    assert_eq!(edited.requests, effects.requests);
    assert_eq!(edited.responses, effects.responses[1..], "escaped ids read as before, the malformed one skipped");
}

/// The messages of heights `1..=last` of a fresh sandbox chain, and its node (stopped).
async fn chain_messages(
    home: &std::path::Path,
    last: u64,
) -> (IndexerConfig, ChainNode, ActorSystem, Vec<StreamerMessage>) {
    let system = ActorSystem::new();
    let config = indexer_config(home, chain_config(last + 10), SyncModeEnum::BlockHeight(1));
    let node = start_chain(&config, &system);
    wait_for_head(&node, last + 5).await;
    let mut messages = Vec::new();
    for height in 1..=last {
        messages.push(fetch(&node, height).await);
    }
    (config, node, system, messages)
}

/// Runs `listen_blocks` over `messages`, queued before it starts (as while catching up),
/// until the stream ends; returns its result and the last published height.
async fn listen_over(
    config: &IndexerConfig,
    node: &ChainNode,
    store: &Arc<Store>,
    messages: impl IntoIterator<Item = StreamerMessage>,
    cancel: CancellationToken,
) -> (Result<(), mpc_indexer::ListenError>, Option<u64>, mpc_indexer::IndexerStats) {
    let messages: Vec<_> = messages.into_iter().collect();
    let (sender, receiver) = mpsc::channel(messages.len().max(1));
    for message in messages {
        sender.try_send(message).unwrap();
    }
    drop(sender);
    let (indexed_height, watch_height) = tokio::sync::watch::channel(None);
    let stats = Arc::new(std::sync::Mutex::new(mpc_indexer::IndexerStats::starting_now()));
    let state = Arc::new(mpc_indexer::IndexerState {
        client: node.client.clone(),
        view_client: node.view_client.clone(),
        contract_id: config.chain.contract_id.clone(),
        stats: stats.clone(),
        node_store: store.holder("listen-test"),
        indexed_height,
    });
    let result = tokio::time::timeout(PATIENCE, mpc_indexer::listen_blocks(receiver, state, cancel))
        .await
        .expect("listen_blocks hung");
    let published = *watch_height.borrow();
    let stats = stats.lock().unwrap().clone();
    (result, published, stats)
}

/// Every entry of the node store's columns, to compare two stores.
fn node_store_entries(store: &Store) -> Vec<(Column, Vec<mpc_store::Entry>)> {
    [Column::SignRequests, Column::SignRequestsById, Column::SignResponses, Column::IndexedBlocks, Column::Misc]
        .into_iter()
        .map(|column| (column, store.iter(column, None).unwrap().map(Result::unwrap).collect()))
        .collect()
}

fn open_node_store(dir: &std::path::Path, name: &str) -> Arc<Store> {
    Store::open(&dir.join(name), &StoreOptions::new("node", "listen-test")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_blocks_committed_together_leave_the_store_a_block_at_a_time_commit_would() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, node, system, messages) = chain_messages(dir.path(), 40).await;
    let contract = &config.chain.contract_id;

    // The reference: each block committed on its own, in order.
    let one_by_one = open_node_store(dir.path(), "one-by-one");
    let mut applied = 0;
    for message in &messages {
        let effects = mpc_indexer::extract_block_effects(message, contract);
        one_by_one.commit(mpc_migrations::layout::block_update(&effects, applied)).unwrap();
        applied += effects.requests.len() as u64;
    }

    // listen_blocks over the first 30, a block already applied among them, then over
    // 20..=40 on the same store: what it saw before is skipped.
    let listened = open_node_store(dir.path(), "listened");
    let first: Vec<_> = messages[..6].iter().chain(&messages[4..5]).chain(&messages[6..30]).cloned().collect();
    let (result, published, stats) = listen_over(&config, &node, &listened, first, CancellationToken::new()).await;
    assert!(matches!(result, Err(mpc_indexer::ListenError::StreamEnded)), "{result:?}");
    assert_eq!(published, Some(30));
    assert_eq!((stats.first_height, stats.last_height, stats.blocks_indexed), (Some(1), Some(30), 30));
    let (result, published, stats) =
        listen_over(&config, &node, &listened, messages[19..].iter().cloned(), CancellationToken::new()).await;
    assert!(matches!(result, Err(mpc_indexer::ListenError::StreamEnded)), "{result:?}");
    assert_eq!(published, Some(40));
    assert_eq!((stats.first_height, stats.blocks_indexed), (Some(31), 10));
    assert_eq!(node_store_entries(&listened), node_store_entries(&one_by_one));
    assert_eq!(mpc_migrations::layout::read_applied_requests(&listened).unwrap(), applied);
    drop((listened, one_by_one));
    stop_chain(&system);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blocks_before_a_gap_or_a_fork_are_committed_and_the_error_names_the_block() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, node, system, messages) = chain_messages(dir.path(), 8).await;
    let cursor_height = |store: &Store| mpc_migrations::layout::read_cursor(store).unwrap().map(|cursor| cursor.height);

    // 1, 2, 3, then 5: all queued, so a batch would hold them all.
    let store = open_node_store(dir.path(), "gap");
    let with_gap = [0, 1, 2, 4, 5].map(|index| messages[index].clone());
    let (result, published, _) = listen_over(&config, &node, &store, with_gap, CancellationToken::new()).await;
    assert!(matches!(result, Err(mpc_indexer::ListenError::Gap { expected: 4, got: 5 })), "{result:?}");
    assert_eq!((cursor_height(&store), published), (Some(3), Some(3)));
    assert!(
        store.get(Column::IndexedBlocks, 5u64.to_be_bytes()).unwrap().is_none(),
        "a block after the gap was written"
    );

    // 1, 2, 3, then another block 3.
    let store = open_node_store(dir.path(), "fork");
    let mut other = messages[2].clone();
    other.block.header.hash = near_indexer_primitives::CryptoHash([9; 32]);
    let with_fork = [messages[0].clone(), messages[1].clone(), messages[2].clone(), other, messages[3].clone()];
    let (result, _, _) = listen_over(&config, &node, &store, with_fork, CancellationToken::new()).await;
    assert!(matches!(result, Err(mpc_indexer::ListenError::ForkDetected { height: 3, .. })), "{result:?}");
    let cursor = mpc_migrations::layout::read_cursor(&store).unwrap().unwrap();
    assert_eq!(cursor, Cursor { height: 3, block_hash: Hash32(messages[2].block.header.hash.0) });

    // Cancelled before it starts: nothing is written, and that is no error.
    let store = open_node_store(dir.path(), "cancelled");
    let cancelled = CancellationToken::new();
    cancelled.cancel();
    let (result, published, _) = listen_over(&config, &node, &store, messages.clone(), cancelled).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!((cursor_height(&store), published), (None, None));
    drop(store);
    stop_chain(&system);
}
