//! The `mpc-node` binary as a library: the binary's `main` calls [`main`], and the
//! node's parts (the run loop's decisions, the shutdown sequence) are tested in-process
//! here where that is clearer than spawning a process.
//!
//! Nothing but [`main`] and what the binary needs before it is public: the node is a
//! program, not an API.

mod admin_guard;
mod admin_token;
mod chain_host;
mod check;
mod children;
mod cli;
mod data_wipe;
mod error;
mod generation;
mod home;
mod host_rpc;
mod indexer_slot;
mod localnet;
mod logging;
mod metrics;
mod operator_signals;
mod ops_connections;
mod ops_state;
mod restart;
mod restart_control;
mod run_loop;
mod sd_notify;
mod shutdown;
mod signing;
mod startup;
mod stores_closed;
mod test_hooks;
mod upgrade;
mod watchers;
mod web;

use std::time::Duration;

use clap::Parser;
use mpc_lifecycle::ExitCode;

use crate::cli::{Cli, Command};
use crate::test_hooks::TestHooks;

/// Bound on stray runtime work after the shutdown sequence finished, when that work
/// still holds a store (see [`shut_down_runtime`]).
const RUNTIME_SHUTDOWN_TIMEOUT: Duration = Duration::from_millis(200);

/// Blocks the operator signals; the binary calls it from the ELF `.init_array`, right
/// after the dynamic loader, before `main`: a SIGTERM that arrives while the process is
/// still starting then waits for the listener instead of killing the process. [`main`]
/// takes the blocked set over and releases it once the listener is installed.
pub extern "C" fn defer_operator_signals_before_main() {
    // The blocked set is taken over again by `main`; nothing to keep here.
    let _blocked_until_main = mpc_lifecycle::defer_operator_signals();
}

/// The whole program: parses the command line, sets up logs, runs the command and ends
/// the process with the documented exit code.
pub fn main() -> ! {
    let deferred_signals = mpc_lifecycle::defer_operator_signals();
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let test_hooks = match TestHooks::from_environment() {
        Ok(hooks) => hooks,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::exit(err.exit_code().0);
        }
    };
    // Offline commands release the signals at once and keep the default disposition:
    // SIGTERM stops them at once, and each of their writes is one atomic batch.
    let code = match cli.command {
        Command::Start(args) => run_start(args, deferred_signals, test_hooks),
        Command::Check(args) => {
            deferred_signals.release();
            check::run(&args.home)
        }
        Command::Migrate(args) => {
            deferred_signals.release();
            upgrade::migrate(&args)
        }
        Command::Rollback(args) => {
            deferred_signals.release();
            upgrade::rollback(&args.home)
        }
        Command::SandboxChain(args) => chain_host::run(args, deferred_signals),
        Command::P2pKey(args) => {
            deferred_signals.release();
            print_p2p_key(&args.home)
        }
        Command::Localnet(args) => localnet::run(args, deferred_signals),
    };
    std::process::exit(code.0);
}

/// `mpc-node p2p-key`: prints the home's P2P public key, creating the key (and the home)
/// if needed.
fn print_p2p_key(home: &std::path::Path) -> ExitCode {
    if let Err(err) = std::fs::create_dir_all(home) {
        eprintln!("error: cannot create {}: {err}", home.display());
        return ExitCode::STORE;
    }
    match mpc_signer::load_or_create_p2p_key(home) {
        Ok(key) => {
            println!("{}", hex::encode(key.verifying_key().to_bytes()));
            ExitCode::GRACEFUL
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::STORE
        }
    }
}

fn run_start(
    args: cli::StartArgs,
    deferred_signals: mpc_lifecycle::DeferredSignals,
    test_hooks: TestHooks,
) -> ExitCode {
    let runtime =
        match tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("node").enable_all().build() {
            Ok(runtime) => runtime,
            Err(err) => {
                tracing::error!(error = %err, "cannot build the tokio runtime");
                return ExitCode::FATAL;
            }
        };
    let code = runtime.block_on(run_loop::run(args, deferred_signals, test_hooks));
    shut_down_runtime(runtime);
    if mpc_store::instance_count() == 0 {
        exit_without_exit_handlers(code);
    }
    code
}

/// Ends the process at once with `code`, skipping the C and C++ exit handlers.
///
/// Only called once every store is closed, i.e. every RocksDB instance has synced its
/// WAL and been destroyed, and the shutdown report is written: nothing is left to save.
/// What `exit` would still run are RocksDB's static destructors, which wake and join
/// its process-wide background and timer threads one by one; on a machine where waking
/// a sleeping thread takes milliseconds that was most of the time from the report to
/// the reaped process. Logs go straight to stderr, unbuffered;
/// stdout is flushed here.
fn exit_without_exit_handlers(code: ExitCode) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // SAFETY: `_exit` only ends the process; no Rust destructor is relied upon after
    // this point (the stores and the runtime are gone, the logs are written).
    unsafe { libc::_exit(code.0) }
}

/// Ends the runtime once `run` has returned; `main` exits the process right after.
///
/// When no store is open any more (every stop that got to its report), nothing the
/// runtime still runs holds state worth waiting for, so its threads are not joined:
/// joining them, each flushing its allocator caches as it ended, was half of the time
/// from the report to the reaped process. When a store is still open (a start-up that failed half-way), stray tasks get a bounded time to be
/// dropped, which closes it.
fn shut_down_runtime(runtime: tokio::runtime::Runtime) {
    if mpc_store::instance_count() == 0 {
        runtime.shutdown_background();
    } else {
        runtime.shutdown_timeout(RUNTIME_SHUTDOWN_TIMEOUT);
    }
}
