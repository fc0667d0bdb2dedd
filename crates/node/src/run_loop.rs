//! The run loop: one `select!` that receives every reason to stop.
//!
//! ```text
//! SIGTERM/SIGINT --> signal listener --> shutdown_signal_sender(Signal)
//! image hash revoked ------------------> shutdown_signal_sender(ImageHashRevoked)
//! supervised task failed --------------> shutdown_signal_sender(TaskFailed)
//! indexer thread exit -----------------> indexer exit oneshot
//! start-up failure --------------------> root task returns
//!                              |
//!                  select! (exactly one place)  -->  shutdown sequence
//! ```

use std::pin::pin;

use mpc_indexer::IndexerError;
use mpc_lifecycle::{
    DeferredSignals, ExitCode, LifecycleRequest, OperatorSignal, PhaseTracker, ShutdownReason, Supervisor, install_signal_listener,
    shutdown_channel,
};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::cli::StartArgs;
use crate::resources::SharedResources;
use crate::shutdown::{ShutdownContext, shut_down};
use crate::startup::{StartupContext, StartupError, start_node};

/// Runs the node until a shutdown reason arrives, then shuts down; returns the exit code.
/// `deferred_signals` were blocked at the top of `main`; they are released once the
/// listener is installed, so a signal sent during start-up is handled, not fatal.
pub async fn run(args: StartArgs, deferred_signals: Option<DeferredSignals>) -> ExitCode {
    let (shutdown_signal_sender, mut shutdown_receiver) = shutdown_channel();
    let root_token = CancellationToken::new();
    let phase = PhaseTracker::default();
    let resources = SharedResources::default();
    let node_tasks = Supervisor::new("node", root_token.child_token(), shutdown_signal_sender.clone());

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

    let timeout = args.shutdown_timeout;
    let (indexer_exit_sender, indexer_exit) = oneshot::channel();
    let mut indexer_exit = pin!(indexer_exit);
    let mut root_task = pin!(start_node(StartupContext {
        args,
        phase: phase.clone(),
        root_token: root_token.clone(),
        node_tasks: node_tasks.clone(),
        shutdown_signal_sender: shutdown_signal_sender.clone(),
        resources: resources.clone(),
        indexer_exit: indexer_exit_sender,
    }));

    let reason = loop {
        tokio::select! {
            biased;
            request = shutdown_receiver.recv() => match request {
                Some(LifecycleRequest::Shutdown(reason)) => break reason,
                Some(LifecycleRequest::RestartIndexer { why }) => {
                    tracing::warn!(%why, "in-process restart requested but not supported by this build; ignoring");
                }
                // Unreachable while this function holds a sender; stop rather than spin.
                None => break ShutdownReason::AdminRequest,
            },
            Ok(result) = &mut indexer_exit => break indexer_exit_reason(result),
            Err(failure) = &mut root_task => break startup_failure_reason(failure),
        }
    };
    drop(shutdown_signal_sender);

    let report = shut_down(reason, ShutdownContext { phase, root_token, node_tasks, resources, timeout }).await;
    ExitCode(report.exit_code)
}

fn startup_failure_reason(failure: StartupError) -> ShutdownReason {
    tracing::error!(error = %failure.message, exit_code = failure.exit_code.0, "start-up failed");
    failure.into_reason()
}

/// The reason for an indexer thread that ended before the node asked it to. A chain
/// store that cannot be opened (locked, corrupt, newer schema) is a store error at start.
fn indexer_exit_reason(result: Result<(), IndexerError>) -> ShutdownReason {
    match result {
        Ok(()) => ShutdownReason::IndexerExited { error: "indexer stopped unexpectedly".into() },
        Err(IndexerError::Chain(mpc_chain::ChainError::Store(err))) => {
            ShutdownReason::StartupFailed { error: err.to_string(), exit_code: ExitCode::STORE.0 }
        }
        Err(IndexerError::Chain(err @ mpc_chain::ChainError::Config(_))) => {
            ShutdownReason::StartupFailed { error: err.to_string(), exit_code: ExitCode::USAGE.0 }
        }
        Err(err) => ShutdownReason::IndexerExited { error: err.to_string() },
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
        let open_stores: Vec<String> = mpc_store::open_instances().iter().map(ToString::to_string).collect();
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
