//! Healing of format 2 disks, the passes (ARCHITECTURE.md, "Restart,
//! missing and empty dirs, healing"; the state is `heal_state`).
//!
//! One task per core heals the lanes the core owns, one after another,
//! for each healing member of each lane: it walks every table of the lane
//! (the primary's keys and the healing member's, merged, in key order),
//! and for each key, under the key's transaction lock on the primary
//! (every writer of the lane passes it):
//! - the primary has no record: the member's record, if any, is removed
//!   (deleted while the disk was away);
//! - the member's record is the primary's (same meta and summary) and
//!   reads back whole: verified;
//! - else the record is rebuilt on the member: each striped piece's block
//!   stream for the member's position decoded from the other members and
//!   coded again, plain extents and inline bodies copied from the
//!   primary, committed with the primary's meta (the v5 envelope is the
//!   same on every member); then **read back and verified** (every block
//!   of the stream checked: tag, stripe, index, checksum; plain bytes
//!   compared with the primary's).
//!
//! After each page of keys the lane's cursor (table, last key) is
//! committed in `T_HEAL` on the member under the heal's epoch, so a
//! restart resumes there; writes that land meanwhile reach the member
//! anyway (it takes every write). A lane counts as healed only when a
//! pass reached its end with every record verified; a pass with any
//! failure starts over. The disk leaves the healing state when all its
//! lanes (over all cores) are healed. Throttled to `--heal-bytes-per-sec`
//! (split between the cores) over the bytes written and read back.

use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_io::{Body, DataBuf, Extent, IoError, Mutation, Shard, Stored};

use crate::heal_state::{Lacking, SAMPLE_PER_LANE};
use crate::holder::Holder;
use crate::lanes::Mirrors;
use crate::meta::T_HEAL;
use crate::sets_open::DiskHealth;
use crate::shards::LocalShard;
use crate::stripes::{block_at, block_is_good, block_range, Envelope, PieceInfo, VIRTUAL_SEGMENT};

/// Keys per page of the walk (a cursor commit after each).
const PAGE: usize = 256;
/// A cursor commit also after a key once this long passed since the last.
const CURSOR_EVERY: Duration = Duration::from_secs(1);
/// Attempts per key before the pass counts it as a failure.
const KEY_ATTEMPTS: usize = 3;
/// Wait before a lane's pass is run again after a failure.
const RETRY_WAIT: Duration = Duration::from_secs(2);
const CURSOR_V1: u8 = 1;

/// Bytes-per-second pacing of one core's healer.
pub(crate) struct Throttle {
    rate: u64,
    start: Instant,
    bytes: u64,
}

impl Throttle {
    pub(crate) fn new(rate: u64) -> Self {
        Throttle { rate, start: Instant::now(), bytes: 0 }
    }

    pub(crate) async fn spend(&mut self, n: u64) {
        if self.rate == 0 {
            return;
        }
        self.bytes += n;
        let due = Duration::from_secs_f64(self.bytes as f64 / self.rate as f64);
        let elapsed = self.start.elapsed();
        if due > elapsed {
            monoio::time::sleep(due - elapsed).await;
        }
    }
}

/// A lane's heal cursor: where the pass is, or that it is done.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    done: bool,
    table: u8,
    after: Option<Vec<u8>>,
}

impl Cursor {
    fn start() -> Self {
        Cursor { done: false, table: 0, after: None }
    }

    fn encode(&self) -> Vec<u8> {
        let mut v = vec![CURSOR_V1, u8::from(self.done), self.table];
        if let Some(k) = &self.after {
            v.extend_from_slice(k);
        }
        v
    }

    fn decode(b: &[u8]) -> Option<Cursor> {
        match b {
            [CURSOR_V1, done @ (0 | 1), table] => Some(Cursor { done: *done == 1, table: *table, after: None }),
            [CURSOR_V1, done @ (0 | 1), table, key @ ..] => {
                Some(Cursor { done: *done == 1, table: *table, after: Some(key.to_vec()) })
            }
            _ => None,
        }
    }
}

fn cursor_key(epoch: u128) -> Vec<u8> {
    let mut k = b"cursor/".to_vec();
    k.extend_from_slice(&epoch.to_be_bytes());
    k
}

async fn load_cursor(h: &Shard, epoch: u128) -> Cursor {
    match h.load(T_HEAL, &cursor_key(epoch)).await {
        Ok(Some(s)) => Cursor::decode(&s.meta).unwrap_or_else(Cursor::start),
        _ => Cursor::start(),
    }
}

