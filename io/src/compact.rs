//! Space reclamation: sealed segments with much garbage are emptied by
//! copying what is still live to the end of the log, then retired (a retire
//! op, then the file is removed).
//!
//! - Liveness: every index entry knows its footprint (its share of a commit
//!   entry and its data records, by segment), so each segment's live bytes
//!   are kept up to date as entries are replaced and deleted.
//! - Victims: sealed, fully durable segments with no uncommitted data
//!   records (an upload in progress), whose garbage ratio passes the
//!   threshold, chosen by LFS cost-benefit: (1 − u)·age / (1 + u).
//! - Live entries of the victim are found by a sweep of the index (in
//!   slices, yielding between them). Each is read, its data in the victim
//!   copied to new data records, and a copy of its operation committed that
//!   keeps its seq. A copy is staged only if, at that very moment, the
//!   entry still points where it was read and no write of the key is in
//!   flight; otherwise the key changed and the copy is dropped.
//! - Tombstones: a delete stays needed while a segment that may hold a
//!   record of the key's deleted incarnation exists (from the key's
//!   `min_seg` to the delete's origin), or while a kept checkpoint is older
//!   than it: those are copied too. Retire ops likewise, while a kept
//!   checkpoint is older than them.
//! - A segment whose records cannot all be read is not retired (nothing it
//!   holds is dropped on a guess); the error is counted.
//! - A victim emptied while a read-modify-write hold older than its moves
//!   is alive (`Shard::hold`: a transaction that may commit extents it read
//!   before the moves) is retired only after those holds end (`Deferred`),
//!   by a later pass; until then it is no victim.
//! - Throttled by bytes copied per second.

use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::codec::{self, Body, Extent, Op, OpView};
use crate::data;
use crate::error::IoError;
use crate::format::{
    align_entry, align_up, u64_at, EntryHeader, Kind, Pos, RecordHeader, BLOCK, ENTRY_HEADER_BYTES, HEADER_BYTES,
};
use crate::index::FullEntry;
use crate::log::Mode;
use crate::shard::Inner;
use crate::storage::DiskFile;

#[derive(Clone, Debug)]
pub struct CompactionOptions {
    pub enabled: bool,
    /// Smallest fraction of garbage in a segment that makes it a victim.
    pub min_garbage_ratio: f64,
    /// Most bytes copied per second.
    pub rate_bytes_per_sec: u64,
    /// How often the compactor looks for a victim.
    pub interval: Duration,
    /// Sealed segments below which the log is too small for new data to
    /// wait for compaction, whatever its amplification.
    pub stall_min_segments: u64,
}

impl Default for CompactionOptions {
    fn default() -> Self {
        CompactionOptions {
            enabled: true,
            min_garbage_ratio: 0.3,
            rate_bytes_per_sec: 128 << 20,
            interval: Duration::from_secs(1),
            stall_min_segments: STALL_MIN_SEGMENTS,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct CompactionStats {
    pub passes: u64,
    pub segments_retired: u64,
    pub entries_moved: u64,
    /// Commit entries read to move their live operations (each once, for
    /// all of them).
    pub entries_read: u64,
    pub data_bytes_moved: u64,
    pub tombstones_kept: u64,
    pub tombstones_dropped: u64,
    pub bytes_freed: u64,
    /// Victims left alone because a record could not be read.
    pub victims_skipped: u64,
    /// Foreground data writes that waited for compaction (over the stall mark).
    pub stalled_writes: u64,
    /// Of those, writes that gave up waiting after `MAX_STALL`.
    pub stalls_timed_out: u64,
    /// Emptied victims whose retirement waited for older holds to end.
    pub retires_deferred: u64,
    /// Victims scanned through their listed batches only (`scan_listed`)
    /// instead of record by record.
    pub listed_scans: u64,
    /// Bytes retired segment files still hold while they are removed a
    /// step at a time (`reap::reap`); filled in by `Shard::stats`.
    pub retired_bytes_pending: u64,
}

/// A victim whose live entries were all moved, to retire once every hold
/// with a ticket below `mark` has ended (those may have read extents in it
/// before the moves, and commit them).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deferred {
    pub victim: u32,
    pub mark: u64,
}

/// Whether a hold taken before `mark` is still alive.
fn held_before(inner: &Inner, mark: u64) -> bool {
    inner.holds.borrow().first().is_some_and(|&h| h < mark)
}

/// Entries copied per commit.
const MOVES_PER_COMMIT: usize = 256;
/// Most bytes of one commit entry of moves (an entry of one operation may
/// be larger): a read of a moved object reads its whole entry, so one of
/// 256 moved 4 KiB objects made each such read a 1 MiB read.
const MOVE_ENTRY_BYTES: usize = 32 << 10;
/// Index entries examined per slice of the sweep.
const SWEEP_SLICE: usize = 4096;
/// Largest piece of data copied at once.
const COPY_PIECE: u64 = 1 << 20;

pub(crate) async fn run(weak: Weak<Inner>) {
    loop {
        let (backend, interval) = match weak.upgrade() {
            Some(inner) => (inner.backend.clone(), inner.opts.compaction.interval),
            None => return,
        };
        backend.sleep(interval).await;
        let Some(inner) = weak.upgrade() else { return };
        if inner.log.borrow().mode != Mode::Writable {
            continue;
        }
        // Paced against the writers: while the log holds much more than
        // its live bytes, victims follow each other without the interval's
        // pause (each pass still copies at the throttled rate). One victim
        // per interval could not keep up with a disk's worth of overwrites.
        let mut passes = 0;
        loop {
            match compact_once(&inner, false).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(shard = inner.id, error = %e, "compaction pass failed");
                    break;
                }
            }
            passes += 1;
            if passes >= MAX_PASSES_IN_A_ROW || !behind(&inner) || inner.log.borrow().mode != Mode::Writable {
                break;
            }
            crate::sim::yield_now().await;
        }
    }
}

