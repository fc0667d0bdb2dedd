//! `deploy/mpc-node.service` under a real systemd: PID 1 of a container made from
//! Debian's `systemd` package, with the unit and its sysusers entry installed as shipped
//! (docs/operations.md, "systemd"), and the stripped production binary.

use std::time::{Duration, Instant};

use mpc_chain::host::{NetworkConfig, Participant};
use mpc_node_process_tests::docker_engine::{DockerEngine, ENGINE_PATIENCE, production_binary, repository_root};
use mpc_node_process_tests::network_stack::ChainInside;
use mpc_node_process_tests::signing_network::{answered, assert_chain_signatures, p2p_key_of};
use mpc_node_process_tests::{fast_node_args, home_indexed_to, last_shutdown_report, rewrite_node_store_at_version};

const IMAGE: &str = "mpc-node-systemd:test";
const UNIT: &str = "mpc-node.service";
const HOME: &str = "/var/lib/mpc-node";
/// The chain host's RPC port in the participant test.
const HOST_PORT: u16 = 3040;

/// The install steps of docs/operations.md, as a Dockerfile on a Debian with systemd.
const INSTALL: &str = "FROM debian-systemd:bookworm
COPY mpc-node /usr/local/bin/mpc-node
COPY mpc-node.service /etc/systemd/system/mpc-node.service
COPY mpc-node.sysusers /usr/lib/sysusers.d/mpc-node.conf
RUN systemd-sysusers && systemctl daemon-reload 2>/dev/null; true
STOPSIGNAL SIGRTMIN+3
CMD [\"/lib/systemd/systemd\"]
";

struct Machine<'a> {
    engine: &'a DockerEngine,
    id: String,
}

