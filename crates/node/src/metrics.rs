//! `/metrics`: Prometheus text, rendered from a fresh snapshot on every scrape. Nothing
//! is pushed into a registry as it happens: gauges read the lifecycle state and the
//! current generation, counters read the process-wide atomics that count them.

use mpc_lifecycle::{LifecyclePhase, TaskState};
use prometheus::{Counter, Encoder, Gauge, GaugeVec, Opts, Registry, TextEncoder};

use crate::ops_state::OpsState;

const PHASES: [LifecyclePhase; 9] = [
    LifecyclePhase::Starting,
    LifecyclePhase::OpeningStores,
    LifecyclePhase::Migrating,
    LifecyclePhase::StartingIndexer,
    LifecyclePhase::CatchingUp,
    LifecyclePhase::Ready,
    LifecyclePhase::Restarting,
    LifecyclePhase::ShuttingDown,
    LifecyclePhase::Stopped,
];

fn gauge(registry: &Registry, name: &str, help: &str, value: f64) {
    if let Ok(gauge) = Gauge::with_opts(Opts::new(name, help)) {
        gauge.set(value);
        let _ = registry.register(Box::new(gauge));
    }
}

fn counter(registry: &Registry, name: &str, help: &str, value: f64) {
    if let Ok(counter) = Counter::with_opts(Opts::new(name, help)) {
        counter.inc_by(value);
        let _ = registry.register(Box::new(counter));
    }
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str], values: &[(Vec<String>, f64)]) {
    let Ok(vec) = GaugeVec::new(Opts::new(name, help), labels) else { return };
    for (label_values, value) in values {
        let label_values: Vec<&str> = label_values.iter().map(String::as_str).collect();
        if let Ok(gauge) = vec.get_metric_with_label_values(&label_values) {
            gauge.set(*value);
        }
    }
    let _ = registry.register(Box::new(vec));
}

/// The signing side's metrics, for a node that signs.
fn render_signer(registry: &Registry, state: &OpsState) {
    let Some(signer) = state.signing.handle.borrow().clone() else { return };
    let status = signer.status();
    let stats = signer.stats();
    let signatures: Vec<_> =
        stats.paths.iter().map(|path| (vec![path.path.to_owned()], path.signatures as f64)).collect();
    counter_vec(
        registry,
        "mpc_signer_signatures_total",
        "Signatures this node led, aggregated and verified, by path (presigned, online)",
        &["path"],
        &signatures,
    );
    let failures: Vec<_> =
        stats.failures.iter().map(|(kind, count)| (vec![(*kind).to_owned()], *count as f64)).collect();
    counter_vec(
        registry,
        "mpc_signer_protocol_failures_total",
        "Failed signing, presignature or key generation protocols, by kind",
        &["kind"],
        &failures,
    );
    gauge(registry, "mpc_signer_peers_connected", "Peers connected over the mesh", status.peers_connected as f64);
    gauge(
        registry,
        "mpc_signer_key_loaded",
        "1 once this node's key share is loaded",
        f64::from(u8::from(status.public_key.is_some())),
    );
    gauge(
        registry,
        "mpc_signer_presignatures_ready",
        "Presignatures this node owns, ready to sign with",
        stats.ready_presignatures as f64,
    );
    gauge(
        registry,
        "mpc_signer_held_nonces",
        "Nonces this node holds for other owners' presignatures",
        stats.held_nonces as f64,
    );
    let latency: Vec<_> = stats
        .paths
        .iter()
        .flat_map(|path| {
            [("0.5", path.latency_p50_s), ("0.99", path.latency_p99_s)]
                .map(|(quantile, value)| (vec![path.path.to_owned(), quantile.to_owned()], value))
        })
        .collect();
    gauge_vec(
        registry,
        "mpc_signer_sign_latency_seconds",
        "Request indexed on this node to signature verified, over its recent signatures as leader, by path",
        &["path", "quantile"],
        &latency,
    );
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str], values: &[(Vec<String>, f64)]) {
    let Ok(vec) = prometheus::CounterVec::new(Opts::new(name, help), labels) else { return };
    for (label_values, value) in values {
        let label_values: Vec<&str> = label_values.iter().map(String::as_str).collect();
        if let Ok(counter) = vec.get_metric_with_label_values(&label_values) {
            counter.inc_by(*value);
        }
    }
    let _ = registry.register(Box::new(vec));
}

