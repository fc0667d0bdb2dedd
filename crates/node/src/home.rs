//! The node's home directory: every path in it, and the lock that claims it.
//!
//! Why one module: the layout is part of the operator contract (README, "Home layout"),
//! and crash recovery depends on each name (a `.creating` or `.wiping` sibling is a
//! leftover, never a store). Spelling a path out in one place keeps them in step.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// A node home: `--home DIR`.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// The home at `root` (nothing is created).
    pub fn new(root: &Path) -> Self {
        Home { root: root.to_path_buf() }
    }

    /// The node's own store (cursor, sign requests and responses, schema version).
    pub fn node_store(&self) -> PathBuf {
        self.root.join("node")
    }

    /// The sandbox chain's hot store.
    pub fn chain_data(&self) -> PathBuf {
        self.root.join("data")
    }

    /// Where a data wipe moves the chain store before deleting it.
    pub fn chain_data_wiping(&self) -> PathBuf {
        self.root.join("data.wiping")
    }

    /// The operator's data-wipe token; a changed token wipes the chain data.
    pub fn data_wipe_token(&self) -> PathBuf {
        self.root.join("data-wipe-token")
    }

    /// The bearer token of the admin endpoints.
    pub fn admin_token(&self) -> PathBuf {
        self.root.join("admin-token")
    }

    /// The file whose lock claims the home for one process.
    fn lock_file(&self) -> PathBuf {
        self.root.join("mpc-node.lock")
    }

    /// Creates the home if needed and claims it for this process, before anything in it
    /// is opened or any port is bound: a second node on the same home is refused with
    /// a message that names the home, whatever else the two have in common.
    pub fn claim(&self) -> Result<HomeLock, HomeError> {
        std::fs::create_dir_all(&self.root).map_err(|source| HomeError::Io { path: self.root.clone(), source })?;
        let path = self.lock_file();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| HomeError::Io { path: path.clone(), source })?;
        match file.try_lock() {
            Ok(()) => Ok(HomeLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(HomeError::Locked { path: self.root.clone() }),
            Err(TryLockError::Error(source)) => Err(HomeError::Io { path, source }),
        }
    }
}

impl Home {
    /// Claims the home for reading only (`check`): a shared claim, which a running node's
    /// claim excludes (refused with the same message as a second node) and which keeps a
    /// node from starting meanwhile, while other readers may share it. Nothing in the
    /// home is created or written: a home where no node ever ran has no lock file, and
    /// then there is nothing to claim.
    pub fn claim_for_reading(&self) -> Result<Option<HomeLock>, HomeError> {
        let path = self.lock_file();
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(HomeError::Io { path, source }),
        };
        match file.try_lock_shared() {
            Ok(()) => Ok(Some(HomeLock { _file: file })),
            Err(TryLockError::WouldBlock) => Err(HomeError::Locked { path: self.root.clone() }),
            Err(TryLockError::Error(source)) => Err(HomeError::Io { path, source }),
        }
    }
}

/// The claim on a home; the kernel releases it when the process ends, however it ends.
#[must_use = "the home is claimed only while this lock is alive"]
#[derive(Debug)]
pub struct HomeLock {
    _file: File,
}

/// Why a home cannot be claimed.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// Another process holds the home's lock.
    #[error("home {path} is locked by another process (is another mpc-node running on this home?)")]
    Locked {
        /// The home.
        path: PathBuf,
    },
    /// The home or its lock file cannot be created or opened.
    #[error("cannot use home {path}: {source}")]
    Io {
        /// What could not be created or opened.
        path: PathBuf,
        /// The file-system error.
        source: std::io::Error,
    },
}

impl HomeError {
    /// The documented exit code: 3 for a home in use (like a locked store), 2 for a
    /// home that cannot be created (a configuration error).
    pub fn exit_code(&self) -> mpc_lifecycle::ExitCode {
        match self {
            HomeError::Locked { .. } => mpc_lifecycle::ExitCode::STORE,
            HomeError::Io { .. } => mpc_lifecycle::ExitCode::USAGE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_on_the_same_home_is_refused_until_the_first_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(&dir.path().join("home"));
        let first = home.claim().unwrap();
        let refused = home.claim().unwrap_err();
        assert!(matches!(refused, HomeError::Locked { .. }), "{refused:?}");
        assert_eq!(refused.exit_code(), mpc_lifecycle::ExitCode::STORE);
        assert!(refused.to_string().contains("is another mpc-node running on this home?"));
        drop(first);
        let _claimed_again = home.claim().unwrap();
    }

    #[test]
    fn a_reader_is_refused_while_a_node_claims_the_home_and_keeps_a_node_out_while_it_reads() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(&dir.path().join("home"));
        assert!(home.claim_for_reading().unwrap().is_none(), "no node ever ran: nothing to claim");
        assert!(!dir.path().join("home").exists(), "a reader creates nothing");
        let node = home.claim().unwrap();
        let refused = home.claim_for_reading().unwrap_err();
        assert!(matches!(refused, HomeError::Locked { .. }), "{refused:?}");
        drop(node);
        let reader = home.claim_for_reading().unwrap().expect("the lock file exists now");
        let second_reader = home.claim_for_reading().unwrap();
        assert!(second_reader.is_some(), "readers share the claim");
        assert!(matches!(home.claim(), Err(HomeError::Locked { .. })), "a node cannot start while a reader reads");
        drop((reader, second_reader));
        let _node = home.claim().unwrap();
    }

    #[test]
    fn a_home_that_cannot_be_created_is_a_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let err = Home::new(&file.join("home")).claim().unwrap_err();
        assert_eq!(err.exit_code(), mpc_lifecycle::ExitCode::USAGE, "{err}");
    }
}
