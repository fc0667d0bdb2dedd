//! The restart controller: what the run loop does with each thing that happens to the
//! indexer side (a restart request, a new data-wipe token, an indexer that ended on its
//! own, a start or restart that finished or failed).
//!
//! Why a separate, pure type: these are the node's rules for restarts (merge a request
//! into a restart in flight, ignore one before the indexer runs, back off after
//! failures, stop after too many), and rules are easiest to read and to test where no
//! future, channel or thread is in sight.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use mpc_indexer::IndexerError;
use mpc_lifecycle::{LifecycleRequest, ShutdownReason};

use crate::error::NodeError;
use crate::generation::IndexerExit;
use crate::restart::RestartRequest;

/// Where the run loop's indexer side is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Start-up has not handed over a running generation yet.
    Starting,
    /// A generation runs.
    Indexing,
    /// A restart is in flight.
    Restarting,
    /// No generation runs and none is being started: start-up or a restart failed.
    Failed,
}

/// Something that happened, for the controller to decide on.
#[derive(Debug)]
pub enum Event {
    /// A request from the shutdown channel (signal, admin, failed task, SIGHUP).
    Request(LifecycleRequest),
    /// The operator's data-wipe token changed.
    WipeTokenChanged(String),
    /// Start-up handed over the first generation.
    Started,
    /// Start-up failed.
    StartupFailed(NodeError),
    /// A restart started the next generation.
    Restarted,
    /// A restart could not stop the old generation or start the next.
    RestartFailed(NodeError),
    /// The current generation's indexer thread ended without being asked to.
    IndexerExited(IndexerExit),
}

/// What the run loop does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing; wait for the next event.
    Continue,
    /// Restart the indexer subsystem.
    Restart(RestartRequest),
    /// Leave the loop and run the shutdown sequence.
    ShutDown(ShutdownReason),
}

/// The restart rules and their memory (recent failures, a deferred wipe).
#[derive(Debug, Default)]
pub struct RestartController {
    policy: RestartPolicy,
    deferred_wipe: Option<RestartRequest>,
}

impl RestartController {
    /// Decides what `event` means while the indexer side is in `stage`.
    pub fn decide(&mut self, event: Event, stage: Stage) -> Decision {
        match event {
            Event::Request(LifecycleRequest::Shutdown(reason)) => Decision::ShutDown(reason),
            Event::Request(LifecycleRequest::Restart { why, after_failure }) => {
                self.requested(RestartRequest { after_failure, ..RestartRequest::new(why) }, stage)
            }
            Event::WipeTokenChanged(token) => {
                let request =
                    RestartRequest { wipe_token: Some(token), ..RestartRequest::new("data-wipe token changed") };
                self.requested(request, stage)
            }
            Event::Started | Event::Restarted => {
                self.deferred_wipe.take().map_or(Decision::Continue, Decision::Restart)
            }
            Event::StartupFailed(error) => {
                tracing::error!(%error, exit_code = error.exit_code().0, "start-up failed");
                Decision::ShutDown(error.into_startup_reason())
            }
            Event::RestartFailed(error) => {
                tracing::error!(%error, exit_code = error.exit_code().0, "restart failed");
                Decision::ShutDown(error.into_restart_reason())
            }
            Event::IndexerExited(exit) => match classify_indexer_exit(exit) {
                Err(fatal) => Decision::ShutDown(fatal),
                Ok(error) => self.after_failure(RestartRequest::new(format!("indexer failed: {error}"))),
            },
        }
    }

    /// A restart somebody asked for: merged into one in flight, ignored before the
    /// indexer runs (a wipe is kept for when it does), counted when a failure asked.
    fn requested(&mut self, request: RestartRequest, stage: Stage) -> Decision {
        match stage {
            Stage::Indexing if request.after_failure => self.after_failure(request),
            Stage::Indexing => Decision::Restart(request),
            _ if request.wipe_token.is_some() => {
                tracing::info!(why = %request.why, "wipe deferred until the indexer runs");
                self.deferred_wipe = Some(request);
                Decision::Continue
            }
            Stage::Restarting => {
                tracing::info!(why = %request.why, "restart already in progress; request merged into it");
                Decision::Continue
            }
            Stage::Starting | Stage::Failed => {
                tracing::warn!(why = %request.why, "restart requested before the indexer started; ignoring");
                Decision::Continue
            }
        }
    }

