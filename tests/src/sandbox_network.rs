//! A sandbox network for process tests: a network file with keys the test holds, a
//! chain host, nodes that follow it, transactions signed as a participant or a user,
//! and readers of the host's views and of a node's stores.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use mpc_chain::host::{Action, NetworkConfig, Participant, SignedTransaction};
use mpc_store::{Column, Store, StoreOptions};

use crate::{NodeProcess, START_PATIENCE, fast_node_args, get_json, http_with_body};

/// A network file and the keys behind it.
pub struct Network {
    /// The file to give the host.
    pub path: PathBuf,
    /// What the file says.
    pub config: NetworkConfig,
    /// Each participant's P2P key, in the file's order.
    pub keys: Vec<SigningKey>,
    /// The key the contract runs under from genesis, if the file gives one.
    pub group_key: Option<SigningKey>,
}

impl Network {
    /// Writes a network file of `participants` participants (`node<i>.sandbox`) at
    /// `threshold` into `dir`; with `group_key`, the contract runs under it from genesis.
    pub fn write(dir: &Path, participants: usize, threshold: u32, group_key: Option<SigningKey>) -> Network {
        let keys: Vec<SigningKey> =
            (0..participants).map(|index| SigningKey::from_bytes(&[index as u8 + 1; 32])).collect();
        let config = NetworkConfig {
            threshold,
            participants: keys
                .iter()
                .enumerate()
                .map(|(index, key)| Participant {
                    account_id: format!("node{index}.sandbox"),
                    p2p_addr: format!("127.0.0.1:{}", 43041 + index),
                    p2p_public_key: hex::encode(key.verifying_key().to_bytes()),
                })
                .collect(),
            public_key: group_key.as_ref().map(|key| hex::encode(key.verifying_key().to_bytes())),
        };
        let path = dir.join("network.json");
        std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
        Network { path, config, keys, group_key }
    }

    /// A transaction from participant `index`.
    pub fn as_participant(&self, index: usize, nonce: u64, action: Action) -> SignedTransaction {
        SignedTransaction::sign(&self.config.participants[index].account_id, &self.keys[index], nonce, action)
    }
}

/// A transaction from a user (not a participant) with a key of its own.
pub fn as_user(nonce: u64, action: Action) -> SignedTransaction {
    SignedTransaction::sign("alice.sandbox", &SigningKey::from_bytes(&[200; 32]), nonce, action)
}

/// Posts `transaction` to the host at `rpc`: the status and the answer, or `None` when
/// the host did not answer.
pub fn submit(rpc: SocketAddr, transaction: &SignedTransaction) -> Option<(u16, String)> {
    http_with_body(rpc, "POST", "/v1/transactions", None, &serde_json::to_string(transaction).unwrap())
}

/// The host's head height.
pub fn host_head(rpc: SocketAddr) -> u64 {
    get_json(rpc, "/v1/status")["head_height"].as_u64().expect("a head height")
}

/// The sign requests of heights `from..=to`, as `/v1/requests` shows them.
pub fn requests(rpc: SocketAddr, from: u64, to: u64) -> Vec<serde_json::Value> {
    let view = get_json(rpc, &format!("/v1/requests?from_height={from}&to_height={to}"));
    view.as_array().expect("an array").clone()
}

/// Every sign request from genesis to the host's head, in pieces of the largest range.
pub fn all_requests(rpc: SocketAddr) -> Vec<serde_json::Value> {
    requests_in_pieces(0, host_head(rpc), |from, to| requests(rpc, from, to))
}

/// The heights a `/v1/requests` call may span at most.
const REQUESTS_RANGE: u64 = 10_000;

/// The sign requests of heights `from..=to`, read with `fetch(from, to)` over ranges
/// the host's `/v1/requests` accepts.
pub fn requests_in_pieces(
    from: u64,
    to: u64,
    mut fetch: impl FnMut(u64, u64) -> Vec<serde_json::Value>,
) -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    let mut start = from;
    while start <= to {
        let end = (start + REQUESTS_RANGE - 1).min(to);
        all.extend(fetch(start, end));
        start = end + 1;
    }
    all
}

