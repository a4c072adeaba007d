//! The lane-level storage calls of format 2 (see `sets_open`). A lane's
//! read primary is the `LocalShard` handlers reach through `Shards`; it
//! carries the lane's other online members (all opened on the same core,
//! the lane's owner), and every data write and commit it takes is applied
//! to them too. Format 1 shards have no mirrors and pass straight
//! through, so handlers keep one code path.
//!
//! With parity (m > 0) a data write is striped instead of copied
//! (`stripes_io::write_piece`): each member gets its own blocks, and the
//! handler gets a virtual extent naming the piece; a commit gives each
//! member its own form of the record (its block extents, the v5
//! envelope, `stripes`). Inline bodies (<= `REPLICATE_MAX_BYTES`) stay
//! mirrored in every member's record.
//!
//! Extents differ between members (each log places data its own way):
//! a data write remembers the members' extents under the primary's, and a
//! commit translates its bodies through that; an extent written before
//! (a versioned overwrite moving the current body, a multipart manifest of
//! earlier parts) is copied from the primary into the member instead.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use tessera_erasure::{Codec, Params};
use tessera_io::{Body, DataBuf, Extent, IoError, Mutation, Shard};

use crate::holder::Holder;
use crate::sets_open::DiskHealth;
use crate::stripes::{Envelope, Piece, PieceInfo, VIRTUAL_SEGMENT};

/// Most piece handles a lane keeps (loaded records' and unacknowledged
/// writes'); past it the oldest half goes, and a read of a dropped one
/// answers `Moved` (the reader loads the record again).
pub const MAX_PIECE_HANDLES: usize = 64 * 1024;

thread_local! {
    /// The lanes of this core by their primary shard (`Shard::serial`:
    /// shard ids repeat, as the member shards of two lane owners this
    /// node acts for share theirs), for the callers that hold a bare
    /// `Shard` (transactions).
    static LANES: RefCell<HashMap<u64, Rc<Mirrors>>> = RefCell::new(HashMap::new());
}

/// Makes `mirrors` the lane of the primary shard `primary` on this core.
pub fn register(primary: &Shard, mirrors: &Rc<Mirrors>) {
    LANES.with(|l| l.borrow_mut().insert(primary.serial(), mirrors.clone()));
}

/// `primary` is no lane's primary any more (a cluster lane taken apart).
pub fn unregister(primary: &Shard) {
    LANES.with(|l| l.borrow_mut().remove(&primary.serial()));
}

/// `unregister`, only if `m` is still the lane registered for `primary`
/// (a lane retired late must not remove the one that replaced it).
pub fn unregister_if(primary: &Shard, m: &Rc<Mirrors>) {
    LANES.with(|l| {
        let mut l = l.borrow_mut();
        if l.get(&primary.serial()).is_some_and(|x| Rc::ptr_eq(x, m)) {
            l.remove(&primary.serial());
        }
    });
}

/// The lane whose primary is `primary`, if it is a format 2 lane or a
/// cluster lane of this core.
pub fn lane_of(primary: &Shard) -> Option<Rc<Mirrors>> {
    LANES.with(|l| l.borrow().get(&primary.serial()).cloned())
}

/// How a lane with parity codes its data records.
pub struct Coding {
    pub params: Params,
    pub codec: RefCell<Codec>,
    /// A codec of another shape: pieces written before the lane formed or
    /// grew (`stripes_io::load` takes them), kept beside the lane's own so
    /// reading them between writes does not rebuild either.
    pub other: RefCell<Option<Codec>>,
}

impl Coding {
    /// Runs `f` with a codec of `params`: the lane's own, or the other one
    /// (made, or made again for other parameters, as needed).
    pub fn with_codec<R>(&self, params: Params, f: impl FnOnce(&mut Codec) -> R) -> R {
        if params == self.params {
            return f(&mut self.codec.borrow_mut());
        }
        let mut other = self.other.borrow_mut();
        if other.as_ref().is_none_or(|c| c.params() != params) {
            *other = Some(Codec::new(params));
        }
        f(other.as_mut().unwrap_or_else(|| unreachable!("made above")))
    }
}

/// Most remembered extent translations per lane; past it the oldest
/// half is dropped (a dropped one costs a copy at commit, never a wrong
/// body), so PUTs that never commit cannot grow it without bound.
pub const MAX_TRANSLATIONS: usize = 16 * 1024;

