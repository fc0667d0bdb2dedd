//! Start-up, as the run loop's root task: open and migrate the node store, start the
//! indexer thread (which starts the chain), then watch the image hash and readiness.
//!
//! Every step checks the root token or runs where a signal still reaches the run loop,
//! so SIGTERM during store open, migration or chain start is honoured. Anything created
//! is put into [`SharedResources`] at once, so the shutdown sequence stops it.

use std::convert::Infallible;
use std::sync::Arc;

use mpc_chain::{ChainConfig, ImageHashRevocation, default_contract_id};
use mpc_indexer::{
    IndexerConfig, IndexerError, IndexerThreadParams, MonitorIntervals, Observed,
    spawn_indexer_thread,
};
use mpc_lifecycle::{
    ExitCode, LifecyclePhase, PhaseTracker, ShutdownReason, ShutdownSender, Supervisor,
};
use mpc_migrations::node_schema;
use mpc_store::migration::{MigrationSettings, SchemaOutcome, open_migrated, plan};
use mpc_store::{StoreError, StoreOptions};
use near_async::ActorSystem;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::cli::StartArgs;
use crate::home::Home;
use crate::resources::SharedResources;

/// Tracker group of the node's own store.
pub const NODE_STORE_GROUP: &str = "node";

/// A start-up failure with the exit code it maps to.
#[derive(Debug)]
pub struct StartupError {
    /// What went wrong, for the operator.
    pub message: String,
    /// 2 for usage/config, 3 for store errors.
    pub exit_code: ExitCode,
}

impl StartupError {
    fn store(err: StoreError) -> Self {
        StartupError {
            message: err.to_string(),
            exit_code: ExitCode::STORE,
        }
    }

    /// The shutdown reason this failure becomes.
    pub fn into_reason(self) -> ShutdownReason {
        ShutdownReason::StartupFailed {
            error: self.message,
            exit_code: self.exit_code.0,
        }
    }
}

/// The indexer settings `start` runs with.
pub fn indexer_config(args: &StartArgs) -> IndexerConfig {
    let chain = ChainConfig {
        seed: args.sandbox_seed,
        block_interval: args.sandbox_block_interval,
        num_shards: args.sandbox_shards,
        sign_requests_per_block: args.sandbox_requests_per_block,
        history_blocks: args.sandbox_history_blocks,
        contract_id: default_contract_id(),
        revocation: args
            .sandbox_revoke_image_hash_at
            .map(|at_height| ImageHashRevocation {
                image_hash: args.image_hash.clone(),
                at_height,
            }),
    };
    IndexerConfig::new(args.home.clone(), chain)
}

/// Everything start-up needs from the run loop.
pub struct StartupContext {
    /// What the indexer subsystem is started with (also used by restarts).
    pub subsystem: SubsystemContext,
    /// The first indexer thread reports its end here.
    pub indexer_exit: oneshot::Sender<Result<(), IndexerError>>,
}

