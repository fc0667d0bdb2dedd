//! The graceful upgrade rollout under a real Docker Swarm, and `deploy/compose.yaml`
//! under both `docker stack deploy` and Docker Compose.

use std::path::Path;

use mpc_chain::CHAIN_SCHEMA_VERSION;
use mpc_node_process_tests::docker_engine::{DockerEngine, Release, repository_root};
use mpc_node_process_tests::swarm::{
    Replacement, container_json, is_healthy, out_of_turn, replacement_times, tasks, unix_now, wait_until,
};
use mpc_node_process_tests::{
    fast_node_args, home_indexed_to, last_shutdown_report, rewrite_chain_store_at_version_1,
    rewrite_node_store_at_version,
};

const SERVICE: &str = "mpc";
const REPLICAS: usize = 3;

/// Copies a home prepared on the host into a new volume, owned by the image's user.
fn volume_from_home(engine: &DockerEngine, name: &str, home: &Path, image: &str) {
    engine.volume(name);
    let (mount, source) = (format!("{name}:/data"), format!("{}:/src:ro", home.display()));
    engine.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        "0",
        "-v",
        &mount,
        "-v",
        &source,
        "--entrypoint",
        "/bin/sh",
        image,
        "-c",
        "cp -a /src/. /data/ && chown -R mpc:mpc /data",
    ]);
}

#[test]
fn a_rolling_upgrade_under_swarm_replaces_one_task_at_a_time_each_stopping_cleanly() {
    // Homes as the previous release writes them (node store v2, chain store v1), served
    // by it until the rollout replaces it with this one, which migrates the node store
    // to v3 and upgrades the chain store to v2.
    let old_home = home_indexed_to(100, &fast_node_args());
    rewrite_node_store_at_version(old_home.path(), 2);
    rewrite_chain_store_at_version_1(old_home.path());

    let engine = DockerEngine::start();
    engine.init_swarm();
    let old_image = engine.build_image_of(Release::Previous, "mpc-node:1");
    let new_image = engine.build_node_image("mpc-node:2");
    for slot in 1..=REPLICAS {
        volume_from_home(&engine, &format!("home-{slot}"), old_home.path(), &old_image);
    }

    engine.docker_ok(&[
        "service",
        "create",
        "--quiet",
        "--detach",
        "--name",
        SERVICE,
        "--replicas",
        &REPLICAS.to_string(),
        "--mount",
        "type=volume,source=home-{{.Task.Slot}},target=/data",
        "--update-parallelism",
        "1",
        "--update-order",
        "stop-first",
        "--update-failure-action",
        "pause",
        "--stop-grace-period",
        "10s",
        &old_image,
        "--sandbox-block-interval",
        "50ms",
    ]);
    engine.remove_later("service", SERVICE);
    wait_until("every task running and healthy", || {
        let tasks = tasks(&engine, SERVICE);
        tasks.len() == REPLICAS && tasks.iter().all(|task| is_healthy(&engine, &task.container))
    });
    for task in tasks(&engine, SERVICE) {
        let logs = engine.logs(&task.container);
        assert!(!logs.contains("migrated"), "slot {}: the previous release migrated its v2 volume:\n{logs}", task.slot);
    }

    let update_began = unix_now();
    engine.docker_ok(&["service", "update", "--quiet", "--image", &new_image, SERVICE]);
    let all = tasks(&engine, SERVICE);
    let (old, new): (Vec<_>, Vec<_>) = all.iter().partition(|task| task.image == old_image);
    assert_eq!((old.len(), new.len()), (REPLICAS, REPLICAS), "every slot replaced once");
    for task in &old {
        let container = container_json(&engine, &task.container);
        assert_eq!(container["State"]["ExitCode"], 0, "slot {}: {}", task.slot, engine.logs(&task.container));
        let report = last_shutdown_report(&engine.logs(&task.container)).expect("a ShutdownReport");
        assert_eq!(report["final_instance_count"], 0, "{report}");
    }
    for task in &new {
        let logs = engine.logs(&task.container);
        assert!(
            logs.contains("node store migrated from=2 to=3"),
            "slot {} did not migrate its v2 volume:\n{logs}",
            task.slot
        );
        let chain_upgrade = format!("chain store migrated from=1 to={CHAIN_SCHEMA_VERSION}");
        assert!(logs.contains(&chain_upgrade), "slot {} did not upgrade its v1 chain store:\n{logs}", task.slot);
    }
    // One at a time, gated on health: the next old task stops only after the task that
    // replaced the previous one passed its health check (from the engine's events).
    let replacements: Vec<Replacement> = old
        .iter()
        .map(|task| Replacement {
            label: format!("slot {}", task.slot),
            old: task.container.clone(),
            new: new.iter().find(|new| new.slot == task.slot).expect("a new task in the slot").container.clone(),
        })
        .collect();
    let violations = out_of_turn(&replacement_times(&engine, update_began, &replacements));
    assert!(violations.is_empty(), "not one at a time: {violations:?}");

    engine.docker_ok(&["service", "rm", SERVICE]);
    wait_until("the service's containers to stop", || {
        new.iter().all(|task| container_json(&engine, &task.container)["State"]["Running"] == false)
    });
    for task in &new {
        assert_eq!(
            container_json(&engine, &task.container)["State"]["ExitCode"],
            0,
            "{}",
            engine.logs(&task.container)
        );
    }
    for slot in 1..=REPLICAS {
        engine.check_volume(&format!("home-{slot}"), &new_image);
    }
}

