//! The one seam for the process tests' fault hooks.
//!
//! Why one seam: a hook read from the environment deep inside a loop is a production
//! path that behaves differently under a variable nobody documents. Here every hook is
//! read once, in `main`, into [`TestHooks`], which is handed down explicitly to what it
//! affects. Without feature `test-hooks` the type has no fields and every hook is a
//! no-op, so a release build cannot be made to misbehave.

#[cfg(feature = "test-hooks")]
use std::time::Duration;

use mpc_indexer::IndexerTestHooks;

use crate::error::NodeError;

/// Fault hooks of one process, read once at start.
#[derive(Debug, Clone, Default)]
pub struct TestHooks {
    /// `MPC_TEST_DISABLE_SIGNAL_HANDLER=1`: no signal listener, so a SIGTERM kills the
    /// process the default way (proves the SIGTERM tests fail without the handler).
    #[cfg(feature = "test-hooks")]
    disable_signal_handler: bool,
    /// `MPC_TEST_HOLD_AFTER_NODE_STORE_OPEN_MS=N`: start-up pauses N ms right after the
    /// node store opened, so a shutdown can land exactly there.
    #[cfg(feature = "test-hooks")]
    hold_after_node_store_open: Option<Duration>,
    /// `MPC_TEST_HANG_MONITOR=name` and `MPC_TEST_FAIL_LISTEN_AFTER_BLOCKS=N`.
    pub indexer: IndexerTestHooks,
    /// `MPC_TEST_LIE_AS_LEADER=1`.
    pub signer: mpc_signer::SignerTestHooks,
}

impl TestHooks {
    /// Reads every hook from the environment and arms the store's crash point
    /// (`MPC_TEST_CRASH_AT=POINT[@SUBJECT]`, the store's and the signing side's points);
    /// a malformed hook is a usage error.
    #[cfg(feature = "test-hooks")]
    pub fn from_environment() -> Result<Self, NodeError> {
        fn number<T: std::str::FromStr>(name: &str) -> Result<Option<T>, NodeError> {
            match std::env::var(name) {
                Ok(text) => {
                    text.parse().map(Some).map_err(|_| NodeError::Config(format!("{name}={text} is not a number")))
                }
                Err(_) => Ok(None),
            }
        }
        if let Ok(spec) = std::env::var("MPC_TEST_CRASH_AT") {
            let known = [
                mpc_store::crash_points::STORE_POINTS,
                crate::data_wipe::CRASH_POINTS,
                crate::admin_token::CRASH_POINTS,
                mpc_signer::KEY_GENERATION_CRASH_POINTS,
                mpc_signer::PRESIGNATURE_CRASH_POINTS,
            ];
            mpc_store::crash_points::arm(&spec, &known)
                .map_err(|err| NodeError::Config(format!("MPC_TEST_CRASH_AT: {err}")))?;
        }
        Ok(TestHooks {
            disable_signal_handler: std::env::var("MPC_TEST_DISABLE_SIGNAL_HANDLER").is_ok_and(|value| value == "1"),
            hold_after_node_store_open: number("MPC_TEST_HOLD_AFTER_NODE_STORE_OPEN_MS")?.map(Duration::from_millis),
            indexer: IndexerTestHooks {
                hang_monitor: std::env::var("MPC_TEST_HANG_MONITOR").ok(),
                fail_listen_after_blocks: number("MPC_TEST_FAIL_LISTEN_AFTER_BLOCKS")?,
            },
            signer: mpc_signer::SignerTestHooks::from_environment(),
        })
    }

    /// No hooks in a production build.
    #[cfg(not(feature = "test-hooks"))]
    pub fn from_environment() -> Result<Self, NodeError> {
        Ok(TestHooks::default())
    }

    /// True when the signal listener is not to be installed.
    pub fn signal_handler_disabled(&self) -> bool {
        #[cfg(feature = "test-hooks")]
        return self.disable_signal_handler;
        #[cfg(not(feature = "test-hooks"))]
        false
    }

    /// Called on the blocking thread right after the node store opened.
    pub fn after_node_store_open(&self) {
        #[cfg(feature = "test-hooks")]
        if let Some(hold) = self.hold_after_node_store_open {
            tracing::warn!(
                hold_ms = hold.as_millis() as u64,
                "test hook: holding start-up after the node store opened"
            );
            std::thread::sleep(hold);
        }
    }
}
