//! The run loop: one `select!` that receives everything that happens, one controller
//! that decides what it means, one shutdown sequence at the end.
//!
//! ```text
//! SIGTERM/SIGINT ---------> shutdown_signal_sender (Shutdown) --+
//! admin, image hash, task -> shutdown_signal_sender ------------+
//! SIGHUP, failed monitor --> shutdown_signal_sender (Restart) ---+--> select! --> RestartController
//! data-wipe token ---------> wipe_requests ---------------------+        |             |
//! start-up / restart done, indexer thread exit (IndexerSlot) ---+        |    Restart: slot.restart()
//!                                                                         +--- ShutDown: shut_down(slot)
//! ```

use std::sync::Arc;

use mpc_lifecycle::{DeferredSignals, ExitCode, PhaseTracker, Supervisor, lifecycle_channel};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::admin_token::load_or_create_admin_token;
use crate::cli::StartArgs;
use crate::error::NodeError;
use crate::generation::GenerationContext;
use crate::home::Home;
use crate::indexer_slot::IndexerSlot;
use crate::operator_signals::listen_for_operator_signals;
use crate::ops_state::{LifecycleHistory, OpsState};
use crate::restart_control::{Decision, Event, RestartController};
use crate::sd_notify::Notifier;
use crate::shutdown::{ShutdownContext, shut_down};
use crate::startup::{StartupContext, start_node};
use crate::test_hooks::TestHooks;

/// Runs the node until a shutdown reason arrives, then shuts down; returns the exit code.
/// `deferred_signals` were blocked before `main`; they are released once the listener
/// is installed, so a signal sent during start-up is handled, not fatal.
pub async fn run(args: StartArgs, deferred_signals: DeferredSignals, test_hooks: TestHooks) -> ExitCode {
    let (shutdown_signal_sender, mut requests) = lifecycle_channel();
    let root_token = CancellationToken::new();
    let phase = PhaseTracker::default();
    let node_tasks = Supervisor::new("node", root_token.child_token(), shutdown_signal_sender.clone());
    let (generation_view, _) = watch::channel(None);

    // First, before anything is opened: from here on no signal takes the default action.
    if let Err(err) =
        listen_for_operator_signals(deferred_signals, &test_hooks, &shutdown_signal_sender, &node_tasks, &generation_view)
    {
        tracing::error!(error = %err, "cannot install signal handlers");
        return ExitCode::FATAL;
    }
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
    let ops_tasks = Supervisor::new("ops", CancellationToken::new(), shutdown_signal_sender.clone());
    let ops_state = OpsState {
        phase: phase.clone(),
        generation: generation_view.subscribe(),
        node_tasks: node_tasks.clone(),
        shutdown_signal_sender: shutdown_signal_sender.clone(),
        admin_token: Arc::new(String::new()),
        admin_guard: crate::admin_guard::AdminGuard::default(),
        history: history.clone(),
    };
    if let Err(error) = start_ops_server(&args, ops_state, &ops_tasks).await {
        tracing::error!(%error, "cannot start the operations server");
        return error.exit_code();
    }
    let (notifier_for_task, phase_changes) = (notifier.clone(), phase.subscribe());
    node_tasks.spawn("sd_notify", move |cancel| crate::sd_notify::follow_phase(notifier_for_task, phase_changes, cancel));

    let timeout = args.shutdown_timeout;
    let generation = GenerationContext {
        args: Arc::new(args),
        phase: phase.clone(),
        root_token: root_token.clone(),
        shutdown_signal_sender: shutdown_signal_sender.clone(),
        view: generation_view,
        test_hooks: test_hooks.indexer.clone(),
    };
    let (wipe_sender, mut wipe_requests) = mpsc::unbounded_channel();
    let startup =
        StartupContext { generation: generation.clone(), node_tasks: node_tasks.clone(), wipe_requests: wipe_sender, test_hooks };
    let mut indexer = IndexerSlot::starting(start_node(startup));
    let mut restarts = RestartController::default();

    let reason = loop {
        let event = tokio::select! {
            biased;
            Some(request) = requests.recv() => Event::Request(request),
            Some(token) = wipe_requests.recv() => Event::WipeTokenChanged(token),
            event = indexer.next_event(&history) => event,
        };
        match restarts.decide(event, indexer.stage()) {
            Decision::Continue => {}
            Decision::Restart(request) => indexer.restart(request, &generation, timeout),
            Decision::ShutDown(reason) => break reason,
        }
    };
    drop(generation);
    let context = ShutdownContext { phase, root_token, node_tasks, ops_tasks, notifier, timeout };
    let report = shut_down(reason, indexer, context).await;
    ExitCode(report.exit_code)
}

/// Loads the admin token, binds `--web-addr` and starts the operations server on its
/// own supervisor: it is stopped after the indexer has drained, so probes and
/// `/debug/lifecycle` can follow the whole shutdown.
async fn start_ops_server(args: &StartArgs, mut state: OpsState, ops_tasks: &Supervisor) -> Result<(), NodeError> {
    state.admin_token = Arc::new(load_or_create_admin_token(&Home::new(&args.home))?);
    let listener = tokio::net::TcpListener::bind(args.web_addr)
        .await
        .map_err(|err| NodeError::Config(format!("cannot listen on {}: {err}", args.web_addr)))?;
    let addr = listener.local_addr().map_err(|err| NodeError::Config(format!("cannot listen on {}: {err}", args.web_addr)))?;
    tracing::info!(%addr, "ops server listening");
    ops_tasks.spawn("ops_server", move |cancel| crate::web::serve(listener, state, cancel));
    Ok(())
}
