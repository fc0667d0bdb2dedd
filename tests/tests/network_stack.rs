//! `deploy/network/compose.yaml`, a chain host and three participants at threshold 2,
//! under a real Docker Swarm and under Docker Compose, on an internal network of the
//! test's own engine (no bridge to the machine, no gateway: the containers reach each
//! other and nothing else).
//!
//! The rolling upgrade: the network starts on the previous release (node store v2,
//! chain store v1) and signs; the participants are upgraded one service at a time to
//! this release while requests keep arriving. What only the chain says decides whether
//! signing went on: every request of the rollout answered once, within a bound, with a
//! valid signature and nonces never used before.

use std::collections::BTreeMap;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use mpc_chain::CHAIN_SCHEMA_VERSION;
use mpc_node_process_tests::docker_engine::{DockerEngine, Release};
use mpc_node_process_tests::last_shutdown_report;
use mpc_node_process_tests::network_stack::{NetworkStack, Orchestrator, PARTICIPANTS, StackSettings, services};
use mpc_node_process_tests::signing_network::{answered, assert_chain_signatures};
use mpc_node_process_tests::swarm::{
    Replacement, container_json, out_of_turn, replacement_times, unix_now, wait_until,
};

/// The host's pace: a block every 200 ms with two sign requests each.
const BLOCK_INTERVAL: &str = "200ms";
const BLOCK_MILLIS: u64 = 200;
const REQUESTS_PER_BLOCK: u32 = 2;

/// Every request of a rollout must be answered within this many blocks of its own
/// (5 s at 200 ms). A participant stopped gracefully hands its requests on at once; one
/// that is lost would be replaced as leader after 3 s (15 blocks).
const ANSWER_BOUND_BLOCKS: u64 = 25;

/// How long the requests of a run of blocks may take to be answered.
const ANSWER_PATIENCE: Duration = Duration::from_secs(120);

/// What a rollout did, read from the engine and the chain.
struct Rollout {
    /// Everything that breaks "one at a time, never stop signing".
    violations: Vec<String>,
    /// Its figures, as printed.
    figures: String,
}

/// One rollout of the participants to `image`: each service's update waits until its
/// new task is healthy (the update's health gate) before the next begins; with
/// `gated` false every update is sent at once (the gate removed).
fn roll_participants(engine: &DockerEngine, stack: &NetworkStack, image: &str, gated: bool) -> Vec<Replacement> {
    let old: Vec<String> =
        PARTICIPANTS.iter().map(|participant| stack.container(participant).expect("a running task")).collect();
    for participant in PARTICIPANTS {
        let service = stack.service(participant);
        let mut args = vec!["service", "update", "--quiet", "--image", image];
        if !gated {
            args.push("--detach");
        }
        args.push(&service);
        engine.docker_ok(&args);
    }
    wait_until("every participant replaced", || {
        PARTICIPANTS.iter().zip(&old).all(|(participant, old)| {
            stack
                .container(participant)
                .is_some_and(|new| &new != old && container_json(engine, &new)["Config"]["Image"] == image)
        })
    });
    stack.wait_healthy();
    PARTICIPANTS
        .iter()
        .zip(old)
        .map(|(participant, old)| Replacement {
            label: participant.to_string(),
            old,
            new: stack.container(participant).expect("the new task"),
        })
        .collect()
}

