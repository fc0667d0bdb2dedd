//! What the operator's signals mean to this node: SIGTERM/SIGINT stop it gracefully (a
//! second one forces the exit), SIGHUP restarts the indexer subsystem in-process.

use mpc_lifecycle::{DeferredSignals, ExitCode, LifecycleSender, OperatorSignal, Supervisor, install_signal_listener};
use tokio::sync::watch;

use crate::generation::GenerationView;
use crate::test_hooks::TestHooks;

/// Installs the listener and then releases the signals deferred since before `main`, so
/// a signal sent during start-up is handled, not fatal. With the test hook that
/// disables the handler, the signals are released with their default action instead.
pub fn listen_for_operator_signals(
    deferred: DeferredSignals,
    test_hooks: &TestHooks,
    sender: &LifecycleSender,
    node_tasks: &Supervisor,
    generation: &watch::Sender<Option<GenerationView>>,
) -> std::io::Result<()> {
    if test_hooks.signal_handler_disabled() {
        tracing::warn!("test hook: no signal handler, operator signals keep their default action");
        deferred.release();
        return Ok(());
    }
    let forced_exit = forced_exit_on_second_signal(node_tasks.clone(), generation.subscribe());
    let restarts = sender.clone();
    let on_hangup = move || {
        tracing::warn!("SIGHUP received, restarting the indexer subsystem");
        restarts.restart("SIGHUP");
    };
    install_signal_listener(sender.clone(), forced_exit, on_hangup)?;
    deferred.release();
    Ok(())
}

/// What a second SIGTERM/SIGINT does: log what is still running, exit at once with
/// 128 + signal. RocksDB's WAL keeps every committed batch; nothing is half-applied.
fn forced_exit_on_second_signal(
    node_tasks: Supervisor,
    generation: watch::Receiver<Option<GenerationView>>,
) -> impl Fn(OperatorSignal) + Send + Sync + 'static {
    move |signal| {
        let mut still_running = node_tasks.running();
        if let Some(view) = &*generation.borrow() {
            still_running.extend(view.indexer_tasks.running());
            still_running.extend(view.watchers.running());
            if view.thread_alive.is_alive() {
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
