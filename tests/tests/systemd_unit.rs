//! `deploy/mpc-node.service` under a real systemd: PID 1 of a container made from
//! Debian's `systemd` package, with the unit and its sysusers entry installed as shipped
//! (docs/operations.md, "systemd"), and the stripped production binary.

use std::time::{Duration, Instant};

use mpc_node_process_tests::docker_engine::{DockerEngine, ENGINE_PATIENCE, production_binary, repository_root};
use mpc_node_process_tests::{fast_node_args, home_indexed_to, last_shutdown_report, rewrite_node_store_at_version};

const IMAGE: &str = "mpc-node-systemd:test";
const UNIT: &str = "mpc-node.service";
const HOME: &str = "/var/lib/mpc-node";

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

    fn drop_in(&self, text: &str) {
        let script = format!("mkdir -p /etc/systemd/system/{UNIT}.d && cat > /etc/systemd/system/{UNIT}.d/test.conf");
        let output = std::process::Command::new("docker")
            .args(["--host", &self.engine_socket(), "exec", "-i", &self.id, "sh", "-c", &script])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().expect("stdin").write_all(text.as_bytes())?;
                child.wait_with_output()
            })
            .expect("write the drop-in");
        assert!(output.status.success());
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
    machine.drop_in(&format!(
        "[Service]\nWatchdogSec=1s\nEnvironment=MPC_MIGRATION_CHUNK_SIZE=1\nExecStart=\nExecStart=/usr/local/bin/mpc-node start --home {HOME} --shutdown-timeout 80s --sync-writes --sandbox-block-interval 0ms --sandbox-history-blocks 1000000\n"
    ));

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
