//! The bearer token that guards the admin endpoints.

use std::path::Path;

use rand::RngCore;

use crate::error::NodeError;
use crate::home::Home;

/// The crash point of the token file's creation (feature `test-hooks`, see
/// `mpc_store::crash_points`): the token staged and synced, not yet renamed into place.
#[cfg(feature = "test-hooks")]
pub const CRASH_POINTS: &[&str] = &["admin_token:staged"];

/// Reads the admin token, creating a random one (mode 0600) on first start. An empty or
/// unreadable file is an error: admin requests must never be accepted without a token.
/// Surrounding white space (the newline `echo` adds) is not part of the token.
pub fn load_or_create_admin_token(home: &Home) -> Result<String, NodeError> {
    let path = home.admin_token();
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
        Ok(_) => Err(NodeError::Config(format!("admin token file {} is empty", path.display()))),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut bytes);
            let token: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
            write_atomically(&path, &token).map_err(|err| {
                NodeError::Config(format!("cannot create admin token file {}: {err}", path.display()))
            })?;
            tracing::info!(path = %path.display(), "admin token created");
            Ok(token)
        }
        Err(err) => Err(NodeError::Config(format!("cannot read admin token file {}: {err}", path.display()))),
    }
}

/// Writes the token to a staging file, syncs it and renames it into place, so a crash
/// never leaves an empty or partial token file (which would make every later start
/// refuse the home).
fn write_atomically(path: &Path, token: &str) -> std::io::Result<()> {
    mpc_store::directories::write_file_durably(path, format!("{token}\n").as_bytes(), 0o600, || {
        mpc_store::crash_points::reached("admin_token:staged", "admin-token")
    })
}
