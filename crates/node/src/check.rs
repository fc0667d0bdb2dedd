//! `mpc-node check`: verifies the stores of a stopped node against each other.
//!
//! It claims the home for reading first, so it refuses the home of a running node (a
//! running node's stores change under any reader) and keeps a node from starting while
//! it reads. A store whose write-ahead log is damaged before its end is a problem (exit
//! 1) that names the file; the rest is then checked as `start` would recover it.
//!
//! The node store must be at the latest schema, its cursor must be the last of a
//! gap-free run of indexed blocks, every indexed block must match the chain's own record
//! of that block (hash, request ids), and the applied-requests counter must equal the
//! number of stored requests (a block applied twice would push it past). The chain hot
//! store must be at a block boundary: the head block and all its pieces are stored and
//! nothing lies beyond it. The asset store, if the home has one, must open with the
//! secrets key and hold only records that decode, presignature ids below the
//! allocator's mark, each with this node's nonces.
//!
//! A chain host's home (`mpc-node sandbox-chain`) holds only a chain store: it must be at
//! this binary's chain schema and at a block boundary.

use std::path::Path;
use std::sync::Arc;

use mpc_chain::{CHAIN_SCHEMA_VERSION, chain_head, stored_streamer_message};
use mpc_indexer::extract_block_effects;
use mpc_migrations::NODE_SCHEMA_VERSION;
use mpc_migrations::layout::{
    BlockEncoding, IndexedBlockRecord, read_applied_requests, read_cursor, request_key, request_key_height,
};
use mpc_migrations::layout::{SignRequestRecord, SignResponseRecord};
use mpc_store::migration::read_version;
use mpc_store::{Column, Store, StoreError, StoreOptions};

use mpc_lifecycle::ExitCode;

use crate::data_wipe::applied_wipe_token;
use crate::home::Home;

/// What `check` found.
#[derive(Debug, Default, serde::Serialize)]
pub struct CheckSummary {
    /// Node store schema version.
    pub schema_version: Option<u32>,
    /// Height of the committed cursor.
    pub last_indexed_height: Option<u64>,
    /// First indexed height.
    pub first_indexed_height: Option<u64>,
    /// Number of indexed blocks.
    pub indexed_blocks: u64,
    /// Requests stored.
    pub requests: u64,
    /// Responses stored.
    pub responses: u64,
    /// Chain head height.
    pub chain_head: Option<u64>,
    /// The home is a chain host's: a chain store and no node store.
    pub chain_host: bool,
    /// The asset store (presignatures, held nonces), when the home has one.
    #[serde(skip)]
    pub assets: Option<(usize, usize, Option<u64>)>,
    /// Every inconsistency found; empty means consistent.
    pub problems: Vec<String>,
    /// Indexed blocks that a re-syncing chain (after a data wipe) has not produced again
    /// yet; the next start re-syncs them. Not an inconsistency.
    pub awaiting_resync: u64,
}

/// Checks the stores under `home`. `Err` only when a store cannot be read at all.
pub fn check_home(home_path: &Path) -> Result<CheckSummary, StoreError> {
    let mut summary = CheckSummary::default();
    let home = Home::new(home_path);
    if !home.node_store().exists() && home.chain_data().exists() {
        return check_chain_host_home(&home, summary);
    }
    let node =
        open_for_check(&home.node_store(), "node", "the blocks after its cursor are indexed again", &mut summary)?;
    let chain = open_for_check(&home.chain_data(), "chain", "the chain continues from its last block", &mut summary)?;
    if !at_schema(&node, "node", NODE_SCHEMA_VERSION, "run `mpc-node migrate`", &mut summary)? {
        return Ok(summary);
    }
    check_chain_boundary(&chain, &mut summary)?;
    check_indexed_blocks(&node, &chain, &mut summary)?;
    let assets = mpc_signer::presign::check::check_assets(home_path);
    if assets.present {
        summary.assets = Some((assets.presignatures, assets.held_nonces, assets.allocator_mark));
    }
    summary.problems.extend(assets.problems);
    Ok(summary)
}

/// A chain host's home: its chain store alone.
fn check_chain_host_home(home: &Home, mut summary: CheckSummary) -> Result<CheckSummary, StoreError> {
    summary.chain_host = true;
    let chain = open_for_check(&home.chain_data(), "chain", "the chain continues from its last block", &mut summary)?;
    if at_schema(&chain, "chain", CHAIN_SCHEMA_VERSION, "start the host once to upgrade it", &mut summary)? {
        check_chain_boundary(&chain, &mut summary)?;
    }
    Ok(summary)
}