/// How long a write on a cluster lane with too few members in service
/// waits for a probe to find them back (`Mirrors::await_quorum`), and how
/// often it looks. The lanes' loop polls every 100 ms and a probe of a
/// live node takes a round trip, so a member whose node is back returns
/// well within it; a node really gone costs a refused write this much.
pub const QUORUM_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
const QUORUM_POLL: std::time::Duration = std::time::Duration::from_millis(25);

type ExtentKey = (u32, u64, u64);

fn key(e: &Extent) -> ExtentKey {
    (e.segment, e.offset, e.len)
}

/// The other members of a lane, held by its primary.
pub struct Mirrors {
    pub(crate) primary_disk: usize,
    /// (disk, holder): shards of this core, or of other nodes (`holder`).
    pub(crate) members: Vec<(usize, Holder)>,
    write_quorum: usize,
    pub(crate) health: Arc<DiskHealth>,
    /// Set when the lane stripes (parity > 0).
    pub(crate) coding: Option<Coding>,
    /// Piece handles by id: (written by this core and not yet committed, piece).
    pieces: RefCell<HashMap<u64, (bool, Rc<Piece>)>>,
    next_piece: Cell<u64>,
    /// Primary extent -> (insertion number, each member's extent).
    translations: RefCell<HashMap<ExtentKey, (u64, Vec<Option<Extent>>)>>,
    next: std::cell::Cell<u64>,
    /// Per member: the keys of commits it missed, kept for members on
    /// other nodes (healed when they are back: `cluster_lanes`).
    missed: RefCell<Vec<Missed>>,
    /// Cluster lanes: records the members that missed a commit as stale in
    /// the configuration before it is acknowledged (`takeover`).
    recorder: Option<Rc<crate::takeover::StaleRecorder>>,
    /// Cluster lanes a node left (4 nodes to 3): per position of the
    /// wider lanes, the position of its node in this lane (None: the node
    /// that left), where the pieces written over the wider lanes have
    /// their blocks (`cluster_lanes::wide_positions`).
    wide: Option<Vec<Option<usize>>>,
    /// Cluster lanes on their way out (3 nodes to 2, `owners::LaneOrder::plain`):
    /// bodies are written whole to every member, and a commit naming a
    /// striped piece writes it whole first (`restripe`); the coding stays
    /// to read the pieces written before.
    plain: bool,
}

/// Most missed keys kept per member and lane; past it the member's heal
/// walks the whole lane instead.
pub const MAX_MISSED_KEYS: usize = 100_000;

/// Keys a member missed (see `Mirrors::missed`).
#[derive(Default)]
pub struct Missed {
    pub keys: std::collections::HashSet<crate::shards::TableKey>,
    /// More than `MAX_MISSED_KEYS`: the heal walks every key of the lane.
    pub overflow: bool,
}

impl Mirrors {
    pub fn new(
        primary_disk: usize,
        members: Vec<(usize, Holder)>,
        write_quorum: usize,
        health: Arc<DiskHealth>,
        params: Option<Params>,
    ) -> Self {
        Mirrors {
            primary_disk,
            write_quorum,
            health,
            coding: params
                .filter(|p| p.parity_blocks() > 0)
                .map(|p| Coding { params: p, codec: RefCell::new(Codec::new(p)), other: RefCell::new(None) }),
            pieces: RefCell::new(HashMap::new()),
            next_piece: Cell::new(0),
            translations: RefCell::new(HashMap::new()),
            next: std::cell::Cell::new(0),
            missed: RefCell::new((0..members.len()).map(|_| Missed::default()).collect()),
            members,
            recorder: None,
            wide: None,
            plain: false,
        }
    }

    /// Writing bodies whole (`plain`): the lanes are on their way out.
    pub(crate) fn with_plain(mut self, plain: bool) -> Self {
        self.plain = plain;
        self
    }

    /// Whether this lane writes bodies whole and un-stripes what it commits.
    pub(crate) fn plain(&self) -> bool {
        self.plain
    }

    /// With the positions of the wider lanes a node left (`wide`).
    pub(crate) fn with_wide(mut self, wide: Option<Vec<Option<usize>>>) -> Self {
        self.wide = wide;
        self
    }

