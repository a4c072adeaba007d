//! The lifecycle worker: applies buckets' lifecycle rules to the objects of
//! the shards this reactor owns.
//!
//! Every pass walks, for each bucket with enabled rules, the bucket's
//! noncurrent versions (`T_VERSIONS`), current versions (`T_OBJECTS`) and
//! multipart uploads (`T_UPLOADS`) of each local shard in pages, and acts:
//! - `Expiration` (Days/Date) of a current version: removed in an
//!   unversioned bucket, a delete marker placed over it otherwise;
//! - `NoncurrentVersionExpiration`: a version noncurrent for that many days
//!   (since its successor was written), beyond the newest
//!   `NewerNoncurrentVersions`, is removed;
//! - `ExpiredObjectDeleteMarker`: a current delete marker with no other
//!   version left is removed;
//! - `AbortIncompleteMultipartUpload`: uploads initiated that many days ago
//!   are aborted;
//! - `Transition` / `NoncurrentVersionTransition` (due the same way as the
//!   expirations, an expiration due first wins): the version's body moves
//!   to the tier named by the storage class (`tier::worker::transition`).
//!
//! Each pass also does the tier queue work of its shards (`T_TIER`: copies
//! of removed versions deleted at their tier, restored copies expired),
//! whatever the buckets' rules.
//!
//! Each action runs as a transaction on the key and re-checks what it acts
//! on (the same version still current, still expired), so a write racing
//! the worker always wins; object lock retention and legal holds are
//! respected (a locked version is skipped, never removed). Current
//! versions, lone markers and uploads are found through the age index
//! (`index`, `walk`) of the buckets with a configuration, noncurrent
//! versions too (`nc`); until a bucket's index is backfilled on a shard,
//! full walks of its tables.
//!
//! A lifecycle "day" is `--lifecycle-day-secs` (86,400; shorter only for
//! tests, as s3-tests' `lc_debug_interval` expects).

pub mod index;
pub mod nc;
mod walk;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tessera_io::Mutation;
use tessera_proto::lifecycle::{expiry_ms, transition_ms, Expiration, Lifecycle};
use tessera_proto::time::now_unix_ms;
use tessera_proto::S3Result;

use crate::buckets::{BucketInfo, Versioning};
use crate::meta::{
    bucket_prefix, object_key, split_upload_key, versions_prefix, ObjectMeta, ObjectSummary, ReplStatus, UploadInfo,
    VersionSel, T_OBJECTS, T_TIER, T_UPLOADS, T_VERSIONS,
};
use crate::s3::versions::{self, NewVersion};
use crate::s3::{io_error, multipart};
use crate::server::Ctx;
use tessera_proto::notification::EventName;

/// Entries read per page of a walk.
const PAGE: usize = 256;
/// Longest pause between passes (with real days: hourly).
const MAX_PASS_INTERVAL: Duration = Duration::from_secs(3600);
/// Shortest pause between passes.
const MIN_PASS_INTERVAL: Duration = Duration::from_secs(1);

/// Runs passes forever on this reactor's shards.
pub async fn run(ctx: Rc<Ctx>) {
    let day_ms = (ctx.shared.config.lifecycle_day_secs.max(1) * 1000) as i64;
    let interval = (Duration::from_millis(day_ms as u64) / 4).clamp(MIN_PASS_INTERVAL, MAX_PASS_INTERVAL);
    let per_sec = ctx.shared.config.lifecycle_actions_per_sec;
    let mut pacers: Vec<walk::Pacer> = (0..ctx.shards.count()).map(|_| walk::Pacer::new(per_sec)).collect();
    loop {
        monoio::time::sleep(interval).await;
        for shard in 0..ctx.shards.count() {
            if ctx.shards.local(shard).is_some_and(|l| l.shard.len(T_TIER) > 0) {
                crate::tier::worker::housekeeping(&ctx, shard).await;
            }
        }
        let buckets = ctx.shared.buckets.matching(|b| b.lifecycle.as_ref().is_some_and(|l| l.has_enabled_rules()));
        for b in buckets {
            for shard in 0..ctx.shards.count() {
                if ctx.shards.local(shard).is_none() {
                    continue;
                }
                if let Err(e) = pass(&ctx, &b, shard, day_ms, &mut pacers[shard as usize]).await {
                    tracing::warn!(bucket = %b.name, shard, error = %e.code, "lifecycle pass failed; retried next time");
                }
            }
        }
    }
}

