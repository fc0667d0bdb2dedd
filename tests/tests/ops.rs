//! The operations surface: HTTP endpoints (health, readiness flip, metrics, debug,
//! admin with token checks), systemd notifications over a real datagram socket, and
//! the node as PID 1 of a PID namespace.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mpc_node_process_tests::{
    DOCKER_GRACE, NodeProcess, START_PATIENCE, assert_consistent, fast_node_args, home_indexed_to, http, node_binary,
    rewrite_node_store_at_version,
};

fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing:\n{body}"))
}

#[test]
fn endpoints_report_health_readiness_metrics_and_lifecycle() {
    let home = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(home.path(), &fast_node_args(), &[]);
    let addr = node.web_addr();
    assert_eq!(http(addr, "GET", "/healthz", None).map(|r| r.0), Some(200));
    node.wait_for_log("node ready", START_PATIENCE);
    assert_eq!(http(addr, "GET", "/readyz", None), Some((200, "ready\n".to_owned())));

    let (status, first) = http(addr, "GET", "/metrics", None).unwrap();
    assert_eq!(status, 200);
    for name in [
        "mpc_indexer_blocks_per_second",
        "mpc_indexer_lag_blocks",
        "mpc_indexer_restarts_total",
        "mpc_lifecycle_phase{phase=\"ready\"} 1",
        "mpc_store_holders{store=\"node\"}",
        "mpc_supervised_tasks{state=\"running\"}",
    ] {
        assert!(first.contains(name), "{name} missing:\n{first}");
    }
    assert_eq!(metric(&first, "mpc_rocksdb_open_instances"), 2.0);
    std::thread::sleep(Duration::from_millis(300));
    let second = http(addr, "GET", "/metrics", None).unwrap().1;
    assert!(
        metric(&second, "mpc_indexer_latest_height") > metric(&first, "mpc_indexer_latest_height"),
        "height did not move"
    );

    let debug: serde_json::Value =
        serde_json::from_str(&http(addr, "GET", "/debug/lifecycle", None).unwrap().1).unwrap();
    assert_eq!(debug["phase"], "ready");
    let tasks: Vec<&str> = debug["tasks"].as_array().unwrap().iter().filter_map(|task| task["name"].as_str()).collect();
    assert!(tasks.contains(&"monitor_tee_accounts") && tasks.contains(&"streamer"), "{tasks:?}");
    let holders = debug["store_holders"].to_string();
    assert!(holders.contains("listen_blocks") && holders.contains("client_actor"), "{holders}");

    node.signal(libc::SIGHUP);
    node.wait_for_log("indexer subsystem restarted", DOCKER_GRACE);
    node.wait_for_log("to=\"ready\"", DOCKER_GRACE);
    let after = http(addr, "GET", "/metrics", None).unwrap().1;
    assert_eq!(metric(&after, "mpc_indexer_restarts_total"), 1.0);
    assert!(
        after.contains("mpc_lifecycle_sequence_phase_seconds{phase=\"join_indexer_thread\",sequence=\"restart\"}"),
        "{after}"
    );
    node.stop_gracefully();
}

#[test]
fn readiness_flips_to_503_the_moment_a_restart_or_shutdown_begins() {
    let home = tempfile::tempdir().unwrap();
    let mut args = fast_node_args();
    args.extend(["--shutdown-timeout".into(), "2s".into()]);
    // A monitor that ignores cancellation keeps each drain waiting for seconds, long
    // enough to observe the endpoints in the middle of it.
    let hung = [("MPC_TEST_HANG_MONITOR", "monitor_tee_accounts")];
    let mut node = NodeProcess::start(home.path(), &args, &hung);
    let addr = node.web_addr();
    node.wait_for_log("node ready", START_PATIENCE);
    assert_eq!(http(addr, "GET", "/readyz", None).map(|r| r.0), Some(200));

    node.signal(libc::SIGHUP);
    node.wait_for_log("restarting indexer subsystem", DOCKER_GRACE);
    assert_eq!(http(addr, "GET", "/readyz", None), Some((503, "restarting\n".to_owned())));
    assert_eq!(http(addr, "GET", "/healthz", None).map(|r| r.0), Some(200));
    node.wait_for_log("indexer subsystem restarted", DOCKER_GRACE);
    let started = Instant::now();
    while http(addr, "GET", "/readyz", None).map(|r| r.0) != Some(200) {
        assert!(started.elapsed() < DOCKER_GRACE, "not ready again after the restart");
        std::thread::sleep(Duration::from_millis(10));
    }

    node.signal(libc::SIGTERM);
    node.wait_for_log("shutdown sequence started", DOCKER_GRACE);
    assert_eq!(http(addr, "GET", "/readyz", None), Some((503, "shutting_down\n".to_owned())));
    let debug: serde_json::Value =
        serde_json::from_str(&http(addr, "GET", "/debug/lifecycle", None).unwrap().1).unwrap();
    assert_eq!(debug["phase"], "shutting_down");
    node.wait_exit(DOCKER_GRACE);
    assert!(http(addr, "GET", "/readyz", None).is_none(), "server still up after exit");
}

