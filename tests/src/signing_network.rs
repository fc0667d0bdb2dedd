//! A signing network for process tests: homes with their own P2P keys, a network file
//! listing them, a chain host, nodes that follow it and sign, and the checks that trust
//! nothing but the chain (every answered request's signature verifies under the
//! contract's key with ed25519-dalek and with Python's `cryptography`, and every R is
//! distinct).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, VerifyingKey};
use mpc_chain::host::{NetworkConfig, Participant};

use crate::sandbox_network::{
    NETWORK_PATIENCE, all_requests, follower_args, host_head, wait_until, wait_until_answered,
};
use crate::{NodeProcess, free_port, get_json, http, last_lines};

/// How long a network may take to generate its key.
pub const KEY_PATIENCE: Duration = Duration::from_secs(60);

/// How long the answers to a run of blocks may take.
pub const ANSWER_PATIENCE: Duration = Duration::from_secs(90);

/// A host producing a block every 50 ms with two sign requests each once the contract
/// runs, after five blocks of history.
pub const QUICK_HOST: &[&str] =
    &["--sandbox-block-interval", "50ms", "--sandbox-history-blocks", "5", "--sandbox-requests-per-block", "2"];

/// The P2P public key of the home, created by `mpc-node p2p-key`.
pub fn p2p_key_of(home: &Path) -> String {
    let output = std::process::Command::new(crate::node_binary())
        .args(["p2p-key", "--home"])
        .arg(home)
        .output()
        .expect("run mpc-node p2p-key");
    assert!(output.status.success(), "p2p-key failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// A chain host and the homes of its participants; nodes are started by the test.
pub struct SigningNetwork {
    /// Where everything lives.
    pub dir: tempfile::TempDir,
    /// The network file's contents.
    pub config: NetworkConfig,
    /// The chain host.
    pub host: NodeProcess,
    /// Its RPC.
    pub rpc: SocketAddr,
    /// Each participant's node, when running.
    pub nodes: Vec<Option<NodeProcess>>,
    host_args: Vec<String>,
}

impl SigningNetwork {
    /// `count` participants at `threshold`, each home with its own P2P key (made by the
    /// node's `p2p-key` command), and a host producing blocks with `host_args`.
    pub fn create(count: usize, threshold: u32, host_args: &[&str]) -> SigningNetwork {
        Self::create_with(count, threshold, host_args, |_, _| {})
    }

    /// Like [`SigningNetwork::create`]; `prepare` may change the network file (a
    /// public key to run under from genesis) before the host starts.
    pub fn create_with(
        count: usize,
        threshold: u32,
        host_args: &[&str],
        prepare: impl FnOnce(&Path, &mut NetworkConfig),
    ) -> SigningNetwork {
        let dir = tempfile::tempdir().unwrap();
        let participants = (0..count)
            .map(|index| {
                let home = dir.path().join(format!("node-{index}"));
                std::fs::create_dir_all(&home).unwrap();
                Participant {
                    account_id: format!("node{index}.sandbox"),
                    p2p_addr: format!("127.0.0.1:{}", free_port()),
                    p2p_public_key: p2p_key_of(&home),
                }
            })
            .collect();
        let mut config = NetworkConfig { threshold, participants, public_key: None };
        prepare(dir.path(), &mut config);
        let path = dir.path().join("network.json");
        std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
        let host_args: Vec<String> = host_args.iter().map(|arg| arg.to_string()).collect();
        let mut host = NodeProcess::sandbox_chain(&dir.path().join("host"), &path, &host_args);
        let rpc = host.rpc_addr();
        SigningNetwork { dir, config, host, rpc, nodes: (0..count).map(|_| None).collect(), host_args }
    }

    /// A network of `count` nodes at `threshold`, every node started and signing under
    /// the key they generated; returns it and the key.
    pub fn signing(count: usize, threshold: u32, host_args: &[&str]) -> (SigningNetwork, VerifyingKey) {
        let mut network = Self::create(count, threshold, host_args);
        network.start_all();
        let key = network.wait_running();
        for index in 0..count {
            network.wait_signing(index);
        }
        (network, key)
    }

    /// The home of participant `index`.
    pub fn home(&self, index: usize) -> PathBuf {
        self.dir.path().join(format!("node-{index}"))
    }

    /// Starts participant `index`'s node with extra environment `env`; it journals what
    /// it does with its presignatures ([`SigningNetwork::journals`]).
    pub fn start(&mut self, index: usize, env: &[(&str, &str)]) -> &mut NodeProcess {
        self.start_with(index, &[], env)
    }

    /// Like [`SigningNetwork::start`], with `args` after the follower's arguments.
    pub fn start_with(&mut self, index: usize, args: &[&str], env: &[(&str, &str)]) -> &mut NodeProcess {
        let journal = self.journal_path(index).display().to_string();
        let mut env = env.to_vec();
        env.push(("MPC_TEST_JOURNAL", &journal));
        let mut all_args = follower_args(self.rpc);
        all_args.extend(args.iter().map(|arg| arg.to_string()));
        let node = NodeProcess::start(&self.home(index), &all_args, &env);
        self.nodes[index] = Some(node);
        self.node(index)
    }

    /// Starts every participant's node.
    pub fn start_all(&mut self) {
        for index in 0..self.nodes.len() {
            self.start(index, &[]);
        }
    }

    /// The running node of participant `index`.
    pub fn node(&mut self, index: usize) -> &mut NodeProcess {
        self.nodes[index].as_mut().unwrap_or_else(|| panic!("node {index} is not running"))
    }

    /// SIGKILLs participant `index`'s node.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut node) = self.nodes[index].take() {
            node.kill();
        }
    }

    /// SIGTERMs participant `index`'s node and returns its shutdown report and its log,
    /// asserting exit 0, every store closed and no task aborted.
    pub fn stop(&mut self, index: usize) -> (serde_json::Value, String) {
        let mut node = self.nodes[index].take().unwrap_or_else(|| panic!("node {index} is not running"));
        node.stop_gracefully();
        let report = node.shutdown_report().expect("a ShutdownReport");
        assert_eq!(report["final_instance_count"], 0, "{report}");
        assert_eq!(report["aborted_tasks"], serde_json::json!([]), "{report}");
        (report, node.log())
    }

    /// Restarts the host (after a test stopped or killed it).
    pub fn restart_host(&mut self) {
        let path = self.dir.path().join("network.json");
        let args = self.host_args.clone();
        self.host = NodeProcess::sandbox_chain(&self.dir.path().join("host"), &path, &args);
        self.rpc = self.host.rpc_addr();
    }

    /// The contract's public view.
    pub fn contract(&self) -> serde_json::Value {
        get_json(self.rpc, "/v1/contract")
    }

    /// Waits for the contract to run; returns its key.
    pub fn wait_running(&mut self) -> VerifyingKey {
        let started = Instant::now();
        loop {
            let contract = self.contract();
            if contract["state"] == "running" {
                let key = contract["public_key"].as_str().unwrap();
                return mpc_chain::host::parse_public_key(key).unwrap();
            }
            for node in self.nodes.iter_mut().flatten() {
                node.assert_running();
            }
            assert!(started.elapsed() < KEY_PATIENCE, "no key within {KEY_PATIENCE:?}: {contract}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until node `index` has loaded its share of the contract's key; returns its
    /// signing status.
    pub fn wait_signing(&mut self, index: usize) -> serde_json::Value {
        let started = Instant::now();
        loop {
            self.node(index).assert_running();
            let status = self.signer_status(index);
            if status["stage"] == "signing" {
                return status;
            }
            assert!(started.elapsed() < KEY_PATIENCE, "node {index} is not signing: {status}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The host's head height.
    pub fn head(&self) -> u64 {
        host_head(self.rpc)
    }

    /// Waits until every request up to `height` has its accepted response; returns
    /// every request of the chain.
    pub fn wait_answered_up_to(&mut self, height: u64, patience: Duration) -> Vec<serde_json::Value> {
        wait_until(&format!("the host reached {height}"), NETWORK_PATIENCE, || self.head() >= height);
        wait_until_answered(
            &format!("up to {height}"),
            patience,
            || all_requests(self.rpc),
            |request| request["height"].as_u64().unwrap() <= height,
            || self.logs(),
        )
    }

    /// Every node's log, for a failure message.
    pub fn logs(&self) -> String {
        let mut logs = String::new();
        for (index, node) in self.nodes.iter().enumerate() {
            if let Some(node) = node {
                logs.push_str(&format!("--- node {index} (last lines) ---\n{}", last_lines(node.log().lines(), 40)));
            }
        }
        logs
    }

    /// The signing side's state as node `index`'s `/debug/lifecycle` shows it.
    pub fn signer_status(&mut self, index: usize) -> serde_json::Value {
        let web = self.node(index).web_addr();
        get_json(web, "/debug/lifecycle")["signer"].clone()
    }

    /// Node `index`'s `/readyz`: the status and the body.
    pub fn readyz(&mut self, index: usize) -> (u16, String) {
        let web = self.node(index).web_addr();
        http(web, "GET", "/readyz", None).expect("an answer")
    }
}

/// One accepted response, as the chain shows it.
#[derive(Debug, Clone)]
pub struct Answered {
    /// The request.
    pub request_id: String,
    /// Its height.
    pub height: u64,
    /// What was signed.
    pub payload: Vec<u8>,
    /// The signature (R ‖ s).
    pub signature: [u8; 64],
    /// Who submitted it.
    pub responder: String,
    /// The height of the response.
    pub answered_at: u64,
    /// Each signer's nonce commitments (`SigningCommitments`, hex), by account.
    pub commitments: BTreeMap<String, String>,
}

/// The answered requests among `requests` (from `/v1/requests`).
pub fn answered(requests: &[serde_json::Value]) -> Vec<Answered> {
    requests
        .iter()
        .filter(|request| !request["response"].is_null())
        .map(|request| {
            let response = &request["response"];
            let signature: [u8; 64] =
                hex::decode(response["signature"].as_str().unwrap()).unwrap().try_into().expect("64 bytes");
            Answered {
                request_id: request["request_id"].as_str().unwrap().to_owned(),
                height: request["height"].as_u64().unwrap(),
                payload: hex::decode(request["payload"].as_str().unwrap()).unwrap(),
                signature,
                responder: response["responder"].as_str().unwrap().to_owned(),
                answered_at: response["height"].as_u64().unwrap(),
                commitments: serde_json::from_value(response["commitments"].clone()).unwrap_or_default(),
            }
        })
        .collect()
}

impl SigningNetwork {
    /// [`assert_chain_signatures`] over this network's participants.
    pub fn assert_signatures_valid_and_nonces_distinct(
        &self,
        answered: &[Answered],
        key: &VerifyingKey,
    ) -> BTreeMap<String, usize> {
        assert_chain_signatures(&self.config, answered, key)
    }
}

/// Checks what only the chain says: each signature verifies under `key` (ed25519-dalek,
/// strictly, and Python's `cryptography`); no two signatures share an R; and, since
/// a FROST R differs per message even from the same nonces, the nonce commitments
/// each response published: R must be the group commitment they make over the
/// payload (FROST's own computation, so they are the nonces really used), and no
/// signer's hiding commitment may appear in two responses (a nonce used twice).
/// `config` gives each account's FROST identifier (its place in the network file).
/// Returns the responders' counts.
pub fn assert_chain_signatures(
    config: &NetworkConfig,
    answered: &[Answered],
    key: &VerifyingKey,
) -> BTreeMap<String, usize> {
    let mut nonces = BTreeSet::new();
    let mut commitments_seen = BTreeSet::new();
    let mut responders = BTreeMap::new();
    let group_key = frost_ed25519::VerifyingKey::deserialize(&key.to_bytes()).unwrap();
    for answer in answered {
        key.verify_strict(&answer.payload, &Signature::from_bytes(&answer.signature))
            .unwrap_or_else(|_| panic!("the signature of {} does not verify", answer.request_id));
        assert!(nonces.insert(answer.signature[..32].to_vec()), "R of {} was used before", answer.request_id);
        assert!(!answer.commitments.is_empty(), "the response to {} published no commitments", answer.request_id);
        let mut by_identifier = BTreeMap::new();
        for (account, hex_commitments) in &answer.commitments {
            let position = config.participants.iter().position(|p| &p.account_id == account).unwrap();
            let identifier = frost_ed25519::Identifier::try_from(position as u16 + 1).unwrap();
            let commitments =
                frost_ed25519::round1::SigningCommitments::deserialize(&hex::decode(hex_commitments).unwrap()).unwrap();
            let hiding = commitments.hiding().serialize().unwrap();
            assert!(
                commitments_seen.insert((account.clone(), hiding)),
                "{account}'s nonce of the response to {} served another signature before",
                answer.request_id
            );
            by_identifier.insert(identifier, commitments);
        }
        let package = frost_ed25519::SigningPackage::new(by_identifier, &answer.payload);
        let factors = frost_core::compute_binding_factor_list(&package, &group_key, &[]).unwrap();
        let group_commitment = frost_core::compute_group_commitment(&package, &factors).unwrap();
        let r = <frost_ed25519::Ed25519Group as frost_core::Group>::serialize(&group_commitment.to_element()).unwrap();
        assert_eq!(r.as_slice(), &answer.signature[..32], "R of {} is not its commitments'", answer.request_id);
        *responders.entry(answer.responder.clone()).or_insert(0) += 1;
    }
    verify_with_python(answered, key);
    responders
}

/// Verifies every signature with the Python `cryptography` package's Ed25519 verifier
/// (a second, independent implementation).
fn verify_with_python(answered: &[Answered], key: &VerifyingKey) {
    let items: Vec<serde_json::Value> = answered
        .iter()
        .map(|answer| {
            serde_json::json!({
                "request_id": answer.request_id,
                "payload": hex::encode(&answer.payload),
                "signature": hex::encode(answer.signature),
            })
        })
        .collect();
    let input = serde_json::json!({"public_key": hex::encode(key.to_bytes()), "signatures": items});
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("verify_ed25519.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "Python's verifier refused: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let verified: usize = String::from_utf8_lossy(&output.stdout).trim().parse().expect("a count");
    assert_eq!(verified, answered.len(), "Python verified every signature");
}

/// Shares of one key for `count` participants at `threshold`, from a trusted dealer:
/// for tests that start a network under a key instead of generating one.
pub fn dealt_shares(count: u16, threshold: u16) -> Vec<mpc_signer::key_share::KeyShare> {
    let (shares, public_key_package) = frost_ed25519::keys::generate_with_dealer(
        count,
        threshold,
        frost_ed25519::keys::IdentifierList::Default,
        rand::rngs::OsRng,
    )
    .unwrap();
    shares
        .into_values()
        .map(|share| mpc_signer::key_share::KeyShare {
            attempt: 1,
            key_package: frost_ed25519::keys::KeyPackage::try_from(share).unwrap(),
            public_key_package: public_key_package.clone(),
        })
        .collect()
}

/// Seals `share` into `home` with the home's secrets key (created if missing).
pub fn install_key_share(home: &Path, share: &mpc_signer::key_share::KeyShare) {
    let secrets = mpc_signer::secrets::SecretsKey::load_or_create(home, &[]).unwrap();
    mpc_signer::key_share::write_key_shares(home, &secrets, std::slice::from_ref(share), || {}).unwrap();
}

impl SigningNetwork {
    /// `count` nodes and `test_peers` participants played by the test, under a key dealt
    /// to all of them (the contract runs from genesis, no key generation); returns the
    /// network and the test peers' P2P keys (participants `count..`).
    pub fn dealt(
        count: usize,
        test_peers: usize,
        threshold: u32,
        host_args: &[&str],
    ) -> (SigningNetwork, Vec<ed25519_dalek::SigningKey>) {
        let peer_keys: Vec<ed25519_dalek::SigningKey> =
            (0..test_peers).map(|index| ed25519_dalek::SigningKey::from_bytes(&[index as u8 + 77; 32])).collect();
        let keys = peer_keys.clone();
        let network = Self::create_with(count, threshold, host_args, |dir, config| {
            for (index, key) in keys.iter().enumerate() {
                config.participants.push(Participant {
                    account_id: format!("node{}.sandbox", count + index),
                    p2p_addr: format!("127.0.0.1:{}", free_port()),
                    p2p_public_key: hex::encode(key.verifying_key().to_bytes()),
                });
            }
            let shares = dealt_shares(config.participants.len() as u16, threshold as u16);
            for (index, share) in shares.iter().take(count).enumerate() {
                install_key_share(&dir.join(format!("node-{index}")), share);
            }
            config.public_key = Some(shares[0].public_key_hex());
        });
        (network, peer_keys)
    }
}

/// A participant played by the test over a real mesh connection: TLS with its listed
/// key, a hello, then whatever frames the test sends.
pub struct TestPeer {
    runtime: tokio::runtime::Runtime,
    framed: Option<
        tokio_util::codec::Framed<
            tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
            tokio_util::codec::LengthDelimitedCodec,
        >,
    >,
}

impl TestPeer {
    /// Connects as `account` with `key` to the node listening on `addr` whose P2P key is
    /// `node_key` (hex); `Err` with the reason when the connection is refused.
    pub fn connect(
        account: &str,
        key: &ed25519_dalek::SigningKey,
        addr: &str,
        node_key: &str,
    ) -> Result<TestPeer, String> {
        use futures::SinkExt;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut expected = [0u8; 32];
        hex::decode_to_slice(node_key, &mut expected).unwrap();
        let framed = runtime.block_on(async {
            let config = mpc_mesh::tls::client_config(key, expected).map_err(|err| err.to_string())?;
            let connector = tokio_rustls::TlsConnector::from(config);
            let stream = tokio::net::TcpStream::connect(addr).await.map_err(|err| err.to_string())?;
            let tls = connector.connect(mpc_mesh::tls::peer_name(), stream).await.map_err(|err| err.to_string())?;
            let mut framed = tokio_util::codec::Framed::new(tls, mpc_mesh::frame::codec());
            let hello = mpc_mesh::frame::Frame::Hello {
                version: mpc_mesh::frame::PROTOCOL_VERSION,
                account_id: account.to_owned(),
            };
            framed.send(hello.encode()).await.map_err(|err| err.to_string())?;
            // A refused client certificate shows as the server closing the stream.
            use futures::StreamExt;
            match tokio::time::timeout(Duration::from_secs(2), framed.next()).await {
                Ok(Some(Ok(_))) | Err(_) => Ok(framed),
                Ok(Some(Err(err))) => Err(err.to_string()),
                Ok(None) => Err("closed by the node".to_owned()),
            }
        })?;
        Ok(TestPeer { runtime, framed: Some(framed) })
    }

    /// Sends one frame of raw bytes as a mesh data frame; `false` once the node closed
    /// the connection.
    pub fn send_data(&mut self, payload: Vec<u8>) -> bool {
        self.send_frame(mpc_mesh::frame::Frame::Data(payload).encode())
    }

    /// Sends `bytes` as one length-delimited frame, whatever they are.
    pub fn send_frame(&mut self, bytes: bytes::Bytes) -> bool {
        use futures::SinkExt;
        let Some(framed) = self.framed.as_mut() else { return false };
        let sent = self.runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), framed.send(bytes)).await.is_ok_and(|sent| sent.is_ok())
        });
        if !sent {
            self.framed = None;
        }
        sent
    }

    /// Sends a frame longer than the mesh's limit, writing its length and bytes raw.
    pub fn send_oversized(&mut self) -> bool {
        use tokio::io::AsyncWriteExt;
        let Some(framed) = self.framed.as_mut() else { return false };
        let length = (mpc_mesh::frame::MAX_FRAME_BYTES as u32 + 1).to_be_bytes();
        self.runtime.block_on(async {
            let stream = framed.get_mut();
            let body = vec![0u8; 64 * 1024];
            stream.write_all(&length).await.is_ok()
                && stream.write_all(&body).await.is_ok()
                && stream.flush().await.is_ok()
        })
    }

    /// Whether the node still keeps the connection open (reads until `patience`).
    pub fn is_open(&mut self, patience: Duration) -> bool {
        use futures::StreamExt;
        let Some(framed) = self.framed.as_mut() else { return false };
        let open = self.runtime.block_on(async {
            let deadline = tokio::time::Instant::now() + patience;
            loop {
                match tokio::time::timeout_at(deadline, framed.next()).await {
                    Err(_) => return true,
                    Ok(Some(Ok(_))) => continue,
                    Ok(_) => return false,
                }
            }
        });
        if !open {
            self.framed = None;
        }
        open
    }
}

/// What the nodes' test journals (`MPC_TEST_JOURNAL`, one file per node) say they did
/// with their presignatures: the check that no presignature served two requests,
/// independent of the chain's.
#[derive(Debug, Default)]
pub struct Journals {
    /// Per (owner, id), every request a share was made for, from any node.
    pub uses: BTreeMap<(String, u64), BTreeSet<String>>,
    /// Per node index, the id blocks it reserved, in order: (from, until).
    pub reserved: BTreeMap<usize, Vec<(u64, u64)>>,
    /// Per node index, the ids of presignatures it stored as owner, in order.
    pub stored: BTreeMap<usize, Vec<u64>>,
    /// Every secret nonce made: (owner, id, hiding, binding), 32 bytes each.
    pub nonces: Vec<(String, u64, Vec<u8>, Vec<u8>)>,
    /// The (owner, id) whose owner made its own nonces: a generation that got past its
    /// members' confirmations (the owner journals them before it stores the
    /// presignature, so one without is certainly never stored).
    pub owner_nonces: BTreeSet<(String, u64)>,
    /// Per member index, the (owner, id) whose nonces it deleted as orphans.
    pub collected: BTreeMap<usize, Vec<(String, u64)>>,
    /// Every signature a node aggregated as leader: (request, path, latency), in the
    /// order each node made them.
    pub signed: Vec<(String, String, Duration)>,
    /// Every response a leader submitted, with how long the host took to acknowledge it.
    pub submitted: Vec<(String, Duration)>,
}

impl SigningNetwork {
    /// The journal file of node `index`.
    pub fn journal_path(&self, index: usize) -> PathBuf {
        self.dir.path().join(format!("journal-node-{index}.log"))
    }

    /// Reads every node's journal.
    pub fn journals(&self) -> Journals {
        let mut journals = Journals::default();
        for index in 0..self.nodes.len() {
            let text = std::fs::read_to_string(self.journal_path(index)).unwrap_or_default();
            let lines: Vec<&str> = text.split('\n').collect();
            for (number, line) in lines.iter().enumerate() {
                // Skipped: a line torn by a SIGKILL (the next process marked it `torn`),
                // and the file's end, which may still be being written.
                if matches!(lines.get(number + 1), None | Some(&"torn")) {
                    continue;
                }
                let words: Vec<&str> = line.split(' ').collect();
                match words.as_slice() {
                    ["share", owner, id, request] => {
                        let key = (owner.to_string(), id.parse().unwrap());
                        journals.uses.entry(key).or_default().insert(request.to_string());
                    }
                    ["reserved", from, until] => journals
                        .reserved
                        .entry(index)
                        .or_default()
                        .push((from.parse().unwrap(), until.parse().unwrap())),
                    ["stored", _, id] => journals.stored.entry(index).or_default().push(id.parse().unwrap()),
                    ["nonces", owner, id, hiding, binding] => {
                        let key = (owner.to_string(), id.parse().unwrap());
                        if *owner == format!("node{index}.sandbox") {
                            journals.owner_nonces.insert(key.clone());
                        }
                        journals.nonces.push((
                            key.0,
                            key.1,
                            hex::decode(hiding).unwrap(),
                            hex::decode(binding).unwrap(),
                        ));
                    }
                    ["signed", request, path, micros] => journals.signed.push((
                        request.to_string(),
                        path.to_string(),
                        Duration::from_micros(micros.parse().unwrap()),
                    )),
                    ["submitted", request, micros] => {
                        journals.submitted.push((request.to_string(), Duration::from_micros(micros.parse().unwrap())))
                    }
                    ["collected", owner, ids @ ..] => {
                        let ids = ids.join(" ");
                        for id in ids.trim_matches(|c| c == '[' || c == ']').split(", ").filter(|id| !id.is_empty()) {
                            journals.collected.entry(index).or_default().push((owner.to_string(), id.parse().unwrap()));
                        }
                    }
                    ["started"] | ["torn"] => {}
                    _ => panic!("node {index}: unknown journal line {line:?}"),
                }
            }
        }
        journals
    }
}

impl SigningNetwork {
    /// Waits for the requests up to 10 blocks past the head to be answered, stops every
    /// node, checks every home (`mpc-node check`, the asset store included), and checks
    /// the chain (every signature valid, every R distinct) and the journals (ids unique,
    /// no presignature used twice). Returns how many presignatures were used.
    pub fn stop_and_check_everything(&mut self, key: &VerifyingKey) -> usize {
        let requests = self.wait_answered_up_to(self.head() + 10, ANSWER_PATIENCE);
        for index in 0..self.nodes.len() {
            if self.nodes[index].is_some() {
                self.stop(index);
            }
            let checked = crate::check(&self.home(index));
            assert_eq!(checked.code, 0, "node {index}:\n{}", checked.output);
            assert!(checked.output.contains("asset store:"), "{}", checked.output);
        }
        self.assert_signatures_valid_and_nonces_distinct(&answered(&requests), key);
        let journals = self.journals();
        journals.assert_ids_unique_and_increasing();
        journals.assert_no_presignature_used_twice()
    }
}

impl Journals {
    /// Asserts that no presignature served two requests; returns how many were used.
    pub fn assert_no_presignature_used_twice(&self) -> usize {
        for ((owner, id), requests) in &self.uses {
            assert_eq!(requests.len(), 1, "presignature {id} of {owner} was used for {requests:?}");
        }
        self.uses.len()
    }

    /// Asserts that each node's reserved id blocks only ever increase, without overlap,
    /// across every restart, and that every id it stored is unique and from one of its
    /// blocks. (Generations run side by side, so ids are stored in the order they
    /// finish, not the order they were handed out.)
    pub fn assert_ids_unique_and_increasing(&self) {
        for (index, blocks) in &self.reserved {
            for pair in blocks.windows(2) {
                assert!(pair[0].1 <= pair[1].0, "node {index} reserved overlapping or decreasing blocks {pair:?}");
            }
        }
        for (index, ids) in &self.stored {
            let unique: BTreeSet<u64> = ids.iter().copied().collect();
            assert_eq!(unique.len(), ids.len(), "node {index} stored an id twice: {ids:?}");
            let blocks = self.reserved.get(index).cloned().unwrap_or_default();
            for id in ids {
                assert!(
                    blocks.iter().any(|(from, until)| (from..until).contains(&id)),
                    "node {index} stored id {id} outside its reserved blocks"
                );
            }
        }
    }
}
