//! A separate process is SIGKILLed in the middle of a write stream and in the middle of
//! a migration; the store it leaves is at a batch boundary and the next open completes
//! the migration. A second process on the same store gets the locked error.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mpc_migrations::layout::{SignRequestRecord, read_cursor};
use mpc_migrations::legacy::{synthetic_blocks, write_store};
use mpc_migrations::node_schema;
use mpc_store::checkpoint::find_checkpoint;
use mpc_store::migration::{MigrationSettings, SchemaOutcome, open_migrated, read_progress, read_version};
use mpc_store::{Column, Store, StoreError, StoreOptions};
use rand::Rng;

use common::{assert_at_block_boundary, kill_and_reap};

fn child(mode: &str, path: &std::path::Path, chunk_size: usize) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_store-crash-child"))
        .args([mode, path.to_str().unwrap()])
        .env("MPC_MIGRATION_CHUNK_SIZE", chunk_size.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    (child, stdout)
}

fn options() -> StoreOptions {
    StoreOptions::new("node", "crash-test")
}

#[test]
fn second_process_opening_the_same_store_gets_the_locked_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node");
    let (mut holder, mut lines) = child("hold", &path, 1);
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "open");
    let err = Store::open(&path, &options()).err().unwrap();
    kill_and_reap(&mut holder);
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains("locked by another process"));
}

#[test]
fn sigkill_in_the_middle_of_a_write_stream_leaves_a_batch_boundary_and_resume_continues() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node");
    let mut rng = rand::thread_rng();
    let mut last_cursor = 0;
    for _round in 0..4 {
        let (mut writer, lines) = child("write-stream", &path, 1);
        let kill_after = rng.gen_range(20..200);
        let mut seen = 0;
        for line in lines.lines() {
            if line.unwrap().starts_with("committed") {
                seen += 1;
                if seen == kill_after {
                    break;
                }
            }
        }
        kill_and_reap(&mut writer);
        let store = Store::open(&path, &options()).unwrap();
        let cursor = assert_at_block_boundary(&store, 3, true);
        assert!(cursor >= last_cursor + kill_after, "a block the writer reported committed was lost");
        last_cursor = cursor;
    }
}

#[test]
fn sigkill_in_the_middle_of_a_migration_is_completed_by_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::thread_rng();
    let mut killed_mid_step = 0;
    for attempt in 0..8 {
        let path = dir.path().join(format!("node-{attempt}"));
        let blocks = synthetic_blocks(1..=1000, 25);
        write_store(&path, 2, &blocks).unwrap();

        let (mut migrator, mut lines) = child("migrate", &path, 20);
        let mut line = String::new();
        lines.read_line(&mut line).unwrap();
        std::thread::sleep(Duration::from_millis(rng.gen_range(2..40)));
        kill_and_reap(&mut migrator);

        {
            let probe = Store::open_read_only(&path, &options()).unwrap();
            let version = read_version(&probe).unwrap();
            if version == Some(2) && read_progress(&probe, 2).unwrap().is_some() {
                killed_mid_step += 1;
            }
        }
        let (store, outcome) = open_migrated(&path, &options(), &node_schema(), &MigrationSettings::default()).unwrap();
        assert!(matches!(outcome, SchemaOutcome::Migrated { .. } | SchemaOutcome::Current { .. }), "{outcome:?}");
        assert_eq!(read_version(&store).unwrap(), Some(3));
        assert_eq!(read_progress(&store, 2).unwrap(), None);
        assert_eq!(assert_at_block_boundary(&store, 25, true), 1000);
        assert_eq!(read_cursor(&store).unwrap().unwrap().height, 1000);
        let request: SignRequestRecord =
            store.get_json(Column::SignRequests, mpc_migrations::layout::request_key(17, 3)).unwrap().unwrap();
        assert_eq!(request, blocks[16].requests[3]);
        drop(store);
        assert_eq!(find_checkpoint(&path), None, "the checkpoint must be removed after success");
    }
    assert!(killed_mid_step > 0, "no kill landed inside the resumable step; the test proved nothing");
}

#[test]
fn a_full_disk_is_a_typed_error_and_after_space_is_freed_nothing_committed_is_lost() {
    // A 4 MiB tmpfs, filled by the writer until RocksDB reports no space.
    let run = fill_small_disk("fill", "4m", Cpus::All);
    assert!(run.stdout.contains("error: no space left on device"), "{}", run.context());
    run.assert_nothing_committed_was_lost();
}

