//! `mpc-node sandbox-chain`: the chain host of a sandbox network, as a process with the
//! node's lifecycle.
//!
//! It claims its home, opens its chain store (created with the network's genesis at
//! first start), starts the chain's actors (which produce a block per interval from the
//! workload and the pooled transactions) and serves the RPC (`host_rpc`). SIGTERM or
//! SIGINT stops it in order, timed like the node's shutdown and reported in the same
//! `ShutdownReport` line: the RPC stops taking requests, the actors stop after the block
//! they are writing, the store closes, and the process exits 0 once every RocksDB
//! instance is closed. A SIGKILL at any moment leaves the store at a block boundary with
//! every acknowledged transaction either pending or included (`host::pool`).

use std::sync::Arc;

use mpc_chain::host::{NetworkConfig, TransactionPool};
use mpc_chain::{ChainConfig, ChainMode, ChainNode, ClientHandle, GetStatus};
use mpc_lifecycle::{
    DeferredSignals, ExitCode, LifecycleRequest, OperatorSignal, ShutdownReason, ShutdownReport, Supervisor,
    install_signal_listener, lifecycle_channel,
};
use mpc_store::{OwnedStore, Reuse};
use near_async::ActorSystem;
use near_async::messaging::CanSendAsync;
use tokio_util::sync::CancellationToken;

use crate::cli::SandboxChainArgs;
use crate::error::NodeError;
use crate::generation::ABORT_GRACE;
use crate::home::Home;
use crate::host_rpc::{HostRpc, router};
use crate::shutdown::drain;
use crate::stores_closed::wait_for_stores_closed;

/// Tracker group of the host's chain store.
const HOST_STORE_GROUP: &str = "chain_host";

/// Runs the chain host until SIGTERM or SIGINT; returns the exit code.
pub fn run(args: SandboxChainArgs, deferred_signals: DeferredSignals) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "cannot build the tokio runtime");
            return ExitCode::FATAL;
        }
    };
    let code = runtime.block_on(serve(args, deferred_signals));
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    code
}

async fn serve(args: SandboxChainArgs, deferred_signals: DeferredSignals) -> ExitCode {
    let (lifecycle, mut requests) = lifecycle_channel();
    let forced_exit = |signal: OperatorSignal| {
        tracing::error!(signal = signal.name(), "forced exit: second signal during shutdown");
        std::process::exit(ExitCode::forced_by_signal(signal.number()).0);
    };
    let on_hangup = || tracing::info!("SIGHUP received; the chain host has nothing to reload");
    if let Err(err) = install_signal_listener(lifecycle.clone(), forced_exit, on_hangup) {
        tracing::error!(error = %err, "cannot install signal handlers");
        return ExitCode::FATAL;
    }
    deferred_signals.release();
    tracing::info!(home = %args.home.display(), pid = std::process::id(), "chain host starting");
    let home = Home::new(&args.home);
    let _home_lock = match home.claim() {
        Ok(lock) => lock,
        Err(err) => {
            tracing::error!(error = %err, "cannot claim the home");
            return err.exit_code();
        }
    };
    let running = match start(&args, &home, &lifecycle).await {
        Ok(running) => running,
        Err(error) => {
            tracing::error!(%error, "the chain host cannot start");
            return error.exit_code();
        }
    };
    let reason = loop {
        match requests.recv().await {
            Some(LifecycleRequest::Shutdown(reason)) => break reason,
            Some(LifecycleRequest::Restart { why, .. }) => {
                tracing::info!(%why, "restart request ignored by the chain host")
            }
            None => break ShutdownReason::TaskFailed { task: "lifecycle".into(), error: "channel closed".into() },
        }
    };
    let report = shut_down(reason, running, args.shutdown_timeout).await;
    ExitCode(report.exit_code)
}

/// What runs while the host serves.
struct RunningHost {
    root_token: CancellationToken,
    rpc_tasks: Supervisor,
    chain_stop: CancellationToken,
    chain_store: OwnedStore,
}

