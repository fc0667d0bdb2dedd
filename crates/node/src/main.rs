//! `mpc-node`: entry point. Parses the command line, sets up logs, builds the runtime
//! and maps every outcome to the documented exit code.

mod check;
mod cli;
mod logging;
mod resources;
mod run_loop;
mod shutdown;
mod startup;
mod upgrade;

use std::time::Duration;

use clap::Parser;
use mpc_lifecycle::ExitCode;

use crate::cli::{Cli, Command};

/// Bound on stray runtime work after the shutdown sequence finished.
const RUNTIME_SHUTDOWN_TIMEOUT: Duration = Duration::from_millis(200);

fn main() {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let code = match cli.command {
        Command::Start(args) => run_start(args),
        Command::Check(args) => match check::check_home(&args.home) {
            Ok(summary) => {
                check::print_summary(&summary);
                if summary.problems.is_empty() { ExitCode::GRACEFUL } else { ExitCode::FATAL }
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

fn run_start(args: cli::StartArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("node").enable_all().build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "cannot build the tokio runtime");
            return ExitCode::FATAL;
        }
    };
    let code = runtime.block_on(run_loop::run(args));
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_TIMEOUT);
    code
}
