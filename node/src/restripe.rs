//! Re-striping after lanes grow or shrink (issue 12). Once a fourth node joined
//! lanes of three (`owners::next_layout`), records written before keep
//! their pieces striped 2+1 over the first three positions. They stay
//! readable (`stripes_io::load`), but survive the loss of one node where
//! the lanes of four promise two. Once a third node joined two (lanes
//! form), the old owners' bodies are plain extents on the owner, copied
//! whole to the members by their heal: three full copies. Each reactor
//! walks its own lanes once the move is over and commits every record
//! that names a plain extent or a piece of another width again: a plain extent is
//! written as a piece of the lane here, another piece is striped anew
//! by the lane's commit (`lanes::restripe`), so the record comes back in
//! the lane's shape on every member, and the old blocks become garbage
//! for compaction. Once a node left lanes of four (a decommission), the
//! records striped over four are wider than the lanes of three: the
//! same walk stripes them over three (read through the wider lanes'
//! positions, `Mirrors::position_in`). Once lanes of three are on their
//! way out (a decommission to two nodes, `owners::LaneOrder::plain`), the
//! walk writes every striped record whole (`unstripe`): the owner's
//! shard then serves it alone, the lanes gone.
//!
//! Each record is taken under the locks a request takes (the row, and its
//! object key), so a request's read-modify-write and the walk never
//! interleave. The walk is paced by the heal rate (`--heal-rate`), stops
//! when the lanes are made again (a newer layout, or another node acting
//! for this one: the node's next own lanes walk again; foster lanes do
//! not walk), and waits `RETRY_AFTER` after a failed commit (a member
//! out of service), then tries the same record again, up to `TRIES`
//! times (then the walk goes on, and ends without reporting done).
//! Once every reactor's walk ended, the node writes
//! `restriped/<id>` (`owners::RestripedRecord`, the lane order's version)
//! in the configuration, and does not walk again after a restart; a walk
//! that never ended (stopped, or the node stopped first) runs again,
//! reading every record once (records already in the lanes' shape cost
//! that read only).

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tessera_io::{Body, DataBuf, IoError, Mutation};

use crate::stripes::VIRTUAL_SEGMENT;

use crate::cluster::ClusterNode;
use crate::lanes::Mirrors;
use crate::owners::{RestripedRecord, RESTRIPED_RECORD_FORMAT};
use crate::meta::{parse_version_key, split_upload_key, T_OBJECTS, T_PARTS, T_VERSIONS};
use crate::server::Ctx;
use crate::shards::LocalShard;

/// Keys read per page of the walk.
const PAGE: usize = 256;
/// Pause after a record could not be committed again.
const RETRY_AFTER: Duration = Duration::from_secs(10);
/// Tries of one record before the walk goes on without it (it then does
/// not report the lanes done: the next start walks again).
const TRIES: u32 = 3;
/// What examining a record counts against the pace (one small read).
const EXAMINE_COST: u64 = 4096;

/// How long a walk waits before it starts: nothing, unless a test asks
/// for time to act first (`TESSERA_TEST_RESTRIPE_DELAY_MS`).
fn start_delay() -> Duration {
    std::env::var("TESSERA_TEST_RESTRIPE_DELAY_MS").ok().and_then(|v| v.parse().ok()).map_or(Duration::ZERO, Duration::from_millis)
}

/// The locks a request takes that writes row `(table, k)`, with the row
/// itself: the object key (`meta::object_key`) for its rows, and for a
/// part its upload's (UploadPart, Complete and Abort hold that one).
/// Taken by the walk and by the heal (`heal::mend_key`), so neither
/// interleaves with a request's read-modify-write of the row.
pub(crate) fn request_locks(table: u8, k: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut locks = vec![(table, k.to_vec())];
    locks.extend(object_key_of(table, k).map(|o| (T_OBJECTS, o)));
    if table == T_PARTS && k.len() > 5 {
        locks.push((crate::meta::T_UPLOADS, k[..k.len() - 5].to_vec()));
    }
    locks
}

/// The object key (`meta::object_key`) a row of `table` belongs to: the
/// lock requests take for it.
fn object_key_of(table: u8, k: &[u8]) -> Option<Vec<u8>> {
    let bucket = k.get(..8)?;
    let key = match table {
        T_OBJECTS => return Some(k.to_vec()),
        T_VERSIONS => parse_version_key(k)?.1,
        // `object key \0 upload id \0 part number (4 bytes)`.
        T_PARTS => split_upload_key(k.get(8..k.len().checked_sub(5)?)?)?.0.to_vec(),
        _ => return None,
    };
    Some([bucket, &key].concat())
}

/// Counts a running walk for as long as it lives.
struct Running<'a>(&'a ClusterNode);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.restripe_running.fetch_sub(1, Relaxed);
    }
}

