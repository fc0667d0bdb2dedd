//! Crash-consistency campaign: start the node, SIGKILL it at a random moment of a
//! random phase (catch-up, steady state, migration, in-process restart, the graceful
//! shutdown itself), restart, and after every round verify with `mpc-node check` that
//! the stores agree and that the next start resumes at cursor + 1.
//!
//! Seeded and sized by the environment: `MPC_CAMPAIGN_SEED` (default 1),
//! `MPC_CAMPAIGN_ROUNDS` (default 20, what CI runs). The long campaign:
//! `MPC_CAMPAIGN_ROUNDS=500 cargo test --release --workspace --all-features --test campaign -- --nocapture`

use std::collections::BTreeMap;
use std::time::Duration;

use mpc_node_process_tests::{
    NodeProcess, START_PATIENCE, check, fast_node_args, rewrite_node_store_at_version,
};
use rand::{Rng, SeedableRng};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum KillPhase {
    CatchUp,
    SteadyState,
    Migration,
    InProcessRestart,
    GracefulShutdown,
}

const PHASES: [KillPhase; 5] = [
    KillPhase::CatchUp,
    KillPhase::SteadyState,
    KillPhase::Migration,
    KillPhase::InProcessRestart,
    KillPhase::GracefulShutdown,
];

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
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
        let mut env: Vec<(&str, &str)> = Vec::new();
        if phase == KillPhase::Migration
            && let Some(height) = cursor
            && height > 0
        {
            rewrite_node_store_at_version(home.path(), rng.gen_range(1..=2));
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
        }
        node.kill();
        if let Some(previous) = cursor {
            // The start of this round resumed exactly after the cursor it found.
            let log = node.log();
            if let Some(start) = log
                .lines()
                .find_map(|line| line.split("streamer started start_height=").nth(1)?.split_whitespace().next()?.parse::<u64>().ok())
            {
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
    eprintln!("campaign seed {seed}: {rounds} rounds, 0 failures, kills by phase {covered:?}, final cursor {final_cursor}");
}
