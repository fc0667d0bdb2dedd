//! Crash-consistency campaign: start the node, SIGKILL it at a random moment of a
//! random phase (catch-up, steady state, migration, in-process restart, the graceful
//! shutdown itself, the first start of a fresh home, a data wipe, an offline
//! `migrate --keep-checkpoint`, a `rollback`), restart, and after every round verify
//! with `mpc-node check` that the stores agree and that the next start resumes at
//! cursor + 1.
//!
//! The directory phases (fresh home, data wipe, migrate, rollback) kill either at a
//! random moment or, half of the time, at a named crash point of the operation (feature
//! `test-hooks`), asserting that the process died exactly there; a round of theirs ends
//! with the next start coming up ready and `check` passing.
//!
//! Seeded and sized by the environment: `MPC_CAMPAIGN_SEED` (default 1),
//! `MPC_CAMPAIGN_ROUNDS` (default 20, what CI runs). The long campaign:
//! `MPC_CAMPAIGN_ROUNDS=500 cargo test --release --workspace --all-features --test campaign -- --nocapture`

use std::collections::BTreeMap;
use std::time::Duration;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use mpc_node_process_tests::{
    CRASH_POINT_REACHED, NodeProcess, START_PATIENCE, assert_starts_ready_and_checks, check, env_number,
    fast_node_args, rewrite_chain_store_at_version_1, rewrite_node_store_at_version, run_node_command_with_env,
};
use rand::{Rng, SeedableRng};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum KillPhase {
    CatchUp,
    SteadyState,
    Migration,
    InProcessRestart,
    GracefulShutdown,
    FreshHome,
    DataWipe,
    MigrateKeepCheckpoint,
    Rollback,
}

const PHASES: [KillPhase; 9] = [
    KillPhase::CatchUp,
    KillPhase::SteadyState,
    KillPhase::Migration,
    KillPhase::InProcessRestart,
    KillPhase::GracefulShutdown,
    KillPhase::FreshHome,
    KillPhase::DataWipe,
    KillPhase::MigrateKeepCheckpoint,
    KillPhase::Rollback,
];

/// Crash points of a first start (both stores and the admin token).
const FIRST_START_POINTS: [&str; 7] = [
    "create:staging_dir_made@node",
    "create:staging_store_open@node",
    "create:staging_closed@node",
    "create:renamed_into_place@node",
    "create:staging_version_committed@chain",
    "create:renamed_into_place@chain",
    "admin_token:staged",
];

/// Crash points of a data wipe, including the re-created chain store.
const WIPE_POINTS: [&str; 4] = [
    "wipe:data_set_aside",
    "wipe:token_recorded",
    "create:staging_store_open@chain",
    "create:renamed_into_place@chain",
];

fn pick<'a>(rng: &mut rand::rngs::StdRng, points: &[&'a str]) -> &'a str {
    points[rng.gen_range(0..points.len())]
}

/// Waits for a node armed with a crash point and asserts that it died there.
fn assert_died_at_crash_point(node: &mut NodeProcess, context: &str) {
    let status = node.wait_exit(START_PATIENCE);
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{context}: {status}\n{}", node.log());
    assert!(node.log().contains(CRASH_POINT_REACHED), "{context}: the kill did not land at its point:\n{}", node.log());
}

/// Runs an offline command (with one-entry migration chunks, so it takes a while): with
/// a crash point asserts that it died there, otherwise kills it at a random moment.
fn offline_round(rng: &mut rand::rngs::StdRng, args: &[&str], point: Option<&str>, context: &str) {
    let mut env = vec![("MPC_MIGRATION_CHUNK_SIZE", "1")];
    if let Some(point) = point {
        env.push(("MPC_TEST_CRASH_AT", point));
        let result = run_node_command_with_env(args, &env);
        assert_eq!(result.code, -libc::SIGKILL, "{context}: {}", result.output);
        assert!(result.output.contains(CRASH_POINT_REACHED), "{context}: {}", result.output);
        return;
    }
    let mut command = std::process::Command::new(mpc_node_process_tests::node_binary());
    command.args(args).envs(env).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = command.spawn().expect("spawn");
    std::thread::sleep(Duration::from_micros(rng.gen_range(0..40_000)));
    let _ = child.kill();
    let _ = child.wait();
}

