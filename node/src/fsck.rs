//! `tessera fsck DATA_DIR... [--repair]`: an offline check of a node's data
//! dirs. The node must be stopped (the dirs are locked as the server locks
//! them). Every shard is recovered as a start would recover it, every record
//! of every segment is read and verified, every checkpoint is loaded; then
//! the node-level structures are checked: the copies of the bucket registry
//! (one per data dir) must agree, and every object, version, upload and
//! part must belong to a registered bucket.
//!
//! Without `--repair` nothing on disk changes. With it, only what was never
//! acknowledged is dropped (a torn log tail, as a start would drop it) and
//! damaged checkpoints are moved aside; data is never deleted (orphans are
//! reported, not removed: they may be what an operator needs to recover).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use tessera_io::fsck::{check_shard, ShardReport};

use crate::buckets::BucketInfo;
use crate::layout;
use crate::meta::{T_BUCKETS, T_META_STAMPS, T_OBJECTS, T_PARTS, T_UPLOADS, T_VERSIONS};

/// Tables whose keys start with a bucket id.
const BUCKET_TABLES: [(u8, &str); 4] =
    [(T_OBJECTS, "objects"), (T_VERSIONS, "noncurrent versions"), (T_UPLOADS, "uploads"), (T_PARTS, "parts")];

/// The outcome of a check.
pub struct FsckReport {
    pub shards: Vec<ShardReport>,
    /// Node-level problems (registry copies, orphans).
    pub problems: Vec<String>,
    /// Node-level observations that are not problems.
    pub notes: Vec<String>,
    pub buckets: usize,
    pub objects: u64,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.shards.iter().all(|s| s.is_clean())
    }

    /// The human-readable report.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for s in &self.shards {
            let _ = writeln!(
                out,
                "shard {} ({}): {} segments, {} bytes of log, {} entries, {} checkpoints{}{}{}",
                s.shard,
                s.dir.display(),
                s.segments,
                s.segment_bytes,
                s.entries,
                s.checkpoints,
                if s.stats.torn_bytes > 0 { format!(", {} bytes of torn tail", s.stats.torn_bytes) } else { String::new() },
                if s.stats.stale_bytes > 0 { format!(", {} bytes of a reused file's older records after the log", s.stats.stale_bytes) } else { String::new() },
                if s.is_clean() { ": ok" } else { ": PROBLEMS" },
            );
            for p in &s.problems {
                let _ = writeln!(out, "  problem: {p}");
            }
            for r in &s.repairs {
                let _ = writeln!(out, "  repaired: {r}");
            }
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        for p in &self.problems {
            let _ = writeln!(out, "problem: {p}");
        }
        let bad = self.problems.len() + self.shards.iter().map(|s| s.problems.len()).sum::<usize>();
        let _ = writeln!(
            out,
            "{} shards, {} buckets, {} objects: {}",
            self.shards.len(),
            self.buckets,
            self.objects,
            if bad == 0 { "clean".to_string() } else { format!("{bad} problems") }
        );
        out
    }
}

/// Checks the node's data dirs. Errors are reasons the check could not run
/// (dirs missing, unformatted, in use); what it finds is in the report.
pub fn run(dirs: &[PathBuf], repair: bool) -> Result<FsckReport, String> {
    for d in dirs {
        if !d.is_dir() {
            return Err(format!("{} is not a directory", d.display()));
        }
        // Checked before locking, so that a dir that is not ours is left
        // exactly as it was (the lock would create a file in it).
        if !d.join(layout::FORMAT_FILE).exists() {
            return Err(format!("{} is not a formatted tessera data dir (no {})", d.display(), layout::FORMAT_FILE));
        }
    }
    if dirs.iter().any(|d| crate::sets::format_version_of(d) == Some(crate::sets::FORMAT_V2)) {
        return crate::fsck_sets::run(dirs, repair);
    }
    let _locks = layout::lock_data_dirs(dirs).map_err(|e| e.to_string())?;
    let layout = layout::open_existing(dirs).map_err(|e| e.to_string())?;
    let mut rt = runtime()?;
    let mut shards = Vec::new();
    for (id, dir) in layout.shard_dirs.iter().enumerate() {
        let report = rt
            .block_on(check_shard(dir, id as u32, repair))
            .map_err(|e| format!("shard {id} ({}): {e}", dir.display()))?;
        shards.push(report);
    }
    let registry: Vec<&ShardReport> = layout.meta_shards.iter().map(|&m| &shards[m as usize]).collect();
    let data: Vec<&ShardReport> = shards.iter().collect();
    let (problems, notes, buckets, objects) = node_level(&registry, &data);
    Ok(FsckReport { shards, problems, notes, buckets, objects })
}

