//! Noncurrent versions: `NoncurrentVersionExpiration` (`NoncurrentDays`,
//! `NewerNoncurrentVersions`) and `NoncurrentVersionTransition`.
//!
//! A version became noncurrent when its successor (the next newer version)
//! was written, and its place in the key's chain (how many noncurrent
//! versions are newer) is what `NewerNoncurrentVersions` counts. Two walks
//! find the due ones, both over a local shard and acting through an
//! [`Actor`] (the worker's, or a test's):
//! - [`full`]: every version of the bucket (`T_VERSIONS`), until the
//!   bucket's index backfill is done on the shard;
//! - [`indexed`]: the `N` entries (`index`) of each rule action from its
//!   watermark, stopping at the first not yet due; the `Q` entries (every
//!   pass); and the `K` entries (keys pushed down by a new version, whose
//!   count-held versions may have become removable).
//!
//! An `N` entry's time is exact when the version was demoted, and may be
//! earlier than the truth otherwise (never later; see `index`): a visit
//! recomputes the time and the count from the key's versions, acts if due
//! and otherwise re-keys the entry at the true time.

use tessera_io::{Mutation, Shard};
use tessera_proto::lifecycle::{expiry_ms, transition_ms, Expiration, Lifecycle, Rule, TransitionWhen};
use tessera_proto::S3Result;

use super::index::{self, parse_version_entry, Marks, KIND_NC_RETRY, KIND_NONCURRENT, KIND_PUSHED, T_LCINDEX};
use super::{Outcome, PAGE};
use crate::meta::{bucket_prefix, object_key, parse_version_key, version_key, versions_prefix_bytes, ObjectSummary, T_OBJECTS, T_VERSIONS};

/// How long a write may take from the creation time it records to its
/// commit being applied (as `walk::WRITE_LAG_MS`).
const WRITE_LAG_MS: i64 = 10_000;

/// Watermark ids of the noncurrent walks: `NC_ACTION | rule << 8 | j`
/// (j 0 the expiration, 1.. the transitions), beside the current
/// versions' and the uploads' ids.
const NC_ACTION: u32 = 1 << 30;

/// What is due for a noncurrent version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Act {
    Remove,
    /// Moved to this storage class's tier.
    Transition(String),
}

/// Whether an enabled rule of `lc` acts on noncurrent versions.
pub fn acts(lc: &Lifecycle) -> bool {
    lc.rules.iter().any(|r| r.enabled && (r.noncurrent_days.is_some() || !r.noncurrent_transitions.is_empty()))
}

/// Whether an enabled rule of `lc` keeps noncurrent versions by count
/// (`NewerNoncurrentVersions`): its bucket's demotions get `K` entries.
pub fn counts(lc: &Lifecycle) -> bool {
    lc.rules.iter().any(|r| r.enabled && (r.newer_noncurrent.is_some() || r.noncurrent_transitions.iter().any(|t| t.newer_noncurrent.is_some())))
}

fn needs_tags(lc: &Lifecycle) -> bool {
    lc.rules.iter().any(|r| r.enabled && (r.noncurrent_days.is_some() || !r.noncurrent_transitions.is_empty()) && r.filter.needs_tags())
}

/// What the rules say is due at `now` for noncurrent version `s` of `key`,
/// noncurrent since `since_ms` with `index` newer noncurrent versions: a
/// removal when an expiration is due, else the latest due transition.
#[allow(clippy::too_many_arguments)]
pub fn decide(lc: &Lifecycle, key: &str, tags: &[(String, String)], s: &ObjectSummary, since_ms: i64, index: u32, now: i64, day_ms: i64) -> Option<Act> {
    let expired = lc.rules.iter().any(|r| {
        let Some(days) = r.noncurrent_days else { return false };
        r.enabled
            && r.filter.matches(key, tags, s.size)
            && r.newer_noncurrent.is_none_or(|keep| index >= keep)
            && expiry_ms(&Expiration::Days(days), since_ms, day_ms).is_some_and(|t| t <= now)
    });
    if expired {
        return Some(Act::Remove);
    }
    lc.rules
        .iter()
        .filter(|r| r.enabled && r.filter.matches(key, tags, s.size))
        .flat_map(|r| r.noncurrent_transitions.iter())
        .filter(|t| t.newer_noncurrent.is_none_or(|keep| index >= keep))
        .map(|t| (transition_ms(TransitionWhen::Days(t.days), since_ms, day_ms), &t.storage_class))
        .filter(|(t, _)| *t <= now)
        .max_by_key(|(t, _)| *t)
        .map(|(_, c)| Act::Transition(c.clone()))
}