/// Space amplification (log bytes over live bytes) above which compaction
/// runs back to back instead of once per interval.
const BEHIND_AMPLIFICATION: f64 = 1.25;
/// Victims taken in one go before the interval's pause (a bound, so a log
/// that cannot get under the threshold does not keep the core busy).
const MAX_PASSES_IN_A_ROW: u32 = 64;

/// Whether the log holds much more than it needs to.
fn behind(inner: &Inner) -> bool {
    let (total, live) = inner.log.borrow().space();
    total as f64 > live.max(1) as f64 * BEHIND_AMPLIFICATION
}

/// Space amplification of the sealed segments above which new data waits
/// for compaction (the bound is 1.5x; the active segment, mostly
/// live, adds little to the ratio on a log of many segments).
pub(crate) const STALL_AMPLIFICATION: f64 = 1.4;
/// Sealed bytes, in segments, below which a log is too small to stall for
/// (the default of `CompactionOptions::stall_min_segments`).
pub const STALL_MIN_SEGMENTS: u64 = 4;
/// Garbage ratio a victim needs while the log is over the stall mark: any
/// segment that frees something is worth it then (the writers wait).
const STALLED_MIN_GARBAGE: f64 = 0.1;
/// Longest one write waits for compaction: a bound, so a compactor that
/// cannot make progress (pinned victims, read errors) never stops writes.
pub(crate) const MAX_STALL: Duration = Duration::from_secs(2);
/// How often a waiting write looks again.
const STALL_POLL: Duration = Duration::from_millis(2);

/// Whether the sealed segments hold more than `STALL_AMPLIFICATION` times
/// their live bytes (and are enough to matter).
fn over_stall_mark(inner: &Inner) -> bool {
    let log = inner.log.borrow();
    let active = log.active_segment();
    let (total, live) = log
        .segments
        .iter()
        .filter(|(n, _)| Some(**n) != active)
        .fold((0u64, 0u64), |(t, l), (_, s)| (t + s.end, l + s.live.min(s.end)));
    total > inner.opts.segment_size_bytes.saturating_mul(inner.opts.compaction.stall_min_segments)
        && total as f64 > live.max(1) as f64 * STALL_AMPLIFICATION
}

/// Whether new data should wait: over the stall mark with a victim to
/// compact. Both walk the shard's segments, so the answer is kept for one
/// `STALL_POLL` and shared by every write that asks in that time (every
/// write asks once, and a waiting one every poll).
fn should_stall(inner: &Inner) -> bool {
    let now = inner.backend.now_ms();
    if let Some((at, answer)) = inner.stall_check.get() {
        if now.saturating_sub(at) < STALL_POLL.as_millis() as u64 {
            return answer;
        }
    }
    let over = over_stall_mark(inner);
    let answer = over && choose_victim_at(inner, false, over).is_some();
    inner.stall_check.set(Some((now, answer)));
    answer
}

