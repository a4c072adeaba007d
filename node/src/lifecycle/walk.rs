//! The index-driven walks (see `index`): each rule action reads the
//! bucket's `C` (or `U`) entries in time order from its watermark and stops
//! at the first one not yet due for it; `R` and `L` entries are read whole.
//! Also a bucket's backfill (when it gains a configuration) and the
//! per-shard action pacer.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_proto::lifecycle::{expiry_ms, transition_ms, Expiration, Lifecycle, Rule, TransitionWhen};
use tessera_proto::time::now_unix_ms;
use tessera_proto::S3Result;

use super::index::{self, parse_upload_entry, parse_version_entry, Backfill, BackfillState, Marks, VersionEntry, KIND_CURRENT, KIND_LONE, KIND_RETRY, KIND_UPLOAD, T_LCINDEX};
use super::{act_current, remove_lone_marker, visited, Done, Outcome, PAGE};
use crate::buckets::BucketInfo;
use crate::meta::{object_key, split_upload_key, upload_key, ObjectSummary, T_OBJECTS, T_UPLOADS};
use crate::s3::{io_error, multipart};
use crate::server::Ctx;

/// How long a write may take from the creation time it records to its
/// commit being applied: a walk never passes entries younger than this, so
/// a write still in flight cannot land behind a watermark.
const WRITE_LAG_MS: i64 = 10_000;

/// Spaces a shard's lifecycle actions to at most `per_sec` a second.
pub struct Pacer {
    per_sec: u32,
    window: Instant,
    used: u32,
}

impl Pacer {
    pub fn new(per_sec: u32) -> Self {
        Pacer { per_sec: per_sec.max(1), window: Instant::now(), used: 0 }
    }

    /// Waits, if this second's actions are used up, for the next second.
    pub async fn tick(&mut self) {
        if self.window.elapsed() >= Duration::from_secs(1) {
            self.window = Instant::now();
            self.used = 0;
        }
        if self.used >= self.per_sec {
            let next = self.window + Duration::from_secs(1);
            monoio::time::sleep(next.saturating_duration_since(Instant::now())).await;
            self.window = Instant::now();
            self.used = 0;
        }
        self.used += 1;
    }
}

/// When a rule action is due for an entry created at some time.
#[derive(Debug, Clone)]
enum Due {
    Expire(Expiration),
    Transition(TransitionWhen),
}

impl Due {
    fn at(&self, mtime_ms: i64, day_ms: i64) -> i64 {
        match self {
            Due::Expire(e) => expiry_ms(e, mtime_ms, day_ms).unwrap_or(i64::MAX),
            Due::Transition(w) => transition_ms(*w, mtime_ms, day_ms),
        }
    }
}

/// The rule actions on current versions: (watermark id, rule index, due).
/// Ids are stable for a given configuration, which the marks' fingerprint
/// pins.
fn current_actions(lc: &Lifecycle) -> Vec<(u32, usize, Due)> {
    let mut out = Vec::new();
    for (i, r) in lc.rules.iter().enumerate().filter(|(_, r)| r.enabled) {
        let base = (i as u32) << 8;
        match &r.expiration {
            Some(e @ (Expiration::Days(_) | Expiration::Date(_))) => out.push((base, i, Due::Expire(e.clone()))),
            _ => {}
        }
        for (j, t) in r.transitions.iter().enumerate().take(255) {
            out.push((base | (j as u32 + 1), i, Due::Transition(t.when)));
        }
    }
    out
}

/// Watermark ids of the upload walks (beside the current versions' ids).
const UPLOAD_ACTION: u32 = 1 << 31;

/// The fingerprint of a configuration's rules: marks of other rules are
/// not used (a changed configuration walks the index from its start).
pub fn fingerprint(lc: &Lifecycle) -> u64 {
    twox_hash::XxHash3_64::oneshot(format!("{:?}", lc.rules).as_bytes())
}

