//! The requests this node may have to sign, and the sessions it leads for them.
//!
//! Pending requests are rebuilt from the node store at every start (every indexed
//! request without an accepted response) and followed as the indexer adds blocks;
//! nothing about them lives only in memory. A request is done for every node once its
//! accepted response is on this node's chain. This node leads a request when its live
//! rank's delay has passed (`schedule`), tries at most [`MAX_ATTEMPTS`] times with
//! backoff, leaving out a member that failed, and logs every failed try and the
//! giving up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mpc_chain::host::{Action, SignedTransaction};
use rand::RngCore;
use tokio::sync::mpsc;

use super::SigningContext;
use super::leader::{SessionError, lead};
use super::schedule::{lead_after, members};
use crate::chain_view::IndexedRequest;
use crate::hooks::journal;
use crate::presign::owner::sign_with;
use crate::stats::{FailureKind, SignPath};

/// Tries of one request by this node as its leader.
pub const MAX_ATTEMPTS: u32 = 5;
/// How long a submitted response may take to show on this node's chain before the
/// request is signed again.
pub const RESPONSE_WAIT: Duration = Duration::from_secs(10);
/// Sessions this node leads at once.
pub const MAX_LEADING: usize = 64;
/// Tries of one `respond` submission.
const SUBMIT_ATTEMPTS: u32 = 5;
/// How often the pending requests are looked at without a new block.
const TICK: Duration = Duration::from_millis(50);
/// Requests read from the store per scan step.
const SCAN_BATCH: usize = 1024;