/// Admission control for new data: while the log is over the stall mark
/// and compaction has a victim, a foreground write waits (up to
/// `MAX_STALL`) for it to free space, so that a steady overwrite workload
/// cannot outrun compaction and amplification stays bounded. Deletes and
/// compaction's own writes never wait.
pub(crate) async fn admit(inner: &Inner) {
    if !inner.opts.background || !inner.opts.compaction.enabled || !should_stall(inner) {
        return;
    }
    let start = inner.backend.now_ms();
    let mut counted = false;
    while should_stall(inner) && inner.log.borrow().mode == Mode::Writable {
        let waited = inner.backend.now_ms().saturating_sub(start);
        if waited >= MAX_STALL.as_millis() as u64 {
            inner.compaction.borrow_mut().stalls_timed_out += 1;
            break;
        }
        if !counted {
            inner.compaction.borrow_mut().stalled_writes += 1;
            counted = true;
        }
        inner.backend.sleep(STALL_POLL).await;
    }
}

/// One pass: picks a victim and retires it. Ok(false): nothing to do.
/// `force` takes any sealed segment with garbage, whatever its ratio.
pub(crate) async fn compact_once(inner: &Rc<Inner>, force: bool) -> Result<bool, IoError> {
    if let Some(victim) = ready_deferred(inner) {
        return retire_emptied(inner, victim).await;
    }
    let Some(victim) = choose_victim(inner, force) else {
        return Ok(false);
    };
    inner.compaction.borrow_mut().passes += 1;
    tracing::debug!(shard = inner.id, segment = victim, "compaction pass starts");
    {
        let mut log = inner.log.borrow_mut();
        log.emptying.insert(victim);
        log.rereferenced.remove(&victim);
    }
    let Some(tombstones) = scan_deletes(inner, victim).await? else {
        inner.compaction.borrow_mut().victims_skipped += 1;
        return Ok(false);
    };
    if !move_live(inner, victim).await? {
        inner.compaction.borrow_mut().victims_skipped += 1;
        return Ok(false);
    }
    tracing::debug!(shard = inner.id, segment = victim, "compaction moves done");
    for chunk in tombstones.chunks(MOVES_PER_COMMIT) {
        inner.commit_ops(chunk.to_vec()).await?;
    }
    inner.compaction.borrow_mut().tombstones_kept += tombstones.iter().filter(|o| matches!(o, Op::Delete { .. })).count() as u64;
    // A transaction that read extents in the victim before its moves may
    // still commit them: retire it once such holds have ended.
    let mark = inner.next_hold.get();
    if held_before(inner, mark) {
        // One entry per victim (two passes at once may both defer it: an
        // explicit one beside the background's), with the later mark.
        let mut deferred = inner.deferred.borrow_mut();
        let mark = deferred.iter().filter(|d| d.victim == victim).map(|d| d.mark).fold(mark, u64::max);
        deferred.retain(|d| d.victim != victim);
        deferred.push(Deferred { victim, mark });
        drop(deferred);
        inner.compaction.borrow_mut().retires_deferred += 1;
        return Ok(true);
    }
    retire_emptied(inner, victim).await
}

/// The first deferred victim no older hold keeps any more (taken off the
/// list; one that vanished meanwhile, cut away by a reset, is dropped).
/// One a commit named an extent of since its pass began is dropped too:
/// a hold taken after its moves may have read that reference, so a new
/// pass (and mark) comes first. (Found by the simulation, seed 3756: a
/// hold's commit put an extent of a deferred victim back under a key,
/// a newer hold read it, the key was overwritten, and the victim was
/// retired under the newer hold, whose commit was then refused.)
fn ready_deferred(inner: &Inner) -> Option<u32> {
    let mut deferred = inner.deferred.borrow_mut();
    let mut log = inner.log.borrow_mut();
    deferred.retain(|d| log.segments.contains_key(&d.victim));
    loop {
        let i = deferred.iter().position(|d| !held_before(inner, d.mark))?;
        let victim = deferred.remove(i).victim;
        if !log.rereferenced.remove(&victim) {
            return Some(victim);
        }
    }
}