async fn start(
    args: &SandboxChainArgs,
    home: &Home,
    lifecycle: &mpc_lifecycle::LifecycleSender,
) -> Result<RunningHost, NodeError> {
    let network = NetworkConfig::load(&args.network).map_err(|err| NodeError::Config(err.to_string()))?;
    let config = args.sandbox.chain_config(ChainMode::Host(network.clone()), None);
    let path = home.chain_data();
    let opened = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || ChainNode::open_store(&config, &path, HOST_STORE_GROUP, false))
            .await
            .map_err(|err| NodeError::NotStopped(format!("the chain store open failed: {err}")))??
    };
    let chain_store = OwnedStore::opened_ahead(opened.clone());
    let actor_system = ActorSystem::new();
    let chain_stop = CancellationToken::new();
    let chain = ChainNode::start(&config, opened.clone(), Reuse::Opened, &actor_system, &chain_stop)?;
    let rpc = HostRpc {
        store: Arc::new(opened.holder("host_rpc")),
        network: Arc::new(network),
        pool: Arc::new(TransactionPool::default()),
        head: chain.head_height.clone(),
    };
    drop(opened);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|err| NodeError::Config(format!("cannot listen on {}: {err}", args.listen)))?;
    let addr =
        listener.local_addr().map_err(|err| NodeError::Config(format!("cannot listen on {}: {err}", args.listen)))?;
    let root_token = CancellationToken::new();
    let rpc_tasks = Supervisor::new("chain_host", root_token.child_token(), lifecycle.clone());
    let app = router(rpc);
    rpc_tasks.spawn("host_rpc", move |cancel| crate::ops_connections::serve(listener, app, cancel));
    let client = chain.client.clone();
    rpc_tasks.spawn("block_production", move |cancel| watch_block_production(client, cancel));
    tracing::info!(%addr, participants = config_participants(&config), "chain host listening");
    Ok(RunningHost { root_token, rpc_tasks, chain_stop, chain_store })
}

/// How often the host asks its chain whether block production still runs.
const PRODUCTION_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Fails (and with it the host: exit 1, `task_failed`) once the chain stopped producing
/// blocks because its store failed: a host that serves a chain which no longer grows
/// would look healthy to its orchestrator while every participant waits.
async fn watch_block_production(client: ClientHandle, cancel: CancellationToken) -> Result<(), String> {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(PRODUCTION_CHECK_INTERVAL) => {}
        }
        let status = client.send_async(GetStatus).await.map_err(|err| format!("the chain does not answer: {err:?}"))?;
        if let Some(failure) = status.failure {
            return Err(format!("block production stopped: {failure}"));
        }
    }
}

fn config_participants(config: &ChainConfig) -> usize {
    match &config.mode {
        ChainMode::Host(network) => network.participants.len(),
        _ => 0,
    }
}

/// Stops the RPC, then the chain's actors, then the store, each timed; waits for every
/// RocksDB instance to close, and logs the report.
async fn shut_down(reason: ShutdownReason, running: RunningHost, timeout: std::time::Duration) -> ShutdownReport {
    let RunningHost { root_token, rpc_tasks, chain_stop, mut chain_store } = running;
    let deadline = mpc_lifecycle::Deadline::after(timeout);
    tracing::info!(%reason, timeout_ms = timeout.as_millis() as u64, "shutdown sequence started");
    let mut report = ShutdownReport::new(reason);
    let timings = &mut report.timings;
    timings.phase("cancel_root_token", async { root_token.cancel() }).await;
    let rpc = timings.phase("stop_rpc", drain(&rpc_tasks, deadline.remaining())).await;
    report.aborted_tasks.extend(rpc.aborted);
    timings.phase("stop_chain_actors", async { chain_stop.cancel() }).await;
    let started = std::time::Instant::now();
    let released = chain_store.release();
    drop(tokio::task::spawn_blocking(move || drop(released)));
    let closed = wait_for_stores_closed(None, deadline.remaining().max(ABORT_GRACE)).await;
    timings.record("wait_for_rocksdb_instances", started.elapsed(), closed.as_ref().err().map(ToString::to_string));
    if let Err(open) = closed {
        report.holders_alive = open.0.iter().map(ToString::to_string).collect();
    }
    near_async::shutdown_all_actors();
    report.final_instance_count = mpc_store::instance_count();
    report.timings.finish();
    if report.was_forced() || report.final_instance_count > 0 {
        report.exit_code = ExitCode::DEADLINE_EXCEEDED.0;
    }
    tracing::info!("ShutdownReport {}", report.to_json());
    report
}
