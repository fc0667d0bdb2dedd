//! The node as a process: which binary, how it is started with a temporary home, its
//! captured log, real signals, and a reap by pid that no test can skip (dropping a
//! [`NodeProcess`] SIGKILLs and reaps it).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::last_shutdown_report;

/// Docker's grace period: the bound for every wait on a stopping node.
pub const DOCKER_GRACE: Duration = Duration::from_secs(10);

/// Bound for a node to reach a state that takes it well under a second normally.
pub const START_PATIENCE: Duration = Duration::from_secs(60);

/// The `mpc-node` binary the tests run: `MPC_NODE_BIN` if set (another build, for a
/// benchmark), else the `mpc-node-test-hooks` binary of this package, which is the
/// node's own `main` built with feature `test-hooks` and which cargo builds before it
/// runs these tests. Either way it must have the test hooks, which many tests need and
/// which `--version` reports: a build without them is refused here with how to build
/// one, instead of failing later as a test whose crash point never fires.
pub fn node_binary() -> PathBuf {
    static CHECKED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let binary = std::env::var_os("MPC_NODE_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| release_directory().join("mpc-node-test-hooks"));
            assert!(
                has_test_hooks(&binary),
                "{} was built without the test hooks these tests need (MPC_NODE_BIN names a production build?); \
                 build one with `cargo build --release --workspace --all-features --bins`, or unset MPC_NODE_BIN \
                 to run this package's mpc-node-test-hooks",
                binary.display()
            );
            binary
        })
        .clone()
}

/// `<target>/release`: the directory of this package's binaries, beside the `deps`
/// directory the running test executable is in (cargo builds the package's binaries
/// before its tests and benchmarks).
pub fn release_directory() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(Path::parent).expect("<target>/<profile>/deps/<test>").to_path_buf()
}

/// Whether the node binary at `binary` was built with the test hooks (its `--version`
/// says so). Panics if it cannot be run at all.
pub fn has_test_hooks(binary: &Path) -> bool {
    let output = Command::new(binary)
        .arg("--version")
        .output()
        .unwrap_or_else(|err| panic!("cannot run {} --version: {err}", binary.display()));
    String::from_utf8_lossy(&output.stdout).contains("(test hooks")
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
        Self::run_command(binary, "start", home, args, env)
    }

    /// Starts `mpc-node sandbox-chain --home <home> --network <network> --listen
    /// 127.0.0.1:0 <args>`: a chain host on a free loopback port
    /// ([`NodeProcess::rpc_addr`] tells which).
    pub fn sandbox_chain(home: &Path, network: &Path, args: &[String]) -> Self {
        let mut all =
            vec!["--network".to_owned(), network.display().to_string(), "--listen".into(), "127.0.0.1:0".into()];
        all.extend_from_slice(args);
        Self::run_command(&node_binary(), "sandbox-chain", home, &all, &[])
    }

    /// Runs `binary <command> --home <home> <args>` with extra environment `env`.
    fn run_command(binary: &Path, subcommand: &str, home: &Path, args: &[String], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(binary);
        command.arg(subcommand).arg("--home").arg(home).args(args);
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

impl NodeProcess {
    /// The exit status if the process has ended (reaping it), without waiting.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            self.reaped_at = Some(Instant::now());
            self.status = Some(status);
        }
        self.status
    }

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
        self.logged_addr("ops server listening")
    }

    /// The address a chain host's RPC bound (from its log line).
    pub fn rpc_addr(&mut self) -> std::net::SocketAddr {
        self.logged_addr("chain host listening")
    }

    /// The `addr=` of the first log line with `message`, waiting for it.
    fn logged_addr(&mut self, message: &str) -> std::net::SocketAddr {
        self.wait_for_log(message, START_PATIENCE);
        let log = self.log();
        let line = log.lines().find(|line| line.contains(message)).expect("listening line");
        line.split("addr=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .expect("addr")
    }
}
