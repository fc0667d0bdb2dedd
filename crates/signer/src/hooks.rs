//! The signing side's test hooks and crash points, compiled only with feature
//! `test-hooks`; without it [`SignerTestHooks`] has no fields and every hook does
//! nothing.

/// The key generation's crash points, in the order it passes them (armed like the
/// store's, `MPC_TEST_CRASH_AT=POINT`).
pub const KEY_GENERATION_CRASH_POINTS: &[&str] = &[
    // A new attempt's number is durable; nothing of it was sent.
    "dkg:attempt_stored",
    // Round 1 went out to the connected peers.
    "dkg:round1_sent",
    // Round 2 went out.
    "dkg:round2_sent",
    // The new key share is written and synced in its staging file, not renamed yet.
    "dkg:share_staged",
    // The key share is in place; the vote is not submitted.
    "dkg:share_stored",
    // The vote is acknowledged by the chain host.
    "dkg:voted",
];

/// A crash point at every durable step of a presignature's life.
pub const PRESIGNATURE_CRASH_POINTS: &[&str] = &[
    // A block of ids is reserved (synced), none used yet.
    "presign:ids_reserved",
    // A member stored its nonces (synced), its commitments not sent.
    "presign:member_stored",
    // Every member confirmed; the owner has not stored the presignature.
    "presign:members_confirmed",
    // The owner stored the presignature (synced), after every member confirmed.
    "presign:owner_stored",
    // The owner deleted a presignature it is about to use (synced), nothing sent.
    "presign:owner_deleted",
    // A member deleted its nonces for a signature (synced), its share not sent.
    "presign:member_deleted",
    // A member deleted the orphans an owner's inventory named (synced).
    "presign:orphans_deleted",
];

/// Fault hooks of the signing side, read once at start.
#[derive(Debug, Clone, Default)]
pub struct SignerTestHooks {
    /// `MPC_TEST_LIE_AS_LEADER=1`: as leader, ask the members to sign other bytes than
    /// the request's (they must refuse).
    #[cfg(feature = "test-hooks")]
    pub lie_as_leader: bool,
}

impl SignerTestHooks {
    /// Reads the hooks from the environment (nothing without the feature).
    pub fn from_environment() -> SignerTestHooks {
        #[cfg(feature = "test-hooks")]
        return SignerTestHooks { lie_as_leader: std::env::var("MPC_TEST_LIE_AS_LEADER").is_ok_and(|v| v == "1") };
        #[cfg(not(feature = "test-hooks"))]
        SignerTestHooks::default()
    }

    /// The bytes a leader asks its members to sign for `payload`.
    pub fn payload_to_ask(&self, payload: &[u8]) -> Vec<u8> {
        #[cfg(feature = "test-hooks")]
        if self.lie_as_leader {
            tracing::warn!("test hook: asking the members to sign other bytes than the request's");
            let mut lie = payload.to_vec();
            lie.extend_from_slice(b" and pay the leader");
            return lie;
        }
        payload.to_vec()
    }
}

/// Appends the line `line` makes to the test journal (`MPC_TEST_JOURNAL=path`, feature `test-hooks`):
/// what the signing side did with its assets (ids reserved, presignatures stored,
/// every share sent with the id and request it used, the secret nonces it made, every
/// signature it aggregated with its path and latency), for the tests that check nothing
/// is used twice and no nonce is stored in clear, and for the signing benchmark. One
/// `write(2)` per line on a file opened for appending, after a `started` line: a SIGKILL
/// loses none that was written; a line it tears is the last of its process, and the
/// next process marks it with a `torn` line. Nothing without the feature.
pub fn journal(line: impl FnOnce() -> String) {
    #[cfg(feature = "test-hooks")]
    {
        use std::io::Write;
        static JOURNAL: std::sync::OnceLock<Option<std::sync::Mutex<std::fs::File>>> = std::sync::OnceLock::new();
        let file = JOURNAL.get_or_init(|| {
            let path = std::env::var_os("MPC_TEST_JOURNAL")?;
            // A predecessor killed in the middle of a write may have left a torn last
            // line: end it and say so, then mark where this process starts.
            let torn = std::fs::read(&path).ok().is_some_and(|bytes| bytes.last().is_some_and(|byte| *byte != b'\n'));
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).ok()?;
            let _ = file.write_all(if torn { b"\ntorn\nstarted\n" } else { b"started\n" });
            Some(std::sync::Mutex::new(file))
        });
        if let Some(file) = file {
            let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let _ = file.write_all(format!("{}\n", line()).as_bytes());
        }
    }
    #[cfg(not(feature = "test-hooks"))]
    let _ = line;
}

/// Marks a crash point of the signing side (see [`KEY_GENERATION_CRASH_POINTS`] and
/// [`PRESIGNATURE_CRASH_POINTS`]).
pub fn crash_point(point: &'static str) {
    mpc_store::crash_points::reached(point, "signer");
}
