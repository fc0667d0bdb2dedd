//! Supervised tasks: a `TaskTracker` plus names, states and child tokens.
//!
//! Why: a shutdown that waits on anonymous tasks can only say "something is stuck".
//! Every long-lived task is spawned here under a name with a child token of the
//! supervisor's token; a task that returns an error or panics becomes a request on the
//! shutdown channel (a [`ShutdownReason::TaskFailed`], or a restart request for a
//! supervisor built with [`OnTaskFailure::Restart`]), and a task that ignores
//! cancellation can be named in the report and aborted.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{LifecycleSender, ShutdownReason};

/// What a task failure (error or panic) turns into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTaskFailure {
    /// A [`ShutdownReason::TaskFailed`]: the node stops (exit 1).
    ShutDown,
    /// A restart request (after a failure): the receiver restarts the subsystem the
    /// supervisor belongs to, under its restart policy.
    Restart,
}

/// State of a supervised task.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
pub enum TaskState {
    /// Still running.
    Running,
    /// Returned an error or panicked.
    Failed(String),
    /// Aborted because it did not stop by the deadline.
    Aborted,
}

/// A snapshot of one task, for diagnostics.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskInfo {
    /// Task name ("monitor_tee_accounts").
    pub name: String,
    /// Its state.
    pub state: TaskState,
    /// When it entered that state, seconds since the Unix epoch.
    pub since_unix_s: f64,
}

struct TaskEntry {
    name: String,
    state: TaskState,
    since: SystemTime,
    abort: Option<AbortHandle>,
}

struct Inner {
    scope: String,
    tracker: TaskTracker,
    token: CancellationToken,
    failures: LifecycleSender,
    on_failure: OnTaskFailure,
    next_id: AtomicU64,
    tasks: Mutex<BTreeMap<u64, TaskEntry>>,
}

/// A set of named, supervised tasks sharing one cancellation token. Clones share the set.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

impl Supervisor {
    /// A supervisor whose tasks get child tokens of `token` and report failures to
    /// `failures` as a shutdown.
    pub fn new(scope: &str, token: CancellationToken, failures: LifecycleSender) -> Self {
        Self::with_failure_action(scope, token, failures, OnTaskFailure::ShutDown)
    }

