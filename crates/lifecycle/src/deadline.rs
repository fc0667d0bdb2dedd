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

    /// True once the deadline has passed.
    pub fn is_passed(&self) -> bool {
        self.remaining().is_zero()
    }

    /// Time since the deadline was set.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}
