//! Why the node cannot start, restart or go on, with the exit code each failure maps to.
//!
//! Why a type: the exit code is part of the operator contract (README, "Exit codes"), and
//! it must survive every path a failure takes: start-up, an in-process restart, the
//! offline commands. A message string cannot carry it; this enum does.

use mpc_indexer::IndexerError;
use mpc_lifecycle::{ExitCode, ShutdownReason};
use mpc_store::StoreError;

use crate::home::HomeError;

/// A failure of the node itself (not of one supervised task).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The home cannot be claimed (locked by another process, or not creatable).
    #[error(transparent)]
    Home(#[from] HomeError),
    /// A store cannot be opened, migrated or written (locked, corrupt, too new).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file or directory of the home cannot be read, written, renamed or removed.
    #[error("{what}: {source}")]
    HomeFile {
        /// What was being done, with the path.
        what: String,
        /// The file-system error.
        source: std::io::Error,
    },
    /// The signing side's secrets (P2P key, secrets key, key share) cannot be loaded:
    /// unreadable, damaged, or sealed with another key (exit 3, nothing deleted).
    #[error("{0}")]
    Secrets(String),
    /// A setting or a file the operator provides is unusable (exit 2).
    #[error("{0}")]
    Config(String),
    /// The chain store cannot be opened, or the chain's settings are unusable.
    #[error("chain node: {0}")]
    Chain(#[from] mpc_chain::ChainError),
    /// The indexer thread or its chain node failed.
    #[error(transparent)]
    Indexer(#[from] IndexerError),
    /// A thread could not be spawned.
    #[error("cannot spawn the {what} thread: {source}")]
    Spawn {
        /// Which thread.
        what: &'static str,
        /// Why the OS refused.
        source: std::io::Error,
    },
    /// Something that had to stop did not, even after its tasks were aborted.
    #[error("{0}")]
    NotStopped(String),
    /// A shutdown began before this step could run; not a failure of its own.
    #[error("cancelled by the shutdown")]
    Cancelled,
}

impl NodeError {
    /// A [`NodeError::HomeFile`] for `what` (which names the path).
    pub fn home_file(what: impl Into<String>, source: std::io::Error) -> Self {
        NodeError::HomeFile { what: what.into(), source }
    }

    /// The documented exit code: 2 for configuration, 3 for stores and the home's files,
    /// 1 for everything that fails while running.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            NodeError::Home(err) => err.exit_code(),
            NodeError::Store(_) | NodeError::HomeFile { .. } | NodeError::Secrets(_) => ExitCode::STORE,
            NodeError::Config(_) => ExitCode::USAGE,
            NodeError::Chain(mpc_chain::ChainError::Store(_))
            | NodeError::Indexer(IndexerError::Chain(mpc_chain::ChainError::Store(_))) => ExitCode::STORE,
            NodeError::Chain(mpc_chain::ChainError::Config(_))
            | NodeError::Indexer(IndexerError::Chain(mpc_chain::ChainError::Config(_))) => ExitCode::USAGE,
            NodeError::Indexer(_) | NodeError::Spawn { .. } | NodeError::NotStopped(_) | NodeError::Cancelled => {
                ExitCode::FATAL
            }
        }
    }

    /// The shutdown reason of a start-up that failed with this error.
    pub fn into_startup_reason(self) -> ShutdownReason {
        ShutdownReason::StartupFailed { exit_code: self.exit_code().0, error: self.to_string() }
    }

    /// The shutdown reason of an in-process restart that failed with this error.
    pub fn into_restart_reason(self) -> ShutdownReason {
        ShutdownReason::RestartFailed { exit_code: self.exit_code().0, error: self.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_keeps_its_exit_code_on_the_start_and_the_restart_path() {
        let locked = || StoreError::Locked { path: "/home/data".into() };
        let chain_store = NodeError::Indexer(IndexerError::Chain(mpc_chain::ChainError::Store(
            mpc_chain::ChainStoreError::Store(locked()),
        )));
        assert_eq!(chain_store.exit_code(), ExitCode::STORE);
        assert_eq!(chain_store.into_restart_reason().exit_code(), ExitCode::STORE, "a restart keeps the code");
        let opened = NodeError::Chain(mpc_chain::ChainError::Store(mpc_chain::ChainStoreError::Store(locked())));
        assert_eq!(opened.into_restart_reason().exit_code(), ExitCode::STORE, "an open by the owner too");
        assert_eq!(NodeError::Chain(mpc_chain::ChainError::Config("5 shards".into())).exit_code(), ExitCode::USAGE);
        assert_eq!(NodeError::Store(locked()).into_startup_reason().exit_code(), ExitCode::STORE);
        let config = NodeError::Indexer(IndexerError::Chain(mpc_chain::ChainError::Config("4 shards".into())));
        assert_eq!(config.exit_code(), ExitCode::USAGE);
        assert_eq!(NodeError::Config("admin token file is empty".into()).exit_code(), ExitCode::USAGE);
        let io = std::io::Error::other("disk gone");
        assert_eq!(NodeError::home_file("cannot move data aside", io).exit_code(), ExitCode::STORE);
        assert_eq!(NodeError::NotStopped("indexer thread".into()).exit_code(), ExitCode::FATAL);
        assert_eq!(NodeError::Secrets("key share undecryptable".into()).exit_code(), ExitCode::STORE);
        let listen = NodeError::Indexer(IndexerError::Listen(mpc_indexer::ListenError::StreamEnded));
        assert_eq!(listen.into_startup_reason().exit_code(), ExitCode::FATAL);
    }
}
