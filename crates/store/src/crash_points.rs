//! Named crash points: the instants between two steps that create, rename or delete a
//! store directory.
//!
//! Why: a crash-consistency claim must cover every instant, and some windows (between
//! two renames) last microseconds, far too short for a kill sent at a random moment to
//! land in. With feature `test-hooks` a test names one point (read once at start, see
//! [`arm`]) and the process SIGKILLs itself the moment it gets there, so the test knows
//! the kill landed in exactly that window. Without the feature [`reached`] does nothing
//! and the hook does not exist.

/// Every crash point of this crate's operations, in the order they pass them. A crate
/// with crash points of its own lists them beside its code and hands that list to
/// [`arm`] with this one.
pub const STORE_POINTS: &[&str] = &[
    // Crash-atomic creation of a store (`<path>.creating`, then a rename).
    "create:staging_dir_made",
    "create:staging_store_open",
    "create:staging_version_committed",
    "create:staging_closed",
    "create:renamed_into_place",
    // Migration with its pre-migration checkpoint.
    "migrate:checkpoint_taken",
    "migrate:steps_done",
    // Crash-atomic deletion of a directory (`<path>.deleting`, then removal).
    "delete:renamed_aside",
    // Rollback to the pre-migration checkpoint.
    "rollback:store_set_aside",
    "rollback:checkpoint_restored",
];

#[cfg(feature = "test-hooks")]
static ARMED: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Arms a crash point for this process (test builds only); called once at start with
/// the value the test asked for: `POINT` (the first time any operation gets there) or
/// `POINT@SUBJECT` (only for a subject starting with SUBJECT, such as the `chain` store
/// or the `node.pre-migration` checkpoint), and every list of points the process has
/// (this crate's [`STORE_POINTS`] and its own). An unknown point is refused, so a typo
/// in a test cannot make it pass without ever crashing.
#[cfg(feature = "test-hooks")]
pub fn arm(spec: &str, known: &[&[&str]]) -> Result<(), String> {
    let point = spec.split_once('@').map_or(spec, |(point, _)| point);
    if !known.iter().any(|points| points.contains(&point)) {
        let known: Vec<&str> = known.iter().flat_map(|points| points.iter().copied()).collect();
        return Err(format!("unknown crash point {point:?}; known: {}", known.join(", ")));
    }
    ARMED.set(spec.to_owned()).map_err(|_| "a crash point is already armed".to_owned())
}

/// Marks that the process got to `point` while working on `subject` (a store name or a
/// directory name). In a test build with that point armed, logs it and SIGKILLs the
/// process; otherwise nothing.
#[inline]
pub fn reached(point: &'static str, subject: &str) {
    #[cfg(feature = "test-hooks")]
    if ARMED.get().is_some_and(|armed| match armed.split_once('@') {
        Some((armed_point, armed_subject)) => armed_point == point && subject.starts_with(armed_subject),
        None => armed == point,
    }) {
        tracing::warn!(point, subject, "test hook: crash point reached, killing the process");
        // SAFETY: kill(2) on our own pid; SIGKILL cannot be handled, like an OOM kill.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
    #[cfg(not(feature = "test-hooks"))]
    let _ = (point, subject);
}
