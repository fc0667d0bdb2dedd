//! Typed store errors: every failure the environment can cause has a variant, so the
//! node can tell the operator what is wrong and which exit code applies.

use std::path::PathBuf;

/// Result alias for store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process (usually a second node on the same home) holds the RocksDB lock.
    #[error("store {path} is locked by another process (is another mpc-node running on this home?)")]
    Locked { path: PathBuf },
    /// Files are damaged or are not a RocksDB store.
    #[error("store {path} is corrupt or unreadable: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    /// The store's write-ahead log is damaged before its end (a disk error, not a write
    /// cut short by a kill), and the store refuses to lose the writes after the damage.
    #[error(
        "store {path}: {damage}. Refusing to open it: replaying only up to the damage would silently drop \
         every later write. Nothing was changed; restore the store from a backup"
    )]
    DamagedLog { path: PathBuf, damage: crate::LogDamage },
    /// An existing store lacks a column family every version of ours has.
    #[error("store {path} has no column family `{column}`; it is not an mpc-node store or it is damaged")]
    MissingColumnFamily { path: PathBuf, column: &'static str },
    /// The disk is full; nothing past the last committed batch was written.
    #[error("no space left on device while writing store {path}: {detail}")]
    DiskFull { path: PathBuf, detail: String },
    /// Any other I/O failure reported by RocksDB or the file system.
    #[error("I/O error on store {path}: {detail}")]
    Io { path: PathBuf, detail: String },
    /// The store was written by a newer binary; opening it would risk corrupting it.
    #[error(
        "store {path} has schema version {found}, but this binary supports up to version {supported}; \
         upgrade mpc-node or restore a backup (nothing was changed)"
    )]
    SchemaTooNew { path: PathBuf, found: u32, supported: u32 },
    /// The store's schema is older than any migration this binary ships.
    #[error("store {path} has schema version {found}, older than the oldest supported version {oldest}")]
    SchemaTooOld { path: PathBuf, found: u32, oldest: u32 },
    /// A value could not be decoded; the record is damaged or of an unknown format.
    #[error("store {path}: cannot decode {what}: {detail}")]
    Decode { path: PathBuf, what: String, detail: String },
    /// The operation stopped at a safe point because shutdown was requested.
    #[error("stopped at a safe point because shutdown was requested")]
    Cancelled,
    /// A batch prepared by one store instance was handed to another (a bug in the caller;
    /// nothing was written).
    #[error("store {path}: refused a batch prepared for another store instance (nothing was written)")]
    ForeignBatch { path: PathBuf },
    /// A rollback was requested but no pre-migration checkpoint exists.
    #[error("no pre-migration checkpoint found next to {path}; nothing to roll back to")]
    NoCheckpoint { path: PathBuf },
}

impl StoreError {
    /// Classifies a RocksDB error for the store at `path`.
    pub(crate) fn from_rocksdb(path: &std::path::Path, err: rocksdb::Error) -> Self {
        let detail = err.clone().into_string();
        let path = path.to_path_buf();
        let lower = detail.to_ascii_lowercase();
        if lower.contains("no space left") {
            return StoreError::DiskFull { path, detail };
        }
        if lower.contains("lock") && (lower.contains("temporarily unavailable") || lower.contains("lock hold")) {
            return StoreError::Locked { path };
        }
        match err.kind() {
            rocksdb::ErrorKind::Corruption | rocksdb::ErrorKind::InvalidArgument => {
                StoreError::Corrupt { path, detail }
            }
            _ if lower.contains("corrupt") || lower.contains("does not exist") => StoreError::Corrupt { path, detail },
            _ => StoreError::Io { path, detail },
        }
    }

    /// Classifies a file-system error for the store at `path`.
    pub(crate) fn from_io(path: &std::path::Path, err: std::io::Error) -> Self {
        let detail = err.to_string();
        let path = path.to_path_buf();
        if err.raw_os_error() == Some(28) {
            StoreError::DiskFull { path, detail }
        } else {
            StoreError::Io { path, detail }
        }
    }
}