/// Starts the node and then waits forever; returns only on a start-up failure. The home
/// directory already exists (the run loop creates it before binding the ops server).
pub async fn start_node(context: StartupContext) -> Result<Infallible, StartupError> {
    let StartupContext {
        subsystem,
        indexer_exit,
    } = context;
    let SubsystemContext {
        args,
        phase,
        root_token,
        node_tasks,
        shutdown_signal_sender,
        resources,
    } = &subsystem;

    phase.set(LifecyclePhase::OpeningStores);
    let store_path = Home::new(&args.home).node_store();
    let mut options = StoreOptions::new("node", NODE_STORE_GROUP);
    options.sync_writes = args.sync_writes;
    let settings = MigrationSettings {
        keep_checkpoint: args.keep_migration_checkpoint,
        cancel: root_token.child_token(),
    };
    // The blocking open runs in a supervised node task and hands its result back through
    // a channel: if a shutdown overtakes start-up, the receiver is gone and the opened
    // store is dropped (closed) inside that task, which the shutdown sequence waits for
    // before it waits for every RocksDB instance.
    let (opened_sender, opened_receiver) = oneshot::channel();
    {
        let phase = phase.clone();
        let hold_after_open = hold_after_node_store_open_for_test();
        node_tasks.spawn("open_node_store", move |_cancel| async move {
            let opened = tokio::task::spawn_blocking(move || {
                let pending = plan(&store_path, &options, &node_schema())?;
                if !pending.steps.is_empty() {
                    phase.set(LifecyclePhase::Migrating);
                    tracing::info!(from = ?pending.current, to = pending.latest, steps = pending.steps.len(), "node store needs migration");
                }
                let opened = open_migrated(&store_path, &options, &node_schema(), &settings);
                if let Some(hold) = hold_after_open {
                    tracing::warn!(hold_ms = hold.as_millis() as u64, "test hook: holding start-up after the node store opened");
                    std::thread::sleep(hold);
                }
                opened
            })
            .await
            .map_err(|err| StartupError { message: format!("store open task failed: {err}"), exit_code: ExitCode::STORE })
            .and_then(|opened| opened.map_err(StartupError::store));
            // Unsent (start-up abandoned): the store drops here, inside this task.
            let _ = opened_sender.send(opened);
            Ok::<(), String>(())
        });
    }
    let opened = opened_receiver.await.unwrap_or_else(|_| {
        Err(StartupError { message: "the store open task ended without a result".into(), exit_code: ExitCode::STORE })
    });
    let (node_store, outcome) = opened?;
    match &outcome {
        SchemaOutcome::Created { version } => tracing::info!(version, "node store created"),
        SchemaOutcome::Current { version } => tracing::info!(version, "node store opened"),
        SchemaOutcome::Migrated {
            from,
            to,
            checkpoint,
        } => {
            tracing::info!(from, to, checkpoint = ?checkpoint, "node store migrated")
        }
    }
    // Moved, not cloned: nothing in this (possibly pending) future may keep the store
    // open after the shutdown sequence takes it.
    resources.lock().node_store = Some(node_store);
    if root_token.is_cancelled() {
        return std::future::pending().await;
    }

    let home = Home::new(&args.home);
    crate::restart::finish_interrupted_wipe(&home)
        .and_then(|()| crate::restart::apply_pending_wipe_at_start(&home, resources))
        .map_err(|message| StartupError { message, exit_code: ExitCode::STORE })?;
    {
        let (resources, sender) = (resources.clone(), shutdown_signal_sender.clone());
        node_tasks.spawn("data_wipe_watcher", move |cancel| {
            crate::restart::watch_data_wipe_token(home, resources, sender, cancel)
        });
    }
    start_indexer_subsystem(&subsystem, indexer_exit)?;
    std::future::pending().await
}

/// Test hook (feature `test-hooks`): `MPC_TEST_HOLD_AFTER_NODE_STORE_OPEN_MS=N` keeps the
/// blocking open task alive N ms after the node store opened, so a test can deliver a
/// shutdown exactly while the opened store is still on its way to the run loop.
#[cfg(feature = "test-hooks")]
fn hold_after_node_store_open_for_test() -> Option<std::time::Duration> {
    let millis = std::env::var("MPC_TEST_HOLD_AFTER_NODE_STORE_OPEN_MS").ok()?.parse().ok()?;
    Some(std::time::Duration::from_millis(millis))
}

#[cfg(not(feature = "test-hooks"))]
fn hold_after_node_store_open_for_test() -> Option<std::time::Duration> {
    None
}

/// What starting (and restarting) the indexer subsystem needs.
#[derive(Clone)]
pub struct SubsystemContext {
    /// Parsed `start` flags.
    pub args: Arc<StartArgs>,
    /// Lifecycle phase, for readiness.
    pub phase: PhaseTracker,
    /// The root token; each subsystem generation gets a child of it.
    pub root_token: CancellationToken,
    /// Node-level supervised tasks (watchers).
    pub node_tasks: Supervisor,
    /// The shutdown channel.
    pub shutdown_signal_sender: ShutdownSender,
    /// Where everything started is recorded.
    pub resources: SharedResources,
}

