//! The chain host of a sandbox network: one process produces the chain that every node
//! of the network follows, includes the transactions posted to it, and runs the MPC
//! contract those transactions drive (upstream: the NEAR network and the MPC contract).
//!
//! - [`network`]: the network file (participants, threshold).
//! - [`transaction`]: what a transaction says and how it is signed and checked.
//! - [`pool`]: transactions acknowledged and not yet in a block, durably.
//! - [`contract`]: the contract's rules (key votes, requests, responses).
//! - `produce`: a block of the workload's requests and the pooled transactions.
//! - [`requests`]: the contract's requests as `/v1/requests` serves them.
//! - [`sync`]: the blocks a follower fetches, in the chain store's compact encoding.
//!
//! The RPC that serves all this runs in the node binary's `sandbox-chain` command; a
//! follower's side of the sync is `crate::follower`.

pub mod contract;
pub mod network;
pub mod pool;
mod produce;
pub mod requests;
pub mod sync;
pub mod transaction;

pub use contract::{MpcContract, RequestRecord, ResponseRecord};
pub use network::{NetworkConfig, Participant, parse_public_key};
pub use pool::{TransactionPool, TransactionStatus, transaction_status};
pub(crate) use produce::{genesis, produce};
pub use sync::{BlocksAnswer, MAX_BLOCKS_PER_ANSWER, SyncError, SyncedBlock, blocks_after};
pub use transaction::{Action, SignedTransaction, TransactionError, TxId};