/// Records `store`'s schema version; whether it is `expected`, else a problem saying
/// what to do (`remedy`).
fn at_schema(
    store: &Store,
    name: &str,
    expected: u32,
    remedy: &str,
    summary: &mut CheckSummary,
) -> Result<bool, StoreError> {
    summary.schema_version = read_version(store)?;
    if summary.schema_version == Some(expected) {
        return Ok(true);
    }
    summary
        .problems
        .push(format!("{name} store schema is {:?}, expected {expected}; {remedy}", summary.schema_version));
    Ok(false)
}

/// Opens the store at `path` for reading. A write-ahead log damaged before its end is
/// recorded as a problem naming the file and what `start` does about it
/// (`consequence`), and the store is then read as `start` recovers it.
fn open_for_check(
    path: &Path,
    name: &str,
    consequence: &str,
    summary: &mut CheckSummary,
) -> Result<Arc<Store>, StoreError> {
    let options = StoreOptions::new(name, "check");
    match Store::open_read_only(path, &options) {
        Err(StoreError::DamagedLog { damage, .. }) => {
            summary.problems.push(format!(
                "{name} store: {damage}; `mpc-node start` recovers it to the last consistent write before the \
                 damage and drops the writes after it ({consequence}); what follows is checked as recovered"
            ));
            Store::open_read_only(path, &options.recovering_damaged_log())
        }
        opened => opened,
    }
}

fn check_chain_boundary(chain: &Store, summary: &mut CheckSummary) -> Result<(), StoreError> {
    summary.chain_head = chain_head(chain)?;
    let Some(head) = summary.chain_head else {
        summary.problems.push("chain store has no head".into());
        return Ok(());
    };
    if stored_streamer_message(chain, head)?.is_none() {
        summary.problems.push(format!("chain head block {head} is incomplete in the chain store"));
    }
    if let Some((key, _)) = chain.last(Column::Blocks)? {
        let last = request_key_height(&key).unwrap_or(0);
        if last != head {
            summary.problems.push(format!("chain store has block {last} beyond its head {head}"));
        }
    }
    Ok(())
}

fn check_indexed_blocks(node: &Store, chain: &Store, summary: &mut CheckSummary) -> Result<(), StoreError> {
    let cursor = read_cursor(node)?;
    summary.last_indexed_height = cursor.map(|cursor| cursor.height);
    let mut previous: Option<u64> = None;
    let mut stored_requests = 0u64;
    for item in node.iter(Column::IndexedBlocks, None)? {
        let (key, value) = item?;
        let Some(height) = request_key_height(&key) else {
            summary.problems.push("malformed indexed-block key".into());
            continue;
        };
        let record: IndexedBlockRecord = match serde_json::from_slice(&value) {
            Ok(record) => record,
            Err(err) => {
                summary.problems.push(format!("block {height}: unreadable record: {err}"));
                continue;
            }
        };
        if let Some(previous) = previous
            && height != previous + 1
        {
            summary.problems.push(format!("gap: block {} missing (after {previous}, next {height})", previous + 1));
        }
        summary.first_indexed_height.get_or_insert(height);
        previous = Some(height);
        summary.indexed_blocks += 1;
        summary.requests += u64::from(record.requests);
        summary.responses += u64::from(record.responses);
        stored_requests += check_block_against_chain(node, chain, height, &record, summary)?;
    }
    match (cursor, previous) {
        (Some(cursor), Some(last)) if cursor.height != last => {
            summary.problems.push(format!("cursor at {} but last indexed block is {last}", cursor.height));
        }
        (Some(cursor), None) => summary.problems.push(format!("cursor at {} but no block is indexed", cursor.height)),
        (None, Some(last)) => summary.problems.push(format!("blocks up to {last} indexed but no cursor")),
        _ => {}
    }
    let applied = read_applied_requests(node)?;
    if applied != stored_requests {
        summary.problems.push(format!(
            "applied-requests counter is {applied} but {stored_requests} requests are stored: a block was applied twice or partly"
        ));
    }
    Ok(())
}

