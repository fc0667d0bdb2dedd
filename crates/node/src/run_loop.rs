//! The run loop: one `select!` that receives every reason to stop.
//!
//! ```text
//! SIGTERM/SIGINT --> signal listener --> shutdown_signal_sender(Signal)
//! image hash revoked ------------------> shutdown_signal_sender(ImageHashRevoked)
//! supervised task failed --------------> shutdown_signal_sender(TaskFailed)
//! indexer thread exit -----------------> indexer exit oneshot (retried under the restart policy)
//! SIGHUP, data-wipe token, task failure -> RestartIndexer request (in-process restart)
//! start-up failure --------------------> root task returns
//!                              |
//!                  select! (exactly one place)  -->  shutdown sequence
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use mpc_indexer::IndexerError;
use mpc_lifecycle::{
    DeferredSignals, ExitCode, LifecycleRequest, OperatorSignal, PhaseTracker, ShutdownReason,
    Supervisor, install_signal_listener, shutdown_channel,
};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::admin_token::load_or_create_admin_token;
use crate::cli::StartArgs;
use crate::home::Home;
use crate::ops_state::{LastSequence, LifecycleHistory, OpsState};
use crate::resources::SharedResources;
use crate::restart::{IndexerExit, RestartPolicy, RestartRequest, restart_indexer_subsystem};
use crate::sd_notify::Notifier;
use crate::shutdown::{ShutdownContext, shut_down};
use crate::startup::{StartupContext, StartupError, SubsystemContext, start_node};

/// Runs the node until a shutdown reason arrives, then shuts down; returns the exit code.
/// `deferred_signals` were blocked at the top of `main`; they are released once the
/// listener is installed, so a signal sent during start-up is handled, not fatal.
pub async fn run(args: StartArgs, deferred_signals: Option<DeferredSignals>) -> ExitCode {
    let (shutdown_signal_sender, mut shutdown_receiver) = shutdown_channel();
    let root_token = CancellationToken::new();
    let phase = PhaseTracker::default();
    let resources = SharedResources::default();
    let node_tasks = Supervisor::new(
        "node",
        root_token.child_token(),
        shutdown_signal_sender.clone(),
    );

    // First, before anything is opened: from here on no signal takes the default action.
    let _signal_listener = if signal_handler_disabled_for_test() {
        None
    } else {
        let forced_exit = forced_exit_on_second_signal(node_tasks.clone(), resources.clone());
        match install_signal_listener(shutdown_signal_sender.clone(), forced_exit) {
            Ok(listener) => {
                if let Some(deferred) = deferred_signals {
                    deferred.release();
                }
                Some(listener)
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot install signal handlers");
                return ExitCode::FATAL;
            }
        }
    };
    tracing::info!(home = %args.home.display(), pid = std::process::id(), "mpc-node starting");

    // Claimed before any port is bound or any store opened, so a second node on this
    // home is told so, whatever else the two share.
    let _home_lock = match Home::new(&args.home).claim() {
        Ok(lock) => lock,
        Err(err) => {
            tracing::error!(error = %err, "cannot claim the home");
            return err.exit_code();
        }
    };
    let notifier = Notifier::from_environment();
    let history = LifecycleHistory::default();
    let ops_tasks = Supervisor::new(
        "ops",
        CancellationToken::new(),
        shutdown_signal_sender.clone(),
    );
    match start_ops_server(
        &args,
        &phase,
        &resources,
        &node_tasks,
        &shutdown_signal_sender,
        &history,
        &ops_tasks,
    )
    .await
    {
        Ok(()) => {}
        Err(error) => {
            tracing::error!(%error, "cannot start the operations server");
            return ExitCode::USAGE;
        }
    }
    {
        let (notifier, phase_changes) = (notifier.clone(), phase.subscribe());
        node_tasks.spawn("sd_notify", move |cancel| {
            crate::sd_notify::follow_phase(notifier, phase_changes, cancel)
        });
    }

    let timeout = args.shutdown_timeout;
    let args = Arc::new(args);
    let subsystem = SubsystemContext {
        args: args.clone(),
        phase: phase.clone(),
        root_token: root_token.clone(),
        node_tasks: node_tasks.clone(),
        shutdown_signal_sender: shutdown_signal_sender.clone(),
        resources: resources.clone(),
    };
    let (indexer_exit_sender, indexer_exit_receiver) = oneshot::channel();
    let mut indexer_exit: Option<IndexerExit> = Some(indexer_exit_receiver);
    let mut root_task = Box::pin(start_node(StartupContext {
        subsystem: subsystem.clone(),
        indexer_exit: indexer_exit_sender
    }));
    let mut restart: Option<RestartInFlight> = None;
    let mut restart_policy = RestartPolicy::default();

    let reason = loop {
        let next_restart = tokio::select! {
            biased;
            request = shutdown_receiver.recv() => match request {
                Some(LifecycleRequest::Shutdown(reason)) => break reason,
                Some(LifecycleRequest::RestartIndexer { why, wipe_token, after_failure }) => {
                    if restart.is_some() {
                        tracing::info!(%why, "restart already in progress; request merged into it");
                        continue;
                    }
                    if resources.lock().indexer.is_none() {
                        tracing::warn!(%why, "restart requested before the indexer started; ignoring");
                        continue;
                    }
                    let backoff = if after_failure {
                        match restart_policy.on_failure() {
                            Some(backoff) => backoff,
                            None => break ShutdownReason::IndexerExited { error: format!("{why} (too many failures)") },
                        }
                    } else {
                        Duration::ZERO
                    };
                    RestartRequest { why, wipe_token, backoff }
                }
                // Unreachable while this function holds a sender; stop rather than spin.
                None => break ShutdownReason::AdminRequest,
            },
            restarted = async { restart.as_mut().expect("branch enabled only while restarting").await }, if restart.is_some() => {
                restart = None;
                match restarted {
                    Ok((exit, timings)) => {
                        indexer_exit = Some(exit);
                        history.count_restart();
                        history.record(timings);
                    }
                    Err(error) => break ShutdownReason::IndexerExited { error: format!("restart failed: {error}") },
                }
                continue;
            },
            exited = async { indexer_exit.as_mut().expect("branch enabled only while running").await }, if indexer_exit.is_some() => {
                let error = match exited {
                    Ok(result) => match classify_indexer_exit(result) {
                        IndexerExitKind::Fatal(reason) => break reason,
                        IndexerExitKind::Retryable(error) => error,
                    },
                    Err(_) => "indexer thread ended without a result".to_owned(),
                };
                match restart_policy.on_failure() {
                    Some(backoff) => RestartRequest { why: format!("indexer failed: {error}"), wipe_token: None, backoff },
                    None => break ShutdownReason::IndexerExited { error: format!("{error} (too many failures)") },
                }
            },
            Err(failure) = &mut root_task => break startup_failure_reason(failure),
        };
        indexer_exit = None;
        restart = Some(Box::pin(restart_indexer_subsystem(
            subsystem.clone(),
            next_restart,
            timeout,
        )));
    };
    drop(restart);
    // Start-up may be anywhere, even past a finished blocking open whose result (the
    // node store) it has not taken yet: dropping it now drops that result, so the wait
    // for every RocksDB instance below is not left waiting for a store nobody holds.
    drop(root_task);
    drop(shutdown_signal_sender);

    let report = shut_down(
        reason,
        ShutdownContext {
            phase,
            root_token,
            node_tasks,
            ops_tasks,
            resources,
            timeout,
            notifier,
        },
    )
    .await;
    ExitCode(report.exit_code)
}

