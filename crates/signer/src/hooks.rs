//! The signing side's test hooks and crash points, compiled only with feature
//! `test-hooks`; without it [`SignerTestHooks`] has no fields and every hook does
//! nothing.

/// Every crash point of the signing side, in the order a key generation passes them
/// (armed like the store's, `MPC_TEST_CRASH_AT=POINT`).
pub const CRASH_POINTS: &[&str] = &[
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

/// Marks a crash point of the signing side (see [`CRASH_POINTS`]).
pub fn crash_point(point: &'static str) {
    mpc_store::crash_points::reached(point, "signer");
}
