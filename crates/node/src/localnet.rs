//! `mpc-node localnet`: a local signing network in one command. A chain host and n
//! nodes as child processes, each with its home under `--dir`, the network file made
//! from the nodes' P2P keys at the first run and reused after, one printed line per
//! signature accepted on chain, failed children restarted, and a Ctrl-C or SIGTERM that
//! stops every child gracefully (nodes first, then the host) and exits 0.
//!
//! Ports, from `--chain-listen`'s port P: node i's operations server on P + 10 + i, its
//! mesh on P + 20 + i; all on 127.0.0.1.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mpc_chain::host::transaction::parse_signature;
use mpc_chain::host::{NetworkConfig, Participant, parse_public_key};
use mpc_chain::host_client::HostClient;
use mpc_lifecycle::{
    DeferredSignals, ExitCode, LifecycleRequest, OperatorSignal, install_signal_listener, lifecycle_channel,
};

use crate::children::{ChildEvent, SupervisedChild, describe_exit};
use crate::cli::LocalnetArgs;
use crate::error::NodeError;

/// How often the children are looked at.
const SUPERVISE_EVERY: Duration = Duration::from_millis(100);
/// How often the host is asked for new responses.
const SIGNATURES_EVERY: Duration = Duration::from_millis(500);
/// How long the host may take to answer after its start.
const HOST_START_PATIENCE: Duration = Duration::from_secs(60);
/// Beyond a child's own shutdown budget, before it is SIGKILLed.
const STOP_MARGIN: Duration = Duration::from_secs(2);

/// Where everything of a local network is.
struct Layout {
    dir: PathBuf,
    chain_listen: SocketAddr,
    nodes: usize,
    threshold: u32,
}

impl Layout {
    fn host_home(&self) -> PathBuf {
        self.dir.join("chain-host")
    }

    fn node_home(&self, index: usize) -> PathBuf {
        self.dir.join(format!("node-{index}"))
    }

    fn network_file(&self) -> PathBuf {
        self.dir.join("network.json")
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    fn port(&self, offset: usize) -> Result<u16, NodeError> {
        u16::try_from(usize::from(self.chain_listen.port()) + offset).map_err(|_| {
            NodeError::Config(format!(
                "--chain-listen port {} leaves no room for the nodes' ports",
                self.chain_listen.port()
            ))
        })
    }

    fn web_addr(&self, index: usize) -> Result<String, NodeError> {
        Ok(format!("127.0.0.1:{}", self.port(10 + index)?))
    }

    fn p2p_addr(&self, index: usize) -> Result<String, NodeError> {
        Ok(format!("127.0.0.1:{}", self.port(20 + index)?))
    }

    fn account(index: usize) -> String {
        format!("node{index}.sandbox")
    }
}

/// Runs the local network until Ctrl-C or SIGTERM; returns the exit code.
pub fn run(args: LocalnetArgs, deferred_signals: DeferredSignals) -> ExitCode {
    // One thread: the children are spawned from it, and the kernel's parent-death signal
    // is tied to the thread that spawned them.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot build the runtime: {err}");
            return ExitCode::FATAL;
        }
    };
    runtime.block_on(serve(args, deferred_signals))
}

