//! Harness for process-level tests: runs the real `mpc-node` binary with a temporary
//! home, captures its logs, sends real signals, and reaps it by pid.
//!
//! The binary must be built with `--features mpc-node/test-hooks` (the test command in
//! the README does this); `MPC_NODE_BIN` overrides its location.

pub mod docker_engine;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Docker's grace period: the bound for every wait on a stopping node.
pub const DOCKER_GRACE: Duration = Duration::from_secs(10);

/// Bound for a node to reach a state that takes it well under a second normally.
pub const START_PATIENCE: Duration = Duration::from_secs(60);

/// Path of the `mpc-node` binary next to this test executable.
pub fn node_binary() -> PathBuf {
    if let Ok(path) = std::env::var("MPC_NODE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
    let binary = profile_dir.join("mpc-node");
    assert!(
        binary.is_file(),
        "{} not found: build it first with `cargo build --release --workspace --all-features`",
        binary.display()
    );
    binary
}

/// Flags that make the sandbox chain quick and the logs frequent, for tests.
pub fn fast_node_args() -> Vec<String> {
    [
        "--sandbox-block-interval",
        "20ms",
        "--sandbox-history-blocks",
        "50",
        "--monitor-interval",
        "50ms",
        "--stats-interval",
        "200ms",
        "--web-addr",
        "127.0.0.1:0",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// A running `mpc-node start`. Dropping it SIGKILLs and reaps the process if it is
/// still running, so no test leaves a process behind.
pub struct NodeProcess {
    child: Child,
    log: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    status: Option<ExitStatus>,
    /// When [`NodeProcess::wait_exit`] saw the process reaped, before it joined the log
    /// readers: what a benchmark measures a stop to.
    reaped_at: Option<Instant>,
}

fn capture(stream: impl std::io::Read + Send + 'static, log: Arc<Mutex<String>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut log = log.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    })
}

impl NodeProcess {
    /// Starts `mpc-node start --home <home> <args>` with extra environment `env`.
    pub fn start(home: &Path, args: &[String], env: &[(&str, &str)]) -> Self {
        Self::start_binary(&node_binary(), home, args, env)
    }

    /// Like [`NodeProcess::start`], with another build of the node (a previous release).
    pub fn start_binary(binary: &Path, home: &Path, args: &[String], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(binary);
        command.arg("start").arg("--home").arg(home).args(args);
        command.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        command.env("RUST_LOG", "info");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn mpc-node");
        let log = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            capture(child.stdout.take().expect("stdout"), log.clone()),
            capture(child.stderr.take().expect("stderr"), log.clone()),
        ];
        NodeProcess { child, log, readers, status: None, reaped_at: None }
    }

    /// Process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`; panics with the log after `timeout`.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        let started = Instant::now();
        while !self.log().contains(needle) {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.status = Some(status);
                panic!("node exited ({status}) before logging {needle:?}:\n{}", self.log());
            }
            assert!(started.elapsed() < timeout, "no {needle:?} within {timeout:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until the process runs its own code: the operator signals are blocked
    /// (done before `main`) or the signal listener is already installed. Before that
    /// the kernel and the dynamic loader own the process and no program can handle a
    /// signal.
    pub fn wait_until_executing(&mut self, timeout: Duration) {
        let started = Instant::now();
        let sigterm_bit = 1u64 << (libc::SIGTERM - 1);
        loop {
            let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
            let blocked = status
                .lines()
                .find_map(|line| line.strip_prefix("SigBlk:"))
                .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
                .is_some_and(|mask| mask & sigterm_bit != 0);
            if blocked || self.log().contains("mpc-node starting") {
                return;
            }
            assert!(started.elapsed() < timeout, "process never started executing:\n{}", self.log());
            std::thread::yield_now();
        }
    }

    /// SIGTERM, then asserts a graceful exit (code 0) within Docker's grace period.
    pub fn stop_gracefully(&mut self) {
        self.signal(libc::SIGTERM);
        assert_eq!(self.wait_exit(DOCKER_GRACE).code(), Some(0), "{}", self.log());
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the pid of our own unreaped child.
        unsafe {
            libc::kill(self.pid(), signal);
        }
    }

    /// Waits for the process to exit, bounded by `timeout`; on time-out SIGKILLs it and
    /// panics (the test fails instead of hanging).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.reaped_at = Some(Instant::now());
                self.status = Some(status);
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return status;
            }
            if started.elapsed() > timeout {
                self.kill();
                panic!("node did not exit within {timeout:?}:\n{}", self.log());
            }
            // Fine-grained so the shutdown benchmark measures the exit, not the poll.
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// When [`NodeProcess::wait_exit`] found the process reaped (`None` before that, or
    /// when it was killed).
    pub fn reaped_at(&self) -> Option<Instant> {
        self.reaped_at
    }

    /// SIGKILLs and reaps the process.
    pub fn kill(&mut self) -> ExitStatus {
        if self.status.is_none() {
            self.signal(libc::SIGKILL);
            self.status = Some(self.child.wait().expect("wait"));
            for reader in self.readers.drain(..) {
                let _ = reader.join();
            }
        }
        self.status.expect("reaped")
    }

    /// The JSON of the final `ShutdownReport` line, if logged.
    pub fn shutdown_report(&self) -> Option<serde_json::Value> {
        last_shutdown_report(&self.log())
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `ShutdownReport {...}` line of a log (a process's, a container's, a unit's
/// journal) as JSON.
pub fn last_shutdown_report(log: &str) -> Option<serde_json::Value> {
    let line = log.lines().rfind(|line| line.contains("ShutdownReport {"))?;
    serde_json::from_str(&line[line.find('{')?..]).ok()
}

/// Result of `mpc-node check`.
pub struct CheckResult {
    /// Exit code.
    pub code: i32,
    /// Stdout and stderr.
    pub output: String,
}

impl CheckResult {
    /// The "last indexed height" the summary printed.
    pub fn last_indexed_height(&self) -> Option<u64> {
        self.output.lines().find_map(|line| line.strip_prefix("last indexed height: ")?.trim().parse().ok())
    }
}

/// Runs `mpc-node <args...>` to completion.
pub fn run_node_command(args: &[&str]) -> CheckResult {
    run_node_command_with_env(args, &[])
}

/// Runs `mpc-node <args...>` to completion with extra environment `env`. A process
/// killed by a signal reports code `-signal`.
pub fn run_node_command_with_env(args: &[&str], env: &[(&str, &str)]) -> CheckResult {
    run_binary_command(&node_binary(), args, env)
}

/// Like [`run_node_command_with_env`], with another build of the node.
pub fn run_binary_command(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> CheckResult {
    use std::os::unix::process::ExitStatusExt;
    let mut command = Command::new(binary);
    command.args(args).env("RUST_LOG", "info");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run mpc-node");
    CheckResult {
        code: output.status.code().or_else(|| output.status.signal().map(|signal| -signal)).unwrap_or(-1),
        output: format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
    }
}

/// Starts a node on `home`, waits until it is ready, stops it with SIGTERM (exit 0) and
/// asserts the home passes `check`: what "the home is startable" means.
pub fn assert_starts_ready_and_checks(home: &Path, context: &str) -> u64 {
    let mut node = NodeProcess::start(home, &fast_node_args(), &[]);
    node.wait_for_log("node ready", START_PATIENCE);
    node.stop_gracefully();
    let result = check(home);
    assert_eq!(result.code, 0, "{context}: check failed:\n{}", result.output);
    result.last_indexed_height().expect("check printed the last indexed height")
}

/// A count from the environment (rounds of a randomized test), or `default`: CI runs
/// the default, a person the full count.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

/// Log line of a crash point that killed the process (feature `test-hooks`).
pub const CRASH_POINT_REACHED: &str = "test hook: crash point reached";

/// Runs `mpc-node check --home <home>`.
pub fn check(home: &Path) -> CheckResult {
    run_node_command(&["check", "--home", home.to_str().expect("utf-8 path")])
}

/// Asserts the home passes `mpc-node check` and returns the last indexed height.
pub fn assert_consistent(home: &Path) -> u64 {
    let result = check(home);
    assert_eq!(result.code, 0, "check failed:\n{}", result.output);
    result.last_indexed_height().expect("check printed the last indexed height")
}

/// Rewrites the home's chain store as the previous release wrote it (schema v1, JSON
/// views), so the next start upgrades it.
pub fn rewrite_chain_store_at_version_1(home: &Path) {
    mpc_chain::rewrite_as_v1_for_test(&home.join("data")).unwrap();
}

/// Schema version of the home's chain store, read without writing.
pub fn chain_store_version(home: &Path) -> Option<u32> {
    mpc_store::migration::probe_version(&home.join("data"), &mpc_store::StoreOptions::new("chain", "fixture")).unwrap()
}

/// Rewrites the node store of a stopped node at `home` in the format of schema
/// `version`, with the same blocks as its chain: an old-schema home, as an older binary
/// would have left it, for upgrade tests.
pub fn rewrite_node_store_at_version(home: &Path, version: u32) {
    let node_path = home.join("node");
    let cursor = {
        let store =
            mpc_store::Store::open_read_only(&node_path, &mpc_store::StoreOptions::new("node", "fixture")).unwrap();
        mpc_migrations::layout::read_cursor(&store).unwrap().expect("the node indexed something").height
    };
    let chain = mpc_store::Store::open_read_only(&home.join("data"), &mpc_store::StoreOptions::new("chain", "fixture"))
        .unwrap();
    let contract = mpc_chain::default_contract_id();
    let blocks: Vec<_> = (1..=cursor)
        .map(|height| {
            let message = mpc_chain::stored_streamer_message(&chain, height).unwrap().expect("block in chain store");
            mpc_indexer::extract_block_effects(&message, &contract)
        })
        .collect();
    drop(chain);
    std::fs::remove_dir_all(&node_path).unwrap();
    mpc_migrations::legacy::write_store(&node_path, version, &blocks).unwrap();
}

/// Runs a node on a new home until it has indexed at least `height`, then stops it
/// with SIGTERM. Returns the temporary home.
pub fn home_indexed_to(height: u64, args: &[String]) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(home.path(), args, &[]);
    let started = Instant::now();
    loop {
        node.wait_for_log("indexer stats", START_PATIENCE);
        let indexed = node
            .log()
            .lines()
            .rev()
            .find_map(|line| line.split("height=").nth(1)?.split_whitespace().next()?.parse::<u64>().ok());
        if indexed.is_some_and(|indexed| indexed >= height) {
            break;
        }
        assert!(started.elapsed() < START_PATIENCE, "did not index {height} blocks:\n{}", node.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    node.stop_gracefully();
    home
}

/// Number of lines of the log containing `needle`.
pub fn count_in_log(node: &NodeProcess, needle: &str) -> usize {
    node.log().matches(needle).count()
}

/// Waits until `needle` appears at least `count` times in the log.
pub fn wait_for_count(node: &mut NodeProcess, needle: &str, count: usize, timeout: Duration) {
    let started = Instant::now();
    while count_in_log(node, needle) < count {
        assert!(started.elapsed() < timeout, "{needle:?} not seen {count} times:\n{}", node.log());
        node.assert_running();
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// What the node logs once a start or a restart has indexed its first block.
pub const FIRST_BLOCK_INDEXED: &str = "node ready: first block indexed";

/// Waits until the node has logged [`FIRST_BLOCK_INDEXED`] `count` times, polling the
/// log every 0.2 ms so that a benchmark's wall time is not the polling interval.
pub fn wait_for_first_block_count(node: &mut NodeProcess, count: usize) {
    let started = Instant::now();
    while count_in_log(node, FIRST_BLOCK_INDEXED) < count {
        assert!(started.elapsed() < START_PATIENCE, "{}", node.log());
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// A value from `/proc/<pid>/status` (e.g. "Threads", "VmRSS"), as a number.
pub fn proc_status_value(pid: i32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .expect("status value")
}

/// Open file descriptors of `pid`, leaving out RocksDB table files: RocksDB keeps one
/// descriptor per SST file in its table cache, so their number follows the amount of
/// data, not the number of restarts.
pub fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("proc fd")
        .filter_map(Result::ok)
        .filter(|entry| {
            std::fs::read_link(entry.path()).map_or(true, |target| target.extension().is_none_or(|ext| ext != "sst"))
        })
        .count()
}

impl NodeProcess {
    /// Panics (with the log) if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            self.status = Some(status);
            panic!("node exited unexpectedly ({status}):\n{}", self.log());
        }
    }
}

impl NodeProcess {
    /// The address the operations server bound (from its log line).
    pub fn web_addr(&mut self) -> std::net::SocketAddr {
        self.wait_for_log("ops server listening", START_PATIENCE);
        let log = self.log();
        let line = log.lines().find(|line| line.contains("ops server listening")).expect("listening line");
        line.split("addr=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .expect("addr")
    }
}

/// A minimal HTTP/1.1 request over loopback (`Connection: close`); returns the status
/// code and the body, or `None` if the connection was refused or reset.
pub fn http(addr: std::net::SocketAddr, method: &str, path: &str, bearer: Option<&str>) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = bearer.map(|token| format!("Authorization: Bearer {token}\r\n")).unwrap_or_default();
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    Some((status, body))
}