/// Checks a rollout that began at `since` (Unix seconds) and covered the blocks
/// `from..=to`: the replaced tasks stopped cleanly, the new ones (`migrated`: after
/// migrating) became healthy one at a time, and every request of those blocks was
/// answered within the bound with signatures that only the chain vouches for.
fn verify_rollout(
    engine: &DockerEngine,
    stack: &NetworkStack,
    key: &VerifyingKey,
    replacements: &[Replacement],
    since: u64,
    (from, to): (u64, u64),
    migrated: bool,
) -> Rollout {
    let mut violations = Vec::new();
    for replacement in replacements {
        let logs = engine.logs(&replacement.old);
        let exit_code = container_json(engine, &replacement.old)["State"]["ExitCode"].clone();
        let report = last_shutdown_report(&logs);
        if exit_code != 0 || report.as_ref().is_none_or(|report| report["final_instance_count"] != 0) {
            violations.push(format!("{}: the old task exited {exit_code} with report {report:?}", replacement.label));
        }
        let logs = engine.logs(&replacement.new);
        let chain_upgrade = format!("chain store migrated from=1 to={CHAIN_SCHEMA_VERSION}");
        if migrated && !(logs.contains("node store migrated from=2 to=3") && logs.contains(&chain_upgrade)) {
            violations.push(format!("{}: the new task did not migrate its volume:\n{logs}", replacement.label));
        }
    }
    let times = replacement_times(engine, since, replacements);
    violations.extend(out_of_turn(&times));

    let requests = stack.wait_answered(from, to, ANSWER_PATIENCE);
    let answers = answered(&requests);
    assert_eq!(answers.len(), requests.len(), "one response per request");
    let responders = assert_chain_signatures(&stack.files.config, &answers, key);
    let waits: Vec<u64> = answers.iter().map(|answer| answer.answered_at - answer.height).collect();
    let slowest = waits.iter().copied().max().unwrap_or(0);
    if slowest > ANSWER_BOUND_BLOCKS {
        violations.push(format!("a request waited {slowest} blocks for its answer (bound {ANSWER_BOUND_BLOCKS})"));
    }
    let within_10 = waits.iter().filter(|wait| **wait <= 10).count();
    let mut response_heights: Vec<u64> = answers.iter().map(|answer| answer.answered_at).collect();
    response_heights.sort_unstable();
    let longest_gap = response_heights.windows(2).map(|pair| pair[1] - pair[0]).max().unwrap_or(0);
    let outages: BTreeMap<&str, String> = times
        .iter()
        .map(|times| {
            let outage =
                times.outage().map_or("never healthy".into(), |outage| format!("{:.3} s", outage.as_secs_f64()));
            (times.label.as_str(), outage)
        })
        .collect();
    let figures = format!(
        "blocks {from}..={to}: {} requests, each answered once with a valid signature and fresh nonces\n\
         longest gap between two accepted responses: {} ({:.3} s)\n\
         answered within 10 blocks: {within_10} of {} ({:.1} %); slowest: {}\n\
         each participant from its old task's stop to its new task's health: {outages:?}\n\
         responses by submitter: {responders:?}",
        requests.len(),
        blocks(longest_gap),
        (longest_gap * BLOCK_MILLIS) as f64 / 1000.0,
        answers.len(),
        100.0 * within_10 as f64 / answers.len().max(1) as f64,
        blocks(slowest),
    );
    Rollout { violations, figures }
}

/// `n` blocks, as a person writes it.
fn blocks(n: u64) -> String {
    if n == 1 { "1 block".to_owned() } else { format!("{n} blocks") }
}

/// The stack's network is internal (no gateway), and a participant has no route out.
fn assert_network_is_internal(engine: &DockerEngine, stack: &NetworkStack, network: &str) {
    assert_eq!(engine.docker_ok(&["network", "inspect", "--format", "{{.Internal}}", network]), "true");
    let participant = stack.container(PARTICIPANTS[0]).unwrap();
    let routes = engine.docker_ok(&["exec", &participant, "cat", "/proc/net/route"]);
    let default_route = routes.lines().skip(1).any(|route| route.split_whitespace().nth(1) == Some("00000000"));
    assert!(!default_route, "a participant has a default route:\n{routes}");
}