/// Reads requests with `fetch` until every one that `counts` has its accepted
/// response, at most `patience`; returns the last read. A failure's message names the
/// first open one and ends with `explain()`.
pub fn wait_until_answered(
    what: &str,
    patience: Duration,
    mut fetch: impl FnMut() -> Vec<serde_json::Value>,
    counts: impl Fn(&serde_json::Value) -> bool,
    explain: impl Fn() -> String,
) -> Vec<serde_json::Value> {
    let started = Instant::now();
    loop {
        let requests = fetch();
        let open: Vec<&serde_json::Value> =
            requests.iter().filter(|request| counts(request) && request["response"].is_null()).collect();
        if open.is_empty() {
            return requests;
        }
        if started.elapsed() > patience {
            panic!("{} requests {what} unanswered after {patience:?}, first {}\n{}", open.len(), open[0], explain());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Arguments of a node that follows the host at `rpc`, quick like [`fast_node_args`].
pub fn follower_args(rpc: SocketAddr) -> Vec<String> {
    let mut args = fast_node_args();
    args.extend(["--chain".to_owned(), format!("http://{rpc}")]);
    args
}

/// Waits until the node has indexed at least `height` (its operations server says so).
pub fn wait_until_indexed(node: &mut NodeProcess, height: u64, patience: Duration) -> u64 {
    let web = node.web_addr();
    let started = Instant::now();
    loop {
        node.assert_running();
        let indexed = crate::http(web, "GET", "/debug/lifecycle", None)
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
            .and_then(|view| view["indexer"]["latest_height"].as_u64());
        if let Some(indexed) = indexed.filter(|indexed| *indexed >= height) {
            return indexed;
        }
        assert!(started.elapsed() < patience, "the node did not index {height} blocks:\n{}", node.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a stopped node indexed, read from its node store: each height's block hash and
/// request ids, and each recorded response's request id with its height.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Indexed {
    /// Height to (block hash, request ids in order).
    pub blocks: BTreeMap<u64, (String, Vec<String>)>,
    /// Request id to the height of the block that answered it.
    pub responses: BTreeMap<String, u64>,
}

impl Indexed {
    /// Reads the node store of the stopped node at `home`.
    pub fn read(home: &Path) -> Indexed {
        let store = Store::open_read_only(&home.join("node"), &StoreOptions::new("node", "fixture")).unwrap();
        let mut indexed = Indexed::default();
        for entry in store.iter(Column::IndexedBlocks, None).unwrap() {
            let (key, value) = entry.unwrap();
            let height = u64::from_be_bytes(key[..8].try_into().unwrap());
            let record: serde_json::Value = serde_json::from_slice(&value).unwrap();
            indexed.blocks.insert(height, (record["block_hash"].as_str().unwrap().to_owned(), Vec::new()));
        }
        for entry in store.iter(Column::SignRequests, None).unwrap() {
            let (key, value) = entry.unwrap();
            let height = u64::from_be_bytes(key[..8].try_into().unwrap());
            let record: serde_json::Value = serde_json::from_slice(&value).unwrap();
            let id = record["request_id"].as_str().unwrap().to_owned();
            indexed.blocks.get_mut(&height).expect("a request of an indexed block").1.push(id);
        }
        for entry in store.iter(Column::SignResponses, None).unwrap() {
            let (_, value) = entry.unwrap();
            let record: serde_json::Value = serde_json::from_slice(&value).unwrap();
            indexed
                .responses
                .insert(record["request_id"].as_str().unwrap().to_owned(), record["height"].as_u64().unwrap());
        }
        indexed
    }

    /// The blocks up to `height`.
    pub fn up_to(&self, height: u64) -> BTreeMap<u64, (String, Vec<String>)> {
        self.blocks.range(..=height).map(|(height, block)| (*height, block.clone())).collect()
    }
}

/// A sign request's payload as the host made it, for signing in a test.
pub fn payload_of(request: &serde_json::Value) -> Vec<u8> {
    hex::decode(request["payload"].as_str().expect("a payload")).expect("hex")
}

/// Waits until `condition` holds, polling every 20 ms; panics with `what` after
/// `patience`.
pub fn wait_until(what: &str, patience: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < patience, "{what} did not happen within {patience:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How long a node or host may take to come up, reach a height, or catch up.
pub const NETWORK_PATIENCE: Duration = START_PATIENCE;
