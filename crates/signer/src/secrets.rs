//! The encryption key of this node's secrets at rest (the key share now, presignatures
//! later): AES-256-GCM, each value sealed with a fresh random nonce and bound to what it
//! is by associated data, so a sealed value copied to another place does not open.
//!
//! Where the key comes from, in this order:
//! 1. `MPC_SECRETS_KEY` in the environment: 64 hex digits (for an orchestrator's secret
//!    store: the key then never touches the node's disk).
//! 2. `MPC_SECRETS_KEY_FILE` in the environment: the path of a file holding 64 hex
//!    digits (a Docker or Kubernetes secret, a systemd credential). Never created: a
//!    missing file is an error, since the key it names is the one the secrets need.
//!    Setting both variables is refused as ambiguous.
//! 3. `<home>/secrets-key`: 64 hex digits, mode 0600. Created at the first start, but
//!    only while no sealed secret exists in the home: a key made after a secret was
//!    sealed could never open it, and would hide that the real key is missing.

use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;

/// The environment variable that gives the secrets key.
pub const SECRETS_KEY_ENV: &str = "MPC_SECRETS_KEY";
/// The environment variable that names a file holding the secrets key.
pub const SECRETS_KEY_FILE_ENV: &str = "MPC_SECRETS_KEY_FILE";
/// The file in the home that holds the secrets key when the environment does not.
pub const SECRETS_KEY_FILE: &str = "secrets-key";
/// Bytes of an AES-GCM nonce, in front of every sealed value.
const NONCE_BYTES: usize = 12;

/// Why the secrets key cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretsKeyError {
    /// The environment variable or the file does not hold 64 hex digits.
    #[error("the secrets key from {source_name} is not 64 hex digits")]
    Malformed {
        /// `MPC_SECRETS_KEY` or the file's path.
        source_name: String,
    },
    /// Both environment variables are set: which key is meant cannot be told.
    #[error("both {SECRETS_KEY_ENV} and {SECRETS_KEY_FILE_ENV} are set; set only one")]
    Ambiguous,
    /// A sealed secret exists but no key does.
    #[error(
        "{secret} exists but there is no secrets key ({SECRETS_KEY_ENV} and {SECRETS_KEY_FILE_ENV} are unset and {} is missing); restore the key the secret was written with",
        file.display()
    )]
    Missing {
        /// The sealed secret found.
        secret: String,
        /// Where the key file was looked for.
        file: PathBuf,
    },
    /// The key file cannot be read or written.
    #[error("secrets key file {}: {source}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// What the environment says of the secrets key: its hex digits, or a file holding them.
#[derive(Debug, Default)]
struct KeySources {
    key: Option<String>,
    file: Option<PathBuf>,
}

impl KeySources {
    fn from_environment() -> KeySources {
        KeySources {
            key: std::env::var(SECRETS_KEY_ENV).ok(),
            file: std::env::var_os(SECRETS_KEY_FILE_ENV).filter(|path| !path.is_empty()).map(PathBuf::from),
        }
    }
}

/// A sealed value could not be opened: the key is not the one it was sealed with, the
/// value was moved from where it was sealed, or its bytes are damaged. AES-GCM cannot
/// tell these apart, and says nothing more on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot be decrypted (another secrets key, a value moved from its place, or damaged bytes)")]
pub struct Undecryptable;

/// The key that seals and opens this node's secrets.
pub struct SecretsKey {
    cipher: Aes256Gcm,
    source_name: String,
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsKey").field("source", &self.source_name).finish_non_exhaustive()
    }
}

impl SecretsKey {
    /// The key from the environment or the home's file; creates the file when neither
    /// exists and `sealed_secrets` (paths of sealed secrets in the home) are all absent.
    pub fn load_or_create(home: &Path, sealed_secrets: &[PathBuf]) -> Result<SecretsKey, SecretsKeyError> {
        Self::load_or_create_from(home, sealed_secrets, &KeySources::from_environment())
    }

    fn load_or_create_from(
        home: &Path,
        sealed_secrets: &[PathBuf],
        sources: &KeySources,
    ) -> Result<SecretsKey, SecretsKeyError> {
        if let Some(key) = Self::load_from(home, sources)? {
            return Ok(key);
        }
        let file = home.join(SECRETS_KEY_FILE);
        if let Some(secret) = sealed_secrets.iter().find(|path| path.exists()) {
            return Err(SecretsKeyError::Missing { secret: secret.display().to_string(), file });
        }
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let text = format!("{}\n", hex::encode(bytes));
        mpc_store::directories::write_file_durably(&file, text.as_bytes(), 0o600, || {})
            .map_err(|source| SecretsKeyError::Io { path: file.clone(), source })?;
        tracing::info!(path = %file.display(), "secrets key created");
        Ok(Self::from_bytes(&bytes, file.display().to_string()))
    }

    /// The key from the environment or the home's file, if either gives one; never
    /// creates anything (`mpc-node check`).
    pub fn load(home: &Path) -> Result<Option<SecretsKey>, SecretsKeyError> {
        Self::load_from(home, &KeySources::from_environment())
    }

