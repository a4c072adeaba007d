//! Striped bodies on format 2 lanes, the I/O part (see `stripes` for the
//! layout): writing a piece's blocks to the lane's members, loading a
//! record with its pieces as handles, reading a range (the k data blocks
//! of the stripes it touches, parity and a decode when one is missing,
//! failed or corrupt), and read repair (the lacking blocks rebuilt,
//! written to their member and committed as the same version, only if
//! the member's record is still that version: the caller holds the
//! key's transaction lock on the primary, which every writer of the lane
//! passes through).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::ops::Range;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;

use tessera_io::{Body, DataBuf, Extent, IoError, Mutation, Shard, Stored};

use crate::lanes::{lane_of, Mirrors};
use crate::stripes::{
    block_at, block_is_good, block_range, encode_piece, position_of, Envelope, MemberRecords, Origin, Piece, PieceInfo, Slot,
};

fn corrupt(what: &'static str) -> IoError {
    IoError::Corrupt { segment: crate::stripes::VIRTUAL_SEGMENT, offset: 0, what }
}

fn random_tag() -> Result<u128, IoError> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut b).map_err(|_| IoError::Io(std::io::Error::other("no system randomness")))?;
    Ok(u128::from_le_bytes(b))
}

/// `write_data` on a lane with parity: the buffer is coded k + m, each
/// online position gets its block stream as one data record; at least
/// the write quorum of them (the primary among them) must take it.
pub async fn write_piece(primary: &Shard, m: &Mirrors, buf: DataBuf) -> Result<Extent, IoError> {
    let coding = m.coding.as_ref().ok_or(IoError::InvalidExtent("no coding"))?;
    let n = coding.params.total_blocks();
    let tag = random_tag()?;
    let rot = (tag % n as u128) as u8;
    let streams = {
        let mut codec = coding.codec.borrow_mut();
        encode_piece(&mut codec, tag, rot, buf.data()).map_err(|e| IoError::Io(std::io::Error::other(e.to_string())))?
    };
    let len = buf.data_len() as u64;
    drop(buf);
    let mut writes = Vec::new();
    for (pos, stream) in streams.into_iter().enumerate() {
        let Some((_, disk, shard)) = m.at(primary, pos) else { continue };
        writes.push((pos, disk, shard, stream));
    }
    let meta: Vec<(usize, usize)> = writes.iter().map(|w| (w.0, w.1)).collect();
    let results = futures_util::future::join_all(writes.into_iter().map(|(_, _, s, b)| async move { s.write_data(b).await })).await;
    let mut blocks = vec![None; n];
    let mut written = 0;
    for ((pos, disk), r) in meta.into_iter().zip(results) {
        match r {
            Ok(e) => {
                blocks[pos] = Some(e);
                written += usize::from(m.health.counts(disk));
            }
            Err(e) if pos == m.primary_position() => return Err(e),
            Err(e) => {
                m.failed(disk, &e);
            }
        }
    }
    if written < m.write_quorum() {
        return Err(IoError::BelowQuorum);
    }
    Ok(m.add_piece(Piece { params: coding.params, tag, rot, len, blocks, origin: None, members: None }, true))
}

