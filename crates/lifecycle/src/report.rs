//! The summary of one shutdown (or in-process restart), logged as the last line.

use std::time::Duration;

use crate::ShutdownReason;

/// How long one phase of the sequence took and whether it finished in time.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PhaseTiming {
    /// Stable phase name ("cancel_root_token", "drain_tasks", ...).
    pub phase: &'static str,
    /// Wall time spent, milliseconds.
    pub duration_ms: f64,
    /// False when the phase hit its bound and had to be escalated.
    pub completed: bool,
    /// What the phase was still waiting for when it gave up, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Everything an operator needs to know about a shutdown, in one line of JSON.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ShutdownReport {
    /// Why the shutdown began.
    pub reason: ShutdownReason,
    /// Phases in order.
    pub phases: Vec<PhaseTiming>,
    /// Total wall time of the sequence, milliseconds.
    pub total_ms: f64,
    /// Tasks that ignored cancellation and were aborted.
    pub aborted_tasks: Vec<String>,
    /// Anything else that did not stop in time (the indexer thread, ...).
    pub not_stopped: Vec<String>,
    /// Stores still open at the end, with their holders.
    pub holders_alive: Vec<String>,
    /// RocksDB instances still open at the end; 0 after a clean shutdown.
    pub final_instance_count: usize,
    /// The process exit code.
    pub exit_code: i32,
}

impl ShutdownReport {
    /// An empty report for `reason`; phases are added as they run.
    pub fn new(reason: ShutdownReason) -> Self {
        ShutdownReport {
            exit_code: reason.exit_code().0,
            reason,
            phases: Vec::new(),
            total_ms: 0.0,
            aborted_tasks: Vec::new(),
            not_stopped: Vec::new(),
            holders_alive: Vec::new(),
            final_instance_count: 0,
        }
    }

    /// Records one phase and logs its stable line.
    pub fn record(&mut self, phase: &'static str, duration: Duration, completed: bool, detail: Option<String>) {
        let duration_ms = crate::millis(duration);
        if completed {
            tracing::info!(phase, duration_ms, "shutdown phase done");
        } else {
            tracing::warn!(phase, duration_ms, detail = detail.as_deref().unwrap_or(""), "shutdown phase overran its deadline");
        }
        self.phases.push(PhaseTiming { phase, duration_ms, completed, detail });
    }

    /// True when any phase overran and the stop was forced.
    pub fn was_forced(&self) -> bool {
        self.phases.iter().any(|phase| !phase.completed)
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|err| format!("{{\"error\":\"{err}\"}}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OperatorSignal;

    #[test]
    fn an_overrun_phase_marks_the_report_forced_and_the_json_carries_every_field() {
        let mut report = ShutdownReport::new(ShutdownReason::Signal { signal: OperatorSignal::Terminate });
        report.record("cancel_root_token", Duration::from_nanos(21_995), true, None);
        assert!(!report.was_forced());
        assert_eq!(report.phases[0].duration_ms, 0.022);
        report.record("join_indexer_thread", Duration::from_secs(1), false, Some("monitor".into()));
        assert!(report.was_forced());
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["reason"]["kind"], "signal");
        assert_eq!(json["exit_code"], 0);
        assert_eq!(json["phases"][1]["completed"], false);
        assert_eq!(json["phases"][1]["detail"], "monitor");
        assert!(json["phases"][0].get("detail").is_none());
    }
}