/// Saves `marks` if action `id` moved to `after`.
async fn advance(ctx: &Ctx, b: &BucketInfo, shard: u32, marks: &mut Marks, id: u32, after: &Option<Vec<u8>>) -> S3Result<()> {
    let Some(a) = after else { return Ok(()) };
    if marks.get(id) == Some(a.as_slice()) {
        return Ok(());
    }
    marks.set(id, a.clone());
    ctx.shards.commit(shard, vec![marks.mutation(b.id)]).await.map_err(io_error)?;
    Ok(())
}

/// Every current-version rule action: its due entries since its watermark.
pub async fn current(ctx: &Rc<Ctx>, b: &Arc<BucketInfo>, lc: &Lifecycle, shard: u32, day_ms: i64, marks: &mut Marks, done: &mut Done, pacer: &mut Pacer) -> S3Result<()> {
    let lag = WRITE_LAG_MS.min(day_ms);
    for (id, rule, due) in current_actions(lc) {
        let mut after = marks.get(id).map(<[u8]>::to_vec);
        loop {
            let now = now_unix_ms();
            let page = ctx.shards.range(shard, T_LCINDEX, index::prefix(KIND_CURRENT, b.id), after.clone(), PAGE).await.map_err(io_error)?;
            let mut reached = page.len() < PAGE;
            for (k, _) in &page {
                if let Some(e) = parse_version_entry(k) {
                    if e.mtime_ms > now - lag || due.at(e.mtime_ms, day_ms) > now {
                        reached = true;
                        break;
                    }
                    visited(ctx, 1);
                    visit(ctx, b, lc, shard, Some(&lc.rules[rule]), KIND_CURRENT, k, &e, day_ms, done, pacer).await?;
                }
                after = Some(k.clone());
            }
            advance(ctx, b, shard, marks, id, &after).await?;
            if reached {
                break;
            }
            tessera_io::sim::yield_now().await;
        }
    }
    Ok(())
}

/// The `R` entries: versions found due and not acted on, tried again.
pub async fn retries(ctx: &Rc<Ctx>, b: &Arc<BucketInfo>, lc: &Lifecycle, shard: u32, day_ms: i64, done: &mut Done, pacer: &mut Pacer) -> S3Result<()> {
    let mut after = None;
    loop {
        let page = ctx.shards.range(shard, T_LCINDEX, index::prefix(KIND_RETRY, b.id), after.clone(), PAGE).await.map_err(io_error)?;
        for (k, _) in &page {
            if let Some(e) = parse_version_entry(k) {
                visited(ctx, 1);
                visit(ctx, b, lc, shard, None, KIND_RETRY, k, &e, day_ms, done, pacer).await?;
            }
            after = Some(k.clone());
        }
        if page.len() < PAGE {
            return Ok(());
        }
        tessera_io::sim::yield_now().await;
    }
}