/// Removes kept pre-migration checkpoints, so each round starts from one store only.
fn remove_checkpoints(home: &Path) {
    for entry in std::fs::read_dir(home).unwrap().filter_map(Result::ok) {
        if entry.file_name().to_string_lossy().contains("pre-migration") {
            std::fs::remove_dir_all(entry.path()).unwrap();
        }
    }
}

/// One round of a directory phase; leaves `home` started, stopped and checked.
fn directory_round(rng: &mut rand::rngs::StdRng, phase: KillPhase, home: &Path, history: u64, context: &str) {
    let use_point = rng.gen_bool(0.5);
    let dir = home.to_str().expect("utf-8 path");
    match phase {
        KillPhase::FreshHome => {
            let fresh = tempfile::tempdir().unwrap();
            let point = use_point.then(|| pick(rng, &FIRST_START_POINTS));
            let env: Vec<(&str, &str)> = point.map(|point| ("MPC_TEST_CRASH_AT", point)).into_iter().collect();
            let mut node = NodeProcess::start(fresh.path(), &args(history), &env);
            if point.is_some() {
                assert_died_at_crash_point(&mut node, context);
            } else {
                std::thread::sleep(Duration::from_micros(rng.gen_range(0..60_000)));
                node.kill();
            }
            assert_starts_ready_and_checks(fresh.path(), context);
            return;
        }
        KillPhase::DataWipe => {
            let point = use_point.then(|| pick(rng, &WIPE_POINTS));
            let env: Vec<(&str, &str)> = point.map(|point| ("MPC_TEST_CRASH_AT", point)).into_iter().collect();
            let mut node = NodeProcess::start(home, &args(history), &env);
            node.wait_for_log("node ready", START_PATIENCE);
            std::fs::write(home.join("data-wipe-token"), format!("{context}\n")).unwrap();
            if point.is_some() {
                assert_died_at_crash_point(&mut node, context);
            } else {
                node.wait_for_log("data-wipe token changed", START_PATIENCE);
                std::thread::sleep(Duration::from_micros(rng.gen_range(0..30_000)));
                node.kill();
            }
        }
        KillPhase::MigrateKeepCheckpoint => {
            rewrite_node_store_at_version(home, rng.gen_range(1..=2));
            let point = use_point.then(|| pick(rng, &["migrate:checkpoint_taken", "migrate:steps_done"]));
            offline_round(rng, &["migrate", "--home", dir, "--keep-checkpoint"], point, context);
        }
        KillPhase::Rollback => {
            rewrite_node_store_at_version(home, 1);
            let migrated = run_node_command_with_env(&["migrate", "--home", dir, "--keep-checkpoint"], &[]);
            assert_eq!(migrated.code, 0, "{context}: {}", migrated.output);
            let point = use_point.then(|| pick(rng, &["rollback:store_set_aside", "rollback:checkpoint_restored"]));
            offline_round(rng, &["rollback", "--home", dir], point, context);
        }
        _ => unreachable!("not a directory phase: {phase:?}"),
    }
    let mut node = NodeProcess::start(home, &args(history), &[]);
    node.wait_for_log("node ready", START_PATIENCE);
    node.stop_gracefully();
    remove_checkpoints(home);
    // Migration rounds rebuild the node store from its blocks, which forgets the applied
    // token; a token left in place would wipe the chain again in a later round.
    let _ = std::fs::remove_file(home.join("data-wipe-token"));
}

fn args(history_blocks: u64) -> Vec<String> {
    let mut args = fast_node_args();
    args.extend([
        "--sandbox-block-interval".into(),
        "5ms".into(),
        "--sandbox-history-blocks".into(),
        history_blocks.to_string(),
    ]);
    args
}

/// The cursor `check` reports, or `None` while a migration is still unfinished.
fn checked_cursor(home: &std::path::Path, context: &str) -> Option<u64> {
    let result = check(home);
    if result.output.contains("run `mpc-node migrate`") {
        return None;
    }
    assert_eq!(result.code, 0, "{context}: check failed:\n{}", result.output);
    Some(result.last_indexed_height().unwrap_or(0))
}

