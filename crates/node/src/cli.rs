//! Command line: every operator-facing flag, with its default and why.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// What `--version` prints: the version, and whether this build has the test hooks,
/// which the process tests require and the image tests refuse.
const VERSION: &str = if cfg!(feature = "test-hooks") {
    concat!(env!("CARGO_PKG_VERSION"), " (test hooks: not for production)")
} else {
    env!("CARGO_PKG_VERSION")
};

/// mpc-node: an MPC node with an embedded chain indexer that starts, stops, restarts
/// and upgrades cleanly.
#[derive(Debug, Parser)]
#[command(name = "mpc-node", version = VERSION, about, args_override_self = true)]
pub struct Cli {
    /// Log output format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node until stopped (creates the home with defaults on first start).
    Start(StartArgs),
    /// Verify the stores of a stopped node; exit 0 iff consistent.
    Check(HomeArgs),
    /// Apply (or with --dry-run list) pending schema migrations of a stopped node.
    Migrate(MigrateArgs),
    /// Restore the pre-migration checkpoint kept by `migrate --keep-checkpoint`.
    Rollback(HomeArgs),
    /// Run the chain host of a sandbox network: produce the chain every node of the
    /// network follows (`start --chain`), include the transactions posted to it, and
    /// serve its RPC.
    SandboxChain(SandboxChainArgs),
    /// Print this node's P2P public key (for the network file), creating the key in the
    /// home if it has none.
    P2pKey(HomeArgs),
    /// Run a local signing network: a chain host and `--nodes` nodes as child processes,
    /// printing every signature accepted on chain, until Ctrl-C.
    Localnet(LocalnetArgs),
}

/// A node home.
#[derive(Debug, Args)]
pub struct HomeArgs {
    /// Node home directory.
    #[arg(long)]
    pub home: PathBuf,
}

/// `migrate` options.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Node home directory.
    #[arg(long)]
    pub home: PathBuf,
    /// List the pending steps without changing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep the pre-migration checkpoint for `mpc-node rollback`.
    #[arg(long)]
    pub keep_checkpoint: bool,
    #[command(flatten)]
    pub migration: MigrationTuning,
}

/// How migrations run; shared by `start` (which migrates an old store) and `migrate`.
#[derive(Debug, Args)]
pub struct MigrationTuning {
    /// Entries per batch of a resumable migration step. Each batch is one atomic write
    /// and a stop waits for at most one, so smaller batches make a stop during a long
    /// migration answer sooner on slow disks.
    #[arg(
        long = "migration-chunk-size",
        env = "MPC_MIGRATION_CHUNK_SIZE",
        default_value_t = mpc_migrations::DEFAULT_MIGRATION_CHUNK_SIZE,
        value_parser = clap::value_parser!(u64).range(1..),
    )]
    pub chunk_size: u64,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|err| format!("{err} (examples: 8s, 500ms, 1m)"))
}

/// `start` options.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Node home directory (created on first start).
    #[arg(long)]
    pub home: PathBuf,
    /// Budget for the whole shutdown sequence. The default fits Docker's 10 s grace
    /// period with margin; set it below your orchestrator's grace period.
    #[arg(long, default_value = "8s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Address of the operations HTTP server (health, readiness, metrics, admin). Admin
    /// endpoints always require the bearer token in `<home>/admin-token`.
    #[arg(long, default_value = "127.0.0.1:3030")]
    pub web_addr: std::net::SocketAddr,
    /// This node's image hash; the node stops (exit 1) when the contract revokes it.
    #[arg(long, default_value = mpc_chain::DEFAULT_IMAGE_HASH)]
    pub image_hash: String,
    /// fsync the WAL on every commit (safe against power loss; slower).
    #[arg(long)]
    pub sync_writes: bool,
    /// Keep the pre-migration checkpoint when start migrates an old store.
    #[arg(long)]
    pub keep_migration_checkpoint: bool,
    #[command(flatten)]
    pub migration: MigrationTuning,
    /// The sandbox chain's workload (ignored with `--chain`: the host's is followed).
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    /// Follow the chain host at this URL (`http://HOST:PORT`, see `mpc-node
    /// sandbox-chain`) instead of running the embedded single-node chain: the node's
    /// chain store syncs every block from the host.
    #[arg(long, value_name = "URL")]
    pub chain: Option<String>,
    /// Where this node's mesh listens for its peers (default: the P2P address the network
    /// file lists for it). For a container that listens on 0.0.0.0 while its peers reach
    /// it by name.
    #[arg(long, value_name = "ADDR")]
    pub p2p_listen: Option<std::net::SocketAddr>,
    /// Ready presignatures kept per signing set (0: sign every request online, in two
    /// rounds). Each is a few hundred bytes in the asset store.
    #[arg(long, default_value_t = 64)]
    pub presignature_pool: usize,
    /// Presignature generations started per second at most (they also wait while a
    /// request waits for this node to lead it).
    #[arg(long, default_value_t = 200)]
    pub presignature_rate: u32,
    /// Sandbox chain: revoke this node's image hash at this height.
    #[arg(long)]
    pub sandbox_revoke_image_hash_at: Option<u64>,
    /// Poll interval of the contract monitors.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub monitor_interval: Duration,
    /// Interval of the indexer stats log line.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub stats_interval: Duration,
}

