//! Moving keys between owners when the layout changes (issue 12).
//!
//! A layout change in a cluster that holds buckets (`owners::next_layout`)
//! commits the new layout together with the previous one (`layout.prev`).
//! From then on the new owner of a partition serves it, and a key it does
//! not hold yet is taken from the previous owner, one key at a time, with
//! every row the key has: its current version, its noncurrent versions,
//! its uploads in progress and their parts (summaries and metadata as
//! stored, bodies copied into the new owner's shards):
//!
//! 1. **Export** (`METHOD_MOVE_EXPORT`, on the old owner): once it has
//!    applied the caller's layout (so it admits no new request for the
//!    key) and its partition's requests in service (`Busy`, counted before
//!    ownership is checked) are done, it answers the key's rows: small
//!    bodies inline, others by length; the data key of an SSE-S3/SSE-KMS
//!    row opened (it is sealed under this node's master keys; the RPC's
//!    frames are sealed with the cluster secret).
//! 2. **Read** (`METHOD_MOVE_READ`): the bytes of a row's body as stored
//!    (sealed bodies stay sealed), in pieces of a data record.
//! 3. **Import** (here): the bodies are written to this node's shard of
//!    the key, each SSE-S3/SSE-KMS data key sealed again under this node's
//!    master key of the same name, and the rows committed in one
//!    transaction on the key's lock; a row this node holds already (a
//!    retried move) is kept as it is.
//! 4. **Drop** (`METHOD_MOVE_DROP`): the old owner deletes the rows it
//!    exported. Only then is the key served here, so no row ever comes
//!    back after a client changed the key on its new owner. A failed drop
//!    fails the request (503); the next one moves the key again, which
//!    keeps the rows already here.
//!
//! Every object request on a new owner moves its key first (`ensure`);
//! so do DeleteObjects' keys and copy sources read here. Moves of one key
//! are serialized on the node. A background mover on reactor 0 (`run`)
//! asks each previous owner for the keys it still holds of partitions
//! this node gained (`METHOD_MOVE_LIST`, paged, resumable by its cursor),
//! moves them, and reports `moved/<id>` for the layout version in the
//! configuration; the leader ends the move when every gaining node did.
//! Until then listings merge every node's keys as always, a key held by
//! both nodes for a moment listed once (`s3::list::MergedRange`).
//!
//! A key moves a page at a time (`PAGE_ROWS` rows, about `PAGE_BYTES` of
//! them): each page is exported, imported and dropped before the next is
//! asked for, so a key of any number of versions, uploads and parts moves
//! with bounded memory and frames, and at every moment each of its rows is
//! on one node or both. The key is served here only once its last page
//! (one not full) is dropped. (A caller of before paging asks for every
//! row at once, up to `MAX_ROWS`, and a callee of before paging answers so:
//! `Export`.)
//!
//! The old owner's background workers are fenced as its requests are: a
//! lifecycle action, a transition's stub or a replication outcome holds
//! the key's partition (`hold`) and is not made once another node owns
//! the key, so no change lands between a key's export and its drop (the
//! new owner's workers take the key over).
//!
//! Replication work the old owner had queued for a key goes to the key's
//! owner (`METHOD_MOVE_QUEUE`, from the old owner's replication worker:
//! `handover_queue::hand_off_queued`): the owner moves the key first, then commits the
//! entries as they were (same queue keys, so their order stays) and its
//! own worker sends them and records the outcome on the version there.
//! An outcome the old owner learns after its key moved is not recorded
//! there; the entry stays and is handed over, so the version is sent
//! again (at least once, as replication always is). Queued notification
//! events go the same way (from `notify::worker`; the owner delivers
//! them), so a decommissioned node holds no queued work of its keys once
//! its workers ran; so do the retry records of FAILED replications
//! (`T_REPLSTATE`, due or not: swept once per layout version by
//! `replication::retry`), so the new owner retries them. Not moved: tier
//! copies queued for deletion (garbage at the tier if the node is stopped
//! first).
//!
//! Wire (FORMAT BOUNDARY, inside the authenticated RPC frame), version 1:
//! JSON calls and answers (`KeyCall`, `Row`, `ReadCall`, `DropCall`,
//! `ListCall`, `ListAnswer`); a read answers the bytes. Errors are RPC
//! error frames with a message; the caller answers its client 503.

