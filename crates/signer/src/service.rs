//! The signing subsystem as the node runs it: started once the node store is open,
//! kept across in-process restarts of the indexer, stopped first in the shutdown
//! sequence.
//!
//! ```text
//! signer token (child of the root token)
//! ├── task "signer": waits for the contract, starts the mesh, gets the key share
//! │                  (key generation while the contract initializes), then leads
//! │                  sessions for the pending requests (coordinator)
//! ├── task "signer_router": peers' messages → key generation / member / led sessions
//! ├── task "signer_peers": the connected peers, for readiness
//! ├── task "presignature_pools": keeps each signing set's pool filled
//! ├── task "presignature_inventories": tells members which presignatures it still has
//! ├── mesh (child token): accept, dial, one task per connection
//! └── protocols (own tokens: intake, abandon): each session as leader or member
//! ```
//!
//! [`Signer::stop`]: stop the intake, let the protocols in flight finish within a
//! bound and abandon the rest (named in the result), tell the peers (goodbye), cancel
//! and join every task, close the asset store. The node store the signer reads is held
//! by named holders, so the shutdown's wait for every RocksDB instance covers it, and
//! the asset store's close too.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::{SigningKey, VerifyingKey};
use mpc_chain::host_client::HostClient;
use mpc_lifecycle::{LifecycleSender, ShutdownReason, Supervisor, TaskInfo, millis};
use mpc_mesh::{Mesh, MeshConfig, PeerInfo};
use mpc_store::Store;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::assets::{AssetStore, AssetStoreError, asset_store_path};
use crate::chain_view::{ChainView, ContractView};
use crate::hooks::SignerTestHooks;
use crate::identity::{IdentityError, load_or_create_p2p_key};
use crate::key_share::{KeyShare, KeyShareError, key_share_path, load_key_shares};
use crate::keys::{KeysOutcome, KeysSetup, obtain_key_share};
use crate::presign::driver::{fill_pools, send_inventories};
use crate::presign::{PresignSettings, Presignatures};
use crate::protocols::Protocols;
use crate::router::{Routes, route};
use crate::secrets::{SecretsKey, SecretsKeyError};
use crate::signing::SigningContext;
use crate::signing::coordinator::coordinate;
use crate::stats::{SignerStats, StatsSnapshot};

/// How often the contract's state is looked for before it is first known.
const CONTRACT_POLL: Duration = Duration::from_millis(100);
/// Longest the protocols in flight are let finish at a stop.
pub const PROTOCOL_DRAIN: Duration = Duration::from_secs(2);
/// Longest the mesh's goodbyes and connection tasks may take at a stop.
const MESH_STOP: Duration = Duration::from_millis(500);
/// Messages queued for the key generation.
const KEY_GENERATION_INBOX: usize = 256;

/// The secrets the signing side starts with, loaded before anything else opens: a
/// problem with them ends the start with exit 3, before the stores are touched.
pub struct SignerKeys {
    p2p_key: SigningKey,
    secrets: Arc<SecretsKey>,
    shares: Vec<KeyShare>,
    presign: Arc<Presignatures>,
}