/// Compares one indexed block with the chain's record; returns the requests stored for it.
fn check_block_against_chain(
    node: &Store,
    chain: &Store,
    height: u64,
    record: &IndexedBlockRecord,
    summary: &mut CheckSummary,
) -> Result<u64, StoreError> {
    let mut stored = Vec::new();
    for item in node.iter(Column::SignRequests, Some(&request_key(height, 0)))? {
        let (key, value) = item?;
        if request_key_height(&key) != Some(height) {
            break;
        }
        match serde_json::from_slice::<SignRequestRecord>(&value) {
            Ok(request) => {
                if BlockEncoding::CURRENT.request_id_index
                    && node.get(Column::SignRequestsById, request.request_id.0)?.as_deref() != Some(&*key)
                {
                    summary
                        .problems
                        .push(format!("block {height}: request {} missing from the id index", request.request_id));
                }
                stored.push(request.request_id);
            }
            Err(err) => summary.problems.push(format!("block {height}: unreadable request: {err}")),
        }
    }
    let Some(message) = stored_streamer_message(chain, height)? else {
        // After a data wipe the chain re-syncs up to the cursor; a node stopped or
        // killed before it got there has indexed blocks beyond the chain's head.
        let resyncing = applied_wipe_token(node)?.is_some() && summary.chain_head.is_some_and(|head| height > head);
        if resyncing {
            summary.awaiting_resync += 1;
        } else {
            summary.problems.push(format!("block {height} is indexed but not in the chain store"));
        }
        return Ok(stored.len() as u64);
    };
    let contract = mpc_chain::default_contract_id();
    let expected = extract_block_effects(&message, &contract);
    if expected.cursor.block_hash != record.block_hash {
        summary.problems.push(format!("block {height}: hash differs from the chain's"));
    }
    let expected_ids: Vec<_> = expected.requests.iter().map(|request| request.request_id).collect();
    if expected_ids != stored || record.requests as usize != stored.len() {
        summary.problems.push(format!(
            "block {height}: {} requests stored (record says {}), chain has {}",
            stored.len(),
            record.requests,
            expected_ids.len()
        ));
    }
    check_responses_against_chain(node, height, record, &expected.responses, summary)?;
    Ok(stored.len() as u64)
}

/// Compares the responses the node recorded for block `height` with the accepted
/// responses the chain recorded in it (a response the contract refused is no response).
fn check_responses_against_chain(
    node: &Store,
    height: u64,
    record: &IndexedBlockRecord,
    expected: &[SignResponseRecord],
    summary: &mut CheckSummary,
) -> Result<(), StoreError> {
    if record.responses as usize != expected.len() {
        summary.problems.push(format!(
            "block {height}: record says {} responses, chain has {}",
            record.responses,
            expected.len()
        ));
    }
    for response in expected {
        let stored: Option<SignResponseRecord> = node.get_json(Column::SignResponses, response.request_id.0)?;
        if stored.as_ref().is_none_or(|stored| stored.height < height) {
            summary.problems.push(format!("block {height}: response to {} is not recorded", response.request_id));
        }
    }
    Ok(())
}

/// `mpc-node check`: prints the summary; exit 0 iff consistent, 1 with problems, 3 when
/// a store cannot be read or a node runs on the home.
pub fn run(home: &Path) -> ExitCode {
    let _claimed = match Home::new(home).claim_for_reading() {
        Ok(claimed) => claimed,
        Err(err) => {
            eprintln!("error: {err}");
            return err.exit_code();
        }
    };
    match check_home(home) {
        Ok(summary) => {
            print_summary(&summary);
            if summary.problems.is_empty() { ExitCode::GRACEFUL } else { ExitCode::FATAL }
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::STORE
        }
    }
}

/// Prints the summary as an operator reads it.
fn print_summary(summary: &CheckSummary) {
    let consistent = summary.problems.is_empty();
    println!("consistent: {}", if consistent { "yes" } else { "no" });
    if summary.chain_host {
        println!("home: a chain host's (chain store only)");
        println!("chain schema version: {}", summary.schema_version.map_or("none".into(), |v| v.to_string()));
        println!("chain head: {}", summary.chain_head.map_or("none".into(), |height| height.to_string()));
        print_problems(summary);
        return;
    }
    println!("schema version: {}", summary.schema_version.map_or("none".into(), |v| v.to_string()));
    println!("last indexed height: {}", summary.last_indexed_height.map_or("none".into(), |height| height.to_string()));
    println!(
        "indexed blocks: {} (from {})",
        summary.indexed_blocks,
        summary.first_indexed_height.map_or("-".into(), |height| height.to_string())
    );
    println!("requests: {}, responses: {}", summary.requests, summary.responses);
    println!("chain head: {}", summary.chain_head.map_or("none".into(), |height| height.to_string()));
    if let Some((presignatures, held, mark)) = summary.assets {
        let mark = mark.map_or("none".into(), |mark| mark.to_string());
        println!("asset store: {presignatures} presignatures, {held} held nonces, ids below {mark}");
    }
    if summary.awaiting_resync > 0 {
        println!(
            "awaiting re-sync after a data wipe: {} indexed blocks beyond the chain head",
            summary.awaiting_resync
        );
    }
    print_problems(summary);
}

fn print_problems(summary: &CheckSummary) {
    for problem in &summary.problems {
        println!("problem: {problem}");
    }
}
