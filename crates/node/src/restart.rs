//! The in-process restart of the indexer subsystem: stop the current generation, wait
//! until its actors have let go of the chain store (or, for a wipe or after a failure,
//! until that store has closed), optionally wipe the chain data, start the next
//! generation, which takes the kept chain store or opens it again.
//!
//! The restart owns what it works on (the node store, the chain store's owner and the
//! old generation) and hands everything back in its [`RestartOutcome`], whether it
//! succeeded or not. A shutdown
//! that arrives meanwhile lets it finish (the drain is the same one the shutdown would
//! do, bounded by the shutdown's deadline) and takes over the outcome; the next
//! generation is not started once the shutdown has cancelled the root token.

use std::sync::Arc;
use std::time::Duration;

use mpc_indexer::INDEXER_STORE_GROUP;
use mpc_lifecycle::{LifecyclePhase, PhaseTimings, RestartReport, Sequence};
use mpc_store::{OwnedStore, Store};

use crate::data_wipe::wipe_chain_data;
use crate::error::NodeError;
use crate::generation::{GenerationContext, GenerationStop, IndexerGeneration, StopFor, chain_store_for_generation};
use crate::home::Home;
use crate::startup::RunningNode;
use crate::stores_closed::{release_owned_store, wait_for_owned_store_unheld, wait_for_stores_closed};

/// Why and how to restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartRequest {
    /// Logged reason.
    pub why: String,
    /// Wipe the chain data and record this token as applied.
    pub wipe_token: Option<String>,
    /// Pause between stopping and starting (backoff after failures).
    pub backoff: Duration,
    /// A failure asked for this restart (the streamer, a monitor, the indexer thread).
    pub after_failure: bool,
}

impl RestartRequest {
    /// A restart for `why` that wipes nothing, starts the next generation at once and
    /// is not counted as a failure; the restart controller adds a wipe token, a backoff
    /// or the failure mark where they apply.
    pub fn new(why: impl Into<String>) -> Self {
        RestartRequest { why: why.into(), wipe_token: None, backoff: Duration::ZERO, after_failure: false }
    }

    /// Whether the next generation needs a freshly opened chain store: a wipe deletes
    /// it, and after a failure the store may be what failed (a RocksDB background
    /// error makes an instance refuse writes until it is reopened). Otherwise the next
    /// generation takes the open store the old one used.
    pub fn reopens_chain_store(&self) -> bool {
        self.wipe_token.is_some() || self.after_failure
    }
}

/// What a restart hands back to its owner.
pub struct RestartOutcome {
    /// The node store, as it was handed in.
    pub node_store: Arc<Store>,
    /// The chain store's owner: with the store kept open, reopened, or (after a failed
    /// reopen) with none.
    pub chain_store: OwnedStore,
    /// The next generation, or why there is none.
    pub generation: Result<IndexerGeneration, NodeError>,
    /// How stopping the old generation went (aborted tasks, what did not stop).
    pub stop: GenerationStop,
    /// Phase timings, reported like a shutdown's.
    pub report: RestartReport,
}

/// Restarts the indexer subsystem of `running`; `bound` limits each waiting phase.
pub async fn restart(
    running: RunningNode,
    request: RestartRequest,
    context: GenerationContext,
    bound: Duration,
) -> RestartOutcome {
    let RunningNode { node_store, chain_store, generation } = running;
    let mut timings = PhaseTimings::start(Sequence::Restart);
    context.phase.set(LifecyclePhase::Restarting);
    tracing::warn!(why = %request.why, wipe = request.wipe_token.is_some(), "restarting indexer subsystem");
    let stop = generation.stop(bound, &mut timings, StopFor::Restart).await;
    let (chain_store, generation) =
        start_next_generation(&stop, &node_store, chain_store, &request, &context, bound, &mut timings).await;
    timings.finish();
    if generation.is_ok() {
        let (chain_memtable_bytes, chain_block_cache_bytes) =
            chain_store.get().map(|store| (store.memtable_bytes(), store.block_cache_bytes())).unwrap_or_default();
        // The stores stay open across restarts, and their memtables and block caches
        // grow with the chain until a write buffer flushes or the cache is full, and
        // the node's memory with them; logged here so that growth can be told from
        // what a restart costs.
        tracing::info!(
            elapsed_ms = timings.total_ms,
            open_instances = mpc_store::instance_count(),
            node_memtable_bytes = node_store.memtable_bytes(),
            chain_memtable_bytes,
            node_block_cache_bytes = node_store.block_cache_bytes(),
            chain_block_cache_bytes,
            "indexer subsystem restarted"
        );
    }
    RestartOutcome { node_store, chain_store, generation, stop, report: RestartReport { why: request.why, timings } }
}