async fn save_cursor(h: &Shard, epoch: u128, c: &Cursor) -> Result<(), IoError> {
    h.commit(vec![Mutation::Put {
        table: T_HEAL,
        key: cursor_key(epoch),
        summary: Vec::new(),
        meta: c.encode(),
        body: Body::Inline(Vec::new()),
    }])
    .await
    .map(|_| ())
}

/// One lane's healing member.
struct Job {
    lane: u32,
    local: Rc<LocalShard>,
    mirrors: Rc<Mirrors>,
    member: usize,
    /// The member's shard (healing walks members on this core only).
    shard: Shard,
    disk: usize,
}

/// The healer of one core: runs until every healing disk's lanes on this
/// core are healed (or the disk went offline).
pub async fn run(health: Arc<DiskHealth>, local: Vec<Option<Rc<LocalShard>>>, rate_per_core: u64) {
    let mut jobs = Vec::new();
    for (lane, l) in local.iter().enumerate() {
        let Some(l) = l else { continue };
        let Some(m) = l.mirrors() else { continue };
        for (i, (disk, h)) in m.members.iter().enumerate() {
            let Some(shard) = h.local() else { continue };
            if health.healing(*disk) && health.online(*disk) {
                jobs.push(Job { lane: lane as u32, local: l.clone(), mirrors: m.clone(), member: i, shard: shard.clone(), disk: *disk });
            }
        }
    }
    if jobs.is_empty() {
        return;
    }
    // The inventory first, so the report knows every lane's backlog.
    for j in &jobs {
        let lacking = scan_lacking(&j.local.shard, &j.shard).await;
        health.disks[j.disk].heal.with_lacking(|l| l.insert(j.lane, lacking));
    }
    let mut throttle = Throttle::new(rate_per_core);
    for j in jobs {
        let prog = &health.disks[j.disk].heal;
        let Some(mark) = prog.mark else { continue };
        loop {
            if !health.online(j.disk) || !prog.is_healing() {
                break;
            }
            match heal_lane(&j, &health, mark.epoch, &mut throttle).await {
                Ok(true) => {
                    prog.with_lacking(|l| l.insert(j.lane, Lacking::default()));
                    let healed = prog.lanes_healed.fetch_add(1, Relaxed) + 1;
                    tracing::info!(lane = j.lane, disk = j.disk, healed, of = prog.lanes_total, "lane healed and verified");
                    if healed >= prog.lanes_total {
                        finish(&j, &health).await;
                    }
                    break;
                }
                Ok(false) => {
                    tracing::warn!(lane = j.lane, disk = j.disk, "heal pass left records unverified; the lane's pass runs again");
                }
                Err(e) => {
                    tracing::warn!(lane = j.lane, disk = j.disk, error = %e, "heal pass stopped; the lane's pass runs again");
                }
            }
            monoio::time::sleep(RETRY_WAIT).await;
            if let Err(e) = save_cursor(&j.shard, mark.epoch, &Cursor::start()).await {
                tracing::warn!(error = %e, "cannot reset a heal cursor");
            }
        }
    }
}

/// Every lane of the disk is healed: its cursors go, then its mark.
async fn finish(j: &Job, health: &DiskHealth) {
    // The cursors of this core's lanes of the disk (other cores' lanes
    // keep theirs: a few bytes each, replaced by the next heal's epoch).
    let h = &j.shard;
    let keys: Vec<Vec<u8>> = h.range(T_HEAL, b"", None, usize::MAX).into_iter().map(|(k, _)| k).collect();
    if !keys.is_empty() {
        let muts = keys.into_iter().map(|key| Mutation::Delete { table: T_HEAL, key }).collect();
        if let Err(e) = h.commit(muts).await {
            tracing::warn!(error = %e, "cannot drop heal cursors");
        }
    }
    health.healed(j.disk);
}

fn shown(table: u8, key: &[u8]) -> String {
    format!("table {table}: {}", key.escape_ascii())
}

/// Whether the member lacks the primary's record of a key (by the index:
/// no entry, or another summary).
fn lacks(p: &Shard, h: &Shard, table: u8, key: &[u8]) -> bool {
    match p.get(table, key) {
        None => false,
        Some(e) => h.get(table, key).is_none_or(|x| x.summary != e.summary),
    }
}

/// Tables to walk: every one with keys on either side but the cursors'.
pub(crate) fn tables(p: &Shard, h: &Shard, from: u8) -> Vec<u8> {
    (from..=u8::MAX).filter(|&t| t != T_HEAL && (!p.is_empty(t) || !h.is_empty(t))).collect()
}

