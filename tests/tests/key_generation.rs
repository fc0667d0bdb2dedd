//! Distributed key generation under kills: a participant SIGKILLed at each durable step
//! of it (a crash point, so the kill lands exactly there), each step on another
//! participant. Afterwards the network runs under one key, and every signing set of two
//! signs under it: the shares are consistent.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use mpc_node_process_tests::CRASH_POINT_REACHED;
use mpc_node_process_tests::signing_network::{ANSWER_PATIENCE, QUICK_HOST, SigningNetwork, answered};

/// `MPC_KEY_GENERATION_KILL_ROUNDS=N` repeats every step N times, the victim moving on
/// each round; CI runs one round (each step once, on rotating participants).
#[test]
fn a_kill_at_each_step_of_the_key_generation_on_every_participant_still_ends_in_one_consistent_key() {
    let rounds = mpc_node_process_tests::env_number("MPC_KEY_GENERATION_KILL_ROUNDS", 1) as usize;
    let steps = mpc_signer::KEY_GENERATION_CRASH_POINTS.iter().enumerate();
    for (round, (step, point)) in (0..rounds).flat_map(|round| steps.clone().map(move |step| (round, step))) {
        let victim = (step + round) % 3;
        let mut network = SigningNetwork::create(3, 2, QUICK_HOST);
        for index in (0..3).filter(|index| *index != victim) {
            network.start(index, &[]);
        }
        let node = network.start(victim, &[("MPC_TEST_CRASH_AT", point)]);
        let status = node.wait_exit(Duration::from_secs(60));
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{point}: {}", node.log());
        let log = node.log();
        assert!(log.contains(CRASH_POINT_REACHED) && log.contains(point), "{point}: the kill landed elsewhere:\n{log}");
        network.start(victim, &[]);
        let key = network.wait_running();
        for index in 0..3 {
            let status = network.wait_signing(index);
            assert_eq!(status["public_key"], hex::encode(key.to_bytes()), "{point}: node {index}");
        }
        assert!(
            !network.home(victim).join("key-share.tmp").exists() || *point == "dkg:share_staged",
            "{point}: only a kill between the staging file's sync and its rename leaves one"
        );
        // Each pair signs alone: stop the third, see requests answered, bring it back.
        for left_out in 0..3 {
            let (report, _) = network.stop(left_out);
            assert_eq!(report["exit_code"], 0);
            let from = network.head();
            let requests = network.wait_answered_up_to(from + 5, ANSWER_PATIENCE);
            let by_pair: Vec<_> = answered(&requests).into_iter().filter(|answer| answer.height > from + 1).collect();
            assert!(!by_pair.is_empty(), "{point}: the pair without node {left_out} signed nothing");
            let left_out_account = format!("node{left_out}.sandbox");
            assert!(by_pair.iter().all(|answer| answer.responder != left_out_account));
            network.assert_signatures_valid_and_nonces_distinct(&by_pair, &key);
            network.start(left_out, &[]);
            network.wait_signing(left_out);
        }
        let requests = network.wait_answered_up_to(network.head(), ANSWER_PATIENCE);
        network.assert_signatures_valid_and_nonces_distinct(&answered(&requests), &key);
    }
}
