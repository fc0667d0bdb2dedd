//! The shipped image under a real Docker engine: built from `deploy/Dockerfile` (its
//! `prebuilt` target, from the stripped production binary), run as documented on a
//! fresh named volume, stopped with `docker stop`, checked, restarted, HUP'd and killed.

use std::time::{Duration, Instant};

use mpc_node_process_tests::docker_engine::DockerEngine;
use mpc_node_process_tests::{DOCKER_GRACE, last_shutdown_report};

const IMAGE: &str = "mpc-node:test";
/// The sandbox chain a little faster than its default, so a test sees many blocks.
const QUICK_CHAIN: [&str; 2] = ["--sandbox-block-interval", "50ms"];

/// `docker stop`, timed; the container must exit 0 with a clean report.
fn stop_gracefully(engine: &DockerEngine, container: &str) -> Duration {
    let started = Instant::now();
    engine.docker_ok(&["stop", container]);
    let took = started.elapsed();
    assert_eq!(engine.exit_code(container), 0, "docker stop must end in exit 0:\n{}", engine.logs(container));
    let report = last_shutdown_report(&engine.logs(container)).expect("a ShutdownReport");
    assert_eq!(report["final_instance_count"], 0, "{report}");
    assert!(took < DOCKER_GRACE, "docker stop took {took:?}, past Docker's grace period");
    took
}

/// One engine and one image for every scenario: the vfs storage driver makes each
/// image build and container start a full copy, so they are shared.
#[test]
fn the_shipped_image_under_docker() {
    let engine = DockerEngine::start();
    engine.build_node_image(IMAGE);
    let size: u64 = engine.docker_ok(&["image", "inspect", "--format", "{{.Size}}", IMAGE]).parse().unwrap();
    eprintln!("image {IMAGE}: {:.1} MB", size as f64 / 1e6);
    runs_as_documented_on_a_fresh_volume_stops_cleanly_and_resumes_where_it_stopped(&engine);
    a_sigkill_during_catch_up_leaves_a_volume_that_checks_and_starts_again(&engine);
}

fn runs_as_documented_on_a_fresh_volume_stops_cleanly_and_resumes_where_it_stopped(engine: &DockerEngine) {
    let volume = engine.volume("mpc-home");
    let mount = format!("{volume}:/data");
    let mut run = vec!["-v", mount.as_str(), IMAGE];
    run.extend(QUICK_CHAIN);
    let container = engine.run_detached(&run);
    engine.wait_healthy(&container);

    engine.docker_ok(&["kill", "--signal", "HUP", &container]);
    engine.wait_for_log(&container, "indexer subsystem restarted", 1);
    engine.wait_healthy(&container);

    let took = stop_gracefully(engine, &container);
    eprintln!("docker stop returned after {took:?} (exit 0)");
    let height = engine.check_volume(&volume, IMAGE);

    starts_again_where_it_stopped(engine, &container, height);
    assert!(engine.check_volume(&volume, IMAGE) > height, "the second run indexed nothing");
}

/// `docker start` of a stopped container: healthy again, resuming at cursor + 1 after
/// `height`; then a clean stop.
fn starts_again_where_it_stopped(engine: &DockerEngine, container: &str, height: u64) {
    engine.docker_ok(&["start", container]);
    engine.wait_healthy(container);
    let resumed = format!("indexer thread: listening for blocks resume_after={height}");
    assert!(
        engine.logs(container).contains(&resumed),
        "not resumed at cursor + 1 ({resumed}):\n{}",
        engine.logs(container)
    );
    stop_gracefully(engine, container);
}

fn a_sigkill_during_catch_up_leaves_a_volume_that_checks_and_starts_again(engine: &DockerEngine) {
    let volume = engine.volume("mpc-home-killed");
    let mount = format!("{volume}:/data");
    let catching_up = ["-v", &mount, IMAGE, "--sandbox-block-interval", "0ms", "--sandbox-history-blocks", "1000000"];
    let container = engine.run_detached(&catching_up);
    engine.wait_healthy(&container);
    std::thread::sleep(Duration::from_millis(500));
    engine.docker_ok(&["kill", &container]);
    assert_eq!(engine.exit_code(&container), 137, "SIGKILL");
    let logs = engine.logs(&container);
    assert!(!logs.contains("ShutdownReport"), "the kill must not have been a graceful stop:\n{logs}");
    let height = engine.check_volume(&volume, IMAGE);

    starts_again_where_it_stopped(engine, &container, height);
    engine.check_volume(&volume, IMAGE);
}
