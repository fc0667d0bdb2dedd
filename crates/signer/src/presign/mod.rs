//! Presignatures: FROST round-1 nonces made ahead, so that a signature needs one
//! message round. A nonce used for two messages reveals its holder's key share, so
//! every rule here is about using each one once:
//!
//! - **Owned by the leader that made it** (its owner): a presignature has an id from the
//!   owner's durable allocator (`assets::allocator`), a signing set, and every member's
//!   round-1 commitments. Each member holds its secret nonces under (owner, id); the
//!   owner's are in the presignature. The owner stores it only after every member
//!   confirmed it stored its nonces ([`owner::generate`]).
//! - **Deleted before use, never put back**: the owner deletes the presignature (synced)
//!   before it sends anything derived from it; each member deletes its nonces (synced)
//!   before it sends its share ([`member::sign_presigned`]). A failure after a delete
//!   costs the presignature; the request is signed again with another one.
//! - **Orphans collected**: nonces a member holds that their owner no longer has (a
//!   generation that never finished, a presignature used or lost) are deleted when the
//!   owner's inventory says so, sent on every connect and periodically
//!   ([`member::collect_orphans`]).
//! - **A pool per signing set** (every set of `threshold` participants that includes
//!   this node), so that with any one node down the others still sign from the pool.
//!
//! Everything is stored in the asset store, sealed; a start rebuilds the pool and the
//! held nonces' index from it.

pub mod check;
pub mod driver;
pub mod member;
pub mod owner;
pub mod records;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;

use frost_ed25519::Identifier;
use frost_ed25519::round1::{SigningCommitments, SigningNonces};

use mpc_store::Column;

use crate::assets::allocator::IdAllocator;
use crate::assets::{AssetStore, AssetStoreError};
use records::{PresignatureRecord, parse_held_nonce_key, parse_presignature_key};

/// How many presignatures to keep and how fast to make them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresignSettings {
    /// Ready presignatures kept per signing set (0: none, every signature online).
    pub pool_per_set: usize,
    /// Generations started per second at most.
    pub rate_per_second: u32,
}

impl Default for PresignSettings {
    fn default() -> Self {
        PresignSettings { pool_per_set: 64, rate_per_second: 200 }
    }
}

/// Nonces a member holds for one owner at most; beyond, it refuses new ones.
pub const MAX_HELD_PER_OWNER: usize = 4096;
/// Signing sets a node keeps pools for at most.
pub const MAX_SETS: usize = 16;

/// A presignature as its owner signs with it: its own nonces and every signer's
/// commitments.
pub struct DecodedPresignature {
    /// The signing set, owner included, sorted.
    pub signers: Vec<String>,
    /// The owner's secret nonces.
    pub nonces: SigningNonces,
    /// Every signer's round-1 commitments.
    pub commitments: BTreeMap<Identifier, SigningCommitments>,
}

