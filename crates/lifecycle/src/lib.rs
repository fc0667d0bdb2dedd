//! Lifecycle plumbing shared by the node and the indexer, with no knowledge of either.
//!
//! Every reason to stop (an operator signal, a revoked image hash, an indexer exit, a
//! failed task, an admin request) becomes a [`ShutdownReason`] sent into one channel
//! ([`lifecycle_channel`]), as does every request for an in-process restart; the
//! receiver (the node's run loop) decides what each one does. Shutdowns and restarts
//! are timed phase by phase with [`PhaseTimings`]; a shutdown's [`ShutdownReport`]
//! carries the exit code its reason maps to. Named tasks run under a [`Supervisor`],
//! bounded by a shared [`Deadline`].

mod channel;
mod deadline;
mod exit_code;
mod phase;
mod readable;
mod reason;
mod report;
mod signals;
mod supervisor;

pub use channel::{LifecycleReceiver, LifecycleRequest, LifecycleSender, lifecycle_channel};
pub use deadline::Deadline;
pub use exit_code::ExitCode;
pub use phase::{LifecyclePhase, PhaseTracker};
pub use readable::{millis, three_decimals};
pub use reason::{OperatorSignal, ShutdownReason};
pub use report::{PhaseOutcome, PhaseTiming, PhaseTimings, RestartReport, Sequence, ShutdownReport};
pub use signals::{DeferredSignals, defer_operator_signals, install_signal_listener};
pub use supervisor::{OnTaskFailure, Supervisor, TaskInfo, TaskState};