    /// The lane position holding position `pos` of a piece striped over
    /// `n` positions: the same one for a piece of this lane's width or a
    /// narrower one (written before the lanes grew: its first `n`
    /// positions), the wider lanes' node for a wider one (None where no
    /// node of this lane holds it: the node that left).
    pub(crate) fn position_in(&self, n: usize, pos: usize) -> Option<usize> {
        if pos >= n {
            return None;
        }
        if n <= self.set_disks() {
            return Some(pos);
        }
        self.wide.as_ref().filter(|w| w.len() == n)?.get(pos).copied().flatten()
    }

    /// The position of a piece striped over `n` positions whose blocks
    /// the holder at lane position `lane_pos` holds (None: it holds none
    /// of them, as a node that joined after the piece was written).
    pub(crate) fn piece_position(&self, n: usize, lane_pos: usize) -> Option<usize> {
        (0..n).find(|&p| self.position_in(n, p) == Some(lane_pos))
    }

    /// Whether this lane can read pieces striped over `n` positions: its
    /// own width, a narrower one, or the wider lanes a node left.
    pub(crate) fn reads_width(&self, n: usize) -> bool {
        n <= self.set_disks() || self.wide.as_ref().is_some_and(|w| w.len() == n)
    }

    /// `at` for position `pos` of a piece striped over `n` positions.
    pub(crate) fn at_piece(&self, primary: &Shard, n: usize, pos: usize) -> Option<(Option<usize>, usize, Holder)> {
        self.at(primary, self.position_in(n, pos)?)
    }

    /// With a stale recorder (cluster lanes: `takeover`).
    pub(crate) fn with_recorder(mut self, r: Rc<crate::takeover::StaleRecorder>) -> Self {
        self.recorder = Some(r);
        self
    }

    /// Member `i`'s heal must walk the whole lane (what it missed is not
    /// known: it is recorded stale in the configuration, `takeover`).
    pub(crate) fn walk_whole(&self, i: usize) {
        if let Some(m) = self.missed.borrow_mut().get_mut(i) {
            m.keys = Default::default();
            m.overflow = true;
        }
    }

    /// Notes that member `i` missed the commit of `muts` (a member on
    /// another node only: disks of this node heal by their stale marks).
    fn note_missed(&self, i: usize, muts: &[Mutation]) {
        if !matches!(self.members.get(i), Some((_, Holder::Remote(_)))) {
            return;
        }
        let mut all = self.missed.borrow_mut();
        let Some(m) = all.get_mut(i) else { return };
        if m.overflow {
            return;
        }
        for mu in muts {
            let (Mutation::Put { table, key, .. } | Mutation::Delete { table, key }) = mu;
            m.keys.insert((*table, key.clone()));
        }
        if m.keys.len() > MAX_MISSED_KEYS {
            m.keys = Default::default();
            m.overflow = true;
        }
    }

    /// What member `i` missed so far (the list starts again empty).
    pub(crate) fn take_missed(&self, i: usize) -> Missed {
        self.missed.borrow_mut().get_mut(i).map(std::mem::take).unwrap_or_default()
    }

    /// Gives back keys a heal could not mend (they are tried at the next one).
    pub(crate) fn give_back_missed(&self, i: usize, back: Missed) {
        let mut all = self.missed.borrow_mut();
        let Some(m) = all.get_mut(i) else { return };
        m.overflow |= back.overflow;
        if m.overflow {
            m.keys = Default::default();
        } else {
            m.keys.extend(back.keys);
        }
    }

    /// How many keys member `i` missed, and whether its list overflowed.
    pub(crate) fn missed_count(&self, i: usize) -> (usize, bool) {
        self.missed.borrow().get(i).map_or((0, false), |m| (m.keys.len(), m.overflow))
    }

    /// Whether member `i` missed any commit since its list was last taken.
    pub(crate) fn has_missed(&self, i: usize) -> bool {
        self.missed.borrow().get(i).is_some_and(|m| m.overflow || !m.keys.is_empty())
    }

    pub(crate) fn write_quorum(&self) -> usize {
        self.write_quorum
    }

    /// Set disks of the lane (k + m).
    pub(crate) fn set_disks(&self) -> usize {
        self.coding.as_ref().map_or(1, |c| c.params.total_blocks())
    }

