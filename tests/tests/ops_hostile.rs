//! The operations port against slow, hostile and numerous clients (real sockets on
//! loopback, every client bounded in count and time): no client can delay a stop, stall
//! the node, or make it panic; admin tokens cannot be brute-forced; metrics parse with
//! a real Prometheus exposition-format parser.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mpc_node_process_tests::{
    DOCKER_GRACE, NodeProcess, START_PATIENCE, assert_consistent, fast_node_args, http, open_fds,
};

/// Starts a node and waits until it is ready; returns it with its ops address.
fn ready_node(home: &Path) -> (NodeProcess, SocketAddr) {
    let mut node = NodeProcess::start(home, &fast_node_args(), &[]);
    let addr = node.web_addr();
    node.wait_for_log("node ready", START_PATIENCE);
    (node, addr)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream
}

/// SIGTERM while `clients` are held open: exit 0 within Docker's grace, a clean
/// report, a consistent store.
fn assert_clean_stop_while_held(mut node: NodeProcess, home: &Path, clients: Vec<TcpStream>, what: &str) {
    node.signal(libc::SIGTERM);
    let status = node.wait_exit(DOCKER_GRACE);
    assert_eq!(status.code(), Some(0), "{what}: {status}\n{}", node.log());
    let report = node.shutdown_report().expect("report");
    assert_eq!(report["exit_code"], 0, "{what}: {report}");
    assert_eq!(report["final_instance_count"], 0, "{what}: {report}");
    assert_eq!(report["aborted_tasks"], serde_json::json!([]), "{what}: {report}");
    let phases = report["phases"].as_array().expect("the report's phases");
    assert!(phases.iter().all(|phase| phase["completed"] == true), "{what}: a phase overran its deadline: {report}");
    drop(clients);
    assert_consistent(home);
}

#[test]
fn a_stalled_partial_request_does_not_delay_a_stop() {
    let home = tempfile::tempdir().unwrap();
    let (node, addr) = ready_node(home.path());
    let mut stalled = connect(addr);
    stalled.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_clean_stop_while_held(node, home.path(), vec![stalled], "stalled partial request");
}

#[test]
fn a_client_that_reads_its_response_one_byte_a_second_does_not_delay_a_stop() {
    let home = tempfile::tempdir().unwrap();
    let (node, addr) = ready_node(home.path());
    let mut slow = connect(addr);
    slow.write_all(b"GET /debug/lifecycle HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut byte = [0u8; 1];
    slow.read_exact(&mut byte).unwrap();
    assert_clean_stop_while_held(node, home.path(), vec![slow], "slow reader");
}

#[test]
fn a_thousand_idle_connections_do_not_delay_a_stop() {
    let home = tempfile::tempdir().unwrap();
    let (node, addr) = ready_node(home.path());
    let idle: Vec<TcpStream> = (0..1000).map(|_| connect(addr)).collect();
    assert_clean_stop_while_held(node, home.path(), idle, "1000 idle connections");
}

#[test]
fn with_a_thousand_connections_open_probes_answer_indexing_goes_on_and_descriptors_come_back() {
    let home = tempfile::tempdir().unwrap();
    let (mut node, addr) = ready_node(home.path());
    std::thread::sleep(Duration::from_millis(300));
    let baseline = open_fds(node.pid());
    let height_before = latest_height(addr);
    let clients: Vec<TcpStream> = (0..1000).map(|_| connect(addr)).collect();
    // Probes, bounded like a kubelet's (1 s), while the thousand are still open.
    for _ in 0..5 {
        let started = Instant::now();
        let answer = probe(addr, "/readyz");
        assert_eq!(answer.as_deref(), Some("200"), "readiness probe under load after {:?}", started.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while latest_height(addr) <= height_before {
        assert!(Instant::now() < deadline, "indexing stalled under 1000 connections");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(clients);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = open_fds(node.pid());
        if now <= baseline + 2 {
            break;
        }
        assert!(Instant::now() < deadline, "descriptors stayed at {now} after the clients left (baseline {baseline})");
        std::thread::sleep(Duration::from_millis(50));
    }
    node.assert_running();
    assert!(!node.log().contains("panicked"), "{}", node.log());
    node.stop_gracefully();
}

/// GET `path` with connect and read bounded by 1 s; the status code, or `None`.
fn probe(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1).map(str::to_owned)
}

fn latest_height(addr: SocketAddr) -> u64 {
    let (_, body) = http(addr, "GET", "/metrics", None).expect("metrics");
    body.lines()
        .find_map(|line| line.strip_prefix("mpc_indexer_latest_height ")?.trim().parse::<f64>().ok())
        .expect("latest height") as u64
}

/// Sends `request` raw and returns what came back before the server closed or went
/// quiet for a second (a write the server refused to take counts as closed).
fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = connect(addr);
    stream.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let _ = stream.write_all(request);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or("")
}

#[test]
fn garbage_oversized_and_odd_requests_get_a_clear_4xx_or_a_closed_connection() {
    let home = tempfile::tempdir().unwrap();
    let (mut node, addr) = ready_node(home.path());
    let token = std::fs::read_to_string(home.path().join("admin-token")).unwrap().trim().to_owned();

    let garbage = raw_exchange(addr, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n");
    assert!(garbage.is_empty() || status_line(&garbage).contains(" 400 "), "garbage: {garbage:?}");

    let big_header = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    let response = raw_exchange(addr, big_header.as_bytes());
    assert!(response.is_empty() || status_line(&response).contains(" 431 "), "oversized header: {response:?}");

    let huge_line = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(4 << 20));
    let response = raw_exchange(addr, huge_line.as_bytes());
    assert!(
        response.is_empty() || [" 400 ", " 414 ", " 431 "].iter().any(|code| status_line(&response).contains(code)),
        "megabyte request line: {response:?}"
    );

    let with_body = format!(
        "POST /admin/restart-indexer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
    );
    let response = raw_exchange(addr, with_body.as_bytes());
    assert!(status_line(&response).contains(" 413 "), "admin request with a body: {response:?}");

    let old = raw_exchange(addr, b"GET /healthz HTTP/1.0\r\n\r\n");
    assert!(status_line(&old).contains(" 200 "), "HTTP/1.0: {old:?}");

    let pipelined = raw_exchange(
        addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(pipelined.matches("HTTP/1.1 200 OK").count(), 2, "pipelined: {pipelined:?}");

    node.assert_running();
    assert_eq!(http(addr, "GET", "/readyz", None).map(|r| r.0), Some(200));
    assert!(!node.log().contains("panicked"), "{}", node.log());
    assert!(!node.log().contains("restarting indexer subsystem"), "the refused admin request acted:\n{}", node.log());
    node.stop_gracefully();
}

#[test]
fn admin_guesses_beyond_the_limit_get_429_for_the_window_and_a_token_file_may_end_in_a_newline() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("admin-token"), "operator-chosen-token\n").unwrap();
    let (mut node, addr) = ready_node(home.path());
    let restart = |token: &str| http(addr, "POST", "/admin/restart-indexer", Some(token)).map(|r| r.0);
    for _ in 0..5 {
        assert_eq!(restart("wrong"), Some(403));
    }
    assert_eq!(restart("wrong"), Some(429));
    assert_eq!(restart("operator-chosen-token"), Some(429), "locked for the window, even with the right token");
    // The node logs each refusal before it answers, but the harness reads its log on a
    // thread of its own: wait for the line rather than expect it already read.
    node.wait_for_log("admin endpoint refused a request: too many failed attempts", START_PATIENCE);
    let log = node.log();
    assert!(
        log.lines().any(|line| line.contains("admin endpoint refused a request") && line.contains("peer=127.0.0.1:")),
        "{log}"
    );
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(restart("operator-chosen-token"), Some(202), "the right token works after the window");
    node.wait_for_log("indexer subsystem restarted", START_PATIENCE);
    node.stop_gracefully();
}

