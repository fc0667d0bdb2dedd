//! Reading a Docker Swarm's services back: their tasks, their containers, and the order
//! in which a rolling update stopped old tasks and saw new ones become healthy.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::docker_engine::{DockerEngine, ENGINE_PATIENCE};

/// One task of a service, as `docker inspect` shows it.
#[derive(Debug, Clone)]
pub struct Task {
    /// The replica slot it fills.
    pub slot: u64,
    /// The image it runs.
    pub image: String,
    /// Its container (empty until the task got one).
    pub container: String,
}

/// Every task of `service`, current and replaced, as the engine keeps them.
pub fn tasks(engine: &DockerEngine, service: &str) -> Vec<Task> {
    let ids = engine.docker_ok(&["service", "ps", service, "--quiet", "--no-trunc"]);
    ids.lines()
        .map(|id| {
            let service_history = || engine.docker(&["service", "ps", service, "--no-trunc"]).stdout;
            let task = engine.docker_explained(&["inspect", "--type", "task", "--format", "{{json .}}", id], || {
                format!("the service's tasks:\n{}", String::from_utf8_lossy(&service_history()))
            });
            let task: Value = serde_json::from_str(&task).unwrap();
            Task {
                slot: task["Slot"].as_u64().unwrap_or_default(),
                image: task["Spec"]["ContainerSpec"]["Image"].as_str().unwrap_or_default().to_owned(),
                container: task["Status"]["ContainerStatus"]["ContainerID"].as_str().unwrap_or_default().to_owned(),
            }
        })
        .collect()
}

/// `docker inspect` of a container.
pub fn container_json(engine: &DockerEngine, id: &str) -> Value {
    serde_json::from_str(&engine.docker_ok(&["inspect", "--type", "container", "--format", "{{json .}}", id])).unwrap()
}

/// Whether the container runs and its health check passes.
pub fn is_healthy(engine: &DockerEngine, container: &str) -> bool {
    !container.is_empty() && container_json(engine, container)["State"]["Health"]["Status"] == "healthy"
}

/// Waits until `done`, at most [`ENGINE_PATIENCE`].
pub fn wait_until(what: &str, done: impl Fn() -> bool) {
    wait_until_explained(what, done, String::new)
}

/// Like [`wait_until`]; a failure's message ends with `explain()` (logs, states).
pub fn wait_until_explained(what: &str, done: impl Fn() -> bool, explain: impl Fn() -> String) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < ENGINE_PATIENCE, "{what}: not within {ENGINE_PATIENCE:?}\n{}", explain());
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Seconds since the Unix epoch, for [`DockerEngine::container_events`].
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |now| now.as_secs())
}

/// One replacement of a rolling update: which container stopped and which took over.
#[derive(Debug, Clone)]
pub struct Replacement {
    /// What was replaced (a slot, a service).
    pub label: String,
    /// The container that stopped.
    pub old: String,
    /// The container that replaced it.
    pub new: String,
}

/// How one replacement went, from the engine's events.
#[derive(Debug, Clone)]
pub struct ReplacementTimes {
    /// What was replaced.
    pub label: String,
    /// When the old container died (ns since the epoch).
    pub stopped_at: u128,
    /// When the new one first reported healthy, if it did.
    pub healthy_at: Option<u128>,
}

impl ReplacementTimes {
    /// From the old container's death to the new one's health.
    pub fn outage(&self) -> Option<Duration> {
        let nanos = self.healthy_at?.checked_sub(self.stopped_at)?;
        Some(Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)))
    }
}

/// The replacements of an update that began at `since` (Unix seconds), in the order the
/// old containers stopped.
pub fn replacement_times(engine: &DockerEngine, since: u64, replacements: &[Replacement]) -> Vec<ReplacementTimes> {
    let died = engine.container_events(since, "die");
    let healthy = engine.container_events(since, "health_status: healthy");
    let first = |events: &[(u128, String)], container: &str| {
        events.iter().filter(|(_, id)| id == container).map(|(at, _)| *at).min()
    };
    let mut times: Vec<ReplacementTimes> = replacements
        .iter()
        .map(|replacement| ReplacementTimes {
            label: replacement.label.clone(),
            stopped_at: first(&died, &replacement.old)
                .unwrap_or_else(|| panic!("{}: the old container never died", replacement.label)),
            healthy_at: first(&healthy, &replacement.new),
        })
        .collect();
    times.sort_by_key(|times| times.stopped_at);
    times
}

/// Where a rolling update was not one at a time: each old container must stop only
/// after the replacement before it became healthy. Empty when the update kept that.
pub fn out_of_turn(times: &[ReplacementTimes]) -> Vec<String> {
    times
        .windows(2)
        .filter_map(|pair| {
            let (previous, next) = (&pair[0], &pair[1]);
            match previous.healthy_at {
                Some(healthy_at) if healthy_at < next.stopped_at => None,
                Some(_) => Some(format!("{} stopped before {}'s new task was healthy", next.label, previous.label)),
                None => Some(format!("{} stopped, but {}'s new task never became healthy", next.label, previous.label)),
            }
        })
        .collect()
}
