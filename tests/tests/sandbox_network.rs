//! One chain host, nodes that follow it: the host's lifecycle and durability, its
//! contract, nodes that see the same chain, and a node that meets a host that is down,
//! stalls, lies or answers garbage. Loopback only.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use mpc_chain::host::Action;
use mpc_node_process_tests::sandbox_network::{
    Indexed, NETWORK_PATIENCE, Network, all_requests, as_user, follower_args, host_head, payload_of, requests, submit,
    wait_until, wait_until_indexed,
};
use mpc_node_process_tests::{DOCKER_GRACE, NodeProcess, assert_consistent, check, env_number, get_json, http};
use rand::{Rng, SeedableRng};

/// A host whose contract runs from genesis under a key the test holds, producing a
/// block every 20 ms with four sign requests each.
fn running_network(dir: &std::path::Path) -> Network {
    Network::write(dir, 3, 2, Some(SigningKey::from_bytes(&[42; 32])))
}

fn quick_chain() -> Vec<String> {
    ["--sandbox-block-interval", "20ms", "--sandbox-history-blocks", "20"].map(String::from).to_vec()
}

#[test]
fn the_host_stops_on_sigterm_with_exit_0_every_store_closed_and_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let network = running_network(dir.path());
    let home = dir.path().join("host");
    let mut host = NodeProcess::sandbox_chain(&home, &network.path, &quick_chain());
    let rpc = host.rpc_addr();
    wait_until("the host produced 30 blocks", NETWORK_PATIENCE, || host_head(rpc) >= 30);
    let stopped_at = host_head(rpc);
    host.stop_gracefully();
    let report = host.shutdown_report().expect("a ShutdownReport");
    assert_eq!(report["exit_code"], 0, "{report}");
    assert_eq!(report["final_instance_count"], 0, "{report}");
    // `check` knows a host's home (a chain store and no node store) and finds it whole.
    let checked = check(&home);
    assert_eq!(checked.code, 0, "{}", checked.output);
    assert!(
        checked.output.contains("a chain host's") && checked.output.contains("consistent: yes"),
        "{}",
        checked.output
    );

    let mut again = NodeProcess::sandbox_chain(&home, &network.path, &quick_chain());
    let rpc = again.rpc_addr();
    let resumed = host_head(rpc);
    assert!(resumed >= stopped_at, "the host resumed at {resumed}, below {stopped_at}");
    again.stop_gracefully();
}

/// SIGKILLs of the host at random moments while a client posts sign requests: every
/// transaction the host acknowledged ends up in exactly one block, and the chain has
/// no gap (a node that follows it accepts every block). `MPC_HOST_KILL_ROUNDS=300` for
/// the documented run; CI runs the default.
#[test]
fn acknowledged_transactions_survive_sigkills_of_the_host_and_the_chain_has_no_gap() {
    let rounds = env_number("MPC_HOST_KILL_ROUNDS", 20);
    let seed = env_number("MPC_HOST_KILL_SEED", 2026);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let network = running_network(dir.path());
    let home = dir.path().join("host");
    let mut acknowledged = BTreeSet::new();
    let mut nonce = 0u64;
    for round in 0..rounds {
        let mut host = NodeProcess::sandbox_chain(&home, &network.path, &quick_chain());
        let rpc = host.rpc_addr();
        let kill_at = Instant::now() + Duration::from_millis(rng.gen_range(5..300));
        while Instant::now() < kill_at {
            nonce += 1;
            let transaction =
                as_user(nonce, Action::Sign { payload: hex::encode(nonce.to_be_bytes()), path: "m/0".into() });
            if let Some((200, _)) = submit(rpc, &transaction) {
                acknowledged.insert(hex::encode(transaction.id()));
            }
        }
        host.kill();
        assert!(!host.log().contains("panicked"), "round {round} (seed {seed}):\n{}", host.log());
    }
    let mut host = NodeProcess::sandbox_chain(&home, &network.path, &quick_chain());
    let rpc = host.rpc_addr();
    // The pool drains into the next blocks.
    wait_until("every acknowledged transaction included", NETWORK_PATIENCE, || {
        let included: BTreeSet<String> =
            all_requests(rpc).iter().filter_map(|request| request["request_id"].as_str().map(str::to_owned)).collect();
        acknowledged.is_subset(&included)
    });
    let ids: Vec<String> =
        all_requests(rpc).iter().filter_map(|request| request["request_id"].as_str().map(str::to_owned)).collect();
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), distinct.len(), "a request was included twice (seed {seed})");
    eprintln!("{rounds} kills, {} transactions acknowledged, all included once", acknowledged.len());

    // A node syncs the whole chain: every block follows the one before.
    let head = host_head(rpc);
    let node_home = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(node_home.path(), &follower_args(rpc), &[]);
    wait_until_indexed(&mut node, head.saturating_sub(3), NETWORK_PATIENCE);
    node.stop_gracefully();
    assert_consistent(node_home.path());
    host.stop_gracefully();
}