#[test]
fn random_sigkills_in_every_phase_never_leave_an_inconsistent_store() {
    let seed = env_number("MPC_CAMPAIGN_SEED", 1);
    let rounds = env_number("MPC_CAMPAIGN_ROUNDS", 20);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let home = tempfile::tempdir().unwrap();
    // History long enough that the first rounds kill during catch-up.
    let history = 4_000;
    let mut cursor: Option<u64> = Some(0);
    let mut covered: BTreeMap<KillPhase, u64> = BTreeMap::new();
    for round in 0..rounds {
        let phase = if round == 0 { KillPhase::CatchUp } else { PHASES[rng.gen_range(0..PHASES.len())] };
        let context = format!("seed {seed} round {round} ({phase:?})");
        if matches!(
            phase,
            KillPhase::FreshHome | KillPhase::DataWipe | KillPhase::MigrateKeepCheckpoint | KillPhase::Rollback
        ) {
            directory_round(&mut rng, phase, home.path(), history, &context);
            if phase != KillPhase::FreshHome {
                let next = checked_cursor(home.path(), &context);
                if let (Some(previous), Some(next)) = (cursor, next) {
                    assert!(next >= previous, "{context}: cursor went back from {previous} to {next}");
                }
                cursor = next;
            }
            *covered.entry(phase).or_default() += 1;
            continue;
        }
        let mut env: Vec<(&str, &str)> = Vec::new();
        if phase == KillPhase::Migration
            && let Some(height) = cursor
            && height > 0
        {
            rewrite_node_store_at_version(home.path(), rng.gen_range(1..=2));
            // Half the time the chain store is the previous release's too, so the kill
            // may also land in its upgrade, which follows the node store's migration.
            if rng.gen_bool(0.5) {
                rewrite_chain_store_at_version_1(home.path());
            }
            env.push(("MPC_MIGRATION_CHUNK_SIZE", "1"));
        }
        let mut node = NodeProcess::start(home.path(), &args(history), &env);
        match phase {
            KillPhase::Migration if !env.is_empty() => {
                node.wait_for_log("migrating store schema", START_PATIENCE);
                std::thread::sleep(Duration::from_millis(rng.gen_range(0..40)));
            }
            KillPhase::CatchUp => {
                node.wait_for_log("streamer started", START_PATIENCE);
                std::thread::sleep(Duration::from_millis(rng.gen_range(0..400)));
            }
            KillPhase::InProcessRestart => {
                node.wait_for_log("node ready", START_PATIENCE);
                node.signal(libc::SIGHUP);
                std::thread::sleep(Duration::from_micros(rng.gen_range(0..30_000)));
            }
            KillPhase::GracefulShutdown => {
                node.wait_for_log("node ready", START_PATIENCE);
                std::thread::sleep(Duration::from_millis(rng.gen_range(0..200)));
                node.signal(libc::SIGTERM);
                std::thread::sleep(Duration::from_micros(rng.gen_range(0..20_000)));
            }
            KillPhase::SteadyState | KillPhase::Migration => {
                node.wait_for_log("node ready", START_PATIENCE);
                std::thread::sleep(Duration::from_millis(rng.gen_range(0..500)));
            }
            KillPhase::FreshHome | KillPhase::DataWipe | KillPhase::MigrateKeepCheckpoint | KillPhase::Rollback => {
                unreachable!("directory phases run in directory_round")
            }
        }
        node.kill();
        if let Some(previous) = cursor {
            // The start of this round resumed exactly after the cursor it found.
            let log = node.log();
            if let Some(start) = log.lines().find_map(|line| {
                line.split("streamer started start_height=").nth(1)?.split_whitespace().next()?.parse::<u64>().ok()
            }) {
                assert_eq!(start, previous + 1, "{context}: resumed at {start} after cursor {previous}");
            }
        }
        let next = checked_cursor(home.path(), &context);
        if let (Some(previous), Some(next)) = (cursor, next) {
            assert!(next >= previous, "{context}: cursor went back from {previous} to {next}");
        }
        cursor = next;
        *covered.entry(phase).or_default() += 1;
    }
    // A final clean start completes anything left (such as an interrupted migration).
    let mut node = NodeProcess::start(home.path(), &args(history), &[]);
    node.wait_for_log("node ready", START_PATIENCE);
    node.stop_gracefully();
    let final_cursor = checked_cursor(home.path(), "final").expect("migrated");
    eprintln!(
        "campaign seed {seed}: {rounds} rounds, 0 failures, kills by phase {covered:?}, final cursor {final_cursor}"
    );
}
