//! What the signing side counts, for `/metrics` and the logs: read as a snapshot, never
//! pushed anywhere as it happens.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Latencies kept for the quantiles: the most recent signatures.
const LATENCY_WINDOW: usize = 1024;

/// Why a protocol failed, as `/metrics` labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FailureKind {
    /// A member did not answer within the bound.
    MemberTimeout,
    /// A member left the mesh (stopped, or its connection broke) before it answered.
    MemberLeft,
    /// A member refused (its chain does not have the request, or it is stopping).
    MemberRefused,
    /// Too few live participants for a signing set.
    NoSigningSet,
    /// The shares did not aggregate, or the signature did not verify.
    InvalidSignature,
    /// The `respond` transaction was not acknowledged.
    Submit,
    /// A peer sent a message that breaks the protocol (garbage, out of order, unknown
    /// session, a payload not on this node's chain).
    PeerProtocol,
    /// A key generation attempt failed.
    KeyGeneration,
}

impl FailureKind {
    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::MemberTimeout => "member_timeout",
            FailureKind::MemberLeft => "member_left",
            FailureKind::MemberRefused => "member_refused",
            FailureKind::NoSigningSet => "no_signing_set",
            FailureKind::InvalidSignature => "invalid_signature",
            FailureKind::Submit => "submit",
            FailureKind::PeerProtocol => "peer_protocol",
            FailureKind::KeyGeneration => "key_generation",
        }
    }
}

/// How a signature was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignPath {
    /// From a presignature: one message round.
    Presigned,
    /// Online: two message rounds.
    Online,
}

impl SignPath {
    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            SignPath::Presigned => "presigned",
            SignPath::Online => "online",
        }
    }
}

/// Signatures and latencies of one path.
#[derive(Debug, Default)]
struct PathStats {
    signatures: AtomicU64,
    latencies: Mutex<VecDeque<Duration>>,
}

impl PathStats {
    fn record(&self, latency: Duration) {
        self.signatures.fetch_add(1, Ordering::Relaxed);
        let mut latencies = self.latencies.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if latencies.len() == LATENCY_WINDOW {
            latencies.pop_front();
        }
        latencies.push_back(latency);
    }

    fn snapshot(&self, path: SignPath) -> PathSnapshot {
        let mut latencies: Vec<Duration> =
            self.latencies.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).iter().copied().collect();
        latencies.sort();
        let quantile = |q: f64| -> f64 {
            if latencies.is_empty() {
                return 0.0;
            }
            let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
            latencies[index].as_secs_f64()
        };
        PathSnapshot {
            path: path.name(),
            signatures: self.signatures.load(Ordering::Relaxed),
            latency_p50_s: quantile(0.5),
            latency_p99_s: quantile(0.99),
        }
    }
}

/// The signing side's counters.
#[derive(Debug, Default)]
pub struct SignerStats {
    presigned: PathStats,
    online: PathStats,
    failures: Mutex<BTreeMap<FailureKind, u64>>,
    ready_presignatures: AtomicU64,
    held_nonces: AtomicU64,
}

/// One path's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PathSnapshot {
    /// `presigned` or `online`.
    pub path: &'static str,
    /// Signatures this node led, aggregated and verified.
    pub signatures: u64,
    /// Sign latency (request indexed on this node → signature verified), seconds, at
    /// the 50th and 99th percentiles of the most recent signatures.
    pub latency_p50_s: f64,
    /// See `latency_p50_s`.
    pub latency_p99_s: f64,
}

/// A copy of the counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsSnapshot {
    /// Per path.
    pub paths: Vec<PathSnapshot>,
    /// Protocol failures by kind.
    pub failures: Vec<(&'static str, u64)>,
    /// Ready presignatures this node owns.
    pub ready_presignatures: u64,
    /// Nonces this node holds for other owners' presignatures.
    pub held_nonces: u64,
}

impl SignerStats {
    /// Counts a signature made on `path` that took `latency` from the request's
    /// indexing.
    pub fn signed(&self, path: SignPath, latency: Duration) {
        match path {
            SignPath::Presigned => self.presigned.record(latency),
            SignPath::Online => self.online.record(latency),
        }
    }

    /// Counts a failure of `kind`.
    pub fn failed(&self, kind: FailureKind) {
        *self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).entry(kind).or_default() += 1;
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        StatsSnapshot {
            paths: vec![self.presigned.snapshot(SignPath::Presigned), self.online.snapshot(SignPath::Online)],
            failures: failures.iter().map(|(kind, count)| (kind.name(), *count)).collect(),
            ready_presignatures: self.ready_presignatures.load(Ordering::Relaxed),
            held_nonces: self.held_nonces.load(Ordering::Relaxed),
        }
    }

    /// Records the asset counts (the pool driver does, at each of its ticks).
    pub fn set_assets(&self, ready_presignatures: usize, held_nonces: usize) {
        self.ready_presignatures.store(ready_presignatures as u64, Ordering::Relaxed);
        self.held_nonces.store(held_nonces as u64, Ordering::Relaxed);
    }
}