/// Retires a victim whose live entries were moved, if nothing points into
/// it now. (Something may again: a hold's commit of extents it read there
/// makes it live, and a later pass takes it as a victim anew.)
async fn retire_emptied(inner: &Rc<Inner>, victim: u32) -> Result<bool, IoError> {
    let freed = inner.log.borrow().segments.get(&victim).map_or(0, |s| s.end);
    // Nothing may point into the victim any more, nor be about to (a
    // commit staged with data in it is pinned until applied).
    if !retirable(inner, victim) || !sweep(inner, victim).await.is_empty() {
        return Ok(false);
    }
    // Named again since its pass began (see `ready_deferred`): the next
    // pass takes it anew. (No await from here to the retire op's staging.)
    if inner.log.borrow().rereferenced.contains(&victim) {
        return Ok(false);
    }
    retire(inner, victim).await?;
    let mut st = inner.compaction.borrow_mut();
    st.segments_retired += 1;
    st.bytes_freed += freed;
    Ok(true)
}

fn choose_victim(inner: &Inner, force: bool) -> Option<u32> {
    choose_victim_at(inner, force, over_stall_mark(inner))
}

/// `choose_victim` with the stall mark already known (`over`).
fn choose_victim_at(inner: &Inner, force: bool, over: bool) -> Option<u32> {
    let log = inner.log.borrow();
    let active = log.active_segment()?;
    let durable = log.durable_mark();
    let now_seq = log.next_seq;
    let free = inner.free_estimate();
    let min_garbage = if over {
        STALLED_MIN_GARBAGE.min(inner.opts.compaction.min_garbage_ratio)
    } else {
        inner.opts.compaction.min_garbage_ratio
    };
    let mut best: Option<(f64, u32)> = None;
    for (&n, s) in log.segments.iter() {
        if n >= active || s.end <= BLOCK as u64 {
            continue;
        }
        // Sealed and durable to its end.
        if (Pos { segment: n, offset: s.end }) > durable && s.vstart.is_some() {
            continue;
        }
        if inner.pinned(n) || inner.deferred.borrow().iter().any(|d| d.victim == n) {
            continue;
        }
        let live = s.live.min(s.end);
        let garbage = s.end - live;
        if garbage == 0 {
            continue;
        }
        let u = live as f64 / s.end as f64;
        if !force && 1.0 - u < min_garbage {
            continue;
        }
        // Room to write what is live before anything is freed.
        if live.saturating_add(inner.opts.segment_size_bytes / 8) > free {
            continue;
        }
        let age = now_seq.saturating_sub(s.last_seq).max(1) as f64;
        let score = (1.0 - u) * age / (1.0 + u);
        if best.is_none_or(|(b, _)| score > b) {
            best = Some((score, n));
        }
    }
    best.map(|(_, n)| n)
}

/// Index entries whose commit or data lies in `victim`.
async fn sweep(inner: &Inner, victim: u32) -> Vec<FullEntry> {
    let mut out = Vec::new();
    let tables = inner.index.borrow().tables_in_use();
    for table in tables {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let (found, last) = inner.index.borrow().scan(table, after.as_deref(), SWEEP_SLICE, |loc, fp| {
                loc.segment == victim || fp.data.iter().any(|(s, _)| *s == victim)
            });
            out.extend(found);
            let Some(last) = last else { break };
            after = Some(last);
            crate::sim::yield_now().await;
        }
    }
    out
}

