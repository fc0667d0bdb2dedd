//! Test helper (feature `test-hooks`): a separate process that holds, writes or
//! migrates a node store until the test SIGKILLs it. Prints one line per milestone on
//! stdout so the test can choose the moment to kill.

use std::io::Write;
use std::path::{Path, PathBuf};

use mpc_migrations::layout::{block_update, read_applied_requests, read_cursor};
use mpc_migrations::legacy::synthetic_blocks;
use mpc_migrations::{DEFAULT_MIGRATION_CHUNK_SIZE, node_schema, node_schema_with_chunk_size};
use mpc_store::migration::{MigrationSettings, open_migrated};
use mpc_store::{Store, StoreError, StoreOptions};

fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(mode), Some(path)) = (args.next(), args.next().map(PathBuf::from)) else {
        eprintln!("usage: store-crash-child hold|write-stream|fill|fill-during-flush|verify|migrate PATH");
        std::process::exit(2);
    };
    let options = StoreOptions::new("node", "crash-child");
    let result = match mode.as_str() {
        "hold" => Store::open(&path, &options).map(|_store| {
            say("open");
            loop {
                std::thread::park();
            }
        }),
        "write-stream" => {
            open_migrated(&path, &options, &node_schema(), &MigrationSettings::default()).and_then(|(store, _)| {
                let mut next = read_cursor(&store)?.map_or(1, |cursor| cursor.height + 1);
                let mut applied = read_applied_requests(&store)?;
                loop {
                    for effects in synthetic_blocks(next..=next, 3) {
                        store.commit(block_update(&effects, applied))?;
                        applied += effects.requests.len() as u64;
                    }
                    say(&format!("committed {next}"));
                    next += 1;
                }
            })
        }
        "fill" => fill(&path, &options, |_| Ok(())),
        "fill-during-flush" => {
            let leave_bytes = std::env::var("MPC_FILL_LEAVE_BYTES")
                .ok()
                .and_then(|bytes| bytes.parse().ok())
                .unwrap_or(DEFAULT_LEAVE_BYTES);
            let mut stage = FlushStage::FillFirstMemtable { first_wal: None };
            fill(&path, &options, move |path| stage.advance(path, leave_bytes))
        }
        "verify" => Store::open(&path, &options).and_then(|store| {
            let cursor = read_cursor(&store)?.map_or(0, |cursor| cursor.height);
            let blocks = store.iter(mpc_store::Column::IndexedBlocks, None)?.count();
            let applied = read_applied_requests(&store)?;
            say(&format!("verified cursor={cursor} blocks={blocks} applied={applied}"));
            Ok(())
        }),
        "migrate" => {
            say("migrating");
            // The batch size of the resumable step, as `mpc-node --migration-chunk-size`
            // takes it: small batches give the test many instants to kill inside the step.
            let chunk_size = std::env::var("MPC_MIGRATION_CHUNK_SIZE")
                .ok()
                .and_then(|size| size.parse().ok())
                .unwrap_or(DEFAULT_MIGRATION_CHUNK_SIZE);
            open_migrated(&path, &options, &node_schema_with_chunk_size(chunk_size), &MigrationSettings::default())
                .map(|_| say("migrated"))
        }
        other => {
            eprintln!("unknown mode {other}");
            std::process::exit(2);
        }
    };
    if let Err(err) = result {
        say(&format!("error: {err}"));
        let code = if matches!(err, mpc_store::StoreError::DiskFull { .. }) { 3 } else { 1 };
        std::process::exit(code);
    }
}

/// Commits blocks with large payloads until the store fails (a small file system fills
/// within seconds), calling `after_commit` after each block.
fn fill(
    path: &Path,
    options: &StoreOptions,
    mut after_commit: impl FnMut(&Path) -> std::io::Result<()>,
) -> Result<(), StoreError> {
    let (store, _) = open_migrated(path, options, &node_schema(), &MigrationSettings::default())?;
    let mut next = read_cursor(&store)?.map_or(1, |cursor| cursor.height + 1);
    let mut applied = read_applied_requests(&store)?;
    loop {
        for mut effects in synthetic_blocks(next..=next, 3) {
            for request in &mut effects.requests {
                request.payload = format!("{:x}", next).repeat(2_000);
            }
            store.commit(block_update(&effects, applied))?;
            applied += effects.requests.len() as u64;
        }
        say(&format!("committed {next}"));
        after_commit(path).map_err(|err| StoreError::Io { path: path.to_path_buf(), detail: err.to_string() })?;
        next += 1;
    }
}