/// Why the signing side's secrets cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SignerKeysError {
    /// The P2P key.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The secrets key.
    #[error(transparent)]
    SecretsKey(#[from] SecretsKeyError),
    /// The key share.
    #[error(transparent)]
    KeyShare(#[from] KeyShareError),
    /// The asset store.
    #[error(transparent)]
    Assets(#[from] AssetStoreError),
}

impl SignerKeys {
    /// Loads the P2P key, the secrets key and the key shares of `home`, creating the
    /// first two if they do not exist yet (and no sealed secret needs them), and opens
    /// the asset store (created at the first start), checking the secrets key against
    /// it. Blocking: store opens and synced writes.
    pub fn load_or_create(home: &Path) -> Result<SignerKeys, SignerKeysError> {
        let p2p_key = load_or_create_p2p_key(home)?;
        let secrets = Arc::new(SecretsKey::load_or_create(home, &[key_share_path(home), asset_store_path(home)])?);
        let shares = load_key_shares(home, &secrets)?;
        let presign = Arc::new(Presignatures::load(AssetStore::open(home, secrets.clone())?)?);
        tracing::info!(
            p2p_public_key = %hex::encode(p2p_key.verifying_key().to_bytes()),
            secrets_key = secrets.source_name(),
            key_shares = shares.len(),
            "signing keys loaded"
        );
        Ok(SignerKeys { p2p_key, secrets, shares, presign })
    }
}

/// Where the signing side is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignerStage {
    /// The contract's state is not on this node's chain yet.
    #[default]
    WaitingForContract,
    /// This node's P2P key is not listed: it follows the chain and signs nothing.
    NotAParticipant,
    /// Getting the key share (generating it with the peers while the contract
    /// initializes).
    GettingKey,
    /// Signing.
    Signing,
    /// Stopped.
    Stopped,
}

/// The signing side's state, for `/readyz`, `/metrics` and `/debug/lifecycle`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SignerStatus {
    /// Where it is.
    pub stage: SignerStage,
    /// This node's account, once found in the contract.
    pub account: Option<String>,
    /// The network's key, once this node's share of it is loaded.
    pub public_key: Option<String>,
    /// Signers needed for a signature.
    pub threshold: u16,
    /// Peers in the contract.
    pub peers: usize,
    /// Peers connected now.
    pub peers_connected: usize,
}

impl SignerStatus {
    /// Ready to sign: the key is loaded and `threshold - 1` peers are connected. A node
    /// that is not a participant has nothing to be ready for and does not hold the
    /// node's readiness back.
    pub fn ready(&self) -> bool {
        match self.stage {
            SignerStage::NotAParticipant => true,
            SignerStage::Signing => self.peers_connected + 1 >= usize::from(self.threshold),
            _ => false,
        }
    }

    /// Why it is not ready leaving its peers out (`/readyz?exclude=peers`): the key
    /// share is loaded, or being generated with the peers. For orchestrators that make a
    /// node findable by name only once its health check passes (Docker Swarm): if that
    /// check needed peers, nodes that must find each other first would never pass it.
    pub fn not_ready_excluding_peers_because(&self) -> Option<String> {
        match self.stage {
            SignerStage::NotAParticipant | SignerStage::Signing | SignerStage::GettingKey => None,
            SignerStage::WaitingForContract | SignerStage::Stopped => self.not_ready_because(),
        }
    }

    /// Why it is not ready, for `/readyz`.
    pub fn not_ready_because(&self) -> Option<String> {
        if self.ready() {
            return None;
        }
        Some(match self.stage {
            SignerStage::Signing => format!(
                "{} of the {} peers needed for a signature are connected",
                self.peers_connected,
                usize::from(self.threshold).saturating_sub(1)
            ),
            SignerStage::WaitingForContract => "the contract's state is not on this node's chain yet".into(),
            SignerStage::GettingKey => "the key share is not loaded yet (key generation)".into(),
            SignerStage::Stopped => "the signing side stopped".into(),
            SignerStage::NotAParticipant => unreachable!("ready"),
        })
    }
}

/// What the signing side is started with.
pub struct SignerConfig<'a> {
    /// The node's home.
    pub home: PathBuf,
    /// The secrets from [`SignerKeys::load_or_create`].
    pub keys: SignerKeys,
    /// The node store (this node's chain as its indexer recorded it).
    pub node_store: &'a Arc<Store>,
    /// The chain host, where votes and responses go.
    pub host: HostClient,
    /// Where the mesh listens, if not the address the contract lists for this node.
    pub p2p_listen: Option<SocketAddr>,
    /// Height of the last block this node indexed.
    pub indexed: watch::Receiver<u64>,
    /// Where failures and an unusable key share are reported.
    pub lifecycle: LifecycleSender,
    /// The subsystem's token, a child of the root token.
    pub token: CancellationToken,
    /// Presignature pool sizes and generation rate.
    pub presign: PresignSettings,
    /// Test hooks.
    pub hooks: SignerTestHooks,
}