#[test]
fn three_nodes_follow_one_host_and_index_the_same_blocks_and_requests() {
    let dir = tempfile::tempdir().unwrap();
    let network = running_network(dir.path());
    let mut host = NodeProcess::sandbox_chain(&dir.path().join("host"), &network.path, &quick_chain());
    let rpc = host.rpc_addr();
    let homes: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes: Vec<NodeProcess> =
        homes.iter().map(|home| NodeProcess::start(home.path(), &follower_args(rpc), &[])).collect();
    for node in &mut nodes {
        wait_until_indexed(node, 60, NETWORK_PATIENCE);
    }

    // One node killed and restarted catches up and passes check.
    nodes[1].kill();
    let target = host_head(rpc) + 40;
    wait_until("the host moved on", NETWORK_PATIENCE, || host_head(rpc) >= target);
    nodes[1] = NodeProcess::start(homes[1].path(), &follower_args(rpc), &[]);
    wait_until_indexed(&mut nodes[1], target, NETWORK_PATIENCE);

    for node in &mut nodes {
        node.stop_gracefully();
    }
    host.stop_gracefully();
    let indexed: Vec<Indexed> = homes.iter().map(|home| Indexed::read(home.path())).collect();
    let common = indexed.iter().map(|node| *node.blocks.keys().next_back().unwrap()).min().unwrap();
    assert!(common >= 60);
    for (index, node) in indexed.iter().enumerate().skip(1) {
        assert_eq!(node.up_to(common), indexed[0].up_to(common), "node {index} indexed another chain");
    }
    let requests: usize = indexed[0].up_to(common).values().map(|(_, ids)| ids.len()).sum();
    assert!(requests >= 4 * 50, "the nodes indexed {requests} requests");
    for home in &homes {
        assert_consistent(home.path());
    }
}

#[test]
fn a_node_killed_or_stopped_during_a_long_catch_up_stays_consistent_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let network = running_network(dir.path());
    let history = ["--sandbox-block-interval", "200ms", "--sandbox-history-blocks", "20000"].map(String::from);
    let mut host = NodeProcess::sandbox_chain(&dir.path().join("host"), &network.path, &history);
    let rpc = host.rpc_addr();
    wait_until("the host produced its history", NETWORK_PATIENCE, || host_head(rpc) >= 20_000);
    let home = tempfile::tempdir().unwrap();
    // A SIGKILL in the middle of the catch-up leaves both stores consistent.
    let mut node = NodeProcess::start(home.path(), &follower_args(rpc), &[]);
    wait_until_indexed(&mut node, 300, NETWORK_PATIENCE);
    node.kill();
    let killed_at = assert_consistent(home.path());
    assert!(killed_at < 20_000, "the kill landed during the catch-up ({killed_at})");
    let mut node = NodeProcess::start(home.path(), &follower_args(rpc), &[]);
    node.wait_for_log(&format!("streamer started start_height={}", killed_at + 1), NETWORK_PATIENCE);
    wait_until_indexed(&mut node, killed_at + 300, NETWORK_PATIENCE);
    let asked = Instant::now();
    node.signal(libc::SIGTERM);
    assert_eq!(node.wait_exit(DOCKER_GRACE).code(), Some(0), "{}", node.log());
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(2), "a stop during catch-up took {took:?}");
    let report = node.shutdown_report().expect("a ShutdownReport");
    assert_eq!(report["final_instance_count"], 0, "{report}");
    let height = assert_consistent(home.path());
    assert!(height < 20_000, "the stop landed during the catch-up ({height})");
    let mut node = NodeProcess::start(home.path(), &follower_args(rpc), &[]);
    node.wait_for_log(&format!("streamer started start_height={}", height + 1), NETWORK_PATIENCE);
    node.stop_gracefully();
    host.stop_gracefully();
    assert_consistent(home.path());
}