/// What the walks need done: the worker's acts in transactions, a test's
/// records what it is told.
#[allow(async_fn_in_trait)]
pub(crate) trait Actor {
    /// Does `act` to noncurrent version `s` (at `vkey`) of `key`.
    async fn act(&mut self, key: &str, vkey: &[u8], s: &ObjectSummary, act: Act) -> S3Result<Outcome>;
    /// Commits index bookkeeping (entries dropped or re-keyed, watermarks).
    async fn commit(&mut self, muts: Vec<Mutation>) -> S3Result<()>;
    /// The tags of the version at `vkey`.
    async fn tags(&mut self, vkey: &[u8]) -> S3Result<Vec<(String, String)>>;
    /// Counts entries visited.
    fn visited(&mut self, n: u64);
}

/// Everything the walks share for one bucket on one shard.
pub(crate) struct Walk<'a> {
    pub shard: &'a Shard,
    pub bucket: u64,
    pub lc: &'a Lifecycle,
    pub day_ms: i64,
    pub now: i64,
}

impl Walk<'_> {
    async fn tags<A: Actor>(&self, actor: &mut A, vkey: &[u8], s: &ObjectSummary) -> S3Result<Vec<(String, String)>> {
        if s.delete_marker || !needs_tags(self.lc) {
            return Ok(Vec::new());
        }
        actor.tags(vkey).await
    }

    /// How many noncurrent versions of the key are newer than the one at
    /// `vkey` (at most the largest count a rule keeps: only whether it is
    /// beyond matters).
    fn index_of(&self, vkey: &[u8], key: &[u8]) -> u32 {
        let cap = self
            .lc
            .rules
            .iter()
            .flat_map(|r| r.newer_noncurrent.into_iter().chain(r.noncurrent_transitions.iter().filter_map(|t| t.newer_noncurrent)))
            .max();
        let Some(cap) = cap else { return 0 };
        let newer = self.shard.range(T_VERSIONS, &versions_prefix_bytes(self.bucket, key), None, cap as usize + 1);
        newer.iter().take_while(|(k, _)| k.as_slice() < vkey).count() as u32
    }

    /// The version an `N` or `Q` entry names, with its true time and
    /// count; `None` if it is gone.
    fn truth(&self, e: &index::VersionEntry) -> Option<(String, Vec<u8>, ObjectSummary, i64, u32)> {
        let key = String::from_utf8(e.key.clone()).ok()?;
        let vkey = version_key(self.bucket, &key, &e.version);
        let s = ObjectSummary::decode(&self.shard.get(T_VERSIONS, &vkey)?.summary)?;
        let since = index::successor_ms(self.shard, &vkey)?;
        let idx = self.index_of(&vkey, &e.key);
        Some((key, vkey, s, since, idx))
    }
}

/// The full walk: every noncurrent version of the bucket on the shard.
/// The versions of a key are contiguous and newest first: each one became
/// noncurrent when the one before it (or the current one) was written.
pub(crate) async fn full<A: Actor>(w: &Walk<'_>, actor: &mut A) -> S3Result<()> {
    if !acts(w.lc) {
        return Ok(());
    }
    let mut after: Option<Vec<u8>> = None;
    let mut prev: Option<(Vec<u8>, i64, u32)> = None; // (key, successor mtime, noncurrent index)
    loop {
        let page = w.shard.range(T_VERSIONS, &bucket_prefix(w.bucket), after.as_deref(), PAGE);
        let Some((last, _)) = page.last() else { return Ok(()) };
        after = Some(last.clone());
        actor.visited(page.len() as u64);
        for (k, e) in &page {
            let Some((bid, key_bytes, _)) = parse_version_key(k) else { continue };
            let (Ok(key), Some(s)) = (String::from_utf8(key_bytes.clone()), ObjectSummary::decode(&e.summary)) else { continue };
            if bid != w.bucket {
                continue;
            }
            let (successor_ms, index) = match &prev {
                Some((pk, ms, i)) if *pk == key_bytes => (*ms, i + 1),
                _ => {
                    let cur = w.shard.get(T_OBJECTS, &object_key(w.bucket, &key));
                    let Some(cur) = cur.and_then(|c| ObjectSummary::decode(&c.summary)) else { continue };
                    (cur.mtime_ms, 0)
                }
            };
            prev = Some((key_bytes, s.mtime_ms, index));
            let tags = w.tags(actor, k, &s).await?;
            if let Some(act) = decide(w.lc, &key, &tags, &s, successor_ms, index, w.now, w.day_ms) {
                actor.act(&key, k, &s, act).await?;
            }
        }
        if page.len() < PAGE {
            return Ok(());
        }
        tessera_io::sim::yield_now().await;
    }
}