/// Counts entries a walk visited (`tessera_lifecycle_visited_entries_total`).
fn visited(ctx: &Ctx, n: u64) {
    ctx.shared.metrics.core(ctx.core).lc_visited.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
}

fn visited_so_far(ctx: &Ctx) -> u64 {
    ctx.shared.metrics.core(ctx.core).lc_visited.load(std::sync::atomic::Ordering::Relaxed)
}

/// A pass this slow is logged even if it did nothing.
const SLOW_PASS_MS: u64 = 100;

/// What came of a version found due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Acted,
    /// Nothing is due for it, or it changed meanwhile.
    Nothing,
    /// Due, but held: locked, its tier down, replication pending, an error.
    Blocked,
}

/// What one pass did (for logs and tests).
#[derive(Debug, Default)]
struct Done {
    expired: u64,
    noncurrent_removed: u64,
    markers_removed: u64,
    uploads_aborted: u64,
    transitioned: u64,
    /// Tiers found down in this pass: not tried again until the next one.
    tiers_down: Vec<String>,
}

async fn pass(ctx: &Rc<Ctx>, b: &Arc<BucketInfo>, shard: u32, day_ms: i64, pacer: &mut walk::Pacer) -> S3Result<()> {
    let Some(lc) = b.lifecycle.clone() else { return Ok(()) };
    let (started, walked_before) = (std::time::Instant::now(), visited_so_far(ctx));
    let mut done = Done::default();
    // The stamp as the shards' ruled set has it (not as `b` has it): the
    // set the commits are indexed by (see `walk::backfill`).
    let stamp = ctx.shared.buckets.ruled().stamp(b.id);
    let indexed = match stamp {
        Some(stamp) => walk::backfill(ctx, b, shard, stamp).await.unwrap_or_else(|e| {
            tracing::warn!(bucket = %b.name, shard, error = %e.code, "lifecycle index backfill stopped; resumed next pass");
            false
        }),
        None => false,
    };
    let Some(local) = ctx.shards.local(shard).cloned() else { return Ok(()) };
    if indexed && !ctx.shared.config.lifecycle_full_walk {
        // The marks hold for these rules of this configuration: one
        // removed and set again (a new stamp, backfilled again) walks
        // from the start too.
        let mut marks = index::Marks::load(&local.shard, b.id, walk::fingerprint(&lc) ^ stamp.unwrap_or(0));
        let w = nc::Walk { shard: &local.shard, bucket: b.id, lc: &lc, day_ms, now: now_unix_ms() };
        nc::indexed(&w, &mut marks, &mut NcActor { ctx, b, shard, done: &mut done, pacer }).await?;
        walk::current(ctx, b, &lc, shard, day_ms, &mut marks, &mut done, pacer).await?;
        walk::retries(ctx, b, &lc, shard, day_ms, &mut done, pacer).await?;
        walk::lone_markers(ctx, b, &lc, shard, &mut done, pacer).await?;
        walk::uploads(ctx, b, &lc, shard, day_ms, &mut marks, &mut done, pacer).await?;
    } else {
        // Until the bucket's backfill on this shard is done, its index
        // may miss older entries: the full walk.
        let w = nc::Walk { shard: &local.shard, bucket: b.id, lc: &lc, day_ms, now: now_unix_ms() };
        nc::full(&w, &mut NcActor { ctx, b, shard, done: &mut done, pacer }).await?;
        current(ctx, b, &lc, shard, day_ms, &mut done, pacer).await?;
        uploads(ctx, b, &lc, shard, day_ms, &mut done, pacer).await?;
    }
    let acted = done.expired + done.noncurrent_removed + done.markers_removed + done.uploads_aborted + done.transitioned;
    let (elapsed_ms, walked) = (started.elapsed().as_millis() as u64, visited_so_far(ctx) - walked_before);
    if acted > 0 || elapsed_ms >= SLOW_PASS_MS {
        tracing::info!(bucket = %b.name, shard, ?done, elapsed_ms, visited = walked, "lifecycle applied");
    }
    Ok(())
}

/// The object key of a `T_OBJECTS` key of bucket `b`.
fn key_of(b: &BucketInfo, k: &[u8]) -> Option<String> {
    String::from_utf8(k.get(8..)?.to_vec()).ok().filter(|_| k.starts_with(&b.id.to_be_bytes()))
}

fn sel_of(s: &ObjectSummary) -> VersionSel {
    if s.null_version {
        VersionSel::Null
    } else {
        VersionSel::Id(s.version)
    }
}

