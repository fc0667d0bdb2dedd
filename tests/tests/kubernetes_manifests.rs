//! `deploy/statefulset.yaml`, three participants and the chain host they follow, against
//! the Kubernetes API schema (no cluster can run here, so a real schema validator,
//! `kubernetes-validate` from PyPI, checks it), against itself (ports, names, the
//! headless service, per-pod keys) and against the image it runs: command, volume path,
//! user and grace period must match `deploy/Dockerfile`, which the Docker tests build
//! and run.

use std::path::Path;
use std::process::Command;

use mpc_node_process_tests::docker_engine::repository_root;
use serde_json::Value;

/// Runs the validator in strict mode (unknown fields are errors); `Ok` when valid.
fn validate(manifest: &Path) -> Result<(), String> {
    let output = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet"])
        .arg(manifest)
        .output()
        .expect("kubernetes-validate not found: `python3 -m pip install kubernetes-validate` (./dev test does)");
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if output.status.success() { Ok(()) } else { Err(printed) }
}

/// The manifest's documents as JSON (PyYAML comes with the validator).
fn documents(manifest: &Path) -> Vec<Value> {
    let output = Command::new("python3")
        .args(["-c", "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))"])
        .arg(manifest)
        .output()
        .expect("python3");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON")
}

/// The value after `flag` in `args`.
fn flag<'a>(args: &'a [Value], flag: &str) -> Option<&'a str> {
    let at = args.iter().position(|arg| arg == flag)?;
    args.get(at + 1)?.as_str()
}

/// The document of `kind` named `name`.
fn find<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    documents
        .iter()
        .find(|doc| doc["kind"] == kind && doc["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// The port named `name` among a container's or a service's ports.
fn port<'a>(ports: &'a Value, name: &str) -> &'a Value {
    ports
        .as_array()
        .expect("ports")
        .iter()
        .find(|port| port["name"] == name)
        .unwrap_or_else(|| panic!("no port {name}"))
}

/// What the image says of itself: its ENTRYPOINT and its user's uid.
struct Image {
    dockerfile: String,
    entrypoint: Vec<Value>,
    uid: u64,
}