    /// Set position of the primary.
    pub(crate) fn primary_position(&self) -> usize {
        self.primary_disk % self.set_disks()
    }

    /// The holder at set `position` if it is online: (member index or
    /// None for the primary, disk, holder).
    pub(crate) fn at(&self, primary: &Shard, position: usize) -> Option<(Option<usize>, usize, Holder)> {
        let n = self.set_disks();
        if self.primary_disk % n == position {
            return self.health.online(self.primary_disk).then(|| (None, self.primary_disk, Holder::Local(primary.clone())));
        }
        self.members
            .iter()
            .enumerate()
            .find(|(_, (d, _))| d % n == position && self.health.online(*d))
            .map(|(i, (d, h))| (Some(i), *d, h.clone()))
    }

    /// Registers a piece handle; its virtual extent.
    pub(crate) fn add_piece(&self, piece: Piece, written: bool) -> Extent {
        let mut t = self.pieces.borrow_mut();
        if t.len() >= MAX_PIECE_HANDLES {
            let cut = self.next_piece.get().saturating_sub(MAX_PIECE_HANDLES as u64 / 2);
            t.retain(|id, _| *id >= cut);
        }
        let id = self.next_piece.get();
        self.next_piece.set(id + 1);
        let len = piece.len;
        t.insert(id, (written, Rc::new(piece)));
        Extent { segment: VIRTUAL_SEGMENT, offset: id, len }
    }

    pub(crate) fn piece(&self, e: &Extent) -> Option<Rc<Piece>> {
        if e.segment != VIRTUAL_SEGMENT {
            return None;
        }
        self.pieces.borrow().get(&e.offset).filter(|(_, p)| p.len == e.len).map(|(_, p)| p.clone())
    }

    /// `check_quorum`, giving the members of a cluster lane a moment to
    /// come back: a write that finds too few in service asks for them to
    /// be probed at once and waits up to `QUORUM_WAIT` for it. Without
    /// this, a write just after a member's node restarted was refused
    /// until the next probe (every `REVIVE_EVERY`, 2 s) found it back.
    pub(crate) async fn await_quorum(&self) -> Result<(), IoError> {
        // Probes bring back members, not the primary.
        if self.check_quorum().is_ok() || !self.health.counts(self.primary_disk) || !self.health.want_members() {
            return self.check_quorum();
        }
        let started = std::time::Instant::now();
        while started.elapsed() < QUORUM_WAIT {
            monoio::time::sleep(QUORUM_POLL).await;
            if self.check_quorum().is_ok() {
                return Ok(());
            }
        }
        self.check_quorum()
    }

    /// Online whole (not healing) members plus the primary: fewer than the
    /// quorum refuses the write before anything is written.
    pub(crate) fn check_quorum(&self) -> Result<(), IoError> {
        let whole = 1 + self.members.iter().filter(|(d, _)| self.health.counts(*d)).count();
        if !self.health.counts(self.primary_disk) || whole < self.write_quorum {
            return Err(IoError::BelowQuorum);
        }
        Ok(())
    }

    fn remember(&self, primary: &Extent, theirs: Vec<Option<Extent>>) {
        let mut t = self.translations.borrow_mut();
        if t.len() >= MAX_TRANSLATIONS {
            let mut ages: Vec<u64> = t.values().map(|v| v.0).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            t.retain(|_, v| v.0 >= cut);
        }
        let n = self.next.get();
        self.next.set(n + 1);
        t.insert(key(primary), (n, theirs));
    }

    /// After a member failed: out of service, recorded stale. When the
    /// record cannot be made the write must not be acknowledged.
    pub(crate) fn failed(&self, disk: usize, e: &IoError) -> bool {
        tracing::error!(disk, error = %e, "a lane member failed a write");
        self.health.fail(disk)
    }
}

fn copy_buf(src: &DataBuf) -> DataBuf {
    let mut b = DataBuf::new(src.data_len().max(1));
    b.extend_from_slice(src.data());
    b
}