#[test]
fn metrics_follow_the_prometheus_exposition_format() {
    let home = tempfile::tempdir().unwrap();
    let (mut node, addr) = ready_node(home.path());
    node.signal(libc::SIGHUP);
    node.wait_for_log("indexer subsystem restarted", START_PATIENCE);
    let (status, body) = http(addr, "GET", "/metrics", None).expect("metrics");
    assert_eq!(status, 200);
    node.stop_gracefully();
    let exposition = home.path().join("metrics.txt");
    std::fs::write(&exposition, &body).unwrap();
    // The Python client's parser: name -> "type value" of the family's first sample.
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(open(sys.argv[1]).read()):
    print(family.name, family.type, family.samples[0].value if family.samples else "")
"#;
    let output = Command::new("python3").args(["-c", script]).arg(&exposition).output().expect("python3");
    assert!(
        output.status.success(),
        "the exposition does not parse (or prometheus_client is missing: ./dev test installs it):\n{}\n{body}",
        String::from_utf8_lossy(&output.stderr)
    );
    let parsed = String::from_utf8_lossy(&output.stdout).into_owned();
    let family = |name: &str| -> (String, f64) {
        let line = parsed
            .lines()
            .find(|line| line.split(' ').next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{parsed}"));
        let mut fields = line.split(' ').skip(1);
        (fields.next().unwrap().to_owned(), fields.next().and_then(|value| value.parse().ok()).unwrap_or(f64::NAN))
    };
    assert_eq!(family("mpc_indexer_restarts"), ("counter".to_owned(), 1.0));
    let (kind, blocks) = family("mpc_indexer_blocks_indexed");
    assert!(kind == "counter" && blocks > 0.0, "{parsed}");
    assert_eq!(family("mpc_indexer_sign_requests_indexed").0, "counter");
    assert_eq!(family("mpc_node_build_info"), ("gauge".to_owned(), 1.0));
    assert!(body.contains("schema_version=\"3\""), "{body}");
    for name in ["process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds"] {
        let (kind, value) = family(name);
        assert!(kind == "gauge" && value > 0.0, "{name}: {kind} {value}\n{parsed}");
    }
}
