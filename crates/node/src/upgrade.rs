//! `migrate` and `rollback`: upgrade steps an operator runs while the node is stopped.

use std::path::Path;

use mpc_lifecycle::ExitCode;
use mpc_migrations::node_schema_with_chunk_size;
use mpc_store::migration::{MigrationSettings, SchemaOutcome, open_migrated, plan, recover_interrupted_operations};

use crate::cli::MigrateArgs;
use crate::home::{Home, HomeLock};
use crate::startup::node_store_options;

/// Claims the home for an offline command; prints why not and returns the exit code.
fn claim(home: &Home) -> Result<HomeLock, ExitCode> {
    home.claim().map_err(|err| {
        eprintln!("error: {err}");
        err.exit_code()
    })
}

/// Applies or lists pending schema steps of the node store.
pub fn migrate(args: &MigrateArgs) -> ExitCode {
    let home = Home::new(&args.home);
    let _claimed = match claim(&home) {
        Ok(lock) => lock,
        Err(code) => return code,
    };
    let path = home.node_store();
    // Finishing an interrupted rollback or removal is not a migration: even a dry run
    // does it, so it reports the store the next start would see.
    if let Err(err) = recover_interrupted_operations(&path) {
        eprintln!("error: {err}");
        return ExitCode::STORE;
    }
    let options = node_store_options(false);
    let schema = node_schema_with_chunk_size(args.migration.chunk_size);
    let pending = match plan(&path, &options, &schema) {
        Ok(pending) => pending,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::STORE;
        }
    };
    let Some(current) = pending.current else {
        eprintln!("error: no node store at {}", path.display());
        return ExitCode::STORE;
    };
    println!("node store schema: v{current}, this binary: v{}", pending.latest);
    for (from, description) in &pending.steps {
        println!("pending: v{from} -> v{}: {description}", from + 1);
    }
    if pending.steps.is_empty() {
        println!("nothing to migrate");
        return ExitCode::GRACEFUL;
    }
    if args.dry_run {
        return ExitCode::GRACEFUL;
    }
    let settings = MigrationSettings { keep_checkpoint: args.keep_checkpoint, ..Default::default() };
    match open_migrated(&path, &options, &schema, &settings) {
        Ok((_, SchemaOutcome::Migrated { from, to, checkpoint })) => {
            println!("migrated v{from} -> v{to}");
            if let Some(checkpoint) = checkpoint {
                println!("pre-migration checkpoint kept at {}", checkpoint.display());
            }
            ExitCode::GRACEFUL
        }
        Ok(_) => ExitCode::GRACEFUL,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::STORE
        }
    }
}

/// Restores the kept pre-migration checkpoint of the node store.
pub fn rollback(home: &Path) -> ExitCode {
    let home = Home::new(home);
    let _claimed = match claim(&home) {
        Ok(lock) => lock,
        Err(code) => return code,
    };
    let path = home.node_store();
    match mpc_store::checkpoint::rollback(&path, &node_store_options(false)) {
        Ok(version) => {
            println!("node store rolled back to schema v{version}");
            ExitCode::GRACEFUL
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::STORE
        }
    }
}
