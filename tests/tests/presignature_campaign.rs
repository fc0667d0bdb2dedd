//! The kill campaign across a signing network: three nodes and a chain host, requests
//! arriving all the time, and random SIGKILL, SIGTERM and SIGHUP of random nodes at
//! random moments. At the end every request is answered once with a valid signature,
//! every accepted signature has a distinct R (the check that trusts nothing but the
//! chain), the journals show no presignature used for two requests, and every home
//! checks clean.
//!
//! `MPC_SIGNING_CAMPAIGN_ROUNDS=500 MPC_SIGNING_CAMPAIGN_SEED=2026 cargo test --release
//! --workspace --all-features --test presignature_campaign -- --nocapture` is the
//! documented run; CI runs the default rounds.

use std::time::Duration;

use mpc_node_process_tests::env_number;
use mpc_node_process_tests::signing_network::SigningNetwork;
use rand::{Rng, SeedableRng};

#[test]
fn random_kills_stops_and_restarts_of_every_node_never_reuse_a_presignature() {
    let rounds = env_number("MPC_SIGNING_CAMPAIGN_ROUNDS", 40);
    let seed = env_number("MPC_SIGNING_CAMPAIGN_SEED", 2026);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let busy =
        ["--sandbox-block-interval", "20ms", "--sandbox-history-blocks", "5", "--sandbox-requests-per-block", "4"];
    let (mut network, key) = SigningNetwork::signing(3, 2, &busy);
    let mut counts = [0u32; 3];
    for round in 0..rounds {
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..400)));
        let victim = rng.gen_range(0..3);
        match rng.gen_range(0..3) {
            0 => {
                network.kill(victim);
                network.start(victim, &[]);
                counts[0] += 1;
            }
            1 => {
                let (report, _) = network.stop(victim);
                assert_eq!(report["exit_code"], 0, "round {round}: {report}");
                network.start(victim, &[]);
                counts[1] += 1;
            }
            _ => {
                // A SIGHUP that lands while the node is still starting is ignored (and
                // says so); either answer ends the round.
                let node = network.node(victim);
                let answers = |log: &str| {
                    log.matches("indexer subsystem restarted").count()
                        + log.matches("restart requested before the indexer started").count()
                };
                let before = answers(&node.log());
                node.signal(libc::SIGHUP);
                let sent = std::time::Instant::now();
                while answers(&node.log()) == before {
                    node.assert_running();
                    assert!(
                        sent.elapsed() < Duration::from_secs(30),
                        "round {round}: no answer to SIGHUP\n{}",
                        node.log()
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
                counts[2] += 1;
            }
        }
    }
    for index in 0..3 {
        network.wait_signing(index);
    }
    let used = network.stop_and_check_everything(&key);
    println!(
        "campaign seed {seed}: {rounds} rounds ({} SIGKILL, {} SIGTERM, {} SIGHUP), {used} presignatures used, none twice",
        counts[0], counts[1], counts[2]
    );
    assert!(used > 0);
}