/// Copies every live entry out of `victim`. False if one could not be read.
async fn move_live(inner: &Rc<Inner>, victim: u32) -> Result<bool, IoError> {
    let mut entries = sweep(inner, victim).await;
    // In the log's order, so that each commit entry is read (and checked)
    // once for all its live operations: one of moves holds many, and read
    // once per operation a victim of moved 4 KiB objects cost the disk
    // about 250 times its size in reads.
    entries.sort_by_key(|e| (e.loc.segment, e.loc.offset, e.ordinal));
    let mut pending: Vec<(FullEntry, Op)> = Vec::new();
    // The copies stay pinned until their moves are applied (or dropped):
    // the guard unpins them when this returns, by any path.
    let mut copies = crate::shard::Unpin { inner, keys: Vec::new() };
    let mut entries = entries.into_iter().peekable();
    while let Some(first) = entries.next() {
        let loc = first.loc;
        let mut group = vec![first];
        while let Some(e) = entries.next_if(|e| e.loc == loc) {
            group.push(e);
        }
        let ordinals: Vec<u16> = group.iter().map(|e| e.ordinal).collect();
        inner.compaction.borrow_mut().entries_read += 1;
        let ops = match inner.load_ops(loc, &ordinals).await {
            Ok(x) => x,
            Err(IoError::Moved) => continue,
            Err(err) => {
                tracing::error!(shard = inner.id, segment = victim, error = %err, "compaction cannot read a live entry; segment kept");
                return Ok(false);
            }
        };
        let mut inline_bytes = 0u64;
        for (e, (op, meta_only)) in group.into_iter().zip(ops) {
            let Op::Put {
                table,
                key,
                summary,
                meta,
                body,
                ..
            } = op
            else {
                continue;
            };
            if meta_only && matches!(body, Body::Inline(_)) {
                // Its inline body is lost already; keep the segment (and the evidence).
                return Ok(false);
            }
            let body = match body {
                Body::Extents(es) if es.iter().any(|x| x.segment == victim) => {
                    match copy_extents(inner, es, victim, &mut copies.keys).await {
                        Ok(b) => b,
                        Err(IoError::Corrupt { .. }) => return Ok(false),
                        Err(err) => return Err(err),
                    }
                }
                other => other,
            };
            if let Body::Inline(b) = &body {
                inline_bytes += b.len() as u64;
            }
            let op = Op::Put {
                table,
                key,
                seq: Some(e.seq),
                summary,
                meta,
                body,
            };
            pending.push((e, op));
            if pending.len() >= MOVES_PER_COMMIT {
                commit_moves(inner, std::mem::take(&mut pending)).await?;
            }
        }
        // Inline bodies are copied at the same rate as data records.
        throttle(inner, inline_bytes).await;
    }
    commit_moves(inner, pending).await?;
    Ok(true)
}

/// Commits the copies whose entries are unchanged right now, in commit
/// entries of at most `MOVE_ENTRY_BYTES` (or one operation): a read of
/// one moved object reads its whole entry.
async fn commit_moves(inner: &Rc<Inner>, moves: Vec<(FullEntry, Op)>) -> Result<(), IoError> {
    if moves.is_empty() {
        return Ok(());
    }
    let ops: Vec<Op> = {
        let index = inner.index.borrow();
        let log = inner.log.borrow();
        moves
            .into_iter()
            .filter(|(e, _)| {
                !log.is_pending(e.table, &e.key)
                    && index
                        .get(e.table, &e.key)
                        .is_some_and(|now| now.seq == e.seq && now.loc == e.loc && now.ordinal == e.ordinal)
            })
            .map(|(_, op)| op)
            .collect()
    };
    // No await between the check above and the staging in commit_entries.
    let n = ops.len() as u64;
    if n == 0 {
        return Ok(());
    }
    let mut entries: Vec<Vec<Op>> = Vec::new();
    let mut bytes = 0usize;
    for op in ops {
        // (A stored operation encodes within the limits.)
        let size = op.encoded_len(false).unwrap_or(MOVE_ENTRY_BYTES);
        match entries.last_mut() {
            Some(last) if bytes + size <= MOVE_ENTRY_BYTES => {
                last.push(op);
                bytes += size;
            }
            _ => {
                entries.push(vec![op]);
                bytes = size;
            }
        }
    }
    inner.commit_entries(entries).await?;
    inner.compaction.borrow_mut().entries_moved += n;
    Ok(())
}

/// New extents for a body whose extents in `victim` are copied; each
/// copy's pin is added to `pins`.
async fn copy_extents(inner: &Rc<Inner>, es: Vec<Extent>, victim: u32, pins: &mut Vec<(u32, u64)>) -> Result<Body, IoError> {
    let mut out = Vec::with_capacity(es.len());
    for e in es {
        if e.segment != victim {
            out.push(e);
            continue;
        }
        let file = inner.segment_file(e.segment, data::extent_end(&e)?.offset)?;
        let mut buf = crate::buf::DataBuf::new(e.len as usize);
        let mut at = 0u64;
        while at < e.len {
            let n = (e.len - at).min(COPY_PIECE);
            let piece = data::read_range(&file, &inner.key, inner.id, &e, at..at + n).await?;
            buf.extend_from_slice(&piece);
            at += n;
            throttle(inner, n).await;
        }
        let ne = inner.write_data_for_compaction(buf).await?;
        pins.push((ne.segment, ne.offset));
        inner.compaction.borrow_mut().data_bytes_moved += e.len;
        out.push(ne);
    }
    Ok(Body::Extents(out))
}

