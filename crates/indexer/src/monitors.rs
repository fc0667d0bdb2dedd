//! Monitor tasks: each polls one contract view, publishes it through a `watch` channel
//! and records the latest value in the node store.
//!
//! Each runs under the indexer's supervisor with a child token and a clone of
//! `Arc<IndexerState>`. On cancellation a monitor finishes the write it is doing and
//! returns, dropping its clone: that is what lets the indexer thread's `block_on`
//! return and the stores close (upstream's monitors never returned).

use std::sync::Arc;
use std::time::Duration;

use mpc_chain::ContractView;
use mpc_lifecycle::Supervisor;
use mpc_store::{Column, StoreHolder, StoreUpdate};
use near_async::messaging::CanSendAsync;
use rand::Rng;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::IndexerState;

/// A value a monitor has (or has not yet) observed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Observed<T> {
    /// Nothing observed yet.
    #[default]
    Unknown,
    /// The latest observed value.
    Known(T),
}

/// How often each monitor polls.
#[derive(Debug, Clone)]
pub struct MonitorIntervals {
    /// Contract state (participants, threshold).
    pub contract_state: Duration,
    /// Allowed image hashes (with backoff on error).
    pub allowed_image_hashes: Duration,
    /// TEE accounts.
    pub tee_accounts: Duration,
    /// Migration info.
    pub migration_info: Duration,
    /// Stats log line.
    pub stats: Duration,
}

impl Default for MonitorIntervals {
    fn default() -> Self {
        MonitorIntervals {
            contract_state: Duration::from_secs(1),
            allowed_image_hashes: Duration::from_secs(1),
            tee_accounts: Duration::from_secs(1),
            migration_info: Duration::from_secs(1),
            stats: Duration::from_secs(10),
        }
    }
}

/// The receivers of every monitor's channel.
pub(crate) struct MonitorReceivers {
    pub contract_state: watch::Receiver<Observed<serde_json::Value>>,
    pub allowed_image_hashes: watch::Receiver<Observed<Vec<String>>>,
    pub tee_accounts: watch::Receiver<Observed<serde_json::Value>>,
    pub migration_info: watch::Receiver<Observed<serde_json::Value>>,
    pub chain_link: watch::Receiver<Option<String>>,
}

/// The sending halves, created before the thread so callers get receivers at once.
pub(crate) struct MonitorSenders {
    contract_state: watch::Sender<Observed<serde_json::Value>>,
    allowed_image_hashes: watch::Sender<Observed<Vec<String>>>,
    tee_accounts: watch::Sender<Observed<serde_json::Value>>,
    migration_info: watch::Sender<Observed<serde_json::Value>>,
    chain_link: watch::Sender<Option<String>>,
}

pub(crate) fn monitor_channels() -> (MonitorSenders, MonitorReceivers) {
    let (contract_state, contract_state_rx) = watch::channel(Observed::Unknown);
    let (allowed_image_hashes, allowed_image_hashes_rx) = watch::channel(Observed::Unknown);
    let (tee_accounts, tee_accounts_rx) = watch::channel(Observed::Unknown);
    let (migration_info, migration_info_rx) = watch::channel(Observed::Unknown);
    let (chain_link, chain_link_rx) = watch::channel(None);
    (
        MonitorSenders { contract_state, allowed_image_hashes, tee_accounts, migration_info, chain_link },
        MonitorReceivers {
            contract_state: contract_state_rx,
            allowed_image_hashes: allowed_image_hashes_rx,
            tee_accounts: tee_accounts_rx,
            migration_info: migration_info_rx,
            chain_link: chain_link_rx,
        },
    )
}

/// How a monitor waits after a failed poll.
#[derive(Clone, Copy)]
enum OnError {
    /// Same interval again.
    Retry,
    /// Exponential backoff with jitter, up to 30 s.
    Backoff,
}

struct ViewMonitor<T> {
    name: &'static str,
    method: &'static str,
    interval: Duration,
    on_error: OnError,
    publisher: watch::Sender<Observed<T>>,
    decode: fn(serde_json::Value) -> Option<T>,
    /// Test hook: ignore cancellation (see [`crate::IndexerTestHooks::hang_monitor`]).
    #[cfg(feature = "test-hooks")]
    hang_on_cancel: bool,
}