fn startup_failure_reason(failure: StartupError) -> ShutdownReason {
    tracing::error!(error = %failure.message, exit_code = failure.exit_code.0, "start-up failed");
    failure.into_reason()
}

/// A restart being carried out, raced against shutdown requests in the one `select!`.
type RestartInFlight = Pin<Box<dyn Future<Output = Result<(IndexerExit, LastSequence), String>>>>;

/// Binds `--web-addr` and starts the operations server on its own supervisor: it is
/// stopped after the indexer has drained, so probes and `/debug/lifecycle` can follow
/// the whole shutdown.
async fn start_ops_server(
    args: &StartArgs,
    phase: &PhaseTracker,
    resources: &SharedResources,
    node_tasks: &Supervisor,
    sender: &mpc_lifecycle::ShutdownSender,
    history: &LifecycleHistory,
    ops_tasks: &Supervisor,
) -> Result<(), String> {
    let admin_token = load_or_create_admin_token(&Home::new(&args.home))?;
    let listener = tokio::net::TcpListener::bind(args.web_addr)
        .await
        .map_err(|err| format!("cannot listen on {}: {err}", args.web_addr))?;
    let addr = listener.local_addr().map_err(|err| err.to_string())?;
    tracing::info!(%addr, "ops server listening");
    let state = OpsState {
        phase: phase.clone(),
        resources: resources.clone(),
        node_tasks: node_tasks.clone(),
        shutdown_signal_sender: sender.clone(),
        admin_token: Arc::new(admin_token),
        admin_guard: crate::web::AdminGuard::default(),
        history: history.clone(),
    };
    ops_tasks.spawn("ops_server", move |cancel| {
        crate::web::serve(listener, state, cancel)
    });
    Ok(())
}

