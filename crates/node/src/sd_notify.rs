//! systemd's notification protocol (`sd_notify`), without libsystemd.
//!
//! When systemd starts the node with `Type=notify` it sets `NOTIFY_SOCKET`; the node
//! sends `READY=1` once ready, `STOPPING=1` when shutdown begins,
//! `EXTEND_TIMEOUT_USEC=...` while a long migration or shutdown phase runs, and
//! `WATCHDOG=1` at half of `WATCHDOG_USEC` when the unit sets a watchdog. Without
//! `NOTIFY_SOCKET` every call is a no-op.
//!
//! Why not the `sd-notify` crate: its 0.5 release connects `NOTIFY_SOCKET` as a
//! file-system path, so a socket in the abstract namespace (`@name`, which sd_notify(3)
//! specifies and service managers in containers use) fails, and it opens and connects
//! a new socket for every notification. The protocol is one datagram of `KEY=VALUE`
//! lines; this module sends it on one socket made at start, to either kind of address.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// A connection to the service manager's notification socket.
#[derive(Clone)]
pub struct Notifier {
    target: Option<std::sync::Arc<(UnixDatagram, SocketAddr)>>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace).
    pub fn from_environment() -> Self {
        match std::env::var("NOTIFY_SOCKET") {
            Ok(socket) => Self::for_socket(&socket),
            Err(_) => Notifier { target: None },
        }
    }

    /// A notifier for the socket `socket` names: a path, or `@name` for the abstract
    /// namespace. An address that cannot be used gives a notifier that sends nothing.
    fn for_socket(socket: &str) -> Self {
        let address = if let Some(name) = socket.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())
        } else {
            SocketAddr::from_pathname(socket)
        };
        let target = match (address, UnixDatagram::unbound()) {
            (Ok(address), Ok(datagram)) => Some(std::sync::Arc::new((datagram, address))),
            (address, datagram) => {
                let error = address.err().or(datagram.err()).map(|err| err.to_string()).unwrap_or_default();
                tracing::warn!(socket, %error, "NOTIFY_SOCKET unusable; no notifications will be sent");
                None
            }
        };
        Notifier { target }
    }

    /// Sends one notification; failures are logged, never fatal.
    pub fn notify(&self, state: &str) {
        if let Some(target) = &self.target
            && let Err(err) = target.0.send_to_addr(state.as_bytes(), &target.1)
        {
            tracing::warn!(error = %err, state, "sd_notify failed");
        }
    }

    /// Asks the service manager for `extra` more time for the current start or stop.
    pub fn extend_timeout(&self, extra: Duration) {
        self.notify(&format!("EXTEND_TIMEOUT_USEC={}", extra.as_micros()));
    }

    /// The watchdog ping interval: half of `WATCHDOG_USEC`, if the unit sets one for us.
    pub fn watchdog_interval() -> Option<Duration> {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        if let Some(pid) = std::env::var("WATCHDOG_PID").ok().and_then(|pid| pid.parse::<u32>().ok())
            && pid != std::process::id()
        {
            return None;
        }
        (usec > 0).then(|| Duration::from_micros(usec / 2))
    }
}

/// How much more start-up time each extension during a migration asks for; renewed
/// every second while the migration runs.
const MIGRATION_EXTENSION: Duration = Duration::from_secs(5);

/// Follows the lifecycle phase: `READY=1` on ready, `STOPPING=1` on shutdown,
/// `EXTEND_TIMEOUT_USEC` every second of a migration, and watchdog pings.
pub async fn follow_phase(
    notifier: Notifier,
    mut phase: tokio::sync::watch::Receiver<mpc_lifecycle::LifecyclePhase>,
    cancel: tokio_util::sync::CancellationToken,
) -> Result<(), std::convert::Infallible> {
    use mpc_lifecycle::LifecyclePhase;
    let watchdog = Notifier::watchdog_interval();
    let mut tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(1)).min(Duration::from_secs(1)));
    let mut last_watchdog = std::time::Instant::now();
    let mut announced = None;
    loop {
        let current = *phase.borrow_and_update();
        let changed = announced.replace(current) != Some(current);
        match current {
            _ if !changed => {}
            LifecyclePhase::Ready => notifier.notify("READY=1\nSTATUS=indexing"),
            LifecyclePhase::Migrating => {
                notifier.notify("STATUS=migrating the node store");
                notifier.extend_timeout(MIGRATION_EXTENSION);
            }
            LifecyclePhase::Restarting => notifier.notify("STATUS=restarting the indexer"),
            _ => {}
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            changed = phase.changed() => if changed.is_err() { return Ok(()) },
            _ = tick.tick() => {
                if current == LifecyclePhase::Migrating {
                    notifier.extend_timeout(MIGRATION_EXTENSION);
                }
                if let Some(interval) = watchdog && last_watchdog.elapsed() >= interval {
                    notifier.notify("WATCHDOG=1");
                    last_watchdog = std::time::Instant::now();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A notification reaches a socket in the abstract namespace (`@name`) as well as
    /// one bound to a path.
    #[test]
    fn notifications_reach_an_abstract_socket_and_a_path() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("mpc-node-notify-test-{}", std::process::id());
        let abstract_socket =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let path_socket = UnixDatagram::bind(&path).unwrap();
        for (socket, listener) in [(format!("@{name}"), &abstract_socket), (path.display().to_string(), &path_socket)] {
            Notifier::for_socket(&socket).notify("READY=1\nSTATUS=indexing");
            let mut buffer = [0u8; 64];
            let received = listener.recv(&mut buffer).unwrap();
            assert_eq!(&buffer[..received], b"READY=1\nSTATUS=indexing", "{socket}");
        }
    }
}