/// Walks `lanes` (this reactor's own, made as `mirrors`) and commits
/// again every record that names a piece of another width than its lane.
pub(crate) async fn walk(ctx: Rc<Ctx>, node: Arc<ClusterNode>, lanes: Vec<(Rc<LocalShard>, Rc<Mirrors>)>, order: u64) {
    node.restripe_running.fetch_add(1, Relaxed);
    let _running = Running(&node);
    monoio::time::sleep(start_delay()).await;
    let rate = ctx.shared.config.heal_bytes_per_sec / ctx.shared.config.threads.max(1) as u64;
    let mut throttle = crate::heal::Throttle::new(rate.max(u64::from(ctx.shared.config.heal_bytes_per_sec > 0)));
    let (mut examined, mut restriped, mut skipped) = (0u64, 0u64, 0u64);
    for (l, m) in lanes {
        let mut from: (u8, Option<Vec<u8>>) = (T_OBJECTS, None);
        'lane: loop {
            let page = crate::holder::keys_from(&l.shard, from.0, from.1.as_deref(), PAGE);
            let full = page.len() == PAGE;
            for (t, k) in page {
                if t > T_VERSIONS {
                    break 'lane;
                }
                let mut tries = 0;
                loop {
                    // Lanes made again (a newer layout, or another node
                    // acting for this one): the next own lanes walk again.
                    if !l.mirrors().is_some_and(|now| Rc::ptr_eq(&now, &m)) || ctx.shutdown.is_closed() {
                        tracing::info!(examined, restriped, "re-striping stopped: the lanes were made again");
                        return;
                    }
                    if !matches!(t, T_OBJECTS | T_VERSIONS | T_PARTS) {
                        break;
                    }
                    match again(&l, &m, t, &k).await {
                        Ok(n) => {
                            examined += 1;
                            node.restripe_examined.fetch_add(1, Relaxed);
                            throttle.spend(EXAMINE_COST).await;
                            if let Some(bytes) = n {
                                restriped += 1;
                                node.restripe_records.fetch_add(1, Relaxed);
                                throttle.spend(bytes).await;
                            }
                            break;
                        }
                        Err(e) => {
                            tries += 1;
                            if tries >= TRIES {
                                // A damaged record (or members down for
                                // long): the walk goes on, and ends undone.
                                tracing::error!(table = t, error = %e, tries, "a record could not be striped again; the walk goes on without it");
                                skipped += 1;
                                node.restripe_failed.fetch_add(1, Relaxed);
                                break;
                            }
                            tracing::warn!(table = t, error = %e, "a record could not be striped again; the walk tries it again shortly");
                            monoio::time::sleep(RETRY_AFTER).await;
                        }
                    }
                }
                from = (t, Some(k));
            }
            if !full {
                break;
            }
        }
    }
    if restriped > 0 {
        tracing::info!(core = ctx.core, examined, restriped, "records written before the lanes grew are striped in their lanes' shape");
    }
    if skipped > 0 {
        tracing::error!(core = ctx.core, skipped, "records left in an older shape: the lanes are walked again at the next start");
        return;
    }
    let all = {
        let mut done = node.restripe_done.lock().unwrap_or_else(|e| e.into_inner());
        if done.0 != order {
            *done = (order, Default::default());
        }
        done.1.insert(ctx.core);
        done.1.len() >= ctx.shared.config.threads
    };
    if all {
        report(&node, order).await;
    }
}

/// How often a report that did not reach the configuration is tried again.
pub(crate) const REPORT_AGAIN_EVERY: Duration = Duration::from_secs(10);

/// Whether every one of `threads` reactors ended its walk under lane order
/// `order` in this process (`walk`): the report may be written.
pub(crate) fn all_walked(node: &ClusterNode, order: u64, threads: usize) -> bool {
    let done = node.restripe_done.lock().unwrap_or_else(|e| e.into_inner());
    done.0 == order && done.1.len() >= threads
}

/// Writes `restriped/<id>`: every reactor's walk under lane order `order`
/// ended. A write that fails (an election, a timeout) is tried again by
/// the lanes' loop (`cluster_lanes`, every `REPORT_AGAIN_EVERY`): lane
/// changes wait for every node's report (`owners::next_layout`).
pub(crate) async fn report(node: &ClusterNode, order: u64) {
    let Some(raft) = node.raft() else { return };
    let value = serde_json::to_vec(&RestripedRecord { format: RESTRIPED_RECORD_FORMAT, order }).expect("a restriped record serializes");
    let cmd = tessera_raft::Command::Put { key: RestripedRecord::key(node.id_str()), value };
    match monoio::time::timeout(crate::buckets::cluster::RAFT_WRITE_TIMEOUT, raft.write(&cmd)).await {
        Ok(Ok(_)) => tracing::info!(order, "cluster: this node's lanes hold no record of an older shape"),
        Ok(Err(e)) => tracing::warn!("cluster: reporting the re-striping done: {e} (tried again shortly)"),
        Err(_) => tracing::warn!("cluster: reporting the re-striping done timed out (tried again shortly)"),
    }
}

