//! Sandbox chain settings.

use std::time::Duration;

use near_indexer_primitives::types::AccountId;

/// Revocation of one allowed image hash at a height: the scenario that makes the node's
/// image-hash watcher shut it down.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageHashRevocation {
    /// The hash to remove from the contract's allowed list.
    pub image_hash: String,
    /// First height at which it is no longer allowed.
    pub at_height: u64,
}

/// Where a node's chain comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainMode {
    /// The node's own chain: every block from the workload alone, the responses made
    /// up by it (`workload::RESPONSE_DELAY`). The single-node sandbox.
    Embedded,
    /// The chain host of a sandbox network: blocks from the workload and from the
    /// transactions posted to it, a contract that those transactions drive.
    Host(crate::host::NetworkConfig),
    /// A node of a sandbox network: every block synced from the host at this base URL
    /// (`http://127.0.0.1:3040`), none produced.
    Follower {
        /// The host's RPC.
        host: String,
    },
}

impl ChainMode {
    /// How the mode is recorded in the chain store: a store made in one mode is refused
    /// in another (an embedded chain is no copy of a host's).
    pub(crate) fn source(&self) -> &'static str {
        match self {
            ChainMode::Embedded => "embedded",
            ChainMode::Host(_) => "host",
            ChainMode::Follower { .. } => "follower",
        }
    }
}

/// How the sandbox chain produces blocks. Everything a block contains is a function of
/// `seed`, the height and the workload sizes (and, on a host, of the transactions
/// posted to it), never of timing.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ChainConfig {
    /// Seed of every hash and payload.
    pub seed: u64,
    /// Pause between blocks once history is produced; zero produces as fast as possible.
    pub block_interval: Duration,
    /// Shards per block, 1 to 4.
    pub num_shards: u64,
    /// `sign` calls to the MPC contract per block.
    pub sign_requests_per_block: u32,
    /// Blocks produced as fast as possible at first start: the catch-up the indexer
    /// has to work through while the chain reports that it is syncing.
    pub history_blocks: u64,
    /// Account of the MPC contract.
    pub contract_id: AccountId,
    /// Optional image-hash revocation scenario.
    pub revocation: Option<ImageHashRevocation>,
    /// Where the chain comes from.
    pub mode: ChainMode,
}

/// Image hash of the embedded build, allowed by the sandbox contract from genesis.
pub const DEFAULT_IMAGE_HASH: &str = "8b40f6a2b3fe1dbd5cb8d2d96a3b4cf9e7f0c2a1d6e5b4c3a29180f7e6d5c4b3";

/// A second allowed hash, so revoking one leaves a non-empty list.
pub const NEXT_IMAGE_HASH: &str = "1f2e3d4c5b6a79880f1e2d3c4b5a69788f9e0d1c2b3a49586f7e8d9c0b1a2938";

impl ChainConfig {
    /// Settings of the embedded default: a block every 200 ms, 2 shards, 4 requests per
    /// block, 50 history blocks.
    pub fn sandbox_default() -> Self {
        ChainConfig {
            seed: 7,
            block_interval: Duration::from_millis(200),
            num_shards: 2,
            sign_requests_per_block: 4,
            history_blocks: 50,
            contract_id: default_contract_id(),
            revocation: None,
            mode: ChainMode::Embedded,
        }
    }

    /// Rejects settings the chain cannot honour.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=4).contains(&self.num_shards) {
            return Err(format!("num_shards must be between 1 and 4, got {}", self.num_shards));
        }
        if self.sign_requests_per_block > 10_000 {
            return Err(format!("sign_requests_per_block must be at most 10000, got {}", self.sign_requests_per_block));
        }
        Ok(())
    }
}

/// The MPC contract account of the sandbox.
pub fn default_contract_id() -> AccountId {
    "v1.signer.sandbox".parse().expect("a valid constant account id")
}
