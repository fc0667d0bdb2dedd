//! A signing network against faults of its participants: a leader that lies about the
//! payload, a leader that hangs, a peer with a key the contract does not list, a listed
//! peer that sends garbage, and key shares that cannot be used. Loopback only.

use std::time::Duration;

use mpc_node_process_tests::signing_network::{
    ANSWER_PATIENCE, QUICK_HOST, SigningNetwork, TestPeer, answered, dealt_shares, install_key_share,
};
use mpc_node_process_tests::{NodeProcess, proc_status_value};
use mpc_signer::messages::SignerMessage;

#[test]
fn a_leader_asking_to_sign_a_payload_not_on_chain_is_refused_and_another_leader_signs() {
    let mut network = SigningNetwork::create(3, 2, QUICK_HOST);
    network.start(0, &[("MPC_TEST_LIE_AS_LEADER", "1")]);
    network.start(1, &[]);
    network.start(2, &[]);
    let key = network.wait_running();
    for index in 0..3 {
        network.wait_signing(index);
    }
    let from = network.head();
    let requests = network.wait_answered_up_to(from + 40, ANSWER_PATIENCE);
    let answered = answered(&requests);
    let responders = network.assert_signatures_valid_and_nonces_distinct(&answered, &key);
    assert!(!responders.contains_key("node0.sandbox"), "the liar got no signature: {responders:?}");
    let refusals: usize = (1..3).map(|index| network.node(index).log().matches("payload differs").count()).sum();
    assert!(refusals > 0, "the members refused the liar");
}

#[test]
fn a_hung_leader_is_taken_over_within_the_bound() {
    let (mut network, key) = SigningNetwork::signing(3, 2, QUICK_HOST);
    let node0 = network.node(0).pid();
    // SIGSTOP: its connections stay open (until the peers' idle timeout), it answers
    // nothing, and it leads about a third of the requests first.
    unsafe { libc::kill(node0, libc::SIGSTOP) };
    let stopped_at = network.head();
    let requests = network.wait_answered_up_to(stopped_at + 60, ANSWER_PATIENCE);
    unsafe { libc::kill(node0, libc::SIGCONT) };
    let answered = answered(&requests);
    let window: Vec<_> = answered.iter().filter(|answer| answer.height > stopped_at + 2).collect();
    assert!(!window.is_empty());
    // Takeover after 3 s per rank, plus the rounds a session waits for a dead member:
    // every request is answered within 12 s of its block (blocks every 50 ms).
    let slowest = window.iter().map(|answer| answer.answered_at - answer.height).max().unwrap();
    assert!(slowest <= 240, "a request waited {slowest} blocks");
    assert!(window.iter().all(|answer| answer.responder != "node0.sandbox"));
    network.assert_signatures_valid_and_nonces_distinct(&answered, &key);
    let head = network.head();
    network.wait_answered_up_to(head + 20, ANSWER_PATIENCE);
}