/// `Shard::write_data` on a lane: on every online member; the primary's
/// extent is the answer.
pub async fn write_data(primary: &Shard, mirrors: Option<&Mirrors>, buf: DataBuf) -> Result<Extent, IoError> {
    let Some(m) = mirrors else { return primary.write_data(buf).await };
    m.await_quorum().await?;
    if m.coding.is_some() && !m.plain {
        return crate::stripes_io::write_piece(primary, m, buf).await;
    }
    let targets: Vec<(usize, usize)> =
        m.members.iter().enumerate().filter(|(_, (d, _))| m.health.online(*d)).map(|(i, (d, _))| (i, *d)).collect();
    let copies: Vec<DataBuf> = targets.iter().map(|_| copy_buf(&buf)).collect();
    let theirs = futures_util::future::join_all(
        targets.iter().zip(copies).map(|(&(i, _), b)| m.members[i].1.write_data(b)),
    );
    let (mine, theirs) = futures_util::future::join(primary.write_data(buf), theirs).await;
    let mine = mine?;
    let mut out = vec![None; m.members.len()];
    for (&(i, disk), r) in targets.iter().zip(theirs) {
        match r {
            Ok(e) => out[i] = Some(e),
            Err(e) => {
                m.failed(disk, &e);
            }
        }
    }
    m.remember(&mine, out);
    Ok(mine)
}

/// Why a member could not get its form of a commit.
pub(crate) enum TranslateError {
    /// Reading the primary failed: the commit fails, the member is fine.
    Primary(IoError),
    /// Writing the member failed: the member goes offline.
    Member(IoError),
}

/// Whose form of a commit is being built.
#[derive(Clone, Copy)]
enum Who {
    Primary,
    Member(usize),
}

/// A member's own extent of a body extent the primary holds: remembered
/// from the data write, or the bytes copied from the primary.
async fn plain_extent(primary: &Shard, m: &Mirrors, i: usize, e: &Extent) -> Result<Extent, TranslateError> {
    let known = m.translations.borrow().get(&key(e)).and_then(|(_, v)| v.get(i).cloned().flatten());
    if let Some(x) = known {
        return Ok(x);
    }
    let bytes = primary.read_extent(e, 0..e.len).await.map_err(TranslateError::Primary)?;
    let mut b = DataBuf::new(bytes.len().max(1));
    b.extend_from_slice(&bytes);
    m.members[i].1.write_data(b).await.map_err(TranslateError::Member)
}

/// The bodies of `muts` as `who` must see them. Plain extents: the
/// primary's own, or remembered / copied for a member. A body with
/// piece handles (striped) becomes that shard's block extents (a block
/// it lacks is rebuilt and written), its meta the v5 envelope.
async fn translate(primary: &Shard, m: &Mirrors, who: Who, muts: &[Mutation]) -> Result<Vec<Mutation>, TranslateError> {
    let mut out = Vec::with_capacity(muts.len());
    for mu in muts {
        let Mutation::Put { table, key: k, summary, meta, body: Body::Extents(ex) } = mu else {
            out.push(mu.clone());
            continue;
        };
        let striped = ex.iter().any(|e| e.segment == VIRTUAL_SEGMENT);
        if matches!(Envelope::unwrap(meta), Ok(Some(_)) | Err(_)) {
            // A v5 record must come back through its lane's handles (a
            // raw copy would point members at the primary's blocks).
            return Err(TranslateError::Primary(IoError::InvalidExtent("a v5 record committed without its piece handles")));
        }
        if !striped && matches!(who, Who::Primary) {
            out.push(mu.clone());
            continue;
        }
        let mut mine = Vec::with_capacity(ex.len());
        let mut infos = Vec::with_capacity(ex.len());
        for e in ex {
            if e.segment != VIRTUAL_SEGMENT {
                infos.push(PieceInfo::Plain { len: e.len });
                mine.push(match who {
                    Who::Primary => *e,
                    Who::Member(i) => plain_extent(primary, m, i, e).await?,
                });
                continue;
            }
            let Some(piece) = m.piece(e) else { return Err(TranslateError::Primary(IoError::Moved)) };
            let coding = m.coding.as_ref().ok_or(TranslateError::Primary(IoError::InvalidExtent("piece on a lane without parity")))?;
            if piece.params != coding.params {
                return Err(TranslateError::Primary(IoError::InvalidExtent("piece of other erasure parameters")));
            }
            infos.push(PieceInfo::Striped { len: piece.len, tag: piece.tag, rot: piece.rot });
            let pos = match who {
                Who::Primary => m.primary_position(),
                Who::Member(i) => m.members[i].0 % m.set_disks(),
            };
            let have = crate::stripes_io::block_of(primary, m, &piece, pos).await;
            mine.push(match have {
                Some(x) => x,
                None => {
                    let stream = crate::stripes_io::rebuild_streams(primary, m, &piece, &[pos])
                        .await
                        .map_err(TranslateError::Primary)?
                        .pop()
                        .map(|(_, s)| s)
                        .unwrap_or_default();
                    let target = match who {
                        Who::Primary => Holder::Local(primary.clone()),
                        Who::Member(i) => m.members[i].1.clone(),
                    };
                    let mut b = DataBuf::new(stream.len().max(1));
                    b.extend_from_slice(&stream);
                    target.write_data(b).await.map_err(|e| match who {
                        Who::Primary => TranslateError::Primary(e),
                        Who::Member(_) => TranslateError::Member(e),
                    })?
                }
            });
        }
        let meta = if striped {
            let p = m.coding.as_ref().map(|c| c.params).ok_or(TranslateError::Primary(IoError::InvalidExtent("no coding")))?;
            let env = Envelope {
                k: p.data_blocks(),
                m: p.parity_blocks(),
                n: p.total_blocks() as u8,
                stripe: p.stripe_bytes() as u32,
                pieces: infos,
            };
            env.wrap(meta)
        } else {
            meta.clone()
        };
        out.push(Mutation::Put { table: *table, key: k.clone(), summary: summary.clone(), meta, body: Body::Extents(mine) });
    }
    Ok(out)
}

