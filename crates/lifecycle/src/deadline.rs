//! A fixed point in time that every shutdown phase shares.

use std::time::{Duration, Instant};

/// The moment by which shutdown must be done. Phases take their bound from
/// [`Deadline::remaining`], so the whole sequence fits the operator's budget
/// (`--shutdown-timeout`) however the time is split between them.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    started: Instant,
    limit: Duration,
}

impl Deadline {
    /// A deadline `limit` from now.
    pub fn after(limit: Duration) -> Self {
        Deadline { started: Instant::now(), limit }
    }

    /// Time left, zero once passed.
    pub fn remaining(&self) -> Duration {
        self.limit.saturating_sub(self.started.elapsed())
    }

    /// Time since the deadline was set.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_time_shrinks_to_zero_and_never_below() {
        let deadline = Deadline::after(Duration::from_millis(20));
        assert!(deadline.remaining() <= Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(deadline.remaining(), Duration::ZERO);
        assert!(deadline.elapsed() >= Duration::from_millis(20));
    }
}