/// Renders every metric of the node.
pub fn render(state: &OpsState) -> String {
    let registry = Registry::new();
    let progress = state.progress();
    gauge(
        &registry,
        "mpc_indexer_latest_height",
        "Height of the last committed block",
        progress.latest_height.unwrap_or(0) as f64,
    );
    gauge(
        &registry,
        "mpc_indexer_blocks_per_second",
        "Blocks committed per second (last stats interval)",
        progress.blocks_per_s,
    );
    gauge(&registry, "mpc_indexer_lag_blocks", "Chain head minus the last committed block", progress.lag_blocks as f64);
    let current = state.phase.current();
    let phases: Vec<_> =
        PHASES.iter().map(|phase| (vec![phase.name().to_owned()], f64::from(u8::from(*phase == current)))).collect();
    gauge_vec(&registry, "mpc_lifecycle_phase", "1 for the current lifecycle phase", &["phase"], &phases);
    if let Some(last) = state.history.last_restart() {
        let durations: Vec<_> = last
            .timings
            .phases
            .iter()
            .map(|phase| (vec!["restart".to_owned(), phase.phase.to_owned()], phase.duration_ms / 1e3))
            .collect();
        gauge_vec(
            &registry,
            "mpc_lifecycle_sequence_phase_seconds",
            "Duration of each phase of the last in-process restart",
            &["sequence", "phase"],
            &durations,
        );
    }
    counter(
        &registry,
        "mpc_indexer_restarts_total",
        "In-process restarts of the indexer subsystem",
        state.history.restarts() as f64,
    );
    counter(
        &registry,
        "mpc_indexer_blocks_indexed_total",
        "Blocks committed by this process",
        mpc_indexer::counters::blocks_indexed() as f64,
    );
    counter(
        &registry,
        "mpc_indexer_sign_requests_indexed_total",
        "Sign requests committed by this process",
        mpc_indexer::counters::sign_requests_indexed() as f64,
    );
    render_signer(&registry, state);
    let build = [(vec![env!("CARGO_PKG_VERSION").to_owned(), mpc_migrations::NODE_SCHEMA_VERSION.to_string()], 1.0)];
    gauge_vec(
        &registry,
        "mpc_node_build_info",
        "Version and node-store schema of this binary (always 1)",
        &["version", "schema_version"],
        &build,
    );
    // Resident memory, open file descriptors, start time, CPU: the standard process_* set.
    let _ = registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()));
    let open = mpc_store::open_instances();
    gauge(&registry, "mpc_rocksdb_open_instances", "RocksDB instances open in this process", open.len() as f64);
    let holders: Vec<_> = open.iter().map(|store| (vec![store.name.clone()], store.holders.len() as f64)).collect();
    gauge_vec(&registry, "mpc_store_holders", "Live named holders per store", &["store"], &holders);
    let tasks = state.tasks();
    let count = |wanted: fn(&TaskState) -> bool| tasks.iter().filter(|task| wanted(&task.state)).count() as f64;
    let by_state = vec![
        (vec!["running".to_owned()], count(|state| matches!(state, TaskState::Running))),
        (vec!["failed".to_owned()], count(|state| matches!(state, TaskState::Failed(_)))),
        (vec!["aborted".to_owned()], count(|state| matches!(state, TaskState::Aborted))),
    ];
    gauge_vec(&registry, "mpc_supervised_tasks", "Supervised tasks by state", &["state"], &by_state);

    let mut buffer = Vec::new();
    if let Err(err) = TextEncoder::new().encode(&registry.gather(), &mut buffer) {
        return format!("# encoding failed: {err}\n");
    }
    String::from_utf8(buffer).unwrap_or_default()
}
