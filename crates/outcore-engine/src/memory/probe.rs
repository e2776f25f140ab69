//! How much more memory this process may take: `/proc/meminfo`, the process's memory cgroup
//! (v1 or v2, every level up to the mount point) and `RLIMIT_AS` / `RLIMIT_MEMLOCK`.
//!
//! Every figure is "bytes this process can still add", and [`MemLimits::effective`] is the
//! smallest of them, naming its [`Source`]. A cgroup's usage includes page cache, some of
//! which the kernel reclaims before it OOM-kills anyone, so usage counts without the cgroup's
//! `inactive_file` (the "working set" figure that kubelet and cAdvisor use). Active file pages
//! are not subtracted: they may be this very model, and evicting them costs a re-read.
//!
//! The probe reads only text files under a root that tests replace with a fixture tree
//! (`tests/data/memory/*`), see [`MemLimits::probe_at`]. Which cgroup files exist and where
//! hierarchies are mounted comes from `/proc/self/cgroup` and `/proc/self/mountinfo`, with
//! the usual `/sys/fs/cgroup` layouts as the fallback when mountinfo is absent.

use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use super::{fmt_bytes, read_text, KeyValues, MemoryError};

/// cgroup v1 writes "no limit" as a huge page-rounded number (`PAGE_COUNTER_MAX * PAGE_SIZE`,
/// 0x7FFF_FFFF_FFFF_F000 on x86_64). Anything at or above 2^62 is treated as unlimited.
pub const V1_UNLIMITED: u64 = 1 << 62;

/// CAP_IPC_LOCK (capability bit 14) lets a process mlock past `RLIMIT_MEMLOCK`.
const CAP_IPC_LOCK: u32 = 14;

/// Which constraint a [`Figure`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `/proc/meminfo` `MemAvailable`: free memory plus what the kernel can reclaim.
    MemAvailable,
    /// cgroup v1 `memory.limit_in_bytes` minus usage.
    CgroupV1Limit,
    /// cgroup v2 `memory.max` minus usage (beyond it the OOM killer runs).
    CgroupV2Max,
    /// cgroup v2 `memory.high` minus usage (beyond it the cgroup is throttled and reclaimed).
    CgroupV2High,
    /// `RLIMIT_AS` minus the current virtual size. Note a mmapped model counts in full here.
    RlimitAs,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::MemAvailable => "MemAvailable",
            Source::CgroupV1Limit => "cgroup v1 limit",
            Source::CgroupV2Max => "cgroup v2 memory.max",
            Source::CgroupV2High => "cgroup v2 memory.high",
            Source::RlimitAs => "RLIMIT_AS",
        })
    }
}

/// One "bytes still available" figure and how it was computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Figure {
    pub source: Source,
    pub bytes: u64,
    /// The arithmetic behind `bytes`, for humans: `limit 1.0 GB - (usage 300.0 MB - inactive file 100.0 MB)`.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupVersion {
    V1,
    V2,
}

/// The memory files of one cgroup directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CgroupLevel {
    /// The directory read, as a path on this machine (under the probe root).
    pub dir: String,
    /// v1 `memory.limit_in_bytes` / v2 `memory.max`; `None` = unlimited.
    pub limit: Option<u64>,
    /// v2 `memory.high`; `None` = unlimited (and always `None` for v1).
    pub high: Option<u64>,
    /// v1 `memory.usage_in_bytes` / v2 `memory.current`.
    pub usage: u64,
    /// `memory.stat` `inactive_file` (v1: `total_inactive_file`): reclaimable page cache.
    pub inactive_file: u64,
    /// `memory.stat` v1 `total_cache` / v2 `file`: all page cache charged here.
    pub file_cache: u64,
}

impl CgroupLevel {
    /// Usage the kernel cannot simply drop: usage minus reclaimable page cache.
    pub fn working_set(&self) -> u64 {
        self.usage.saturating_sub(self.inactive_file)
    }
}