async fn tags_of(ctx: &Ctx, shard: u32, table: u8, k: &[u8], needed: bool) -> S3Result<Vec<(String, String)>> {
    if !needed {
        return Ok(Vec::new());
    }
    let stored = ctx.shards.load(shard, table, k.to_vec()).await.map_err(io_error)?;
    Ok(stored.and_then(|s| ObjectMeta::decode(&s.meta)).map(|m| m.tags).unwrap_or_default())
}

async fn current(ctx: &Rc<Ctx>, b: &Arc<BucketInfo>, lc: &Lifecycle, shard: u32, day_ms: i64, done: &mut Done, pacer: &mut walk::Pacer) -> S3Result<()> {
    let needs_tags = lc.rules.iter().any(|r| r.enabled && r.filter.needs_tags());
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = ctx.shards.range(shard, T_OBJECTS, bucket_prefix(b.id), after.clone(), PAGE).await.map_err(io_error)?;
        let Some((last, _)) = page.last() else { return Ok(()) };
        after = Some(last.clone());
        visited(ctx, page.len() as u64);
        for (k, e) in &page {
            let (Some(key), Some(s)) = (key_of(b, k), ObjectSummary::decode(&e.summary)) else { continue };
            if s.delete_marker {
                let applies = lc.rules.iter().any(|r| {
                    r.enabled && r.expiration == Some(Expiration::ExpiredObjectDeleteMarker) && r.filter.matches(&key, &[], 0)
                });
                if applies && remove_lone_marker(ctx, b, shard, &key, s.version).await? {
                    done.markers_removed += 1;
                }
                continue;
            }
            act_current(ctx, b, lc, shard, &key, &s, day_ms, needs_tags, done, pacer).await?;
        }
        if page.len() < PAGE {
            return Ok(());
        }
        // A page of a local shard is read without waiting: give the
        // reactor back between pages.
        tessera_io::sim::yield_now().await;
    }
}

/// Acts on current version `s` of `key` as the rules say now: expired if
/// an expiration is due, else moved to the latest due transition's tier.
#[allow(clippy::too_many_arguments)]
async fn act_current(
    ctx: &Rc<Ctx>,
    b: &Arc<BucketInfo>,
    lc: &Lifecycle,
    shard: u32,
    key: &str,
    s: &ObjectSummary,
    day_ms: i64,
    needs_tags: bool,
    done: &mut Done,
    pacer: &mut walk::Pacer,
) -> S3Result<Outcome> {
    let now = now_unix_ms();
    let tags = tags_of(ctx, shard, T_OBJECTS, &object_key(b.id, key), needs_tags).await?;
    let due = lc
        .rules
        .iter()
        .filter(|r| r.enabled && r.filter.matches(key, &tags, s.size))
        .filter_map(|r| expiry_ms(r.expiration.as_ref()?, s.mtime_ms, day_ms))
        .min();
    if due.is_some_and(|t| t <= now) {
        pacer.tick().await;
        if expire_current(ctx, b, shard, key, s.version).await? {
            done.expired += 1;
            return Ok(Outcome::Acted);
        }
        return Ok(Outcome::Blocked);
    }
    let class = lc
        .rules
        .iter()
        .filter(|r| r.enabled && r.filter.matches(key, &tags, s.size))
        .flat_map(|r| r.transitions.iter())
        .map(|t| (transition_ms(t.when, s.mtime_ms, day_ms), &t.storage_class))
        .filter(|(t, _)| *t <= now)
        .max_by_key(|(t, _)| *t)
        .map(|(_, c)| c.clone());
    match class {
        Some(class) => Ok(move_to_tier(ctx, b, shard, key, s, &class, done, pacer).await),
        None => Ok(Outcome::Nothing),
    }
}

/// Transitions version `s` of `key` to tier `class` (unless it is already
/// there, or still waiting to be replicated), counting it in `done`; a
/// tier found down is skipped for the rest of the pass.
#[allow(clippy::too_many_arguments)]
async fn move_to_tier(ctx: &Rc<Ctx>, b: &BucketInfo, shard: u32, key: &str, s: &ObjectSummary, class: &str, done: &mut Done, pacer: &mut walk::Pacer) -> Outcome {
    if s.tier_class.as_deref() == Some(class) || s.delete_marker {
        return Outcome::Nothing;
    }
    if s.repl == ReplStatus::Pending || done.tiers_down.iter().any(|d| d == class) {
        return Outcome::Blocked;
    }
    pacer.tick().await;
    match crate::tier::worker::transition(ctx, b, shard, key, s, class).await {
        Ok(true) => {
            done.transitioned += 1;
            Outcome::Acted
        }
        Ok(false) => Outcome::Nothing,
        Err(e) => {
            let why = crate::tier::worker::describe(&e);
            if let crate::tier::worker::NotMoved::TierDown(_) = e {
                done.tiers_down.push(class.to_string());
            }
            tracing::warn!(bucket = %b.name, key, class, "transition failed; retried next pass: {why}");
            Outcome::Blocked
        }
    }
}