async fn serve(args: LocalnetArgs, deferred_signals: DeferredSignals) -> ExitCode {
    let (lifecycle, mut requests) = lifecycle_channel();
    let forced_exit = |signal: OperatorSignal| {
        eprintln!("localnet: second {} while stopping: exiting at once (the children get SIGTERM)", signal.name());
        std::process::exit(ExitCode::forced_by_signal(signal.number()).0);
    };
    if let Err(err) = install_signal_listener(lifecycle, forced_exit, || {}) {
        eprintln!("error: cannot install signal handlers: {err}");
        return ExitCode::FATAL;
    }
    deferred_signals.release();
    let layout =
        Layout { dir: args.dir.clone(), chain_listen: args.chain_listen, nodes: args.nodes, threshold: args.threshold };
    let network = match prepare(&layout) {
        Ok(network) => network,
        Err(error) => {
            eprintln!("error: {error}");
            return error.exit_code();
        }
    };
    let mut host = match host_child(&layout, &args) {
        Ok(host) => host,
        Err(error) => {
            eprintln!("error: {error}");
            return error.exit_code();
        }
    };
    let client = match HostClient::new(&format!("http://{}", layout.chain_listen)) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::USAGE;
        }
    };
    println!("localnet: {} nodes at threshold {} in {}", layout.nodes, layout.threshold, layout.dir.display());
    if let Err(error) = start_and_wait_for_host(&mut host, &client).await {
        eprintln!("error: {error} (see {})", layout.log("chain-host").display());
        host.terminate();
        let _ = host.wait_stopped(args.shutdown_timeout + STOP_MARGIN).await;
        return ExitCode::FATAL;
    }
    println!(
        "localnet: chain host (pid {}) http://{} (log {})",
        host.pid().unwrap_or_default(),
        layout.chain_listen,
        layout.log("chain-host").display()
    );
    let mut nodes = Vec::new();
    for (index, participant) in network.participants.iter().enumerate() {
        let mut node = match node_child(&layout, &args, index) {
            Ok(node) => node,
            Err(error) => {
                eprintln!("error: {error}");
                stop_all(&mut nodes, &mut host, args.shutdown_timeout).await;
                return error.exit_code();
            }
        };
        if let Err(error) = node.start() {
            eprintln!("error: cannot start {}: {error}", node.name);
            stop_all(&mut nodes, &mut host, args.shutdown_timeout).await;
            return ExitCode::FATAL;
        }
        println!(
            "localnet: {} ({}, pid {}) ops http://{} mesh {} (log {})",
            node.name,
            participant.account_id,
            node.pid().unwrap_or_default(),
            layout.web_addr(index).unwrap_or_default(),
            participant.p2p_addr,
            layout.log(&node.name).display()
        );
        nodes.push(node);
    }
    println!("localnet: Ctrl-C stops every process");

    let mut signatures = SignaturePrinter::default();
    let mut supervise = tokio::time::interval(SUPERVISE_EVERY);
    let mut poll = tokio::time::interval(SIGNATURES_EVERY);
    loop {
        tokio::select! {
            request = requests.recv() => match request {
                Some(LifecycleRequest::Shutdown(reason)) => {
                    println!("localnet: {reason}; stopping the nodes, then the chain host");
                    break;
                }
                Some(LifecycleRequest::Restart { .. }) => {}
                None => break,
            },
            _ = supervise.tick() => {
                for child in nodes.iter_mut().chain(std::iter::once(&mut host)) {
                    report(child);
                }
            }
            _ = poll.tick() => signatures.poll(&client).await,
        }
    }
    stop_all(&mut nodes, &mut host, args.shutdown_timeout).await
}