/// The memory cgroup this process belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CgroupMemory {
    pub version: CgroupVersion,
    /// The path from `/proc/self/cgroup`, e.g. `/user.slice/app.scope`.
    pub path: String,
    /// The process's own cgroup first, then each parent up to the mount point that has
    /// memory files.
    pub levels: Vec<CgroupLevel>,
}

/// What the machine, the cgroup and the rlimits leave for this process. All fields are
/// public so callers (and the planner's tests) can build synthetic limits by hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemLimits {
    pub mem_total: u64,
    /// `MemAvailable`, or `MemFree + Buffers + Cached` on kernels before 3.14.
    pub mem_available: u64,
    pub cgroup: Option<CgroupMemory>,
    /// Soft `RLIMIT_AS`; `None` = unlimited.
    pub rlimit_as: Option<u64>,
    /// Soft `RLIMIT_MEMLOCK`; `None` = unlimited.
    pub rlimit_memlock: Option<u64>,
    /// Current virtual size (`VmSize`), what `RLIMIT_AS` is compared with.
    pub vm_size: u64,
    /// The process holds CAP_IPC_LOCK, so `RLIMIT_MEMLOCK` does not bind.
    pub cap_ipc_lock: bool,
}

impl MemLimits {
    /// Limits of a machine with `available` bytes free and nothing else in the way.
    pub fn unconstrained(available: u64) -> Self {
        MemLimits {
            mem_total: available,
            mem_available: available,
            cgroup: None,
            rlimit_as: None,
            rlimit_memlock: None,
            vm_size: 0,
            cap_ipc_lock: false,
        }
    }

    /// Probes the calling process on this machine.
    pub fn probe() -> Result<Self, MemoryError> {
        Self::probe_at(Path::new("/"))
    }

    /// Probes with `root` standing in for `/`: reads `<root>/proc/meminfo`,
    /// `<root>/proc/self/{cgroup,mountinfo,limits,status}` and the cgroup files under the
    /// mount points found there (re-rooted under `root`). Only `proc/meminfo` is required.
    pub fn probe_at(root: &Path) -> Result<Self, MemoryError> {
        let meminfo = parse_meminfo(&read_text(&root.join("proc/meminfo"))?)?;
        let proc_self = root.join("proc/self");
        let (rlimit_as, rlimit_memlock) = match read_optional(&proc_self.join("limits"))? {
            Some(text) => (
                parse_limit(&text, "Max address space")?,
                parse_limit(&text, "Max locked memory")?,
            ),
            None => (None, None),
        };
        let (vm_size, cap_ipc_lock) = match read_optional(&proc_self.join("status"))? {
            Some(text) => parse_status_for_limits(&text)?,
            None => (0, false),
        };
        Ok(MemLimits {
            mem_total: meminfo.0,
            mem_available: meminfo.1,
            cgroup: probe_cgroup(root)?,
            rlimit_as,
            rlimit_memlock,
            vm_size,
            cap_ipc_lock,
        })
    }

    /// Every applicable "bytes still available" figure, `MemAvailable` first.
    pub fn figures(&self) -> Vec<Figure> {
        let mut out = vec![Figure {
            source: Source::MemAvailable,
            bytes: self.mem_available,
            detail: format!(
                "MemAvailable {} of MemTotal {}",
                fmt_bytes(self.mem_available),
                fmt_bytes(self.mem_total)
            ),
        }];
        if let Some(cg) = &self.cgroup {
            for level in &cg.levels {
                let used = format!(
                    "(usage {} - inactive file {})",
                    fmt_bytes(level.usage),
                    fmt_bytes(level.inactive_file)
                );
                let mut push = |source, bound: u64, name: &str| {
                    out.push(Figure {
                        source,
                        bytes: bound.saturating_sub(level.working_set()),
                        detail: format!("{}: {name} {} - {used}", level.dir, fmt_bytes(bound)),
                    })
                };
                match cg.version {
                    CgroupVersion::V1 => {
                        if let Some(l) = level.limit {
                            push(Source::CgroupV1Limit, l, "memory.limit_in_bytes");
                        }
                    }
                    CgroupVersion::V2 => {
                        if let Some(l) = level.limit {
                            push(Source::CgroupV2Max, l, "memory.max");
                        }
                        if let Some(h) = level.high {
                            push(Source::CgroupV2High, h, "memory.high");
                        }
                    }
                }
            }
        }
        if let Some(l) = self.rlimit_as {
            out.push(Figure {
                source: Source::RlimitAs,
                bytes: l.saturating_sub(self.vm_size),
                detail: format!(
                    "RLIMIT_AS {} - VmSize {} (a mmapped model counts in full)",
                    fmt_bytes(l),
                    fmt_bytes(self.vm_size)
                ),
            });
        }
        out
    }

