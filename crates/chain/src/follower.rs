//! A follower's sync task: it fetches the blocks after its chain's head from the host and
//! hands them to the client actor, which checks and stores each as one batch.
//!
//! It never gives up while its node runs: a host that is down, stalls, answers garbage
//! or sends a block that does not follow the head is retried with backoff (100 ms,
//! doubling to 5 s), each failed attempt logged with what comes next, and the chain's
//! status carries the failure (the node is not ready meanwhile) until a sync succeeds.
//! Nothing of a refused answer is stored. A host that is down is an outage of the
//! chain, not of the node: a node that exited instead would turn a restart of the host
//! into a restart of every participant. The task stops with the chain's stop token.

use std::time::Duration;

use near_async::messaging::{CanSend, CanSendAsync};
use tokio_util::sync::CancellationToken;

use crate::client::{ApplySyncedBlocks, GetSyncHead, SyncFailed};
use crate::host::MAX_BLOCKS_PER_ANSWER;
use crate::host_client::HostClient;
use crate::node::ClientHandle;

/// How long the host may hold a fetch open waiting for its next block.
const LONG_POLL: Duration = Duration::from_secs(1);
/// First pause after a failed sync.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
/// Longest pause between tries.
const LONGEST_PAUSE: Duration = Duration::from_secs(5);

/// Syncs the chain of `client` (the follower's client actor) from `host` until `stop`
/// is cancelled or the actor stops.
pub(crate) async fn follow_host(host: HostClient, client: ClientHandle, stop: CancellationToken) {
    let mut pause = FIRST_PAUSE;
    let mut failed_attempts = 0u32;
    tracing::info!(host = %host.base(), "following the chain host");
    loop {
        let Ok(head) = client.send_async(GetSyncHead).await else { return };
        let fetched = tokio::select! {
            _ = stop.cancelled() => return,
            fetched = host.blocks_after(head, MAX_BLOCKS_PER_ANSWER, LONG_POLL) => fetched,
        };
        let synced = match fetched {
            Ok(answer) => {
                let applying = ApplySyncedBlocks { blocks: answer.blocks, host_head: answer.host_head };
                match client.send_async(applying).await {
                    Ok(applied) => applied.map_err(|err| err.to_string()),
                    Err(_) => return,
                }
            }
            Err(error) => Err(error.to_string()),
        };
        match synced {
            Ok(_) => {
                if failed_attempts > 0 {
                    tracing::info!(host = %host.base(), failed_attempts, "chain host reachable again; syncing");
                }
                failed_attempts = 0;
                pause = FIRST_PAUSE;
            }
            Err(error) => {
                failed_attempts += 1;
                client.send(SyncFailed(error.clone()));
                tracing::warn!(
                    host = %host.base(), %error, attempt = failed_attempts, retry_in_ms = pause.as_millis() as u64,
                    "chain sync from the host failed; the node is not ready until it succeeds"
                );
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(LONGEST_PAUSE);
            }
        }
    }
}
