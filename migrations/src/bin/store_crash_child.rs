//! Test helper (feature `legacy-writers`): a separate process that holds, writes or
//! migrates a node store until the test SIGKILLs it. Prints one line per milestone on
//! stdout so the test can choose the moment to kill.

use std::io::Write;
use std::path::PathBuf;

use mpc_migrations::layout::{block_update, read_applied_requests, read_cursor};
use mpc_migrations::legacy::synthetic_blocks;
use mpc_migrations::{DEFAULT_MIGRATION_CHUNK_SIZE, node_schema, node_schema_with_chunk_size};
use mpc_store::migration::{MigrationSettings, open_migrated};
use mpc_store::{Store, StoreOptions};

fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(mode), Some(path)) = (args.next(), args.next().map(PathBuf::from)) else {
        eprintln!("usage: store-crash-child hold|write-stream|fill|verify|migrate PATH");
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
        "write-stream" => open_migrated(&path, &options, &node_schema(), &MigrationSettings::default()).and_then(
            |(store, _)| {
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
            },
        ),
        "fill" => open_migrated(&path, &options, &node_schema(), &MigrationSettings::default()).and_then(|(store, _)| {
            // Large payloads so a small file system fills within seconds.
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
                next += 1;
            }
        }),
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