    /// The binding figure: the smallest of [`figures`](Self::figures) (the first one on a tie).
    pub fn effective(&self) -> Figure {
        // figures() always holds MemAvailable; min_by_key keeps the first of equal minima.
        self.figures()
            .into_iter()
            .min_by_key(|f| f.bytes)
            .unwrap_or(Figure {
                source: Source::MemAvailable,
                bytes: self.mem_available,
                detail: String::new(),
            })
    }

    /// Whether `bytes` can be mlocked under `RLIMIT_MEMLOCK` (or CAP_IPC_LOCK).
    pub fn can_mlock(&self, bytes: u64) -> bool {
        match self.rlimit_memlock {
            _ if self.cap_ipc_lock => true,
            None => true,
            Some(limit) => bytes <= limit,
        }
    }
}

impl fmt::Display for MemLimits {
    /// One line per figure, the binding one marked with `*`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let eff = self.effective();
        writeln!(f, "available {} ({})", fmt_bytes(eff.bytes), eff.source)?;
        for fig in self.figures() {
            let mark = if fig == eff { '*' } else { ' ' };
            writeln!(
                f,
                " {mark} {:<22} {:>9}  {}",
                fig.source.to_string(),
                fmt_bytes(fig.bytes),
                fig.detail
            )?;
        }
        match (self.rlimit_memlock, self.cap_ipc_lock) {
            (_, true) => writeln!(f, "   mlock: unlimited (CAP_IPC_LOCK)"),
            (None, false) => writeln!(f, "   mlock: unlimited (RLIMIT_MEMLOCK)"),
            (Some(l), false) => writeln!(f, "   mlock: up to {} (RLIMIT_MEMLOCK)", fmt_bytes(l)),
        }
    }
}

/// `(MemTotal, MemAvailable)` from `/proc/meminfo`, in bytes.
pub fn parse_meminfo(text: &str) -> Result<(u64, u64), MemoryError> {
    let kv = KeyValues::parse("/proc/meminfo", text);
    let total = kv.required_bytes("MemTotal")?;
    let available = match kv.bytes("MemAvailable")? {
        Some(a) => a,
        None => kv
            .required_bytes("MemFree")?
            .saturating_add(kv.bytes("Buffers")?.unwrap_or(0))
            .saturating_add(kv.bytes("Cached")?.unwrap_or(0)),
    };
    Ok((total, available))
}

/// The soft limit of one `/proc/self/limits` row (`Max address space`, `Max locked memory`):
/// `None` when `unlimited` or when the row is absent.
pub fn parse_limit(text: &str, row: &'static str) -> Result<Option<u64>, MemoryError> {
    let Some(rest) = text.lines().find_map(|l| l.strip_prefix(row)) else {
        return Ok(None);
    };
    let soft = rest.split_whitespace().next().unwrap_or("");
    if soft == "unlimited" {
        return Ok(None);
    }
    soft.parse().map(Some).map_err(|_| MemoryError::BadValue {
        file: "/proc/self/limits",
        key: row.to_string(),
        value: soft.to_string(),
    })
}

