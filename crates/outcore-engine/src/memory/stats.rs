//! What this process uses right now: resident set split by kind, page faults and bytes read.
//!
//! Sources (all text, see proc(5)):
//! - `/proc/self/status`: `VmRSS`, `VmHWM` (peak RSS), `VmSize`, and since Linux 4.5 the split
//!   `RssAnon` / `RssFile` / `RssShmem`. A mmapped model shows up in `RssFile`; a `--no-mmap`
//!   copy or the KV cache in `RssAnon`.
//! - `/proc/self/stat`: `minflt` (field 10) and `majflt` (field 12). A major fault is a page that
//!   had to come from disk, so they count how much of a mapped model was not in the page cache.
//! - `/proc/self/io`: `rchar` (bytes asked of read(2)) and `read_bytes` (bytes the block layer
//!   fetched for us). Some containers deny this file, so it is optional.
//! - `/proc/self/smaps_rollup` (Linux 4.14+): `Pss` and, since 5.x, `Pss_File`: the file-backed
//!   share that counts pages shared with other processes mapping the same model only in part.

use std::fmt;
use std::path::Path;

use serde::Serialize;

use super::{fmt_mb, read_text, read_text_opt, KeyValues, MemoryError, SignedMb};

const STATUS: &str = "/proc/self/status";
const STAT: &str = "/proc/self/stat";
const IO: &str = "/proc/self/io";
const SMAPS_ROLLUP: &str = "/proc/self/smaps_rollup";

/// Memory figures from `/proc/self/status`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatusMem {
    pub vm_rss: u64,
    /// Peak resident set ("high water mark").
    pub vm_hwm: u64,
    /// Virtual size (what `RLIMIT_AS` counts).
    pub vm_size: u64,
    /// `None` on kernels before 4.5.
    pub rss_anon: Option<u64>,
    pub rss_file: Option<u64>,
    pub rss_shmem: Option<u64>,
}

/// Page-fault counters from `/proc/self/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Faults {
    pub minflt: u64,
    pub majflt: u64,
}

/// I/O counters from `/proc/self/io`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IoCounters {
    /// Bytes passed through read(2)-like calls (page cache hits included; mmap faults not).
    pub rchar: u64,
    /// Bytes the storage layer actually read for this process (mmap faults included).
    pub read_bytes: u64,
}

/// Proportional set size from `/proc/self/smaps_rollup`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Pss {
    pub pss: u64,
    /// `None` on kernels that predate the `Pss_File` line.
    pub pss_file: Option<u64>,
}

/// A snapshot of this process's memory use. Take one before and after a phase and
/// print [`ProcessStats::delta`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProcessStats {
    #[serde(flatten)]
    pub mem: StatusMem,
    #[serde(flatten)]
    pub faults: Faults,
    /// `None` where `/proc/self/io` is not readable.
    pub io: Option<IoCounters>,
}

/// The change between two snapshots: gauges as signed differences, counters as increments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatsDelta {
    pub vm_rss: i64,
    pub rss_anon: Option<i64>,
    pub rss_file: Option<i64>,
    /// The later snapshot's peak (a peak has no meaningful difference).
    pub vm_hwm: u64,
    pub minflt: u64,
    pub majflt: u64,
    pub rchar: Option<u64>,
    pub read_bytes: Option<u64>,
}

/// Parses the memory lines of `/proc/<pid>/status`.
pub fn parse_status(text: &str) -> Result<StatusMem, MemoryError> {
    let kv = KeyValues::parse(STATUS, text);
    Ok(StatusMem {
        vm_rss: kv.required_bytes("VmRSS")?,
        vm_hwm: kv.required_bytes("VmHWM")?,
        vm_size: kv.required_bytes("VmSize")?,
        rss_anon: kv.bytes("RssAnon")?,
        rss_file: kv.bytes("RssFile")?,
        rss_shmem: kv.bytes("RssShmem")?,
    })
}