/// The notification event of an expiration (`s3:LifecycleExpiration:*`):
/// a removal, or a delete marker placed.
fn lifecycle_event(ctx: &Ctx, b: &BucketInfo, key: &str, removal: bool) -> Option<crate::notify::Pending> {
    b.notification.as_ref()?;
    let name = if removal { EventName::LifecycleDelete } else { EventName::LifecycleDeleteMarkerCreated };
    let origin = crate::notify::Origin { principal: "tessera:lifecycle".into(), ..Default::default() };
    crate::notify::prepare(&ctx.shared.config.notify_webhooks, b, key, name, origin)
}

/// Makes the current version `expected` of `key` noncurrent (a delete
/// marker over it) or, unversioned, removes it; nothing if it changed.
async fn expire_current(ctx: &Ctx, b: &BucketInfo, shard: u32, key: &str, expected: crate::meta::VersionId) -> S3Result<bool> {
    let Ok(_gate) = b.enter_write() else { return Ok(false) };
    let Some(_hold) = crate::handover::hold(ctx, &b.name, key) else { return Ok(false) };
    let (bid, k, versioning) = (b.id, key.to_string(), b.versioning);
    let random = versions::random8()?;
    let ev = lifecycle_event(ctx, b, key, versioning == Versioning::Unversioned);
    let lock = vec![(T_OBJECTS, object_key(bid, key))];
    ctx.shards
        .txn(shard, lock, move |local| async move {
            let cur = versions::current(&local.shard, bid, &k)?;
            let Some(cur) = cur.filter(|c| c.summary.version == expected && !c.summary.delete_marker) else {
                return Ok(false);
            };
            let (mut muts, summary) = if versioning == Versioning::Unversioned {
                let mut muts: Vec<Mutation> = crate::tier::forget_mutation(&local.shard, cur.table, &cur.key, &cur.summary).await?.into_iter().collect();
                muts.push(Mutation::Delete { table: T_OBJECTS, key: cur.key });
                (muts, cur.summary)
            } else {
                let marker = NewVersion::delete_marker(now_unix_ms());
                match versions::place(&local.shard, bid, &k, versioning, marker, None, random).await {
                    Ok(placed) => placed,
                    // A locked null version cannot be replaced: kept.
                    Err(_) => return Ok(false),
                }
            };
            if let Some(ev) = &ev {
                muts.extend(ev.mutations(&local.notify, Some(&summary)));
            }
            local.commit_in_txn(muts).await.map_err(io_error)?;
            if ev.is_some() {
                local.notify.wake.notify_all();
            }
            Ok(true)
        })
        .await
        .map_err(io_error)?
}

/// Removes the current delete marker `expected` of `key` if no other
/// version of the key is left.
async fn remove_lone_marker(ctx: &Ctx, b: &BucketInfo, shard: u32, key: &str, expected: crate::meta::VersionId) -> S3Result<bool> {
    // Removals stay inside the write gate, as DeleteObject's do.
    let Ok(_gate) = b.enter_write() else { return Ok(false) };
    let Some(_hold) = crate::handover::hold(ctx, &b.name, key) else { return Ok(false) };
    let (bid, k) = (b.id, key.to_string());
    let lock = vec![(T_OBJECTS, object_key(bid, key))];
    ctx.shards
        .txn(shard, lock, move |local| async move {
            let cur = versions::current(&local.shard, bid, &k)?;
            let Some(cur) = cur.filter(|c| c.summary.version == expected && c.summary.delete_marker) else {
                return Ok(false);
            };
            if !local.shard.range(T_VERSIONS, &versions_prefix(bid, &k), None, 1).is_empty() {
                return Ok(false);
            }
            let Some((muts, _)) = versions::remove(&local.shard, bid, &k, sel_of(&cur.summary), false).await? else {
                return Ok(false);
            };
            local.commit_in_txn(muts).await.map_err(io_error)?;
            Ok(true)
        })
        .await
        .map_err(io_error)?
}