/// `(VmSize, has CAP_IPC_LOCK)` from `/proc/self/status`.
fn parse_status_for_limits(text: &str) -> Result<(u64, bool), MemoryError> {
    let kv = KeyValues::parse("/proc/self/status", text);
    let vm_size = kv.bytes("VmSize")?.unwrap_or(0);
    let cap = match kv.raw("CapEff") {
        Some(hex) => {
            let bits = u64::from_str_radix(hex, 16).map_err(|_| MemoryError::BadValue {
                file: "/proc/self/status",
                key: "CapEff".into(),
                value: hex.into(),
            })?;
            bits & (1 << CAP_IPC_LOCK) != 0
        }
        None => false,
    };
    Ok((vm_size, cap))
}

/// One line of `/proc/self/cgroup`: `hierarchy-id:controllers:path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupEntry {
    pub hierarchy: u32,
    /// Comma-separated controllers; empty for the v2 unified line `0::/path`.
    pub controllers: String,
    pub path: String,
}

/// Parses `/proc/self/cgroup`; malformed lines are skipped (the kernel writes none).
pub fn parse_proc_cgroup(text: &str) -> Vec<CgroupEntry> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let hierarchy = it.next()?.parse().ok()?;
            Some(CgroupEntry {
                hierarchy,
                controllers: it.next()?.to_string(),
                path: it.next()?.to_string(),
            })
        })
        .collect()
}

/// A cgroup filesystem mount from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    pub version: CgroupVersion,
    /// Which directory of the hierarchy is mounted (field 4), `/` unless namespaced/bind-mounted.
    pub root: String,
    /// Where it is mounted (field 5), unescaped.
    pub mount_point: String,
}

/// The cgroup v1 `memory` mount and the cgroup2 mount listed in `/proc/self/mountinfo`.
pub fn parse_mountinfo(text: &str) -> (Option<CgroupMount>, Option<CgroupMount>) {
    let (mut v1, mut v2) = (None, None);
    for line in text.lines() {
        // id parent major:minor root mount-point options [optional...] - fstype source super-options
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (Some(root), Some(mp), Some(fstype)) = (left.get(3), left.get(4), right.first()) else {
            continue;
        };
        let mount = |version| CgroupMount {
            version,
            root: unescape_mount(root),
            mount_point: unescape_mount(mp),
        };
        match *fstype {
            "cgroup" if v1.is_none() => {
                let supers = right.get(2).copied().unwrap_or("");
                if supers.split(',').any(|o| o == "memory") {
                    v1 = Some(mount(CgroupVersion::V1));
                }
            }
            "cgroup2" if v2.is_none() => v2 = Some(mount(CgroupVersion::V2)),
            _ => {}
        }
    }
    (v1, v2)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads a file, treating "not there" and "not allowed" as absent: cgroup trees are often
/// partly hidden in containers, and a missing file must not fail the whole probe.
fn read_optional(path: &Path) -> Result<Option<String>, MemoryError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
            ) =>
        {
            Ok(None)
        }
        Err(source) => Err(MemoryError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A single-number cgroup file (`memory.max`, `memory.limit_in_bytes`, ...). `max` and the
/// v1 sentinel (>= 2^62) read as `Some(None)` = unlimited; an absent file as `None`.
fn read_cgroup_number(path: &Path) -> Result<Option<Option<u64>>, MemoryError> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    let t = text.trim();
    if t == "max" {
        return Ok(Some(None));
    }
    let n: u64 = t.parse().map_err(|_| MemoryError::BadValue {
        file: "cgroup memory file",
        key: path.display().to_string(),
        value: t.to_string(),
    })?;
    Ok(Some(if n >= V1_UNLIMITED { None } else { Some(n) }))
}

/// `key value` lines of a cgroup `memory.stat`.
fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// Re-roots an absolute path from the probed system under `root`.
fn under(root: &Path, abs: &str) -> PathBuf {
    let rel: PathBuf = Path::new(abs)
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    root.join(rel)
}