/// Starts the stack (participants on `participant_image`, the host on `host_image`) and
/// waits until it is healthy on an internal network, has generated its key and has
/// answered every request of 20 blocks with signatures the chain vouches for.
fn start_signing<'a>(
    engine: &'a DockerEngine,
    orchestrator: Orchestrator,
    participant_image: &str,
    host_image: &str,
) -> (NetworkStack<'a>, VerifyingKey) {
    let settings = StackSettings {
        participant_image,
        host_image,
        block_interval: BLOCK_INTERVAL,
        requests_per_block: REQUESTS_PER_BLOCK,
    };
    let (name, network) = match orchestrator {
        Orchestrator::Swarm => ("mpc", "mpc_mesh"),
        Orchestrator::Compose => ("mpcnet", "mpcnet-mesh"),
    };
    let stack = NetworkStack::deploy(engine, orchestrator, name, &settings);
    stack.wait_healthy();
    assert_network_is_internal(engine, &stack, network);
    let key = stack.chain().wait_group_key();
    let first = stack.head();
    let answers = answered(&stack.wait_answered(first, first + 20, ANSWER_PATIENCE));
    assert!(!answers.is_empty(), "no requests in 20 blocks");
    assert_chain_signatures(&stack.files.config, &answers, &key);
    (stack, key)
}

/// The container of every service of the stack, which must all run.
fn running_containers(stack: &NetworkStack) -> Vec<String> {
    services().map(|service| stack.container(service).unwrap_or_else(|| panic!("{service} runs"))).collect()
}

/// Each of `containers` exited 0 with a ShutdownReport that closed every store.
fn assert_stopped_cleanly(engine: &DockerEngine, containers: &[String]) {
    for id in containers {
        assert_eq!(engine.exit_code(id), 0, "{}", engine.logs(id));
        let report = last_shutdown_report(&engine.logs(id)).expect("a ShutdownReport");
        assert_eq!(report["final_instance_count"], 0, "{report}");
    }
}

#[test]
fn a_rolling_upgrade_of_the_network_under_swarm_keeps_signing_and_an_ungated_one_is_caught() {
    let engine = DockerEngine::start();
    engine.init_swarm();
    let old_image = engine.build_image_of(Release::Previous, "mpc-node:1");
    let new_image = engine.build_node_image("mpc-node:2");
    // The chain is not the participants': it stays on this release throughout.
    let (stack, key) = start_signing(&engine, Orchestrator::Swarm, &old_image, &new_image);
    // The previous release signs, on the volumes it created at its own schema.
    for participant in PARTICIPANTS {
        let logs = engine.logs(&stack.container(participant).unwrap());
        assert!(logs.contains("node store created version=2"), "{participant} is not the previous release:\n{logs}");
    }

    let (since, from) = (unix_now(), stack.head());
    let replacements = roll_participants(&engine, &stack, &new_image, true);
    let to = stack.head();
    let rollout = verify_rollout(&engine, &stack, &key, &replacements, since, (from, to), true);
    println!("rolling upgrade, previous release -> this release:\n{}", rollout.figures);
    assert!(rollout.violations.is_empty(), "the rollout broke its promises: {:#?}", rollout.violations);

    // The same rollout with the health gate removed (every update sent at once) is
    // caught: the check can fail.
    engine.docker_ok(&["tag", &new_image, "mpc-node:3"]);
    let (since, from) = (unix_now(), stack.head());
    let replacements = roll_participants(&engine, &stack, "mpc-node:3", false);
    let to = stack.head();
    let ungated = verify_rollout(&engine, &stack, &key, &replacements, since, (from, to), false);
    println!("the same rollout without the health gate:\n{}\nviolations: {:#?}", ungated.figures, ungated.violations);
    assert!(
        ungated.violations.iter().any(|violation| violation.contains("before") || violation.contains("never healthy")),
        "an ungated rollout went unnoticed: {:#?}",
        ungated.violations
    );

    let last = running_containers(&stack);
    engine.docker_ok(&["stack", "rm", &stack.name]);
    wait_until("the stack's tasks to stop", || {
        last.iter().all(|id| container_json(&engine, id)["State"]["Running"] == false)
    });
    assert_stopped_cleanly(&engine, &last);
    stack.check_volumes(&new_image);
}

#[test]
fn the_network_stack_signs_under_docker_compose_and_stops_cleanly() {
    let engine = DockerEngine::start();
    let image = engine.build_node_image("mpc-node:latest");
    let (stack, _) = start_signing(&engine, Orchestrator::Compose, &image, &image);

    let containers = running_containers(&stack);
    stack.compose(&["stop"]);
    assert_stopped_cleanly(&engine, &containers);
    stack.check_volumes(&image);
}