fn backoff_delay(interval: Duration, failures: u32) -> Duration {
    let base = interval.saturating_mul(1u32 << failures.min(5)).min(Duration::from_secs(30));
    let jitter = rand::thread_rng().gen_range(0.5..1.0);
    base.mul_f64(jitter)
}

impl<T: Clone + PartialEq + serde::Serialize + Send + Sync + 'static> ViewMonitor<T> {
    async fn run(self, state: Arc<IndexerState>, holder: StoreHolder, cancel: CancellationToken) -> Result<(), String> {
        let mut delay = Duration::ZERO;
        let mut failures = 0u32;
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    #[cfg(feature = "test-hooks")]
                    if self.hang_on_cancel {
                        tracing::warn!(task = self.name, "test hook: ignoring cancellation");
                        std::future::pending::<()>().await;
                    }
                    return Ok(());
                }
                _ = tokio::time::sleep(delay) => {}
            }
            let answer = state.view_client.send_async(ContractView(self.method.to_owned())).await;
            match answer.map_err(|err| format!("{err:?}")).and_then(|answer| answer.map_err(|err| err.to_string())) {
                Ok(value) => {
                    failures = 0;
                    delay = self.interval;
                    let Some(value) = (self.decode)(value) else {
                        tracing::warn!(monitor = self.name, "contract view returned an unexpected shape");
                        continue;
                    };
                    self.publish(value, &holder)?;
                }
                Err(error) => {
                    failures += 1;
                    delay = match self.on_error {
                        OnError::Retry => self.interval,
                        OnError::Backoff => backoff_delay(self.interval, failures),
                    };
                    tracing::warn!(monitor = self.name, failures, retry_in_ms = delay.as_millis() as u64, %error, "contract view failed");
                }
            }
        }
    }

    /// Publishes a changed value and records it in the node store (one small batch)
    /// unless the store already holds it: every generation starts from `Unknown`, and
    /// rewriting the same values at each in-process restart grew the node store's
    /// memtables by a few KiB per restart.
    fn publish(&self, value: T, holder: &StoreHolder) -> Result<(), String> {
        let mut changed = false;
        self.publisher.send_if_modified(|current| {
            if *current == Observed::Known(value.clone()) {
                return false;
            }
            *current = Observed::Known(value.clone());
            changed = true;
            true
        });
        if changed {
            let key = mpc_migrations::layout::monitor_key(self.name);
            let bytes = serde_json::to_vec(&value).map_err(|err| err.to_string())?;
            if holder.get(Column::Misc, &key).map_err(|err| err.to_string())?.as_deref() != Some(bytes.as_slice()) {
                let mut update = StoreUpdate::new();
                update.put(Column::Misc, key, bytes);
                holder.commit(update).map_err(|err| err.to_string())?;
            }
        }
        Ok(())
    }
}

fn as_value(value: serde_json::Value) -> Option<serde_json::Value> {
    Some(value)
}

fn as_string_list(value: serde_json::Value) -> Option<Vec<String>> {
    serde_json::from_value(value).ok()
}

fn spawn_view_monitor<T: Clone + PartialEq + serde::Serialize + Send + Sync + 'static>(
    tasks: &Supervisor,
    state: &Arc<IndexerState>,
    monitor: ViewMonitor<T>,
    #[cfg_attr(not(feature = "test-hooks"), allow(unused_variables))] hooks: &crate::IndexerTestHooks,
) {
    #[cfg(feature = "test-hooks")]
    let monitor = ViewMonitor { hang_on_cancel: hooks.hang_monitor.as_deref() == Some(monitor.name), ..monitor };
    let state = state.clone();
    let holder = state.node_store.holder(monitor.name);
    tasks.spawn(monitor.name, move |cancel| monitor.run(state, holder, cancel));
}