#[test]
fn admin_endpoints_require_the_token_and_go_through_the_shutdown_channel() {
    let home = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(home.path(), &fast_node_args(), &[]);
    let addr = node.web_addr();
    node.wait_for_log("node ready", START_PATIENCE);
    let token = std::fs::read_to_string(home.path().join("admin-token")).unwrap().trim().to_owned();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(home.path().join("admin-token")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "admin token must be private");

    for path in ["/admin/shutdown", "/admin/restart-indexer"] {
        assert_eq!(http(addr, "POST", path, None).map(|r| r.0), Some(401), "{path} without a token");
        assert_eq!(http(addr, "POST", path, Some("wrong")).map(|r| r.0), Some(403), "{path} with a wrong token");
    }
    assert!(!node.log().contains("admin request"), "a refused request was acted on");

    assert_eq!(http(addr, "POST", "/admin/restart-indexer", Some(&token)).map(|r| r.0), Some(202));
    node.wait_for_log("indexer subsystem restarted", DOCKER_GRACE);
    assert_eq!(http(addr, "POST", "/admin/shutdown", Some(&token)).map(|r| r.0), Some(202));
    assert_eq!(node.wait_exit(DOCKER_GRACE).code(), Some(0), "{}", node.log());
    let report = node.shutdown_report().expect("report");
    assert_eq!(report["reason"]["kind"], "admin_request", "{report}");
    assert_eq!(report["final_instance_count"], 0, "{report}");
    assert_consistent(home.path());
}

#[test]
fn systemd_notifications_arrive_in_order_on_a_real_socket() {
    let home = home_indexed_to(1500, &{
        let mut args = fast_node_args();
        args.extend([
            "--sandbox-block-interval".into(),
            "0ms".into(),
            "--sandbox-history-blocks".into(),
            "1500".into(),
        ]);
        args
    });
    rewrite_node_store_at_version(home.path(), 2);
    let socket_dir = tempfile::tempdir().unwrap();
    let socket_path = socket_dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let socket_env = socket_path.to_str().unwrap().to_owned();
    let env = [("NOTIFY_SOCKET", socket_env.as_str()), ("WATCHDOG_USEC", "400000"), ("MPC_MIGRATION_CHUNK_SIZE", "2")];
    let mut node = NodeProcess::start(home.path(), &fast_node_args(), &env);

    let mut messages: Vec<String> = Vec::new();
    let receive_until = |messages: &mut Vec<String>, done: &dyn Fn(&[String]) -> bool| {
        let started = Instant::now();
        let mut buffer = [0u8; 512];
        while !done(messages) {
            assert!(started.elapsed() < START_PATIENCE, "notifications so far: {messages:?}");
            if let Ok(length) = socket.recv(&mut buffer) {
                messages.push(String::from_utf8_lossy(&buffer[..length]).into_owned());
            }
        }
    };
    receive_until(&mut messages, &|seen| {
        seen.iter().filter(|m| m.starts_with("WATCHDOG=1")).count() >= 2
            && seen.iter().any(|m| m.starts_with("READY=1"))
    });
    node.signal(libc::SIGTERM);
    receive_until(&mut messages, &|seen| seen.iter().any(|m| m.starts_with("STOPPING=1")));
    assert_eq!(node.wait_exit(DOCKER_GRACE).code(), Some(0), "{}", node.log());

    let position = |prefix: &str| messages.iter().position(|m| m.starts_with(prefix));
    let extend = position("EXTEND_TIMEOUT_USEC=")
        .unwrap_or_else(|| panic!("no timeout extension during the migration: {messages:?}\n{}", node.log()));
    let ready = position("READY=1").unwrap();
    let stopping = position("STOPPING=1").unwrap();
    assert!(extend < ready && ready < stopping, "out of order: {messages:?}");
    assert!(messages.iter().any(|m| m.starts_with("STATUS=migrating")), "{messages:?}");
}

#[test]
fn as_pid_1_of_a_pid_namespace_sigterm_takes_the_graceful_path() {
    let home = tempfile::tempdir().unwrap();
    let mut command = Command::new("unshare");
    command
        // --kill-child: if this test dies, unshare's death takes the node with it.
        .args(["--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(node_binary())
        .args(["start", "--home", home.path().to_str().unwrap()])
        .args(fast_node_args())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let unshare = command.spawn().unwrap();
    let unshare_pid = unshare.id();
    let mut unshare = ReapOnDrop(Some(unshare));
    // The node is unshare's only child: PID 1 inside the namespace.
    let started = Instant::now();
    let node_pid: i32 = loop {
        let children =
            std::fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children")).unwrap_or_default();
        if let Some(pid) = children.split_whitespace().next().and_then(|pid| pid.parse().ok()) {
            break pid;
        }
        assert!(started.elapsed() < START_PATIENCE, "unshare did not start the node");
        std::thread::sleep(Duration::from_millis(5));
    };
    let ns_pid = std::fs::read_to_string(format!("/proc/{node_pid}/status"))
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("NSpid:").map(str::to_owned))
        .unwrap();
    assert_eq!(ns_pid.split_whitespace().last(), Some("1"), "the node is not PID 1 in its namespace: {ns_pid}");
    std::thread::sleep(Duration::from_millis(800));
    // SAFETY: kill(2) on the pid of our grandchild, which is alive (checked above).
    unsafe {
        libc::kill(node_pid, libc::SIGTERM);
    }
    let output = {
        let deadline = Instant::now() + DOCKER_GRACE;
        loop {
            let child = unshare.0.as_mut().expect("child");
            if child.try_wait().unwrap().is_some() {
                break unshare.0.take().expect("child").wait_with_output().unwrap();
            }
            assert!(Instant::now() < deadline, "node as PID 1 did not exit within the grace period");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(log.contains("SIGTERM received, initiating graceful shutdown"), "{log}");
    let report = mpc_node_process_tests::last_shutdown_report(&log).expect("a ShutdownReport");
    assert_eq!(report["reason"]["kind"], "signal", "{report}");
    assert_eq!(report["final_instance_count"], 0, "{report}");
    assert_consistent(home.path());
}

/// Kills and reaps the `unshare` process (and, through `--kill-child`, the node) if the
/// test ends early.
struct ReapOnDrop(Option<std::process::Child>);

impl Drop for ReapOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
