//! `mpc-node localnet`: a local signing network in one command, as a user runs it.
//! Signatures are printed, a child that dies is restarted, Ctrl-C stops every process
//! (checked by pid) and exits 0, and a second run reuses the network.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mpc_node_process_tests::free_port;
use mpc_node_process_tests::node_binary;

/// A running `mpc-node localnet` and its printed lines.
struct Localnet {
    child: std::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Localnet {
    fn start(dir: &std::path::Path, port: u16) -> Localnet {
        let mut child = Command::new(node_binary())
            .args(["localnet", "--dir"])
            .arg(dir)
            .args(["--chain-listen", &format!("127.0.0.1:{port}")])
            .args(["--sandbox-block-interval", "50ms", "--sandbox-history-blocks", "5"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn localnet");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (stdout, captured) = (child.stdout.take().unwrap(), lines.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                captured.lock().unwrap().push(line);
            }
        });
        Localnet { child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn wait_for(&mut self, what: &str, count: usize) -> Vec<String> {
        let started = Instant::now();
        loop {
            let lines = self.lines();
            let found: Vec<String> = lines.iter().filter(|line| line.contains(what)).cloned().collect();
            if found.len() >= count {
                return found;
            }
            assert!(self.child.try_wait().unwrap().is_none(), "localnet exited:\n{}", lines.join("\n"));
            assert!(started.elapsed() < Duration::from_secs(90), "no {count} × {what:?}:\n{}", lines.join("\n"));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The pids the localnet printed for its children.
    fn child_pids(&self) -> Vec<i32> {
        self.lines()
            .iter()
            .filter_map(|line| line.split("pid ").nth(1))
            .filter_map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
            .collect()
    }

    fn interrupt_and_wait(&mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "localnet did not stop:\n{}", self.lines().join("\n"));
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Localnet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// A port P with P..=P+22 free (the host, the nodes' operations servers and meshes).
fn free_port_block() -> u16 {
    loop {
        let port = free_port();
        if port < 60000 && (1..=22).all(|offset| std::net::TcpListener::bind(("127.0.0.1", port + offset)).is_ok()) {
            return port;
        }
    }
}

#[test]
fn localnet_signs_restarts_a_killed_node_stops_every_process_on_ctrl_c_and_reuses_its_network() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port_block();
    let mut localnet = Localnet::start(dir.path(), port);
    let key_line = localnet.wait_for("the network's key is", 1).remove(0);
    let signed = localnet.wait_for("signed  height", 5);
    assert!(signed.iter().all(|line| line.ends_with("verified")), "{signed:?}");
    let pids = localnet.child_pids();
    assert_eq!(pids.len(), 4, "a host and three nodes: {:?}", localnet.lines());

    let node1 = localnet
        .lines()
        .iter()
        .find(|line| line.contains("node-1 ("))
        .and_then(|line| line.split("pid ").nth(1)?.split(')').next()?.parse::<i32>().ok())
        .unwrap();
    unsafe { libc::kill(node1, libc::SIGKILL) };
    localnet.wait_for("node-1 was killed by signal 9; restarting", 1);
    localnet.wait_for("node-1 started again", 1);
    let before = localnet.wait_for("signed  height", 1).len();
    localnet.wait_for("signed  height", before + 5);

    let pids = localnet.child_pids();
    let status = localnet.interrupt_and_wait();
    assert_eq!(status.code(), Some(0), "{}", localnet.lines().join("\n"));
    for pid in pids {
        assert!(!alive(pid), "child {pid} outlived localnet");
    }
    let stopped: Vec<String> =
        localnet.lines().into_iter().filter(|line| line.contains("exited with code 0")).collect();
    assert_eq!(stopped.len(), 4, "{stopped:?}");

    let mut again = Localnet::start(dir.path(), port);
    assert_eq!(again.wait_for("the network's key is", 1).remove(0), key_line, "the same network");
    again.wait_for("signed  height", 3);
    assert_eq!(again.interrupt_and_wait().code(), Some(0));
}