impl Machine<'_> {
    fn exec(&self, command: &[&str]) -> std::process::Output {
        let mut args = vec!["exec", self.id.as_str()];
        args.extend_from_slice(command);
        self.engine.docker(&args)
    }

    fn exec_ok(&self, command: &[&str]) -> String {
        let mut args = vec!["exec", self.id.as_str()];
        args.extend_from_slice(command);
        self.engine.docker_explained(&args, || format!("journal:\n{}", self.journal()))
    }

    fn journal(&self) -> String {
        let output = self.exec(&["journalctl", "--unit", UNIT, "--no-pager", "--output", "cat"]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn property(&self, name: &str) -> String {
        self.exec_ok(&["systemctl", "show", UNIT, "--property", name, "--value"])
    }

    fn wait_until(&self, what: &str, done: impl Fn(&Self) -> bool) {
        let started = Instant::now();
        while !done(self) {
            assert!(
                started.elapsed() < ENGINE_PATIENCE,
                "{what}: not within {ENGINE_PATIENCE:?}\njournal:\n{}",
                self.journal()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Writes `text` to `path` on the machine with `mode`, owned by root.
    fn write_file(&self, path: &str, text: &str, mode: &str) {
        let script = format!("mkdir -p \"$(dirname {path})\" && cat > {path} && chmod {mode} {path}");
        let output = std::process::Command::new("docker")
            .args(["--host", &self.engine_socket(), "exec", "-i", &self.id, "sh", "-c", &script])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().expect("stdin").write_all(text.as_bytes())?;
                child.wait_with_output()
            })
            .expect("write a file on the machine");
        assert!(output.status.success(), "writing {path}");
    }

    /// Installs `text` as the drop-in `name` of the unit.
    fn drop_in(&self, name: &str, text: &str) {
        self.write_file(&format!("/etc/systemd/system/{UNIT}.d/{name}"), text, "0644");
        self.exec_ok(&["systemctl", "daemon-reload"]);
    }

    fn engine_socket(&self) -> String {
        self.engine.socket().to_owned()
    }

    /// `systemctl stop`, timed; it must end in success with exit status 0.
    fn stop(&self) -> Duration {
        let started = Instant::now();
        self.exec_ok(&["systemctl", "stop", UNIT]);
        let took = started.elapsed();
        assert_eq!(self.property("Result"), "success", "{}", self.journal());
        assert_eq!(self.property("ExecMainStatus"), "0", "{}", self.journal());
        let report = last_shutdown_report(&self.journal()).expect("a ShutdownReport");
        assert_eq!(report["final_instance_count"], 0, "{report}");
        took
    }

    fn check_home(&self) {
        let printed =
            self.exec_ok(&["runuser", "-u", "mpc-node", "--", "/usr/local/bin/mpc-node", "check", "--home", HOME]);
        assert!(printed.contains("consistent: yes"), "{printed}");
    }
}

fn boot(engine: &DockerEngine) -> Machine<'_> {
    engine.import_debian(
        "bookworm-systemd",
        &["passwd", "libstdc++6", "systemd", "systemd-sysv"],
        "debian-systemd:bookworm",
    );
    let context = tempfile::tempdir().unwrap();
    std::fs::copy(production_binary(), context.path().join("mpc-node")).unwrap();
    for file in ["mpc-node.service", "mpc-node.sysusers"] {
        std::fs::copy(repository_root().join("deploy").join(file), context.path().join(file)).unwrap();
    }
    std::fs::write(context.path().join("Dockerfile"), INSTALL).unwrap();
    engine.docker_ok(&["build", "--quiet", "--tag", IMAGE, &context.path().display().to_string()]);
    let id = engine.run_detached(&[
        "--tmpfs",
        "/run",
        "--tmpfs",
        "/run/lock",
        "--cgroupns=host",
        "-v",
        "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "-e",
        "container=docker",
        IMAGE,
    ]);
    let machine = Machine { engine, id };
    machine.wait_until("systemd up", |machine| {
        let state = machine.exec(&["systemctl", "is-system-running"]);
        matches!(String::from_utf8_lossy(&state.stdout).trim(), "running" | "degraded")
    });
    machine
}

#[test]
fn the_unit_starts_on_ready_reloads_in_process_stops_cleanly_and_comes_back_after_a_kill() {
    let engine = DockerEngine::start();
    let machine = boot(&engine);
    assert!(machine.exec(&["id", "mpc-node"]).status.success(), "sysusers created the user");

    machine.exec_ok(&["systemctl", "start", UNIT]);
    assert!(
        machine.journal().contains("node ready: first block indexed"),
        "systemctl start returned before READY=1:\n{}",
        machine.journal()
    );
    assert_eq!(machine.property("ActiveState"), "active");

    machine.exec_ok(&["systemctl", "reload", UNIT]);
    machine.wait_until("in-process restart after reload", |machine| {
        machine.journal().contains("indexer subsystem restarted")
    });
    assert_eq!(machine.property("MainPID"), machine.property("ExecMainPID"), "reload must not replace the process");

    let took = machine.stop();
    let timeout_stop: u64 = machine.property("TimeoutStopUSec").trim_end_matches('s').parse().unwrap_or(90);
    assert!(took < Duration::from_secs(timeout_stop), "stop took {took:?}");
    eprintln!("systemctl stop returned after {took:?} (Result=success, exit 0)");

    machine.exec_ok(&["systemctl", "start", UNIT]);
    let main_pid = machine.property("MainPID");
    machine.exec_ok(&["systemctl", "kill", "--signal", "SIGKILL", UNIT]);
    machine.wait_until("Restart=on-failure brings it back", |machine| {
        machine.property("ActiveState") == "active"
            && machine.property("MainPID") != main_pid
            && machine.property("MainPID") != "0"
    });
    assert_eq!(machine.property("NRestarts"), "1");
    machine.stop();
    machine.check_home();
}

#[test]
fn the_watchdog_never_fires_during_a_long_catch_up_or_a_long_migration() {
    // An old-schema home with many requests, so the migration takes seconds.
    let mut args = fast_node_args();
    args.extend(["--sandbox-block-interval".into(), "0ms".into(), "--sandbox-history-blocks".into(), "6000".into()]);
    let old_home = home_indexed_to(6000, &args);
    rewrite_node_store_at_version(old_home.path(), 2);

    let engine = DockerEngine::start();
    let machine = boot(&engine);
    machine.drop_in(
        "test.conf",
        &format!(
        "[Service]\nWatchdogSec=1s\nEnvironment=MPC_MIGRATION_CHUNK_SIZE=1\nExecStart=\nExecStart=/usr/local/bin/mpc-node start --home {HOME} --shutdown-timeout 80s --sync-writes --sandbox-block-interval 0ms --sandbox-history-blocks 1000000\n"
        ),
    );

    let source = format!("{}/.", old_home.path().display());
    let target = format!("{}:{HOME}", machine.id);
    machine.exec_ok(&["mkdir", "-p", HOME]);
    engine.docker_ok(&["cp", &source, &target]);
    machine.exec_ok(&["chown", "-R", "mpc-node:mpc-node", HOME]);

    let started = Instant::now();
    machine.exec_ok(&["systemctl", "start", UNIT]);
    let migration = started.elapsed();
    let journal = machine.journal();
    assert!(journal.contains("node store migrated"), "{journal}");
    assert!(migration > Duration::from_secs(2), "the migration ({migration:?}) must outlast two watchdog periods");
    // Catch-up of the rest of a long history, pinging all along.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(machine.property("ActiveState"), "active", "{}", machine.journal());
    assert_eq!(machine.property("NRestarts"), "0", "{}", machine.journal());
    assert!(!machine.journal().to_lowercase().contains("watchdog timeout"), "{}", machine.journal());
    eprintln!("start with migration took {migration:?}; watchdog 1 s never fired");
    machine.stop();
    machine.check_home();
}

/// The participant drop-in (deploy/mpc-node-participant.conf) as docs/operations.md
/// installs it: the unit's node follows a chain host, takes its P2P key and secrets key
/// from systemd credentials, and signs with two peers. The host and the peers run beside
/// it as transient units on the machine's loopback (the container has no network).
#[test]
fn the_participant_drop_in_follows_a_host_signs_with_its_peers_and_stops_cleanly() {
    let engine = DockerEngine::start();
    let machine = boot(&engine);
    let keys = tempfile::tempdir().unwrap();
    let mut key_texts = Vec::new();
    let participants = (0..3)
        .map(|index| {
            let home = keys.path().join(format!("participant-{index}"));
            let p2p_public_key = p2p_key_of(&home);
            key_texts.push(std::fs::read_to_string(home.join("p2p-key")).unwrap());
            Participant {
                account_id: format!("participant-{index}.sandbox"),
                p2p_addr: format!("127.0.0.1:{}", 3050 + index),
                p2p_public_key,
            }
        })
        .collect();
    let config = NetworkConfig { threshold: 2, participants, public_key: None };
    machine.write_file("/etc/mpc-node/network.json", &serde_json::to_string(&config).unwrap(), "0644");
    machine.write_file("/etc/mpc-node/p2p-key", &key_texts[0], "0600");
    let mut secrets_key = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secrets_key);
    machine.write_file("/etc/mpc-node/secrets-key", &format!("{}\n", hex::encode(secrets_key)), "0600");
    machine.write_file("/etc/mpc-node/participant.env", &format!("MPC_CHAIN=http://127.0.0.1:{HOST_PORT}\n"), "0600");
    let drop_in = std::fs::read_to_string(repository_root().join("deploy/mpc-node-participant.conf")).unwrap();
    machine.drop_in("participant.conf", &drop_in);

    let host_listen = format!("127.0.0.1:{HOST_PORT}");
    machine.exec_ok(&[
        "systemd-run",
        "--unit=mpc-chain-host",
        "/usr/local/bin/mpc-node",
        "sandbox-chain",
        "--home",
        "/var/lib/mpc-chain-host",
        "--listen",
        &host_listen,
        "--network",
        "/etc/mpc-node/network.json",
        "--sandbox-block-interval",
        "100ms",
        "--sandbox-requests-per-block",
        "2",
    ]);
    let chain = format!("http://{host_listen}");
    for (index, key_text) in key_texts.iter().enumerate().skip(1) {
        let home = format!("/var/lib/mpc-peer-{index}");
        machine.write_file(&format!("{home}/p2p-key"), key_text, "0600");
        let (unit, web) = (format!("--unit=mpc-peer-{index}"), format!("127.0.0.1:{}", 3030 + index));
        let command = ["start", "--home", &home, "--chain", &chain, "--web-addr", &web];
        let mut args = vec!["systemd-run", unit.as_str(), "/usr/local/bin/mpc-node"];
        args.extend(command);
        machine.exec_ok(&args);
    }

    machine.exec_ok(&["systemctl", "start", UNIT]);
    assert!(machine.journal().contains("node ready: first block indexed"), "{}", machine.journal());
    let host = ChainInside { engine: &engine, container: machine.id.clone(), port: HOST_PORT };
    let key = host.wait_group_key();
    let explain = || machine.journal();
    let from = host.head();
    let answers = answered(&host.wait_answered(from, from + 30, Duration::from_secs(90), &explain));
    assert_chain_signatures(&config, &answers, &key);
    let mine = answers.iter().filter(|answer| answer.commitments.contains_key("participant-0.sandbox")).count();
    assert!(mine > 0, "the unit's node signed none of {} requests:\n{}", answers.len(), machine.journal());
    // Its identity came from the credentials: nothing secret was made in its home.
    for file in ["p2p-key", "secrets-key"] {
        let path = format!("{HOME}/{file}");
        assert!(!machine.exec(&["test", "-e", &path]).status.success(), "{path} was created");
    }

    machine.stop();
    // `check` needs the secrets key for the asset store: given as the same credential,
    // to a transient unit of the service user. (`systemd-run --wait --pipe` would
    // print its output, but needs a D-Bus daemon this machine does not have; the
    // unit stays after it exits and its output is in the journal.)
    machine.exec_ok(&[
        "systemd-run",
        "--unit=mpc-node-check",
        "--remain-after-exit",
        "--uid=mpc-node",
        "-p",
        "LoadCredential=secrets-key:/etc/mpc-node/secrets-key",
        "-p",
        "Environment=MPC_SECRETS_KEY_FILE=/run/credentials/mpc-node-check.service/secrets-key",
        "/usr/local/bin/mpc-node",
        "check",
        "--home",
        HOME,
    ]);
    let check_property =
        |name: &str| machine.exec_ok(&["systemctl", "show", "mpc-node-check", "--property", name, "--value"]);
    machine
        .wait_until("check ran", |_| check_property("SubState") == "exited" || check_property("Result") != "success");
    let printed = machine.exec_ok(&["journalctl", "--unit", "mpc-node-check", "--no-pager", "--output", "cat"]);
    assert_eq!(check_property("ExecMainStatus"), "0", "{printed}");
    assert!(printed.contains("consistent: yes") && printed.contains("asset store:"), "{printed}");
    eprintln!("the participant signed {mine} of {} requests in 30 blocks", answers.len());
}