#[test]
fn the_contract_runs_on_one_agreed_key_and_accepts_one_valid_response_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let network = Network::write(dir.path(), 3, 2, None);
    let mut host = NodeProcess::sandbox_chain(&dir.path().join("host"), &network.path, &quick_chain());
    let rpc = host.rpc_addr();
    let node_home = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(node_home.path(), &follower_args(rpc), &[]);

    let contract = get_json(rpc, "/v1/contract");
    assert_eq!(contract["state"], "initializing", "{contract}");
    assert_eq!(contract["threshold"], 2);
    assert_eq!(contract["public_key"], serde_json::Value::Null);
    assert_eq!(contract["participants"].as_array().unwrap().len(), 3);
    assert_eq!(contract["participants"][1]["p2p_public_key"], network.config.participants[1].p2p_public_key);
    assert_eq!(contract["participants"][1]["account_id"], "node1.sandbox");
    assert!(requests(rpc, 0, host_head(rpc)).is_empty(), "no requests while initializing");

    let group = SigningKey::from_bytes(&[77; 32]);
    let group_hex = hex::encode(group.verifying_key().to_bytes());
    let other = hex::encode(SigningKey::from_bytes(&[78; 32]).verifying_key().to_bytes());
    for (index, key) in [(0, &group_hex), (1, &other), (2, &group_hex)] {
        let vote = network.as_participant(index, 1, Action::VotePk { public_key: key.clone() });
        assert_eq!(submit(rpc, &vote).unwrap().0, 200);
    }
    let after_votes = host_head(rpc) + 3;
    wait_until("the votes were included", NETWORK_PATIENCE, || host_head(rpc) >= after_votes);
    assert_eq!(get_json(rpc, "/v1/contract")["state"], "initializing", "disagreeing votes keep it initializing");

    // A transaction signed with another key than the listed one is refused outright.
    let impostor = mpc_chain::host::SignedTransaction::sign(
        "node1.sandbox",
        &SigningKey::from_bytes(&[9; 32]),
        2,
        Action::VotePk { public_key: group_hex.clone() },
    );
    let (status, reason) = submit(rpc, &impostor).unwrap();
    assert_eq!(status, 400, "{reason}");
    assert!(reason.contains("p2p key"), "{reason}");

    let agree = network.as_participant(1, 3, Action::VotePk { public_key: group_hex.clone() });
    assert_eq!(submit(rpc, &agree).unwrap().0, 200);
    wait_until("the contract runs", NETWORK_PATIENCE, || get_json(rpc, "/v1/contract")["state"] == "running");
    assert_eq!(get_json(rpc, "/v1/contract")["public_key"], group_hex);

    let start = host_head(rpc);
    wait_until("requests arrive", NETWORK_PATIENCE, || requests(rpc, start, host_head(rpc)).len() >= 2);
    let pending = requests(rpc, start, host_head(rpc));
    let (first, second) = (&pending[0], &pending[1]);
    for request in [first, second] {
        assert_eq!(request["response"], serde_json::Value::Null);
        assert_eq!(request["request_id"].as_str().unwrap().len(), 64);
        assert!(request["height"].as_u64().unwrap() > start);
    }
    let respond = |index: usize, nonce: u64, request: &serde_json::Value, signature: [u8; 64]| {
        let action = Action::Respond {
            request_id: request["request_id"].as_str().unwrap().to_owned(),
            signature: hex::encode(signature),
            commitments: Default::default(),
        };
        assert_eq!(submit(rpc, &network.as_participant(index, nonce, action)).unwrap().0, 200);
    };
    let good = group.sign(&payload_of(first)).to_bytes();
    respond(0, 10, first, group.sign(b"another payload").to_bytes());
    respond(0, 11, second, good);
    respond(1, 12, first, good);
    respond(2, 13, first, good);
    let answered_by = |request: &serde_json::Value| {
        let height = request["height"].as_u64().unwrap();
        requests(rpc, height, height)
            .into_iter()
            .find(|record| record["request_id"] == request["request_id"])
            .map(|record| record["response"].clone())
            .unwrap()
    };
    wait_until("the response was accepted", NETWORK_PATIENCE, || !answered_by(first).is_null());
    let accepted = answered_by(first);
    assert_eq!(accepted["responder"], "node1.sandbox", "the first valid response counts: {accepted}");
    assert_eq!(accepted["signature"], hex::encode(good));
    assert!(answered_by(second).is_null(), "a signature over another payload is refused");

    // The node indexed the accepted response, and only that one.
    let accepted_at = accepted["height"].as_u64().unwrap();
    wait_until_indexed(&mut node, accepted_at + 3, NETWORK_PATIENCE);
    node.stop_gracefully();
    let indexed = Indexed::read(node_home.path());
    let first_id = first["request_id"].as_str().unwrap();
    assert_eq!(indexed.responses.get(first_id), Some(&accepted_at), "{:?}", indexed.responses);
    assert!(!indexed.responses.contains_key(second["request_id"].as_str().unwrap()));
    assert_consistent(node_home.path());
    assert_eq!(http(rpc, "GET", "/v1/requests?from_height=0&to_height=10000", None).unwrap().0, 400);
    assert_eq!(http(rpc, "GET", "/v1/requests?from_height=5&to_height=4", None).unwrap().0, 400);
    assert_eq!(http(rpc, "GET", "/v1/requests?from_height=1&to_height=10000", None).unwrap().0, 200);
    host.stop_gracefully();
}

