//! Healing of format 2 disks, the state part (ARCHITECTURE.md, "Restart,
//! missing and empty dirs, healing"): the `tessera.heal` file that marks
//! a disk as healing, and the progress every core's healer publishes and
//! `GET /admin/v1/heal` reports (`heal` runs the passes).
//!
//! A disk is **healing** from the start that adopts it (an empty dir in
//! place of a lost disk) or finds it back after it missed writes (named
//! in `tessera.stale`), until one complete verifying pass over each of
//! its lanes found every record and block on it; only then is its
//! `tessera.heal` removed. While healing, it takes every write but is
//! never a lane's read primary and never counts toward the write quorum,
//! and its records are used only as block holders of the exact version
//! the primary's record names: a record it lacks is never "absent".
//!
//! FORMAT BOUNDARY: `tessera.heal` (text, written atomically):
//! ```text
//! tessera-heal 1
//! epoch <32 hex digits>
//! started <unix ms>
//! ```
//! The epoch names the heal: the lanes' cursors on the disk (`T_HEAL`)
//! belong to it, so a disk that misses writes again (named stale at a
//! later start) gets a new epoch and heals from the beginning.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::layout::{self, LayoutError};

pub const HEAL_FILE: &str = "tessera.heal";
/// Largest heal file read.
const MAX_HEAL_BYTES: u64 = 4096;
/// Keys below full redundancy kept per lane for the report.
pub const SAMPLE_PER_LANE: usize = 16;
/// Keys below full redundancy listed per disk in the report.
pub const SAMPLE_PER_DISK: usize = 100;

/// What `tessera.heal` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealMark {
    pub epoch: u128,
    pub started_unix_ms: u64,
}

impl HealMark {
    /// A new heal, starting now.
    pub fn fresh() -> Result<HealMark, LayoutError> {
        use ring::rand::SecureRandom;
        let mut b = [0u8; 16];
        ring::rand::SystemRandom::new()
            .fill(&mut b)
            .map_err(|_| LayoutError::Invalid("no system randomness for a heal epoch".into()))?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Ok(HealMark { epoch: u128::from_be_bytes(b), started_unix_ms: now.as_millis() as u64 })
    }

    pub fn to_text(&self) -> String {
        format!("tessera-heal 1\nepoch {:032x}\nstarted {}\n", self.epoch, self.started_unix_ms)
    }

    pub fn parse(text: &str) -> Option<HealMark> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if lines.next()? != "tessera-heal 1" {
            return None;
        }
        let epoch = u128::from_str_radix(lines.next()?.strip_prefix("epoch ")?, 16).ok()?;
        let started_unix_ms = lines.next()?.strip_prefix("started ")?.parse().ok()?;
        lines.next().is_none().then_some(HealMark { epoch, started_unix_ms })
    }
}

/// The heal mark of `dir`, if it is healing. A mark that does not parse
/// is refused (the disk's state would be unknown).
pub fn read_mark(dir: &Path) -> Result<Option<HealMark>, LayoutError> {
    use std::io::Read;
    let path = dir.join(HEAL_FILE);
    let io = |source| LayoutError::Io { path: path.display().to_string(), source };
    let f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mut text = String::new();
    f.take(MAX_HEAL_BYTES).read_to_string(&mut text).map_err(io)?;
    HealMark::parse(&text)
        .map(Some)
        .ok_or_else(|| LayoutError::Invalid(format!("{}: malformed heal file", path.display())))
}

pub fn write_mark(dir: &Path, mark: &HealMark) -> Result<(), LayoutError> {
    layout::write_atomic(&dir.join(HEAL_FILE), &mark.to_text())
}