/// `Shard::commit` on a lane: on every online member, acknowledged when
/// the primary's and at least the write quorum's commits are durable and
/// every member that failed is recorded as stale.
pub async fn commit(primary: &Shard, mirrors: Option<&Mirrors>, muts: Vec<Mutation>) -> Result<u64, IoError> {
    let Some(m) = mirrors else { return primary.commit(muts).await };
    m.await_quorum().await?;
    let muts = restripe(primary, m, muts).await?;
    let targets: Vec<(usize, usize)> =
        m.members.iter().enumerate().filter(|(_, (d, _))| m.health.online(*d)).map(|(i, (d, _))| (i, *d)).collect();
    // Members that miss this commit (recorded stale before it is acknowledged).
    let mut missed: Vec<usize> = Vec::new();
    for (i, (d, _)) in m.members.iter().enumerate() {
        if !m.health.online(*d) {
            m.note_missed(i, &muts);
            missed.push(i);
        }
    }
    // Each shard's form of the commit first (copying bodies it lacks), so
    // that the commits below start together, the primary's first: commits
    // of one key then reach every member in the order they reach it.
    let own = translate(primary, m, Who::Primary, &muts);
    let forms = futures_util::future::join_all(targets.iter().map(|&(i, _)| translate(primary, m, Who::Member(i), &muts)));
    let (own, forms) = futures_util::future::join(own, forms).await;
    let own = match own {
        Ok(f) => f,
        Err(TranslateError::Primary(e) | TranslateError::Member(e)) => return Err(e),
    };
    let mut ready = Vec::new();
    let mut recorded = true;
    for (&(i, disk), f) in targets.iter().zip(forms) {
        match f {
            Ok(t) => ready.push((i, disk, t)),
            Err(TranslateError::Primary(e)) => return Err(e),
            Err(TranslateError::Member(e)) => {
                m.note_missed(i, &muts);
                missed.push(i);
                recorded &= m.failed(disk, &e);
            }
        }
    }
    let used: Vec<ExtentKey> = muts
        .iter()
        .flat_map(|mu| match mu {
            Mutation::Put { body: Body::Extents(ex), .. } => ex.iter().map(key).collect(),
            _ => Vec::new(),
        })
        .collect();
    let disks: Vec<(usize, usize)> = ready.iter().map(|r| (r.0, r.1)).collect();
    let theirs = futures_util::future::join_all(ready.into_iter().map(|(i, _, t)| m.members[i].1.commit(t)));
    let (mine, theirs) = futures_util::future::join(primary.commit(own), theirs).await;
    let seq = mine?;
    let mut durable = 1;
    for ((i, disk), r) in disks.into_iter().zip(theirs) {
        match r {
            // A healing member takes the write but does not count: it may
            // lack older records a reader would need beside it.
            Ok(_) if m.health.healing(disk) => {}
            Ok(_) => durable += 1,
            Err(e) => {
                m.note_missed(i, &muts);
                missed.push(i);
                recorded &= m.failed(disk, &e);
            }
        }
    }
    if let Some(r) = m.recorder.as_ref().filter(|_| !missed.is_empty() && durable >= m.write_quorum && recorded) {
        recorded &= r.record(&missed).await;
    }
    {
        let mut t = m.translations.borrow_mut();
        let mut p = m.pieces.borrow_mut();
        for k in &used {
            if k.0 == VIRTUAL_SEGMENT {
                // A written piece is committed: its handle is done.
                if p.get(&k.1).is_some_and(|(written, _)| *written) {
                    p.remove(&k.1);
                }
            } else {
                t.remove(k);
            }
        }
    }
    if durable < m.write_quorum || !recorded {
        return Err(IoError::BelowQuorum);
    }
    Ok(seq)
}

