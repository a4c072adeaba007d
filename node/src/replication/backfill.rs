//! Versions put into the replication queue after the fact:
//! - **ExistingObjectReplication**: when an enabled rule of a bucket's
//!   configuration has it Enabled, the versions written before the
//!   configuration (no replication status) that the rule selects are
//!   queued by a backfill, per bucket and shard (`paged::walk` over
//!   `T_OBJECTS` then `T_VERSIONS`), each page committed with its position
//!   (`T_REPLSTATE`, so a restart resumes), paced to
//!   `BACKFILL_VERSIONS_PER_SEC` per shard and held while the shard's queue
//!   is longer than `BACKFILL_MAX_QUEUED`;
//! - **resync** (`POST /admin/v1/replication/resync?bucket=B`): a bucket's
//!   FAILED versions queued again.
//!
//! Both stamp the version PENDING and add its queue entry in one commit
//! under the key's lock, after checking the version still has the status
//! the walk saw; a version with any other status (PENDING, COMPLETED,
//! REPLICA, or FAILED for the backfill) is never queued by them.

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tessera_io::{Body, Entry, Mutation};
use tessera_proto::notification::EventName;
use tessera_proto::replication::ReplicationConfig;
use tessera_proto::{S3Error, S3ErrorCode};

use super::{plan, Plan};
use crate::buckets::BucketInfo;
use crate::meta::{bucket_prefix, object_key, parse_version_key, ObjectSummary, ReplStatus, VersionId, T_OBJECTS, T_REPLICATION, T_REPLSTATE, T_VERSIONS};
use crate::paged::{self, Cursor};
use crate::server::Ctx;

/// FORMAT BOUNDARY: version byte of a backfill state record.
const STATE_V1: u8 = 1;
/// `T_REPLSTATE` key kind of a bucket's backfill state (`B ++ bucket id`).
const KIND_BACKFILL: u8 = b'B';
/// Entries a backfill or resync reads per page.
const PAGE: usize = 256;
/// Versions the backfill queues per second and shard.
const BACKFILL_VERSIONS_PER_SEC: u64 = 1000;
/// The backfill waits while its shard's queue holds more entries than
/// this: old versions never crowd out the queue.
const BACKFILL_MAX_QUEUED: usize = 10_000;
/// How often a reactor looks for buckets to backfill.
const BACKFILL_POLL: Duration = Duration::from_secs(1);

/// A bucket's backfill on one shard (FORMAT BOUNDARY: `T_REPLSTATE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// Fingerprint of the configuration walked for: another one walks again.
    pub config: u64,
    /// `None`: done.
    pub at: Option<Cursor>,
}

impl State {
    fn key(bucket: u64) -> Vec<u8> {
        let mut k = vec![KIND_BACKFILL];
        k.extend_from_slice(&bucket.to_be_bytes());
        k
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![STATE_V1];
        b.extend_from_slice(&self.config.to_be_bytes());
        match &self.at {
            None => b.push(1),
            Some(c) => {
                b.push(0);
                b.push(c.table);
                b.extend_from_slice(c.after.as_deref().unwrap_or_default());
            }
        }
        b
    }

    /// `None` for another version or damaged bytes: the walk starts over
    /// (it only queues versions that still have no status).
    pub fn decode(b: &[u8]) -> Option<Self> {
        let (&v, rest) = b.split_first()?;
        if v != STATE_V1 || rest.len() < 9 {
            return None;
        }
        let config = u64::from_be_bytes(rest[..8].try_into().ok()?);
        let at = match &rest[8..] {
            [1] => None,
            [0, table, after @ ..] if *table == T_OBJECTS || *table == T_VERSIONS => {
                Some(Cursor { table: *table, after: (!after.is_empty()).then(|| after.to_vec()) })
            }
            _ => return None,
        };
        Some(State { config, at })
    }

    fn mutation(&self, bucket: u64) -> Mutation {
        Mutation::Put { table: T_REPLSTATE, key: Self::key(bucket), summary: self.encode(), meta: Vec::new(), body: Body::Inline(Vec::new()) }
    }
}

/// The fingerprint of a configuration (its canonical XML).
fn fingerprint(rc: &ReplicationConfig) -> u64 {
    twox_hash::XxHash3_64::oneshot(tessera_proto::replication::render_config(rc).as_bytes())
}

/// Whether a rule of the bucket asks for existing objects.
fn wants_existing(b: &BucketInfo) -> bool {
    b.replication.as_ref().is_some_and(|rc| rc.rules.iter().any(|r| r.enabled && r.existing_objects == Some(true)))
}

