//! Transparent huge pages (THP) off for the node's process.
//!
//! mimalloc asks for huge pages on its arenas (`madvise(MADV_HUGEPAGE)`),
//! so with THP in `madvise` or `always` mode every first touch of fresh
//! heap memory faults in a whole 2 MiB page, which the kernel zeroes in
//! the fault. A GET of a large object allocates its body buffers and the
//! hot cache keeps copies of what it reads, so the heap grows by hundreds
//! of MiB while the cache fills. Where the host backs guest memory lazily
//! (a VM whose memory is touched for the first time, or was handed back by
//! free-page reporting or a balloon), such a fault costs milliseconds: on
//! the 2-core VM of issue 17 a reactor spent 91% of its time in
//! `clear_page_erms` under `do_huge_pmd_anonymous_page`, and 1 MiB GETs
//! from disk ran at 40-60 req/s for the first 5-7 s of every run, until
//! the cache was full and its memory recycled (then ~1,000 req/s). With
//! 4 KiB pages the same growth costs a few ms in all. The node's heap is
//! mostly I/O buffers and the index, which gain little from fewer TLB
//! misses, so THP is off unless `TESSERA_THP=1`.

/// Environment variable that keeps transparent huge pages (`1`).
pub const THP_ENV: &str = "TESSERA_THP";

/// Turns THP off for this process and its children (PR_SET_THP_DISABLE;
/// pages already huge stay so), unless `TESSERA_THP=1`. Call it first in
/// `main`, before the heap grows. Returns whether THP is now off.
pub fn disable_unless_asked() -> std::io::Result<bool> {
    if std::env::var(THP_ENV).is_ok_and(|v| v == "1") {
        return Ok(false);
    }
    disable()?;
    Ok(true)
}

/// Turns THP off for this process (PR_SET_THP_DISABLE, which takes
/// precedence over `madvise(MADV_HUGEPAGE)`).
pub fn disable() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments; it only sets a flag of this
    // process's memory map.
    let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the kernel lets process `pid` use THP (`THP_enabled` of
/// /proc/PID/status, Linux 5.0 and later); None when it does not say.
pub fn enabled_for(pid: &str) -> Option<bool> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let v = status.lines().find_map(|l| l.strip_prefix("THP_enabled:"))?;
    Some(v.trim() == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disable_turns_thp_off_for_the_process() {
        disable().expect("prctl");
        assert_eq!(enabled_for("self"), Some(false), "THP_enabled in /proc/self/status");
    }
}