/// The process's cgroup directory inside a mount: its path relative to the mounted root,
/// or the mount point itself when that directory is not visible (namespaced views).
fn cgroup_dir(root: &Path, mount: &CgroupMount, path: &str) -> PathBuf {
    let mp = under(root, &mount.mount_point);
    let rel = Path::new(path)
        .strip_prefix(&mount.root)
        .unwrap_or(Path::new(path));
    let rel: PathBuf = rel
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    if rel.as_os_str().is_empty() {
        return mp;
    }
    let dir = mp.join(rel);
    if dir.is_dir() {
        dir
    } else {
        mp
    }
}

fn probe_cgroup(root: &Path) -> Result<Option<CgroupMemory>, MemoryError> {
    let Some(text) = read_optional(&root.join("proc/self/cgroup"))? else {
        return Ok(None);
    };
    let entries = parse_proc_cgroup(&text);
    let (m1, m2) = match read_optional(&root.join("proc/self/mountinfo"))? {
        Some(mi) => parse_mountinfo(&mi),
        None => default_mounts(root),
    };

    // The memory controller sits on exactly one hierarchy: v1 if /proc/self/cgroup names it there.
    if let (Some(e), Some(m)) = (
        entries
            .iter()
            .find(|e| e.controllers.split(',').any(|c| c == "memory")),
        &m1,
    ) {
        let levels = walk_levels(root, m, &e.path, CgroupVersion::V1)?;
        if !levels.is_empty() {
            return Ok(Some(CgroupMemory {
                version: CgroupVersion::V1,
                path: e.path.clone(),
                levels,
            }));
        }
    }
    if let (Some(e), Some(m)) = (
        entries
            .iter()
            .find(|e| e.hierarchy == 0 && e.controllers.is_empty()),
        &m2,
    ) {
        let levels = walk_levels(root, m, &e.path, CgroupVersion::V2)?;
        if !levels.is_empty() {
            return Ok(Some(CgroupMemory {
                version: CgroupVersion::V2,
                path: e.path.clone(),
                levels,
            }));
        }
    }
    Ok(None)
}

/// Without mountinfo: v1 memory at `/sys/fs/cgroup/memory`; v2 at `/sys/fs/cgroup` (unified
/// mode) or `/sys/fs/cgroup/unified` (hybrid mode).
fn default_mounts(root: &Path) -> (Option<CgroupMount>, Option<CgroupMount>) {
    let mount = |version, mp: &str| CgroupMount {
        version,
        root: "/".into(),
        mount_point: mp.into(),
    };
    let v1 = under(root, "/sys/fs/cgroup/memory")
        .is_dir()
        .then(|| mount(CgroupVersion::V1, "/sys/fs/cgroup/memory"));
    let v2 = if under(root, "/sys/fs/cgroup/cgroup.controllers").is_file() {
        Some(mount(CgroupVersion::V2, "/sys/fs/cgroup"))
    } else if under(root, "/sys/fs/cgroup/unified").is_dir() {
        Some(mount(CgroupVersion::V2, "/sys/fs/cgroup/unified"))
    } else {
        None
    };
    (v1, v2)
}

/// Reads the memory files of the process's cgroup and each parent up to the mount point,
/// keeping the levels that have any.
fn walk_levels(
    root: &Path,
    mount: &CgroupMount,
    path: &str,
    version: CgroupVersion,
) -> Result<Vec<CgroupLevel>, MemoryError> {
    let top = under(root, &mount.mount_point);
    let mut dir = cgroup_dir(root, mount, path);
    let mut levels = Vec::new();
    loop {
        if let Some(level) = read_level(&dir, version, levels.is_empty())? {
            levels.push(level);
        }
        if dir == top || !dir.starts_with(&top) {
            break;
        }
        match dir.parent() {
            Some(p) => dir = p.to_path_buf(),
            None => break,
        }
    }
    Ok(levels)
}