/// A version to queue.
struct Pick {
    table: u8,
    entry: Vec<u8>,
    key: String,
    version: VersionId,
    plan: Plan,
}

/// The version an entry of `T_OBJECTS` or `T_VERSIONS` holds, if it has
/// replication status `from` and the bucket's configuration selects it
/// (by a rule with ExistingObjectReplication when `existing_only`).
fn pick(ctx: &Ctx, b: &BucketInfo, table: u8, entry: &[u8], e: &Entry, from: ReplStatus, existing_only: bool) -> Option<Pick> {
    let s = ObjectSummary::decode(&e.summary)?;
    if s.repl != from {
        return None;
    }
    let key = match table {
        T_OBJECTS => String::from_utf8(entry.get(8..)?.to_vec()).ok()?,
        _ => String::from_utf8(parse_version_key(entry)?.1).ok()?,
    };
    let rule = b.replication.as_ref()?.rule_for(&key, None)?;
    if existing_only && rule.existing_objects != Some(true) {
        return None;
    }
    let name = if s.delete_marker { EventName::DeleteMarkerCreated } else { EventName::Put };
    let plan = plan(&ctx.shared.config.replication_targets, b, &key, name)?;
    Some(Pick { table, entry: entry.to_vec(), key, version: s.version, plan })
}

/// Stamps each picked version PENDING and queues it, in one commit under
/// the keys' locks with `extra`, skipping a version whose status is no
/// longer `from`. Returns how many were queued.
async fn enqueue(ctx: &Ctx, shard: u32, b: &BucketInfo, picks: Vec<Pick>, from: ReplStatus, extra: Vec<Mutation>) -> Result<usize, String> {
    let lock = picks.iter().map(|p| (T_OBJECTS, object_key(b.id, &p.key))).collect();
    let (name, id) = (b.name.clone(), b.id);
    ctx.shards
        .txn(shard, lock, move |local| async move {
            let mut muts = Vec::with_capacity(picks.len() * 2 + extra.len());
            for p in &picks {
                let Some(mut s) = local.shard.get(p.table, &p.entry).and_then(|e| ObjectSummary::decode(&e.summary)) else { continue };
                if s.repl != from || s.version != p.version {
                    continue;
                }
                let Some(stored) = crate::stripes_io::load(&local.shard, p.table, &p.entry).await.map_err(|e| e.to_string())? else { continue };
                p.plan.stamp(&mut s);
                muts.push(Mutation::Put { table: p.table, key: p.entry.clone(), summary: s.encode(), meta: stored.meta, body: stored.body });
                muts.push(p.plan.mutation(local.notify.next_id(), &name, id, &p.key, &s));
            }
            let queued = muts.len() / 2;
            muts.extend(extra);
            local.commit_in_txn(muts).await.map_err(|e| e.to_string())?;
            if queued > 0 {
                local.notify.wake.notify_all();
            }
            Ok::<usize, String>(queued)
        })
        .await
        .map_err(|e| format!("queueing versions: {e}"))?
}

/// Backfills the existing versions of every bucket that asks for them,
/// on this reactor's shards, forever.
pub async fn run(ctx: Rc<Ctx>) {
    if ctx.shared.config.replication_targets.is_empty() {
        return;
    }
    let local: Vec<u32> = (0..ctx.shards.count()).filter(|s| ctx.shards.local(*s).is_some()).collect();
    loop {
        let mut walking = 0;
        for b in ctx.shared.buckets.matching(wants_existing) {
            for &shard in &local {
                match backfill(&ctx, &b, shard).await {
                    Ok(true) => {}
                    Ok(false) => walking += 1,
                    Err(e) => {
                        walking += 1;
                        tracing::warn!(bucket = %b.name, shard, "replication backfill stopped, resumed later: {e}");
                    }
                }
            }
        }
        ctx.shared.metrics.core(ctx.core).repl_backfill_walking.store(walking, Relaxed);
        monoio::time::sleep(BACKFILL_POLL).await;
    }
}