/// The node's client retries a transaction until the host comes up.
#[test]
fn a_transaction_submitted_while_the_host_is_down_is_acknowledged_once_it_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let network = running_network(dir.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client = mpc_chain::host_client::HostClient::new(&format!("http://127.0.0.1:{port}")).unwrap();
    let vote = network.as_participant(0, 1, Action::VotePk { public_key: hex::encode([5u8; 32]) });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let submitting = {
        let (client, vote, cancel) = (client.clone(), vote.clone(), cancel.clone());
        runtime.spawn(async move { client.submit_with_retries(&vote, 30, &cancel).await })
    };
    std::thread::sleep(Duration::from_millis(800));
    let listen = ["--listen".to_owned(), format!("127.0.0.1:{port}")];
    let mut args = quick_chain();
    args.extend(listen);
    let mut host = NodeProcess::sandbox_chain(&dir.path().join("host"), &network.path, &args);
    let submitted = runtime.block_on(submitting).unwrap().expect("acknowledged once the host was up");
    assert_eq!(submitted.id, hex::encode(vote.id()));
    let again = runtime.block_on(client.submit(&vote)).unwrap();
    assert_eq!(again.id, submitted.id, "a transaction posted again is the same transaction");
    host.stop_gracefully();
}

/// What the fake host of the hostile-host test does with each request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hostility {
    /// Forwards to the real host.
    Honest,
    /// Accepts and never answers.
    Stall,
    /// Answers 200 with bytes that are no batch of blocks.
    Garbage,
    /// Forwards to another host, whose blocks do not follow the node's head.
    Impostor,
    /// Refuses every connection (the listener is closed).
    Down,
}