async fn throttle(inner: &Inner, bytes: u64) {
    // Writers waiting on compaction: the throttle would only lengthen
    // their wait (foreground latency is already paying for the space).
    if over_stall_mark(inner) {
        return;
    }
    let rate = inner.opts.compaction.rate_bytes_per_sec.max(1);
    let micros = bytes.saturating_mul(1_000_000) / rate;
    if micros > 0 {
        inner.backend.sleep(Duration::from_micros(micros)).await;
    }
}

/// The deletes of `victim` that must outlive it; None if the segment cannot
/// be read whole (then it is not retired).
async fn scan_deletes(inner: &Rc<Inner>, victim: u32) -> Result<Option<Vec<Op>>, IoError> {
    let (file, end, listed) = {
        let log = inner.log.borrow();
        match log.segments.get(&victim) {
            Some(s) => (s.file.clone(), s.end, s.keep_batches.clone()),
            None => return Ok(Some(Vec::new())),
        }
    };
    if let Some(listed) = listed {
        if let Some(keep) = scan_listed(inner, &file, victim, &listed).await? {
            inner.compaction.borrow_mut().listed_scans += 1;
            return Ok(Some(kept(inner, keep)));
        }
        // Not what the list said: read it whole, as an earlier run's.
    }
    let mut keep = Vec::new();
    let mut pos = 0u64;
    // Where zero padding after a copy was stepped over (see below).
    let mut gap_from = None;
    // A format-3 batch's copy: (where it starts, where it ends).
    let mut copy_at: Option<(u64, u64)> = None;
    while pos + HEADER_BYTES as u64 <= end {
        let (head, hs) = match data::read_span(&file, pos, HEADER_BYTES + 8, victim).await {
            Ok(h) => h,
            Err(_) => return Ok(None),
        };
        let head = &head.as_slice()[hs..];
        let h = match RecordHeader::decode(head) {
            Ok(h) if h.segment == victim && h.offset == pos && h.shard == inner.id => h,
            // A damaged copy of a batch read whole: nothing to learn from it.
            _ if copy_at.is_some_and(|(at, _)| at == pos) => {
                pos = copy_at.take().map_or(pos, |(_, e)| e);
                continue;
            }
            _ if pos % BLOCK as u64 != 0 && gap_from.is_none() => {
                // After a copy that ends inside a block: zero padding up to
                // the block boundary, unless a packed batch is missing here.
                let (b, bs) = match data::read_span(&file, pos, (align_up(pos) - pos) as usize, victim).await {
                    Ok(b) => b,
                    Err(_) => return Ok(None),
                };
                if b.as_slice()[bs..].iter().any(|&x| x != 0) {
                    return Ok(None);
                }
                gap_from = Some(pos);
                pos = align_up(pos);
                continue;
            }
            _ => return Ok(None),
        };
        // The copy of a packed batch whose batch is missing: its deletes
        // cannot be read from the batch.
        if h.kind == Kind::BatchCopy && gap_from.is_some_and(|g| u64_at(head, HEADER_BYTES) == g) {
            return Ok(None);
        }
        gap_from = None;
        let len = h.record_len();
        copy_at = (h.kind == Kind::Batch && h.version >= 3).then(|| (pos + len, pos + len + h.copy_len as u64));
        match h.kind {
            Kind::Batch => {
                if !scan_batch(inner, &file, victim, pos, &h, &mut keep).await? {
                    return Ok(None);
                }
            }
            Kind::Segment | Kind::Data | Kind::BatchCopy => {}
        }
        pos += len;
    }
    Ok(Some(kept(inner, keep)))
}

/// What to keep of a scan's finds (None: a tombstone that can go).
fn kept(inner: &Inner, keep: Vec<Option<Op>>) -> Vec<Op> {
    let dropped = keep.iter().filter(|o| o.is_none()).count() as u64;
    inner.compaction.borrow_mut().tombstones_dropped += dropped;
    keep.into_iter().flatten().collect()
}

/// Most batch places a segment's `keep_batches` lists; past that the
/// list is dropped (the scan reads the segment whole), so memory stays
/// bounded on a log of deletes.
pub(crate) const MAX_KEEP_BATCHES: usize = 1 << 16;

