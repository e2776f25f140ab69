//! Memory awareness: what this process uses ([`stats`]), what the machine and its cgroup
//! allow ([`probe`]), how to load a model given both ([`plan`]), and quick bandwidth
//! probes that feed the planner's speed estimate ([`bandwidth`]).
//!
//! Everything here reads `/proc` and `/sys` as text (no libc, no `unsafe`); page
//! residency (`mincore`) lives in `outcore_format::mapping`. The parsers take `&str`
//! so they are unit-tested on fixture strings, and the file readers take a root path
//! so integration tests run against fake `/proc` + `/sys` trees in `tests/data/memory/`.
//!
//! Units: byte counts are `u64` bytes everywhere; human text uses decimal units
//! (1 MB = 10^6 bytes, 1 GB = 10^9 bytes) with one decimal.

pub mod bandwidth;
pub mod plan;
pub mod probe;
pub mod stats;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

pub use bandwidth::{measure_disk_read_bw, measure_mem_bw, DiskBandwidth};
pub use plan::{
    kv_cache_bytes, plan, predict_tokens_per_s, scratch_estimate, LoadStrategy, ModelSizes, Plan,
    PlanRequest, Strategy,
};
pub use probe::{CgroupLevel, CgroupMemory, CgroupVersion, Figure, MemLimits, Source};
pub use stats::{ProcessStats, Pss, StatsDelta};

/// Errors from reading or parsing `/proc` and `/sys` memory files.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("reading {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{file}: missing field `{key}`")]
    MissingField {
        file: &'static str,
        key: &'static str,
    },
    #[error("{file}: field `{key}` has unparsable value {value:?}")]
    BadValue {
        file: &'static str,
        key: String,
        value: String,
    },
    #[error("{file}: malformed: {what}")]
    Malformed {
        file: &'static str,
        what: &'static str,
    },
}

pub(crate) fn read_text(path: &Path) -> Result<String, MemoryError> {
    std::fs::read_to_string(path).map_err(|source| MemoryError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Like [`read_text`] but a missing file is `Ok(None)` (optional kernel features).
pub(crate) fn read_text_opt(path: &Path) -> Result<Option<String>, MemoryError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(MemoryError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// `Key: value [kB]` files (`/proc/meminfo`, `/proc/self/status`, `smaps_rollup`) as
/// (key, rest-of-line) pairs. Lines without a colon are skipped.
pub(crate) struct KeyValues<'a> {
    file: &'static str,
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> KeyValues<'a> {
    pub(crate) fn parse(file: &'static str, text: &'a str) -> Self {
        let pairs = text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        KeyValues { file, pairs }
    }

    pub(crate) fn raw(&self, key: &str) -> Option<&'a str> {
        self.pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// A size field, in bytes: `123 kB` -> 125952; a bare number is taken as is.
    pub(crate) fn bytes(&self, key: &str) -> Result<Option<u64>, MemoryError> {
        let Some(v) = self.raw(key) else {
            return Ok(None);
        };
        let bad = || MemoryError::BadValue {
            file: self.file,
            key: key.to_string(),
            value: v.to_string(),
        };
        let mut it = v.split_whitespace();
        let n: u64 = it.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let mult = match it.next() {
            None => 1,
            Some("kB") | Some("KB") | Some("kiB") => 1024,
            Some(_) => return Err(bad()),
        };
        n.checked_mul(mult).map(Some).ok_or_else(bad)
    }

    pub(crate) fn required_bytes(&self, key: &'static str) -> Result<u64, MemoryError> {
        self.bytes(key)?.ok_or(MemoryError::MissingField {
            file: self.file,
            key,
        })
    }
}

/// Bytes as decimal MB with one decimal: `12.3 MB`.
pub(crate) fn fmt_mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Bytes with a unit picked by size: `512 B`, `88.3 MB`, `1.8 GB` (decimal units).
pub fn fmt_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

/// Signed byte count in MB: `+12.3 MB` / `-0.5 MB`.
pub(crate) struct SignedMb(pub i64);

impl fmt::Display for SignedMb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:+.1} MB", self.0 as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_units() {
        let kv = KeyValues::parse("t", "A:  12 kB\nB:\t7\nC: x kB\nD: 1 MB\nnocolon\n");
        assert_eq!(kv.bytes("A").unwrap(), Some(12 * 1024));
        assert_eq!(kv.bytes("B").unwrap(), Some(7));
        assert!(matches!(kv.bytes("C"), Err(MemoryError::BadValue { .. })));
        assert!(matches!(kv.bytes("D"), Err(MemoryError::BadValue { .. })));
        assert_eq!(kv.bytes("E").unwrap(), None);
        assert!(matches!(
            kv.required_bytes("E"),
            Err(MemoryError::MissingField { key: "E", .. })
        ));
        let overflow = KeyValues::parse("t", "A: 18446744073709551615 kB");
        assert!(kv.bytes("A").is_ok());
        assert!(overflow.bytes("A").is_err());
    }

    /// Deterministic xorshift so the mutation test needs no extra dependency.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn parsers_never_panic_on_mutated_input() {
        let seeds = [
            "VmSize:\t 3060 kB\nVmHWM:\t 1712 kB\nVmRSS:\t 1712 kB\nRssAnon:\t 116 kB\nCapEff:\t00000000000040ff\n",
            "6269 (cat) R 6257 6257 5144 0 -1 4194304 101 0 3 0 0 0",
            "rchar: 6976\nread_bytes: 4096\n",
            "MemTotal: 100 kB\nMemFree: 10 kB\nMemAvailable: 50 kB\n",
            "4:memory:/a/b\n0::/c\n",
            "36 30 0:32 /docker/abc /sys/fs/cgroup/my\\040memory rw shared:10 - cgroup cgroup rw,memory\n",
            "Max address space         4294967296           unlimited            bytes\n",
        ];
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        for seed in seeds {
            for _ in 0..2000 {
                let mut b = seed.as_bytes().to_vec();
                for _ in 0..(xorshift(&mut rng) % 4 + 1) {
                    let r = xorshift(&mut rng);
                    let i = (r as usize >> 8) % (b.len() + 1);
                    match r % 4 {
                        0 if i < b.len() => b[i] = (r >> 40) as u8,
                        1 if i < b.len() => {
                            b.remove(i);
                        }
                        2 => b.insert(i, b"():\\ -0123456789\n"[(r >> 32) as usize % 17]),
                        _ => b.truncate(i),
                    }
                }
                let t = String::from_utf8_lossy(&b);
                let _ = stats::parse_status(&t);
                let _ = stats::parse_stat(&t);
                let _ = stats::parse_io(&t);
                let _ = stats::parse_smaps_rollup(&t);
                let _ = probe::parse_meminfo(&t);
                let _ = probe::parse_proc_cgroup(&t);
                let _ = probe::parse_mountinfo(&t);
                let _ = probe::parse_limit(&t, "Max address space");
            }
        }
    }

    #[test]
    fn human_units() {
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(88_300_000), "88.3 MB");
        assert_eq!(fmt_bytes(1_800_000_000), "1.8 GB");
        assert_eq!(fmt_mb(1_260_000), "1.3 MB");
        assert_eq!(SignedMb(-500_000).to_string(), "-0.5 MB");
        assert_eq!(SignedMb(12_300_000).to_string(), "+12.3 MB");
    }
}