#[test]
fn a_hostile_host_never_corrupts_a_node_and_makes_it_not_ready_until_the_host_is_honest_again() {
    let dir = tempfile::tempdir().unwrap();
    let network = running_network(dir.path());
    let mut host = NodeProcess::sandbox_chain(&dir.path().join("host"), &network.path, &quick_chain());
    std::fs::create_dir_all(dir.path().join("other")).unwrap();
    let other_network = Network::write(&dir.path().join("other"), 3, 2, Some(SigningKey::from_bytes(&[43; 32])));
    let mut other_args = quick_chain();
    other_args.extend(["--sandbox-seed".into(), "99".into()]);
    let mut other = NodeProcess::sandbox_chain(&dir.path().join("other-host"), &other_network.path, &other_args);
    let proxy = fake_host::FakeHost::start(host.rpc_addr(), other.rpc_addr());
    let home = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(home.path(), &follower_args(proxy.addr()), &[]);
    wait_until_indexed(&mut node, 30, NETWORK_PATIENCE);
    let web = node.web_addr();
    let ready = || http(web, "GET", "/readyz", None).map(|(status, _)| status);
    assert_eq!(ready(), Some(200));

    for hostility in [Hostility::Garbage, Hostility::Impostor, Hostility::Stall, Hostility::Down] {
        proxy.set(hostility);
        wait_until(&format!("{hostility:?}: the node not ready"), NETWORK_PATIENCE, || ready() == Some(503));
        assert!(node.log().contains("chain sync from the host failed"), "{hostility:?}:\n{}", node.log());
        proxy.set(Hostility::Honest);
        wait_until(&format!("{hostility:?}: ready again"), NETWORK_PATIENCE, || ready() == Some(200));
        node.assert_running();
    }
    assert!(!node.log().contains("panicked"), "{}", node.log());
    node.stop_gracefully();
    assert_consistent(home.path());
    let indexed = Indexed::read(home.path());
    let requests: BTreeMap<u64, Vec<String>> =
        indexed.blocks.iter().map(|(height, (_, ids))| (*height, ids.clone())).collect();
    assert!(requests.values().any(|ids| !ids.is_empty()));
    other.stop_gracefully();
    host.stop_gracefully();
}

/// A fake chain host that forwards to a real one, or misbehaves as told.
mod fake_host {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::Hostility;

    pub struct FakeHost {
        addr: SocketAddr,
        mode: Arc<Mutex<Hostility>>,
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl FakeHost {
        /// Listens on a free loopback port; forwards to `honest`, or to `impostor`.
        pub fn start(honest: SocketAddr, impostor: SocketAddr) -> FakeHost {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let addr = listener.local_addr().unwrap();
            let mode = Arc::new(Mutex::new(Hostility::Honest));
            let stop = Arc::new(AtomicBool::new(false));
            let thread = {
                let (mode, stop) = (mode.clone(), stop.clone());
                std::thread::spawn(move || serve(listener, honest, impostor, mode, stop))
            };
            FakeHost { addr, mode, stop, thread: Some(thread) }
        }

        pub fn addr(&self) -> SocketAddr {
            self.addr
        }

        pub fn set(&self, hostility: Hostility) {
            *self.mode.lock().unwrap() = hostility;
        }
    }

    impl Drop for FakeHost {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    fn serve(
        listener: TcpListener,
        honest: SocketAddr,
        impostor: SocketAddr,
        mode: Arc<Mutex<Hostility>>,
        stop: Arc<AtomicBool>,
    ) {
        let mut stalled = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let Ok((mut client, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            };
            let hostility = *mode.lock().unwrap();
            client.set_nonblocking(false).unwrap();
            client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let Some(request) = read_request(&mut client) else { continue };
            match hostility {
                Hostility::Honest => forward(&mut client, &request, honest),
                Hostility::Impostor => forward(&mut client, &request, impostor),
                Hostility::Garbage => {
                    let body = b"\x07garbage that is no batch of blocks";
                    let head =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                    let _ = client.write_all(head.as_bytes());
                    let _ = client.write_all(body);
                }
                Hostility::Stall => stalled.push(client),
                Hostility::Down => drop(client),
            }
        }
    }

    /// The request head and body (the node's requests are GETs, or small POSTs).
    fn read_request(client: &mut TcpStream) -> Option<Vec<u8>> {
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let read = client.read(&mut buffer).ok()?;
            if read == 0 {
                return None;
            }
            request.extend_from_slice(&buffer[..read]);
            if let Some(end) = request.windows(4).position(|window| window == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .and_then(|length| length.trim().parse().ok())
                    .unwrap_or(0);
                if request.len() >= end + 4 + length {
                    return Some(request);
                }
            }
        }
    }

    /// Sends `request` to `upstream` with `Connection: close` and relays its answer.
    fn forward(client: &mut TcpStream, request: &[u8], upstream: SocketAddr) {
        let Ok(mut server) = TcpStream::connect(upstream) else { return };
        let text = String::from_utf8_lossy(request).replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1);
        let _ = server.write_all(text.as_bytes());
        let mut answer = Vec::new();
        let _ = server.read_to_end(&mut answer);
        let _ = client.write_all(&answer);
    }
}
