//! The bearer token that guards the admin endpoints.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rand::RngCore;

/// Where the token lives: readable by the node's user only.
pub fn admin_token_path(home: &Path) -> PathBuf {
    home.join("admin-token")
}

/// Reads the admin token, creating a random one (mode 0600) on first start. An empty or
/// unreadable file is an error: admin requests must never be accepted without a token.
pub fn load_or_create_admin_token(home: &Path) -> Result<String, String> {
    let path = admin_token_path(home);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
        Ok(_) => Err(format!("admin token file {} is empty", path.display())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut bytes);
            let token: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|err| format!("cannot create admin token file {}: {err}", path.display()))?;
            writeln!(file, "{token}").map_err(|err| format!("cannot write {}: {err}", path.display()))?;
            tracing::info!(path = %path.display(), "admin token created");
            Ok(token)
        }
        Err(err) => Err(format!("cannot read admin token file {}: {err}", path.display())),
    }
}