use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tessera_cluster::NodeIdentity;
use tessera_io::{Body, Mutation};
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use crate::buckets::BucketInfo;
use crate::cluster::ClusterNode;
use crate::meta::{object_key, ObjectMeta, UploadInfo, T_OBJECTS, T_UPLOADS, T_VERSIONS};
use crate::owners::{MovedRecord, NodeRecord, Owners, MOVED_RECORD_FORMAT};
use crate::server::Ctx;

pub const METHOD_MOVE_EXPORT: u16 = 44;
pub const METHOD_MOVE_READ: u16 = 45;
pub const METHOD_MOVE_DROP: u16 = 46;
pub const METHOD_MOVE_LIST: u16 = 47;
pub const METHOD_MOVE_QUEUE: u16 = 48;
pub(crate) const VERSION: u8 = 1;
/// Wire version of the calls made to a node acting for the previous owner
/// (`source`): the callee answers from its foster lanes of that owner.
/// A callee of before refuses the version rather than answer from its
/// own shards (which hold none of those keys: the move would end with
/// them left behind).
pub(crate) const VERSION_FOSTER: u8 = 2;

/// Where a key of a partition that moved is taken from: its previous
/// owner, or with cluster lanes the node acting for it when another
/// does (it is down, or back but not handed its keys yet: its shards
/// are fenced and may lack acknowledged writes; the acting node's foster
/// lanes hold them all). The node and the wire version to call it with.
pub(crate) fn source<'a>(owners: &'a Owners, from: &'a NodeRecord) -> Option<(&'a NodeRecord, u8)> {
    if owners.taken_over(&from.id) {
        return Some((owners.nodes.get(owners.acting_for(&from.id))?, VERSION_FOSTER));
    }
    Some((from, VERSION))
}
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an export or drop waits for the partition's requests in
/// service on the old owner (a large upload may take longer: the caller
/// answers 503 and the client retries).
pub(crate) const DRAIN_WAIT: Duration = Duration::from_secs(20);
/// How long a request waits for another move of its key on this node.
const KEY_WAIT: Duration = Duration::from_secs(60);
/// The most rows an export answers a caller that does not page.
pub(crate) const MAX_ROWS: usize = 10_000;
/// The most rows of one page...
const PAGE_ROWS: u32 = 1_000;
/// ...and about the most bytes of summaries, metas and inline bodies.
pub(crate) const PAGE_BYTES: usize = 4 << 20;
/// Inline bodies up to this size travel in the export; larger ones are read.
pub(crate) const EXPORT_INLINE_BYTES: usize = 16 * 1024;
/// The piece a body is read and written in: one data record.
pub(crate) const PIECE_BYTES: u64 = crate::s3::put::DATA_RECORD_BYTES as u64;
/// Keys one list answer carries at most, and index rows it scans at most.
pub(crate) const LIST_KEYS: u32 = 256;
pub(crate) const LIST_SCAN: usize = 16_384;
/// Keys the mover moves at once (8 -> 32: 20,000 x 4 KiB moved at
/// 3,870-4,595 against 2,966-3,460 keys/s; 1 MiB bodies the same).
const MOVER_CONCURRENCY: usize = 32;
/// Keys a node remembers as here during a move (about 100 bytes each);
/// past that, a request for a gained key asks the old owner again.
pub const HERE_KEYS_MAX: usize = 262_144;
const MOVER_POLL: Duration = Duration::from_millis(500);

/// One object request in service on this node for its partition, from
/// before its ownership was checked until it is answered (`forward::decide`).
/// Counted both as this node's own and as served for another lane owner
/// until the request knows which (`own_only`, `foster_only`).
pub struct Busy {
    node: Arc<ClusterNode>,
    partition: usize,
    own: bool,
    foster: bool,
}

