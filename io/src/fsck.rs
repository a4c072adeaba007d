//! Offline check of a shard (`tessera fsck`): recovery as an open does it
//! (newest good checkpoint, then the log after it), every record of every
//! segment read and verified, every checkpoint loaded and verified. Without `repair` nothing on disk changes. With it, only what
//! was never acknowledged is dropped (the torn tail, as an open would) and
//! damaged checkpoints are moved aside (`.quarantine`), never deleted.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::checkpoint;
use crate::error::IoError;
use crate::format::{ShardFile, SHARD_FILE};
use crate::index::Index;
use crate::recovery::{self, RecoverOpts, RecoveryStats};
use crate::storage::Backend;

/// What the check found in one shard.
pub struct ShardReport {
    pub shard: u32,
    pub dir: PathBuf,
    pub stats: RecoveryStats,
    pub segments: u32,
    pub segment_bytes: u64,
    pub entries: u64,
    pub checkpoints: u32,
    /// Records failing verification, by (segment, offset, what).
    pub record_errors: Vec<(u32, u64, String)>,
    /// Everything wrong, as sentences.
    pub problems: Vec<String>,
    /// What `repair` changed.
    pub repairs: Vec<String>,
    index: Index,
}

impl ShardReport {
    /// Whether anything is wrong (a torn tail alone is not: it was never acknowledged).
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// Live entries of `table` counted by the first `prefix_len` bytes of
    /// their keys (e.g. objects by bucket id).
    pub fn count_by_prefix(&self, table: u8, prefix_len: usize) -> BTreeMap<Vec<u8>, u64> {
        let mut out = BTreeMap::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let (page, last) = self.index.scan(table, after.as_deref(), 4096, |_, _| true);
            for e in page {
                let p = e.key[..e.key.len().min(prefix_len)].to_vec();
                *out.entry(p).or_insert(0) += 1;
            }
            match last {
                Some(l) => after = Some(l),
                None => return out,
            }
        }
    }

    /// Live entries of `table`: (key, summary).
    pub fn entries(&self, table: u8) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let (page, last) = self.index.scan(table, after.as_deref(), 4096, |_, _| true);
            out.extend(page.into_iter().map(|e| (e.key, e.summary)));
            match last {
                Some(l) => after = Some(l),
                None => return out,
            }
        }
    }
}

/// Checks the shard in `dir` (id `id`). Must run on a monoio runtime.
pub async fn check_shard(dir: &Path, id: u32, repair: bool) -> Result<ShardReport, IoError> {
    let backend = Backend::for_current_runtime(id)?;
    let mut problems = Vec::new();
    let mut repairs = Vec::new();
    let shard_file = backend
        .read_small(&dir.join(SHARD_FILE))
        .await?
        .ok_or_else(|| IoError::Format(format!("{}: no SHARD file", dir.display())))?;
    let sf = ShardFile::decode(&shard_file).map_err(|w| IoError::Format(format!("{}: {w}", dir.display())))?;
    if sf.shard != id {
        return Err(IoError::Format(format!("{}: holds shard {}, expected {id}", dir.display(), sf.shard)));
    }
    let direct = Cell::new(false);
    let warned = Cell::new(true);
    let opts = RecoverOpts {
        repair,
        use_checkpoint: true,
        dsync: false,
    };
    let rec = recovery::recover(&backend, dir, id, &sf.key, opts, &direct, &warned).await?;
    problems.extend(rec.problems.iter().cloned());
    if repair && rec.stats.torn_bytes > 0 {
        repairs.push(format!("cut {} bytes of torn tail (never acknowledged)", rec.stats.torn_bytes));
    }
    // Every record, data chunks included.
    let mut record_errors = Vec::new();
    for (&n, seg) in &rec.segments {
        for (offset, what) in crate::scrub::verify_segment(&seg.file, &sf.key, id, n, seg.end, None).await {
            problems.push(format!("segment {n} offset {offset}: {what}"));
            record_errors.push((n, offset, what));
        }
    }
    // Every checkpoint must load.
    let cps = recovery::list_checkpoints(&backend, dir).await?;
    for (_, name) in &cps {
        let mut scratch = Index::new();
        if let Err(why) = checkpoint::load(&backend, dir, name, id, &mut scratch).await {
            problems.push(format!("checkpoint {name} is damaged: {why}"));
            if repair {
                let from = dir.join(name);
                let to = dir.join(format!("{name}.quarantine"));
                backend.rename(&from, &to).await?;
                repairs.push(format!("moved checkpoint {name} aside to {name}.quarantine"));
            }
        }
    }
    Ok(ShardReport {
        shard: id,
        dir: dir.to_path_buf(),
        stats: rec.stats,
        segments: rec.segments.len() as u32,
        segment_bytes: rec.segments.values().map(|s| s.end).sum(),
        entries: rec.index.total() as u64,
        checkpoints: cps.len() as u32,
        record_errors,
        problems,
        repairs,
        index: rec.index,
    })
}