#[test]
fn a_disk_that_fills_during_a_flush_fails_the_waiting_commit_instead_of_hanging_it() {
    // The writer fills a memtable while the flush of the one before it, slowed down on
    // one CPU, meets the full disk: the commit waits in a write stall at that moment.
    // RocksDB's own recovery from a full disk then kept the commit waiting (until space
    // was freed, or for ever when the recovery's flush and the waiting commit each held
    // what the other needed). Each round must end with the disk-full error within the
    // bound; rounds go on until one has landed in the flush (the error names the table
    // file it was writing, not the WAL). MPC_FLUSH_FULL_ROUNDS runs that many rounds.
    let rounds: usize = std::env::var("MPC_FLUSH_FULL_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(0);
    let mut landed_in_flush = 0;
    let mut round = 0;
    while round < rounds.max(1) || (landed_in_flush == 0 && round < 20) {
        let run = fill_small_disk("fill-during-flush", "32m", Cpus::One);
        assert!(run.stdout.contains("disk filled"), "{}", run.context());
        let error = run.stdout.lines().find(|line| line.starts_with("error: no space left on device"));
        let error = error.unwrap_or_else(|| panic!("no disk-full error: {}", run.context()));
        if error.contains(".sst") {
            landed_in_flush += 1;
        }
        run.assert_nothing_committed_was_lost();
        round += 1;
    }
    eprintln!("{round} rounds, {landed_in_flush} with the disk filling during a flush");
    assert!(landed_in_flush > 0, "no round's disk filled during a flush in {round} rounds; the test proved nothing");
}

/// Kubernetes' default grace period in seconds: a writer still running by then hung.
const KUBERNETES_GRACE_SECS: u64 = 30;

/// The CPUs a writer on a small file system runs on.
enum Cpus {
    All,
    /// One, shared by the writer and RocksDB's background threads.
    One,
}

/// What a writer on a small file system printed, followed by what `verify` printed of
/// its store once the file system grew.
struct SmallDiskRun {
    stdout: String,
    stderr: String,
}

/// Runs the child in `mode` on `cpus`, on a tmpfs of `size` in a private user and mount
/// namespace (no root needed), until the disk is full; then grows the file system,
/// removes any ballast and reopens the store in the same namespace. A writer that does not end within a container orchestrator's grace
/// period is killed, and the run reports it.
fn fill_small_disk(mode: &str, size: &str, cpus: Cpus) -> SmallDiskRun {
    let pin = match cpus {
        Cpus::All => "",
        // The first CPU this process may run on (not CPU 0: a container's set may lack it).
        Cpus::One => "taskset -c \"$(taskset -pc $$ | sed 's/.*: *//; s/[-,].*//')\"",
    };
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("small");
    std::fs::create_dir(&mount).unwrap();
    let child = env!("CARGO_BIN_EXE_store-crash-child");
    let script = format!(
        "mount -t tmpfs -o size={size} tmpfs {m} || exit 90
         timeout -s KILL {KUBERNETES_GRACE_SECS} {pin} {c} {mode} {m}/node; echo \"fill-exit $?\"
         mount -o remount,size=128m {m} && rm -f {m}/ballast && {c} verify {m}/node",
        m = mount.display(),
        c = child
    );
    let output =
        Command::new("unshare").args(["--user", "--map-root-user", "--mount", "sh", "-c", &script]).output().unwrap();
    let run = SmallDiskRun {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(output.status.success(), "{}", run.context());
    assert!(run.stdout.contains("fill-exit 3"), "the writer did not stop with the disk-full error: {}", run.context());
    run
}

impl SmallDiskRun {
    fn context(&self) -> String {
        let lines: Vec<&str> = self.stdout.lines().filter(|line| !line.starts_with("committed ")).collect();
        format!("stdout (without the commits):\n{}\nstderr:\n{}", lines.join("\n"), self.stderr)
    }

    /// The store holds every block the writer reported committed, at a block boundary.
    fn assert_nothing_committed_was_lost(&self) {
        let last_committed: u64 = self
            .stdout
            .lines()
            .filter_map(|line| line.strip_prefix("committed ")?.parse().ok())
            .next_back()
            .expect("some blocks were committed before the disk filled");
        let verified = self.stdout.lines().find_map(|line| line.strip_prefix("verified ")).expect("verify ran");
        let field = |name: &str| -> u64 {
            verified.split_whitespace().find_map(|kv| kv.strip_prefix(&format!("{name}="))?.parse().ok()).unwrap()
        };
        assert!(field("cursor") >= last_committed, "a committed block was lost: {verified} after {last_committed}");
        assert_eq!(field("blocks"), field("cursor"), "not at a block boundary: {verified}");
        assert_eq!(field("applied"), field("cursor") * 3, "not at a block boundary: {verified}");
    }
}