/// Everything after the old generation stopped: its stores closed, the wipe, the
/// backoff, the new generation. Hands the chain store's owner back in every case.
async fn start_next_generation(
    stop: &GenerationStop,
    node_store: &Arc<Store>,
    mut chain_store: OwnedStore,
    request: &RestartRequest,
    context: &GenerationContext,
    bound: Duration,
    timings: &mut PhaseTimings,
) -> (OwnedStore, Result<IndexerGeneration, NodeError>) {
    if !stop.not_stopped.is_empty() {
        let error = NodeError::NotStopped(format!(
            "the indexer subsystem did not stop: {} (aborted tasks: {})",
            stop.not_stopped.join(", "),
            stop.aborted.join(", ")
        ));
        return (chain_store, Err(error));
    }
    if !stop.aborted.is_empty() {
        tracing::warn!(aborted = ?stop.aborted, "restart aborted tasks that ignored cancellation");
    }
    if let Err(error) = prepare_chain_store(&mut chain_store, node_store, request, context, bound, timings).await {
        return (chain_store, Err(error));
    }
    if !request.backoff.is_zero() {
        tracing::info!(backoff_ms = request.backoff.as_millis() as u64, "waiting before starting the indexer again");
        tokio::select! {
            _ = tokio::time::sleep(request.backoff) => {}
            _ = context.root_token.cancelled() => return (chain_store, Err(NodeError::Cancelled)),
        }
    }
    if context.root_token.is_cancelled() {
        return (chain_store, Err(NodeError::Cancelled));
    }
    let handed = timings.phase("open_chain_store", chain_store_for_generation(chain_store, context)).await;
    let (chain_store, handed) = (handed.owner, handed.store);
    let generation = match handed {
        Ok(handed) => {
            timings
                .phase("start_indexer_subsystem", async { IndexerGeneration::start(context, node_store, handed) })
                .await
        }
        Err(error) => Err(error),
    };
    (chain_store, generation)
}

/// Makes the chain store ready for the next generation: kept open once the old actors
/// let go of it, or (for a wipe or after a failure) closed, and wiped if a new token
/// asked for it. The wipe's file-system work runs on a blocking thread, like the opens.
async fn prepare_chain_store(
    chain_store: &mut OwnedStore,
    node_store: &Arc<Store>,
    request: &RestartRequest,
    context: &GenerationContext,
    bound: Duration,
    timings: &mut PhaseTimings,
) -> Result<(), NodeError> {
    if request.reopens_chain_store() {
        release_owned_store(chain_store).await;
        timings
            .phase("close_subsystem_stores", wait_for_stores_closed(Some(INDEXER_STORE_GROUP), bound))
            .await
            .map_err(|open| NodeError::NotStopped(format!("chain store still open after the restart drain: {open}")))?;
    } else {
        timings
            .phase("release_chain_store", wait_for_owned_store_unheld(chain_store, bound))
            .await
            .map_err(|held| NodeError::NotStopped(format!("chain store still used after the restart drain: {held}")))?;
    }
    if let Some(token) = request.wipe_token.clone() {
        let home = Home::new(&context.args.home);
        let node_store = node_store.clone();
        let wiped = tokio::task::spawn_blocking(move || wipe_chain_data(&home, &node_store, &token));
        timings
            .phase("wipe_chain_data", async {
                wiped
                    .await
                    .unwrap_or_else(|join_error| Err(NodeError::NotStopped(format!("the wipe failed: {join_error}"))))
            })
            .await?;
    }
    Ok(())
}