enum IndexerExitKind {
    Fatal(ShutdownReason),
    Retryable(String),
}

/// Sorts an indexer thread that ended before the node asked it to. A chain store that
/// cannot be opened (locked, corrupt, newer schema) or a bad chain setting is fatal at
/// once, as is a failing node store; the rest (a failed stream, a gap) is retried under
/// the restart policy.
fn classify_indexer_exit(result: Result<(), IndexerError>) -> IndexerExitKind {
    match result {
        Ok(()) => IndexerExitKind::Retryable("indexer stopped unexpectedly".into()),
        Err(IndexerError::Chain(mpc_chain::ChainError::Store(err))) => {
            IndexerExitKind::Fatal(ShutdownReason::StartupFailed {
                error: err.to_string(),
                exit_code: ExitCode::STORE.0,
            })
        }
        Err(IndexerError::Chain(err @ mpc_chain::ChainError::Config(_))) => {
            IndexerExitKind::Fatal(ShutdownReason::StartupFailed {
                error: err.to_string(),
                exit_code: ExitCode::USAGE.0,
            })
        }
        Err(err @ (IndexerError::Store(_) | IndexerError::Runtime(_))) => {
            IndexerExitKind::Fatal(ShutdownReason::IndexerExited {
                error: err.to_string(),
            })
        }
        Err(err) => IndexerExitKind::Retryable(err.to_string()),
    }
}

/// What a second SIGTERM/SIGINT does: log what is still running, exit at once with
/// 128 + signal. RocksDB's WAL keeps every committed batch; nothing is half-applied.
fn forced_exit_on_second_signal(
    node_tasks: Supervisor,
    resources: SharedResources,
) -> impl Fn(OperatorSignal) + Send + Sync + 'static {
    move |signal| {
        let mut still_running = node_tasks.running();
        if let Some(resources) = resources.try_lock()
            && let Some(indexer) = &resources.indexer
        {
            still_running.extend(indexer.tasks.running());
            if !indexer.is_finished() {
                still_running.push("indexer thread".into());
            }
        }
        let open_stores: Vec<String> = mpc_store::open_instances()
            .iter()
            .map(ToString::to_string)
            .collect();
        tracing::error!(
            signal = signal.name(),
            still_running = ?still_running,
            open_stores = ?open_stores,
            "forced exit: second signal during shutdown"
        );
        std::process::exit(ExitCode::forced_by_signal(signal.number()).0);
    }
}

/// Test hook (feature `test-hooks`): `MPC_TEST_DISABLE_SIGNAL_HANDLER=1` skips the
/// signal listener, to prove the SIGTERM test fails without it.
#[cfg(feature = "test-hooks")]
pub fn signal_handler_disabled_for_test() -> bool {
    std::env::var("MPC_TEST_DISABLE_SIGNAL_HANDLER").is_ok_and(|value| value == "1")
}

#[cfg(not(feature = "test-hooks"))]
pub fn signal_handler_disabled_for_test() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(result: Result<(), IndexerError>) -> Result<ShutdownReason, String> {
        match classify_indexer_exit(result) {
            IndexerExitKind::Fatal(reason) => Ok(reason),
            IndexerExitKind::Retryable(error) => Err(error),
        }
    }

    #[test]
    fn a_chain_config_or_store_error_is_fatal_with_its_exit_code_and_a_stream_failure_is_retried() {
        let config = IndexerError::Chain(mpc_chain::ChainError::Config("4 shards".into()));
        assert!(matches!(kind(Err(config)), Ok(ShutdownReason::StartupFailed { exit_code: 2, .. })));
        let locked = mpc_store::StoreError::Locked { path: "/home/data".into() };
        let chain_store = IndexerError::Chain(mpc_chain::ChainError::Store(mpc_chain::ChainStoreError::Store(locked)));
        assert!(matches!(kind(Err(chain_store)), Ok(ShutdownReason::StartupFailed { exit_code: 3, .. })));
        let node_store = IndexerError::Store(mpc_store::StoreError::Cancelled);
        assert!(matches!(kind(Err(node_store)), Ok(ShutdownReason::IndexerExited { .. })));
        let stream = IndexerError::Listen(mpc_indexer::ListenError::StreamEnded);
        assert!(kind(Err(stream)).is_err(), "a failed stream is retried under the restart policy");
        assert!(kind(Ok(())).is_err(), "an unrequested clean stop is retried too");
    }
}