impl Busy {
    pub fn enter(node: &Arc<ClusterNode>, partition: u64) -> Busy {
        let partition = partition as usize % node.busy.len();
        node.busy[partition].fetch_add(1, Ordering::SeqCst);
        node.busy_foster[partition].fetch_add(1, Ordering::SeqCst);
        Busy { node: node.clone(), partition, own: true, foster: true }
    }

    /// `enter` for `(bucket, key)`'s partition, in a cluster (paths that
    /// find their key after `forward::decide`: POST, DeleteObjects).
    pub fn for_key(ctx: &Ctx, bucket: &str, key: &str) -> Option<Busy> {
        let node = ctx.shared.cluster.as_ref()?;
        let p = crate::layout::partition_of(bucket, key);
        let mut b = Busy::enter(node, p);
        if let Some(o) = node.owners.load_full() {
            b.settle(&o, node.id_str(), p);
        }
        Some(b)
    }

    /// Counted as this node's own, or as served for the lane owner of
    /// partition `p` it acts for, by the placement `owners` (read after
    /// the count was taken); both while it serves neither.
    pub fn settle(&mut self, owners: &Owners, me: &str, p: u64) {
        match owners.layout_owner_of(p) {
            Some(o) if o.id == me => self.own_only(),
            Some(o) if owners.acting_for(&o.id) == me => self.foster_only(),
            _ => {}
        }
    }

