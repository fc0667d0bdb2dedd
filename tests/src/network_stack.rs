//! `deploy/network/compose.yaml` on a test's own Docker engine: the files an operator
//! makes first (network file, each participant's P2P key and secrets key), the stack
//! under `docker stack deploy` or Docker Compose, and reading the chain back from inside
//! the stack's internal network (nothing is published to the host).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use mpc_chain::host::{NetworkConfig, Participant};
use rand::RngCore;

use crate::docker_engine::{DockerEngine, ENGINE_PATIENCE, repository_root};
use crate::sandbox_network::{requests_in_pieces, wait_until_answered};
use crate::signing_network::p2p_key_of;
use crate::swarm::{is_healthy, wait_until_explained};
use crate::{CheckResult, last_lines};

/// The participants of the stack, as its services are named.
pub const PARTICIPANTS: [&str; 3] = ["participant-0", "participant-1", "participant-2"];

/// The chain host's service.
pub const CHAIN_HOST: &str = "chain-host";

/// Every service of the stack: the chain host, then the participants.
pub fn services() -> impl Iterator<Item = &'static str> {
    std::iter::once(CHAIN_HOST).chain(PARTICIPANTS)
}

/// The port of the chain host's RPC (`--listen` in the compose file).
const CHAIN_HOST_PORT: u16 = 3040;

/// The Compose file that puts the project on the test's network.
const COMPOSE_OVERRIDE: &str = "network-override.yaml";

/// The image's user, which must be able to read the keys under Compose.
const IMAGE_UID: u32 = 10001;

/// The files an operator makes before the first start (docs/operations.md, "Running a
/// network"): `network.json` and `participant-<i>/{p2p-key,secrets-key}`.
pub struct NetworkFiles {
    /// Where they are (`MPC_NETWORK_DIR`).
    pub dir: tempfile::TempDir,
    /// What the network file says.
    pub config: NetworkConfig,
}

impl NetworkFiles {
    /// Makes a P2P key per participant with `mpc-node p2p-key`,
    /// a random secrets key, and the network file listing them at threshold 2; the key
    /// files are the image user's, mode 0400.
    pub fn create() -> NetworkFiles {
        let dir = tempfile::tempdir().unwrap();
        let participants = PARTICIPANTS
            .iter()
            .map(|service| {
                let keys = dir.path().join(service);
                let p2p_public_key = p2p_key_of(&keys);
                let mut secrets_key = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut secrets_key);
                std::fs::write(keys.join("secrets-key"), format!("{}\n", hex::encode(secrets_key))).unwrap();
                for file in ["p2p-key", "secrets-key"] {
                    let path = keys.join(file);
                    std::os::unix::fs::chown(&path, Some(IMAGE_UID), Some(IMAGE_UID)).unwrap();
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
                }
                Participant {
                    account_id: format!("{service}.sandbox"),
                    p2p_addr: format!("{service}:3050"),
                    p2p_public_key,
                }
            })
            .collect();
        let config = NetworkConfig { threshold: 2, participants, public_key: None };
        std::fs::write(dir.path().join("network.json"), serde_json::to_string_pretty(&config).unwrap()).unwrap();
        NetworkFiles { dir, config }
    }

    /// The secrets key file of `participant`.
    pub fn secrets_key(&self, participant: &str) -> PathBuf {
        self.dir.path().join(participant).join("secrets-key")
    }
}

/// Which engine runs the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orchestrator {
    /// `docker stack deploy` on a one-node swarm (overlay network).
    Swarm,
    /// Docker Compose (bridge network).
    Compose,
}

/// What the stack runs: the participants' image, the host's, and the host's pace.
pub struct StackSettings<'a> {
    /// `MPC_NODE_IMAGE`.
    pub participant_image: &'a str,
    /// `MPC_CHAIN_HOST_IMAGE`.
    pub host_image: &'a str,
    /// `MPC_BLOCK_INTERVAL`.
    pub block_interval: &'a str,
    /// `MPC_REQUESTS_PER_BLOCK`.
    pub requests_per_block: u32,
}

/// The network stack, running.
pub struct NetworkStack<'a> {
    engine: &'a DockerEngine,
    /// Its files.
    pub files: NetworkFiles,
    orchestrator: Orchestrator,
    /// The stack's (or Compose project's) name.
    pub name: String,
    env: Vec<(String, String)>,
}

