//! What the sandbox chain puts in each block: the workload of an MPC contract account.
//!
//! Pure functions of the config and the height, so the same seed always gives the same
//! chain, and tests (and `mpc-node check`) can recompute what a block must contain.

use near_indexer_primitives::CryptoHash;
use near_indexer_primitives::types::AccountId;
use serde_json::{Value, json};

use crate::config::{ChainConfig, DEFAULT_IMAGE_HASH, NEXT_IMAGE_HASH};

/// A `respond` for the requests of block `h` arrives in block `h + RESPONSE_DELAY`.
pub const RESPONSE_DELAY: u64 = 3;

/// Timestamp of the genesis block; each block adds one second.
pub const GENESIS_TIMESTAMP_NS: u64 = 1_700_000_000_000_000_000;

/// Contract view methods the sandbox answers, each backed by stored contract state.
pub const VIEW_METHODS: [&str; 4] = ["state", "allowed_docker_image_hashes", "get_tee_accounts", "migration_info"];

fn hash_of(parts: &str) -> CryptoHash {
    CryptoHash::hash_bytes(parts.as_bytes())
}

fn account(name: String) -> AccountId {
    // Names built here are lower-case ASCII with dots and digits, always valid.
    name.parse().expect("generated account ids are valid")
}

/// Hash of the block at `height`.
pub fn block_hash(seed: u64, height: u64) -> CryptoHash {
    hash_of(&format!("sandbox/{seed}/block/{height}"))
}

/// A `sign` call to the MPC contract: one new request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignCall {
    /// Receipt carrying the call; its id is the request id.
    pub receipt_id: CryptoHash,
    /// Caller.
    pub predecessor_id: AccountId,
    /// Payload to sign, hex.
    pub payload: String,
    /// Key derivation path.
    pub path: String,
    /// Shard whose chunk executes the receipt.
    pub shard: u64,
}

/// A `respond` call completing an earlier request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RespondCall {
    /// Receipt carrying the call.
    pub receipt_id: CryptoHash,
    /// Request answered.
    pub request_id: CryptoHash,
    /// Participant answering.
    pub responder: AccountId,
    /// Shard whose chunk executes the receipt.
    pub shard: u64,
}

/// The `sign` calls in block `height` (none in genesis).
pub fn sign_calls(config: &ChainConfig, height: u64) -> Vec<SignCall> {
    if height == 0 {
        return Vec::new();
    }
    (0..config.sign_requests_per_block)
        .map(|index| {
            let receipt_id = hash_of(&format!("sandbox/{}/sign/{height}/{index}", config.seed));
            SignCall {
                receipt_id,
                predecessor_id: account(format!("user{}.sandbox", (height + u64::from(index)) % 17)),
                payload: hash_of(&format!("payload/{receipt_id}")).to_string(),
                path: format!("m/44/{index}"),
                shard: u64::from(index) % config.num_shards,
            }
        })
        .collect()
}

/// The `respond` calls in block `height`: one per request of `height - RESPONSE_DELAY`.
pub fn respond_calls(config: &ChainConfig, height: u64) -> Vec<RespondCall> {
    if height <= RESPONSE_DELAY {
        return Vec::new();
    }
    sign_calls(config, height - RESPONSE_DELAY)
        .into_iter()
        .enumerate()
        .map(|(index, request)| RespondCall {
            receipt_id: hash_of(&format!("sandbox/{}/respond/{height}/{index}", config.seed)),
            request_id: request.receipt_id,
            responder: account(format!("node{}.sandbox", index % 3)),
            shard: request.shard,
        })
        .collect()
}

/// Contract state at genesis, by view method.
pub fn genesis_contract_state(config: &ChainConfig) -> Vec<(&'static str, Value)> {
    let _ = config;
    vec![
        ("state", participants_state(0)),
        ("allowed_docker_image_hashes", json!([DEFAULT_IMAGE_HASH, NEXT_IMAGE_HASH])),
        ("get_tee_accounts", tee_accounts(0)),
        ("migration_info", json!({"backup_service": null, "active_migration": false})),
    ]
}

fn participants_state(epoch: u64) -> Value {
    let threshold = 2 + epoch % 3;
    let participants: Vec<String> = (0..=threshold).map(|index| format!("node{index}.sandbox")).collect();
    json!({"epoch": epoch, "threshold": threshold, "participants": participants})
}

fn tee_accounts(generation: u64) -> Value {
    let accounts: Vec<String> = (0..3).map(|index| format!("node{index}.sandbox/tee-{generation}")).collect();
    json!(accounts)
}

/// Governance changes of the contract state made in block `height`, by view method.
/// Each is carried by a `vote_*` receipt to the contract in shard 0.
pub fn governance_changes(config: &ChainConfig, height: u64) -> Vec<(&'static str, Value)> {
    let mut changes = Vec::new();
    if height == 0 {
        return changes;
    }
    if height.is_multiple_of(100) {
        changes.push(("state", participants_state(height / 100)));
    }
    if height.is_multiple_of(40) {
        changes.push(("get_tee_accounts", tee_accounts(height / 40)));
    }
    if height.is_multiple_of(150) {
        changes.push((
            "migration_info",
            json!({"backup_service": format!("backup{}.sandbox", height / 150), "active_migration": true}),
        ));
    }
    if let Some(revocation) = &config.revocation
        && revocation.at_height == height
    {
        let allowed: Vec<&str> =
            [DEFAULT_IMAGE_HASH, NEXT_IMAGE_HASH].into_iter().filter(|hash| *hash != revocation.image_hash).collect();
        changes.push(("allowed_docker_image_hashes", json!(allowed)));
    }
    changes
}

/// The `vote_*` method that makes a change of `view_method`.
pub fn vote_method(view_method: &str) -> &'static str {
    match view_method {
        "state" => "vote_new_parameters",
        "allowed_docker_image_hashes" => "vote_code_hash",
        "get_tee_accounts" => "submit_participant_info",
        _ => "start_node_migration",
    }
}
