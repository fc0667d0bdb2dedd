//! Who leads a request and who signs with the leader: a deterministic order of the
//! participants per request, the same on every node, so that without any message they
//! agree on the first leader and on who takes over.
//!
//! The order sorts participants by SHA-256(request id ‖ account). Among the live ones
//! (this node and its connected peers), the first leads at once; the one at live rank k
//! takes over after k × [`TAKEOVER_AFTER`] if the request is still unanswered (its
//! leaders before it are down, slow, or lying). Two leaders may both sign a request:
//! each signature uses fresh nonces, so that is safe, and the contract accepts one.

use std::time::Duration;

use sha2::{Digest, Sha256};

/// Delay per live rank before a participant leads a request that is still unanswered.
pub const TAKEOVER_AFTER: Duration = Duration::from_secs(3);

/// `accounts` in the request's order.
pub fn request_order<'a>(request_id: &[u8; 32], accounts: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut ranked: Vec<([u8; 32], &str)> = accounts
        .into_iter()
        .map(|account| {
            let mut hasher = Sha256::new();
            hasher.update(request_id);
            hasher.update(account.as_bytes());
            (hasher.finalize().into(), account)
        })
        .collect();
    ranked.sort();
    ranked.into_iter().map(|(_, account)| account).collect()
}

/// When `me` leads the request, as a delay after it was indexed, among `live` (which
/// includes `me`); `None` if `me` is not live.
pub fn lead_after(request_id: &[u8; 32], live: &[&str], me: &str) -> Option<Duration> {
    let rank = request_order(request_id, live.iter().copied()).iter().position(|account| *account == me)?;
    Some(TAKEOVER_AFTER * rank as u32)
}

/// The members a leader asks: the first `count` live peers in the request's order,
/// skipping `excluded` (peers that failed this request before).
pub fn members<'a>(request_id: &[u8; 32], live_peers: &[&'a str], excluded: &[String], count: usize) -> Vec<&'a str> {
    request_order(request_id, live_peers.iter().copied())
        .into_iter()
        .filter(|peer| !excluded.iter().any(|excluded| excluded == peer))
        .take(count)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_agrees_on_the_order_and_leaders_are_spread_over_requests() {
        let accounts = ["node0.sandbox", "node1.sandbox", "node2.sandbox"];
        let mut first = std::collections::BTreeMap::new();
        for byte in 0..=255u8 {
            let id = [byte; 32];
            let order = request_order(&id, accounts);
            let reversed = request_order(&id, accounts.iter().rev().copied());
            assert_eq!(order, reversed, "the order does not depend on how the list is given");
            *first.entry(order[0]).or_insert(0) += 1;
            assert_eq!(lead_after(&id, &accounts, order[0]), Some(Duration::ZERO));
            assert_eq!(lead_after(&id, &accounts, order[2]), Some(TAKEOVER_AFTER * 2));
            let without_first: Vec<&str> = accounts.iter().copied().filter(|a| *a != order[0]).collect();
            assert_eq!(lead_after(&id, &without_first, order[1]), Some(Duration::ZERO), "a dead leader is skipped");
        }
        assert_eq!(first.len(), 3, "each participant leads some requests");
        assert!(first.values().all(|count| *count > 40), "{first:?}");
    }

    #[test]
    fn members_skip_the_excluded_and_stop_at_the_count() {
        let id = [7; 32];
        let peers = ["a", "b", "c"];
        let all = members(&id, &peers, &[], 3);
        assert_eq!(all.len(), 3);
        let without = members(&id, &peers, &[all[0].to_owned()], 1);
        assert_eq!(without, vec![all[1]]);
        assert!(members(&id, &peers, &[], 0).is_empty());
    }
}
