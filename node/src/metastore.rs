//! Records that must outlive a disk (the bucket registry; identities and
//! policies can use it too) are kept once in every data dir: in the meta
//! shard of each dir (its first shard). Every copy carries a stamp (a
//! hybrid clock: milliseconds << 16, strictly increasing per node) in a
//! stamps table written in the same commit, and a delete leaves a stamped
//! tombstone instead of nothing, so that copies that disagree (one lost a
//! record to corruption, or missed a write when the node crashed between
//! copies) are settled by the highest stamp. A lost copy is rebuilt from
//! the others at start (`MetaStore::repair`).
//!
//! FORMAT BOUNDARY: `T_META_STAMPS` key = table (u8) ++ key; summary =
//! version (1) | stamp u64 LE | deleted u8. Records written before this
//! table existed have stamp 0.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use tessera_io::{Body, IoError, Mutation};

use crate::meta::T_META_STAMPS;
use crate::shards::Shards;

const STAMP_V1: u8 = 1;
/// Records read per range call while loading.
const LOAD_BATCH: usize = 1000;

/// A record as stored (its summary and meta bytes) and its stamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamped {
    pub stamp: u64,
    /// None: a tombstone.
    pub record: Option<(Vec<u8>, Vec<u8>)>,
}

/// Copies that lag the winner, to rewrite: (shard, key, winner).
pub type Stale = Vec<(u32, Vec<u8>, Stamped)>;

pub struct MetaStore {
    shards: Vec<u32>,
    clock: AtomicU64,
}

fn stamp_key(table: u8, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(table);
    k.extend_from_slice(key);
    k
}

fn encode_stamp(stamp: u64, deleted: bool) -> Vec<u8> {
    let mut v = vec![STAMP_V1];
    v.extend_from_slice(&stamp.to_le_bytes());
    v.push(deleted as u8);
    v
}

fn decode_stamp(b: &[u8]) -> Option<(u64, bool)> {
    if b.len() != 10 || b[0] != STAMP_V1 {
        return None;
    }
    let stamp = u64::from_le_bytes(b[1..9].try_into().ok()?);
    let deleted = match b[9] {
        0 => false,
        1 => true,
        _ => return None,
    };
    Some((stamp, deleted))
}

impl MetaStore {
    /// `shards`: the meta shard of every data dir, in dir order.
    pub fn new(shards: Vec<u32>) -> Self {
        MetaStore { shards, clock: AtomicU64::new(0) }
    }

    pub fn shards(&self) -> &[u32] {
        &self.shards
    }

    /// A stamp newer than every stamp this node gave or loaded.
    fn next_stamp(&self) -> u64 {
        let now = (tessera_proto::time::now_unix_ms().max(0) as u64) << 16;
        let mut cur = self.clock.load(Ordering::SeqCst);
        loop {
            let next = now.max(cur + 1);
            match self.clock.compare_exchange(cur, next, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return next,
                Err(seen) => cur = seen,
            }
        }
    }

    fn saw_stamp(&self, stamp: u64) {
        self.clock.fetch_max(stamp, Ordering::SeqCst);
    }

    fn muts(table: u8, key: &[u8], s: &Stamped) -> Vec<Mutation> {
        let record = match &s.record {
            Some((summary, meta)) => Mutation::Put {
                table,
                key: key.to_vec(),
                summary: summary.clone(),
                meta: meta.clone(),
                body: Body::Inline(Vec::new()),
            },
            None => Mutation::Delete { table, key: key.to_vec() },
        };
        let stamp = Mutation::Put {
            table: T_META_STAMPS,
            key: stamp_key(table, key),
            summary: encode_stamp(s.stamp, s.record.is_none()),
            meta: Vec::new(),
            body: Body::Inline(Vec::new()),
        };
        vec![record, stamp]
    }

    /// Writes `s` to every copy at once. An error if any copy failed (the
    /// copies that took it win at the next start: the write was not
    /// acknowledged, so either outcome is allowed).
    async fn write(&self, shards: &Shards, table: u8, key: &[u8], s: &Stamped) -> Result<(), IoError> {
        let commits = self.shards.iter().map(|&shard| shards.commit(shard, Self::muts(table, key, s)));
        for r in futures_util::future::join_all(commits).await {
            r?;
        }
        Ok(())
    }

    /// Writes several records of `table` (None: delete) in one commit per
    /// copy, so that each copy takes all of them or none.
    pub async fn write_many(&self, shards: &Shards, table: u8, changes: Vec<(Vec<u8>, Option<(Vec<u8>, Vec<u8>)>)>) -> Result<(), IoError> {
        let stamped: Vec<(Vec<u8>, Stamped)> =
            changes.into_iter().map(|(k, record)| (k, Stamped { stamp: self.next_stamp(), record })).collect();
        let commits = self.shards.iter().map(|&shard| {
            let muts = stamped.iter().flat_map(|(k, s)| Self::muts(table, k, s)).collect();
            shards.commit(shard, muts)
        });
        for r in futures_util::future::join_all(commits).await {
            r?;
        }
        Ok(())
    }

    pub async fn put(&self, shards: &Shards, table: u8, key: &[u8], summary: Vec<u8>, meta: Vec<u8>) -> Result<(), IoError> {
        let s = Stamped { stamp: self.next_stamp(), record: Some((summary, meta)) };
        self.write(shards, table, key, &s).await
    }

