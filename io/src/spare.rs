//! Retired segment files kept to start new segments in. A fresh segment
//! is a new file whose blocks are allocated as the log reaches them (or
//! ahead, by fallocate: `shard/prepare.rs`): every sync of its records
//! also commits their blocks' allocation or their change from unwritten
//! to written, a journal transaction per sync. A retired segment's file
//! has every block written already, so a segment started in it syncs
//! its records with a device flush alone. 1 MiB PUTs after a warm-up ran
//! 25-43% faster at 64 connections and 38-45% at 16 with two spares per
//! shard than with none (ARCHITECTURE, "Spare segment files").
//!
//! Compaction retires a segment (its retire op durable, `compact::retire`)
//! and, while the shard keeps fewer than `ShardOptions::spare_segments`
//! spares and the disk has room, renames the file `seg-N.log.spare`
//! instead of removing it. A roll renames a spare to the new segment's
//! name and writes its segment record at offset 0, over whatever was
//! there. Nothing is cleared: the file still holds the records of the
//! segments it served before, each naming its own segment and offset in
//! its header (under the shard's keyed checksum). Recovery takes a record
//! only where it names the segment being scanned at that offset, so an
//! old record is never read as a new one; past the new segment's last
//! record it sees them as the end of the log (counted as stale bytes,
//! apart from torn ones) and cuts the file there. A clean stop cuts the
//! active segment's file after its records, so the next start does not
//! scan them.
//!
//! Spares count as free space (a roll takes them before any new file),
//! but only this shard's rolls can take them: once free space above the
//! reserve, spares aside, falls under two segments, they are removed as
//! retired files are. At open, the spares found are kept (up to the
//! limit, with room on the disk; the rest go).

use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::format::{parse_segment_file_name, segment_file_name};
use crate::shard::Inner;
use crate::storage::{DiskFile, OpenMode};

/// What a spare segment file is called: its last segment's name and this.
pub(crate) const SPARE_SUFFIX: &str = ".spare";

/// Free space above the data reserve, in segments, below which a retired
/// file is removed rather than kept (and no spare is kept at open).
const SPARE_HEADROOM_SEGMENTS: u64 = 4;
/// Free space above the data reserve, spares aside, in segments, below
/// which the spares kept are removed: they hold space the disk's other
/// shards may need (a shard whose active segment has room takes none).
const SPARE_RELEASE_SEGMENTS: u64 = 2;

/// A retired segment file kept for a new segment.
#[derive(Debug)]
pub(crate) struct Spare {
    pub path: PathBuf,
    pub len: u64,
}

/// The spare file name of retired segment `n`.
pub(crate) fn spare_file_name(n: u32) -> String {
    format!("{}{SPARE_SUFFIX}", segment_file_name(n))
}

/// The segment a spare file served last, if `name` is one.
pub(crate) fn parse_spare_file_name(name: &str) -> Option<u32> {
    name.strip_suffix(SPARE_SUFFIX).and_then(parse_segment_file_name)
}

impl Inner {
    /// Bytes the spares hold.
    pub(crate) fn spare_bytes(&self) -> u64 {
        self.spares.borrow().iter().map(|s| s.len).sum()
    }

    /// Whether a retired file of `len` bytes is worth keeping as a spare:
    /// room for one more, at least half a segment long (a shorter one
    /// would soon be extended into fresh blocks anyway), and room on the
    /// disk beyond the reserve without it.
    fn wants_spare(&self, len: u64) -> bool {
        let segment = self.opts.segment_size_bytes;
        let real_free = self.free_estimate().saturating_sub(self.spare_bytes());
        self.spares.borrow().len() < self.opts.spare_segments
            && len >= segment / 2
            && real_free >= self.opts.data_reserve_bytes.saturating_add(segment.saturating_mul(SPARE_HEADROOM_SEGMENTS))
    }

    /// Keeps retired segment `n`'s file (at `path`, `len` bytes) as a spare
    /// if one is wanted: renamed; the caller syncs the directory. False
    /// when not kept (the caller removes it).
    pub(crate) async fn keep_as_spare(&self, n: u32, path: &Path, len: u64) -> bool {
        if !self.wants_spare(len) {
            return false;
        }
        let to = self.dir.join(spare_file_name(n));
        match self.backend.rename(path, &to).await {
            Ok(()) => {
                self.spares.borrow_mut().push(Spare { path: to, len });
                true
            }
            Err(e) => {
                tracing::debug!(shard = self.id, segment = n, error = %e, "cannot keep a retired segment file as a spare; removing it");
                false
            }
        }
    }

    /// A spare renamed to `path` (the new segment's name, replacing any
    /// leftover there) and opened, with its length; None without one (or
    /// when the rename or open fails: that spare is dropped from the list,
    /// and its file, wherever it is, goes at the next start).
    ///
    /// The rename is durable before the new segment's first record is
    /// written: a crash could otherwise undo it after records went in,
    /// leaving the file under its spare name holding records of segment
    /// N, and a start whose log ends before N (that segment's directory
    /// entry never durable) would number its first segment N again and
    /// take that spare for it: the lost run's unacknowledged commits would
    /// then pass for the new segment's own (the simulator, seed 9152).
    /// Durable, the rename leaves any record of N in a file named for N,
    /// which recovery scans as the log it is.
    pub(crate) async fn take_spare(&self, path: &Path) -> Option<(Rc<DiskFile>, u64)> {
        let spare = self.spares.borrow_mut().pop()?;
        let opened = async {
            self.backend.rename(&spare.path, path).await?;
            self.backend.open_dir(&self.dir).await?.sync_all().await?;
            let f = self.backend.open(path, OpenMode::Existing, &self.direct, &self.direct_warned, self.opts.dsync).await?;
            let len = f.len().await?;
            Ok::<_, std::io::Error>((Rc::new(f), len))
        };
        match opened.await {
            Ok(x) => Some(x),
            Err(e) => {
                tracing::warn!(shard = self.id, spare = %spare.path.display(), error = %e, "cannot start a segment in a spare file; creating one");
                None
            }
        }
    }

