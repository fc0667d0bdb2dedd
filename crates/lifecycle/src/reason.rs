//! Why the node stops.

/// The operator signals the node honours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum OperatorSignal {
    /// SIGTERM: what Docker, Kubernetes and systemd send first.
    Terminate,
    /// SIGINT: Ctrl-C in a terminal.
    Interrupt,
}

impl OperatorSignal {
    /// Conventional name ("SIGTERM").
    pub fn name(self) -> &'static str {
        match self {
            OperatorSignal::Terminate => "SIGTERM",
            OperatorSignal::Interrupt => "SIGINT",
        }
    }

    /// Signal number (15, 2).
    pub fn number(self) -> i32 {
        match self {
            OperatorSignal::Terminate => 15,
            OperatorSignal::Interrupt => 2,
        }
    }
}

/// Why a shutdown began. Sent into the shutdown channel by whoever detects it; the run
/// loop receives the first one, and it decides the exit code.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ShutdownReason {
    /// An operator signal.
    Signal { signal: OperatorSignal },
    /// The contract stopped allowing this node's image hash.
    ImageHashRevoked { image_hash: String },
    /// The indexer thread ended on its own (always an error while the node runs).
    IndexerExited { error: String },
    /// A supervised task returned an error or panicked.
    TaskFailed { task: String, error: String },
    /// An authenticated admin request.
    AdminRequest,
    /// Start-up failed before the node was running (store, config).
    StartupFailed { error: String, exit_code: i32 },
    /// This node's key share cannot be used (it is not of the contract's key, or it is
    /// missing while the contract runs): nothing is deleted, an operator must act.
    KeyShareUnusable { error: String },
    /// An in-process restart could not stop the old generation or start the new one;
    /// the exit code is that of the underlying error (3 for a store, 1 otherwise).
    RestartFailed { error: String, exit_code: i32 },
}

impl ShutdownReason {
    /// The exit code this reason ends the process with, when shutdown meets its deadline.
    pub fn exit_code(&self) -> crate::ExitCode {
        match self {
            ShutdownReason::Signal { .. } | ShutdownReason::AdminRequest => crate::ExitCode::GRACEFUL,
            ShutdownReason::StartupFailed { exit_code, .. } | ShutdownReason::RestartFailed { exit_code, .. } => {
                crate::ExitCode(*exit_code)
            }
            ShutdownReason::KeyShareUnusable { .. } => crate::ExitCode::STORE,
            ShutdownReason::ImageHashRevoked { .. }
            | ShutdownReason::IndexerExited { .. }
            | ShutdownReason::TaskFailed { .. } => crate::ExitCode::FATAL,
        }
    }
}

impl std::fmt::Display for ShutdownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShutdownReason::Signal { signal } => write!(f, "operator signal {}", signal.name()),
            ShutdownReason::ImageHashRevoked { image_hash } => write!(f, "own image hash {image_hash} revoked"),
            ShutdownReason::IndexerExited { error } => write!(f, "indexer exited: {error}"),
            ShutdownReason::TaskFailed { task, error } => write!(f, "task {task} failed: {error}"),
            ShutdownReason::AdminRequest => write!(f, "admin request"),
            ShutdownReason::StartupFailed { error, .. } => write!(f, "start-up failed: {error}"),
            ShutdownReason::RestartFailed { error, .. } => write!(f, "restart failed: {error}"),
            ShutdownReason::KeyShareUnusable { error } => write!(f, "key share unusable: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExitCode;

    #[test]
    fn each_reason_maps_to_its_documented_exit_code() {
        let signal = ShutdownReason::Signal { signal: OperatorSignal::Terminate };
        assert_eq!(signal.exit_code(), ExitCode::GRACEFUL);
        assert_eq!(ShutdownReason::AdminRequest.exit_code(), ExitCode::GRACEFUL);
        for fatal in [
            ShutdownReason::ImageHashRevoked { image_hash: "h".into() },
            ShutdownReason::IndexerExited { error: "e".into() },
            ShutdownReason::TaskFailed { task: "t".into(), error: "e".into() },
        ] {
            assert_eq!(fatal.exit_code(), ExitCode::FATAL, "{fatal}");
        }
        let startup = ShutdownReason::StartupFailed { error: "locked".into(), exit_code: 3 };
        assert_eq!(startup.exit_code(), ExitCode::STORE);
        let restart = ShutdownReason::RestartFailed { error: "chain store locked".into(), exit_code: 3 };
        assert_eq!(restart.exit_code(), ExitCode::STORE, "a restart keeps the exit code of its error");
        let key_share = ShutdownReason::KeyShareUnusable { error: "not the contract's key".into() };
        assert_eq!(key_share.exit_code(), ExitCode::STORE, "like a store an operator must repair");
    }

    #[test]
    fn a_forced_exit_reports_128_plus_the_signal_like_a_shell() {
        assert_eq!(ExitCode::forced_by_signal(OperatorSignal::Terminate.number()), ExitCode(143));
        assert_eq!(ExitCode::forced_by_signal(OperatorSignal::Interrupt.number()), ExitCode(130));
    }
}
