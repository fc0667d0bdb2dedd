//! Data wipe: the operator writes a new token into `<home>/data-wipe-token`, and the
//! node wipes its chain data once, in place, as upstream's data wipe does.
//!
//! A wipe is applied by an in-process restart (between stopping one generation and
//! starting the next) or, when one is pending at start, before the first generation.
//! Each step is crash-safe: the chain store is renamed aside durably, the token is
//! recorded in the node store, then the set-aside copy is deleted. An interrupted wipe
//! leaves `data.wiping`, which the next start removes ([`finish_interrupted_wipe`]).

use std::convert::Infallible;
use std::time::Duration;

use mpc_store::{Column, KeptStore, Store, StoreHolder, StoreUpdate};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::NodeError;
use crate::home::Home;

/// Key in the node store's `Misc` column of the last applied data-wipe token.
pub const APPLIED_WIPE_TOKEN_KEY: &[u8] = b"applied_data_wipe_token";

/// How often the token file is read.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Wipes `<home>/data` (rename aside, record the token durably, delete). The next
/// generation creates a new chain store crash-atomically.
pub fn wipe_chain_data(home: &Home, node_store: &Store, token: &str) -> Result<(), NodeError> {
    let (data, wiping) = (home.chain_data(), home.chain_data_wiping());
    if data.exists() {
        mpc_store::directories::rename_durably(&data, &wiping)?;
        mpc_store::crash_points::reached("wipe:data_set_aside", "chain");
    }
    record_applied_wipe_token(node_store, token)?;
    mpc_store::crash_points::reached("wipe:token_recorded", "chain");
    finish_interrupted_wipe(home)?;
    tracing::warn!(token, "chain data wiped");
    Ok(())
}

/// Removes what an interrupted wipe left behind.
pub fn finish_interrupted_wipe(home: &Home) -> Result<(), NodeError> {
    let wiping = home.chain_data_wiping();
    if wiping.exists() {
        std::fs::remove_dir_all(&wiping)
            .map_err(|err| NodeError::home_file(format!("cannot remove {}", wiping.display()), err))?;
    }
    Ok(())
}

fn record_applied_wipe_token(store: &Store, token: &str) -> mpc_store::StoreResult<()> {
    let mut update = StoreUpdate::new();
    update.put(Column::Misc, APPLIED_WIPE_TOKEN_KEY, token.as_bytes());
    store.commit(update)?;
    store.flush()
}

/// The data-wipe token last applied, if any.
pub fn applied_wipe_token(store: &Store) -> Option<String> {
    store.get(Column::Misc, APPLIED_WIPE_TOKEN_KEY).ok().flatten().and_then(|bytes| String::from_utf8(bytes).ok())
}

/// The operator's data-wipe token, if the file holds one.
fn configured_wipe_token(home: &Home) -> Option<String> {
    let configured = std::fs::read_to_string(home.data_wipe_token()).ok()?.trim().to_owned();
    (!configured.is_empty()).then_some(configured)
}

/// The operator's data-wipe token when it differs from the one last applied.
fn pending_wipe_token(home: &Home, store: &Store) -> Option<String> {
    let configured = configured_wipe_token(home)?;
    (applied_wipe_token(store).as_deref() != Some(configured.as_str())).then_some(configured)
}

/// Finishes an interrupted wipe and applies a pending one before the first generation
/// starts: a node stopped or killed before its wipe finished completes it at the next
/// start, before it indexes anything. A chain store opened ahead of the first
/// generation (see [`wipe_may_be_due_at_start`]) is closed before it is wiped.
pub fn finish_wipes_at_start(home: &Home, store: &Store, chain_store: &KeptStore) -> Result<(), NodeError> {
    finish_interrupted_wipe(home)?;
    match pending_wipe_token(home, store) {
        Some(token) => {
            tracing::warn!(token = %token, "data-wipe token pending at start, wiping before the indexer starts");
            // A token written after start-up looked for one: the store was opened ahead
            // and nothing but the slot holds it, so the release closes it here.
            chain_store.release();
            wipe_chain_data(home, store, &token)
        }
        None => Ok(()),
    }
}

/// Whether this start may have to wipe the chain data before the first generation (an
/// operator's token, applied or not, or an interrupted wipe): then the chain store is
/// not opened ahead, since a store that needs a wipe may not even open. Which token was
/// applied is in the node store, not open yet when start-up asks.
pub fn wipe_may_be_due_at_start(home: &Home) -> bool {
    home.chain_data_wiping().exists() || configured_wipe_token(home).is_some()
}

/// Polls `<home>/data-wipe-token` and sends each new token (one that differs from the
/// one last applied and was not sent yet) to the run loop, which wipes by restarting.
pub async fn watch_data_wipe_token(
    home: Home,
    node_store: StoreHolder,
    wipe_requests: mpsc::UnboundedSender<String>,
    cancel: CancellationToken,
) -> Result<(), Infallible> {
    let mut requested: Option<String> = None;
    loop {
        let pending = pending_wipe_token(&home, &node_store);
        if let Some(token) = pending.filter(|token| requested.as_deref() != Some(token.as_str())) {
            tracing::warn!(token = %token, "data-wipe token changed");
            requested = Some(token.clone());
            if wipe_requests.send(token).is_err() {
                return Ok(());
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
        }
    }
}