    /// Removes the spares (cut down and unlinked by `reap`, as retired
    /// files are) once free space above the reserve, spares aside, is
    /// short (`SPARE_RELEASE_SEGMENTS`). Called after each free-space check.
    pub(crate) async fn release_spares_if_short(self: &Rc<Self>) {
        if self.spares.borrow().is_empty() {
            return;
        }
        let real_free = self.free_estimate().saturating_sub(self.spare_bytes());
        let wanted = self.opts.data_reserve_bytes.saturating_add(self.opts.segment_size_bytes.saturating_mul(SPARE_RELEASE_SEGMENTS));
        if real_free >= wanted {
            return;
        }
        let spares = std::mem::take(&mut *self.spares.borrow_mut());
        self.prepared.borrow_mut().stats.spares_released += spares.len() as u64;
        tracing::info!(shard = self.id, spares = spares.len(), free = real_free, "free space is short: removing the spare segment files");
        for s in spares {
            let trash = s.path.with_extension(crate::storage::TRASH_SUFFIX.trim_start_matches('.'));
            match self.backend.trash_as(&s.path, &trash).await {
                Ok(Some(t)) => crate::reap::queue(self, t),
                Ok(None) => {}
                Err(e) => tracing::warn!(shard = self.id, spare = %s.path.display(), error = %e, "cannot remove a spare segment file; the next start does"),
            }
        }
    }

    /// At open: keeps the spare files found (newest first, up to the
    /// limit, while the disk has room) and removes the rest.
    pub(crate) async fn load_spares(&self) -> Result<(), crate::error::IoError> {
        let mut found: Vec<u32> = self.backend.list(&self.dir).await?.iter().filter_map(|n| parse_spare_file_name(n)).collect();
        found.sort_unstable_by(|a, b| b.cmp(a));
        // A spare holds records of its segment and older ones only, so a
        // new segment numbered above it never takes one for its own. One
        // numbered at or above the log's last segment cannot have come
        // from this log as it is: removed.
        let last = self.log.borrow().last_segment();
        for n in found {
            let path = self.dir.join(spare_file_name(n));
            if n >= last {
                self.backend.remove(&path).await?;
                continue;
            }
            let len = match self.backend.open(&path, OpenMode::Existing, &self.direct, &self.direct_warned, false).await {
                Ok(f) => f.len().await.unwrap_or(0),
                Err(_) => 0,
            };
            if self.wants_spare(len) {
                self.spares.borrow_mut().push(Spare { path, len });
            } else {
                self.backend.remove(&path).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_names_round_trip_and_are_not_segments() {
        assert_eq!(spare_file_name(12), "seg-00000012.log.spare");
        assert_eq!(parse_spare_file_name("seg-00000012.log.spare"), Some(12));
        assert_eq!(parse_segment_file_name("seg-00000012.log.spare"), None);
        assert_eq!(parse_spare_file_name("seg-00000012.log"), None);
        assert_eq!(parse_spare_file_name("seg-00000012.log.trash"), None);
        assert_eq!(parse_spare_file_name("notes.spare"), None);
    }

    /// Once free space above the reserve, spares aside, falls under two
    /// segments, the spares go the way retired files go (renamed
    /// `seg-N.log.trash`, cut down and unlinked), and the next roll
    /// creates a file.
    #[test]
    fn spares_are_removed_when_space_runs_short() {
        const SEG: u64 = 1 << 20;
        let dir = tempfile::tempdir().unwrap();
        let opts = crate::ShardOptions { segment_size_bytes: SEG, background: false, data_reserve_bytes: 0, ..Default::default() };
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build().unwrap().block_on(async {
            let s = crate::Shard::open(dir.path(), 7, opts).await.unwrap();
            let body = vec![7u8; 300 << 10];
            let mut i = 0;
            while s.stats().active_segment < 3 {
                let mut d = crate::DataBuf::new(body.len());
                d.extend_from_slice(&body);
                let e = s.write_data(d).await.unwrap();
                s.commit(vec![crate::Mutation::Put { table: 0, key: b"k".to_vec(), summary: vec![], meta: vec![], body: crate::Body::Extents(vec![e]) }]).await.unwrap();
                i += 1;
                assert!(i < 100);
            }
            s.compact_once().await.unwrap();
            let inner = &s.inner;
            assert_eq!(inner.spares.borrow().len(), 1, "{:?}", s.stats());
            let spare = inner.spares.borrow()[0].path.clone();
            assert!(spare.exists());
            // Plenty of room: kept.
            inner.set_free_bytes(100 * SEG);
            inner.release_spares_if_short().await;
            assert_eq!(inner.spares.borrow().len(), 1);
            // Under two segments above the reserve (the spare aside): removed.
            inner.set_free_bytes(SEG + SEG / 2);
            inner.release_spares_if_short().await;
            assert_eq!((inner.spares.borrow().len(), s.stats().prepare.spares_released), (0, 1));
            assert!(!spare.exists());
            crate::reap::reap_now(inner).await;
            let left: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
            assert!(!left.iter().any(|n| n.ends_with(".trash") || n.ends_with(".spare")), "{left:?}");
        });
    }
}
