//! Phase timings of a shutdown or an in-process restart, and the summary of each.
//!
//! Why one type for both: an operator comparing the last restart with the last stop
//! reads the same phase names, units and fields, and the code times a phase the same
//! way in both (`timings.phase("join_indexer_thread", future)`).

use std::future::Future;
use std::time::{Duration, Instant};

use crate::ShutdownReason;

/// Which sequence the phases belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sequence {
    /// The shutdown sequence: the process exits after it.
    Shutdown,
    /// An in-process restart of the restartable subsystem.
    Restart,
}

/// How long one phase took and whether it finished in time.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PhaseTiming {
    /// Stable phase name ("cancel_root_token", "join_indexer_thread", ...).
    pub phase: &'static str,
    /// Wall time spent, milliseconds (three decimals).
    pub duration_ms: f64,
    /// False when the phase hit its bound and had to be escalated.
    pub completed: bool,
    /// What the phase was still waiting for when it gave up, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What a timed phase's work returns: whether the phase finished, and if not, why.
pub trait PhaseOutcome {
    /// `Some(detail)` when the phase did not finish (it overran its bound or failed);
    /// an empty detail is left out of the report.
    fn unfinished(&self) -> Option<String> {
        None
    }
}

impl PhaseOutcome for () {}

impl PhaseOutcome for bool {
    /// `false` means the bounded wait gave up.
    fn unfinished(&self) -> Option<String> {
        (!*self).then(String::new)
    }
}

impl<T, E: std::fmt::Display> PhaseOutcome for Result<T, E> {
    /// An `Err` is a phase that did not finish; the error is the detail.
    fn unfinished(&self) -> Option<String> {
        self.as_ref().err().map(ToString::to_string)
    }
}

/// The phases of one sequence, in order, each logged as it ends.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PhaseTimings {
    /// Shutdown or restart.
    pub kind: Sequence,
    /// Phases in order.
    pub phases: Vec<PhaseTiming>,
    /// Wall time from the start of the sequence to [`PhaseTimings::finish`], milliseconds.
    pub total_ms: f64,
    #[serde(skip)]
    started: Instant,
}

impl PhaseTimings {
    /// Starts timing a sequence now.
    pub fn start(kind: Sequence) -> Self {
        PhaseTimings { kind, phases: Vec::new(), total_ms: 0.0, started: Instant::now() }
    }

    /// Runs `work` as the phase `name`, records how long it took and whether it
    /// finished, and hands back its result.
    pub async fn phase<T: PhaseOutcome>(&mut self, name: &'static str, work: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let outcome = work.await;
        self.record(name, started.elapsed(), outcome.unfinished());
        outcome
    }

    /// Records a phase timed elsewhere (on another thread) and logs its stable line.
    pub fn record(&mut self, phase: &'static str, duration: Duration, unfinished: Option<String>) {
        let duration_ms = crate::millis(duration);
        let completed = unfinished.is_none();
        let detail = unfinished.filter(|detail| !detail.is_empty());
        let shown = detail.as_deref().unwrap_or("");
        match (self.kind, completed) {
            (Sequence::Shutdown, true) => tracing::info!(phase, duration_ms, "shutdown phase done"),
            (Sequence::Shutdown, false) => {
                tracing::warn!(phase, duration_ms, detail = shown, "shutdown phase overran its deadline")
            }
            (Sequence::Restart, true) => tracing::info!(phase, duration_ms, "restart phase done"),
            (Sequence::Restart, false) => {
                tracing::warn!(phase, duration_ms, detail = shown, "restart phase did not finish")
            }
        }
        self.phases.push(PhaseTiming { phase, duration_ms, completed, detail });
    }

    /// Time since the sequence started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Sets the total; call once, when the sequence is over.
    pub fn finish(&mut self) {
        self.total_ms = crate::millis(self.started.elapsed());
    }

    /// True when any phase overran and had to be forced.
    pub fn was_forced(&self) -> bool {
        self.phases.iter().any(|phase| !phase.completed)
    }
}