/// The compose file under test.
pub fn compose_file() -> String {
    repository_root().join("deploy/network/compose.yaml").display().to_string()
}

impl<'a> NetworkStack<'a> {
    /// Makes the files and starts the stack `name` on `engine` (a swarm already, for
    /// [`Orchestrator::Swarm`]).
    pub fn deploy(
        engine: &'a DockerEngine,
        orchestrator: Orchestrator,
        name: &str,
        settings: &StackSettings,
    ) -> NetworkStack<'a> {
        let files = NetworkFiles::create();
        let env = vec![
            ("MPC_NETWORK_DIR".to_owned(), files.dir.path().display().to_string()),
            ("MPC_NODE_IMAGE".to_owned(), settings.participant_image.to_owned()),
            ("MPC_CHAIN_HOST_IMAGE".to_owned(), settings.host_image.to_owned()),
            ("MPC_BLOCK_INTERVAL".to_owned(), settings.block_interval.to_owned()),
            ("MPC_REQUESTS_PER_BLOCK".to_owned(), settings.requests_per_block.to_string()),
        ];
        let stack = NetworkStack { engine, files, orchestrator, name: name.to_owned(), env };
        let compose = compose_file();
        match orchestrator {
            Orchestrator::Swarm => {
                let output =
                    engine.docker_with_env(&["stack", "deploy", "--compose-file", &compose, name], &stack.env_pairs());
                assert!(output.status.success(), "stack deploy: {}", String::from_utf8_lossy(&output.stderr));
                engine.remove_later("stack", name);
            }
            Orchestrator::Compose => {
                // This engine runs without iptables, so an internal bridge network still
                // gives its containers a gateway to the machine (Docker isolates such a
                // network with iptables rules). The project joins an internal overlay
                // network instead, which has no gateway at all.
                engine.init_swarm();
                let network = format!("{name}-mesh");
                engine.docker_ok(&["network", "create", "--driver", "overlay", "--internal", "--attachable", &network]);
                let override_text =
                    format!("version: \"3.8\"\nnetworks:\n  mesh:\n    external: true\n    name: {network}\n");
                std::fs::write(stack.files.dir.path().join(COMPOSE_OVERRIDE), override_text).unwrap();
                stack.compose(&["up", "--detach"]);
                for id in stack.compose(&["ps", "--quiet"]).lines() {
                    engine.remove_later("container", id);
                }
            }
        }
        for volume in services() {
            engine.remove_later("volume", &stack.volume(volume));
        }
        stack
    }

    fn env_pairs(&self) -> Vec<(&str, &str)> {
        self.env.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect()
    }

    /// `docker-compose` on this project with the stack's variables; must succeed.
    pub fn compose(&self, args: &[&str]) -> String {
        let compose = compose_file();
        let network = self.files.dir.path().join(COMPOSE_OVERRIDE).display().to_string();
        let mut all = vec!["--project-name", self.name.as_str(), "--file", compose.as_str(), "--file", &network];
        all.extend_from_slice(args);
        self.engine.compose(&all, &self.env_pairs())
    }

    /// The engine's name of `service` (`<stack>_<service>` under Swarm).
    pub fn service(&self, service: &str) -> String {
        format!("{}_{service}", self.name)
    }

    /// The volume of `service`'s home.
    pub fn volume(&self, service: &str) -> String {
        format!("{}_{service}-home", self.name)
    }

    /// The running container of `service`, if one runs.
    pub fn container(&self, service: &str) -> Option<String> {
        let filters = match self.orchestrator {
            Orchestrator::Swarm => vec![format!("label=com.docker.swarm.service.name={}", self.service(service))],
            Orchestrator::Compose => vec![
                format!("label=com.docker.compose.project={}", self.name),
                format!("label=com.docker.compose.service={service}"),
            ],
        };
        let mut args = vec!["ps", "--quiet", "--no-trunc"];
        for filter in &filters {
            args.extend(["--filter", filter.as_str()]);
        }
        self.engine.docker_ok(&args).lines().next().map(str::to_owned)
    }

    /// Waits until the host and every participant run and pass their health checks.
    pub fn wait_healthy(&self) {
        wait_until_explained(
            "every service of the stack running and healthy",
            || services().all(|service| self.container(service).is_some_and(|id| is_healthy(self.engine, &id))),
            || self.explain(),
        );
    }

    /// The engine's containers and the last lines of every service's log, for a
    /// failure's message.
    pub fn explain(&self) -> String {
        let mut explained = String::from_utf8_lossy(&self.engine.docker(&["ps", "--all"]).stdout).into_owned();
        for service in services() {
            let Some(id) = self.container(service) else { continue };
            let log = self.engine.logs(&id);
            let lines = log.lines().filter(|line| !line.contains("contract view failed"));
            explained.push_str(&format!("--- {service} (last lines) ---\n{}", last_lines(lines, 25)));
        }
        explained
    }

    /// The chain host's RPC, read from inside its container (the stack's network is
    /// internal: nothing is published to the test's machine).
    pub fn chain(&self) -> ChainInside<'a> {
        ChainInside {
            engine: self.engine,
            container: self.container(CHAIN_HOST).expect("the chain host runs"),
            port: CHAIN_HOST_PORT,
        }
    }

    /// The host's head height.
    pub fn head(&self) -> u64 {
        self.chain().head()
    }

    /// [`ChainInside::wait_answered`], explained by the stack's logs.
    pub fn wait_answered(&self, from: u64, to: u64, patience: Duration) -> Vec<serde_json::Value> {
        self.chain().wait_answered(from, to, patience, &|| self.explain())
    }

    /// `mpc-node check` on every volume of the stack, each participant's with its
    /// secrets key (the asset store is sealed under it).
    pub fn check_volumes(&self, image: &str) -> Vec<CheckResult> {
        let mut checks = Vec::new();
        for participant in PARTICIPANTS {
            let key = format!("{}:/run/secrets/secrets-key:ro", self.files.secrets_key(participant).display());
            let args = ["-v", key.as_str(), "-e", "MPC_SECRETS_KEY_FILE=/run/secrets/secrets-key"];
            checks.push(self.engine.check_volume_with(&self.volume(participant), image, &args));
        }
        let host = self.engine.check_volume_with(&self.volume(CHAIN_HOST), image, &[]);
        assert!(host.output.contains("a chain host's"), "{}", host.output);
        checks.push(host);
        checks
    }
}

