//! The run loop: one `select!` that receives everything that happens, one controller
//! that decides what it means, one shutdown sequence at the end.
//!
//! ```text
//! SIGTERM/SIGINT ---------> lifecycle (Shutdown) --+
//! admin, image hash, task -> lifecycle ------------+
//! SIGHUP, failed monitor --> lifecycle (Restart) ---+--> select! --> RestartController
//! data-wipe token ---------> wipe_requests ---------------------+        |             |
//! start-up / restart done, indexer thread exit (IndexerSlot) ---+        |    Restart: slot.restart()
//!                                                                         +--- ShutDown: shut_down(slot)
//! ```

use std::sync::Arc;

use mpc_lifecycle::{
    DeferredSignals, ExitCode, LifecycleReceiver, LifecycleSender, PhaseTracker, Supervisor, lifecycle_channel,
};
use near_async::ActorSystem;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::admin_token::load_or_create_admin_token;
use crate::cli::StartArgs;
use crate::error::NodeError;
use crate::generation::GenerationContext;
use crate::home::{Home, HomeLock};
use crate::indexer_slot::IndexerSlot;
use crate::operator_signals::listen_for_operator_signals;
use crate::ops_state::{LifecycleHistory, OpsState};
use crate::restart_control::{Decision, Event, RestartController};
use crate::sd_notify::Notifier;
use crate::shutdown::{ShutdownContext, shut_down};
use crate::signing::{SignerParts, SigningSetup, SigningView, load_signing_setup, start_signer};
use crate::startup::{StartupContext, start_node};
use crate::test_hooks::TestHooks;

/// Runs the node until a shutdown reason arrives, then shuts down; returns the exit code.
pub async fn run(args: StartArgs, deferred_signals: DeferredSignals, test_hooks: TestHooks) -> ExitCode {
    let (mut node, startup) = match set_up(args, deferred_signals, test_hooks).await {
        Ok(set_up) => set_up,
        Err(code) => return code,
    };
    let mut indexer = IndexerSlot::starting(start_node(startup));
    let mut restarts = RestartController::default();
    let mut signer = None;
    let reason = loop {
        let event = tokio::select! {
            biased;
            Some(request) = node.requests.recv() => Event::Request(request),
            Some(token) = node.wipe_requests.recv() => Event::WipeTokenChanged(token),
            event = indexer.next_event(&node.history) => event,
        };
        if matches!(event, Event::Started) {
            signer = node.start_signer(&indexer);
        }
        match restarts.decide(event, indexer.stage()) {
            Decision::Continue => {}
            Decision::Restart(request) => indexer.restart(request, &node.generation, node.timeout),
            Decision::ShutDown(reason) => break reason,
        }
    };
    // Secrets loaded for a signer that never started (a stop during start-up) hold the
    // asset store open: it closes before the shutdown waits for every store.
    if let Some(unstarted) = node.signing.take() {
        let _ = tokio::task::spawn_blocking(move || drop(unstarted)).await;
    }
    // The home stays claimed until the process ends (`_home_lock` lives to the end of
    // this function); the rest of the run loop's values are not needed any more.
    let Node { phase, root_token, node_tasks, ops_tasks, notifier, timeout, _home_lock, .. } = node;
    let context = ShutdownContext { phase, root_token, node_tasks, ops_tasks, notifier, timeout, signer };
    let report = shut_down(reason, indexer, context).await;
    ExitCode(report.exit_code)
}

/// What the run loop holds besides the indexer: made by [`set_up`] before start-up
/// begins, handed to the shutdown sequence at the end.
struct Node {
    requests: LifecycleReceiver,
    wipe_requests: mpsc::UnboundedReceiver<String>,
    history: LifecycleHistory,
    generation: GenerationContext,
    timeout: std::time::Duration,
    phase: PhaseTracker,
    root_token: CancellationToken,
    node_tasks: Supervisor,
    ops_tasks: Supervisor,
    notifier: Notifier,
    /// The signing side's secrets until it starts (`--chain` only).
    signing: Option<SigningSetup>,
    /// Where the running signer is published for the operations server.
    signer_handle: watch::Sender<Option<mpc_signer::SignerHandle>>,
    /// The signing side's test hooks.
    signer_hooks: mpc_signer::SignerTestHooks,
    /// Held until the process ends: the home stays claimed through the shutdown.
    _home_lock: HomeLock,
}

impl Node {
    /// Starts the signing side once start-up handed over the node store (once per
    /// process; `None` for a node without `--chain`).
    fn start_signer(&mut self, indexer: &IndexerSlot) -> Option<mpc_signer::Signer> {
        let node_store = indexer.node_store()?;
        let setup = self.signing.take()?;
        let parts = SignerParts {
            node_store,
            generations: &self.generation.view,
            node_tasks: &self.node_tasks,
            root_token: &self.root_token,
            lifecycle: &self.generation.lifecycle,
            hooks: self.signer_hooks.clone(),
        };
        let signer = start_signer(setup, &self.generation.args, parts);
        self.signer_handle.send_replace(Some(signer.handle()));
        Some(signer)
    }
}