fn read_level(
    dir: &Path,
    version: CgroupVersion,
    leaf: bool,
) -> Result<Option<CgroupLevel>, MemoryError> {
    let (limit_file, usage_file) = match version {
        CgroupVersion::V1 => ("memory.limit_in_bytes", "memory.usage_in_bytes"),
        CgroupVersion::V2 => ("memory.max", "memory.current"),
    };
    let limit = read_cgroup_number(&dir.join(limit_file))?;
    let usage = read_cgroup_number(&dir.join(usage_file))?;
    let high = match version {
        CgroupVersion::V1 => None,
        CgroupVersion::V2 => read_cgroup_number(&dir.join("memory.high"))?,
    };
    if limit.is_none() && usage.is_none() && high.is_none() {
        return Ok(None);
    }
    let stat = read_optional(&dir.join("memory.stat"))?.unwrap_or_default();
    let (inactive_file, file_cache) = match version {
        CgroupVersion::V1 => (
            stat_value(&stat, "total_inactive_file").or_else(|| stat_value(&stat, "inactive_file")),
            stat_value(&stat, "total_cache").or_else(|| stat_value(&stat, "cache")),
        ),
        CgroupVersion::V2 => (
            stat_value(&stat, "inactive_file"),
            stat_value(&stat, "file"),
        ),
    };
    let mut limit = limit.flatten();
    // v1's leaf memory.stat carries the limit inherited from ancestors we may not see
    // (a namespaced /sys/fs/cgroup shows only our own subtree).
    if version == CgroupVersion::V1 && leaf {
        if let Some(h) =
            stat_value(&stat, "hierarchical_memory_limit").filter(|&h| h < V1_UNLIMITED)
        {
            limit = Some(limit.map_or(h, |l| l.min(h)));
        }
    }
    Ok(Some(CgroupLevel {
        dir: dir.display().to_string(),
        limit,
        high: high.flatten(),
        usage: usage.flatten().unwrap_or(0),
        inactive_file: inactive_file.unwrap_or(0),
        file_cache: file_cache.unwrap_or(0),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_available_and_fallback() {
        let t = "MemTotal:       24684084 kB\nMemFree:        23577788 kB\nMemAvailable:   24035416 kB\n";
        assert_eq!(
            parse_meminfo(t).unwrap(),
            (24684084 * 1024, 24035416 * 1024)
        );
        let old = "MemTotal: 100 kB\nMemFree: 10 kB\nBuffers: 1 kB\nCached: 20 kB\n";
        assert_eq!(parse_meminfo(old).unwrap(), (100 * 1024, 31 * 1024));
        assert!(parse_meminfo("MemFree: 1 kB\n").is_err());
    }

    #[test]
    fn limits_rows() {
        let t = "Limit                     Soft Limit           Hard Limit           Units     \n\
                 Max address space         4294967296           unlimited            bytes     \n\
                 Max locked memory         8388608              8388608              bytes     \n";
        assert_eq!(parse_limit(t, "Max address space").unwrap(), Some(4 << 30));
        assert_eq!(parse_limit(t, "Max locked memory").unwrap(), Some(8 << 20));
        assert_eq!(parse_limit(t, "Max file size").unwrap(), None);
        let bad = "Max locked memory         lots                 8388608              bytes\n";
        assert!(parse_limit(bad, "Max locked memory").is_err());
        let unl = "Max address space         unlimited            unlimited            bytes\n";
        assert_eq!(parse_limit(unl, "Max address space").unwrap(), None);
    }

    #[test]
    fn cap_ipc_lock_bit() {
        assert_eq!(
            parse_status_for_limits("VmSize: 4 kB\nCapEff:\t000001ffffffffff\n").unwrap(),
            (4096, true)
        );
        assert_eq!(
            parse_status_for_limits("CapEff:\t0000000000000000\n").unwrap(),
            (0, false)
        );
        assert_eq!(
            parse_status_for_limits("CapEff:\t0000000000004000\n").unwrap(),
            (0, true)
        );
        assert!(parse_status_for_limits("CapEff:\tzz\n").is_err());
    }

    #[test]
    fn proc_cgroup_lines() {
        let e = parse_proc_cgroup("9:name=systemd:/\n4:memory:/process_api/abc\n0::/\nbogus\n");
        assert_eq!(e.len(), 3);
        assert_eq!(e[1].controllers, "memory");
        assert_eq!(e[1].path, "/process_api/abc");
        assert_eq!(
            e[2],
            CgroupEntry {
                hierarchy: 0,
                controllers: String::new(),
                path: "/".into()
            }
        );
    }

    #[test]
    fn mountinfo_cgroup_mounts() {
        let t = "30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                 31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:5 - cgroup2 cgroup2 rw,nsdelegate\n\
                 35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw shared:9 - cgroup cgroup rw,cpu,cpuacct\n\
                 36 30 0:32 /docker/abc /sys/fs/cgroup/my\\040memory rw shared:10 - cgroup cgroup rw,memory\n";
        let (v1, v2) = parse_mountinfo(t);
        let v1 = v1.unwrap();
        assert_eq!(v1.root, "/docker/abc");
        assert_eq!(v1.mount_point, "/sys/fs/cgroup/my memory");
        assert_eq!(v2.unwrap().mount_point, "/sys/fs/cgroup/unified");
    }

    #[test]
    fn unescape() {
        assert_eq!(unescape_mount("a\\040b\\134c"), "a b\\c");
        assert_eq!(unescape_mount("trailing\\04"), "trailing\\04");
        assert_eq!(unescape_mount("\\777x"), "\\777x");
    }

    fn level(limit: Option<u64>, high: Option<u64>, usage: u64, inactive: u64) -> CgroupLevel {
        CgroupLevel {
            dir: "/cg".into(),
            limit,
            high,
            usage,
            inactive_file: inactive,
            file_cache: inactive,
        }
    }

    #[test]
    fn effective_picks_smallest_and_names_it() {
        let mut l = MemLimits::unconstrained(8_000_000_000);
        assert_eq!(l.effective().source, Source::MemAvailable);
        l.cgroup = Some(CgroupMemory {
            version: CgroupVersion::V2,
            path: "/a/b".into(),
            levels: vec![
                level(None, Some(3_000_000_000), 1_200_000_000, 200_000_000),
                level(Some(2_500_000_000), None, 1_500_000_000, 0),
            ],
        });
        let e = l.effective();
        // leaf: high 3.0 - (1.2 - 0.2) = 2.0 GB; parent: max 2.5 - 1.5 = 1.0 GB.
        assert_eq!((e.source, e.bytes), (Source::CgroupV2Max, 1_000_000_000));
        l.rlimit_as = Some(10_000_000_000);
        l.vm_size = 9_500_000_000;
        assert_eq!(l.effective().source, Source::RlimitAs);
        assert_eq!(l.effective().bytes, 500_000_000);
        assert_eq!(l.figures().len(), 4);
        // Usage over the limit reads as zero, not underflow.
        l.rlimit_as = None;
        l.cgroup.as_mut().unwrap().levels[1].usage = 9_000_000_000;
        assert_eq!(l.effective().bytes, 0);
        let text = l.to_string();
        assert!(
            text.starts_with("available 0 B (cgroup v2 memory.max)"),
            "{text}"
        );
    }

    #[test]
    fn v1_figure() {
        let mut l = MemLimits::unconstrained(8_000_000_000);
        l.cgroup = Some(CgroupMemory {
            version: CgroupVersion::V1,
            path: "/job".into(),
            levels: vec![level(Some(1_000_000_000), None, 300_000_000, 100_000_000)],
        });
        let e = l.effective();
        assert_eq!((e.source, e.bytes), (Source::CgroupV1Limit, 800_000_000));
        assert!(
            e.detail.contains("memory.limit_in_bytes 1.0 GB"),
            "{}",
            e.detail
        );
    }

    #[test]
    fn mlock_permission() {
        let mut l = MemLimits::unconstrained(1 << 30);
        assert!(l.can_mlock(1 << 40));
        l.rlimit_memlock = Some(8 << 20);
        assert!(l.can_mlock(8 << 20));
        assert!(!l.can_mlock(9 << 20));
        l.cap_ipc_lock = true;
        assert!(l.can_mlock(1 << 40));
    }
}