#[test]
fn compose_yaml_runs_under_docker_stack_deploy_and_docker_compose() {
    let engine = DockerEngine::start();
    let image = engine.build_node_image("mpc-node:latest");
    let compose = repository_root().join("deploy/compose.yaml").display().to_string();

    engine.init_swarm();
    engine.docker_ok(&["stack", "deploy", "--compose-file", &compose, "mpc"]);
    engine.remove_later("service", "mpc_mpc-node");
    engine.remove_later("volume", "mpc_home");
    let container = || engine.docker_ok(&["ps", "--quiet", "--filter", "label=com.docker.stack.namespace=mpc"]);
    wait_until("the stack's task to start", || !container().is_empty());
    let id = container();
    engine.wait_healthy(&id);
    // `stack rm` removes the service (which stops its task) and then the network, which
    // the engine refuses while the task is still stopping; a repeated `stack rm` removes
    // what is left, so the stack must be gone once the task has stopped.
    engine.docker(&["stack", "rm", "mpc"]);
    wait_until("the stack's task to stop", || container_json(&engine, &id)["State"]["Running"] == false);
    wait_until("the stack's network to be removed", || engine.docker(&["stack", "rm", "mpc"]).status.success());
    assert_eq!(container_json(&engine, &id)["State"]["ExitCode"], 0, "{}", engine.logs(&id));
    engine.check_volume("mpc_home", &image);
    engine.docker_ok(&["swarm", "leave", "--force"]);

    // Docker Compose, on the same file; only the network is taken away (this engine has
    // no bridge, and the tests stay off the network).
    let override_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(override_file.path(), "services:\n  mpc-node:\n    network_mode: none\n").unwrap();
    let override_path = override_file.path().display().to_string();
    let compose_command = |args: &[&str]| {
        let mut all = vec!["--project-name", "mpccompose", "--file", &compose, "--file", &override_path];
        all.extend_from_slice(args);
        engine.compose(&all, &[])
    };
    compose_command(&["up", "--detach"]);
    engine.remove_later("volume", "mpccompose_home");
    let id = compose_command(&["ps", "--quiet"]);
    engine.remove_later("container", &id);
    engine.wait_healthy(&id);
    compose_command(&["stop"]);
    assert_eq!(engine.exit_code(&id), 0, "{}", engine.logs(&id));
    engine.check_volume("mpccompose_home", &image);
}
