//! The lane-level storage calls of format 2 (first slice: mirrored lanes,
//! see `sets_open`). A lane's read primary is the `LocalShard` handlers
//! reach through `Shards`; it carries the lane's other online members
//! (all opened on the same core, the lane's owner), and every data write
//! and commit it takes is applied to them too. Format 1 shards have no
//! mirrors and pass straight through, so handlers keep one code path.
//!
//! Extents differ between members (each log places data its own way):
//! a data write remembers the members' extents under the primary's, and a
//! commit translates its bodies through that; an extent written before
//! (a versioned overwrite moving the current body, a multipart manifest of
//! earlier parts) is copied from the primary into the member instead.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use tessera_io::{Body, DataBuf, Extent, IoError, Mutation, Shard};

use crate::sets_open::DiskHealth;

/// Most remembered extent translations per lane; past it the oldest
/// half is dropped (a dropped one costs a copy at commit, never a wrong
/// body), so PUTs that never commit cannot grow it without bound.
pub const MAX_TRANSLATIONS: usize = 16 * 1024;

type ExtentKey = (u32, u64, u64);

fn key(e: &Extent) -> ExtentKey {
    (e.segment, e.offset, e.len)
}

/// The other members of a lane, held by its primary.
pub struct Mirrors {
    primary_disk: usize,
    members: Vec<(usize, Shard)>,
    write_quorum: usize,
    health: Arc<DiskHealth>,
    /// Primary extent -> (insertion number, each member's extent).
    translations: RefCell<HashMap<ExtentKey, (u64, Vec<Option<Extent>>)>>,
    next: std::cell::Cell<u64>,
}

impl Mirrors {
    pub fn new(primary_disk: usize, members: Vec<(usize, Shard)>, write_quorum: usize, health: Arc<DiskHealth>) -> Self {
        Mirrors {
            primary_disk,
            members,
            write_quorum,
            health,
            translations: RefCell::new(HashMap::new()),
            next: std::cell::Cell::new(0),
        }
    }

    /// Online members plus the primary: fewer than the quorum refuses the
    /// write before anything is written.
    fn check_quorum(&self) -> Result<(), IoError> {
        let online = 1 + self.members.iter().filter(|(d, _)| self.health.online(*d)).count();
        if !self.health.online(self.primary_disk) || online < self.write_quorum {
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
    fn failed(&self, disk: usize, e: &IoError) -> bool {
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
    m.check_quorum()?;
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
enum TranslateError {
    /// Reading the primary failed: the commit fails, the member is fine.
    Primary(IoError),
    /// Writing the member failed: the member goes offline.
    Member(IoError),
}

/// The bodies of `muts` as member `i` must see them: remembered extents,
/// or the bytes copied from the primary.
async fn translate(primary: &Shard, m: &Mirrors, i: usize, muts: &[Mutation]) -> Result<Vec<Mutation>, TranslateError> {
    let member = &m.members[i].1;
    let mut out = Vec::with_capacity(muts.len());
    for mu in muts {
        let Mutation::Put { table, key: k, summary, meta, body: Body::Extents(ex) } = mu else {
            out.push(mu.clone());
            continue;
        };
        let mut mine = Vec::with_capacity(ex.len());
        for e in ex {
            let known = m.translations.borrow().get(&key(e)).and_then(|(_, v)| v.get(i).cloned().flatten());
            let e2 = match known {
                Some(x) => x,
                None => {
                    let bytes = primary.read_extent(e, 0..e.len).await.map_err(TranslateError::Primary)?;
                    let mut b = DataBuf::new(bytes.len().max(1));
                    b.extend_from_slice(&bytes);
                    member.write_data(b).await.map_err(TranslateError::Member)?
                }
            };
            mine.push(e2);
        }
        out.push(Mutation::Put {
            table: *table,
            key: k.clone(),
            summary: summary.clone(),
            meta: meta.clone(),
            body: Body::Extents(mine),
        });
    }
    Ok(out)
}

/// `Shard::commit` on a lane: on every online member, acknowledged when
/// the primary's and at least the write quorum's commits are durable and
/// every member that failed is recorded as stale.
pub async fn commit(primary: &Shard, mirrors: Option<&Mirrors>, muts: Vec<Mutation>) -> Result<u64, IoError> {
    let Some(m) = mirrors else { return primary.commit(muts).await };
    m.check_quorum()?;
    let targets: Vec<(usize, usize)> =
        m.members.iter().enumerate().filter(|(_, (d, _))| m.health.online(*d)).map(|(i, (d, _))| (i, *d)).collect();
    // Each member's form of the commit first (copying bodies it lacks), so
    // that the commits below start together, the primary's first: commits
    // of one key then reach every member in the order they reach it.
    let forms = futures_util::future::join_all(targets.iter().map(|&(i, _)| translate(primary, m, i, &muts))).await;
    let mut ready = Vec::new();
    let mut recorded = true;
    for (&(i, disk), f) in targets.iter().zip(forms) {
        match f {
            Ok(t) => ready.push((i, disk, t)),
            Err(TranslateError::Primary(e)) => return Err(e),
            Err(TranslateError::Member(e)) => recorded &= m.failed(disk, &e),
        }
    }
    let used: Vec<ExtentKey> = muts
        .iter()
        .flat_map(|mu| match mu {
            Mutation::Put { body: Body::Extents(ex), .. } => ex.iter().map(key).collect(),
            _ => Vec::new(),
        })
        .collect();
    let disks: Vec<usize> = ready.iter().map(|r| r.1).collect();
    let theirs = futures_util::future::join_all(ready.into_iter().map(|(i, _, t)| m.members[i].1.commit(t)));
    let (mine, theirs) = futures_util::future::join(primary.commit(muts), theirs).await;
    let seq = mine?;
    let mut durable = 1;
    for (disk, r) in disks.into_iter().zip(theirs) {
        match r {
            Ok(_) => durable += 1,
            Err(e) => recorded &= m.failed(disk, &e),
        }
    }
    {
        let mut t = m.translations.borrow_mut();
        for k in &used {
            t.remove(k);
        }
    }
    if durable < m.write_quorum || !recorded {
        return Err(IoError::BelowQuorum);
    }
    Ok(seq)
}

/// Builds the mirrors of a lane from its opened members (the first is the
/// primary); None for a lane of one shard.
pub fn mirrors_of(
    primary_disk: Option<usize>,
    others: Vec<(usize, Shard)>,
    write_quorum: usize,
    health: Option<Arc<DiskHealth>>,
) -> Option<Rc<Mirrors>> {
    match (primary_disk, health) {
        (Some(p), Some(h)) => Some(Rc::new(Mirrors::new(p, others, write_quorum, h))),
        _ => None,
    }
}