/// `Shard::load` on a lane: a v5 record comes back with its inner meta
/// and its striped pieces as handles over every online member's blocks;
/// the members' records are read when first needed (`block_of`), and a
/// member whose record is another version holds none of them.
pub async fn load(primary: &Shard, table: u8, key: &[u8]) -> Result<Option<Stored>, IoError> {
    let stored = primary.load(table, key).await?;
    let Some(m) = lane_of(primary) else { return Ok(stored) };
    let Some(s) = stored else { return Ok(None) };
    let Body::Extents(ex) = &s.body else { return Ok(Some(s)) };
    let (env, inner) = match Envelope::unwrap(&s.meta) {
        Ok(None) => return Ok(Some(s)),
        Ok(Some(x)) => x,
        Err(what) => return Err(corrupt(what)),
    };
    let params = env.params().ok_or_else(|| corrupt("erasure parameters"))?;
    let n = params.total_blocks();
    // A record written before the lane grew (3 nodes to 4, positions
    // stable: `cluster_lanes::lane_nodes`) is striped over its first n
    // positions, the ones it was written over; one written before a node
    // left lanes of four over the wider lanes' nodes (`Mirrors::position_in`).
    if env.pieces.len() != ex.len() || !m.reads_width(n) {
        return Err(corrupt("erasure section does not match the record or the set"));
    }
    let own = m.piece_position(n, m.primary_position());
    // The other members' records are read when a block of theirs is
    // needed (`block_of`): a healthy read of a range touches k - 1 of
    // them at most, not all N - 1.
    let members = Rc::new(MemberRecords {
        pieces: ex.len(),
        slots: RefCell::new(
            (0..n)
                .map(|p| if Some(p) != own && m.at_piece(primary, n, p).is_some() { Slot::Unread } else { Slot::Read(None) })
                .collect(),
        ),
    });
    let mut body = Vec::with_capacity(ex.len());
    for (idx, info) in env.pieces.iter().enumerate() {
        match *info {
            PieceInfo::Plain { .. } => body.push(ex[idx]),
            PieceInfo::Striped { len, tag, rot } => {
                let mut blocks = vec![None; n];
                // The primary holds no block of a piece narrower than its position.
                if let Some(b) = own.and_then(|own| blocks.get_mut(own)) {
                    *b = Some(ex[idx]);
                }
                let origin = Some(Origin { table, key: key.to_vec(), meta: s.meta.clone(), index: idx });
                let members = Some(members.clone());
                body.push(m.add_piece(Piece { params, tag, rot, len, blocks, origin, members }, false));
            }
        }
    }
    Ok(Some(Stored { seq: s.seq, summary: s.summary, meta: inner.to_vec(), body: Body::Extents(body) }))
}

/// The extent of a piece's block stream at set `position`: known, or
/// read now from that member's record of the same version (once per
/// record and position; a member that fails to answer, or holds another
/// version, holds none of the piece's blocks).
pub(crate) async fn block_of(primary: &Shard, m: &Mirrors, piece: &Piece, position: usize) -> Option<Extent> {
    if let Some(e) = piece.blocks.get(position).copied().flatten() {
        return Some(e);
    }
    let (Some(records), Some(origin)) = (&piece.members, &piece.origin) else { return None };
    let slot = records.slots.borrow().get(position).cloned()?;
    let extents = match slot {
        Slot::Read(x) => x,
        Slot::Unread => {
            let x = match m.at_piece(primary, piece.n(), position) {
                Some((_, _, holder)) => match holder.load(origin.table, &origin.key).await {
                    Ok(Some(Stored { meta, body: Body::Extents(e2), .. })) if meta == origin.meta && e2.len() == records.pieces => Some(e2),
                    Ok(_) => None,
                    Err(e) => {
                        tracing::warn!(position, error = %e, "a lane member's record cannot be read");
                        None
                    }
                },
                None => None,
            };
            if let Some(s) = records.slots.borrow_mut().get_mut(position) {
                *s = Slot::Read(x.clone());
            }
            x
        }
    };
    extents.and_then(|e| e.get(origin.index).copied())
}

/// Blocks of a piece that must be rewritten (read repair).
pub struct RepairJob {
    pub piece: Rc<Piece>,
    pub positions: Vec<usize>,
}

/// What reading one block found.
enum Got {
    Good(Vec<u8>),
    /// Offline, no record of this version, or moved by compaction.
    Missing { moved: bool },
    /// Read failed or the block failed its checks: to be repaired.
    Bad,
}