/// Walks `b`'s versions on `shard` from the stored position to the end
/// (or to an error): whether the walk is done.
async fn backfill(ctx: &Rc<Ctx>, b: &BucketInfo, shard: u32) -> Result<bool, String> {
    let (Some(l), Some(rc)) = (ctx.shards.local(shard).cloned(), b.replication.as_ref()) else { return Ok(true) };
    let config = fingerprint(rc);
    let stored = l.shard.get(T_REPLSTATE, &State::key(b.id)).and_then(|e| State::decode(&e.summary)).filter(|s| s.config == config);
    let at = match stored {
        Some(State { at: None, .. }) => return Ok(true),
        Some(State { at: Some(c), .. }) => c,
        None => Cursor::start(T_OBJECTS),
    };
    tracing::info!(bucket = %b.name, shard, "replication: queueing the versions written before the configuration");
    let m = ctx.shared.metrics.core(ctx.core);
    paged::walk(&l.shard, &[T_OBJECTS, T_VERSIONS], &bucket_prefix(b.id), at, PAGE, |table, page, next| {
        let picks: Vec<Pick> = page.iter().filter_map(|(k, e)| pick(ctx, b, table, k, e, ReplStatus::None, true)).collect();
        let state = State { config, at: next }.mutation(b.id);
        let l = l.clone();
        async move {
            while l.shard.len(T_REPLICATION) > BACKFILL_MAX_QUEUED {
                monoio::time::sleep(Duration::from_millis(200)).await;
            }
            let n = picks.len() as u64;
            if picks.is_empty() {
                ctx.shards.commit(shard, vec![state]).await.map_err(|e| e.to_string())?;
            } else {
                let queued = enqueue(ctx, shard, b, picks, ReplStatus::None, vec![state]).await?;
                m.repl_backfilled.fetch_add(queued as u64, Relaxed);
            }
            monoio::time::sleep(Duration::from_millis(n * 1000 / BACKFILL_VERSIONS_PER_SEC)).await;
            Ok::<(), String>(())
        }
    })
    .await?;
    tracing::info!(bucket = %b.name, shard, "replication: existing versions queued");
    Ok(true)
}

/// `POST /admin/v1/replication/resync?bucket=B`: queues every FAILED
/// version of the bucket again (on every shard), for the rules in force
/// now. What it did.
pub async fn resync(ctx: &Ctx, bucket: &str) -> Result<serde_json::Value, S3Error> {
    let b = ctx.shared.buckets.get(bucket).ok_or_else(|| S3Error::with_message(S3ErrorCode::NoSuchBucket, format!("no bucket {bucket}")))?;
    if b.replication.is_none() {
        return Err(S3Error::with_message(S3ErrorCode::ReplicationConfigurationNotFoundError, format!("bucket {bucket} has no replication configuration")));
    }
    let (mut scanned, mut requeued) = (0u64, 0u64);
    let prefix = bucket_prefix(b.id);
    for shard in 0..ctx.shards.count() {
        for table in [T_OBJECTS, T_VERSIONS] {
            let mut after: Option<Vec<u8>> = None;
            loop {
                let page = ctx.shards.range(shard, table, prefix.clone(), after.clone(), PAGE).await.map_err(crate::s3::io_error)?;
                scanned += page.len() as u64;
                let picks: Vec<Pick> = page.iter().filter_map(|(k, e)| pick(ctx, &b, table, k, e, ReplStatus::Failed, false)).collect();
                if !picks.is_empty() {
                    let n = enqueue(ctx, shard, &b, picks, ReplStatus::Failed, Vec::new())
                        .await
                        .map_err(|e| S3Error::with_message(S3ErrorCode::InternalError, e))?;
                    requeued += n as u64;
                }
                match page.last() {
                    Some((k, _)) if page.len() == PAGE => after = Some(k.clone()),
                    _ => break,
                }
                tessera_io::sim::yield_now().await;
            }
        }
    }
    ctx.shared.metrics.core(ctx.core).repl_requeued.fetch_add(requeued, Relaxed);
    tracing::info!(bucket, requeued, scanned, "replication resync: FAILED versions queued again");
    Ok(serde_json::json!({ "bucket": bucket, "requeued": requeued, "scanned": scanned }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_refuse_what_they_do_not_know() {
        for s in [
            State { config: 7, at: None },
            State { config: 7, at: Some(Cursor::start(T_OBJECTS)) },
            State { config: u64::MAX, at: Some(Cursor { table: T_VERSIONS, after: Some(b"\x00\x01k".to_vec()) }) },
        ] {
            assert_eq!(State::decode(&s.encode()), Some(s));
        }
        let mut other = State { config: 1, at: None }.encode();
        other[0] = 2;
        assert_eq!(State::decode(&other), None);
        assert_eq!(State::decode(&[STATE_V1, 0, 0]), None);
        let mut bad_table = State { config: 1, at: Some(Cursor::start(T_OBJECTS)) }.encode();
        bad_table[10] = T_REPLICATION;
        assert_eq!(State::decode(&bad_table), None);
    }
}