/// When a noncurrent rule action is due for a version noncurrent since
/// some time.
#[derive(Debug, Clone, Copy)]
enum Due {
    Expire(u32),
    Transition(u32),
}

impl Due {
    fn at(self, since_ms: i64, day_ms: i64) -> i64 {
        match self {
            Due::Expire(d) => expiry_ms(&Expiration::Days(d), since_ms, day_ms).unwrap_or(i64::MAX),
            Due::Transition(d) => transition_ms(TransitionWhen::Days(d), since_ms, day_ms),
        }
    }
}

/// The noncurrent rule actions: (watermark id, due).
fn actions(lc: &Lifecycle) -> Vec<(u32, Due)> {
    let mut out = Vec::new();
    for (i, r) in lc.rules.iter().enumerate().filter(|(_, r): &(usize, &Rule)| r.enabled).take(1 << 14) {
        let base = NC_ACTION | (i as u32) << 8;
        if let Some(d) = r.noncurrent_days {
            out.push((base, Due::Expire(d)));
        }
        for (j, t) in r.noncurrent_transitions.iter().enumerate().take(255) {
            out.push((base | (j as u32 + 1), Due::Transition(t.days)));
        }
    }
    out
}

/// The index-driven walk of the bucket's noncurrent versions on the shard
/// (its backfill done): `K` keys, `Q` retries, then each rule action's `N`
/// entries from its watermark in `marks` (saved per page).
pub(crate) async fn indexed<A: Actor>(w: &Walk<'_>, marks: &mut Marks, actor: &mut A) -> S3Result<()> {
    if !acts(w.lc) {
        return Ok(());
    }
    pushed(w, actor).await?;
    retries(w, actor).await?;
    let lag = WRITE_LAG_MS.min(w.day_ms);
    for (id, due) in actions(w.lc) {
        let mut after = marks.get(id).map(<[u8]>::to_vec);
        loop {
            let page = w.shard.range(T_LCINDEX, &index::prefix(KIND_NONCURRENT, w.bucket), after.as_deref(), PAGE);
            let mut reached = page.len() < PAGE;
            for (k, _) in &page {
                if let Some(e) = parse_version_entry(k) {
                    if e.mtime_ms > w.now - lag || due.at(e.mtime_ms, w.day_ms) > w.now {
                        reached = true;
                        break;
                    }
                    actor.visited(1);
                    visit(w, actor, k, &e).await?;
                }
                after = Some(k.clone());
            }
            if let Some(a) = &after {
                if marks.get(id) != Some(a.as_slice()) {
                    marks.set(id, a.clone());
                    actor.commit(vec![marks.mutation(w.bucket)]).await?;
                }
            }
            if reached {
                break;
            }
            tessera_io::sim::yield_now().await;
        }
    }
    Ok(())
}

/// One `N` entry found due for some action: dropped if its version is
/// gone; acted on as the full walk would with the version's true time and
/// count; re-keyed at the true time if that differs and nothing is due;
/// a `Q` entry if due but not acted on.
async fn visit<A: Actor>(w: &Walk<'_>, actor: &mut A, k: &[u8], e: &index::VersionEntry) -> S3Result<()> {
    let Some((key, vkey, s, since, idx)) = w.truth(e) else {
        return actor.commit(vec![index::delete(k.to_vec())]).await;
    };
    let tags = w.tags(actor, &vkey, &s).await?;
    let act = decide(w.lc, &key, &tags, &s, since, idx, w.now, w.day_ms);
    let outcome = match act {
        Some(act) => actor.act(&key, &vkey, &s, act).await?,
        None => Outcome::Nothing,
    };
    let mut muts = Vec::new();
    if since != e.mtime_ms {
        // Written before a change in the middle of the key's chain: its
        // entry at the true time replaces it (an acted-on removal takes
        // that one with it).
        muts.push(index::delete(k.to_vec()));
        if w.shard.get(T_VERSIONS, &vkey).is_some() {
            muts.extend(index::noncurrent_entry(KIND_NONCURRENT, &vkey, since).map(index::put));
        }
    }
    if outcome == Outcome::Blocked && w.shard.get(T_VERSIONS, &vkey).is_some() {
        muts.extend(index::noncurrent_entry(KIND_NC_RETRY, &vkey, since).map(index::put));
    }
    if muts.is_empty() {
        return Ok(());
    }
    actor.commit(muts).await
}