async fn scan_lacking(p: &Shard, h: &Shard) -> Lacking {
    let mut out = Lacking::default();
    for t in tables(p, h, 0) {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = p.range(t, b"", after.as_deref(), 4096);
            for (k, _) in &page {
                if lacks(p, h, t, k) {
                    out.count += 1;
                    if out.sample.len() < SAMPLE_PER_LANE {
                        out.sample.insert(shown(t, k));
                    }
                }
            }
            match page.last() {
                Some((k, _)) if page.len() == 4096 => after = Some(k.clone()),
                _ => break,
            }
            monoio::time::sleep(Duration::ZERO).await;
        }
    }
    out
}

/// One pass over a lane from its cursor; Ok(true) when it reached the
/// end with every record verified.
async fn heal_lane(j: &Job, health: &DiskHealth, epoch: u128, throttle: &mut Throttle) -> Result<bool, IoError> {
    let p = &j.local.shard;
    let h = &j.shard;
    let prog = &health.disks[j.disk].heal;
    let mut cur = load_cursor(h, epoch).await;
    if cur.done {
        tracing::info!(lane = j.lane, disk = j.disk, "lane already healed and verified in this heal's epoch");
        return Ok(true);
    }
    if cur.after.is_none() && cur.table == 0 {
        tracing::info!(lane = j.lane, disk = j.disk, "heal pass starts");
    } else {
        tracing::info!(lane = j.lane, disk = j.disk, table = cur.table, "heal pass resumes at its cursor");
    }
    let mut clean = true;
    let mut saved = Instant::now();
    for t in tables(p, h, cur.table) {
        let mut after = if t == cur.table { cur.after.clone() } else { None };
        loop {
            let a = p.range(t, b"", after.as_deref(), PAGE);
            let b = h.range(t, b"", after.as_deref(), PAGE);
            let last = |v: &Vec<(Vec<u8>, tessera_io::Entry)>| v.last().map(|x| x.0.clone());
            let bound = match (a.len() == PAGE, b.len() == PAGE) {
                (true, true) => last(&a).min(last(&b)),
                (true, false) => last(&a),
                (false, true) => last(&b),
                (false, false) => None,
            };
            let keys: BTreeSet<Vec<u8>> = a
                .into_iter()
                .chain(b)
                .map(|(k, _)| k)
                .filter(|k| bound.as_ref().is_none_or(|b| k <= b))
                .collect();
            let Some(end) = keys.last().cloned() else { break };
            for k in keys {
                if !health.online(j.disk) {
                    return Err(IoError::BelowQuorum);
                }
                let was_lacking = lacks(p, h, t, &k);
                let mut ok = false;
                for attempt in 0..KEY_ATTEMPTS {
                    match heal_key(j, health, t, &k, throttle).await {
                        Ok(true) => {
                            ok = true;
                            break;
                        }
                        Ok(false) => tracing::warn!(table = t, key = %k.escape_ascii(), attempt, "a healed record did not verify"),
                        Err(e) => tracing::warn!(table = t, key = %k.escape_ascii(), attempt, error = %e, "a record could not be healed"),
                    }
                    if !health.online(j.disk) {
                        return Err(IoError::BelowQuorum);
                    }
                }
                if ok && clean && saved.elapsed() >= CURSOR_EVERY {
                    save_cursor(h, epoch, &Cursor { done: false, table: t, after: Some(k.clone()) })
                        .await
                        .map_err(|e| fail(j, health, e))?;
                    saved = Instant::now();
                }
                if ok {
                    if was_lacking {
                        prog.with_lacking(|l| {
                            let e = l.entry(j.lane).or_default();
                            e.count = e.count.saturating_sub(1);
                            e.sample.remove(&shown(t, &k));
                        });
                    }
                } else {
                    clean = false;
                    prog.failures.fetch_add(1, Relaxed);
                    prog.with_lacking(|l| {
                        let e = l.entry(j.lane).or_default();
                        if !was_lacking {
                            e.count += 1;
                        }
                        if e.sample.len() < SAMPLE_PER_LANE {
                            e.sample.insert(shown(t, &k));
                        }
                    });
                }
            }
            after = Some(end);
            cur = Cursor { done: false, table: t, after: after.clone() };
            if clean {
                // A pass with a failure behind its cursor must not resume
                // past it: it starts over instead.
                save_cursor(h, epoch, &cur).await.map_err(|e| fail(j, health, e))?;
                saved = Instant::now();
            }
        }
    }
    if !clean {
        return Ok(false);
    }
    save_cursor(h, epoch, &Cursor { done: true, table: u8::MAX, after: None }).await.map_err(|e| fail(j, health, e))?;
    Ok(true)
}