    /// The request is served for this node's own lanes.
    pub fn own_only(&mut self) {
        if std::mem::take(&mut self.foster) {
            self.node.busy_foster[self.partition].fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// The request is served for another lane owner (foster lanes).
    pub fn foster_only(&mut self) {
        if std::mem::take(&mut self.own) {
            self.node.busy[self.partition].fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// A background worker's hold on a key it is about to change here (a
/// lifecycle action, a transition's stub, a replication outcome): `None`
/// when another node owns the key now (its partition moved: its rows go,
/// or went, to that node, whose own workers take it over). Held across
/// the change, so the key's export waits for it as it waits for requests
/// (`Busy`, counted before ownership is checked); outside a cluster, an
/// empty hold.
pub fn hold(ctx: &Ctx, bucket: &str, key: &str) -> Option<Option<Busy>> {
    let busy = Busy::for_key(ctx, bucket, key);
    crate::forward::owned_here(ctx, bucket, key).then_some(busy)
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.own_only();
        self.foster_only();
    }
}

#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct KeyCall {
    pub(crate) v: u8,
    /// The caller's layout version: the callee answers once it has applied it.
    pub(crate) layout: u64,
    pub(crate) bucket: String,
    pub(crate) bucket_id: u64,
    pub(crate) key: String,
    /// An export's page: at most this many rows (and about `PAGE_BYTES`);
    /// the caller drops them and asks again until none are left. Absent
    /// (a caller of before paging): every row, up to `MAX_ROWS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) page: Option<u32>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) enum RowBody {
    /// The body itself (hex): small inline bodies.
    Inline(String),
    /// Read it with `METHOD_MOVE_READ`: its length, and whether it is
    /// stored inline (kept so here).
    Read { len: u64, inline: bool },
}

/// A row of a key as its old owner stores it (hex).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct Row {
    pub(crate) table: u8,
    pub(crate) key: String,
    pub(crate) summary: String,
    pub(crate) meta: String,
    pub(crate) body: RowBody,
    /// The opened data key of an SSE-S3/SSE-KMS row (or upload), to be
    /// sealed again under the new owner's master key.
    pub(crate) dk: Option<String>,
}

/// An export's answer: every row (a caller that does not page, or a
/// callee of before paging), or a page and whether rows may follow it.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Export {
    All(Vec<Row>),
    Page { rows: Vec<Row>, more: bool },
}

#[derive(Serialize, Deserialize)]
pub(crate) struct ReadCall {
    pub(crate) call: KeyCall,
    pub(crate) table: u8,
    pub(crate) row: String,
    pub(crate) start: u64,
    pub(crate) end: u64,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct DropCall {
    pub(crate) call: KeyCall,
    pub(crate) rows: Vec<(u8, String)>,
}

/// A list call's cursor: (shard, table, the last row key scanned, hex).
pub(crate) type Cursor = (u32, u8, String);

#[derive(Serialize, Deserialize)]
pub(crate) struct ListCall {
    pub(crate) v: u8,
    pub(crate) layout: u64,
    /// The node whose partitions' keys are listed.
    pub(crate) for_node: String,
    pub(crate) after: Option<Cursor>,
    /// `VERSION_FOSTER`: the previous owner whose foster shards the
    /// callee lists (it acts for that owner); the cursor's shard counts
    /// that owner's shards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) from: Option<String>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct ListAnswer {
    /// (bucket, bucket id, key), in the order found.
    pub(crate) keys: Vec<(String, u64, String)>,
    /// Where the next call goes on; `None`: every shard was scanned.
    pub(crate) next: Option<Cursor>,
}

thread_local! {
    /// When this reactor last logged a failed move, and the failures since.
    static LAST_WARN: std::cell::Cell<(Option<Instant>, u64)> = const { std::cell::Cell::new((None, 0)) };
}

/// A failed move: 503 for the client; logged at most once a second per
/// reactor (a previous owner that is down fails every request for its keys).
fn unavailable(why: impl std::fmt::Display) -> S3Error {
    LAST_WARN.with(|w| match w.get() {
        (Some(t), n) if t.elapsed() < Duration::from_secs(1) => w.set((Some(t), n + 1)),
        (_, n) => {
            tracing::warn!(not_logged_before = n, "moving a key to this node: {why}");
            w.set((Some(Instant::now()), 0));
        }
    });
    S3Error::with_message(S3ErrorCode::ServiceUnavailable, "This key is moving to this node and could not be moved yet; please retry.")
}

// ---- the new owner ---------------------------------------------------------

/// Moves `key` of `b` here from its previous owner when a layout change
/// gave its partition to this node and it may not be here yet; a no-op
/// otherwise (outside a move: one look at the placement).
pub async fn ensure(ctx: &Ctx, b: &BucketInfo, key: &str) -> S3Result<()> {
    let Some(node) = &ctx.shared.cluster else { return Ok(()) };
    // Every object request passes here: a look without an Arc clone first.
    let moving = node.owners.load().as_ref().is_some_and(|o| o.prev.is_some() && node.moved_for.load(Ordering::Acquire) != o.layout.version);
    if !moving {
        return Ok(());
    }
    let Some(owners) = node.owners.load_full() else { return Ok(()) };
    let p = crate::layout::partition_of(&b.name, key);
    let Some(from) = owners.moving_from(p) else { return Ok(()) };
    if owners.owner_of(p).is_none_or(|o| o.id != node.id_str()) || owners.moved_in(node.id_str()) {
        return Ok(());
    }
    let Some((from, v)) = source(&owners, from) else { return Err(unavailable("the record of the node acting for the previous owner")) };
    let Some(peer) = crate::fanout::identity(from) else { return Err(unavailable("the previous owner's record")) };
    let version = owners.layout.version;
    if is_here(node, version, b.id, key) {
        return Ok(());
    }
    let _turn = KeyTurn::take(node, b.id, key).await?;
    // (Another request may have moved it while this one waited its turn.)
    if is_here(node, version, b.id, key) {
        return Ok(());
    }
    pull(ctx, node, &owners, &peer, v, b, key).await?;
    let mut here = node.here_keys.lock().unwrap_or_else(|e| e.into_inner());
    if here.0 != version {
        *here = (version, Default::default());
    }
    if here.1.len() < HERE_KEYS_MAX {
        here.1.insert((b.id, key.to_string()));
    }
    Ok(())
}

/// Whether `ensure` found `key` of bucket `bucket` here already during
/// the move to layout `version` (the old owner holds nothing of it since:
/// it takes no request for it).
fn is_here(node: &ClusterNode, version: u64, bucket: u64, key: &str) -> bool {
    let here = node.here_keys.lock().unwrap_or_else(|e| e.into_inner());
    here.0 == version && here.1.contains(&(bucket, key.to_string()))
}

/// This node's turn to move one key (`moving_keys`).
struct KeyTurn<'a> {
    node: &'a ClusterNode,
    id: (u64, String),
}

impl<'a> KeyTurn<'a> {
    async fn take(node: &'a ClusterNode, bucket: u64, key: &str) -> S3Result<KeyTurn<'a>> {
        let id = (bucket, key.to_string());
        let start = Instant::now();
        loop {
            if node.moving_keys.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone()) {
                return Ok(KeyTurn { node, id });
            }
            if start.elapsed() > KEY_WAIT {
                return Err(unavailable("another move of the key took too long"));
            }
            monoio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

impl Drop for KeyTurn<'_> {
    fn drop(&mut self) {
        self.node.moving_keys.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
}

pub(crate) async fn call(node: &Arc<ClusterNode>, peer: &NodeIdentity, method: u16, payload: Vec<u8>) -> S3Result<Vec<u8>> {
    crate::fanout::pool(node)
        .call(peer, method, payload, CALL_TIMEOUT)
        .await
        .map_err(|e| unavailable(format!("node {}: {e}", peer.addr)))
}

fn unhex(s: &str) -> S3Result<Vec<u8>> {
    hex::decode(s).map_err(|_| unavailable("a malformed export"))
}

/// Export, import and drop of one key, a page at a time (see the module
/// doc).
async fn pull(ctx: &Ctx, node: &Arc<ClusterNode>, owners: &Owners, peer: &NodeIdentity, v: u8, b: &BucketInfo, key: &str) -> S3Result<()> {
    let kc = KeyCall {
        v,
        layout: owners.layout.version,
        bucket: b.name.clone(),
        bucket_id: b.id,
        key: key.to_string(),
        page: Some(page_rows()),
    };
    let mut bytes = 0u64;
    let mut pages = 0u64;
    loop {
        let answer = call(node, peer, METHOD_MOVE_EXPORT, serde_json::to_vec(&kc).expect("a key call serializes")).await?;
        let (rows, more) = match serde_json::from_slice(&answer).map_err(|e| unavailable(format!("a malformed export: {e}")))? {
            Export::All(rows) => (rows, false),
            Export::Page { rows, more } => (rows, more),
        };
        if rows.is_empty() {
            break;
        }
        bytes += import(ctx, node, peer, &kc, b, &rows).await?;
        let dc = DropCall { call: kc.clone(), rows: rows.iter().map(|r| (r.table, r.key.clone())).collect() };
        let dropped = call(node, peer, METHOD_MOVE_DROP, serde_json::to_vec(&dc).expect("a drop call serializes")).await?;
        if dropped == b"0" {
            // Exported but not dropped: asking again would find it again.
            return Err(unavailable("the previous owner dropped none of a page it exported"));
        }
        pages += 1;
        if !more {
            break;
        }
    }
    if pages > 0 {
        node.moved_keys.fetch_add(1, Ordering::Relaxed);
        node.moved_bytes.fetch_add(bytes, Ordering::Relaxed);
        node.moved_pages.fetch_add(pages, Ordering::Relaxed);
    }
    Ok(())
}

/// Rows per export page this node asks for (`TESSERA_TEST_MOVE_PAGE_ROWS`
/// makes pages small in tests).
fn page_rows() -> u32 {
    static ROWS: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *ROWS.get_or_init(|| {
        std::env::var("TESSERA_TEST_MOVE_PAGE_ROWS").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(PAGE_ROWS)
    })
}

/// Writes one exported page of rows here (bodies, then every row in one
/// transaction on the key's lock, rows held already kept): the body bytes.
async fn import(ctx: &Ctx, node: &Arc<ClusterNode>, peer: &NodeIdentity, kc: &KeyCall, b: &BucketInfo, rows: &[Row]) -> S3Result<u64> {
    let shard = crate::s3::shard_of(ctx, &b.name, &kc.key);
    let mut muts = Vec::with_capacity(rows.len());
    let mut bytes = 0u64;
    for row in rows {
        let mut summary = unhex(&row.summary)?;
        let mut meta = unhex(&row.meta)?;
        let body = match &row.body {
            RowBody::Inline(h) => {
                let d = unhex(h)?;
                bytes += d.len() as u64;
                Body::Inline(d)
            }
            RowBody::Read { len, inline } => {
                bytes += len;
                copy_body(ctx, node, peer, kc, row, *len, *inline, shard).await?
            }
        };
        if let Some(dk) = &row.dk {
            seal_again(ctx, row.table, &mut summary, &mut meta, &unhex(dk)?)?;
        }
        muts.push(Mutation::Put { table: row.table, key: unhex(&row.key)?, summary, meta, body });
    }
    let lock = vec![(T_OBJECTS, object_key(b.id, &kc.key))];
    ctx.shards
        .txn(shard, lock, move |local| async move {
            let fresh: Vec<Mutation> = muts
                .into_iter()
                .filter(|m| match m {
                    Mutation::Put { table, key, .. } => local.shard.get(*table, key).is_none(),
                    _ => true,
                })
                .collect();
            if fresh.is_empty() {
                return Ok(0);
            }
            local.commit_in_txn(fresh).await
        })
        .await
        .map_err(crate::s3::io_error)?
        .map_err(crate::s3::io_error)?;
    Ok(bytes)
}

/// Reads a row's body from the old owner into this node's `shard`: as
/// data records, or inline when it was stored inline.
#[allow(clippy::too_many_arguments)]
async fn copy_body(
    ctx: &Ctx,
    node: &Arc<ClusterNode>,
    peer: &NodeIdentity,
    kc: &KeyCall,
    row: &Row,
    len: u64,
    inline: bool,
    shard: u32,
) -> S3Result<Body> {
    if inline && len > crate::s3::put::INLINE_MAX_BYTES as u64 {
        return Err(unavailable("an inline body over the inline limit"));
    }
    let mut inline_bytes = Vec::new();
    let mut extents = Vec::new();
    let mut at = 0;
    while at < len {
        let end = len.min(at + PIECE_BYTES);
        let rc = ReadCall { call: kc.clone(), table: row.table, row: row.key.clone(), start: at, end };
        let data = call(node, peer, METHOD_MOVE_READ, serde_json::to_vec(&rc).expect("a read call serializes")).await?;
        if data.len() as u64 != end - at {
            return Err(unavailable("a short body read"));
        }
        if inline {
            inline_bytes.extend_from_slice(&data);
        } else {
            let mut buf = crate::bodybuf::body_buf(&ctx.body_budget, data.len()).await?;
            buf.buf.spare_mut()[..data.len()].copy_from_slice(&data);
            buf.buf.advance(data.len());
            let e = ctx.shards.write_data(shard, buf.buf).await.map_err(crate::s3::io_error)?;
            extents.push(e);
        }
        at = end;
    }
    Ok(if inline { Body::Inline(inline_bytes) } else { Body::Extents(extents) })
}

/// Seals an SSE-S3/SSE-KMS row's data key under this node's master key of
/// the same name (an object's meta, or an upload's record in its summary).
fn seal_again(ctx: &Ctx, table: u8, summary: &mut Vec<u8>, meta: &mut Vec<u8>, dk: &[u8]) -> S3Result<()> {
    let dk = crate::sse::DataKey::from_bytes(dk).ok_or_else(|| unavailable("a malformed data key"))?;
    let seal = |info: &mut crate::sse::SseInfo| crate::sse::seal_again(&*ctx.shared.kms, info, &dk);
    match table {
        T_OBJECTS | T_VERSIONS => {
            let mut m = ObjectMeta::decode(meta).ok_or_else(|| unavailable("a malformed object meta"))?;
            if let Some(info) = m.sse.as_mut() {
                seal(info)?;
            }
            *meta = m.encode();
        }
        T_UPLOADS => {
            let mut u = UploadInfo::decode(summary).ok_or_else(|| unavailable("a malformed upload record"))?;
            if let Some(info) = u.meta.sse.as_mut() {
                seal(info)?;
            }
            *summary = u.encode();
        }
        _ => {}
    }
    Ok(())
}

/// Answers a move call from another node (`holder::host`).
pub async fn serve(ctx: &Rc<Ctx>, method: u16, payload: &[u8]) -> Result<Vec<u8>, Vec<u8>> {
    let r = match method {
        METHOD_MOVE_EXPORT => crate::handover_serve::serve_export(ctx, payload).await,
        METHOD_MOVE_READ => crate::handover_serve::serve_read(ctx, payload).await,
        METHOD_MOVE_DROP => crate::handover_serve::serve_drop(ctx, payload).await,
        METHOD_MOVE_LIST => crate::handover_serve::serve_list(ctx, payload).await,
        METHOD_MOVE_QUEUE => crate::handover_queue::serve_queue(ctx, payload).await,
        _ => Err("unknown move call".into()),
    };
    r.map_err(String::into_bytes)
}

// ---- the mover -------------------------------------------------------------

/// Reactor 0's background mover (see the module doc).
pub async fn run(ctx: Rc<Ctx>) {
    let Some(node) = ctx.shared.cluster.clone() else { return };
    // Tests hold the mover back to see keys moved by requests alone.
    let delay = std::env::var("TESSERA_TEST_MOVER_DELAY_MS").ok().and_then(|v| v.parse().ok()).map(Duration::from_millis);
    let mut seen: Option<(u64, Instant)> = None;
    loop {
        monoio::time::sleep(MOVER_POLL).await;
        if ctx.shared.metrics.stopping() {
            return;
        }
        let Some(owners) = node.owners.load_full() else { continue };
        if owners.prev.is_none() || !owners.gainers().contains(node.id_str()) || owners.moved_in(node.id_str()) {
            continue;
        }
        let version = owners.layout.version;
        let since = match seen {
            Some((v, t)) if v == version => t,
            _ => seen.insert((version, Instant::now())).1,
        };
        if delay.is_some_and(|d| since.elapsed() < d) {
            continue;
        }
        if node.moved_for.load(Ordering::Acquire) != version {
            match move_all(&ctx, &node, &owners).await {
                Ok((_, asked)) if node.owners.load_full().is_none_or(|now| sources_of(&now, node.id_str()).ok() != Some(asked.clone())) => {
                    tracing::info!(layout = version, "cluster: where this node's gained keys are taken from changed during the pass; it is made again");
                    continue;
                }
                Ok((n, _)) => {
                    tracing::info!(keys = n, layout = version, "cluster: every key of the partitions this node gained is here");
                    node.moved_for.store(version, Ordering::Release);
                    // `ensure` asks nothing more of this layout's move.
                    *node.here_keys.lock().unwrap_or_else(|e| e.into_inner()) = (0, Default::default());
                }
                Err(e) => {
                    tracing::warn!(layout = version, "cluster: moving keys here goes on later: {e}");
                    continue;
                }
            }
        }
        report(&node, version).await;
    }
}

/// Where the keys of the partitions node `me` gained are asked for:
/// (node to ask, wire version, the previous owner it acts for with
/// `VERSION_FOSTER`), one per previous owner.
fn sources_of(owners: &Owners, me: &str) -> Result<BTreeSet<(String, u8, Option<String>)>, String> {
    (0..crate::layout::PARTITIONS)
        .filter(|&p| owners.owner_of(p).is_some_and(|o| o.id == me))
        .filter_map(|p| owners.moving_from(p))
        .map(|r| {
            let (n, v) = source(owners, r).ok_or("the record of a node acting for a previous owner")?;
            Ok((n.id.clone(), v, (v == VERSION_FOSTER).then(|| r.id.clone())))
        })
        .collect()
}

/// One pass over every previous owner of a partition this node gained:
/// the number of keys found to move, and where they were asked for
/// (`sources_of`: a pass whose sources changed meanwhile, a node acting
/// for a previous owner replaced or the owner handed its keys back, is
/// made again, so no key is left where nobody was asked).
async fn move_all(ctx: &Rc<Ctx>, node: &Arc<ClusterNode>, owners: &Owners) -> Result<(u64, BTreeSet<(String, u8, Option<String>)>), String> {
    let me = node.id_hex();
    let sources = sources_of(owners, &me)?;
    let mut moved = 0u64;
    for (id, v, from) in sources.iter().cloned() {
        let peer = owners.nodes.get(&id).and_then(crate::fanout::identity).ok_or("a previous owner's record")?;
        let mut after = None;
        loop {
            let lc = ListCall { v, layout: owners.layout.version, for_node: me.clone(), after, from: from.clone() };
            let answer = call(node, &peer, METHOD_MOVE_LIST, serde_json::to_vec(&lc).expect("a list call serializes"))
                .await
                .map_err(|e| e.message)?;
            let a: ListAnswer = serde_json::from_slice(&answer).map_err(|e| format!("a malformed list answer: {e}"))?;
            for chunk in a.keys.chunks(MOVER_CONCURRENCY) {
                let each = chunk.iter().map(|(bucket, bid, key)| async move {
                    // Asked of the configuration when this node's registry
                    // lacks it: a bucket not known yet is no reason to skip.
                    let b = match ctx.shared.buckets.find(bucket).await {
                        Ok(b) if b.id == *bid => b,
                        // Gone (deleted meanwhile): its rows go with it.
                        Ok(_) => return Ok(()),
                        Err(e) if e.code == S3ErrorCode::NoSuchBucket => return Ok(()),
                        Err(e) => return Err(e),
                    };
                    ensure(ctx, &b, key).await
                });
                for r in futures_util::future::join_all(each).await {
                    r.map_err(|e| e.message)?;
                }
            }
            moved += a.keys.len() as u64;
            match a.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
    }
    Ok((moved, sources))
}

/// Records `moved/<id>` for `version` (tried again at the next poll when
/// the write fails).
async fn report(node: &ClusterNode, version: u64) {
    let Some(raft) = node.raft() else { return };
    let value = serde_json::to_vec(&MovedRecord { format: MOVED_RECORD_FORMAT, layout: version }).expect("a moved record");
    let cmd = tessera_raft::Command::Put { key: MovedRecord::key(node.id_str()), value };
    match monoio::time::timeout(CALL_TIMEOUT, raft.write(&cmd)).await {
        Ok(Ok(_)) => tracing::info!(layout = version, "cluster: reported this node's keys moved"),
        Ok(Err(e)) => tracing::warn!("cluster: reporting this node's keys moved: {e}"),
        Err(_) => tracing::warn!("cluster: reporting this node's keys moved timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_reads_as_a_page_or_as_every_row() {
        let row = Row { table: T_OBJECTS, key: "00".into(), summary: String::new(), meta: String::new(), body: RowBody::Inline(String::new()), dk: None };
        let page = serde_json::to_vec(&Export::Page { rows: vec![row.clone()], more: true }).unwrap();
        assert!(matches!(serde_json::from_slice(&page).unwrap(), Export::Page { rows, more: true } if rows.len() == 1));
        // A callee of before paging answers a bare array (and "[]" when the
        // bucket is gone).
        let all = serde_json::to_vec(&vec![row.clone(), row]).unwrap();
        assert!(matches!(serde_json::from_slice(&all).unwrap(), Export::All(rows) if rows.len() == 2));
        assert!(matches!(serde_json::from_slice(b"[]").unwrap(), Export::All(rows) if rows.is_empty()));
        // A caller of before paging sends no `page`: it reads as `None`.
        let old = br#"{"v":1,"layout":3,"bucket":"b","bucket_id":7,"key":"k"}"#;
        assert_eq!(serde_json::from_slice::<KeyCall>(old).unwrap().page, None);
    }
}