/// `scan_deletes` over the batches `listed` (every batch with a delete
/// or retire that this run wrote in `victim`) instead of every record:
/// under large writes a segment holds a thousand data records, whose
/// headers the whole scan reads one by one (seconds on a busy disk).
/// None if one is not the batch it should be (the caller then scans whole).
async fn scan_listed(inner: &Rc<Inner>, file: &DiskFile, victim: u32, listed: &[u64]) -> Result<Option<Vec<Option<Op>>>, IoError> {
    let mut keep = Vec::new();
    for &pos in listed {
        let Ok((head, hs)) = data::read_span(file, pos, HEADER_BYTES + 8, victim).await else {
            return Ok(None);
        };
        let h = match RecordHeader::decode(&head.as_slice()[hs..]) {
            Ok(h) if h.kind == Kind::Batch && h.segment == victim && h.offset == pos && h.shard == inner.id => h,
            _ => return Ok(None),
        };
        if !scan_batch(inner, file, victim, pos, &h, &mut keep).await? {
            return Ok(None);
        }
    }
    Ok(Some(keep))
}

/// Reads the batch at `pos` (header `h`) and adds to `keep` what the
/// retirement of `victim` must keep of it: retires a kept checkpoint
/// still needs, and tombstones (None for one that can go). False if an
/// entry cannot be read: a damaged entry may hold a tombstone we cannot see.
async fn scan_batch(
    inner: &Rc<Inner>,
    file: &DiskFile,
    victim: u32,
    pos: u64,
    h: &RecordHeader,
    keep: &mut Vec<Option<Op>>,
) -> Result<bool, IoError> {
    let plen = HEADER_BYTES + h.payload_len as usize;
    let (whole, ws) = data::read_span(file, pos, plen, victim).await?;
    let whole = &whole.as_slice()[ws..ws + plen];
    if !h.verify(&inner.key, whole) {
        return Ok(false);
    }
    let payload = &whole[HEADER_BYTES..];
    let mut off = 0usize;
    for _ in 0..h.count {
        let Ok(eh) = EntryHeader::decode(&payload[off..], payload.len() - off) else {
            return Ok(false);
        };
        let at = Pos {
            segment: victim,
            offset: pos + (HEADER_BYTES + off) as u64,
        };
        let ops = if eh.verify(&inner.key, &payload[off..], inner.id, at) {
            let body = &payload[off + ENTRY_HEADER_BYTES..off + eh.total_len()];
            keep.extend(retires_needed(inner, body, eh.count, eh.seq).into_iter().map(Some));
            deletes_of(body, eh.count, eh.seq)
        } else {
            None
        };
        match ops {
            Some(ops) => keep.extend(ops.into_iter().filter_map(|d| still_needed(inner, victim, d))),
            None => return Ok(false),
        }
        off += align_entry(eh.total_len());
    }
    Ok(true)
}

/// The retire ops of one commit entry that a kept checkpoint still needs
/// (a recovery from a checkpoint older than the op must learn the segment
/// went on purpose), with their seq kept.
fn retires_needed(inner: &Inner, payload: &[u8], count: u16, entry_seq: u64) -> Vec<Op> {
    let oldest = inner.oldest_checkpoint_seq.get();
    let Ok(views) = codec::decode(payload, count) else {
        return Vec::new();
    };
    views
        .into_iter()
        .filter_map(|v| match v {
            OpView::Retire {
                segment,
                first_seq,
                last_seq,
                seq,
            } => {
                let seq = seq.unwrap_or(entry_seq);
                (oldest == 0 || seq >= oldest || named_by_successor(inner, segment)).then_some(Op::Retire {
                    segment,
                    first_seq,
                    last_seq,
                    seq: Some(seq),
                })
            }
            _ => None,
        })
        .collect()
}

/// Whether the segment after `segment` that is still present may name it
/// as its predecessor (no retired segment in between): a recovery that
/// scans the log without a checkpoint must then learn that `segment` went
/// on purpose, so its retire op is kept.
fn named_by_successor(inner: &Inner, segment: u32) -> bool {
    let log = inner.log.borrow();
    let Some((&next, _)) = log.segments.range(segment.saturating_add(1)..).next() else {
        return false;
    };
    (segment + 1..next).all(|m| !log.retired.contains(&m))
}

/// The deletes of one commit entry, as (table, key, seq, min_seg, origin).
fn deletes_of(payload: &[u8], count: u16, entry_seq: u64) -> Option<Vec<(u8, Vec<u8>, u64, u32, u32)>> {
    let views = codec::decode(payload, count).ok()?;
    Some(
        views
            .into_iter()
            .filter_map(|v| match v {
                OpView::Delete {
                    table,
                    key,
                    seq,
                    min_seg,
                    origin,
                } => Some((table, key.to_vec(), seq.unwrap_or(entry_seq), min_seg, origin)),
                _ => None,
            })
            .collect(),
    )
}