/// The worker's [`nc::Actor`]: removals in a transaction on the key,
/// transitions to the tier, paced.
struct NcActor<'a> {
    ctx: &'a Rc<Ctx>,
    b: &'a Arc<BucketInfo>,
    shard: u32,
    done: &'a mut Done,
    pacer: &'a mut walk::Pacer,
}

impl nc::Actor for NcActor<'_> {
    async fn act(&mut self, key: &str, _vkey: &[u8], s: &ObjectSummary, act: nc::Act) -> S3Result<Outcome> {
        let (ctx, b, shard) = (self.ctx, self.b, self.shard);
        if let nc::Act::Transition(class) = act {
            return Ok(move_to_tier(ctx, b, shard, key, s, &class, self.done, self.pacer).await);
        }
        self.pacer.tick().await;
        // A removal can promote a version: inside the write gate, as
        // DeleteObject's removals are.
        let Ok(_gate) = b.enter_write() else { return Ok(Outcome::Blocked) };
        let Some(_hold) = crate::handover::hold(ctx, &b.name, key) else { return Ok(Outcome::Blocked) };
        let (bid, k2, sel) = (b.id, key.to_string(), sel_of(s));
        let lock = vec![(T_OBJECTS, object_key(bid, key))];
        let ev = lifecycle_event(ctx, b, key, true);
        let removed = ctx
            .shards
            .txn(shard, lock, move |local| async move {
                // Locked versions stay (check_removable refuses them).
                let Ok(Some((mut muts, gone))) = versions::remove(&local.shard, bid, &k2, sel, false).await else {
                    return Ok(false);
                };
                if let Some(ev) = &ev {
                    muts.extend(ev.mutations(&local.notify, Some(&gone)));
                }
                local.commit_in_txn(muts).await.map_err(io_error)?;
                if ev.is_some() {
                    local.notify.wake.notify_all();
                }
                Ok::<_, tessera_proto::S3Error>(true)
            })
            .await
            .map_err(io_error)??;
        if removed {
            self.done.noncurrent_removed += 1;
            return Ok(Outcome::Acted);
        }
        Ok(Outcome::Blocked)
    }

    async fn commit(&mut self, muts: Vec<Mutation>) -> S3Result<()> {
        self.ctx.shards.commit(self.shard, muts).await.map(|_| ()).map_err(io_error)
    }

    async fn tags(&mut self, vkey: &[u8]) -> S3Result<Vec<(String, String)>> {
        tags_of(self.ctx, self.shard, T_VERSIONS, vkey, true).await
    }

    fn visited(&mut self, n: u64) {
        visited(self.ctx, n);
    }
}

async fn uploads(ctx: &Rc<Ctx>, b: &Arc<BucketInfo>, lc: &Lifecycle, shard: u32, day_ms: i64, done: &mut Done, pacer: &mut walk::Pacer) -> S3Result<()> {
    if !lc.rules.iter().any(|r| r.enabled && r.abort_multipart_days.is_some()) {
        return Ok(());
    }
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = ctx.shards.range(shard, T_UPLOADS, bucket_prefix(b.id), after.clone(), PAGE).await.map_err(io_error)?;
        let Some((last, _)) = page.last() else { return Ok(()) };
        after = Some(last.clone());
        visited(ctx, page.len() as u64);
        let now = now_unix_ms();
        for (k, e) in &page {
            let Some((key, id)) = split_upload_key(&k[8.min(k.len())..]) else { continue };
            let (Ok(key), Ok(id)) = (std::str::from_utf8(key), std::str::from_utf8(id)) else { continue };
            let Some(info) = UploadInfo::decode(&e.summary) else { continue };
            let due = lc
                .rules
                .iter()
                .filter(|r| r.enabled && r.filter.matches(key, &[], 0))
                .filter_map(|r| Some(info.initiated_ms + i64::from(r.abort_multipart_days?) * day_ms))
                .min();
            if due.is_some_and(|t| t <= now) {
                pacer.tick().await;
                let Some(_hold) = crate::handover::hold(ctx, &b.name, key) else { continue };
                if multipart::abort_upload(ctx, shard, b.id, key, id).await.is_ok() {
                    done.uploads_aborted += 1;
                }
            }
        }
        if page.len() < PAGE {
            return Ok(());
        }
        // A page of a local shard is read without waiting: give the
        // reactor back between pages.
        tessera_io::sim::yield_now().await;
    }
}
