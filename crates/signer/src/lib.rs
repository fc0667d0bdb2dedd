//! The signing side of an MPC node: this node's keys, the network's key (generated with
//! the peers, FROST distributed key generation), and FROST Ed25519 signatures of the
//! chain's sign requests, made by `threshold` participants over the mesh.
//!
//! It knows FROST and the node store's records, not sockets (the mesh's) and not the
//! node's run loop (which owns a [`Signer`] and stops it first at a shutdown). The
//! modules, bottom up:
//!
//! - [`secrets`], [`identity`], [`key_share`]: the secrets at rest and their files.
//! - [`assets`]: the asset store (presignatures, held nonces, the id allocator).
//! - [`messages`]: what participants say to each other.
//! - [`chain_view`]: what this node's chain shows (contract, requests, responses).
//! - [`dkg`], [`keys`]: key generation, and getting the share the contract runs under.
//! - [`signing`]: sessions as leader and member, and the pending requests.
//! - [`presign`]: presignatures, made ahead and used once.
//! - [`protocols`], [`router`], [`stats`]: the protocols in flight, the dispatch of
//!   messages, the counters.
//! - [`service`]: the subsystem's start and stop.
//! - [`hooks`]: test hooks and crash points (feature `test-hooks`).

pub mod assets;
pub mod chain_view;
pub mod dkg;
pub mod hooks;
pub mod identity;
pub mod key_share;
pub mod keys;
pub mod messages;
pub mod presign;
pub mod protocols;
pub mod router;
pub mod secrets;
pub mod service;
pub mod signing;
pub mod stats;

pub use hooks::{KEY_GENERATION_CRASH_POINTS, PRESIGNATURE_CRASH_POINTS, SignerTestHooks};
pub use identity::{load_or_create_p2p_key, load_p2p_key};
pub use presign::PresignSettings;
pub use service::{
    Signer, SignerConfig, SignerHandle, SignerKeys, SignerKeysError, SignerStage, SignerStatus, SignerStop,
};
pub use stats::StatsSnapshot;
