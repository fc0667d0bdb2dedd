//! `mpc-node`: entry point. Parses the command line, sets up logs, builds the runtime
//! and maps every outcome to the documented exit code.

mod admin_token;
mod check;
mod cli;
mod home;
mod logging;
mod metrics;
mod ops_connections;
mod ops_state;
mod resources;
mod restart;
mod run_loop;
mod sd_notify;
mod shutdown;
mod startup;
mod subsystem_stop;
mod upgrade;
mod web;

use std::time::Duration;

use clap::Parser;
use mpc_lifecycle::ExitCode;

use crate::cli::{Cli, Command};

/// Bound on stray runtime work after the shutdown sequence finished.
const RUNTIME_SHUTDOWN_TIMEOUT: Duration = Duration::from_millis(200);

/// Blocks the operator signals before `main` runs (from the ELF `.init_array`, right
/// after the dynamic loader): a SIGTERM that arrives while the process is still starting
/// then waits for the listener instead of killing the process. `main` takes the
/// blocked set over and releases it once the listener is installed.
#[used]
#[unsafe(link_section = ".init_array")]
static DEFER_OPERATOR_SIGNALS_BEFORE_MAIN: extern "C" fn() = defer_operator_signals_before_main;

extern "C" fn defer_operator_signals_before_main() {
    if !run_loop::signal_handler_disabled_for_test() {
        // The blocked set is taken over again by `main`; nothing to keep here.
        let _blocked_until_main = mpc_lifecycle::defer_operator_signals();
    }
}

fn main() {
    let deferred_signals =
        (!run_loop::signal_handler_disabled_for_test()).then(mpc_lifecycle::defer_operator_signals);
    let cli = Cli::parse();
    logging::init(cli.log_format);
    arm_crash_point_for_test();
    let deferred_signals = match (&cli.command, deferred_signals) {
        (Command::Start(_), deferred) => deferred,
        // Offline commands keep the default disposition: SIGTERM stops them at once,
        // and each of their writes is one atomic batch.
        (_, deferred) => {
            if let Some(deferred) = deferred {
                deferred.release();
            }
            None
        }
    };
    let code = match cli.command {
        Command::Start(args) => run_start(args, deferred_signals),
        Command::Check(args) => match check::check_home(&args.home) {
            Ok(summary) => {
                check::print_summary(&summary);
                if summary.problems.is_empty() {
                    ExitCode::GRACEFUL
                } else {
                    ExitCode::FATAL
                }
            }
            Err(err) => {
                eprintln!("error: {err}");
                ExitCode::STORE
            }
        },
        Command::Migrate(args) => upgrade::migrate(&args),
        Command::Rollback(args) => upgrade::rollback(&args.home),
    };
    std::process::exit(code.0);
}

/// Test hook (feature `test-hooks`): `MPC_TEST_CRASH_AT=POINT[@SUBJECT]` makes the
/// process SIGKILL itself at that step of a directory operation (see
/// `mpc_store::crash_points`). Read once, here; a bad name is a usage error.
#[cfg(feature = "test-hooks")]
fn arm_crash_point_for_test() {
    if let Ok(spec) = std::env::var("MPC_TEST_CRASH_AT")
        && let Err(err) = mpc_store::crash_points::arm(&spec)
    {
        eprintln!("error: MPC_TEST_CRASH_AT: {err}");
        std::process::exit(ExitCode::USAGE.0);
    }
}

#[cfg(not(feature = "test-hooks"))]
fn arm_crash_point_for_test() {}

fn run_start(
    args: cli::StartArgs,
    deferred_signals: Option<mpc_lifecycle::DeferredSignals>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("node")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "cannot build the tokio runtime");
            return ExitCode::FATAL;
        }
    };
    let code = runtime.block_on(run_loop::run(args, deferred_signals));
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_TIMEOUT);
    code
}