/// A cheap view of the running signing side, for the operations server.
#[derive(Clone)]
pub struct SignerHandle {
    status: watch::Receiver<SignerStatus>,
    stats: Arc<SignerStats>,
    tasks: Supervisor,
}

impl SignerHandle {
    /// The state now.
    pub fn status(&self) -> SignerStatus {
        self.status.borrow().clone()
    }

    /// The counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// The subsystem's supervised tasks.
    pub fn tasks(&self) -> Vec<TaskInfo> {
        self.tasks.snapshot()
    }
}

/// How a stop went, for the shutdown report.
#[derive(Debug, Default)]
pub struct SignerStop {
    /// Protocols still running at the bound, abandoned.
    pub abandoned: Vec<String>,
    /// Tasks that ignored cancellation and were aborted.
    pub aborted: Vec<String>,
}

impl mpc_lifecycle::PhaseOutcome for SignerStop {
    fn unfinished(&self) -> Option<String> {
        (!self.aborted.is_empty()).then(|| format!("aborted: {}", self.aborted.join(", ")))
    }
}

/// The running signing subsystem; its one owner stops it with [`Signer::stop`].
pub struct Signer {
    tasks: Supervisor,
    protocols: Arc<Protocols>,
    mesh: Arc<Mutex<Option<Mesh>>>,
    handle: SignerHandle,
    status: watch::Sender<SignerStatus>,
    /// Closed (on a blocking thread) once every task is joined, inside the stop.
    presign: Option<Arc<Presignatures>>,
}

impl Signer {
    /// Starts the subsystem; returns at once (it waits for the contract on its own).
    pub fn start(config: SignerConfig<'_>) -> Signer {
        let tasks = Supervisor::new("signer", config.token.clone(), config.lifecycle.clone());
        let protocols = Arc::new(Protocols::default());
        let (status, status_receiver) = watch::channel(SignerStatus::default());
        let stats = Arc::new(SignerStats::default());
        let mesh = Arc::new(Mutex::new(None));
        let presign = config.keys.presign.clone();
        let main = SignerMain {
            home: config.home,
            keys: config.keys,
            chain: ChainView::new(config.node_store, "signer"),
            host: config.host,
            p2p_listen: config.p2p_listen,
            indexed: config.indexed,
            lifecycle: config.lifecycle,
            hooks: config.hooks,
            tasks: tasks.clone(),
            protocols: protocols.clone(),
            stats: stats.clone(),
            status: status.clone(),
            mesh: mesh.clone(),
            mesh_token: config.token.child_token(),
            presign_settings: config.presign,
        };
        tasks.spawn("signer", move |cancel| main.run(cancel));
        let handle = SignerHandle { status: status_receiver, stats, tasks: tasks.clone() };
        Signer { tasks, protocols, mesh, handle, status, presign: Some(presign) }
    }

    /// A view for the operations server.
    pub fn handle(&self) -> SignerHandle {
        self.handle.clone()
    }

    /// Stops the subsystem within about `bound`: no new work, the protocols in flight
    /// finish or are abandoned, the peers are told, every task is joined.
    pub async fn stop(mut self, bound: Duration) -> SignerStop {
        let started = Instant::now();
        let in_flight = self.protocols.in_flight().len();
        tracing::info!(protocols_in_flight = in_flight, "signing side stopping: no new protocols");
        let abandoned = self.protocols.stop(PROTOCOL_DRAIN.min(bound / 2)).await.protocols;
        let protocols_done = started.elapsed();
        let mesh = self.mesh.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(mesh) = mesh {
            mesh.shutdown(MESH_STOP).await;
        }
        let mesh_done = started.elapsed();
        self.tasks.cancel();
        let remaining = bound.saturating_sub(started.elapsed()).max(MESH_STOP);
        let aborted = if self.tasks.wait(remaining).await { Vec::new() } else { self.tasks.abort_running() };
        let tasks_done = started.elapsed();
        self.status.send_modify(|status| status.stage = SignerStage::Stopped);
        // The last reference to the asset store once the tasks are gone: its close
        // (a WAL sync) runs here, and the shutdown's instance wait covers it either way.
        if let Some(presign) = self.presign.take() {
            let _ = tokio::task::spawn_blocking(move || drop(presign)).await;
        }
        tracing::info!(
            protocols_ms = millis(protocols_done),
            mesh_ms = millis(mesh_done - protocols_done),
            tasks_ms = millis(tasks_done - mesh_done),
            asset_store_ms = millis(started.elapsed() - tasks_done),
            abandoned = abandoned.len(),
            "signing side stopped"
        );
        SignerStop { abandoned, aborted }
    }
}