/// The presignature side's state on this node: its own pool as an owner, the nonces it
/// holds as a member, the id allocator.
pub struct Presignatures {
    assets: AssetStore,
    allocator: Mutex<IdAllocator>,
    /// Ready presignature ids by signing set.
    ready: Mutex<BTreeMap<Vec<String>, VecDeque<u64>>>,
    /// Presignatures taken out of the pool whose use has not ended, with their sets:
    /// still live to the members until then (see [`Presignatures::live_ids_with`]).
    in_use: Mutex<BTreeMap<u64, Vec<String>>>,
    /// Ids this node is generating as owner.
    generating: Mutex<BTreeSet<u64>>,
    /// Ids held per owner as a member.
    held: Mutex<HashMap<String, BTreeSet<u64>>>,
    /// The decoded form of presignatures made since this start, by id, so that a use
    /// does not decode (validate) again what this process made; the store stays the
    /// record (a use deletes there first). Dropped at use.
    decoded_owned: Mutex<HashMap<u64, DecodedPresignature>>,
    /// The same for the nonces held as a member, by (owner, id); dropped at use or
    /// collection.
    decoded_held: Mutex<HashMap<(String, u64), SigningNonces>>,
    /// Per owner, the `below` of its last inventory: no id under it is made again.
    dead_below: Mutex<HashMap<String, u64>>,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Presignatures {
    /// Loads the allocator, the pool and the held nonces' index from the asset store.
    pub fn load(assets: AssetStore) -> Result<Presignatures, AssetStoreError> {
        let allocator = IdAllocator::load(&assets)?;
        let mut ready: BTreeMap<Vec<String>, VecDeque<u64>> = BTreeMap::new();
        for (key, value) in assets.scan_sealed(Column::Presignatures, &[])? {
            let record: PresignatureRecord = borsh::from_slice(&value).map_err(|err| damaged(&assets, &key, err))?;
            if parse_presignature_key(&key) != Some(record.id) {
                return Err(damaged(&assets, &key, "stored under another id"));
            }
            ready.entry(record.signers).or_default().push_back(record.id);
        }
        let mut held: HashMap<String, BTreeSet<u64>> = HashMap::new();
        for entry in assets.store().iter(Column::HeldNonces, None)? {
            let (key, _) = entry?;
            let (owner, id) =
                parse_held_nonce_key(&key).ok_or_else(|| damaged(&assets, &key, "not a held nonce key"))?;
            held.entry(owner).or_default().insert(id);
        }
        let owned: usize = ready.values().map(VecDeque::len).sum();
        let held_count: usize = held.values().map(BTreeSet::len).sum();
        tracing::info!(
            presignatures = owned,
            held_nonces = held_count,
            next_id = allocator.next_unused(),
            "asset store loaded"
        );
        Ok(Presignatures {
            assets,
            allocator: Mutex::new(allocator),
            ready: Mutex::new(ready),
            in_use: Mutex::new(BTreeMap::new()),
            generating: Mutex::new(BTreeSet::new()),
            held: Mutex::new(held),
            decoded_owned: Mutex::new(HashMap::new()),
            decoded_held: Mutex::new(HashMap::new()),
            dead_below: Mutex::new(HashMap::new()),
        })
    }

    /// The asset store.
    pub fn assets(&self) -> &AssetStore {
        &self.assets
    }

    /// Takes a ready presignature whose whole set is in `live` and none of it in
    /// `excluded`, out of the pool: the caller deletes it from the store before use,
    /// and ends its use with [`Presignatures::used`].
    pub fn take(&self, live: &BTreeSet<String>, excluded: &[String]) -> Option<(u64, Vec<String>)> {
        let mut ready = lock(&self.ready);
        let (set, ids) = ready
            .iter_mut()
            .filter(|(set, ids)| {
                !ids.is_empty()
                    && set.iter().all(|member| live.contains(member))
                    && !set.iter().any(|member| excluded.contains(member))
            })
            .max_by_key(|(_, ids)| ids.len())?;
        let id = ids.pop_front()?;
        lock(&self.in_use).insert(id, set.clone());
        Some((id, set.clone()))
    }

    /// Ends the use of presignature `id` (taken with [`Presignatures::take`]), whatever
    /// its outcome: from now on the inventories leave it out, so the members collect
    /// the nonces of a use that failed before reaching them.
    pub fn used(&self, id: u64) {
        lock(&self.in_use).remove(&id);
    }

    /// Ready presignatures of `set`.
    pub fn ready_in(&self, set: &[String]) -> usize {
        lock(&self.ready).get(set).map_or(0, VecDeque::len)
    }

    /// Ready presignatures over every set.
    pub fn ready_total(&self) -> usize {
        lock(&self.ready).values().map(VecDeque::len).sum()
    }

    /// Adds a stored presignature to the pool, with its decoded form.
    fn add_ready(&self, set: Vec<String>, id: u64, decoded: DecodedPresignature) {
        lock(&self.decoded_owned).insert(id, decoded);
        lock(&self.ready).entry(set).or_default().push_back(id);
    }

    /// The decoded form of presignature `id` if this process made it (taken out).
    fn take_decoded(&self, id: u64) -> Option<DecodedPresignature> {
        lock(&self.decoded_owned).remove(&id)
    }

    /// The ids of this owner's presignatures whose set includes `member`: the ready
    /// ones and those in use (a member must not collect the nonces of a use whose
    /// request to it may still be on the way, or the use fails for nothing).
    pub fn live_ids_with(&self, member: &str) -> Vec<u64> {
        let ready = lock(&self.ready);
        let in_use = lock(&self.in_use);
        let includes_member = |set: &Vec<String>| set.iter().any(|signer| signer == member);
        let mut ids: Vec<u64> = ready
            .iter()
            .filter(|(set, _)| includes_member(set))
            .flat_map(|(_, ids)| ids.iter().copied())
            .chain(in_use.iter().filter(|(_, set)| includes_member(set)).map(|(id, _)| *id))
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Every id of this owner below this is live (in the pool) or dead: the lowest id
    /// being generated, or the next the allocator hands out.
    pub fn below(&self) -> u64 {
        let generating = lock(&self.generating);
        generating.first().copied().unwrap_or_else(|| lock(&self.allocator).next_unused())
    }

    /// Hands out the next id and marks it as being generated (until
    /// [`Presignatures::generated`]).
    fn allocate(&self) -> Result<u64, AssetStoreError> {
        let mut generating = lock(&self.generating);
        let id = lock(&self.allocator).next(&self.assets)?;
        generating.insert(id);
        Ok(id)
    }

    /// The generation of `id` ended, stored or not.
    pub(crate) fn generated(&self, id: u64) {
        lock(&self.generating).remove(&id);
    }

    /// Whether this node holds nonces for (`owner`, `id`), and how many for `owner`.
    fn holds(&self, owner: &str, id: u64) -> (bool, usize) {
        let held = lock(&self.held);
        held.get(owner).map_or((false, 0), |ids| (ids.contains(&id), ids.len()))
    }

    /// Takes (`owner`, `id`) out of the held index: `None` if it was not there (used,
    /// collected, or claimed by a concurrent request), else its decoded nonces if this
    /// process stored them.
    fn claim_held(&self, owner: &str, id: u64) -> Option<Option<SigningNonces>> {
        let claimed = lock(&self.held).get_mut(owner).is_some_and(|ids| ids.remove(&id));
        claimed.then(|| lock(&self.decoded_held).remove(&(owner.to_owned(), id)))
    }

    fn add_held(&self, owner: &str, id: u64, nonces: SigningNonces) {
        lock(&self.held).entry(owner.to_owned()).or_default().insert(id);
        lock(&self.decoded_held).insert((owner.to_owned(), id), nonces);
    }

    /// Nonces held for every owner.
    pub fn held_total(&self) -> usize {
        lock(&self.held).values().map(BTreeSet::len).sum()
    }

    /// The lowest id `owner` may still ask this node to generate.
    fn dead_below(&self, owner: &str) -> u64 {
        lock(&self.dead_below).get(owner).copied().unwrap_or(0)
    }

    /// Records that `owner` makes no id below `below` any more.
    fn raise_dead_below(&self, owner: &str, below: u64) {
        let mut dead = lock(&self.dead_below);
        let mark = dead.entry(owner.to_owned()).or_default();
        *mark = (*mark).max(below);
    }

    /// Takes out of the held index, and returns, the ids held for `owner` below `below`
    /// that are not `live`.
    fn orphans_of(&self, owner: &str, live: &[u64], below: u64) -> Vec<u64> {
        let mut held = lock(&self.held);
        let Some(ids) = held.get_mut(owner) else { return Vec::new() };
        let orphans: Vec<u64> = ids.range(..below).copied().filter(|id| !live.contains(id)).collect();
        let mut decoded = lock(&self.decoded_held);
        for id in &orphans {
            ids.remove(id);
            decoded.remove(&(owner.to_owned(), *id));
        }
        orphans
    }
}

fn damaged(assets: &AssetStore, key: &[u8], detail: impl ToString) -> AssetStoreError {
    AssetStoreError::Damaged {
        path: assets.store().path().to_path_buf(),
        what: format!("record {}", hex::encode(key)),
        detail: detail.to_string(),
    }
}

/// Every signing set of `threshold` participants that includes `me`, sorted, at most
/// [`MAX_SETS`], in a fixed order.
pub fn signing_sets(me: &str, participants: &[String], threshold: usize) -> Vec<Vec<String>> {
    let peers: Vec<&String> = participants.iter().filter(|participant| *participant != me).collect();
    let mut sets = Vec::new();
    let mut chosen = Vec::new();
    combinations(&peers, threshold.saturating_sub(1), 0, &mut chosen, &mut |members| {
        if sets.len() < MAX_SETS {
            let mut set: Vec<String> = members.iter().map(|member| (*member).clone()).collect();
            set.push(me.to_owned());
            set.sort();
            sets.push(set);
        }
    });
    sets
}

fn combinations<'a>(
    items: &[&'a String],
    count: usize,
    from: usize,
    chosen: &mut Vec<&'a String>,
    emit: &mut impl FnMut(&[&'a String]),
) {
    if chosen.len() == count {
        emit(chosen);
        return;
    }
    for index in from..items.len() {
        chosen.push(items[index]);
        combinations(items, count, index + 1, chosen, emit);
        chosen.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_set_of_threshold_participants_with_this_node_is_listed_once() {
        let all: Vec<String> = (0..4).map(|index| format!("n{index}")).collect();
        let sets = signing_sets("n1", &all, 2);
        assert_eq!(sets, vec![vec!["n0", "n1"], vec!["n1", "n2"], vec!["n1", "n3"]]);
        assert_eq!(signing_sets("n1", &all, 3).len(), 3);
        assert_eq!(signing_sets("n1", &all, 1), vec![vec!["n1".to_owned()]]);
    }
}