/// A request this node may have to sign.
struct Pending {
    request: IndexedRequest,
    indexed_at: Instant,
    attempts: u32,
    excluded: Vec<String>,
    state: PendingState,
    /// This node's lead delay for the request, with the live set's generation it was
    /// computed for (`None` before the first pass).
    lead_after: Option<(u64, Option<Duration>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PendingState {
    /// Waiting for this node's turn, or for a retry at the instant.
    Waiting { not_before: Instant },
    /// A session this node leads is in flight.
    Leading,
    /// This node's response was acknowledged at the instant; waiting to see it.
    Submitted { at: Instant },
    /// Out of tries.
    GaveUp,
}

/// How a led session ended.
enum Led {
    /// The signature verified and the host acknowledged the response.
    Submitted,
    /// The session failed.
    Failed(SessionError),
    /// The signature was made but not acknowledged.
    NotSubmitted(String),
}

/// Follows the pending requests and leads their sessions until the intake stops.
pub async fn coordinate(context: Arc<SigningContext>) -> Result<(), String> {
    let mut pending: BTreeMap<[u8; 12], Pending> = BTreeMap::new();
    let mut scanned: Option<[u8; 12]> = None;
    let (outcomes, mut finished) = mpsc::channel::<([u8; 12], Led)>(MAX_LEADING);
    let mut indexed = context.indexed.clone();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading = 0usize;
    let mut live_now: Vec<String> = Vec::new();
    let mut live_generation = 0u64;
    let mut first_pass = true;
    loop {
        // Responses appear only with new blocks: the answered check of every pending
        // request runs then (and at the first pass), not on every session's outcome.
        let mut new_blocks = std::mem::take(&mut first_pass);
        tokio::select! {
            biased;
            _ = context.protocols.stopped_accepting() => return Ok(()),
            Some(outcome) = finished.recv() => {
                let mut outcome = Some(outcome);
                while let Some((key, led)) = outcome.take().or_else(|| finished.try_recv().ok()) {
                    leading -= 1;
                    if let Some(entry) = pending.get_mut(&key) {
                        settle(&context, entry, led);
                    }
                }
            }
            changed = indexed.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                new_blocks = true;
            }
            _ = tick.tick() => {}
        }
        if new_blocks {
            scan(&context, &mut pending, &mut scanned)?;
        }
        let live_accounts = live_participants(&context);
        if live_accounts != live_now {
            live_now = live_accounts;
            live_generation += 1;
        }
        let live: Vec<&str> = live_now.iter().map(String::as_str).collect();
        let now = Instant::now();
        let mut answered = Vec::new();
        let mut waiting = 0;
        for (key, entry) in pending.iter_mut() {
            // A request whose session is in flight stays until its outcome is in.
            if entry.state == PendingState::Leading {
                continue;
            }
            if (new_blocks || entry.lead_after.is_none())
                && context.chain.is_answered(&entry.request.request_id).map_err(|err| err.to_string())?
            {
                answered.push(*key);
                continue;
            }
            match entry.state {
                PendingState::Leading | PendingState::GaveUp => continue,
                PendingState::Submitted { at } if now.duration_since(at) < RESPONSE_WAIT => continue,
                PendingState::Submitted { .. } => {
                    tracing::warn!(
                        request = %hex::encode(entry.request.request_id),
                        "the submitted response is not on this node's chain in time; signing again"
                    );
                    entry.attempts += 1;
                    entry.state = PendingState::Waiting { not_before: now };
                }
                PendingState::Waiting { not_before } if now < not_before => continue,
                PendingState::Waiting { .. } => {}
            }
            if entry.attempts >= MAX_ATTEMPTS {
                tracing::error!(
                    request = %hex::encode(entry.request.request_id), attempts = entry.attempts,
                    "giving up leading this request (another participant may still answer it)"
                );
                entry.state = PendingState::GaveUp;
                continue;
            }
            let delay = match entry.lead_after {
                Some((generation, delay)) if generation == live_generation => delay,
                _ => {
                    let delay = lead_after(&entry.request.request_id, &live, &context.me);
                    entry.lead_after = Some((live_generation, delay));
                    delay
                }
            };
            let Some(delay) = delay else { continue };
            if now.duration_since(entry.indexed_at) < delay {
                continue;
            }
            if leading >= MAX_LEADING {
                waiting += 1;
                continue;
            }
            let Some(plan) = plan(&context, &entry.request.request_id, &live, &entry.excluded) else {
                // Too few live participants: wait for peers rather than count tries.
                entry.state = PendingState::Waiting { not_before: now + Duration::from_millis(500) };
                continue;
            };
            let description = format!("sign {} (leader, {plan})", hex::encode(entry.request.request_id));
            let (session_context, request, outcomes, key) =
                (context.clone(), entry.request.clone(), outcomes.clone(), *key);
            let indexed_at = entry.indexed_at;
            // Cut at a stop: the next leader in the request's order takes it as soon as
            // this node's goodbye reaches it (nothing is put back; see `protocols`).
            let started = context.protocols.spawn_cut_at_stop(description, async move {
                let led = lead_and_submit(&session_context, &request, plan, indexed_at).await;
                let _ = outcomes.send((key, led)).await;
            });
            if started {
                entry.state = PendingState::Leading;
                leading += 1;
            }
        }
        context.backlog.store(waiting, std::sync::atomic::Ordering::Relaxed);
        for key in answered {
            pending.remove(&key);
        }
    }
}

/// How a session signs: with a presignature of a live set (one round), or online with
/// the request's first live members (two rounds).
enum Plan {
    Presigned { id: u64, set: Vec<String> },
    Online { members: Vec<String> },
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Plan::Presigned { id, set } => write!(f, "presignature {id} of {}", set.join(", ")),
            Plan::Online { members } => write!(f, "with {}", members.join(", ")),
        }
    }
}

/// The plan for a request: a ready presignature of a set that is all live and has
/// none of `excluded`, taken out of the pool; else online with `threshold - 1` live
/// members; `None` when too few participants are live.
fn plan(context: &SigningContext, request_id: &[u8; 32], live: &[&str], excluded: &[String]) -> Option<Plan> {
    let live_set: std::collections::BTreeSet<String> = live.iter().map(|account| (*account).to_owned()).collect();
    if let Some((id, set)) = context.presign.take(&live_set, excluded) {
        return Some(Plan::Presigned { id, set });
    }
    let peers: Vec<&str> = live.iter().copied().filter(|account| *account != context.me).collect();
    let count = usize::from(context.contract.threshold).saturating_sub(1);
    let chosen: Vec<String> = members(request_id, &peers, excluded, count).into_iter().map(str::to_owned).collect();
    (chosen.len() == count).then_some(Plan::Online { members: chosen })
}

