//! The signing subsystem in the node: its secrets loaded before anything else opens
//! (a problem with them is exit 3 before any store is touched), the subsystem started
//! once start-up handed over the node store, the indexed height forwarded to it from
//! whichever indexer generation runs, and its state shown to the operations server.
//!
//! Only a node that follows a chain host (`--chain`) signs: the embedded single-node
//! chain has no network to sign with.
//!
//! Across an in-process restart of the indexer (SIGHUP, a data wipe, a failed monitor)
//! the signing side and its mesh are kept: they hold nothing of the indexer generation
//! (only the node store, which stays open), their sessions wait for the node's chain
//! up to a bound, and tearing the mesh down would make every peer see this node leave
//! and come back for a restart that concerns its indexer only.

use std::sync::Arc;

use mpc_chain::host_client::HostClient;
use mpc_lifecycle::{LifecycleSender, Supervisor};
use mpc_signer::{PresignSettings, Signer, SignerConfig, SignerHandle, SignerKeys, SignerTestHooks};
use mpc_store::Store;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cli::StartArgs;
use crate::error::NodeError;
use crate::generation::GenerationView;

/// What the signing side starts from, made before start-up.
pub struct SigningSetup {
    keys: SignerKeys,
    host: HostClient,
}

/// Loads the signing side's secrets (creating the P2P key and the secrets key at the
/// first start) on a blocking thread; `None` for a node without `--chain`.
pub async fn load_signing_setup(args: &StartArgs) -> Result<Option<SigningSetup>, NodeError> {
    let Some(chain) = &args.chain else { return Ok(None) };
    let host = HostClient::new(chain).map_err(NodeError::Config)?;
    let home = args.home.clone();
    let keys = tokio::task::spawn_blocking(move || SignerKeys::load_or_create(&home))
        .await
        .map_err(|err| NodeError::NotStopped(format!("loading the signing keys: {err}")))?
        .map_err(|err| NodeError::Secrets(err.to_string()))?;
    Ok(Some(SigningSetup { keys, host }))
}

/// What starting the signer needs from the run loop.
pub struct SignerParts<'a> {
    /// The node store start-up opened.
    pub node_store: &'a Arc<Store>,
    /// Each indexer generation is published here.
    pub generations: &'a watch::Sender<Option<GenerationView>>,
    /// Node-level tasks (the height forwarder runs among them).
    pub node_tasks: &'a Supervisor,
    /// The root token.
    pub root_token: &'a CancellationToken,
    /// Where failures go.
    pub lifecycle: &'a LifecycleSender,
    /// Test hooks.
    pub hooks: SignerTestHooks,
}

/// Starts the signing subsystem under a child of the root token.
pub fn start_signer(setup: SigningSetup, args: &StartArgs, parts: SignerParts<'_>) -> Signer {
    let (heights, indexed) = watch::channel(0);
    let generations = parts.generations.subscribe();
    parts
        .node_tasks
        .spawn("forward_indexed_height", move |cancel| forward_indexed_height(generations, heights, cancel));
    Signer::start(SignerConfig {
        home: args.home.clone(),
        keys: setup.keys,
        node_store: parts.node_store,
        host: setup.host,
        p2p_listen: args.p2p_listen,
        indexed,
        lifecycle: parts.lifecycle.clone(),
        token: parts.root_token.child_token(),
        presign: PresignSettings { pool_per_set: args.presignature_pool, rate_per_second: args.presignature_rate },
        hooks: parts.hooks,
    })
}

/// Forwards the indexed height of whichever generation runs into one `watch`, so the
/// signing side never holds a generation.
async fn forward_indexed_height(
    mut generations: watch::Receiver<Option<GenerationView>>,
    heights: watch::Sender<u64>,
    cancel: CancellationToken,
) -> Result<(), std::convert::Infallible> {
    loop {
        let current = generations.borrow_and_update().as_ref().map(|view| view.indexed_height.clone());
        match current {
            Some(mut indexed) => loop {
                if let Some(height) = *indexed.borrow_and_update() {
                    heights.send_if_modified(|known| std::mem::replace(known, height) != height);
                }
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    changed = generations.changed() => if changed.is_err() { return Ok(()) } else { break },
                    changed = indexed.changed() => if changed.is_err() {
                        // This generation ended; wait for the next.
                        tokio::select! {
                            _ = cancel.cancelled() => return Ok(()),
                            changed = generations.changed() => if changed.is_err() { return Ok(()) } else { break },
                        }
                    },
                }
            },
            None => tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                changed = generations.changed() => if changed.is_err() { return Ok(()) },
            },
        }
    }
}

/// The signing side as the operations server sees it.
#[derive(Clone)]
pub struct SigningView {
    /// Whether this node signs at all (`--chain`).
    pub enabled: bool,
    /// The running signer, once started.
    pub handle: watch::Receiver<Option<SignerHandle>>,
}

impl SigningView {
    /// Why the signing side holds readiness back, if it does; with `exclude_peers`,
    /// leaving the peers out (see `SignerStatus::not_ready_excluding_peers_because`).
    pub fn not_ready_because(&self, exclude_peers: bool) -> Option<String> {
        if !self.enabled {
            return None;
        }
        match &*self.handle.borrow() {
            None => Some("the signing side has not started".into()),
            Some(handle) if exclude_peers => handle.status().not_ready_excluding_peers_because(),
            Some(handle) => handle.status().not_ready_because(),
        }
    }
}
