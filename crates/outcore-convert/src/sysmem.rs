//! The little the converter needs to know about memory: how much is available (RAM and cgroup
//! limit) to pick a mode, and this process's peak RSS for the summary.

use crate::pipeline::Mode;

fn kb_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Peak resident set size of this process (VmHWM), if /proc says.
pub fn peak_rss() -> Option<u64> {
    kb_field(&std::fs::read_to_string("/proc/self/status").ok()?, "VmHWM")
}

/// Current resident set size (VmRSS).
pub fn current_rss() -> Option<u64> {
    kb_field(&std::fs::read_to_string("/proc/self/status").ok()?, "VmRSS")
}

fn read_u64(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Memory this process may still use: MemAvailable, capped by the cgroup limit (v2 or v1) minus
/// the cgroup's current usage. Returns (bytes, where the bound came from).
pub fn available() -> Option<(u64, &'static str)> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let mut best = (kb_field(&meminfo, "MemAvailable")?, "MemAvailable");
    let cgroup = [
        (
            "/sys/fs/cgroup/memory.max",
            "/sys/fs/cgroup/memory.current",
            "cgroup v2 memory.max",
        ),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
            "cgroup v1 memory.limit_in_bytes",
        ),
    ];
    // Our own cgroup (v1) if we were put in one by path.
    let own_v1 = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, ctrl, path) = (parts.next()?, parts.next()?, parts.next()?);
                ctrl.split(',')
                    .any(|c| c == "memory")
                    .then(|| path.to_string())
            })
        });
    let mut candidates: Vec<(String, String, &'static str)> = cgroup
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), *c))
        .collect();
    if let Some(p) = own_v1.filter(|p| p != "/") {
        candidates.insert(
            0,
            (
                format!("/sys/fs/cgroup/memory{p}/memory.limit_in_bytes"),
                format!("/sys/fs/cgroup/memory{p}/memory.usage_in_bytes"),
                "cgroup v1 memory.limit_in_bytes",
            ),
        );
    }
    for (limit, usage, what) in candidates {
        if let Some(l) = read_u64(&limit) {
            // v1 reports "no limit" as a huge number.
            if l < (1 << 60) {
                let left = l.saturating_sub(read_u64(&usage).unwrap_or(0));
                if left < best.0 {
                    best = (left, what);
                }
            }
        }
    }
    Some(best)
}

/// `--mode auto`: standard when the largest tensor in f32 twice over (its source pages and its f32
/// rows, both of which may sit in the page cache and in flight) plus 512 MB of headroom fits in
/// what is available; low-memory otherwise. Returns the mode and why.
pub fn auto_mode(largest_tensor_f32: u64) -> (Mode, String) {
    let need = largest_tensor_f32.saturating_mul(2) + (512 << 20);
    match available() {
        Some((avail, what)) if avail >= need => (
            Mode::Standard,
            format!(
                "{what} {} >= {} (2 x largest tensor in f32 + 512 MB)",
                fmt_mb(avail),
                fmt_mb(need)
            ),
        ),
        Some((avail, what)) => (
            Mode::LowMemory,
            format!(
                "{what} {} < {} (2 x largest tensor in f32 + 512 MB)",
                fmt_mb(avail),
                fmt_mb(need)
            ),
        ),
        None => (
            Mode::LowMemory,
            "available memory unknown (no /proc/meminfo)".into(),
        ),
    }
}

pub fn fmt_mb(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kb_fields() {
        let t = "Name:\tx\nVmHWM:\t  1234 kB\nVmRSS:\t 10 kB\n";
        assert_eq!(kb_field(t, "VmHWM"), Some(1234 * 1024));
        assert_eq!(kb_field(t, "VmSwap"), None);
        assert!(peak_rss().is_some());
    }
}
