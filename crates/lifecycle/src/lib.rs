//! Lifecycle plumbing shared by the node and the indexer.
//!
//! Every reason to stop (an operator signal, a revoked image hash, an indexer exit, a
//! failed task, an admin request) becomes a [`ShutdownReason`] sent into one channel
//! ([`shutdown_channel`]); the run loop has exactly one `select!` that receives it, and
//! then runs one shutdown sequence, timed phase by phase into a [`ShutdownReport`]
//! whose reason maps straight to the process exit code.

mod channel;
mod deadline;
mod exit_code;
mod phase;
mod readable;
mod reason;
mod report;
mod signals;
mod supervisor;

pub use channel::{LifecycleRequest, ShutdownReceiver, ShutdownSender, shutdown_channel};
pub use deadline::Deadline;
pub use readable::{millis, three_decimals};
pub use exit_code::ExitCode;
pub use phase::{LifecyclePhase, PhaseTracker};
pub use reason::{OperatorSignal, ShutdownReason};
pub use report::{PhaseTiming, ShutdownReport};
pub use signals::{DeferredSignals, SignalListener, defer_operator_signals, install_signal_listener};
pub use supervisor::{OnTaskFailure, Supervisor, TaskInfo, TaskState};