/// The `Q` entries: each version checked with its true time and count,
/// the entry dropped unless the version is still there and blocked.
async fn retries<A: Actor>(w: &Walk<'_>, actor: &mut A) -> S3Result<()> {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = w.shard.range(T_LCINDEX, &index::prefix(KIND_NC_RETRY, w.bucket), after.as_deref(), PAGE);
        for (k, _) in &page {
            after = Some(k.clone());
            let Some(e) = parse_version_entry(k) else { continue };
            actor.visited(1);
            let outcome = match w.truth(&e) {
                None => Outcome::Nothing,
                Some((key, vkey, s, since, idx)) => {
                    let tags = w.tags(actor, &vkey, &s).await?;
                    match decide(w.lc, &key, &tags, &s, since, idx, w.now, w.day_ms) {
                        Some(act) => actor.act(&key, &vkey, &s, act).await?,
                        None => Outcome::Nothing,
                    }
                }
            };
            if outcome != Outcome::Blocked || w.truth(&e).is_none() {
                actor.commit(vec![index::delete(k.clone())]).await?;
            }
        }
        if page.len() < PAGE {
            return Ok(());
        }
        tessera_io::sim::yield_now().await;
    }
}

/// The `K` entries: each key's versions checked as the full walk does (a
/// new version may have pushed older ones beyond a rule's count), the
/// entry dropped unless an action was blocked. Without count rules they
/// are only dropped.
async fn pushed<A: Actor>(w: &Walk<'_>, actor: &mut A) -> S3Result<()> {
    let counting = counts(w.lc);
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = w.shard.range(T_LCINDEX, &index::prefix(KIND_PUSHED, w.bucket), after.as_deref(), PAGE);
        let mut done = Vec::new();
        for (k, _) in &page {
            after = Some(k.clone());
            actor.visited(1);
            let mut blocked = false;
            if let (true, Ok(key)) = (counting, std::str::from_utf8(&k[9..])) {
                blocked = key_versions(w, actor, key).await?;
            }
            if !blocked {
                done.push(index::delete(k.clone()));
            }
        }
        if !done.is_empty() {
            actor.commit(done).await?;
        }
        if page.len() < PAGE {
            return Ok(());
        }
        tessera_io::sim::yield_now().await;
    }
}

/// The full walk of one key's noncurrent versions; whether an action was
/// blocked.
async fn key_versions<A: Actor>(w: &Walk<'_>, actor: &mut A, key: &str) -> S3Result<bool> {
    let Some(cur) = w.shard.get(T_OBJECTS, &object_key(w.bucket, key)).and_then(|c| ObjectSummary::decode(&c.summary)) else {
        return Ok(false);
    };
    let prefix = versions_prefix_bytes(w.bucket, key.as_bytes());
    let (mut since, mut idx, mut blocked) = (cur.mtime_ms, 0u32, false);
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = w.shard.range(T_VERSIONS, &prefix, after.as_deref(), PAGE);
        actor.visited(page.len() as u64);
        for (k, e) in &page {
            after = Some(k.clone());
            let Some(s) = ObjectSummary::decode(&e.summary) else { continue };
            let tags = w.tags(actor, k, &s).await?;
            if let Some(act) = decide(w.lc, key, &tags, &s, since, idx, w.now, w.day_ms) {
                blocked |= actor.act(key, k, &s, act).await? == Outcome::Blocked;
            }
            (since, idx) = (s.mtime_ms, idx + 1);
        }
        if page.len() < PAGE {
            return Ok(blocked);
        }
        tessera_io::sim::yield_now().await;
    }
}

#[cfg(test)]
mod tests;
