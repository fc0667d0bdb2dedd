//! Process exit codes: the operator contract, in one place.

/// Exit status of `mpc-node`. Orchestrators and scripts branch on these, so they never
/// change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ExitCode(pub i32);

impl ExitCode {
    /// Graceful stop after an operator signal or admin request.
    pub const GRACEFUL: ExitCode = ExitCode(0);
    /// Fatal runtime error: indexer failure, a supervised task failed or panicked, own
    /// image hash revoked.
    pub const FATAL: ExitCode = ExitCode(1);
    /// Usage or configuration error.
    pub const USAGE: ExitCode = ExitCode(2);
    /// Store error at start: locked, corrupt, schema newer than the binary.
    pub const STORE: ExitCode = ExitCode(3);
    /// The shutdown deadline passed and the stop was forced.
    pub const DEADLINE_EXCEEDED: ExitCode = ExitCode(4);

    /// A second signal forced the exit: 128 + the signal number, like a shell reports.
    pub fn forced_by_signal(signal_number: i32) -> ExitCode {
        ExitCode(128 + signal_number)
    }
}