/// Creates the homes, their P2P keys and the network file at the first run; checks that
/// they still fit together after.
fn prepare(layout: &Layout) -> Result<NetworkConfig, NodeError> {
    if layout.nodes == 0 || layout.threshold == 0 || layout.threshold as usize > layout.nodes {
        return Err(NodeError::Config(format!(
            "--threshold {} must be between 1 and --nodes {}",
            layout.threshold, layout.nodes
        )));
    }
    std::fs::create_dir_all(&layout.dir)
        .map_err(|err| NodeError::home_file(format!("cannot create {}", layout.dir.display()), err))?;
    let mut keys = Vec::new();
    for index in 0..layout.nodes {
        let home = layout.node_home(index);
        std::fs::create_dir_all(&home)
            .map_err(|err| NodeError::home_file(format!("cannot create {}", home.display()), err))?;
        let key = mpc_signer::load_or_create_p2p_key(&home).map_err(|err| NodeError::Secrets(err.to_string()))?;
        keys.push(hex::encode(key.verifying_key().to_bytes()));
    }
    let path = layout.network_file();
    if path.exists() {
        let network = NetworkConfig::load(&path).map_err(|err| NodeError::Config(err.to_string()))?;
        let listed: Vec<&str> = network.participants.iter().map(|p| p.p2p_public_key.as_str()).collect();
        let homes: Vec<&str> = keys.iter().map(String::as_str).collect();
        if network.threshold != layout.threshold || listed != homes {
            return Err(NodeError::Config(format!(
                "{} was made for {} nodes at threshold {} (or for other homes); use another --dir for another network",
                layout.dir.display(),
                network.participants.len(),
                network.threshold
            )));
        }
        return Ok(network);
    }
    let participants = keys
        .into_iter()
        .enumerate()
        .map(|(index, p2p_public_key)| {
            Ok(Participant { account_id: Layout::account(index), p2p_addr: layout.p2p_addr(index)?, p2p_public_key })
        })
        .collect::<Result<Vec<_>, NodeError>>()?;
    let network = NetworkConfig { threshold: layout.threshold, participants, public_key: None };
    network.validate().map_err(NodeError::Config)?;
    let text = serde_json::to_string_pretty(&network).expect("a network file serialises");
    mpc_store::directories::write_file_durably(&path, text.as_bytes(), 0o644, || {})
        .map_err(|err| NodeError::home_file(format!("cannot write {}", path.display()), err))?;
    Ok(network)
}

fn own_binary() -> Result<PathBuf, NodeError> {
    std::env::current_exe().map_err(|err| NodeError::home_file("cannot find this program's own path", err))
}

fn host_child(layout: &Layout, args: &LocalnetArgs) -> Result<SupervisedChild, NodeError> {
    let sandbox = &args.sandbox;
    let host_args = vec![
        "sandbox-chain".to_owned(),
        "--home".to_owned(),
        layout.host_home().display().to_string(),
        "--listen".to_owned(),
        layout.chain_listen.to_string(),
        "--network".to_owned(),
        layout.network_file().display().to_string(),
        "--shutdown-timeout".to_owned(),
        format!("{}ms", args.shutdown_timeout.as_millis()),
        "--sandbox-block-interval".to_owned(),
        format!("{}ms", sandbox.block_interval.as_millis()),
        "--sandbox-history-blocks".to_owned(),
        sandbox.history_blocks.to_string(),
        "--sandbox-seed".to_owned(),
        sandbox.seed.to_string(),
        "--sandbox-shards".to_owned(),
        sandbox.shards.to_string(),
        "--sandbox-requests-per-block".to_owned(),
        sandbox.requests_per_block.to_string(),
    ];
    Ok(SupervisedChild::new("chain-host", own_binary()?, host_args, layout.log("chain-host")))
}

fn node_child(layout: &Layout, args: &LocalnetArgs, index: usize) -> Result<SupervisedChild, NodeError> {
    let node_args = vec![
        "start".to_owned(),
        "--home".to_owned(),
        layout.node_home(index).display().to_string(),
        "--chain".to_owned(),
        format!("http://{}", layout.chain_listen),
        "--web-addr".to_owned(),
        layout.web_addr(index)?,
        "--shutdown-timeout".to_owned(),
        format!("{}ms", args.shutdown_timeout.as_millis()),
    ];
    let name = format!("node-{index}");
    Ok(SupervisedChild::new(&name, own_binary()?, node_args, layout.log(&name)))
}