/// Spawns every monitor and the stats logger on `tasks`.
pub(crate) fn spawn_monitors(
    tasks: &Supervisor,
    state: &Arc<IndexerState>,
    senders: MonitorSenders,
    intervals: &MonitorIntervals,
    hooks: &crate::IndexerTestHooks,
) {
    spawn_view_monitor(
        tasks,
        state,
        ViewMonitor {
            name: mpc_migrations::layout::CONTRACT_STATE_MONITOR,
            method: "state",
            interval: intervals.contract_state,
            on_error: OnError::Retry,
            publisher: senders.contract_state,
            decode: as_value,
            #[cfg(feature = "test-hooks")]
            hang_on_cancel: false,
        },
        hooks,
    );
    spawn_view_monitor(
        tasks,
        state,
        ViewMonitor {
            name: "monitor_allowed_image_hashes",
            method: "allowed_docker_image_hashes",
            interval: intervals.allowed_image_hashes,
            on_error: OnError::Backoff,
            publisher: senders.allowed_image_hashes,
            decode: as_string_list,
            #[cfg(feature = "test-hooks")]
            hang_on_cancel: false,
        },
        hooks,
    );
    spawn_view_monitor(
        tasks,
        state,
        ViewMonitor {
            name: "monitor_tee_accounts",
            method: "get_tee_accounts",
            interval: intervals.tee_accounts,
            on_error: OnError::Retry,
            publisher: senders.tee_accounts,
            decode: as_value,
            #[cfg(feature = "test-hooks")]
            hang_on_cancel: false,
        },
        hooks,
    );
    spawn_view_monitor(
        tasks,
        state,
        ViewMonitor {
            name: "monitor_migration_info",
            method: "migration_info",
            interval: intervals.migration_info,
            on_error: OnError::Retry,
            publisher: senders.migration_info,
            decode: as_value,
            #[cfg(feature = "test-hooks")]
            hang_on_cancel: false,
        },
        hooks,
    );
    let stats_state = state.clone();
    let every = intervals.stats;
    tasks.spawn("stats_logger", move |cancel| log_stats(stats_state, every, cancel));
    let link_state = state.clone();
    let (link, every) = (senders.chain_link, intervals.contract_state);
    tasks.spawn("monitor_chain_link", move |cancel| follow_chain_link(link_state, link, every, cancel));
}

/// Publishes, every `every`, why the chain cannot sync from its host (`None` while it
/// can, and always for a chain that follows no host): a follower is not ready while its
/// host is unreachable, and ready again once it syncs.
async fn follow_chain_link(
    state: Arc<IndexerState>,
    link: watch::Sender<Option<String>>,
    every: Duration,
    cancel: CancellationToken,
) -> Result<(), String> {
    loop {
        if let Ok(status) = state.client.send_async(mpc_chain::GetStatus).await {
            link.send_if_modified(|current| {
                let changed = *current != status.sync_failure;
                *current = status.sync_failure.clone();
                changed
            });
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Logs progress every `every`: height, blocks/s, lag to head, catch-up ETA.
async fn log_stats(state: Arc<IndexerState>, every: Duration, cancel: CancellationToken) -> Result<(), String> {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    let mut last_blocks = state.stats().blocks_indexed;
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(()),
            _ = ticker.tick() => {}
        }
        if let Ok(status) = state.client.send_async(mpc_chain::GetStatus).await {
            state.stats().chain_head = status.head_height;
        }
        let stats = {
            let mut stats = state.stats();
            stats.blocks_per_s = (stats.blocks_indexed - last_blocks) as f64 / every.as_secs_f64();
            stats.clone()
        };
        let blocks_per_s = stats.blocks_per_s;
        last_blocks = stats.blocks_indexed;
        let height = stats.last_height.unwrap_or(0);
        let lag = stats.chain_head.saturating_sub(height);
        let eta_s = if blocks_per_s > 0.0 { lag as f64 / blocks_per_s } else { f64::INFINITY };
        let (blocks_per_s, eta_s) = (mpc_lifecycle::three_decimals(blocks_per_s), mpc_lifecycle::three_decimals(eta_s));
        tracing::info!(height, target = stats.chain_head, blocks_per_s, lag, eta_s, "indexer stats");
    }
}
