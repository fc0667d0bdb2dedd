//! RocksDB stores for mpc-node.
//!
//! Why a wrapper and not raw `rocksdb`: shutdown must be able to prove that nothing
//! still holds a store. Every open [`Store`] is counted by a process-wide
//! [`tracker`], and long-lived users take a named [`StoreHolder`] so that a stuck
//! shutdown can say *who* keeps which store open. Errors are typed ([`StoreError`])
//! so the binary can map a locked, corrupt or newer-schema store to a clear message
//! and exit code instead of a panic.

pub mod checkpoint;
mod columns;
pub mod crash_points;
mod db;
pub mod directories;
mod error;
mod holder;
mod log_damage;
pub mod migration;
mod options;
mod owned;
pub mod tracker;
mod update;
mod wal_policy;

pub use columns::Column;
pub use db::{DamagedLog, Entry, PreparedUpdate, Store, StoreOptions};
pub use error::{StoreError, StoreResult};
pub use holder::StoreHolder;
pub use log_damage::LogDamage;
pub use owned::{OwnedStore, Reuse};
pub use tracker::{
    OpenInstance, block_until_all_instances_are_dropped, instance_count, open_instances,
    wait_until_all_instances_are_dropped, wait_until_group_instances_are_dropped,
};
pub use update::StoreUpdate;