/// Free bytes `fill-during-flush` leaves: room for the WAL of the second memtable's
/// second half, not for the first memtable's table file as well, so the flush is what
/// runs out of space.
const DEFAULT_LEAVE_BYTES: u64 = 3 * 1024 * 1024 / 2;

/// Half of a store's memtable (its write buffer is 2 MiB, `mpc-store`'s options), in
/// WAL bytes: about what the WAL holds once the memtable is half full.
const HALF_A_MEMTABLE: u64 = 1024 * 1024;

/// Where `fill-during-flush` is: the disk is filled once the store has switched
/// memtables once and the second memtable is half full, so that the slowed flush of the
/// first meets the full disk while the writer waits for it with the second full.
enum FlushStage {
    FillFirstMemtable { first_wal: Option<u64> },
    FillHalfOfSecond { wal: u64 },
    DiskFilled,
}

impl FlushStage {
    /// Moves on after a commit, by the WAL files the store at `path` has now; fills the
    /// disk on the way into the last stage.
    fn advance(&mut self, path: &Path, leave_bytes: u64) -> std::io::Result<()> {
        let Some((wal, wal_bytes)) = newest_wal(path)? else { return Ok(()) };
        match *self {
            FlushStage::FillFirstMemtable { first_wal: None } => {
                slow_down_flush_threads()?;
                *self = FlushStage::FillFirstMemtable { first_wal: Some(wal) };
            }
            FlushStage::FillFirstMemtable { first_wal: Some(first) } if wal != first => {
                *self = FlushStage::FillHalfOfSecond { wal };
            }
            FlushStage::FillHalfOfSecond { wal: second } if wal == second && wal_bytes >= HALF_A_MEMTABLE => {
                fill_disk_leaving(&path.with_file_name("ballast"), leave_bytes)?;
                say(&format!("disk filled, {leave_bytes} bytes left"));
                *self = FlushStage::DiskFilled;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Gives RocksDB's flush threads the lowest CPU priority, so that on the one CPU the
/// test pins this process to, a flush takes far longer than the writer needs to fill
/// the next memtable: the writer then waits in a write stall for the flush, the moment
/// in which a flush that meets a full disk once hung the commit.
fn slow_down_flush_threads() -> std::io::Result<()> {
    for task in std::fs::read_dir("/proc/self/task")? {
        let task = task?;
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if name.starts_with("rocksdb:high") {
            let status = std::process::Command::new("renice")
                .args(["-n", "19", "-p"])
                .arg(task.file_name())
                .stdout(std::process::Stdio::null())
                .status()?;
            if !status.success() {
                return Err(std::io::Error::other(format!("renice of flush thread failed: {status}")));
            }
        }
    }
    Ok(())
}

/// The newest WAL file of the store at `path`: its number and length.
fn newest_wal(path: &Path) -> std::io::Result<Option<(u64, u64)>> {
    let mut newest = None;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(number) = name.to_str().and_then(|name| name.strip_suffix(".log")).and_then(|n| n.parse().ok()) else {
            continue;
        };
        if newest.is_none_or(|(newest, _)| number > newest) {
            newest = Some((number, entry.metadata()?.len()));
        }
    }
    Ok(newest)
}

/// Writes `ballast` until the file system is full, then gives `leave_bytes` back.
fn fill_disk_leaving(ballast: &Path, leave_bytes: u64) -> std::io::Result<()> {
    let mut file = std::fs::File::create(ballast)?;
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(bytes) => written += bytes as u64,
            Err(err) if err.raw_os_error() == Some(28) => break,
            Err(err) => return Err(err),
        }
    }
    file.set_len(written.saturating_sub(leave_bytes))
}
