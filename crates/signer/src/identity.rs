//! This node's P2P key: the Ed25519 key its peers pin it by (its TLS certificate carries
//! it) and its transactions are signed with. The network file lists its public half.
//!
//! Kept in `<home>/p2p-key` (64 hex digits, mode 0600), created at the first start
//! crash-atomically: a kill while it is written leaves no key or the whole key, never a
//! part of one that would make the node a stranger to its network.
//!
//! `MPC_P2P_KEY_FILE` in the environment names another file instead (a Docker or
//! Kubernetes secret, a systemd credential), for nodes whose identity is handed to them.
//! That file is only read, never created: the network file already lists its public key,
//! so a missing one is an error, not a reason to become someone else.

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;

/// The file in the home that holds the P2P key.
pub const P2P_KEY_FILE: &str = "p2p-key";
/// The environment variable that names the file holding the P2P key instead.
pub const P2P_KEY_FILE_ENV: &str = "MPC_P2P_KEY_FILE";

/// Why the P2P key cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The file cannot be read or written.
    #[error("P2P key file {}: {source}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The file does not hold a key.
    #[error("P2P key file {} does not hold 64 hex digits; restore it from a backup (its public key is listed in the network file)", path.display())]
    Malformed {
        /// The key file.
        path: PathBuf,
    },
}

/// The file `MPC_P2P_KEY_FILE` names, if it is set.
fn key_file_from_environment() -> Option<PathBuf> {
    std::env::var_os(P2P_KEY_FILE_ENV).filter(|path| !path.is_empty()).map(PathBuf::from)
}

/// This node's P2P key: the file `MPC_P2P_KEY_FILE` names (which must exist), or the
/// home's, created if it has none.
pub fn load_or_create_p2p_key(home: &Path) -> Result<SigningKey, IdentityError> {
    load_or_create_from(home, key_file_from_environment())
}

fn load_or_create_from(home: &Path, given: Option<PathBuf>) -> Result<SigningKey, IdentityError> {
    if let Some(path) = given {
        return read_key(&path)?.ok_or_else(|| IdentityError::Io {
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no such file (named by {P2P_KEY_FILE_ENV}; `mpc-node p2p-key --home DIR` makes one in DIR)"),
            ),
            path,
        });
    }
    let path = home.join(P2P_KEY_FILE);
    if let Some(key) = read_key(&path)? {
        return Ok(key);
    }
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let text = format!("{}\n", hex::encode(key.to_bytes()));
    mpc_store::directories::write_file_durably(&path, text.as_bytes(), 0o600, || {})
        .map_err(|source| IdentityError::Io { path: path.clone(), source })?;
    tracing::info!(
        path = %path.display(), public_key = %hex::encode(key.verifying_key().to_bytes()),
        "P2P key created"
    );
    Ok(key)
}

/// This node's P2P key (from `MPC_P2P_KEY_FILE` or the home), if it has one; never
/// creates it.
pub fn load_p2p_key(home: &Path) -> Result<Option<SigningKey>, IdentityError> {
    read_key(&key_file_from_environment().unwrap_or_else(|| home.join(P2P_KEY_FILE)))
}

fn read_key(path: &Path) -> Result<Option<SigningKey>, IdentityError> {
    let path = path.to_path_buf();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(IdentityError::Io { path, source }),
    };
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| IdentityError::Malformed { path })?;
    Ok(Some(SigningKey::from_bytes(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_created_once_private_and_read_back_the_same() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        assert!(load_p2p_key(home.path()).unwrap().is_none());
        let created = load_or_create_p2p_key(home.path()).unwrap();
        let path = home.path().join(P2P_KEY_FILE);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load_or_create_p2p_key(home.path()).unwrap().to_bytes(), created.to_bytes());
        std::fs::write(&path, "12\n").unwrap();
        assert!(matches!(load_or_create_p2p_key(home.path()), Err(IdentityError::Malformed { .. })));
    }

    #[test]
    fn a_key_file_named_by_the_environment_is_read_and_never_created() {
        let home = tempfile::tempdir().unwrap();
        let given = home.path().join("given-key");
        let missing = load_or_create_from(home.path(), Some(given.clone())).unwrap_err();
        assert!(missing.to_string().contains("given-key") && missing.to_string().contains(P2P_KEY_FILE_ENV));
        assert!(!given.exists() && !home.path().join(P2P_KEY_FILE).exists(), "nothing created");

        let made = load_or_create_p2p_key(home.path()).unwrap();
        std::fs::rename(home.path().join(P2P_KEY_FILE), &given).unwrap();
        let read = load_or_create_from(home.path(), Some(given)).unwrap();
        assert_eq!(read.to_bytes(), made.to_bytes());
        assert!(!home.path().join(P2P_KEY_FILE).exists(), "no key made in the home");
    }
}
