//! A Docker engine of the test's own, for the tests of what `deploy/` ships.
//!
//! Each test starts `dockerd` on its own socket, data root and exec root in a temporary
//! directory (vfs storage, no iptables, no bridge: nothing on the host changes), talks
//! only to that socket, and on drop removes every container, service and volume it
//! made by id, stops the daemon by its pid and deletes its directory. No container
//! registry is reachable, so base images come from Debian packages (`mmdebstrap`),
//! cached as tarballs outside the checkout like the cargo target directory.
//!
//! These tests need root and the packages `docker.io` and `mmdebstrap` (`./dev test`
//! installs them). When one is missing, or the kernel refuses the daemon, they fail
//! with a message that says so; they never pass without having run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{CheckResult, has_test_hooks, release_directory};

/// Bound for the daemon to answer and for a container to become healthy.
pub const ENGINE_PATIENCE: Duration = Duration::from_secs(120);

/// Held by every engine that is a swarm, so that the swarms of one test binary run one
/// at a time: overlay networks of two engines on one kernel get the same VXLAN ids,
/// and their containers then cannot reach each other.
static ONE_SWARM_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A private `dockerd`; dropping it removes everything it ran and stops it.
pub struct DockerEngine {
    dir: PathBuf,
    socket: String,
    daemon: Child,
    made: std::cell::RefCell<Vec<(&'static str, String)>>,
    /// Released after the engine is gone (fields drop after [`Drop::drop`]).
    swarm_turn: std::cell::RefCell<Option<std::sync::MutexGuard<'static, ()>>>,
}

impl DockerEngine {
    /// Starts the daemon and waits until it answers.
    pub fn start() -> DockerEngine {
        // SAFETY: getuid has no preconditions.
        assert_eq!(unsafe { libc::getuid() }, 0, "the Docker engine tests need root (dockerd runs as root)");
        require_command("dockerd", "docker.io");
        let dir = PathBuf::from(format!("/tmp/mpc-engine-{}-{}", std::process::id(), unique_suffix()));
        std::fs::create_dir_all(&dir).expect("engine directory");
        let socket = format!("unix://{}/docker.sock", dir.display());
        let log = std::fs::File::create(dir.join("dockerd.log")).expect("daemon log");
        let daemon = Command::new("dockerd")
            .args(["--storage-driver=vfs", "--iptables=false", "--ip-masq=false", "--bridge=none"])
            .arg(format!("--data-root={}/data", dir.display()))
            .arg(format!("--exec-root={}/exec", dir.display()))
            .arg(format!("--pidfile={}/docker.pid", dir.display()))
            .arg(format!("--host={socket}"))
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("dockerd could not be spawned");
        let engine = DockerEngine { dir, socket, daemon, made: Default::default(), swarm_turn: Default::default() };
        let started = Instant::now();
        while !engine.docker(&["info"]).status.success() {
            assert!(
                started.elapsed() < ENGINE_PATIENCE,
                "dockerd did not come up within {ENGINE_PATIENCE:?}; the kernel may refuse it. Its log:\n{}",
                engine.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        engine
    }

    /// Runs `docker <args>` against this engine.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_with_env(args, &[])
    }

    /// Runs `docker <args>` with `env` added to the client's environment (what a
    /// compose file's variables are taken from).
    pub fn docker_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new("docker")
            .arg("--host")
            .arg(&self.socket)
            .args(args)
            .env("DOCKER_BUILDKIT", "0")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("the docker client could not be run (package docker.io)")
    }