    /// The one place where failures turn into a backoff or, past the limit, a stop.
    fn after_failure(&mut self, request: RestartRequest) -> Decision {
        match self.policy.on_failure() {
            Some(backoff) => Decision::Restart(RestartRequest { backoff, after_failure: true, ..request }),
            None => Decision::ShutDown(ShutdownReason::IndexerExited {
                error: format!("{} (too many failures)", request.why),
            }),
        }
    }
}

/// Sorts an indexer thread that ended before the node asked it to: `Err` with the
/// shutdown reason when it is fatal at once (a chain store that cannot be opened, a bad
/// chain setting, a failing node store), `Ok` with the error when a restart may help (a
/// failed stream, a gap).
fn classify_indexer_exit(exit: IndexerExit) -> Result<String, ShutdownReason> {
    match exit {
        Err(_) => Ok("indexer thread ended without a result".to_owned()),
        Ok(Ok(())) => Ok("indexer stopped unexpectedly".to_owned()),
        Ok(Err(err @ IndexerError::Chain(_))) => Err(NodeError::Indexer(err).into_startup_reason()),
        Ok(Err(err @ (IndexerError::Store(_) | IndexerError::Runtime(_)))) => {
            Err(ShutdownReason::IndexerExited { error: err.to_string() })
        }
        Ok(Err(err)) => Ok(err.to_string()),
    }
}

/// Restarts after failures, with exponential backoff; too many failures within a window
/// make the failure fatal.
#[derive(Debug)]
pub struct RestartPolicy {
    failures: VecDeque<Instant>,
    max_failures: usize,
    window: Duration,
    base_backoff: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            failures: VecDeque::new(),
            max_failures: 3,
            window: Duration::from_secs(60),
            base_backoff: Duration::from_millis(250),
        }
    }
}