/// Parses `minflt` and `majflt` from `/proc/<pid>/stat`. The command name (field 2) is in
/// parentheses and may itself hold spaces and `)`, so fields are counted after the LAST `)`.
pub fn parse_stat(text: &str) -> Result<Faults, MemoryError> {
    let close = text.rfind(')').ok_or(MemoryError::Malformed {
        file: STAT,
        what: "no `)` closing the command name",
    })?;
    // After the name: field 3 (state) is index 0, so field N is index N - 3.
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let field = |n: usize, key: &'static str| -> Result<u64, MemoryError> {
        let v = fields
            .get(n - 3)
            .ok_or(MemoryError::MissingField { file: STAT, key })?;
        v.parse().map_err(|_| MemoryError::BadValue {
            file: STAT,
            key: key.to_string(),
            value: v.to_string(),
        })
    };
    Ok(Faults {
        minflt: field(10, "minflt")?,
        majflt: field(12, "majflt")?,
    })
}

/// Parses `rchar` and `read_bytes` from `/proc/<pid>/io`.
pub fn parse_io(text: &str) -> Result<IoCounters, MemoryError> {
    let kv = KeyValues::parse(IO, text);
    Ok(IoCounters {
        rchar: kv.required_bytes("rchar")?,
        read_bytes: kv.required_bytes("read_bytes")?,
    })
}

/// Parses `Pss` and `Pss_File` from `/proc/<pid>/smaps_rollup`.
pub fn parse_smaps_rollup(text: &str) -> Result<Pss, MemoryError> {
    let kv = KeyValues::parse(SMAPS_ROLLUP, text);
    Ok(Pss {
        pss: kv.required_bytes("Pss")?,
        pss_file: kv.bytes("Pss_File")?,
    })
}

impl ProcessStats {
    /// Snapshot of the calling process.
    pub fn now() -> Result<Self, MemoryError> {
        Self::read_at(Path::new("/"))
    }

    /// Snapshot read from `<root>/proc/self/...` (tests point `root` at a fixture tree).
    pub fn read_at(root: &Path) -> Result<Self, MemoryError> {
        let proc_self = root.join("proc/self");
        let mem = parse_status(&read_text(&proc_self.join("status"))?)?;
        let faults = parse_stat(&read_text(&proc_self.join("stat"))?)?;
        // /proc/self/io needs ptrace-read access to ourselves, which some sandboxes deny.
        let io = match std::fs::read_to_string(proc_self.join("io")) {
            Ok(text) => Some(parse_io(&text)?),
            Err(_) => None,
        };
        Ok(ProcessStats { mem, faults, io })
    }