/// The sandbox chain's workload: how it produces blocks (the embedded chain and the
/// chain host alike).
#[derive(Debug, Clone, Args)]
pub struct SandboxArgs {
    /// Sandbox chain: pause between blocks (0 = as fast as possible).
    #[arg(long = "sandbox-block-interval", default_value = "200ms", value_parser = parse_duration)]
    pub block_interval: Duration,
    /// Sandbox chain: blocks produced at first start (the catch-up phase).
    #[arg(long = "sandbox-history-blocks", default_value_t = 50)]
    pub history_blocks: u64,
    /// Sandbox chain: seed of all hashes and payloads.
    #[arg(long = "sandbox-seed", default_value_t = 7)]
    pub seed: u64,
    /// Sandbox chain: shards per block (1 to 4).
    #[arg(long = "sandbox-shards", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=4))]
    pub shards: u64,
    /// Sandbox chain: sign requests per block (on a chain host, while its contract runs).
    #[arg(long = "sandbox-requests-per-block", default_value_t = 4)]
    pub requests_per_block: u32,
}

impl SandboxArgs {
    /// The chain these settings describe, in `mode`, with an optional revocation of an
    /// image hash.
    pub fn chain_config(
        &self,
        mode: mpc_chain::ChainMode,
        revocation: Option<mpc_chain::ImageHashRevocation>,
    ) -> mpc_chain::ChainConfig {
        mpc_chain::ChainConfig {
            seed: self.seed,
            block_interval: self.block_interval,
            num_shards: self.shards,
            sign_requests_per_block: self.requests_per_block,
            history_blocks: self.history_blocks,
            contract_id: mpc_chain::default_contract_id(),
            revocation,
            mode,
        }
    }
}

/// `sandbox-chain` options.
#[derive(Debug, Args)]
pub struct SandboxChainArgs {
    /// The host's home directory (created on first start): its chain store and lock.
    #[arg(long)]
    pub home: PathBuf,
    /// Address of the host's RPC (block sync, transactions, contract and request views).
    /// Loopback by default: the RPC has no authentication.
    #[arg(long, default_value = "127.0.0.1:3040")]
    pub listen: std::net::SocketAddr,
    /// The network file: participants (account, P2P address, P2P public key) and
    /// threshold.
    #[arg(long)]
    pub network: PathBuf,
    /// Budget for the whole shutdown sequence.
    #[arg(long, default_value = "8s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// The chain's workload.
    #[command(flatten)]
    pub sandbox: SandboxArgs,
}

/// `localnet` options.
#[derive(Debug, Args)]
pub struct LocalnetArgs {
    /// Where the network lives: `node-<i>/` homes, `chain-host/`, `network.json`, logs.
    /// Created on first use and reused after.
    #[arg(long)]
    pub dir: PathBuf,
    /// Participants.
    #[arg(long, default_value_t = 3, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub nodes: usize,
    /// Signers needed for a signature.
    #[arg(long, default_value_t = 2)]
    pub threshold: u32,
    /// Address of the chain host's RPC; its port P also places the nodes' ports (node i:
    /// operations server P + 10 + i, mesh P + 20 + i, on 127.0.0.1).
    #[arg(long, default_value = "127.0.0.1:3040")]
    pub chain_listen: std::net::SocketAddr,
    /// Each child's shutdown budget (`--shutdown-timeout` of each process).
    #[arg(long, default_value = "8s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// The chain's workload.
    #[command(flatten)]
    pub sandbox: SandboxArgs,
}
