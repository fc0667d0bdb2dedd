//! `deploy/statefulset.yaml` against the Kubernetes API schema (no cluster can run here,
//! so a real schema validator, `kubernetes-validate` from PyPI, checks it), and against
//! the image it runs: command, volume path, user and grace period must match
//! `deploy/Dockerfile`, which the Docker tests build and run.

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

#[test]
fn the_statefulset_is_valid_and_matches_the_image_it_runs() {
    let root = repository_root();
    let manifest = root.join("deploy/statefulset.yaml");
    validate(&manifest).unwrap_or_else(|errors| panic!("deploy/statefulset.yaml is not valid:\n{errors}"));

    // The validator is not a formality: a misspelt field fails it.
    let broken = tempfile::NamedTempFile::new().unwrap();
    let text = std::fs::read_to_string(&manifest).unwrap().replace("fsGroup:", "fsGroupp:");
    std::fs::write(broken.path(), text).unwrap();
    assert!(validate(broken.path()).is_err(), "a misspelt field must fail validation");

    let statefulset = documents(&manifest).into_iter().find(|doc| doc["kind"] == "StatefulSet").expect("a StatefulSet");
    let pod = &statefulset["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let dockerfile = std::fs::read_to_string(root.join("deploy/Dockerfile")).unwrap();
    let entrypoint: Vec<Value> = dockerfile
        .lines()
        .find_map(|line| line.strip_prefix("ENTRYPOINT "))
        .map(|json| serde_json::from_str(json).expect("exec-form ENTRYPOINT"))
        .expect("an ENTRYPOINT");

    assert_eq!(container["command"][0], entrypoint[0], "the command is the image's binary");
    let args = container["args"].as_array().expect("args");
    assert_eq!(flag(args, "--home"), Some("/data"));
    assert!(dockerfile.contains("VOLUME /data"), "the image's volume is /data");
    assert_eq!(container["volumeMounts"][0]["mountPath"], "/data");

    let security = &pod["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    let uid = dockerfile
        .split("--uid ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|uid| uid.parse::<u64>().ok())
        .expect("the image's user has a fixed uid");
    assert_eq!(security["runAsUser"], uid, "the pod runs as the image's user");
    assert_eq!(security["fsGroup"], uid, "the volume is made writable for the image's user");

    let grace = pod["terminationGracePeriodSeconds"].as_f64().expect("grace period");
    let timeout =
        flag(args, "--shutdown-timeout").and_then(|value| value.strip_suffix('s')).and_then(|s| s.parse::<f64>().ok());
    let timeout = timeout.expect("--shutdown-timeout in seconds");
    assert!(
        timeout + 0.5 < grace,
        "--shutdown-timeout {timeout}s plus the abort grace must fit the {grace}s grace period"
    );
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["ports"][0]["containerPort"], 3030);
    assert!(dockerfile.contains("EXPOSE 3030"));
}