/// Starts the host and waits until its RPC answers.
async fn start_and_wait_for_host(host: &mut SupervisedChild, client: &HostClient) -> Result<(), String> {
    host.start().map_err(|err| format!("cannot start the chain host: {err}"))?;
    let started = tokio::time::Instant::now();
    loop {
        if client.head().await.is_ok() {
            return Ok(());
        }
        if let Ok(Some(ChildEvent::WillRestart { how, .. } | ChildEvent::Stopped { how })) = host.supervise() {
            return Err(format!("the chain host {how}"));
        }
        if started.elapsed() > HOST_START_PATIENCE {
            return Err("the chain host did not answer in time".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Prints what happened to `child`.
fn report(child: &mut SupervisedChild) {
    match child.supervise() {
        Ok(None) => {}
        Ok(Some(ChildEvent::WillRestart { how, after })) => {
            println!("localnet: {} {how}; restarting in {} s", child.name, after.as_secs())
        }
        Ok(Some(ChildEvent::Stopped { how })) => println!("localnet: {} {how}; not restarted", child.name),
        Ok(Some(ChildEvent::Started { pid })) => println!("localnet: {} started again (pid {pid})", child.name),
        Err(error) => println!("localnet: cannot supervise {}: {error}", child.name),
    }
}

/// Stops the nodes (all at once), then the host; exit 0 when every one of them stopped
/// on its own with exit 0.
async fn stop_all(nodes: &mut [SupervisedChild], host: &mut SupervisedChild, budget: Duration) -> ExitCode {
    for node in nodes.iter_mut() {
        node.terminate();
    }
    let mut clean = true;
    for node in nodes.iter_mut() {
        clean &= wait_stopped(node, budget).await;
    }
    host.terminate();
    clean &= wait_stopped(host, budget).await;
    if clean { ExitCode::GRACEFUL } else { ExitCode::FATAL }
}

/// Waits for a terminated child and prints how it ended; true if it stopped cleanly.
async fn wait_stopped(child: &mut SupervisedChild, budget: Duration) -> bool {
    match child.wait_stopped(budget + STOP_MARGIN).await {
        Ok(None) => true,
        Ok(Some((status, killed))) => {
            let how = describe_exit(status);
            if killed {
                println!("localnet: {} did not stop in time and was killed ({how})", child.name);
            } else {
                println!("localnet: {} {how}", child.name);
            }
            status.success() && !killed
        }
        Err(error) => {
            println!("localnet: cannot stop {}: {error}", child.name);
            false
        }
    }
}

/// Prints one line per response the contract accepted, verified here against the
/// contract's key.
#[derive(Default)]
struct SignaturePrinter {
    key: Option<ed25519_dalek::VerifyingKey>,
    from_height: u64,
    printed: BTreeSet<(u64, String)>,
    announced_key: bool,
}

impl SignaturePrinter {
    async fn poll(&mut self, client: &HostClient) {
        if self.key.is_none() {
            let Ok(contract) = client.contract().await else { return };
            let Some(key) = contract["public_key"].as_str().and_then(|key| parse_public_key(key).ok()) else { return };
            if !self.announced_key {
                println!("localnet: the network's key is {} (the contract runs)", hex::encode(key.to_bytes()));
                self.announced_key = true;
            }
            self.key = Some(key);
        }
        let Ok(head) = client.head().await else { return };
        if head < self.from_height {
            return;
        }
        let to = head.min(self.from_height + mpc_chain::host::requests::MAX_REQUEST_RANGE - 1);
        let Ok(records) = client.requests(self.from_height, to).await else { return };
        let mut lowest_unanswered = None;
        for record in records {
            let Some(response) = &record.response else {
                lowest_unanswered = Some(lowest_unanswered.map_or(record.height, |low: u64| low.min(record.height)));
                continue;
            };
            if !self.printed.insert((record.height, record.request_id.clone())) {
                continue;
            }
            let verified = match (self.key, parse_signature(&response.signature), hex::decode(&record.payload)) {
                (Some(key), Ok(signature), Ok(payload)) if key.verify_strict(&payload, &signature).is_ok() => {
                    "verified"
                }
                _ => "DOES NOT VERIFY",
            };
            println!(
                "signed  height {}  request {}…  by {}  signature {}…  {verified}",
                response.height,
                &record.request_id[..16],
                response.responder,
                &response.signature[..16]
            );
        }
        self.from_height = lowest_unanswered.unwrap_or(to + 1);
        let from = self.from_height;
        self.printed.retain(|(height, _)| *height >= from);
    }
}