impl Drop for Signer {
    /// A signer dropped without [`Signer::stop`] (a start-up abandoned) still ends: its
    /// tasks are cancelled and its protocols abandoned.
    fn drop(&mut self) {
        self.tasks.cancel();
        self.protocols.abandon_token().cancel();
    }
}

/// The subsystem's main task and what it starts from.
struct SignerMain {
    home: PathBuf,
    keys: SignerKeys,
    chain: ChainView,
    host: HostClient,
    p2p_listen: Option<SocketAddr>,
    indexed: watch::Receiver<u64>,
    lifecycle: LifecycleSender,
    hooks: SignerTestHooks,
    tasks: Supervisor,
    protocols: Arc<Protocols>,
    stats: Arc<SignerStats>,
    status: watch::Sender<SignerStatus>,
    mesh: Arc<Mutex<Option<Mesh>>>,
    mesh_token: CancellationToken,
    presign_settings: PresignSettings,
}

impl SignerMain {
    async fn run(self, cancel: CancellationToken) -> Result<(), String> {
        let Some(contract) = self.wait_for_contract(&cancel).await? else { return Ok(()) };
        let own_key = self.keys.p2p_key.verifying_key().to_bytes();
        let Some(me) = contract.participant_with_key(&own_key).cloned() else {
            self.status.send_modify(|status| status.stage = SignerStage::NotAParticipant);
            tracing::warn!(
                p2p_public_key = %hex::encode(own_key),
                "this node's P2P key is not listed among the contract's participants: it follows the chain and signs nothing"
            );
            cancel.cancelled().await;
            return Ok(());
        };
        self.status.send_modify(|status| {
            status.stage = SignerStage::GettingKey;
            status.account = Some(me.account_id.clone());
            status.threshold = contract.threshold;
            status.peers = contract.participants.len() - 1;
        });
        let (mesh, inbound) = self.start_mesh(&contract, &me.account_id, &me.p2p_addr).await?;
        let (key_generation, key_generation_inbox) = mpsc::channel(KEY_GENERATION_INBOX);
        let (signing_sender, signing) = watch::channel(None);
        let routes = Routes {
            key_generation,
            signing,
            protocols: self.protocols.clone(),
            stats: self.stats.clone(),
            mesh: mesh.clone(),
        };
        self.tasks.spawn("signer_router", move |cancel| route(inbound, routes, cancel));
        let (peers, status) = (mesh.watch_connected(), self.status.clone());
        self.tasks.spawn("signer_peers", move |cancel| follow_peers(peers, status, cancel));

        let setup = KeysSetup {
            home: self.home.clone(),
            secrets: self.keys.secrets.clone(),
            p2p_key: self.keys.p2p_key.clone(),
            me: me.account_id.clone(),
            contract: contract.clone(),
            mesh: mesh.clone(),
            chain: self.chain.clone(),
            host: self.host.clone(),
            stats: self.stats.clone(),
        };
        let share = match obtain_key_share(setup, self.keys.shares.clone(), key_generation_inbox, cancel.clone()).await
        {
            KeysOutcome::Ready(share) => *share,
            KeysOutcome::Cancelled => return Ok(()),
            KeysOutcome::Failed(error) => return Err(error),
            KeysOutcome::Unusable(error) => {
                tracing::error!(%error, "this node's key share cannot be used; stopping");
                self.lifecycle.shutdown(ShutdownReason::KeyShareUnusable { error: error.to_string() });
                return Ok(());
            }
        };
        let public_key = VerifyingKey::from_bytes(&share.public_key())
            .map_err(|err| format!("the key share's public key is not an Ed25519 key: {err}"))?;
        let context = Arc::new(SigningContext {
            me: me.account_id.clone(),
            contract,
            public_key,
            share,
            mesh,
            chain: self.chain.clone(),
            host: self.host.clone(),
            p2p_key: self.keys.p2p_key.clone(),
            stats: self.stats.clone(),
            protocols: self.protocols.clone(),
            indexed: self.indexed.clone(),
            led: Mutex::new(Default::default()),
            members: Default::default(),
            presign: self.keys.presign.clone(),
            presign_settings: self.presign_settings,
            backlog: Default::default(),
            hooks: self.hooks.clone(),
        });
        signing_sender.send_replace(Some(context.clone()));
        self.status.send_modify(|status| {
            status.stage = SignerStage::Signing;
            status.public_key = Some(hex::encode(public_key.to_bytes()));
        });
        tracing::info!(account = %context.me, public_key = %hex::encode(public_key.to_bytes()), "signing");
        let pools = context.clone();
        self.tasks.spawn("presignature_pools", move |_| fill_pools(pools));
        let inventories = context.clone();
        self.tasks.spawn("presignature_inventories", move |_| send_inventories(inventories));
        tokio::select! {
            _ = cancel.cancelled() => Ok(()),
            coordinated = coordinate(context) => coordinated,
        }
    }