/// The runtime the shard checks run on.
pub(crate) type CheckRuntime = crate::ring::Runtime;

pub(crate) fn runtime() -> Result<CheckRuntime, String> {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .map_err(|e| format!("cannot build runtime: {e}"))
}

/// The node-level checks: the registry copies (`registry`: the shards
/// holding one each) agree, and every record of `data` (each logical
/// shard once) belongs to a registered bucket. (problems, notes, buckets,
/// objects).
pub(crate) fn node_level(registry: &[&ShardReport], data: &[&ShardReport]) -> (Vec<String>, Vec<String>, usize, u64) {
    let mut problems = Vec::new();
    let mut notes = Vec::new();

    // The registry copies: one per data dir, in its first shard.
    let mut copies: Vec<(u32, BTreeMap<Vec<u8>, Vec<u8>>, BTreeMap<Vec<u8>, Vec<u8>>)> = Vec::new();
    for s in registry {
        let m = s.shard;
        let buckets: BTreeMap<_, _> = s.entries(T_BUCKETS).into_iter().collect();
        let stamps: BTreeMap<_, _> = s
            .entries(T_META_STAMPS)
            .into_iter()
            .filter(|(k, _)| k.first() == Some(&T_BUCKETS))
            .map(|(k, v)| (k[1..].to_vec(), v))
            .collect();
        copies.push((m, buckets, stamps));
    }
    let mut registry: BTreeMap<u64, String> = BTreeMap::new();
    let mut names: BTreeSet<Vec<u8>> = BTreeSet::new();
    for (shard, buckets, _) in &copies {
        for (name, summary) in buckets {
            names.insert(name.clone());
            match BucketInfo::decode_summary_only(summary) {
                Some(info) if info.name.as_bytes() == name.as_slice() => {
                    registry.insert(info.id, info.name);
                }
                _ => problems.push(format!(
                    "bucket record {:?} in shard {shard} cannot be decoded",
                    String::from_utf8_lossy(name)
                )),
            }
        }
    }
    // Copies that disagree are settled at the next start (the highest stamp
    // wins and lagging copies are rewritten): a note, unless a record has no
    // stamp anywhere to settle it.
    for name in &names {
        let views: Vec<(u32, Option<&Vec<u8>>, Option<&Vec<u8>>)> =
            copies.iter().map(|(s, b, st)| (*s, b.get(name), st.get(name))).collect();
        let first = views[0].1;
        if views.iter().all(|v| v.1 == first) {
            continue;
        }
        let lagging: Vec<String> = views.iter().filter(|v| v.1.is_none()).map(|v| v.0.to_string()).collect();
        let stamped = views.iter().any(|v| v.2.is_some());
        let text = format!(
            "bucket {:?}: registry copies differ{} (settled by stamp at the next start)",
            String::from_utf8_lossy(name),
            if lagging.is_empty() { String::new() } else { format!("; missing in shard(s) {}", lagging.join(", ")) }
        );
        if stamped {
            notes.push(text);
        } else {
            problems.push(format!("{text}, but no copy has a stamp"));
        }
    }

    // Orphans: records of buckets the registry does not know.
    let mut objects = 0u64;
    let mut orphans: BTreeMap<(u64, &str), u64> = BTreeMap::new();
    for s in data {
        for (table, what) in BUCKET_TABLES {
            for (prefix, n) in s.count_by_prefix(table, 8) {
                let id = match <[u8; 8]>::try_from(prefix.as_slice()) {
                    Ok(b) => u64::from_be_bytes(b),
                    Err(_) => {
                        problems.push(format!("shard {}: {n} {what} with a key too short for a bucket id", s.shard));
                        continue;
                    }
                };
                if registry.contains_key(&id) {
                    if table == T_OBJECTS {
                        objects += n;
                    }
                } else {
                    *orphans.entry((id, what)).or_insert(0) += n;
                }
            }
        }
    }
    for ((id, what), n) in orphans {
        problems.push(format!("{n} {what} belong to bucket id {id:#018x}, which no registry copy knows"));
    }
    (problems, notes, registry.len(), objects)
}