    /// Runs `docker-compose <args>` on this engine with `env` added; it must succeed.
    /// Returns its trimmed standard output.
    pub fn compose(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let output = Command::new("docker-compose")
            .env("DOCKER_HOST", &self.socket)
            .envs(env.iter().copied())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("docker-compose not found: install the Debian package docker-compose (./dev test does)");
        assert!(
            output.status.success(),
            "docker-compose {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Runs `docker <args>`, which must succeed; returns its trimmed standard output.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        self.docker_explained(args, String::new)
    }

    /// Like [`DockerEngine::docker_ok`]; on failure the message ends with `explain()`
    /// (a journal, the container's logs).
    pub fn docker_explained(&self, args: &[&str], explain: impl FnOnce() -> String) -> String {
        let output = self.docker(args);
        assert!(
            output.status.success(),
            "docker {} failed: {}{}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            explain()
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// The engine's socket, for a `docker --host` of a caller's own.
    pub fn socket(&self) -> &str {
        &self.socket
    }

    /// Makes this engine a one-node swarm, on loopback ports of its own, left again when
    /// the engine is dropped. Waits until no other engine of this process is a swarm.
    pub fn init_swarm(&self) {
        if self.swarm_turn.borrow().is_none() {
            let turn = ONE_SWARM_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            *self.swarm_turn.borrow_mut() = Some(turn);
        }
        let (control, data) = (crate::free_port(), crate::free_port());
        let address = format!("127.0.0.1:{control}");
        self.docker_ok(&[
            "swarm",
            "init",
            "--advertise-addr",
            &address,
            "--listen-addr",
            &address,
            "--data-path-port",
            &data.to_string(),
        ]);
        self.remove_later("swarm", "");
    }

    /// `(time in nanoseconds, container id)` of every container event `status` since
    /// `since` (a Unix time in seconds), e.g. `die` or `health_status: healthy`.
    pub fn container_events(&self, since: u64, status: &str) -> Vec<(u128, String)> {
        let until =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |now| now.as_secs() + 1);
        let filter = format!("event={}", status.split(':').next().unwrap_or(status));
        let printed = self.docker_ok(&[
            "events",
            "--since",
            &since.to_string(),
            "--until",
            &until.to_string(),
            "--filter",
            "type=container",
            "--filter",
            &filter,
            "--format",
            "{{json .}}",
        ]);
        printed
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|event| event["status"] == status)
            .filter_map(|event| Some((event["timeNano"].as_u64()? as u128, event["id"].as_str()?.to_owned())))
            .collect()
    }

    /// Records something to remove (by id or name) when the engine is dropped.
    pub fn remove_later(&self, kind: &'static str, id: &str) {
        self.made.borrow_mut().push((kind, id.to_owned()));
    }

    /// Creates a named volume, removed at the end.
    pub fn volume(&self, name: &str) -> String {
        let volume = self.docker_ok(&["volume", "create", name]);
        self.remove_later("volume", &volume);
        volume
    }

    /// `docker run -d --network none <args>`; the container is removed at the end.
    pub fn run_detached(&self, args: &[&str]) -> String {
        let mut all = vec!["run", "-d", "--network", "none"];
        all.extend_from_slice(args);
        let id = self.docker_ok(&all);
        self.remove_later("container", &id);
        id
    }

    /// Imports a Debian root file system (built once, cached) as image `tag`.
    pub fn import_debian(&self, cache_name: &str, packages: &[&str], tag: &str) {
        let tarball = debian_rootfs(cache_name, packages);
        self.docker_ok(&["import", &tarball.display().to_string(), tag]);
    }

    /// Builds `deploy/Dockerfile`'s `prebuilt` target from the stripped production
    /// binary, on a `debian:bookworm-slim` made from Debian packages; returns `tag`.
    pub fn build_node_image(&self, tag: &str) -> String {
        self.build_image_of(Release::Current, tag)
    }

    /// Like [`Self::build_node_image`], from `release`'s binary.
    pub fn build_image_of(&self, release: Release, tag: &str) -> String {
        // What debian:bookworm-slim has and the node needs: useradd, and the C++ runtime of
        // the bundled RocksDB.
        self.import_debian("bookworm-essential", &["passwd", "libstdc++6"], "debian:bookworm-slim");
        let context = self.dir.join("image-context");
        std::fs::create_dir_all(&context).expect("build context");
        std::fs::copy(release_binary(release), context.join("mpc-node")).expect("binary into the build context");
        let dockerfile = repository_root().join("deploy/Dockerfile");
        self.docker_ok(&[
            "build",
            "--quiet",
            "--file",
            &dockerfile.display().to_string(),
            "--target",
            "prebuilt",
            "--tag",
            tag,
            &context.display().to_string(),
        ]);
        tag.to_owned()
    }

    /// `mpc-node check` on `volume` in a container of its own, from `image`; it must
    /// pass. Returns the last indexed height it printed.
    pub fn check_volume(&self, volume: &str, image: &str) -> u64 {
        let check = self.check_volume_with(volume, image, &[]);
        check.last_indexed_height().unwrap_or_else(|| panic!("no last indexed height in:\n{}", check.output))
    }

    /// Like [`Self::check_volume`] with `run_args` added to `docker run` (a secrets key
    /// mounted, its variable set); returns what `check` printed.
    pub fn check_volume_with(&self, volume: &str, image: &str, run_args: &[&str]) -> CheckResult {
        let mount = format!("{volume}:/data");
        let mut args = vec!["run", "--rm", "--network", "none", "-v", &mount];
        args.extend_from_slice(run_args);
        args.extend_from_slice(&["--entrypoint", "/usr/local/bin/mpc-node", image, "check", "--home", "/data"]);
        let output = self.docker(&args);
        let check = CheckResult {
            code: output.status.code().unwrap_or(-1),
            output: format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
        };
        assert!(
            check.code == 0 && check.output.contains("consistent: yes"),
            "check failed on volume {volume}:\n{}",
            check.output
        );
        check
    }

    /// Waits until `container`'s health status is `healthy`; fails if it exits first.
    pub fn wait_healthy(&self, container: &str) {
        let started = Instant::now();
        loop {
            let state = self.docker_ok(&["inspect", "-f", "{{.State.Status}} {{.State.Health.Status}}", container]);
            match state.as_str() {
                "running healthy" => return,
                _ if state.starts_with("exited") => {
                    panic!("container exited before it became healthy ({state}):\n{}", self.logs(container))
                }
                _ => {}
            }
            assert!(
                started.elapsed() < ENGINE_PATIENCE,
                "not healthy within {ENGINE_PATIENCE:?} ({state}):\n{}",
                self.logs(container)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until `container`'s logs contain `needle` `count` times.
    pub fn wait_for_log(&self, container: &str, needle: &str, count: usize) {
        let started = Instant::now();
        while self.logs(container).matches(needle).count() < count {
            assert!(
                started.elapsed() < ENGINE_PATIENCE,
                "{needle:?} not logged {count} times:\n{}",
                self.logs(container)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `GET path` of the HTTP server on `port` of the container's own loopback, from
    /// inside it (bash, no HTTP client needed): the body of a 200 answer. For servers
    /// on a network the test's machine cannot reach.
    pub fn http_get_inside(&self, container: &str, port: u16, path: &str) -> String {
        let script =
            format!("exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET %s HTTP/1.0\\r\\n\\r\\n' \"$0\" >&3 && cat <&3");
        let answer = self.docker_ok(&["exec", container, "bash", "-c", &script, path]);
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP answer: {answer}"));
        assert!(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        body.to_owned()
    }

    /// Everything the container wrote.
    pub fn logs(&self, container: &str) -> String {
        let output = self.docker(&["logs", container]);
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
    }

    /// The exit code of a stopped container.
    pub fn exit_code(&self, container: &str) -> i32 {
        self.docker_ok(&["inspect", "-f", "{{.State.ExitCode}}", container]).parse().expect("exit code")
    }

    fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }
}

impl Drop for DockerEngine {
    fn drop(&mut self) {
        for (kind, id) in self.made.borrow().iter().rev() {
            let removal: &[&str] = match *kind {
                "container" => &["rm", "--force", "--volumes"],
                "service" => &["service", "rm"],
                "stack" => &["stack", "rm"],
                "volume" => &["volume", "rm", "--force"],
                "swarm" => &["swarm", "leave", "--force"],
                _ => continue,
            };
            let mut args = removal.to_vec();
            if *kind != "swarm" {
                args.push(id);
            }
            let _ = self.docker(&args);
        }
        let pid = self.daemon.id() as i32;
        // SAFETY: signals our own child, reaped below.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.daemon.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        kill_processes_under(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Kills whatever still runs from the engine's directory (its containerd and shims),
/// by pid, so nothing outlives the test.
fn kill_processes_under(dir: &Path) {
    let marker = dir.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else { return };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else { continue };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&marker) {
            // SAFETY: a process started for this engine only (its command line names
            // the engine's private directory).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn unique_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |now| now.subsec_nanos() as u64)
}

fn require_command(command: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(command).is_file()));
    assert!(found, "`{command}` not found: install the Debian package {package} (./dev test does)");
}

/// The repository's root directory.
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the repository").to_path_buf()
}

/// Which build of the node an image runs.
#[derive(Clone, Copy, Debug)]
pub enum Release {
    /// This source's production build.
    Current,
    /// The previous release (node store schema v2), rebuilt from this source with
    /// `MPC_BUILD_PREVIOUS_RELEASE=1`: the old image of the upgrade-rollout test.
    Previous,
}

/// The stripped production build (no test features) that images are built from:
/// `<target>/release/image/mpc-node`, made by `./dev test`.
pub fn production_binary() -> PathBuf {
    release_binary(Release::Current)
}

/// `release`'s stripped production build (no test features), made by `./dev test`:
/// `<target>/release/image/mpc-node` or `<target>/release/image-previous-release/mpc-node`.
pub fn release_binary(release: Release) -> PathBuf {
    let (directory, build) = match release {
        Release::Current => ("image", "cargo build --release -p mpc-node"),
        Release::Previous => {
            ("image-previous-release", "MPC_BUILD_PREVIOUS_RELEASE=1 cargo build --release -p mpc-node")
        }
    };
    let binary = release_directory().join(directory).join("mpc-node");
    assert!(
        binary.is_file(),
        "{} not found: `./dev test` builds it ({build}, then objcopy --strip-debug)",
        binary.display()
    );
    assert!(
        !has_test_hooks(&binary),
        "{} was built with test hooks; images must run the production build",
        binary.display()
    );
    binary
}

/// A Debian bookworm root file system with `packages`, as a tarball cached in
/// `$XDG_CACHE_HOME/mpc-node-images` (or `~/.cache/…`), made by `mmdebstrap` the first time.
pub fn debian_rootfs(cache_name: &str, packages: &[&str]) -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME")
        .join("mpc-node-images");
    let tarball = cache.join(format!("{cache_name}.tar"));
    if tarball.is_file() {
        return tarball;
    }
    require_command("mmdebstrap", "mmdebstrap");
    std::fs::create_dir_all(&cache).expect("image cache directory");
    // Built under a unique name and renamed, so a concurrent test never reads half a file.
    let partial = cache.join(format!("{cache_name}.{}.{}.partial.tar", std::process::id(), unique_suffix()));
    // The essential set plus `packages`, without documentation: small, because the vfs
    // storage driver copies the whole file system for every container.
    let output = Command::new("mmdebstrap")
        .args(["--variant=essential", "--quiet"])
        .args(
            ["/usr/share/man/*", "/usr/share/doc/*", "/usr/share/locale/*", "/usr/share/info/*"]
                .map(|path| format!("--dpkgopt=path-exclude={path}")),
        )
        .arg(format!("--include={}", packages.join(",")))
        .args(["bookworm", &partial.display().to_string()])
        .output()
        .expect("mmdebstrap could not be run");
    assert!(output.status.success(), "mmdebstrap failed: {}", String::from_utf8_lossy(&output.stderr));
    std::fs::rename(&partial, &tarball).expect("cache the root file system");
    tarball
}