/// One `C` (for `rule`) or `R` entry: dropped if its version is no longer
/// the current one, else acted on as the full walk does. A `C` entry due
/// but not acted on (locked, tier down, replication pending) becomes an
/// `R` entry; an `R` entry goes once acted on or nothing is left to do.
#[allow(clippy::too_many_arguments)]
async fn visit(
    ctx: &Rc<Ctx>,
    b: &Arc<BucketInfo>,
    lc: &Lifecycle,
    shard: u32,
    rule: Option<&Rule>,
    kind: u8,
    k: &[u8],
    e: &VersionEntry,
    day_ms: i64,
    done: &mut Done,
    pacer: &mut Pacer,
) -> S3Result<()> {
    let current = |ctx: &Rc<Ctx>| {
        let ctx = ctx.clone();
        let okey = String::from_utf8(e.key.clone()).ok().map(|key| (key.clone(), object_key(b.id, &key)));
        let (version, mtime) = (e.version, e.mtime_ms);
        async move {
            let Some((key, okey)) = okey else { return Ok(None) };
            let cur = ctx.shards.get(shard, T_OBJECTS, okey).await.map_err(io_error)?;
            let s = cur.and_then(|c| ObjectSummary::decode(&c.summary));
            Ok::<_, tessera_proto::S3Error>(s.filter(|s| s.version == version && s.mtime_ms == mtime && !s.delete_marker).map(|s| (key, s)))
        }
    };
    let Some((key, s)) = current(ctx).await? else {
        // Replaced or removed since (or written by the backfill just
        // before it went): nothing to do, ever.
        ctx.shards.commit(shard, vec![index::delete(k.to_vec())]).await.map_err(io_error)?;
        return Ok(());
    };
    if let Some(r) = rule {
        let tags = super::tags_of(ctx, shard, T_OBJECTS, &object_key(b.id, &key), r.filter.needs_tags()).await?;
        if !r.filter.matches(&key, &tags, s.size) {
            return Ok(());
        }
    }
    let needs_tags = lc.rules.iter().any(|r| r.enabled && r.filter.needs_tags());
    let outcome = act_current(ctx, b, lc, shard, &key, &s, day_ms, needs_tags, done, pacer).await?;
    let still = outcome == Outcome::Blocked && current(ctx).await?.is_some();
    match kind {
        KIND_CURRENT if still => {
            let retry = index::version_entry(KIND_RETRY, b.id, e.mtime_ms, &e.version, &e.key);
            ctx.shards.commit(shard, vec![index::put(retry)]).await.map_err(io_error)?;
        }
        KIND_RETRY if !still => {
            ctx.shards.commit(shard, vec![index::delete(k.to_vec())]).await.map_err(io_error)?;
        }
        _ => {}
    }
    Ok(())
}

/// `ExpiredObjectDeleteMarker`: the keys whose current version is a
/// delete marker (`L` entries), each removed if no other version is left.
pub async fn lone_markers(ctx: &Rc<Ctx>, b: &Arc<BucketInfo>, lc: &Lifecycle, shard: u32, done: &mut Done, pacer: &mut Pacer) -> S3Result<()> {
    let rules: Vec<&Rule> = lc.rules.iter().filter(|r| r.enabled && r.expiration == Some(Expiration::ExpiredObjectDeleteMarker)).collect();
    if rules.is_empty() {
        return Ok(());
    }
    let mut after = None;
    loop {
        let page = ctx.shards.range(shard, T_LCINDEX, index::prefix(KIND_LONE, b.id), after.clone(), PAGE).await.map_err(io_error)?;
        for (k, _) in &page {
            after = Some(k.clone());
            let Ok(key) = std::str::from_utf8(&k[9..]) else { continue };
            visited(ctx, 1);
            if !rules.iter().any(|r| r.filter.matches(key, &[], 0)) {
                continue;
            }
            let cur = ctx.shards.get(shard, T_OBJECTS, object_key(b.id, key)).await.map_err(io_error)?;
            let Some(s) = cur.and_then(|c| ObjectSummary::decode(&c.summary)).filter(|s| s.delete_marker) else { continue };
            pacer.tick().await;
            if remove_lone_marker(ctx, b, shard, key, s.version).await? {
                done.markers_removed += 1;
            }
        }
        if page.len() < PAGE {
            return Ok(());
        }
        tessera_io::sim::yield_now().await;
    }
}