async fn fetch(primary: &Shard, m: &Mirrors, piece: &Piece, t: u64, block: usize) -> Got {
    let n = piece.n();
    let pos = position_of(block, piece.rot, n);
    let Some((_, _, shard)) = m.at_piece(primary, n, pos) else { return Got::Missing { moved: false } };
    let Some(extent) = block_of(primary, m, piece, pos).await else { return Got::Missing { moved: false } };
    let r = block_range(&piece.params, piece.len, t);
    match shard.read_extent(&extent, r).await {
        Ok(b) if block_is_good(&piece.params, &b, piece.tag, t, block) => Got::Good(b),
        Ok(_) => {
            tracing::error!(position = pos, stripe = t, "an erasure block failed its checksum; decoding from parity");
            Got::Bad
        }
        Err(IoError::Moved) => Got::Missing { moved: true },
        // A node that cannot be reached is out of service, not damaged.
        Err(IoError::Io(e)) if matches!(shard, crate::holder::Holder::Remote(_)) => {
            tracing::warn!(position = pos, stripe = t, error = %e, "an erasure block's node cannot be reached; decoding from parity");
            Got::Missing { moved: false }
        }
        Err(e) => {
            tracing::error!(position = pos, stripe = t, error = %e, "an erasure block cannot be read; decoding from parity");
            Got::Bad
        }
    }
}

/// Decodes stripe `t` of a piece: the data blocks first, the parity ones
/// only when a data block is lacking. Positions of bad blocks go to `bad`.
async fn read_stripe(primary: &Shard, m: &Mirrors, piece: &Piece, t: u64, all: bool, bad: &mut BTreeSet<usize>) -> Result<Vec<u8>, IoError> {
    let (k, n) = (piece.k(), piece.n());
    let mut got: Vec<Option<Vec<u8>>> = vec![None; n];
    let mut moved = false;
    let mut missing = 0;
    let first = if all { n } else { k };
    let mut note = |b: usize, g: Got, got: &mut Vec<Option<Vec<u8>>>| match g {
        Got::Good(x) => got[b] = Some(x),
        Got::Missing { moved: mv } => {
            moved |= mv;
            missing += 1;
        }
        Got::Bad => {
            bad.insert(position_of(b, piece.rot, n));
        }
    };
    let r = futures_util::future::join_all((0..first).map(|b| fetch(primary, m, piece, t, b))).await;
    for (b, g) in r.into_iter().enumerate() {
        note(b, g, &mut got);
    }
    if got.iter().flatten().count() < k && !all {
        let r = futures_util::future::join_all((k..n).map(|b| fetch(primary, m, piece, t, b))).await;
        for (j, g) in r.into_iter().enumerate() {
            note(k + j, g, &mut got);
        }
    }
    let good = got.iter().flatten().count();
    if good < k {
        if moved {
            return Err(IoError::Moved);
        }
        if good + missing >= k {
            // Not damage: holders are out of service (a disk offline, a
            // node down or unreachable) or lack this version. The read
            // may succeed later: 503, not 500.
            tracing::warn!(stripe = t, good, missing, needed = k, "an erasure stripe's holders are out of service");
            // Members of a cluster lane out of service are probed at once,
            // so the client's retry finds a node that is back.
            m.health.want_members();
            return Err(IoError::BelowQuorum);
        }
        m.health.ec.unreadable_stripes.fetch_add(1, Relaxed);
        tracing::error!(stripe = t, good, needed = k, "an erasure stripe has fewer than k good blocks");
        return Err(corrupt("erasure stripe with fewer than k good blocks"));
    }
    if got.iter().take(k).any(Option::is_none) {
        m.health.ec.degraded_stripes.fetch_add(1, Relaxed);
    }
    let cands: Vec<Option<&[u8]>> = got.iter().map(|g| g.as_deref()).collect();
    let coding = m.coding.as_ref().ok_or(IoError::InvalidExtent("no coding"))?;
    let mut out = Vec::new();
    coding.with_codec(piece.params, |codec| codec.decode_stripe(piece.tag, t, &cands, &mut out)).map_err(|_| corrupt("erasure decode"))?;
    Ok(out)
}