/// A write to the healing member failed: it goes offline (and stale).
fn fail(j: &Job, health: &DiskHealth, e: IoError) -> IoError {
    tracing::error!(disk = j.disk, error = %e, "the healing disk failed a write; healing stops");
    health.fail(j.disk);
    e
}

/// Heals one key on the member; Ok(true) when its record is verified.
async fn heal_key(j: &Job, health: &DiskHealth, table: u8, key: &[u8], throttle: &mut Throttle) -> Result<bool, IoError> {
    let prog = &health.disks[j.disk].heal;
    let tally = Tally {
        removed: &prog.records_removed,
        rebuilt: &prog.versions_rebuilt,
        bytes: &prog.bytes_rebuilt,
        verified: &prog.records_verified,
    };
    mend_key(&j.local, &j.mirrors, Target::Member(j.member), table, key, &tally, throttle, &|e| fail(j, health, e)).await
}

/// What mending a record counts into: a heal's progress, or the scrub
/// repair's counters.
pub(crate) struct Tally<'a> {
    pub removed: &'a AtomicU64,
    pub rebuilt: &'a AtomicU64,
    pub bytes: &'a AtomicU64,
    pub verified: &'a AtomicU64,
}

/// Which shard of a lane a record is mended on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target {
    Primary,
    /// Index in `Mirrors::members`.
    Member(usize),
}

/// Mends one key on `target`, under the key's transaction lock on the
/// primary: its record is verified against the primary's (read back
/// whole), else rebuilt (striped pieces decoded from the other members
/// and coded again, plain extents and inline bodies copied from the
/// primary), committed with the primary's meta and summary, and read back
/// and verified. A member's record the primary lacks is removed. Ok(true)
/// when the record is verified; `on_write_err` maps a failed write to the
/// target (a healer takes the disk out of service).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn mend_key(
    local: &Rc<LocalShard>,
    m: &Mirrors,
    target: Target,
    table: u8,
    key: &[u8],
    tally: &Tally<'_>,
    throttle: &mut Throttle,
    on_write_err: &dyn Fn(IoError) -> IoError,
) -> Result<bool, IoError> {
    // The locks a request writing the row takes (its object key, a part's
    // upload), not the row alone: a versioned delete between this load and
    // the member's commit would leave the member a row the primary lacks.
    let _lock = local.lock(crate::restripe::request_locks(table, key)).await;
    let p = &local.shard;
    let (h, pos) = match target {
        Target::Primary => (Holder::Local(p.clone()), m.primary_position()),
        Target::Member(i) => (m.members[i].1.clone(), m.members[i].0 % m.set_disks()),
    };
    let h = &h;
    let Some(pr) = p.load(table, key).await? else {
        let there = match h {
            Holder::Local(s) => s.get(table, key).is_some(),
            Holder::Remote(r) => r.load(table, key).await.map_err(on_write_err)?.is_some(),
        };
        if matches!(target, Target::Member(_)) && there {
            h.commit(vec![Mutation::Delete { table, key: key.to_vec() }]).await.map_err(on_write_err)?;
            tally.removed.fetch_add(1, Relaxed);
        }
        return Ok(true);
    };
    if let Ok(Some(hr)) = h.load(table, key).await {
        if verify(p, m, h, pos, &pr, &hr, throttle).await? {
            tally.verified.fetch_add(1, Relaxed);
            return Ok(true);
        }
    }
    // Rebuild: the record with its pieces as handles over every member.
    let Some(form) = crate::stripes_io::load(p, table, key).await? else { return Ok(true) };
    let body = match (&pr.body, &form.body) {
        (Body::Inline(d), _) => Body::Inline(d.clone()),
        (Body::Extents(raw), Body::Extents(handles)) if raw.len() == handles.len() => {
            let mut out = Vec::with_capacity(raw.len());
            for (r, hx) in raw.iter().zip(handles) {
                let bytes = if hx.segment == VIRTUAL_SEGMENT {
                    let piece = m.piece(hx).ok_or(IoError::Moved)?;
                    match m.piece_position(piece.n(), pos) {
                        // Written before the lane grew to this position:
                        // the holder keeps the record, with no blocks of it.
                        None => Vec::new(),
                        Some(at) => crate::stripes_io::rebuild_streams(p, m, &piece, &[at]).await?.pop().map(|x| x.1).unwrap_or_default(),
                    }
                } else {
                    p.read_extent(r, 0..r.len).await?
                };
                let n = bytes.len() as u64;
                let mut b = DataBuf::new(bytes.len().max(1));
                b.extend_from_slice(&bytes);
                out.push(h.write_data(b).await.map_err(on_write_err)?);
                tally.bytes.fetch_add(n, Relaxed);
                throttle.spend(n).await;
            }
            Body::Extents(out)
        }
        _ => return Err(IoError::Moved),
    };
    h.commit(vec![Mutation::Put { table, key: key.to_vec(), summary: pr.summary.clone(), meta: pr.meta.clone(), body }])
        .await
        .map_err(on_write_err)?;
    tally.rebuilt.fetch_add(1, Relaxed);
    tracing::debug!(table, key = %key.escape_ascii(), ?target, "record rebuilt");
    // Written is not there: read it back (the primary's own record was
    // just replaced: read it again as the reference).
    let pr = match target {
        Target::Primary => match p.load(table, key).await? {
            Some(x) => x,
            None => return Ok(false),
        },
        Target::Member(_) => pr,
    };
    let Some(hr) = h.load(table, key).await? else { return Ok(false) };
    let good = verify(p, m, h, pos, &pr, &hr, throttle).await?;
    if good {
        tally.verified.fetch_add(1, Relaxed);
    }
    Ok(good)
}