fn image() -> Image {
    let dockerfile = std::fs::read_to_string(repository_root().join("deploy/Dockerfile")).unwrap();
    let entrypoint: Vec<Value> = dockerfile
        .lines()
        .find_map(|line| line.strip_prefix("ENTRYPOINT "))
        .map(|json| serde_json::from_str(json).expect("exec-form ENTRYPOINT"))
        .expect("an ENTRYPOINT");
    let uid = dockerfile
        .split("--uid ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|uid| uid.parse::<u64>().ok())
        .expect("the image's user has a fixed uid");
    Image { dockerfile, entrypoint, uid }
}

/// The checks every pod of the manifest shares with the image: the binary, the home on
/// the image's volume, the image's user owning that volume, a shutdown budget inside the
/// grace period. Returns the container.
fn assert_pod_matches_image<'a>(statefulset: &'a Value, image: &Image) -> &'a Value {
    let pod = &statefulset["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["command"][0], image.entrypoint[0], "the command is the image's binary");
    let args = container["args"].as_array().expect("args");
    assert_eq!(flag(args, "--home"), Some("/data"));
    assert!(image.dockerfile.contains("VOLUME /data"), "the image's volume is /data");
    assert_eq!(container["volumeMounts"][0]["mountPath"], "/data");
    let claim = &statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"];
    assert_eq!(&container["volumeMounts"][0]["name"], claim, "the home is the persistent volume");

    let security = &pod["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["runAsUser"], image.uid, "the pod runs as the image's user");
    assert_eq!(security["fsGroup"], image.uid, "the volume is made writable for the image's user");

    let grace = pod["terminationGracePeriodSeconds"].as_f64().expect("grace period");
    let timeout =
        flag(args, "--shutdown-timeout").and_then(|value| value.strip_suffix('s')).and_then(|s| s.parse::<f64>().ok());
    let timeout = timeout.expect("--shutdown-timeout in seconds");
    assert!(
        timeout + 0.5 < grace,
        "--shutdown-timeout {timeout}s plus the abort grace must fit the {grace}s grace period"
    );
    container
}

/// The port of `--flag HOST:PORT` in `args`.
fn port_of_flag(args: &[Value], name: &str) -> u64 {
    flag(args, name)
        .and_then(|address| address.rsplit(':').next())
        .and_then(|port| port.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("{name} HOST:PORT"))
}

#[test]
fn the_manifests_are_valid_and_describe_three_participants_that_match_the_image() {
    let manifest = repository_root().join("deploy/statefulset.yaml");
    validate(&manifest).unwrap_or_else(|errors| panic!("deploy/statefulset.yaml is not valid:\n{errors}"));

    // The validator is not a formality: a misspelt field fails it.
    let broken = tempfile::NamedTempFile::new().unwrap();
    let text = std::fs::read_to_string(&manifest).unwrap().replace("fsGroup:", "fsGroupp:");
    std::fs::write(broken.path(), text).unwrap();
    assert!(validate(broken.path()).is_err(), "a misspelt field must fail validation");

    let documents = documents(&manifest);
    let image = image();
    let participants = find(&documents, "StatefulSet", "mpc-participant");
    assert_eq!(participants["spec"]["replicas"], 3, "three participants");
    let container = assert_pod_matches_image(participants, &image);
    let args = container["args"].as_array().expect("args");
    assert_eq!(args[0], "start");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(port(&container["ports"], "ops")["containerPort"], port_of_flag(args, "--web-addr"));
    assert!(image.dockerfile.contains("EXPOSE 3030"));

    // The P2P port: what the mesh listens on, what the pod and the headless service
    // declare, what the image exposes.
    let p2p = port_of_flag(args, "--p2p-listen");
    assert_eq!(port(&container["ports"], "p2p")["containerPort"], p2p);
    assert!(image.dockerfile.contains(&format!(" {p2p}")), "the image exposes the P2P port");
    let service = find(&documents, "Service", "mpc-participant");
    assert_eq!(participants["spec"]["serviceName"], "mpc-participant", "pods are named through the headless service");
    assert_eq!(service["spec"]["clusterIP"], "None", "headless: a name per pod");
    assert_eq!(
        service["spec"]["publishNotReadyAddresses"], true,
        "peers must find each other before they can be ready"
    );
    assert_eq!(service["spec"]["selector"], participants["spec"]["template"]["metadata"]["labels"]);
    assert_eq!(port(&service["spec"]["ports"], "p2p")["port"], p2p);
    assert_eq!(participants["spec"]["podManagementPolicy"], "Parallel", "the key generation needs every pod up");

    // Per-pod identity: each pod reads the keys named after itself from the Secret.
    let env = container["env"].as_array().expect("env");
    let value_of = |name: &str| env.iter().find(|var| var["name"] == name).unwrap_or_else(|| panic!("no {name}"));
    assert_eq!(value_of("POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name");
    let keys_mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|mount| mount["name"] == "keys")
        .expect("the keys mounted");
    let keys_dir = keys_mount["mountPath"].as_str().unwrap();
    for (variable, suffix) in [("MPC_P2P_KEY_FILE", "p2p-key"), ("MPC_SECRETS_KEY_FILE", "secrets-key")] {
        assert_eq!(value_of(variable)["value"], format!("{keys_dir}/$(POD_NAME).{suffix}"));
    }
    let volumes = participants["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
    let keys = volumes.iter().find(|volume| volume["name"] == "keys").expect("the keys volume");
    assert_eq!(keys["secret"]["secretName"], "mpc-participant-keys");
    assert_eq!(keys["secret"]["defaultMode"], 0o440, "readable by the image's group (fsGroup), nobody else");

    // The chain host they follow: its service and port are the participants' --chain.
    let host = find(&documents, "StatefulSet", "mpc-chain-host");
    let host_container = assert_pod_matches_image(host, &image);
    let host_args = host_container["args"].as_array().unwrap();
    assert_eq!(host_args[0], "sandbox-chain");
    let chain = flag(args, "--chain").expect("--chain");
    let host_service = find(&documents, "Service", "mpc-chain-host");
    let host_port = port(&host_service["spec"]["ports"], "rpc")["port"].as_u64().unwrap();
    assert_eq!(chain, format!("http://mpc-chain-host:{host_port}"), "participants follow the host's service");
    assert_eq!(port(&host_container["ports"], "rpc")["containerPort"], port_of_flag(host_args, "--listen"));
}