    /// Like [`SecretsKey::load`], with the environment's two variables given.
    fn load_from(home: &Path, sources: &KeySources) -> Result<Option<SecretsKey>, SecretsKeyError> {
        match sources {
            KeySources { key: Some(_), file: Some(_) } => Err(SecretsKeyError::Ambiguous),
            KeySources { key: Some(text), file: None } => Self::from_hex(text, SECRETS_KEY_ENV).map(Some),
            KeySources { key: None, file: Some(path) } => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| SecretsKeyError::Io { path: path.clone(), source })?;
                Self::from_hex(&text, &path.display().to_string()).map(Some)
            }
            KeySources { key: None, file: None } => Self::load_home_file(home),
        }
    }

    fn load_home_file(home: &Path) -> Result<Option<SecretsKey>, SecretsKeyError> {
        let file = home.join(SECRETS_KEY_FILE);
        match std::fs::read_to_string(&file) {
            Ok(text) => Self::from_hex(&text, &file.display().to_string()).map(Some),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SecretsKeyError::Io { path: file, source }),
        }
    }

    fn from_hex(text: &str, source_name: &str) -> Result<SecretsKey, SecretsKeyError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes)
            .map_err(|_| SecretsKeyError::Malformed { source_name: source_name.to_owned() })?;
        Ok(Self::from_bytes(&bytes, source_name.to_owned()))
    }

    fn from_bytes(bytes: &[u8; 32], source_name: String) -> SecretsKey {
        SecretsKey { cipher: Aes256Gcm::new(bytes.into()), source_name }
    }

    /// A key of fixed bytes (tests).
    pub fn for_tests(byte: u8) -> SecretsKey {
        Self::from_bytes(&[byte; 32], "tests".into())
    }

    /// Where the key came from: `MPC_SECRETS_KEY` or the file's path.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// Seals `plaintext` bound to `associated` (what and where the value is): a fresh
    /// random nonce, then the ciphertext with its tag.
    pub fn seal(&self, associated: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(&nonce, Payload { msg: plaintext, aad: associated })
            .expect("AES-GCM seals any value shorter than 64 GiB");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        bytes
    }

    /// Opens what [`SecretsKey::seal`] sealed with the same `associated`.
    pub fn open(&self, associated: &[u8], sealed: &[u8]) -> Result<Vec<u8>, Undecryptable> {
        if sealed.len() < NONCE_BYTES {
            return Err(Undecryptable);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: associated })
            .map_err(|_| Undecryptable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_its_associated_data() {
        let key = SecretsKey::for_tests(1);
        let sealed = key.seal(b"key-share", b"secret bytes");
        assert_eq!(key.open(b"key-share", &sealed).unwrap(), b"secret bytes");
        assert!(!sealed.windows(6).any(|window| window == b"secret"), "no plaintext in the sealed bytes");
        assert_eq!(key.open(b"elsewhere", &sealed), Err(Undecryptable), "a value moved elsewhere does not open");
        assert_eq!(SecretsKey::for_tests(2).open(b"key-share", &sealed), Err(Undecryptable));
        let mut damaged = sealed.clone();
        damaged[20] ^= 1;
        assert_eq!(key.open(b"key-share", &damaged), Err(Undecryptable));
        assert_eq!(key.open(b"key-share", &sealed[..5]), Err(Undecryptable));
    }

    #[test]
    fn the_key_file_is_created_once_private_and_never_beside_a_sealed_secret() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let secret = home.path().join("key-share");
        let created = SecretsKey::load_or_create(home.path(), std::slice::from_ref(&secret)).unwrap();
        let file = home.path().join(SECRETS_KEY_FILE);
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        let sealed = created.seal(b"a", b"b");
        let loaded = SecretsKey::load_or_create(home.path(), std::slice::from_ref(&secret)).unwrap();
        assert_eq!(loaded.open(b"a", &sealed).unwrap(), b"b", "the same key the next time");

        std::fs::write(&secret, b"sealed").unwrap();
        std::fs::remove_file(&file).unwrap();
        let missing = SecretsKey::load_or_create(home.path(), std::slice::from_ref(&secret)).unwrap_err();
        assert!(matches!(missing, SecretsKeyError::Missing { .. }), "{missing}");
        assert!(!file.exists(), "no new key beside a secret sealed with the old one");

        std::fs::write(&file, "not hex\n").unwrap();
        let malformed = SecretsKey::load_or_create(home.path(), &[]).unwrap_err();
        assert!(matches!(malformed, SecretsKeyError::Malformed { .. }), "{malformed}");
    }

    #[test]
    fn a_key_file_named_by_the_environment_is_read_never_created_and_not_combined() {
        let home = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let path = outside.path().join("secrets-key");
        let from_file = KeySources { key: None, file: Some(path.clone()) };
        let missing = SecretsKey::load_or_create_from(home.path(), &[], &from_file).unwrap_err();
        assert!(matches!(missing, SecretsKeyError::Io { .. }), "{missing}");
        assert!(missing.to_string().contains(&path.display().to_string()), "{missing}");
        assert!(!path.exists() && !home.path().join(SECRETS_KEY_FILE).exists(), "nothing created");

        std::fs::write(&path, format!("{}\n", "ab".repeat(32))).unwrap();
        let key = SecretsKey::load_or_create_from(home.path(), &[], &from_file).unwrap();
        assert_eq!(key.source_name(), path.display().to_string());
        let same = SecretsKey::load_from(home.path(), &KeySources { key: Some("ab".repeat(32)), file: None });
        let sealed = key.seal(b"a", b"b");
        assert_eq!(same.unwrap().unwrap().open(b"a", &sealed).unwrap(), b"b", "the file's key");
        assert!(!home.path().join(SECRETS_KEY_FILE).exists(), "no key file in the home");

        std::fs::write(&path, "12\n").unwrap();
        let malformed = SecretsKey::load_from(home.path(), &from_file).unwrap_err();
        assert!(matches!(malformed, SecretsKeyError::Malformed { .. }), "{malformed}");
        let both = KeySources { key: Some("ab".repeat(32)), file: Some(path) };
        assert!(matches!(SecretsKey::load_from(home.path(), &both), Err(SecretsKeyError::Ambiguous)));
    }
}