/// Adds the requests indexed since the last scan; answered ones are skipped.
fn scan(
    context: &SigningContext,
    pending: &mut BTreeMap<[u8; 12], Pending>,
    scanned: &mut Option<[u8; 12]>,
) -> Result<(), String> {
    loop {
        let batch = context.chain.requests_after(*scanned, SCAN_BATCH).map_err(|err| err.to_string())?;
        let full = batch.len() == SCAN_BATCH;
        for request in batch {
            *scanned = Some(request.key);
            if !context.chain.is_answered(&request.request_id).map_err(|err| err.to_string())? {
                let now = Instant::now();
                pending.insert(
                    request.key,
                    Pending {
                        request,
                        indexed_at: now,
                        attempts: 0,
                        excluded: Vec::new(),
                        state: PendingState::Waiting { not_before: now },
                        lead_after: None,
                    },
                );
            }
        }
        if !full {
            return Ok(());
        }
    }
}

/// This node and its connected peers.
fn live_participants(context: &SigningContext) -> Vec<String> {
    let mut live: Vec<String> = context.mesh.connected().into_iter().collect();
    live.push(context.me.clone());
    live
}

/// Records how a led session ended on its request.
fn settle(context: &SigningContext, entry: &mut Pending, led: Led) {
    let request = hex::encode(entry.request.request_id);
    match led {
        Led::Submitted => {
            entry.state = PendingState::Submitted { at: Instant::now() };
            return;
        }
        Led::Failed(error) => {
            context.stats.failed(error.kind());
            if let Some(member) = error.member() {
                entry.excluded.push(member.to_owned());
            }
            tracing::warn!(%request, attempt = entry.attempts + 1, attempts = MAX_ATTEMPTS, %error, "signing session failed");
        }
        Led::NotSubmitted(error) => {
            context.stats.failed(FailureKind::Submit);
            tracing::warn!(%request, attempt = entry.attempts + 1, attempts = MAX_ATTEMPTS, %error, "response not acknowledged");
        }
    }
    entry.attempts += 1;
    let backoff = Duration::from_millis(200) * 2u32.pow(entry.attempts.min(5));
    entry.state = PendingState::Waiting { not_before: Instant::now() + backoff };
}

/// Leads one session and submits its signature as a `respond` transaction; the sign
/// latency counted is from `indexed_at` to the verified signature.
async fn lead_and_submit(context: &SigningContext, request: &IndexedRequest, plan: Plan, indexed_at: Instant) -> Led {
    let (path, signed) = match plan {
        Plan::Presigned { id, .. } => (SignPath::Presigned, sign_with(context, request, id).await),
        Plan::Online { members } => (SignPath::Online, lead(context, request, &members).await),
    };
    let signed = match signed {
        Ok(signed) => signed,
        Err(error) => return Led::Failed(error),
    };
    let latency = indexed_at.elapsed();
    context.stats.signed(path, latency);
    journal(|| format!("signed {} {} {}", hex::encode(request.request_id), path.name(), latency.as_micros()));
    let action = Action::Respond {
        request_id: hex::encode(request.request_id),
        signature: hex::encode(signed.signature),
        commitments: signed.commitments,
    };
    let transaction = SignedTransaction::sign(&context.me, &context.p2p_key, rand::rngs::OsRng.next_u64(), action);
    let submitting = Instant::now();
    match context.host.submit_with_retries(&transaction, SUBMIT_ATTEMPTS, context.protocols.abandon_token()).await {
        Ok(_) => {
            journal(|| format!("submitted {} {}", hex::encode(request.request_id), submitting.elapsed().as_micros()));
            tracing::debug!(request = %hex::encode(request.request_id), "response submitted");
            Led::Submitted
        }
        Err(error) => Led::NotSubmitted(error.to_string()),
    }
}