impl RestartPolicy {
    /// Records a failure; returns the backoff before restarting, or `None` when the
    /// failures within the window exceed the limit.
    pub fn on_failure(&mut self) -> Option<Duration> {
        let now = Instant::now();
        while self.failures.front().is_some_and(|at| now.duration_since(*at) > self.window) {
            self.failures.pop_front();
        }
        self.failures.push_back(now);
        let count = self.failures.len();
        (count <= self.max_failures).then(|| self.base_backoff.saturating_mul(1 << (count - 1).min(6)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restart(why: &str, after_failure: bool) -> Event {
        Event::Request(LifecycleRequest::Restart { why: why.into(), after_failure })
    }

    fn exited(error: IndexerError) -> Event {
        Event::IndexerExited(Ok(Err(error)))
    }

    #[test]
    fn failures_back_off_exponentially_and_a_fourth_within_the_window_is_fatal() {
        let mut policy = RestartPolicy::default();
        assert_eq!(policy.on_failure(), Some(Duration::from_millis(250)));
        assert_eq!(policy.on_failure(), Some(Duration::from_millis(500)));
        assert_eq!(policy.on_failure(), Some(Duration::from_millis(1000)));
        assert_eq!(policy.on_failure(), None, "more than 3 failures within 60 s stop the node");
    }

    #[test]
    fn failures_older_than_the_window_are_forgotten() {
        let mut policy = RestartPolicy { window: Duration::from_millis(10), ..RestartPolicy::default() };
        for _ in 0..3 {
            assert!(policy.on_failure().is_some());
        }
        std::thread::sleep(Duration::from_millis(15));
        assert_eq!(policy.on_failure(), Some(Duration::from_millis(250)), "the window starts over");
    }

    #[test]
    fn an_operator_restart_runs_at_once_is_merged_while_restarting_and_ignored_before_start() {
        let mut controller = RestartController::default();
        let Decision::Restart(request) = controller.decide(restart("SIGHUP", false), Stage::Indexing) else {
            panic!("a restart while indexing restarts");
        };
        assert_eq!((request.why.as_str(), request.backoff, request.wipe_token), ("SIGHUP", Duration::ZERO, None));
        assert_eq!(controller.decide(restart("SIGHUP", false), Stage::Restarting), Decision::Continue);
        assert_eq!(controller.decide(restart("SIGHUP", false), Stage::Starting), Decision::Continue);
        assert_eq!(controller.decide(Event::Restarted, Stage::Indexing), Decision::Continue, "nothing was kept");
    }

    #[test]
    fn a_wipe_that_arrives_while_the_indexer_is_not_running_is_applied_once_it_runs() {
        let mut controller = RestartController::default();
        assert_eq!(controller.decide(Event::WipeTokenChanged("t2".into()), Stage::Restarting), Decision::Continue);
        let Decision::Restart(request) = controller.decide(Event::Restarted, Stage::Indexing) else {
            panic!("the deferred wipe must run after the restart");
        };
        assert_eq!(request.wipe_token.as_deref(), Some("t2"));
        assert_eq!(controller.decide(Event::Restarted, Stage::Indexing), Decision::Continue, "applied once");
    }

    #[test]
    fn failures_restart_with_backoff_until_the_fourth_stops_the_node_whatever_their_source() {
        let mut controller = RestartController::default();
        let stream = || exited(IndexerError::Listen(mpc_indexer::ListenError::StreamEnded));
        let backoffs: Vec<_> = [stream(), restart("task monitor failed", true), stream()]
            .into_iter()
            .map(|event| match controller.decide(event, Stage::Indexing) {
                Decision::Restart(request) => request.backoff,
                other => panic!("expected a restart, got {other:?}"),
            })
            .collect();
        assert_eq!(backoffs, [250, 500, 1000].map(Duration::from_millis));
        match controller.decide(stream(), Stage::Indexing) {
            Decision::ShutDown(ShutdownReason::IndexerExited { error }) => {
                assert!(error.contains("too many failures"), "{error}")
            }
            other => panic!("expected a stop, got {other:?}"),
        }
    }

    #[test]
    fn only_a_wipe_or_a_failure_makes_the_restart_reopen_the_chain_store() {
        let mut controller = RestartController::default();
        let mut reopens = |event| match controller.decide(event, Stage::Indexing) {
            Decision::Restart(request) => request.reopens_chain_store(),
            other => panic!("expected a restart, got {other:?}"),
        };
        assert!(!reopens(restart("SIGHUP", false)), "an operator's restart keeps the open store");
        assert!(reopens(Event::WipeTokenChanged("t3".into())), "a wipe deletes the store");
        assert!(reopens(restart("task monitor failed", true)), "a failed task may have failed on the store");
        assert!(
            reopens(exited(IndexerError::Listen(mpc_indexer::ListenError::StreamEnded))),
            "so may the indexer thread"
        );
    }

    #[test]
    fn a_chain_config_or_store_error_is_fatal_with_its_exit_code_and_a_stream_failure_is_retried() {
        let mut controller = RestartController::default();
        let exit_code = |decision| match decision {
            Decision::ShutDown(reason) => reason.exit_code().0,
            other => panic!("expected a stop, got {other:?}"),
        };
        let config = exited(IndexerError::Chain(mpc_chain::ChainError::Config("4 shards".into())));
        assert_eq!(exit_code(controller.decide(config, Stage::Indexing)), 2);
        let locked = mpc_store::StoreError::Locked { path: "/home/data".into() };
        let chain_store =
            exited(IndexerError::Chain(mpc_chain::ChainError::Store(mpc_chain::ChainStoreError::Store(locked))));
        assert_eq!(exit_code(controller.decide(chain_store, Stage::Indexing)), 3);
        let node_store = exited(IndexerError::Store(mpc_store::StoreError::Cancelled));
        assert_eq!(exit_code(controller.decide(node_store, Stage::Indexing)), 1);
        assert!(matches!(controller.decide(Event::IndexerExited(Ok(Ok(()))), Stage::Indexing), Decision::Restart(_)));
    }

    #[test]
    fn a_failed_start_or_restart_stops_the_node_with_the_exit_code_of_its_error() {
        let mut controller = RestartController::default();
        let locked = || NodeError::Store(mpc_store::StoreError::Locked { path: "/home/node".into() });
        let Decision::ShutDown(reason) = controller.decide(Event::StartupFailed(locked()), Stage::Starting) else {
            panic!("a failed start stops the node");
        };
        assert!(matches!(reason, ShutdownReason::StartupFailed { exit_code: 3, .. }));
        let Decision::ShutDown(reason) = controller.decide(Event::RestartFailed(locked()), Stage::Failed) else {
            panic!("a failed restart stops the node");
        };
        assert!(matches!(reason, ShutdownReason::RestartFailed { exit_code: 3, .. }));
    }
}
