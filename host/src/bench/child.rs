//! The benchmark's side of a child `weir run`: the peak memory it writes
//! to its report (`--report`), read back by the job cases.

/// Peak resident memory of this process (`VmHWM`), in KiB, where Linux tells it.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