    /// Like [`Supervisor::new`], choosing what a failure turns into.
    pub fn with_failure_action(
        scope: &str,
        token: CancellationToken,
        failures: LifecycleSender,
        on_failure: OnTaskFailure,
    ) -> Self {
        Supervisor {
            inner: Arc::new(Inner {
                scope: scope.to_owned(),
                tracker: TaskTracker::new(),
                token,
                failures,
                on_failure,
                next_id: AtomicU64::new(0),
                tasks: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    fn tasks(&self) -> MutexGuard<'_, BTreeMap<u64, TaskEntry>> {
        self.inner.tasks.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Spawns `make(child_token)` on the current runtime under `name`.
    pub fn spawn<F, Fut, E>(&self, name: &str, make: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let task = tokio::spawn(make(self.inner.token.child_token()));
        self.tasks().insert(
            id,
            TaskEntry {
                name: name.to_owned(),
                state: TaskState::Running,
                since: SystemTime::now(),
                abort: Some(task.abort_handle()),
            },
        );
        let supervisor = self.clone();
        let name = name.to_owned();
        self.inner.tracker.spawn(async move {
            let failure = match task.await {
                Ok(Ok(())) => None,
                Ok(Err(err)) => Some(err.to_string()),
                Err(join_error) if join_error.is_panic() => Some(format!("panicked: {}", panic_message(join_error))),
                Err(_) => {
                    supervisor.set_state(id, TaskState::Aborted);
                    return;
                }
            };
            match failure {
                None => {
                    supervisor.tasks().remove(&id);
                }
                Some(error) => {
                    tracing::error!(scope = %supervisor.inner.scope, task = %name, %error, "supervised task failed");
                    supervisor.set_state(id, TaskState::Failed(error.clone()));
                    match supervisor.inner.on_failure {
                        OnTaskFailure::ShutDown => {
                            supervisor.inner.failures.shutdown(ShutdownReason::TaskFailed { task: name, error })
                        }
                        OnTaskFailure::Restart => {
                            supervisor.inner.failures.restart_after_failure(&format!("task {name} failed: {error}"))
                        }
                    }
                }
            }
        });
    }

    fn set_state(&self, id: u64, state: TaskState) {
        if let Some(entry) = self.tasks().get_mut(&id) {
            entry.state = state;
            entry.since = SystemTime::now();
            entry.abort = None;
        }
    }

    /// Names of the tasks still running.
    pub fn running(&self) -> Vec<String> {
        self.tasks()
            .values()
            .filter(|entry| entry.state == TaskState::Running)
            .map(|entry| entry.name.clone())
            .collect()
    }

    /// Every task still known (running, failed or aborted).
    pub fn snapshot(&self) -> Vec<TaskInfo> {
        self.tasks()
            .values()
            .map(|entry| TaskInfo {
                name: entry.name.clone(),
                state: entry.state.clone(),
                since_unix_s: entry
                    .since
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0),
            })
            .collect()
    }

    /// Cancels every task's token.
    pub fn cancel(&self) {
        self.inner.token.cancel();
    }

    /// Waits up to `timeout` for every task to finish; true if they all did. Every second
    /// it waits it logs the tasks still running, so a slow drain says what it waits for.
    pub async fn wait(&self, timeout: Duration) -> bool {
        self.inner.tracker.close();
        let started = tokio::time::Instant::now();
        loop {
            let slice = timeout.saturating_sub(started.elapsed()).min(Duration::from_secs(1));
            if tokio::time::timeout(slice, self.inner.tracker.wait()).await.is_ok() {
                return true;
            }
            if started.elapsed() >= timeout {
                return false;
            }
            tracing::info!(
                scope = %self.inner.scope,
                waited_s = started.elapsed().as_secs(),
                tasks = ?self.running(),
                "waiting for tasks to stop"
            );
        }
    }

    /// Aborts the tasks still running and returns their names (for the report).
    pub fn abort_running(&self) -> Vec<String> {
        let tasks = self.tasks();
        let mut aborted = Vec::new();
        for entry in tasks.values().filter(|entry| entry.state == TaskState::Running) {
            if let Some(abort) = &entry.abort {
                abort.abort();
            }
            tracing::warn!(scope = %self.inner.scope, task = %entry.name, "aborting task that did not stop by the deadline");
            aborted.push(entry.name.clone());
        }
        aborted
    }
}

fn panic_message(join_error: tokio::task::JoinError) -> String {
    let payload = join_error.into_panic();
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LifecycleRequest, lifecycle_channel};

    #[tokio::test]
    async fn a_failed_task_becomes_its_configured_request_and_a_stuck_one_is_named_and_aborted() {
        let (sender, mut receiver) = lifecycle_channel();
        let node = Supervisor::new("node", CancellationToken::new(), sender.clone());
        node.spawn("failing", |_cancel| async { Err::<(), _>("boom") });
        match receiver.recv().await {
            Some(LifecycleRequest::Shutdown(ShutdownReason::TaskFailed { task, error })) => {
                assert_eq!((task.as_str(), error.as_str()), ("failing", "boom"));
            }
            other => panic!("expected TaskFailed, got {other:?}"),
        }

        let indexer =
            Supervisor::with_failure_action("indexer", CancellationToken::new(), sender, OnTaskFailure::Restart);
        indexer.spawn("monitor", |_cancel| async { Err::<(), _>("view failed") });
        assert!(matches!(receiver.recv().await, Some(LifecycleRequest::Restart { after_failure: true, .. })));

        indexer.spawn("polite", |cancel: CancellationToken| async move {
            cancel.cancelled().await;
            Ok::<(), String>(())
        });
        indexer.spawn("stuck", |_cancel| async {
            std::future::pending::<()>().await;
            Ok::<(), String>(())
        });
        indexer.cancel();
        assert!(!indexer.wait(Duration::from_millis(50)).await, "the stuck task must hold the wait");
        assert_eq!(indexer.running(), vec!["stuck".to_owned()]);
        assert_eq!(indexer.abort_running(), vec!["stuck".to_owned()]);
        assert!(indexer.wait(Duration::from_secs(5)).await);
        assert!(indexer.snapshot().iter().any(|task| task.name == "stuck" && task.state == TaskState::Aborted));
    }
}