/// Everything an operator needs to know about a shutdown, in one line of JSON.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ShutdownReport {
    /// Why the shutdown began.
    pub reason: ShutdownReason,
    /// The phases (`kind`, `phases`, `total_ms`).
    #[serde(flatten)]
    pub timings: PhaseTimings,
    /// Tasks that ignored cancellation and were aborted.
    pub aborted_tasks: Vec<String>,
    /// Anything else that did not stop in time (the indexer thread, ...).
    pub not_stopped: Vec<String>,
    /// Signing protocols still running at the signing side's bound, abandoned by
    /// design (their signatures are made again by the network); not a forced stop.
    pub abandoned_protocols: Vec<String>,
    /// Stores still open at the end, with their holders.
    pub holders_alive: Vec<String>,
    /// RocksDB instances still open at the end; 0 after a clean shutdown.
    pub final_instance_count: usize,
    /// The process exit code.
    pub exit_code: i32,
}

impl ShutdownReport {
    /// An empty report for `reason`, timing from now; phases are added as they run.
    pub fn new(reason: ShutdownReason) -> Self {
        ShutdownReport {
            exit_code: reason.exit_code().0,
            reason,
            timings: PhaseTimings::start(Sequence::Shutdown),
            aborted_tasks: Vec::new(),
            not_stopped: Vec::new(),
            abandoned_protocols: Vec::new(),
            holders_alive: Vec::new(),
            final_instance_count: 0,
        }
    }

    /// True when any phase overran or something did not stop: the stop was forced.
    pub fn was_forced(&self) -> bool {
        self.timings.was_forced() || !self.not_stopped.is_empty()
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|err| format!("{{\"error\":\"{err}\"}}"))
    }
}

/// The summary of one in-process restart: the same phase timings as a shutdown.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RestartReport {
    /// Why the restart happened.
    pub why: String,
    /// The phases (`kind`, `phases`, `total_ms`).
    #[serde(flatten)]
    pub timings: PhaseTimings,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OperatorSignal;

    #[tokio::test]
    async fn an_overrun_phase_marks_the_report_forced_and_the_json_carries_every_field() {
        let mut report = ShutdownReport::new(ShutdownReason::Signal { signal: OperatorSignal::Terminate });
        report.timings.record("cancel_root_token", Duration::from_nanos(21_995), None);
        assert!(!report.was_forced());
        assert_eq!(report.timings.phases[0].duration_ms, 0.022);
        let joined = report.timings.phase("join_indexer_thread", async { false }).await;
        assert!(!joined);
        let failed: Result<(), String> =
            report.timings.phase("close_node_store", async { Err("disk gone".into()) }).await;
        assert!(failed.is_err());
        assert!(report.was_forced());
        report.timings.record("wait_for_rocksdb_instances", Duration::from_secs(1), Some("node held by [x]".into()));
        report.timings.finish();
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["kind"], "shutdown");
        assert_eq!(json["reason"]["kind"], "signal");
        assert_eq!(json["exit_code"], 0);
        assert_eq!(json["phases"][1]["phase"], "join_indexer_thread");
        assert_eq!(json["phases"][1]["completed"], false);
        assert!(json["phases"][1].get("detail").is_none(), "an empty detail is left out");
        assert_eq!(json["phases"][2]["detail"], "disk gone", "a failed phase carries its error");
        assert_eq!(json["phases"][3]["detail"], "node held by [x]");
        assert!(json["phases"][0].get("detail").is_none());
        assert!(json["total_ms"].as_f64().unwrap() >= 0.0);
    }

    #[tokio::test]
    async fn a_restart_reports_its_phases_like_a_shutdown() {
        let mut timings = PhaseTimings::start(Sequence::Restart);
        timings.phase("join_indexer_thread", async {}).await;
        timings.finish();
        let report = RestartReport { why: "SIGHUP".into(), timings };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["kind"], "restart");
        assert_eq!(json["why"], "SIGHUP");
        assert_eq!(json["phases"][0]["phase"], "join_indexer_thread");
        assert_eq!(json["phases"][0]["completed"], true);
    }
}