/// Starts one generation of the indexer subsystem: a new actor system, the indexer
/// thread (which starts the chain) under a fresh child of the root token, and the
/// watchers that follow it. Everything is recorded in the resources before this
/// returns. The thread's end is reported on `indexer_exit`.
pub fn start_indexer_subsystem(
    context: &SubsystemContext,
    indexer_exit: oneshot::Sender<Result<(), IndexerError>>,
) -> Result<(), StartupError> {
    let SubsystemContext {
        args,
        phase,
        root_token,
        node_tasks,
        shutdown_signal_sender,
        resources,
    } = context;
    let Some(node_store) = resources.lock().node_store.clone() else {
        return Err(StartupError {
            message: "node store is not open".into(),
            exit_code: ExitCode::FATAL,
        });
    };
    phase.set(LifecyclePhase::StartingIndexer);
    let actor_system = ActorSystem::new();
    let subsystem_token = root_token.child_token();
    {
        let mut resources = resources.lock();
        resources.actor_systems.push(actor_system.clone());
        resources.actor_systems_created += 1;
        resources.subsystem_token = Some(subsystem_token.clone());
    }
    let params = IndexerThreadParams {
        config: indexer_config(args),
        node_store,
        actor_system,
        intervals: MonitorIntervals {
            contract_state: args.monitor_interval,
            allowed_image_hashes: args.monitor_interval,
            tee_accounts: args.monitor_interval,
            migration_info: args.monitor_interval,
            stats: args.stats_interval,
        },
        failures: shutdown_signal_sender.clone(),
    };
    let handle = spawn_indexer_thread(params, subsystem_token, indexer_exit).map_err(|err| {
        StartupError {
            message: format!("cannot spawn the indexer thread: {err}"),
            exit_code: ExitCode::FATAL,
        }
    })?;
    let allowed_image_hashes = handle.allowed_image_hashes.clone();
    let indexed_height = handle.indexed_height.clone();
    resources.lock().indexer = Some(handle);
    phase.set(LifecyclePhase::CatchingUp);

    let own_hash = args.image_hash.clone();
    let sender = shutdown_signal_sender.clone();
    node_tasks.spawn("image_hash_watcher", move |cancel| {
        watch_image_hash(allowed_image_hashes, own_hash, sender, cancel)
    });
    let readiness_phase = phase.clone();
    node_tasks.spawn("readiness", move |cancel| {
        mark_ready_after_first_block(indexed_height, readiness_phase, cancel)
    });
    Ok(())
}

/// Sends `ImageHashRevoked` into the shutdown channel once the contract's allowed list
/// is known and no longer contains this node's hash.
async fn watch_image_hash(
    mut allowed: watch::Receiver<Observed<Vec<String>>>,
    own_hash: String,
    shutdown_signal_sender: ShutdownSender,
    cancel: CancellationToken,
) -> Result<(), String> {
    loop {
        if let Observed::Known(list) = &*allowed.borrow_and_update()
            && !list.contains(&own_hash)
        {
            tracing::error!(image_hash = %own_hash, "own image hash is no longer allowed by the contract, shutting down");
            shutdown_signal_sender.shutdown(ShutdownReason::ImageHashRevoked {
                image_hash: own_hash,
            });
            return Ok(());
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            changed = allowed.changed() => if changed.is_err() { return Ok(()) },
        }
    }
}

/// Flips the node to ready once the first block is committed.
async fn mark_ready_after_first_block(
    mut indexed_height: watch::Receiver<Option<u64>>,
    phase: PhaseTracker,
    cancel: CancellationToken,
) -> Result<(), String> {
    tokio::select! {
        _ = cancel.cancelled() => return Ok(()),
        first = indexed_height.wait_for(Option::is_some) => {
            if let Ok(height) = first {
                let height = *height;
                phase.advance_from(LifecyclePhase::CatchingUp, LifecyclePhase::Ready);
                tracing::info!(height = height.unwrap_or_default(), "node ready: first block indexed");
            }
        }
    }
    Ok(())
}