/// Some(Some(op)) to keep the tombstone, Some(None) when it can go. It
/// stays while a segment that may hold an older record of the key exists,
/// or while a kept checkpoint is older than it (a recovery from that
/// checkpoint must replay the delete over the entry it holds).
fn still_needed(
    inner: &Inner,
    victim: u32,
    (table, key, seq, min_seg, origin): (u8, Vec<u8>, u64, u32, u32),
) -> Option<Option<Op>> {
    let origin = if origin == 0 { victim } else { origin };
    let log = inner.log.borrow();
    let oldest = inner.oldest_checkpoint_seq.get();
    let guards = log
        .segments
        .range(min_seg..=origin)
        .any(|(n, _)| *n != victim)
        || (oldest != 0 && oldest <= seq);
    Some(guards.then_some(Op::Delete {
        table,
        key,
        seq: Some(seq),
        min_seg,
        origin,
    }))
}

fn retirable(inner: &Inner, victim: u32) -> bool {
    let log = inner.log.borrow();
    let live = log.segments.get(&victim).map_or(0, |s| s.live);
    live == 0 && !inner.pinned(victim) && !log.stages_data_in(victim)
}

/// Records the retirement durably, then removes the file.
async fn retire(inner: &Rc<Inner>, victim: u32) -> Result<(), IoError> {
    // The seqs it takes with it: up to where the next segment starts (seqs
    // voided by a failed batch in between included).
    // Likewise from where the segment before it ends: a reset that cut a
    // segment away voids the seqs of its failed commits, and only the
    // record of the segment started after the reset (this one, perhaps)
    // says so; once it is gone the retire op must carry them.
    let (first_seq, last_seq) = {
        let log = inner.log.borrow();
        // (An empty file is no successor: a segment file created ahead for
        // a roll that a reset then voided, left behind by a crash; found
        // by the simulation, seed 8074, where it made the retire op claim
        // too few seqs and the seqs the reset voided read as lost.)
        let next = log
            .segments
            .range(victim + 1..)
            .find(|(_, s)| s.end > 0)
            .map(|(_, s)| s.first_seq.saturating_sub(1));
        // A predecessor that holds no commit (a reset cut it back to its
        // segment record) ends just before the first seq it was to hold:
        // the seqs from there on were voided with its failed batches.
        let prev_end = log
            .segments
            .range(..victim)
            .next_back()
            .and_then(|(_, s)| match (s.last_seq, s.first_seq) {
                (0, 0) => None,
                (0, first) => Some(first - 1),
                (last, _) => Some(last),
            });
        // A reset between choosing the victim and now may have dropped
        // every segment after it (keep == 0): without a successor there
        // is no knowing where the seqs it takes along end, so not now.
        if next.is_none() {
            return Err(IoError::InvalidExtent("no segment after it yet; not retired"));
        }
        log.segments.get(&victim).map_or((0, 0), |s| {
            let first = match prev_end {
                Some(l) if s.first_seq == 0 || l + 1 < s.first_seq => l + 1,
                _ => s.first_seq,
            };
            (first, next.unwrap_or(0).max(s.last_seq))
        })
    };
    // Nothing live, nothing pinned, nothing staged may point into it now
    // (checked in the same step as the staging, no await in between).
    if !retirable(inner, victim) {
        return Err(IoError::InvalidExtent("segment still referenced; not retired"));
    }
    inner
        .commit_ops(vec![Op::Retire {
            segment: victim,
            first_seq,
            last_seq,
            seq: None,
        }])
        .await?;
    let seg = {
        let mut log = inner.log.borrow_mut();
        log.emptying.remove(&victim);
        log.rereferenced.remove(&victim);
        log.segments.remove(&victim)
    };
    let len = match &seg {
        Some(s) => s.file.len().await.unwrap_or(0),
        None => 0,
    };
    drop(seg);
    let path = inner.dir.join(crate::format::segment_file_name(victim));
    // Kept for a new segment to start in (`spare.rs`), or removed.
    let trash = if inner.keep_as_spare(victim, &path, len).await {
        None
    } else {
        inner.backend.trash_retired(&path).await?
    };
    inner.backend.open_dir(&inner.dir).await?.sync_all().await?;
    tracing::debug!(shard = inner.id, segment = victim, spares = inner.spares.borrow().len(), "segment retired");
    if let Some(t) = trash {
        crate::reap::queue(inner, t);
    }
    Ok(())
}