    /// What changed since `earlier`. Counters that went backwards (a different process,
    /// or a counter wrap) read as 0 rather than underflowing.
    pub fn delta(&self, earlier: &ProcessStats) -> StatsDelta {
        let gauge = |a: u64, b: u64| {
            (a as i128 - b as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64
        };
        let opt_gauge = |a: Option<u64>, b: Option<u64>| Some(gauge(a?, b?));
        let io = self.io.zip(earlier.io);
        StatsDelta {
            vm_rss: gauge(self.mem.vm_rss, earlier.mem.vm_rss),
            rss_anon: opt_gauge(self.mem.rss_anon, earlier.mem.rss_anon),
            rss_file: opt_gauge(self.mem.rss_file, earlier.mem.rss_file),
            vm_hwm: self.mem.vm_hwm,
            minflt: self.faults.minflt.saturating_sub(earlier.faults.minflt),
            majflt: self.faults.majflt.saturating_sub(earlier.faults.majflt),
            rchar: io.map(|(a, b)| a.rchar.saturating_sub(b.rchar)),
            read_bytes: io.map(|(a, b)| a.read_bytes.saturating_sub(b.read_bytes)),
        }
    }
}

/// PSS of the calling process, or `Ok(None)` where `/proc/self/smaps_rollup` does not exist
/// (kernels before 4.14).
pub fn pss_file() -> Result<Option<Pss>, MemoryError> {
    pss_file_at(Path::new("/"))
}

/// [`pss_file`] read from `<root>/proc/self/smaps_rollup`.
pub fn pss_file_at(root: &Path) -> Result<Option<Pss>, MemoryError> {
    read_text_opt(&root.join("proc/self/smaps_rollup"))?
        .map(|text| parse_smaps_rollup(&text))
        .transpose()
}

impl fmt::Display for ProcessStats {
    /// `rss 123.4 MB (anon 10.0 MB, file 113.4 MB, shmem 0.0 MB), peak 130.0 MB, faults 1234 minor / 5 major, read 12.3 MB (disk 4.5 MB)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.mem;
        write!(f, "rss {}", fmt_mb(m.vm_rss))?;
        if let (Some(a), Some(fl), Some(s)) = (m.rss_anon, m.rss_file, m.rss_shmem) {
            write!(
                f,
                " (anon {}, file {}, shmem {})",
                fmt_mb(a),
                fmt_mb(fl),
                fmt_mb(s)
            )?;
        }
        write!(
            f,
            ", peak {}, faults {} minor / {} major",
            fmt_mb(m.vm_hwm),
            self.faults.minflt,
            self.faults.majflt
        )?;
        if let Some(io) = self.io {
            write!(
                f,
                ", read {} (disk {})",
                fmt_mb(io.rchar),
                fmt_mb(io.read_bytes)
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for StatsDelta {
    /// `rss +100.0 MB (anon +1.0 MB, file +99.0 MB), peak 130.0 MB, faults +1234 minor / +5 major, read 12.3 MB (disk 4.5 MB)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rss {}", SignedMb(self.vm_rss))?;
        if let (Some(a), Some(fl)) = (self.rss_anon, self.rss_file) {
            write!(f, " (anon {}, file {})", SignedMb(a), SignedMb(fl))?;
        }
        write!(
            f,
            ", peak {}, faults +{} minor / +{} major",
            fmt_mb(self.vm_hwm),
            self.minflt,
            self.majflt
        )?;
        if let (Some(r), Some(d)) = (self.rchar, self.read_bytes) {
            write!(f, ", read {} (disk {})", fmt_mb(r), fmt_mb(d))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Trimmed from a real 6.x kernel's /proc/self/status.
    const STATUS_TEXT: &str = "Name:\tcat\nUmask:\t0022\nState:\tR (running)\nVmPeak:\t    3060 kB\n\
        VmSize:\t    3060 kB\nVmLck:\t       0 kB\nVmHWM:\t    1712 kB\nVmRSS:\t    1712 kB\n\
        RssAnon:\t     116 kB\nRssFile:\t    1596 kB\nRssShmem:\t       0 kB\nVmData:\t     360 kB\n\
        CapEff:\t000001ffffffffff\n";

    // A command name with spaces and a `)` inside, as `prctl(PR_SET_NAME)` allows.
    const STAT_TEXT: &str =
        "6269 (we ird) name) R 6257 6257 5144 0 -1 4194304 101 7 3 9 0 0 0 0 20 0 1 0 \
        167710 3133440 383 18446744073709551615";

    const IO_TEXT: &str =
        "rchar: 6976\nwchar: 0\nsyscr: 10\nsyscw: 0\nread_bytes: 4096\nwrite_bytes: 0\n\
        cancelled_write_bytes: 0\n";

    const ROLLUP_TEXT: &str =
        "55f02c690000-7fff4656d000 ---p 00000000 00:00 0                          [rollup]\n\
        Rss:                1616 kB\nPss:                 264 kB\nPss_Dirty:           112 kB\n\
        Pss_Anon:            112 kB\nPss_File:            152 kB\nPss_Shmem:             0 kB\n";

    #[test]
    fn status_fields() {
        let m = parse_status(STATUS_TEXT).unwrap();
        assert_eq!(m.vm_rss, 1712 * 1024);
        assert_eq!(m.vm_hwm, 1712 * 1024);
        assert_eq!(m.vm_size, 3060 * 1024);
        assert_eq!(m.rss_anon, Some(116 * 1024));
        assert_eq!(m.rss_file, Some(1596 * 1024));
        assert_eq!(m.rss_shmem, Some(0));
    }

    #[test]
    fn status_old_kernel_without_split() {
        let m = parse_status("VmSize: 10 kB\nVmHWM: 5 kB\nVmRSS: 4 kB\n").unwrap();
        assert_eq!((m.rss_anon, m.rss_file, m.rss_shmem), (None, None, None));
    }

    #[test]
    fn status_missing_rss_is_an_error() {
        let err = parse_status("VmSize: 10 kB\nVmHWM: 5 kB\n").unwrap_err();
        assert!(
            matches!(err, MemoryError::MissingField { key: "VmRSS", .. }),
            "{err}"
        );
        assert!(err.to_string().contains("VmRSS"));
    }

    #[test]
    fn stat_fields_after_last_paren() {
        let f = parse_stat(STAT_TEXT).unwrap();
        assert_eq!(
            f,
            Faults {
                minflt: 101,
                majflt: 3
            }
        );
    }

    #[test]
    fn stat_malformed() {
        assert!(matches!(
            parse_stat("123 cat R 1"),
            Err(MemoryError::Malformed { .. })
        ));
        assert!(matches!(
            parse_stat("1 (cat) R 1 2"),
            Err(MemoryError::MissingField { key: "minflt", .. })
        ));
        assert!(matches!(
            parse_stat("1 (cat) R 1 1 1 0 -1 0 x 0 0"),
            Err(MemoryError::BadValue { .. })
        ));
    }

    #[test]
    fn io_fields() {
        let io = parse_io(IO_TEXT).unwrap();
        assert_eq!(
            io,
            IoCounters {
                rchar: 6976,
                read_bytes: 4096
            }
        );
        assert!(parse_io("rchar: 1\n").is_err());
    }

    #[test]
    fn smaps_rollup_fields() {
        let p = parse_smaps_rollup(ROLLUP_TEXT).unwrap();
        assert_eq!(
            p,
            Pss {
                pss: 264 * 1024,
                pss_file: Some(152 * 1024)
            }
        );
        let old = parse_smaps_rollup("Rss: 8 kB\nPss: 4 kB\n").unwrap();
        assert_eq!(old.pss_file, None);
    }

    fn sample() -> ProcessStats {
        ProcessStats {
            mem: parse_status(STATUS_TEXT).unwrap(),
            faults: parse_stat(STAT_TEXT).unwrap(),
            io: Some(parse_io(IO_TEXT).unwrap()),
        }
    }

    #[test]
    fn delta_and_display() {
        let before = sample();
        let mut after = before;
        after.mem.vm_rss += 100_000_000;
        after.mem.rss_file = Some(before.mem.rss_file.unwrap() + 99_000_000);
        after.mem.rss_anon = Some(before.mem.rss_anon.unwrap() + 1_000_000);
        after.mem.vm_hwm = 130_000_000;
        after.faults.minflt += 1234;
        after.faults.majflt += 5;
        after.io = Some(IoCounters {
            rchar: 6976 + 12_300_000,
            read_bytes: 4096 + 4_500_000,
        });
        let d = after.delta(&before);
        assert_eq!(d.vm_rss, 100_000_000);
        assert_eq!(d.minflt, 1234);
        assert_eq!(d.majflt, 5);
        assert_eq!(
            d.to_string(),
            "rss +100.0 MB (anon +1.0 MB, file +99.0 MB), peak 130.0 MB, \
             faults +1234 minor / +5 major, read 12.3 MB (disk 4.5 MB)"
        );
        // Going backwards: gauges negative, counters clamp at zero.
        let back = before.delta(&after);
        assert_eq!(back.vm_rss, -100_000_000);
        assert_eq!(back.minflt, 0);
        assert_eq!(
            before.to_string(),
            "rss 1.8 MB (anon 0.1 MB, file 1.6 MB, shmem 0.0 MB), peak 1.8 MB, \
             faults 101 minor / 3 major, read 0.0 MB (disk 0.0 MB)"
        );
    }

    #[test]
    fn delta_without_io() {
        let mut a = sample();
        a.io = None;
        let d = sample().delta(&a);
        assert_eq!((d.rchar, d.read_bytes), (None, None));
        assert!(!d.to_string().contains("read"));
    }

    #[test]
    fn serializes_flat() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["vm_rss"], 1712 * 1024);
        assert_eq!(v["majflt"], 3);
        assert_eq!(v["io"]["rchar"], 6976);
    }
}
