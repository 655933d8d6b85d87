//! Time as the agent reports it: Unix seconds, RFC 3339, and the wall-clock
//! time of the kernel's monotonic event stamps.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `unix` seconds as RFC 3339 (UTC, whole seconds).
pub fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    // SAFETY: clock_gettime writes into the struct we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid clock id and out pointer.
    unsafe { libc::clock_gettime(clock, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// Wall-clock time of a `bpf_ktime_get_coarse_ns` (CLOCK_MONOTONIC_COARSE) stamp.
pub fn wall_clock(monotonic_ns: u64) -> SystemTime {
    let age = clock_ns(libc::CLOCK_MONOTONIC_COARSE).saturating_sub(monotonic_ns);
    SystemTime::now() - Duration::from_nanos(age)
}