/// Everything before start-up, in the order that matters: the signal listener first
/// (before anything is opened, so no signal takes the default action; the signals
/// deferred since before `main` are released once it exists), then the claim on the
/// home (before any port is bound or store opened, so a second node on this home is
/// told so whatever else the two share), then the operations server. Returns the exit
/// code when one of them fails.
async fn set_up(
    args: StartArgs,
    deferred_signals: DeferredSignals,
    test_hooks: TestHooks,
) -> Result<(Node, StartupContext), ExitCode> {
    let (lifecycle, requests) = lifecycle_channel();
    let root_token = CancellationToken::new();
    let phase = PhaseTracker::default();
    let node_tasks = Supervisor::new("node", root_token.child_token(), lifecycle.clone());
    let (generation_view, _) = watch::channel(None);
    listen_for_operator_signals(deferred_signals, &test_hooks, &lifecycle, &node_tasks, &generation_view).map_err(
        |err| {
            tracing::error!(error = %err, "cannot install signal handlers");
            ExitCode::FATAL
        },
    )?;
    tracing::info!(home = %args.home.display(), pid = std::process::id(), "mpc-node starting");
    let home_lock = Home::new(&args.home).claim().map_err(|err| {
        tracing::error!(error = %err, "cannot claim the home");
        err.exit_code()
    })?;
    let signing = load_signing_setup(&args).await.map_err(|err| {
        tracing::error!(error = %err, "cannot load the signing keys");
        err.exit_code()
    })?;
    let (signer_handle, signer_view) = watch::channel(None);
    let history = LifecycleHistory::default();
    let ops_tasks = Supervisor::new("ops", CancellationToken::new(), lifecycle.clone());
    let ops = OpsParts {
        phase: &phase,
        generation: &generation_view,
        node_tasks: &node_tasks,
        sender: &lifecycle,
        history: &history,
        signing: SigningView { enabled: signing.is_some(), handle: signer_view },
    };
    start_ops_server(&args, ops, &ops_tasks).await.map_err(|error| {
        tracing::error!(%error, "cannot start the operations server");
        error.exit_code()
    })?;
    let notifier = Notifier::from_environment();
    let (notifier_for_task, phase_changes) = (notifier.clone(), phase.subscribe());
    node_tasks
        .spawn("sd_notify", move |cancel| crate::sd_notify::follow_phase(notifier_for_task, phase_changes, cancel));

    let timeout = args.shutdown_timeout;
    let signer_hooks = test_hooks.signer.clone();
    let generation = GenerationContext {
        args: Arc::new(args),
        phase: phase.clone(),
        root_token: root_token.clone(),
        lifecycle,
        view: generation_view,
        test_hooks: test_hooks.indexer.clone(),
        actor_system: ActorSystem::new(),
    };
    let (wipe_sender, wipe_requests) = mpsc::unbounded_channel();
    let startup = StartupContext {
        generation: generation.clone(),
        node_tasks: node_tasks.clone(),
        wipe_requests: wipe_sender,
        test_hooks,
    };
    let node = Node {
        requests,
        wipe_requests,
        history,
        generation,
        timeout,
        phase,
        root_token,
        node_tasks,
        ops_tasks,
        notifier,
        signing,
        signer_handle,
        signer_hooks,
        _home_lock: home_lock,
    };
    Ok((node, startup))
}

/// What the operations server shows, borrowed from the run loop's own values.
struct OpsParts<'a> {
    phase: &'a PhaseTracker,
    generation: &'a watch::Sender<Option<crate::generation::GenerationView>>,
    node_tasks: &'a Supervisor,
    sender: &'a LifecycleSender,
    history: &'a LifecycleHistory,
    signing: SigningView,
}

/// Loads the admin token, binds `--web-addr` and starts the operations server on its
/// own supervisor: it is stopped after the indexer has drained, so probes and
/// `/debug/lifecycle` can follow the whole shutdown.
async fn start_ops_server(args: &StartArgs, parts: OpsParts<'_>, ops_tasks: &Supervisor) -> Result<(), NodeError> {
    let state = OpsState {
        phase: parts.phase.clone(),
        generation: parts.generation.subscribe(),
        node_tasks: parts.node_tasks.clone(),
        lifecycle: parts.sender.clone(),
        admin_token: Arc::new(load_or_create_admin_token(&Home::new(&args.home))?),
        admin_guard: crate::admin_guard::AdminGuard::default(),
        history: parts.history.clone(),
        signing: parts.signing,
    };
    let listener = tokio::net::TcpListener::bind(args.web_addr)
        .await
        .map_err(|err| NodeError::Config(format!("cannot listen on {}: {err}", args.web_addr)))?;
    let addr =
        listener.local_addr().map_err(|err| NodeError::Config(format!("cannot listen on {}: {err}", args.web_addr)))?;
    tracing::info!(%addr, "ops server listening");
    ops_tasks.spawn("ops_server", move |cancel| crate::web::serve(listener, state, cancel));
    Ok(())
}