    /// The contract's state once this node's chain has it; `None` when cancelled first.
    async fn wait_for_contract(&self, cancel: &CancellationToken) -> Result<Option<ContractView>, String> {
        let mut poll = tokio::time::interval(CONTRACT_POLL);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(None),
                _ = poll.tick() => {}
            }
            if let Some(contract) =
                self.chain.contract().map_err(|err| format!("reading the contract's state: {err}"))?
            {
                return Ok(Some(contract));
            }
        }
    }

    /// Starts the mesh on `--p2p-listen`, or on the address the contract lists.
    async fn start_mesh(
        &self,
        contract: &ContractView,
        me: &str,
        listed: &str,
    ) -> Result<(Mesh, mpsc::Receiver<mpc_mesh::Inbound>), String> {
        let listen = match self.p2p_listen {
            Some(listen) => listen,
            None => tokio::net::lookup_host(listed)
                .await
                .ok()
                .and_then(|mut addrs| addrs.next())
                .ok_or_else(|| format!("cannot resolve this node's listed P2P address {listed:?}"))?,
        };
        let participants = contract
            .participants
            .iter()
            .map(|participant| {
                let mut public_key = [0u8; 32];
                hex::decode_to_slice(&participant.p2p_public_key, &mut public_key)
                    .map_err(|err| format!("{}: p2p_public_key: {err}", participant.account_id))?;
                Ok(PeerInfo {
                    account_id: participant.account_id.clone(),
                    addr: participant.p2p_addr.clone(),
                    public_key,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let config = MeshConfig { account_id: me.to_owned(), key: self.keys.p2p_key.clone(), listen, participants };
        let (mesh, inbound) = Mesh::start(config, self.mesh_token.clone()).await.map_err(|err| err.to_string())?;
        *self.mesh.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(mesh.clone());
        Ok((mesh, inbound))
    }
}

/// Keeps the status's count of connected peers current.
async fn follow_peers(
    mut peers: watch::Receiver<std::collections::BTreeSet<String>>,
    status: watch::Sender<SignerStatus>,
    cancel: CancellationToken,
) -> Result<(), String> {
    loop {
        let connected = peers.borrow_and_update().len();
        status.send_modify(|status| status.peers_connected = connected);
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            changed = peers.changed() => if changed.is_err() { return Ok(()) },
        }
    }
}
