//! Data wipe: the operator writes a new token into `<home>/data-wipe-token`, and the
//! node wipes its chain data once, in place, as upstream's data wipe does.
//!
//! A wipe is applied by an in-process restart (between stopping one generation and
//! starting the next) or, when one is pending at start, before the first generation.
//! Each step is crash-safe: the chain store is renamed aside durably, the token is
//! recorded in the node store, then the set-aside copy is deleted. An interrupted wipe
//! leaves `data.wiping`, which the next start removes ([`finish_interrupted_wipe`]).

use std::time::Duration;

use mpc_store::{Column, OwnedStore, Store, StoreError, StoreHolder, StoreUpdate};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::NodeError;
use crate::home::Home;

/// Key in the node store's `Misc` column of the last applied data-wipe token.
pub const APPLIED_WIPE_TOKEN_KEY: &[u8] = b"applied_data_wipe_token";

/// The crash points of a wipe (feature `test-hooks`, see `mpc_store::crash_points`):
/// the chain store renamed aside, the applied token recorded.
#[cfg(feature = "test-hooks")]
pub const CRASH_POINTS: &[&str] = &["wipe:data_set_aside", "wipe:token_recorded"];

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

/// The data-wipe token last applied, if any. A failed read is an error, never "no
/// token": with a token file present, "not applied yet" means "wipe the chain data".
pub fn applied_wipe_token(store: &Store) -> Result<Option<String>, StoreError> {
    match store.get(Column::Misc, APPLIED_WIPE_TOKEN_KEY)? {
        None => Ok(None),
        Some(bytes) => String::from_utf8(bytes).map(Some).map_err(|err| StoreError::Decode {
            path: store.path().to_path_buf(),
            what: "applied data-wipe token".into(),
            detail: err.to_string(),
        }),
    }
}

/// The operator's data-wipe token, if the file holds one. A missing file holds none; a
/// file that cannot be read is an error naming it, never taken for "no token".
fn configured_wipe_token(home: &Home) -> Result<Option<String>, NodeError> {
    let path = home.data_wipe_token();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let configured = text.trim();
            Ok((!configured.is_empty()).then(|| configured.to_owned()))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(NodeError::home_file(format!("cannot read the data-wipe token {}", path.display()), err)),
    }
}

/// The operator's data-wipe token when it differs from the one last applied.
fn pending_wipe_token(home: &Home, store: &Store) -> Result<Option<String>, NodeError> {
    let Some(configured) = configured_wipe_token(home)? else { return Ok(None) };
    let applied = applied_wipe_token(store)?;
    Ok((applied.as_deref() != Some(configured.as_str())).then_some(configured))
}

/// Finishes an interrupted wipe and applies a pending one before the first generation
/// starts: a node stopped or killed before its wipe finished completes it at the next
/// start, before it indexes anything. A chain store opened ahead of the first
/// generation (see [`wipe_may_be_due_at_start`]) is released first: its owner is its
/// only user, so that closes it. Blocking (renames, removals, a synced commit).
pub fn finish_wipes_at_start(home: &Home, store: &Store, chain_store: &mut OwnedStore) -> Result<(), NodeError> {
    finish_interrupted_wipe(home)?;
    match pending_wipe_token(home, store)? {
        Some(token) => {
            tracing::warn!(token = %token, "data-wipe token pending at start, wiping before the indexer starts");
            drop(chain_store.release());
            wipe_chain_data(home, store, &token)
        }
        None => Ok(()),
    }
}

/// Whether this start may have to wipe the chain data before the first generation (an
/// operator's token, applied or not, or an interrupted wipe): then the chain store is
/// not opened ahead, since a store that needs a wipe may not even open. Which token was
/// applied is in the node store, not open yet when start-up asks.
/// A token file that cannot be read counts as due: the start reports it after the node
/// store opened.
pub fn wipe_may_be_due_at_start(home: &Home) -> bool {
    home.chain_data_wiping().exists() || configured_wipe_token(home).map_or(true, |token| token.is_some())
}

/// Polls `<home>/data-wipe-token` and sends each new token (one that differs from the
/// one last applied and was not sent yet) to the run loop, which wipes by restarting.
/// A token file or a node store that cannot be read ends the watcher with the error,
/// which stops the node: it can no longer tell whether a wipe is due.
pub async fn watch_data_wipe_token(
    home: Home,
    node_store: StoreHolder,
    wipe_requests: mpsc::UnboundedSender<String>,
    cancel: CancellationToken,
) -> Result<(), NodeError> {
    let mut requested: Option<String> = None;
    loop {
        let pending = pending_wipe_token(&home, &node_store)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A node store whose applied token lives in a table file with a damaged data
    /// block: the store opens, and reading the token fails (a disk error).
    fn store_whose_token_cannot_be_read(path: &std::path::Path) -> std::sync::Arc<Store> {
        let options = mpc_store::StoreOptions::new("node", "data-wipe-test");
        {
            let store = Store::open(path, &options).unwrap();
            record_applied_wipe_token(&store, "first").unwrap();
        }
        let table = std::fs::read_dir(path)
            .unwrap()
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .find(|file| file.extension().is_some_and(|extension| extension == "sst"))
            .expect("the flush wrote a table file");
        let mut bytes = std::fs::read(&table).unwrap();
        // The first data block starts the file; its checksum no longer matches.
        for byte in &mut bytes[4..12] {
            *byte ^= 0xff;
        }
        std::fs::write(&table, bytes).unwrap();
        Store::open(path, &options).unwrap()
    }

    #[test]
    fn a_failed_read_of_the_applied_token_is_an_error_never_a_pending_wipe() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(&dir.path().join("home"));
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        let store = store_whose_token_cannot_be_read(&home.node_store());
        assert!(applied_wipe_token(&store).is_err(), "the damaged read must surface");
        std::fs::write(home.data_wipe_token(), "second\n").unwrap();
        let pending = pending_wipe_token(&home, &store);
        assert!(pending.is_err(), "a read error is not 'token not applied yet': {pending:?}");
        let mut chain_store = OwnedStore::default();
        std::fs::create_dir_all(home.chain_data()).unwrap();
        let started = finish_wipes_at_start(&home, &store, &mut chain_store);
        assert!(matches!(started, Err(NodeError::Store(_))), "{started:?}");
        assert_eq!(started.unwrap_err().exit_code(), mpc_lifecycle::ExitCode::STORE);
        assert!(home.chain_data().exists(), "nothing may be wiped on a failed read");
    }

    #[test]
    fn an_unreadable_token_file_is_an_error_naming_it_and_a_missing_or_empty_one_is_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        assert_eq!(configured_wipe_token(&home).unwrap(), None, "no file");
        std::fs::write(home.data_wipe_token(), "  \n").unwrap();
        assert_eq!(configured_wipe_token(&home).unwrap(), None, "an empty file");
        std::fs::write(home.data_wipe_token(), "token-1\n").unwrap();
        assert_eq!(configured_wipe_token(&home).unwrap().as_deref(), Some("token-1"));
        std::fs::write(home.data_wipe_token(), [0xff, 0xfe, b'\n']).unwrap();
        let error = configured_wipe_token(&home).unwrap_err();
        assert!(error.to_string().contains("data-wipe-token"), "{error}");
        assert_eq!(error.exit_code(), mpc_lifecycle::ExitCode::STORE);
        assert!(wipe_may_be_due_at_start(&home), "an unreadable file may hold a token: open the chain store after it");
    }
}
