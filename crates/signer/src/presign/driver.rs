//! The owner's background work: keeping each signing set's pool filled, and telling
//! the members which presignatures it still has.
//!
//! Generation is bounded: at most [`MAX_CONCURRENT_GENERATIONS`] at once, at most the
//! configured rate, only for a set whose members are all connected, and it yields to
//! signing: while a request waits for this node to lead it, no generation starts.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::owner::generate;
use super::{lock, signing_sets};
use crate::messages::SignerMessage;
use crate::signing::SigningContext;

/// Generations in flight at most.
pub const MAX_CONCURRENT_GENERATIONS: usize = 4;
/// How often the pools are looked at.
const TICK: Duration = Duration::from_millis(20);
/// A set whose generation failed is left alone this long.
const SET_BACKOFF: Duration = Duration::from_secs(1);
/// How often every connected member gets the owner's inventory.
pub const INVENTORY_INTERVAL: Duration = Duration::from_secs(10);

/// Keeps the pools filled until the intake stops.
pub async fn fill_pools(context: Arc<SigningContext>) -> Result<(), String> {
    let settings = context.presign_settings;
    let accounts: Vec<String> = context.contract.participants.iter().map(|p| p.account_id.clone()).collect();
    let sets = signing_sets(&context.me, &accounts, usize::from(context.contract.threshold));
    let in_flight: Arc<Mutex<HashMap<Vec<String>, usize>>> = Arc::default();
    let mut resting: HashMap<Vec<String>, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut budget = 0.0f64;
    let per_tick = f64::from(settings.rate_per_second) * TICK.as_secs_f64();
    let (failures, mut failed) = tokio::sync::mpsc::unbounded_channel::<Vec<String>>();
    loop {
        tokio::select! {
            _ = context.protocols.stopped_accepting() => return Ok(()),
            Some(set) = failed.recv() => {
                resting.insert(set, Instant::now() + SET_BACKOFF);
                continue;
            }
            _ = tick.tick() => {}
        }
        context.stats.set_assets(context.presign.ready_total(), context.presign.held_total());
        budget = (budget + per_tick).min(per_tick.max(1.0) * 10.0);
        if settings.pool_per_set == 0 || context.backlog.load(Ordering::Relaxed) > 0 {
            continue;
        }
        let connected = context.mesh.connected();
        for set in &sets {
            if budget < 1.0 {
                break;
            }
            let total: usize = lock(&in_flight).values().sum();
            let running = lock(&in_flight).get(set).copied().unwrap_or(0);
            if total >= MAX_CONCURRENT_GENERATIONS
                || context.presign.ready_in(set) + running >= settings.pool_per_set
                || resting.get(set).is_some_and(|until| Instant::now() < *until)
                || !set.iter().all(|member| *member == context.me || connected.contains(member))
            {
                continue;
            }
            *lock(&in_flight).entry(set.clone()).or_default() += 1;
            budget -= 1.0;
            let (task_context, task_set, counts, failures) =
                (context.clone(), set.clone(), in_flight.clone(), failures.clone());
            // Generation is background work that a cut anywhere leaves safe (a
            // presignature is stored only after its members' nonces, and orphans are
            // collected): a stop cuts it instead of waiting for it.
            let description = format!("presignature for {}", set.join(", "));
            let started = context.protocols.spawn_cut_at_stop(description, async move {
                if let Err(error) = generate(&task_context, task_set.clone()).await {
                    task_context.stats.failed(error.kind());
                    tracing::debug!(set = ?task_set, %error, "presignature generation failed");
                    let _ = failures.send(task_set.clone());
                }
                if let Some(count) = lock(&counts).get_mut(&task_set) {
                    *count -= 1;
                }
            });
            if !started {
                return Ok(());
            }
        }
    }
}

/// Sends every newly connected member, and every [`INVENTORY_INTERVAL`] every connected
/// one, the ids of this owner's presignatures it still has with that member.
pub async fn send_inventories(context: Arc<SigningContext>) -> Result<(), String> {
    let mut connected_changes = context.mesh.watch_connected();
    let mut told: BTreeSet<String> = BTreeSet::new();
    let mut every = tokio::time::interval(INVENTORY_INTERVAL);
    loop {
        let everyone = tokio::select! {
            _ = context.protocols.stopped_accepting() => return Ok(()),
            changed = connected_changes.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                false
            }
            _ = every.tick() => true,
        };
        let connected = connected_changes.borrow_and_update().clone();
        let to_tell: Vec<String> = connected.iter().filter(|peer| everyone || !told.contains(*peer)).cloned().collect();
        told = connected;
        for peer in to_tell {
            // `below` before `live`: an id stored in between is at or above `below`, so a
            // member never deletes the nonces of a presignature its owner just stored.
            let below = context.presign.below();
            let inventory = SignerMessage::PresignInventory { live: context.presign.live_ids_with(&peer), below };
            let _ = context.send(&peer, inventory).await;
        }
    }
}