/// A chain host's RPC in a container, read through `docker exec` (for hosts on a
/// network the test's machine cannot reach).
pub struct ChainInside<'a> {
    /// The engine.
    pub engine: &'a DockerEngine,
    /// The container the host runs in.
    pub container: String,
    /// The RPC's port on the container's loopback.
    pub port: u16,
}

impl ChainInside<'_> {
    fn get_json(&self, path: &str) -> serde_json::Value {
        serde_json::from_str(&self.engine.http_get_inside(&self.container, self.port, path)).unwrap()
    }

    /// The host's head height.
    pub fn head(&self) -> u64 {
        self.get_json("/v1/status")["head_height"].as_u64().expect("a head height")
    }

    /// The sign requests of heights `from..=to`, as `/v1/requests` shows them.
    pub fn requests(&self, from: u64, to: u64) -> Vec<serde_json::Value> {
        requests_in_pieces(from, to, |start, end| {
            let view = self.get_json(&format!("/v1/requests?from_height={start}&to_height={end}"));
            view.as_array().expect("an array").clone()
        })
    }

    /// The key the participants generated, once the contract runs under it.
    pub fn wait_group_key(&self) -> VerifyingKey {
        let started = Instant::now();
        loop {
            let contract = self.get_json("/v1/contract");
            if let Some(key) = contract["public_key"].as_str() {
                let bytes: [u8; 32] = hex::decode(key).unwrap().try_into().expect("32 bytes");
                return VerifyingKey::from_bytes(&bytes).unwrap();
            }
            assert!(started.elapsed() < ENGINE_PATIENCE, "no key generated: {contract}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Waits until every request of heights `from..=to` has its accepted response;
    /// returns them. A failure's message ends with `explain()`.
    pub fn wait_answered(
        &self,
        from: u64,
        to: u64,
        patience: Duration,
        explain: &dyn Fn() -> String,
    ) -> Vec<serde_json::Value> {
        wait_until_explained(&format!("the host reached {to}"), || self.head() >= to, explain);
        wait_until_answered(&format!("of {from}..={to}"), patience, || self.requests(from, to), |_| true, explain)
    }
}
