//! Operator signals into the shutdown channel.
//!
//! Why a listener task and not a handler: the handler's only job is to turn a signal into
//! a [`ShutdownReason`] on the same channel every other stop reason uses, so the run
//! loop stays the one place that decides. The listener is installed before anything is
//! opened, so a signal in any phase is honoured. A second SIGTERM/SIGINT means the
//! operator will not wait: the `on_second_signal` callback logs what is still running
//! and exits at once. SIGHUP never terminates the process: what it means is the
//! caller's `on_hangup` (the node restarts its indexer in-process).

use tokio::signal::unix::{SignalKind, signal};

use crate::{LifecycleSender, OperatorSignal, ShutdownReason};

/// Operator signals blocked from before `main` until the listener exists.
///
/// Why: between `exec` and the listener's installation the default action of SIGTERM
/// is to kill the process, so a stop sent in the first milliseconds would be a crash.
/// Blocked signals stay pending and are delivered to the listener once
/// [`DeferredSignals::release`] unblocks them.
#[must_use = "signals stay blocked until release() is called after the listener is installed"]
pub struct DeferredSignals {
    set: libc::sigset_t,
}

const DEFERRED: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// Blocks SIGTERM, SIGINT and SIGHUP on the calling thread (and every thread it
/// spawns afterwards). Call before the runtime exists: from an ELF constructor, and
/// again in `main` to hold the [`DeferredSignals`] that releases them.
pub fn defer_operator_signals() -> DeferredSignals {
    // SAFETY: sigemptyset/sigaddset initialise a local set; pthread_sigmask only changes
    // this thread's mask. No memory is shared.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in DEFERRED {
            libc::sigaddset(&mut set, signal);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        DeferredSignals { set }
    }
}

impl DeferredSignals {
    /// Unblocks the signals on this thread; pending ones are delivered now.
    pub fn release(self) {
        // SAFETY: restores this thread's mask for the signals blocked above.
        unsafe {
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &self.set, std::ptr::null_mut());
        }
    }
}

/// A repeat of the first signal within this window is one delivery, not a second request.
const DUPLICATE_SIGNAL_WINDOW: std::time::Duration = std::time::Duration::from_millis(100);

fn log_first(signal: OperatorSignal) {
    // Exact, stable messages: operators grep for them to confirm the graceful path.
    match signal {
        OperatorSignal::Terminate => tracing::warn!("SIGTERM received, initiating graceful shutdown"),
        OperatorSignal::Interrupt => tracing::warn!("SIGINT received, initiating graceful shutdown"),
    }
}

/// Installs SIGTERM, SIGINT and SIGHUP listeners on the current runtime. Registration
/// happens before this returns, so no signal sent after it can take the default
/// (terminating) action. The first SIGTERM/SIGINT becomes a shutdown request on
/// `sender`; a second one calls `on_second_signal`; every SIGHUP calls `on_hangup`.
/// The listener runs until the runtime ends: once installed, the process never goes
/// back to the default (terminating) disposition.
pub fn install_signal_listener(
    sender: LifecycleSender,
    on_second_signal: impl Fn(OperatorSignal) + Send + Sync + 'static,
    on_hangup: impl Fn() + Send + Sync + 'static,
) -> std::io::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        let mut shutdown_requested: Option<(OperatorSignal, std::time::Instant)> = None;
        loop {
            let received = tokio::select! {
                Some(()) = terminate.recv() => OperatorSignal::Terminate,
                Some(()) = interrupt.recv() => OperatorSignal::Interrupt,
                Some(()) = hangup.recv() => {
                    on_hangup();
                    continue;
                }
                else => return,
            };
            if let Some((first, at)) = shutdown_requested {
                // Some tools deliver one stop twice within microseconds (GNU `timeout`
                // signals the child and then its process group). A person cannot repeat
                // a signal that fast, so a duplicate inside the window is not a second
                // request.
                if first == received && at.elapsed() < DUPLICATE_SIGNAL_WINDOW {
                    tracing::debug!(signal = received.name(), "duplicate delivery of the first signal ignored");
                    continue;
                }
                tracing::error!(signal = received.name(), "second signal received during shutdown, forcing exit");
                on_second_signal(received);
                continue;
            }
            shutdown_requested = Some((received, std::time::Instant::now()));
            log_first(received);
            sender.shutdown(ShutdownReason::Signal { signal: received });
        }
    });
    Ok(())
}