/// `Shard::read_extent` on a lane: a virtual extent reads its piece;
/// any other is the primary's own. The job, when some, names blocks
/// found bad that the caller should repair.
pub async fn read_extent(primary: &Shard, e: &Extent, range: Range<u64>) -> Result<(Vec<u8>, Option<RepairJob>), IoError> {
    if e.segment != crate::stripes::VIRTUAL_SEGMENT {
        return Ok((primary.read_extent(e, range).await?, None));
    }
    let m = lane_of(primary).ok_or(IoError::InvalidExtent("a piece handle outside its lane"))?;
    let piece = m.piece(e).ok_or(IoError::Moved)?;
    if range.start > range.end || range.end > piece.len {
        return Err(IoError::InvalidExtent("range outside the piece"));
    }
    let mut out = Vec::with_capacity((range.end - range.start) as usize);
    let mut bad = BTreeSet::new();
    for t in piece.params.stripes_for(piece.len, range.clone()) {
        let data = read_stripe(primary, &m, &piece, t, false, &mut bad).await?;
        let sr = piece.params.stripe_range(piece.len, t).unwrap_or(0..0);
        let from = range.start.max(sr.start) - sr.start;
        let to = range.end.min(sr.end) - sr.start;
        out.extend_from_slice(data.get(from as usize..to as usize).ok_or_else(|| corrupt("short stripe"))?);
    }
    let job = (!bad.is_empty() && piece.origin.is_some()).then(|| RepairJob { piece, positions: bad.into_iter().collect() });
    Ok((out, job))
}

/// The whole block streams of `positions` for a piece, rebuilt from what
/// the other blocks say (every stripe decoded, then coded again).
pub async fn rebuild_streams(primary: &Shard, m: &Mirrors, piece: &Piece, positions: &[usize]) -> Result<Vec<(usize, Vec<u8>)>, IoError> {
    let coding = m.coding.as_ref().ok_or(IoError::InvalidExtent("no coding"))?;
    let n = piece.n();
    let mut streams: Vec<(usize, Vec<u8>)> = positions.iter().map(|&p| (p, Vec::new())).collect();
    let mut ignored = BTreeSet::new();
    let mut blocks = Vec::new();
    for t in 0..piece.params.stripe_count(piece.len) {
        let data = read_stripe(primary, m, piece, t, true, &mut ignored).await?;
        coding.with_codec(piece.params, |codec| codec.encode_stripe(piece.tag, t, &data, &mut blocks)).map_err(|_| corrupt("erasure encode"))?;
        for (p, s) in streams.iter_mut() {
            s.extend_from_slice(&blocks[block_at(*p, piece.rot, n)]);
        }
    }
    Ok(streams)
}

/// Read repair of `job` on the lane whose primary is `primary`; the
/// caller holds the record key's lock. Each bad block stream is rebuilt,
/// written to its member and committed there as the same version, only
/// if that member's record is still the version read. Returns the
/// streams rewritten.
pub async fn repair(primary: &Shard, job: RepairJob) -> Result<usize, IoError> {
    let m = lane_of(primary).ok_or(IoError::InvalidExtent("no lane"))?;
    let Some(origin) = job.piece.origin.clone() else { return Ok(0) };
    let streams = rebuild_streams(primary, &m, &job.piece, &job.positions).await?;
    let mut done = 0;
    for (pos, stream) in streams {
        let Some((_, _, shard)) = m.at_piece(primary, job.piece.n(), pos) else { continue };
        let Some(stored) = shard.load(origin.table, &origin.key).await? else { continue };
        let Body::Extents(mut ex) = stored.body else { continue };
        if stored.meta != origin.meta || ex.get(origin.index).copied() != block_of(primary, &m, &job.piece, pos).await {
            tracing::info!(position = pos, "read repair skipped: the record changed since it was read");
            continue;
        }
        let mut b = DataBuf::new(stream.len().max(1));
        b.extend_from_slice(&stream);
        ex[origin.index] = shard.write_data(b).await?;
        shard
            .commit(vec![Mutation::Put {
                table: origin.table,
                key: origin.key.clone(),
                summary: stored.summary,
                meta: stored.meta,
                body: Body::Extents(ex),
            }])
            .await?;
        m.health.ec.repaired_blocks.fetch_add(1, Relaxed);
        tracing::warn!(position = pos, "read repair: an erasure block stream was rebuilt and rewritten");
        done += 1;
    }
    Ok(done)
}
