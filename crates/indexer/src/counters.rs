//! Process-wide counters of indexed work, for the node's Prometheus counters.
//!
//! Why process-wide statics and not `IndexerStats`: a Prometheus counter must only go
//! up during a process's life, while each in-process restart starts a new indexer
//! generation with fresh stats.

use std::sync::atomic::{AtomicU64, Ordering};

static BLOCKS_INDEXED: AtomicU64 = AtomicU64::new(0);
static SIGN_REQUESTS_INDEXED: AtomicU64 = AtomicU64::new(0);

/// Counts committed blocks with their sign requests.
pub(crate) fn count_blocks(blocks: u64, sign_requests: u64) {
    BLOCKS_INDEXED.fetch_add(blocks, Ordering::Relaxed);
    SIGN_REQUESTS_INDEXED.fetch_add(sign_requests, Ordering::Relaxed);
}

/// Blocks committed by this process, over every indexer generation.
pub fn blocks_indexed() -> u64 {
    BLOCKS_INDEXED.load(Ordering::Relaxed)
}

/// Sign requests committed by this process, over every indexer generation.
pub fn sign_requests_indexed() -> u64 {
    SIGN_REQUESTS_INDEXED.load(Ordering::Relaxed)
}
