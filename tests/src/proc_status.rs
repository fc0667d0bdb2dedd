//! Readers of `/proc` for a running node: its status values and its open descriptors.

/// A value from `/proc/<pid>/status` (e.g. "Threads", "VmRSS"), as a number.
pub fn proc_status_value(pid: i32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .expect("status value")
}

/// Open file descriptors of `pid`, leaving out RocksDB table files: RocksDB keeps one
/// descriptor per SST file in its table cache, so their number follows the amount of
/// data, not the number of restarts.
pub fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("proc fd")
        .filter_map(Result::ok)
        .filter(|entry| {
            std::fs::read_link(entry.path()).map_or(true, |target| target.extension().is_none_or(|ext| ext != "sst"))
        })
        .count()
}
