//! Presignatures across a network of real processes: signatures from warm pools, a kill
//! at every durable step of a presignature's life on every participant, orphans
//! collected, ids unique over hundreds of kill-restart cycles, an asset store that
//! refuses a wrong key or a damaged log, and the pool size and generation rate bounds. Nothing may ever be used twice: checked from
//! the chain alone (every R distinct) and from the nodes' test journals.

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use mpc_node_process_tests::signing_network::{ANSWER_PATIENCE, QUICK_HOST, SigningNetwork};
use mpc_node_process_tests::{CRASH_POINT_REACHED, NodeProcess, check, damage_at, env_number, newest_log};

/// A node's metric, from its `/metrics`.
fn metric(network: &mut SigningNetwork, index: usize, name: &str) -> f64 {
    let web = network.node(index).web_addr();
    let text = mpc_node_process_tests::http(web, "GET", "/metrics", None).expect("metrics").1;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// Waits until every node has a full pool in each of its sets.
fn wait_for_pools(network: &mut SigningNetwork, per_node: f64) {
    let every: Vec<usize> = (0..network.nodes.len()).collect();
    wait_for_pools_of(network, &every, per_node);
}

/// Waits until each of `nodes` has `per_node` presignatures ready.
fn wait_for_pools_of(network: &mut SigningNetwork, nodes: &[usize], per_node: f64) {
    let started = Instant::now();
    for &index in nodes {
        while metric(network, index, "mpc_signer_presignatures_ready") < per_node {
            assert!(started.elapsed() < Duration::from_secs(60), "node {index}'s pools did not fill");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn warm_pools_sign_requests_each_presignature_once_and_no_nonce_is_stored_in_clear() {
    let (mut network, key) = SigningNetwork::signing(3, 2, QUICK_HOST);
    wait_for_pools(&mut network, 64.0);
    let from = network.head();
    network.wait_answered_up_to(from + 40, ANSWER_PATIENCE);
    let presigned: f64 =
        (0..3).map(|index| metric(&mut network, index, "mpc_signer_signatures_total{path=\"presigned\"}")).sum();
    assert!(presigned >= 40.0, "{presigned} signatures from presignatures");
    let used = network.stop_and_check_everything(&key);
    assert!(used >= 40, "the journals saw {used} presignatures used");

    // Every secret nonce any node made, looked for in every file of every asset store.
    let journals = network.journals();
    assert!(journals.nonces.len() > 100, "{} nonces journaled", journals.nonces.len());
    for index in 0..3 {
        let store = network.home(index).join("assets");
        for entry in std::fs::read_dir(&store).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            for (owner, id, hiding, binding) in &journals.nonces {
                for secret in [hiding, binding] {
                    assert!(
                        !bytes.windows(secret.len()).any(|window| window == secret.as_slice()),
                        "a nonce of presignature {id} of {owner} is in clear in {}",
                        path.display()
                    );
                }
            }
        }
    }
}

/// Starts `victim` armed at `point` and waits for the kill to land there.
fn kill_at(network: &mut SigningNetwork, victim: usize, point: &str) {
    let node = network.start(victim, &[("MPC_TEST_CRASH_AT", point)]);
    let status = node.wait_exit(Duration::from_secs(90));
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{point}: {}", node.log());
    let log = node.log();
    assert!(log.contains(CRASH_POINT_REACHED) && log.contains(point), "{point}: the kill landed elsewhere:\n{log}");
}

/// Per step, one network; its participants are killed there in turn, each restarted
/// and signing again before the next kill. `MPC_PRESIGNATURE_KILLS_PER_STEP=N` (default
/// 3: once on each participant; the documented run uses hundreds).
#[test]
fn a_kill_at_every_durable_step_of_a_presignature_on_every_participant_reuses_nothing() {
    let kills = env_number("MPC_PRESIGNATURE_KILLS_PER_STEP", 3) as usize;
    for point in mpc_signer::PRESIGNATURE_CRASH_POINTS.iter().filter(|point| **point != "presign:orphans_deleted") {
        let (mut network, key) = SigningNetwork::signing(3, 2, QUICK_HOST);
        for kill in 0..kills {
            let victim = kill % 3;
            network.kill(victim);
            kill_at(&mut network, victim, point);
            network.start(victim, &[]);
            network.wait_signing(victim);
        }
        let used = network.stop_and_check_everything(&key);
        println!("{point}: {kills} kills landed, {used} presignatures used, none twice");
    }
}

#[test]
fn orphans_of_an_owner_killed_mid_generation_or_after_taking_a_presignature_are_deleted_when_it_reconnects() {
    let (mut network, key) = SigningNetwork::signing(3, 2, QUICK_HOST);
    // A member dies at the deletion of orphans, which needs orphans: node0 dies first
    // after its members stored their nonces, before it stored the presignature. Which
    // member holds them depends on the set being generated then, so both members run
    // with the crash point.
    for member in 1..3 {
        network.kill(member);
        network.start(member, &[("MPC_TEST_CRASH_AT", "presign:orphans_deleted")]);
        network.wait_signing(member);
    }
    network.kill(0);
    kill_at(&mut network, 0, "presign:members_confirmed");
    // Orphans: nonces node1 and node2 made for node0 whose generation node0, dead now,
    // never got past (it makes ids from a new block after its restart). Those past it
    // may have been stored just before the kill without their journal line.
    let journals = network.journals();
    let orphans: Vec<(String, u64)> = journals
        .nonces
        .iter()
        .map(|(owner, id, ..)| (owner.clone(), *id))
        .filter(|key| key.0 == "node0.sandbox" && !journals.owner_nonces.contains(key))
        .collect();
    assert!(!orphans.is_empty(), "the kill left orphans");
    network.start(0, &[]);
    // A member that dies at its deletion (it journals what it deleted first) is started
    // again without the crash point; the others are left alone until every orphan is
    // collected (a kill between a deletion and its journal line would hide it).
    let started = Instant::now();
    let mut restarted = std::collections::BTreeSet::new();
    loop {
        for member in 1..3 {
            let node = network.node(member);
            let died = node.try_exit_status().is_some_and(|status| status.signal() == Some(libc::SIGKILL));
            if died {
                assert!(node.log().contains("presign:orphans_deleted"), "{}", node.log());
                network.kill(member);
                network.start(member, &[]);
                restarted.insert(member);
            }
        }
        let collected = network.journals().collected;
        let all: Vec<&(String, u64)> = collected.values().flatten().collect();
        // Each orphan is held by one member of node0's sets; whichever holds it deletes it.
        if orphans.iter().all(|orphan| all.contains(&orphan)) && !restarted.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "orphans {orphans:?} not collected: {all:?}, or no member died deleting them: {restarted:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A member still running with the crash point is replaced (killed: what it had to
    // show is in its journal).
    for member in 1..3 {
        if !restarted.contains(&member) {
            network.kill(member);
            network.start(member, &[]);
        }
        network.wait_signing(member);
    }
    network.stop_and_check_everything(&key);
}

/// `MPC_ID_CYCLES` (default 200).
#[test]
fn a_node_killed_and_restarted_hundreds_of_times_keeps_its_ids_unique_and_increasing() {
    let cycles = env_number("MPC_ID_CYCLES", 200);
    let (mut network, key) = SigningNetwork::signing(3, 2, QUICK_HOST);
    let reserved = |network: &SigningNetwork| network.journals().reserved.get(&1).map_or(0, Vec::len);
    for cycle in 0..cycles {
        let before = reserved(&network);
        network.kill(1);
        network.start(1, &[]);
        let started = Instant::now();
        while reserved(&network) == before {
            network.node(1).assert_running();
            assert!(started.elapsed() < Duration::from_secs(30), "cycle {cycle}: no ids reserved");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    network.wait_signing(1);
    network.stop_and_check_everything(&key);
    let blocks = network.journals().reserved[&1].len();
    assert!(blocks as u64 > cycles, "{blocks} blocks over {cycles} cycles");
}

#[test]
fn the_asset_store_refuses_a_damaged_log_and_a_wrong_key_and_changes_nothing() {
    let (mut network, _) = SigningNetwork::signing(3, 2, QUICK_HOST);
    wait_for_pools(&mut network, 32.0);
    network.stop(0);
    let home = network.home(0);
    let store = home.join("assets");
    let log = newest_log(&store);
    let intact = std::fs::read(&log).unwrap();
    // Early in the log (it has more than 4 KiB), so that many writes surely follow the
    // damage: damage among a log's last records reads as a torn tail, tolerated.
    damage_at(&log, 1024);
    let damaged = std::fs::read(&log).unwrap();
    let checked = check(&home);
    assert_eq!(checked.code, 1, "{}", checked.output);
    assert!(checked.output.contains(&log.display().to_string()), "{}", checked.output);
    let mut node = NodeProcess::start(&home, &mpc_node_process_tests::sandbox_network::follower_args(network.rpc), &[]);
    assert_eq!(node.wait_exit(Duration::from_secs(60)).code(), Some(3), "{}", node.log());
    assert!(node.log().contains(&log.display().to_string()), "{}", node.log());
    assert_eq!(std::fs::read(&log).unwrap(), damaged, "nothing changed");
    std::fs::write(&log, intact).unwrap();

    // Another secrets key (the key share set aside, so the asset store is what it meets).
    std::fs::rename(home.join("key-share"), home.join("key-share.aside")).unwrap();
    std::fs::write(home.join("secrets-key"), format!("{}\n", "ef".repeat(32))).unwrap();
    let files = |store: &std::path::Path| -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = std::fs::read_dir(store)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| !path.ends_with("LOCK"))
            .map(|path| (path.display().to_string(), std::fs::read(&path).unwrap()))
            .collect();
        files.sort();
        files
    };
    let before = files(&store);
    let mut node = NodeProcess::start(&home, &mpc_node_process_tests::sandbox_network::follower_args(network.rpc), &[]);
    assert_eq!(node.wait_exit(Duration::from_secs(60)).code(), Some(3), "{}", node.log());
    assert!(node.log().contains("was written with another secrets key"), "{}", node.log());
    assert_eq!(files(&store), before, "nothing touched");
}

/// Starts every node of `network` with `args_of(index)` and waits until they sign.
fn start_signing_with(network: &mut SigningNetwork, args_of: impl Fn(usize) -> Vec<&'static str>) {
    for index in 0..network.nodes.len() {
        network.start_with(index, &args_of(index), &[]);
    }
    network.wait_running();
    for index in 0..network.nodes.len() {
        network.wait_signing(index);
    }
}

#[test]
fn the_rate_bounds_generation() {
    // 10 per second, with room for 128 in two sets of 64: unbounded, a node fills
    // them within a second.
    let mut network = SigningNetwork::create(3, 2, QUICK_HOST);
    let started = Instant::now();
    start_signing_with(&mut network, |_| vec!["--presignature-rate", "10"]);
    std::thread::sleep(Duration::from_secs(2));
    let journals = network.journals();
    // At most the rate over the time since the start, plus the bucket's 10.
    let bound = 10.0 + 10.0 * started.elapsed().as_secs_f64();
    for index in 0..3 {
        let made = journals.stored.get(&index).map_or(0, Vec::len);
        assert!(made > 0, "node {index} made none");
        assert!((made as f64) <= bound, "node {index} made {made}, more than {bound:.0}");
    }
}

#[test]
fn the_pool_size_bounds_each_set_and_a_pool_of_zero_signs_online() {
    // node0 keeps no pool; node1 and node2 keep 3 per set (two sets each).
    let mut network = SigningNetwork::create(3, 2, QUICK_HOST);
    start_signing_with(&mut network, |index| vec!["--presignature-pool", if index == 0 { "0" } else { "3" }]);
    wait_for_pools_of(&mut network, &[1, 2], 6.0);
    let sampling = Instant::now();
    while sampling.elapsed() < Duration::from_secs(1) {
        for index in 1..3 {
            let ready = metric(&mut network, index, "mpc_signer_presignatures_ready");
            assert!(ready <= 6.0, "node {index} holds {ready} ready presignatures, more than 2 sets of 3");
        }
        assert_eq!(metric(&mut network, 0, "mpc_signer_presignatures_ready"), 0.0);
        std::thread::sleep(Duration::from_millis(20));
    }
    let from = network.head();
    network.wait_answered_up_to(from + 20, ANSWER_PATIENCE);
    assert_eq!(metric(&mut network, 0, "mpc_signer_signatures_total{path=\"presigned\"}"), 0.0);
    assert!(metric(&mut network, 0, "mpc_signer_signatures_total{path=\"online\"}") > 0.0);
    let presigned: f64 =
        (1..3).map(|index| metric(&mut network, index, "mpc_signer_signatures_total{path=\"presigned\"}")).sum();
    assert!(presigned > 0.0, "the nodes with pools signed from them");
    assert!(!network.journals().stored.contains_key(&0), "node0 made presignatures with a pool of 0");
}