#[test]
fn a_peer_presenting_a_key_the_contract_does_not_list_is_refused() {
    let mut network = SigningNetwork::create(3, 2, QUICK_HOST);
    network.start_all();
    network.wait_running();
    network.wait_signing(0);
    let node0 = network.config.participants[0].clone();
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let refused = TestPeer::connect("node1.sandbox", &stranger, &node0.p2p_addr, &node0.p2p_public_key);
    assert!(refused.is_err(), "the node accepted a key the contract does not list");
    let started = std::time::Instant::now();
    while !network.node(0).log().contains("mesh: refused a connection") {
        assert!(started.elapsed() < Duration::from_secs(10), "{}", network.node(0).log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(network.signer_status(0)["peers_connected"], 2, "the real peers stay connected");
}

#[test]
fn a_listed_peer_sending_garbage_breaks_only_its_own_protocols_and_memory_stays_bounded() {
    let (mut network, peers) = SigningNetwork::dealt(3, 1, 2, QUICK_HOST);
    network.start_all();
    let key = network.wait_running();
    for index in 0..3 {
        network.wait_signing(index);
    }
    let node0 = network.config.participants[0].clone();
    let rss_before = proc_status_value(network.node(0).pid(), "VmRSS");
    let mut peer = TestPeer::connect("node3.sandbox", &peers[0], &node0.p2p_addr, &node0.p2p_public_key).unwrap();
    let session = [9u8; 16];
    for round in 0..2000u32 {
        let message = match round % 6 {
            0 => vec![0xff; 1000],
            1 => SignerMessage::ShareRequest { session, signing_package: vec![round as u8; 1000] }.encode(),
            2 => SignerMessage::Share { session, share: vec![1; 32] }.encode(),
            3 => SignerMessage::CommitRequest {
                session: [round as u8; 16],
                request_id: [round as u8; 32],
                payload: vec![1; 100],
                signers: vec!["node3.sandbox".into(), "node0.sandbox".into()],
            }
            .encode(),
            4 => SignerMessage::DkgRound1 { attempt: u64::from(round), package: vec![2; 500] }.encode(),
            _ => SignerMessage::CommitRequest {
                session: [1; 16],
                request_id: [3; 32],
                payload: vec![],
                signers: vec!["node3.sandbox".into(); 5],
            }
            .encode(),
        };
        assert!(peer.send_data(message), "the node closed the connection at message {round}");
    }
    assert!(peer.is_open(Duration::from_millis(500)), "a listed peer's bad messages fail protocols, not the link");
    peer.send_oversized();
    assert!(!peer.is_open(Duration::from_secs(5)), "an oversized frame ends the connection");
    drop(peer);

    // A member waits up to 2 s for its own chain before it refuses a request it lacks.
    for reason in ["not a signer message", "unknown session", "is not on this node's chain", "in the signing set twice"]
    {
        network.node(0).wait_for_log(reason, Duration::from_secs(10));
    }
    let node = network.node(0);
    node.assert_running();
    let log = node.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(log.contains("peer broke the protocol"), "the oversized frame is logged");
    let growth = proc_status_value(network.node(0).pid(), "VmRSS").saturating_sub(rss_before);
    assert!(growth < 64 * 1024, "RSS grew {growth} KiB");
    let head = network.head();
    let requests = network.wait_answered_up_to(head + 20, ANSWER_PATIENCE);
    network.assert_signatures_valid_and_nonces_distinct(&answered(&requests), &key);
}

/// Starts node `index` of `network`, expects exit 3 with `message` in its log, and
/// that its key share file is byte for byte what it was.
fn assert_refused_with_exit_3(network: &SigningNetwork, index: usize, env: &[(&str, &str)], message: &str) {
    let home = network.home(index);
    let share = std::fs::read(home.join("key-share")).ok();
    let mut node = NodeProcess::start(&home, &mpc_node_process_tests::sandbox_network::follower_args(network.rpc), env);
    let status = node.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(3), "{}", node.log());
    assert!(node.log().contains(message), "no {message:?}:\n{}", node.log());
    assert_eq!(std::fs::read(home.join("key-share")).ok(), share, "nothing was changed or deleted");
}

#[test]
fn a_key_share_that_is_damaged_undecryptable_missing_or_of_another_key_stops_the_node_with_exit_3() {
    let (network, _) = SigningNetwork::dealt(6, 0, 2, QUICK_HOST);
    // node0: a share of another key.
    install_key_share(&network.home(0), &dealt_shares(6, 2)[0]);
    assert_refused_with_exit_3(&network, 0, &[], "holds no share of the contract's key");
    // node1: another secrets key.
    std::fs::write(network.home(1).join("secrets-key"), format!("{}\n", "ab".repeat(32))).unwrap();
    assert_refused_with_exit_3(&network, 1, &[], "cannot be decrypted");
    // node2: a damaged file.
    let path = network.home(2).join("key-share");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    assert_refused_with_exit_3(&network, 2, &[], "cannot be decrypted");
    // node3: the secrets key is gone.
    std::fs::remove_file(network.home(3).join("secrets-key")).unwrap();
    assert_refused_with_exit_3(&network, 3, &[], "there is no secrets key");
    // node4: the share is gone while the contract runs.
    std::fs::remove_file(network.home(4).join("key-share")).unwrap();
    assert_refused_with_exit_3(&network, 4, &[], "this node has no key share");
    // node5: MPC_SECRETS_KEY, when given, is the key: another one does not decrypt.
    assert_refused_with_exit_3(&network, 5, &[("MPC_SECRETS_KEY", &"cd".repeat(32))], "cannot be decrypted");
}