/// Whether the member's record `hr` is the primary's `pr`, whole: the
/// same meta and summary, the same inline body, every block of each
/// striped piece good for the member's position (`pos` in the lane; a
/// piece of another width has its blocks where `Mirrors::piece_position`
/// says), plain copies equal.
async fn verify(p: &Shard, m: &Mirrors, h: &Holder, pos: usize, pr: &Stored, hr: &Stored, throttle: &mut Throttle) -> Result<bool, IoError> {
    if hr.meta != pr.meta || hr.summary != pr.summary {
        return Ok(false);
    }
    let (pa, ha) = match (&pr.body, &hr.body) {
        (Body::Inline(a), Body::Inline(b)) => return Ok(a == b),
        (Body::Extents(a), Body::Extents(b)) if a.len() == b.len() => (a, b),
        _ => return Ok(false),
    };
    let env = match Envelope::unwrap(&pr.meta) {
        Ok(e) => e.map(|x| x.0),
        Err(_) => return Ok(false),
    };
    for (idx, (pe, he)) in pa.iter().zip(ha).enumerate() {
        let info = env.as_ref().map_or(PieceInfo::Plain { len: pe.len }, |e| e.pieces.get(idx).copied().unwrap_or(PieceInfo::Plain { len: pe.len }));
        let ok = match info {
            PieceInfo::Plain { .. } => he.len == pe.len && read(h, he).await? == Some(p.read_extent(pe, 0..pe.len).await?),
            PieceInfo::Striped { len, tag, rot } => {
                let Some(params) = env.as_ref().and_then(Envelope::params) else { return Ok(false) };
                let n = params.total_blocks();
                let Some(at) = m.piece_position(n, pos) else {
                    // A piece written before the lane grew to this
                    // position: the holder has no blocks of it.
                    if he.len != 0 {
                        return Ok(false);
                    }
                    continue;
                };
                let b = block_at(at, rot, n);
                let stripes = params.stripe_count(len);
                let end = stripes.checked_sub(1).map_or(0, |t| block_range(&params, len, t).end);
                if he.len != end {
                    return Ok(false);
                }
                let Some(bytes) = read(h, he).await? else { return Ok(false) };
                (0..stripes).all(|t| {
                    let r = block_range(&params, len, t);
                    bytes.get(r.start as usize..r.end as usize).is_some_and(|x| block_is_good(&params, x, tag, t, b))
                })
            }
        };
        throttle.spend(he.len).await;
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A member's extent, whole; None when it cannot be read (the record is
/// rebuilt). Moved is passed on: the key is tried again.
async fn read(h: &Holder, e: &Extent) -> Result<Option<Vec<u8>>, IoError> {
    match h.read_extent(e, 0..e.len).await {
        Ok(b) => Ok(Some(b)),
        Err(IoError::Moved) => Err(IoError::Moved),
        Err(err) => {
            tracing::warn!(error = %err, "a healing member's extent cannot be read; it is rebuilt");
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        for c in [
            Cursor::start(),
            Cursor { done: false, table: 4, after: Some(b"k\x00ey".to_vec()) },
            Cursor { done: true, table: 255, after: None },
        ] {
            assert_eq!(Cursor::decode(&c.encode()), Some(c));
        }
        assert_eq!(Cursor::decode(&[2, 0, 0]), None);
        assert_eq!(Cursor::decode(&[1, 7, 0]), None);
    }
}
