//! v2 -> v3: adds the `SignRequestsById` secondary index, so a response can find its
//! request without a scan. Large on a long-lived node, so it runs in chunks: each chunk
//! writes its index entries and its position in one batch, the last batch removes the
//! position and bumps the version. A SIGKILL anywhere resumes from the last chunk;
//! cancellation stops between chunks.

use mpc_store::migration::{MigrationStep, bump_version, clear_progress, put_progress, read_progress};
use mpc_store::{Column, Store, StoreError, StoreResult, StoreUpdate};
use tokio_util::sync::CancellationToken;

use crate::layout::SignRequestRecord;

/// The v2 -> v3 step.
pub(crate) struct RequestIdIndex {
    pub(crate) chunk_size: usize,
}

impl MigrationStep for RequestIdIndex {
    fn source_version(&self) -> u32 {
        2
    }

    fn description(&self) -> &'static str {
        "build the sign-request index by request id (resumable, in chunks)"
    }

    fn run(&self, store: &Store, cancel: &CancellationToken) -> StoreResult<()> {
        let mut position = read_progress(store, 2)?;
        if let Some(resume_at) = &position {
            tracing::info!(resume_after = ?resume_at, "resuming an interrupted request-index migration");
        }
        loop {
            if cancel.is_cancelled() {
                return Err(StoreError::Cancelled);
            }
            let mut update = StoreUpdate::new();
            let mut last_key = None;
            for item in store.iter(Column::SignRequests, position.as_deref())? {
                let (key, value) = item?;
                if position.as_deref() == Some(&*key) {
                    continue;
                }
                let record: SignRequestRecord = serde_json::from_slice(&value).map_err(|err| StoreError::Decode {
                    path: store.path().to_path_buf(),
                    what: "sign request".into(),
                    detail: err.to_string(),
                })?;
                update.put(Column::SignRequestsById, record.request_id.0, &key);
                last_key = Some(key.to_vec());
                if update.len() >= self.chunk_size {
                    break;
                }
            }
            match last_key {
                Some(key) => {
                    put_progress(&mut update, 2, &key);
                    store.commit(update)?;
                    position = Some(key);
                }
                None => {
                    clear_progress(&mut update, 2);
                    bump_version(&mut update, 3);
                    return store.commit(update);
                }
            }
        }
    }
}