/// `muts` with every piece of other erasure parameters than the lane's
/// (written before the lane grew from 3 nodes to 4) striped again with
/// the lane's: a record committed now (a metadata change of an older
/// version, a multipart upload completed from parts of both widths) is
/// written in one shape, the one its envelope names. The piece's bytes
/// are read (decoded) and written as a new piece; the old blocks become
/// garbage with the record they belonged to. A lane on its way out
/// (`plain`) writes every piece whole instead, so the record it commits
/// holds no piece.
async fn restripe(primary: &Shard, m: &Mirrors, mut muts: Vec<Mutation>) -> Result<Vec<Mutation>, IoError> {
    let Some(coding) = m.coding.as_ref() else { return Ok(muts) };
    for mu in &mut muts {
        let Mutation::Put { body: Body::Extents(ex), .. } = mu else { continue };
        for e in ex.iter_mut() {
            let Some(piece) = m.piece(e).filter(|p| m.plain || p.params != coding.params) else { continue };
            let (bytes, _) = crate::stripes_io::read_extent(primary, e, 0..piece.len).await?;
            let mut b = DataBuf::new(bytes.len().max(1));
            b.extend_from_slice(&bytes);
            *e = if m.plain { Box::pin(write_data(primary, Some(m), b)).await? } else { crate::stripes_io::write_piece(primary, m, b).await? };
            m.health.ec.restriped_pieces.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    Ok(muts)
}

/// Builds the mirrors of a lane from its opened members (the first is the
/// primary); None for a lane of one shard. `params`: the set's coding
/// (striped data records when it has parity).
pub fn mirrors_of(
    primary_disk: Option<usize>,
    others: Vec<(usize, Holder)>,
    write_quorum: usize,
    health: Option<Arc<DiskHealth>>,
    params: Option<Params>,
) -> Option<Rc<Mirrors>> {
    match (primary_disk, health) {
        (Some(p), Some(h)) => Some(Rc::new(Mirrors::new(p, others, write_quorum, h, params))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_coding_keeps_its_own_codec_and_one_of_another_shape() {
        let own = tessera_erasure::SetShape::new(4, None).unwrap().params(1 << 20).unwrap();
        let old = tessera_erasure::SetShape::new(3, None).unwrap().params(1 << 20).unwrap();
        let c = Coding { params: own, codec: RefCell::new(Codec::new(own)), other: RefCell::new(None) };
        // Reads of old pieces between writes: neither codec is made again.
        for _ in 0..3 {
            assert_eq!(c.with_codec(old, |x| x.params()), old);
            assert_eq!(c.with_codec(own, |x| x.params()), own);
        }
        assert_eq!(c.codec.borrow().params(), own, "the lane's own codec never switches");
        assert_eq!(c.other.borrow().as_ref().map(Codec::params), Some(old));
        // Data coded by the other codec decodes the same as by a fresh one.
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut blocks = Vec::new();
        c.with_codec(old, |x| x.encode_stripe(7, 0, &data, &mut blocks)).unwrap();
        let cands: Vec<Option<&[u8]>> = blocks.iter().enumerate().map(|(i, b)| (i != 0).then_some(b.as_slice())).collect();
        let mut out = Vec::new();
        Codec::new(old).decode_stripe(7, 0, &cands, &mut out).unwrap();
        assert_eq!(out, data);
    }
}