/// `AbortIncompleteMultipartUpload`: per rule, the uploads initiated long
/// enough ago since its watermark. An abort that fails stops that rule's
/// walk there (tried again next pass).
pub async fn uploads(ctx: &Rc<Ctx>, b: &Arc<BucketInfo>, lc: &Lifecycle, shard: u32, day_ms: i64, marks: &mut Marks, done: &mut Done, pacer: &mut Pacer) -> S3Result<()> {
    for (i, r) in lc.rules.iter().enumerate().filter(|(_, r)| r.enabled) {
        let Some(days) = r.abort_multipart_days else { continue };
        let id = UPLOAD_ACTION | i as u32;
        let mut after = marks.get(id).map(<[u8]>::to_vec);
        'walk: loop {
            let now = now_unix_ms();
            let page = ctx.shards.range(shard, T_LCINDEX, index::prefix(KIND_UPLOAD, b.id), after.clone(), PAGE).await.map_err(io_error)?;
            let mut reached = page.len() < PAGE;
            for (k, _) in &page {
                if let Some((initiated_ms, rest)) = parse_upload_entry(k) {
                    if initiated_ms > now - WRITE_LAG_MS.min(day_ms) || initiated_ms.saturating_add(i64::from(days).saturating_mul(day_ms)) > now {
                        reached = true;
                        break;
                    }
                    visited(ctx, 1);
                    if let Some((Ok(key), Ok(uid))) = split_upload_key(rest).map(|(k, u)| (std::str::from_utf8(k), std::str::from_utf8(u))) {
                        if r.filter.matches(key, &[], 0) {
                            let exists = ctx.shards.get(shard, T_UPLOADS, upload_key(b.id, key, uid)).await.map_err(io_error)?.is_some();
                            if !exists {
                                ctx.shards.commit(shard, vec![index::delete(k.clone())]).await.map_err(io_error)?;
                            } else if let Some(_hold) = crate::handover::hold(ctx, &b.name, key) {
                                // (Not held: another node owns the key now
                                // and aborts it there.)
                                pacer.tick().await;
                                match multipart::abort_upload(ctx, shard, b.id, key, uid).await {
                                    Ok(()) => done.uploads_aborted += 1,
                                    Err(e) => {
                                        tracing::warn!(bucket = %b.name, key, error = %e.code, "abort of an old upload failed; retried next pass");
                                        advance(ctx, b, shard, marks, id, &after).await?;
                                        break 'walk;
                                    }
                                }
                            }
                        }
                    }
                }
                after = Some(k.clone());
            }
            advance(ctx, b, shard, marks, id, &after).await?;
            if reached {
                break;
            }
            tessera_io::sim::yield_now().await;
        }
    }
    Ok(())
}

/// Brings bucket `b`'s index on `shard` up to date for its configuration
/// of stamp `stamp`, backfilling what it held before the configuration was
/// set (a page per commit with the position, so a restart resumes where it
/// stopped). Whether the index is complete: the walks may use it.
///
/// Why nothing is missed: the caller read `stamp` from the node's ruled
/// set (`index::Ruled`), and every commit this core derives afterwards
/// sees that set or a newer one, so it is indexed (a newer set without
/// the bucket means a new stamp, and another backfill, if it comes back).
/// A commit derived before may have skipped the index and still be in
/// flight, invisible to the page reads: `drain_commits` waits for those
/// first. What the pages then read covers every commit not indexed.
pub async fn backfill(ctx: &Rc<Ctx>, b: &BucketInfo, shard: u32, stamp: u64) -> S3Result<bool> {
    let Some(local) = ctx.shards.local(shard).cloned() else { return Ok(false) };
    let state = Backfill::load(&local.shard, b.id, stamp);
    if state.is_done(stamp) {
        return Ok(true);
    }
    local.drain_commits().await;
    let started = Instant::now();
    let mut total = 0u64;
    let BackfillState::Walking { table, after } = state.state else { return Ok(true) };
    let at = crate::paged::Cursor { table, after };
    crate::paged::walk(&local.shard, &index::BACKFILL_TABLES, &crate::meta::bucket_prefix(b.id), at, PAGE, |table, page, next| {
        let mut muts = index::backfill_entries(&local.shard, table, &page);
        total += muts.len() as u64;
        ctx.shared.metrics.core(ctx.core).lc_backfilled.fetch_add(muts.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let next = next.map_or(BackfillState::Done, |c| BackfillState::Walking { table: c.table, after: c.after });
        muts.push(Backfill { stamp, state: next }.mutation(b.id));
        async move { ctx.shards.commit(shard, muts).await.map(|_| ()).map_err(io_error) }
    })
    .await?;
    if total > 0 {
        tracing::info!(bucket = %b.name, shard, entries = total, elapsed_ms = started.elapsed().as_millis() as u64, "lifecycle index: bucket backfilled");
    }
    Ok(true)
}