/// Commits record `(t, k)` of lane `l` again when it names a piece of
/// another width than the lane's: the body bytes so striped again, or
/// None (nothing to do, or the record is gone).
async fn again(l: &Rc<LocalShard>, m: &Mirrors, t: u8, k: &[u8]) -> Result<Option<u64>, IoError> {
    let Some(coding) = m.coding.as_ref() else { return Ok(None) };
    let _held = l.lock(request_locks(t, k)).await;
    if m.plain() {
        return unstripe(l, t, k).await;
    }
    // The stored record first: one in the lane's shape is left without
    // registering piece handles (a walk would crowd out those of uploads
    // in flight, `Mirrors::add_piece`).
    let Some(raw) = l.shard.load(t, k).await? else { return Ok(None) };
    let Body::Extents(rex) = &raw.body else { return Ok(None) };
    let due = match crate::stripes::Envelope::unwrap(&raw.meta) {
        Ok(None) => rex.iter().any(|e| e.len > 0),
        Ok(Some((env, _))) => {
            env.params() != Some(coding.params) || env.pieces.iter().any(|p| matches!(p, crate::stripes::PieceInfo::Plain { len } if *len > 0))
        }
        Err(_) => false,
    };
    if !due {
        return Ok(None);
    }
    let Some(s) = crate::stripes_io::load(&l.shard, t, k).await? else { return Ok(None) };
    let Body::Extents(mut ex) = s.body else { return Ok(None) };
    // A plain extent: a body written before the lanes formed (2 nodes to
    // 3), on its owner alone (the heal copied it whole to the members).
    let plain = |e: &tessera_io::Extent| e.segment != VIRTUAL_SEGMENT && e.len > 0;
    if !ex.iter().any(plain) && !ex.iter().filter_map(|e| m.piece(e)).any(|p| p.params != coding.params) {
        return Ok(None);
    }
    for e in ex.iter_mut().filter(|e| plain(e)) {
        let bytes = l.shard.read_extent(e, 0..e.len).await?;
        let mut b = DataBuf::new(bytes.len());
        b.extend_from_slice(&bytes);
        *e = crate::stripes_io::write_piece(&l.shard, m, b).await?;
    }
    let bytes = ex.iter().map(|e| e.len).sum();
    // Pieces of another width are striped again by the commit itself.
    l.commit_in_txn(vec![Mutation::Put { table: t, key: k.to_vec(), summary: s.summary, meta: s.meta, body: Body::Extents(ex) }]).await?;
    Ok(Some(bytes))
}

/// Lanes on their way out (3 nodes to 2, `Mirrors::plain`): commits
/// record `(t, k)` again when it names a striped piece, so that the
/// commit writes every piece whole (`lanes::restripe`) and the owner's
/// shard alone serves it once the lanes are gone. Under the row's locks.
async fn unstripe(l: &Rc<LocalShard>, t: u8, k: &[u8]) -> Result<Option<u64>, IoError> {
    let Some(raw) = l.shard.load(t, k).await? else { return Ok(None) };
    let Body::Extents(_) = &raw.body else { return Ok(None) };
    let due = match crate::stripes::Envelope::unwrap(&raw.meta) {
        Ok(Some((env, _))) => env.pieces.iter().any(|p| matches!(p, crate::stripes::PieceInfo::Striped { .. })),
        Ok(None) | Err(_) => false,
    };
    if !due {
        return Ok(None);
    }
    let Some(s) = crate::stripes_io::load(&l.shard, t, k).await? else { return Ok(None) };
    let Body::Extents(ex) = s.body else { return Ok(None) };
    let bytes = ex.iter().map(|e| e.len).sum();
    l.commit_in_txn(vec![Mutation::Put { table: t, key: k.to_vec(), summary: s.summary, meta: s.meta, body: Body::Extents(ex) }]).await?;
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{object_key, part_key, version_key, VersionId};

    #[test]
    fn a_rows_object_key_is_the_lock_requests_take() {
        let okey = object_key(7, "dir/a\0b-ü");
        assert_eq!(object_key_of(T_OBJECTS, &okey), Some(okey.clone()));
        let v = version_key(7, "dir/a\0b-ü", &VersionId::from_parts(1_700_000_000_000_000, [0, 1, 0, 0, 2, 0, 0, 3]));
        assert_eq!(object_key_of(T_VERSIONS, &v), Some(okey.clone()));
        // A part number whose bytes hold NULs.
        for n in [1u32, 256, 65536, 10_000] {
            assert_eq!(object_key_of(T_PARTS, &part_key(7, "dir/a\0b-ü", "0badc0de", n)), Some(okey.clone()), "part {n}");
        }
        assert_eq!(object_key_of(T_PARTS, b"short"), None);
        assert_eq!(object_key_of(crate::meta::T_UPLOADS, &okey), None);
    }
}