/// Removes the mark (the disk is healed) and syncs the dir.
pub fn remove_mark(dir: &Path) -> std::io::Result<()> {
    std::fs::remove_file(dir.join(HEAL_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

/// The inventory of one lane: records the disk lacks (or holds in another
/// version) as far as the current pass knows.
#[derive(Clone, Debug, Default)]
pub struct Lacking {
    pub count: u64,
    pub sample: BTreeSet<String>,
}

/// One disk's heal, shared by every core.
#[derive(Debug, Default)]
pub struct HealProgress {
    /// Set while the disk heals (cleared once every lane is healed).
    pub healing: AtomicBool,
    pub mark: Option<HealMark>,
    /// Lanes the disk serves in.
    pub lanes_total: u32,
    /// Lanes whose verifying pass is complete in this epoch.
    pub lanes_healed: AtomicU32,
    /// Records (object versions, parts, uploads, registry records)
    /// rebuilt on the disk and verified, and their body bytes written.
    pub versions_rebuilt: AtomicU64,
    pub bytes_rebuilt: AtomicU64,
    /// Records read back and found whole (rebuilt or already there).
    pub records_verified: AtomicU64,
    /// Records the disk held that its lane no longer has (deleted while
    /// it was away), removed.
    pub records_removed: AtomicU64,
    /// Records whose rebuild or verification failed in this pass (the
    /// lane's pass then does not count, and is run again).
    pub failures: AtomicU64,
    pub healed_unix_ms: AtomicU64,
    /// By lane: what the current pass still has to rebuild.
    pub lacking: Mutex<BTreeMap<u32, Lacking>>,
}

impl HealProgress {
    pub fn new(mark: Option<HealMark>, lanes_total: u32) -> Self {
        HealProgress { healing: AtomicBool::new(mark.is_some()), mark, lanes_total, ..Default::default() }
    }

    pub fn is_healing(&self) -> bool {
        self.healing.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn with_lacking<R>(&self, f: impl FnOnce(&mut BTreeMap<u32, Lacking>) -> R) -> R {
        let mut g = match self.lacking.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut g)
    }

    /// The report of this disk's heal (see `admin_api::heal`).
    pub fn report(&self) -> Value {
        let (count, keys) = self.with_lacking(|l| {
            let count: u64 = l.values().map(|x| x.count).sum();
            let keys: Vec<String> = l.values().flat_map(|x| x.sample.iter().cloned()).take(SAMPLE_PER_DISK).collect();
            (count, keys)
        });
        let healed = self.lanes_healed.load(Relaxed);
        json!({
            "epoch": self.mark.map(|m| format!("{:032x}", m.epoch)),
            "started_unix_ms": self.mark.map(|m| m.started_unix_ms),
            "healed_unix_ms": Some(self.healed_unix_ms.load(Relaxed)).filter(|&t| t > 0),
            "lanes_total": self.lanes_total,
            "lanes_healed": healed,
            "versions_rebuilt": self.versions_rebuilt.load(Relaxed),
            "bytes_rebuilt": self.bytes_rebuilt.load(Relaxed),
            "records_verified": self.records_verified.load(Relaxed),
            "records_removed": self.records_removed.load(Relaxed),
            "failures": self.failures.load(Relaxed),
            "below_full_redundancy": {
                "count": count,
                "keys": keys,
                "keys_capped_at": SAMPLE_PER_DISK,
                // Lanes not yet scanned by this start's healer are unknown.
                "lanes_scanned": self.with_lacking(|l| l.len()),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heal_mark_round_trips_and_refuses_garbage() {
        let m = HealMark { epoch: 0x0123_4567_89ab_cdef_0011_2233_4455_6677, started_unix_ms: 1_700_000_000_000 };
        assert_eq!(HealMark::parse(&m.to_text()), Some(m));
        assert_eq!(HealMark::parse("tessera-heal 2\nepoch 00\nstarted 1\n"), None);
        assert_eq!(HealMark::parse("tessera-heal 1\nepoch zz\nstarted 1\n"), None);
        assert_eq!(HealMark::parse(&format!("{}extra 1\n", m.to_text())), None);
    }
}