    pub async fn delete(&self, shards: &Shards, table: u8, key: &[u8]) -> Result<(), IoError> {
        let s = Stamped { stamp: self.next_stamp(), record: None };
        self.write(shards, table, key, &s).await
    }

    /// Every live record of `table` across the copies (the highest stamp
    /// wins, tombstones included), and the copies that lag. `needs_meta`
    /// says from a summary whether the meta bytes must be read. A copy
    /// that cannot be read is skipped (logged) as long as one can.
    pub async fn load(
        &self,
        shards: &Shards,
        table: u8,
        needs_meta: impl Fn(&[u8]) -> bool,
    ) -> Result<(BTreeMap<Vec<u8>, Vec<u8>>, BTreeMap<Vec<u8>, Vec<u8>>, Stale), String> {
        let mut copies: Vec<(u32, BTreeMap<Vec<u8>, Stamped>)> = Vec::new();
        for &shard in &self.shards {
            match self.read_copy(shards, shard, table, &needs_meta).await {
                Ok(c) => copies.push((shard, c)),
                Err(e) => tracing::error!(shard, error = %e, "meta copy unreadable; using the others"),
            }
        }
        if copies.is_empty() {
            return Err("no copy of the node's metadata can be read".into());
        }
        let mut winners: BTreeMap<Vec<u8>, Stamped> = BTreeMap::new();
        for (_, c) in &copies {
            for (k, s) in c {
                self.saw_stamp(s.stamp);
                let better = winners.get(k).is_none_or(|w| s.stamp > w.stamp);
                if better {
                    winners.insert(k.clone(), s.clone());
                }
            }
        }
        let mut stale = Vec::new();
        for (shard, c) in &copies {
            for (k, w) in &winners {
                if c.get(k).is_none_or(|s| s.stamp < w.stamp) {
                    stale.push((*shard, k.clone(), w.clone()));
                }
            }
        }
        let mut summaries = BTreeMap::new();
        let mut metas = BTreeMap::new();
        for (k, w) in winners {
            if let Some((summary, meta)) = w.record {
                summaries.insert(k.clone(), summary);
                metas.insert(k, meta);
            }
        }
        Ok((summaries, metas, stale))
    }

    async fn read_copy(
        &self,
        shards: &Shards,
        shard: u32,
        table: u8,
        needs_meta: &impl Fn(&[u8]) -> bool,
    ) -> Result<BTreeMap<Vec<u8>, Stamped>, IoError> {
        let mut out: BTreeMap<Vec<u8>, Stamped> = BTreeMap::new();
        // Stamps first (tombstones live only there).
        let prefix = vec![table];
        let mut after: Option<Vec<u8>> = None;
        loop {
            let batch = shards.range(shard, T_META_STAMPS, prefix.clone(), after.clone(), LOAD_BATCH).await?;
            for (k, e) in &batch {
                if let Some((stamp, deleted)) = decode_stamp(&e.summary) {
                    let record = if deleted { None } else { Some((Vec::new(), Vec::new())) };
                    out.insert(k[1..].to_vec(), Stamped { stamp, record });
                }
            }
            if batch.len() < LOAD_BATCH {
                break;
            }
            after = batch.last().map(|(k, _)| k.clone());
        }
        // Then the records: a record without a stamp is from before stamps (0).
        let mut after: Option<Vec<u8>> = None;
        loop {
            let batch = shards.range(shard, table, Vec::new(), after.clone(), LOAD_BATCH).await?;
            for (k, e) in &batch {
                let meta = if needs_meta(&e.summary) {
                    shards.load(shard, table, k.clone()).await?.map(|s| s.meta).unwrap_or_default()
                } else {
                    Vec::new()
                };
                let slot = out.entry(k.clone()).or_insert(Stamped { stamp: 0, record: None });
                if slot.record.is_some() || slot.stamp == 0 {
                    slot.record = Some((e.summary.to_vec(), meta));
                }
            }
            if batch.len() < LOAD_BATCH {
                break;
            }
            after = batch.last().map(|(k, _)| k.clone());
        }
        // A stamp saying "live" whose record is gone: the record was lost.
        out.retain(|_, s| !matches!(&s.record, Some((summary, _)) if summary.is_empty()));
        Ok(out)
    }

    /// Rewrites the copies that lag (after `load`).
    pub async fn repair(&self, shards: &Shards, table: u8, stale: Stale) -> usize {
        let mut fixed = 0;
        for (shard, key, winner) in stale {
            match shards.commit(shard, Self::muts(table, &key, &winner)).await {
                Ok(_) => fixed += 1,
                Err(e) => tracing::warn!(shard, error = %e, "could not repair a meta copy"),
            }
        }
        fixed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_roundtrip_and_increase() {
        assert_eq!(decode_stamp(&encode_stamp(77, true)), Some((77, true)));
        assert_eq!(decode_stamp(&encode_stamp(5, false)), Some((5, false)));
        assert_eq!(decode_stamp(b"\x02........."), None);
        let m = MetaStore::new(vec![0]);
        let a = m.next_stamp();
        let b = m.next_stamp();
        assert!(b > a);
        m.saw_stamp(b + 1000);
        assert!(m.next_stamp() > b + 1000);
    }
}
