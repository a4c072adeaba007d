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
//! `hand_off_queued`): the owner moves the key first, then commits the
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
use crate::meta::{
    object_key, parse_version_key, split_upload_key, versions_prefix, ObjectMeta, UploadInfo, T_OBJECTS, T_PARTS,
    T_EVENTS, T_REPLICATION, T_REPLSTATE, T_UPLOADS, T_VERSIONS,
};
use crate::owners::{MovedRecord, Owners, MOVED_RECORD_FORMAT};
use crate::server::Ctx;

pub const METHOD_MOVE_EXPORT: u16 = 44;
pub const METHOD_MOVE_READ: u16 = 45;
pub const METHOD_MOVE_DROP: u16 = 46;
pub const METHOD_MOVE_LIST: u16 = 47;
pub const METHOD_MOVE_QUEUE: u16 = 48;
const VERSION: u8 = 1;
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an export or drop waits for the partition's requests in
/// service on the old owner (a large upload may take longer: the caller
/// answers 503 and the client retries).
const DRAIN_WAIT: Duration = Duration::from_secs(20);
/// How long a request waits for another move of its key on this node.
const KEY_WAIT: Duration = Duration::from_secs(60);
/// The most rows an export answers a caller that does not page.
const MAX_ROWS: usize = 10_000;
/// The most rows of one page...
const PAGE_ROWS: u32 = 1_000;
/// ...and about the most bytes of summaries, metas and inline bodies.
const PAGE_BYTES: usize = 4 << 20;
/// Inline bodies up to this size travel in the export; larger ones are read.
const EXPORT_INLINE_BYTES: usize = 16 * 1024;
/// The piece a body is read and written in: one data record.
const PIECE_BYTES: u64 = crate::s3::put::DATA_RECORD_BYTES as u64;
/// Keys one list answer carries at most, and index rows it scans at most.
const LIST_KEYS: u32 = 256;
const LIST_SCAN: usize = 16_384;
/// Keys the mover moves at once (8 -> 32: 20,000 x 4 KiB moved at
/// 3,870-4,595 against 2,966-3,460 keys/s; 1 MiB bodies the same).
const MOVER_CONCURRENCY: usize = 32;
/// Keys a node remembers as here during a move (about 100 bytes each);
/// past that, a request for a gained key asks the old owner again.
pub const HERE_KEYS_MAX: usize = 262_144;
const MOVER_POLL: Duration = Duration::from_millis(500);

/// One object request in service on this node for its partition, from
/// before its ownership was checked until it is answered (`forward::decide`).
pub struct Busy {
    node: Arc<ClusterNode>,
    partition: usize,
}

impl Busy {
    pub fn enter(node: &Arc<ClusterNode>, partition: u64) -> Busy {
        let partition = partition as usize % node.busy.len();
        node.busy[partition].fetch_add(1, Ordering::SeqCst);
        Busy { node: node.clone(), partition }
    }

    /// `enter` for `(bucket, key)`'s partition, in a cluster (paths that
    /// find their key after `forward::decide`: POST, DeleteObjects).
    pub fn for_key(ctx: &Ctx, bucket: &str, key: &str) -> Option<Busy> {
        let node = ctx.shared.cluster.as_ref()?;
        Some(Busy::enter(node, crate::layout::partition_of(bucket, key)))
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
        self.node.busy[self.partition].fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Serialize, Deserialize, Clone)]
struct KeyCall {
    v: u8,
    /// The caller's layout version: the callee answers once it has applied it.
    layout: u64,
    bucket: String,
    bucket_id: u64,
    key: String,
    /// An export's page: at most this many rows (and about `PAGE_BYTES`);
    /// the caller drops them and asks again until none are left. Absent
    /// (a caller of before paging): every row, up to `MAX_ROWS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    page: Option<u32>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
enum RowBody {
    /// The body itself (hex): small inline bodies.
    Inline(String),
    /// Read it with `METHOD_MOVE_READ`: its length, and whether it is
    /// stored inline (kept so here).
    Read { len: u64, inline: bool },
}

/// A row of a key as its old owner stores it (hex).
#[derive(Serialize, Deserialize, Clone, Debug)]
struct Row {
    table: u8,
    key: String,
    summary: String,
    meta: String,
    body: RowBody,
    /// The opened data key of an SSE-S3/SSE-KMS row (or upload), to be
    /// sealed again under the new owner's master key.
    dk: Option<String>,
}

/// An export's answer: every row (a caller that does not page, or a
/// callee of before paging), or a page and whether rows may follow it.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Export {
    All(Vec<Row>),
    Page { rows: Vec<Row>, more: bool },
}

#[derive(Serialize, Deserialize)]
struct ReadCall {
    call: KeyCall,
    table: u8,
    row: String,
    start: u64,
    end: u64,
}

#[derive(Serialize, Deserialize)]
struct DropCall {
    call: KeyCall,
    rows: Vec<(u8, String)>,
}

/// A list call's cursor: (shard, table, the last row key scanned, hex).
type Cursor = (u32, u8, String);

#[derive(Serialize, Deserialize)]
struct ListCall {
    v: u8,
    layout: u64,
    /// The node whose partitions' keys are listed.
    for_node: String,
    after: Option<Cursor>,
}

#[derive(Serialize, Deserialize)]
struct ListAnswer {
    /// (bucket, bucket id, key), in the order found.
    keys: Vec<(String, u64, String)>,
    /// Where the next call goes on; `None`: every shard was scanned.
    next: Option<Cursor>,
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
    pull(ctx, node, &owners, &peer, b, key).await?;
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

async fn call(node: &Arc<ClusterNode>, peer: &NodeIdentity, method: u16, payload: Vec<u8>) -> S3Result<Vec<u8>> {
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
async fn pull(ctx: &Ctx, node: &Arc<ClusterNode>, owners: &Owners, peer: &NodeIdentity, b: &BucketInfo, key: &str) -> S3Result<()> {
    let kc = KeyCall {
        v: VERSION,
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

// ---- the old owner ---------------------------------------------------------

/// This node and its placement, for a call of wire version `v` made at
/// layout version `layout`: refused unless this node applied it too.
fn applied(ctx: &Ctx, v: u8, layout: u64) -> Result<(&Arc<ClusterNode>, Arc<Owners>), String> {
    if v != VERSION {
        return Err("a move call of another version".into());
    }
    let node = ctx.shared.cluster.as_ref().ok_or("not in a cluster")?;
    let owners = node.owners.load_full().ok_or("no layout here yet")?;
    if owners.layout.version < layout {
        return Err(format!("layout {layout} not applied here yet"));
    }
    Ok((node, owners))
}

/// The bucket a call names, once this node has applied the caller's
/// layout, does not own the key, and (`drain`) serves no request of its
/// partition. `Ok(None)`: the bucket is gone here (nothing to move).
async fn handing_over(ctx: &Ctx, kc: &KeyCall, drain: bool) -> Result<Option<Arc<BucketInfo>>, String> {
    let (node, _) = applied(ctx, kc.v, kc.layout)?;
    if crate::forward::owned_here(ctx, &kc.bucket, &kc.key) {
        return Err("this node owns the key".into());
    }
    let Some(b) = ctx.shared.buckets.get(&kc.bucket).filter(|b| b.id == kc.bucket_id) else { return Ok(None) };
    if drain {
        let p = crate::layout::partition_of(&kc.bucket, &kc.key) as usize % node.busy.len();
        let start = Instant::now();
        while node.busy[p].load(Ordering::SeqCst) > 0 {
            if start.elapsed() > DRAIN_WAIT {
                return Err("requests for the key's partition are still in service here".into());
            }
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Ok(Some(b))
}

/// Whether `rest`, what follows `object_key \0` in a row key, is an
/// upload of that key (`upload id`) or a part of one (`upload id \0
/// number`): upload ids are hex, so a NUL in them is another key's (one
/// whose name goes on past the NUL).
fn upload_rest(table: u8, rest: &[u8]) -> bool {
    match table {
        T_UPLOADS => !rest.is_empty() && !rest.contains(&0),
        T_PARTS => match rest.iter().position(|&c| c == 0) {
            Some(i) => i > 0 && rest.len() - i - 1 == 4,
            None => false,
        },
        _ => false,
    }
}

/// Whether row `k` of `table` is one of `key`'s (bucket `bucket`).
fn belongs(table: u8, k: &[u8], bucket: u64, key: &str) -> bool {
    let okey = object_key(bucket, key);
    match table {
        T_OBJECTS => k == okey.as_slice(),
        T_VERSIONS => k.starts_with(&versions_prefix(bucket, key)),
        T_UPLOADS | T_PARTS => k.len() > okey.len() && k.starts_with(&okey) && k[okey.len()] == 0 && upload_rest(table, &k[okey.len() + 1..]),
        _ => false,
    }
}

/// The keys of the first `limit` rows `key` of bucket `bucket` has on
/// `shard`: its current version, its versions, its parts, its uploads.
fn rows_of(shard: &tessera_io::Shard, bucket: u64, key: &str, limit: usize) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let okey = object_key(bucket, key);
    if shard.get(T_OBJECTS, &okey).is_some() {
        out.push((T_OBJECTS, okey.clone()));
    }
    let mut uprefix = okey;
    uprefix.push(0);
    for (table, prefix) in [(T_VERSIONS, versions_prefix(bucket, key)), (T_PARTS, uprefix.clone()), (T_UPLOADS, uprefix)] {
        let mut after: Option<Vec<u8>> = None;
        while out.len() < limit {
            let batch = shard.range(table, &prefix, after.as_deref(), 1000);
            let done = batch.len() < 1000;
            for (k, _) in batch {
                if out.len() < limit && (table == T_VERSIONS || upload_rest(table, &k[prefix.len()..])) {
                    out.push((table, k.clone()));
                }
                after = Some(k);
            }
            if done {
                break;
            }
        }
    }
    out
}

/// The opened data key of an SSE-S3/SSE-KMS row, hex.
fn opened_key(ctx: &Ctx, table: u8, summary: &[u8], meta: &[u8]) -> Result<Option<String>, String> {
    let info = match table {
        T_OBJECTS | T_VERSIONS => ObjectMeta::decode(meta).ok_or("a corrupt object meta")?.sse,
        T_UPLOADS => UploadInfo::decode(summary).ok_or("a corrupt upload record")?.meta.sse,
        _ => None,
    };
    match info {
        Some(i) if !matches!(i.mode, crate::sse::SseMode::Customer { .. }) => {
            let dk = crate::sse::open(&*ctx.shared.kms, Some(&i), None).map_err(|e| e.message)?;
            Ok(dk.map(|k| hex::encode(k.bytes())))
        }
        _ => Ok(None),
    }
}

async fn serve_export(ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>, String> {
    let kc: KeyCall = serde_json::from_slice(payload).map_err(|e| format!("a malformed export call: {e}"))?;
    let Some(b) = handing_over(ctx, &kc, true).await? else { return Ok(b"[]".to_vec()) };
    let shard = crate::s3::shard_of(ctx, &b.name, &kc.key);
    let (bid, key, page) = (b.id, kc.key.clone(), kc.page);
    let lock = vec![(T_OBJECTS, object_key(bid, &key))];
    let stored = ctx
        .shards
        .txn(shard, lock, move |local| async move {
            let limit = page.map_or(MAX_ROWS + 1, |n| n.max(1) as usize);
            let found = rows_of(&local.shard, bid, &key, limit);
            if page.is_none() && found.len() > MAX_ROWS {
                return Err(format!("the key has more than {MAX_ROWS} rows to move"));
            }
            // A full page may have rows after it (a caller that pages asks
            // again only then).
            let mut more = page.is_some() && found.len() == limit;
            let mut out = Vec::new();
            let mut size = 0;
            for (table, k) in found {
                if page.is_some() && size >= PAGE_BYTES {
                    more = true;
                    break;
                }
                let s = crate::stripes_io::load(&local.shard, table, &k).await.map_err(|e| e.to_string())?;
                if let Some(s) = s {
                    size += k.len() + s.summary.len() + s.meta.len();
                    if let Body::Inline(d) = &s.body {
                        size += d.len().min(EXPORT_INLINE_BYTES + 1);
                    }
                    out.push((table, k, s));
                }
            }
            Ok::<_, String>((out, more))
        })
        .await
        .map_err(|e| e.to_string())??;
    let (stored, more) = stored;
    let mut rows = Vec::with_capacity(stored.len());
    for (table, k, s) in stored {
        let body = match &s.body {
            Body::Inline(d) if d.len() <= EXPORT_INLINE_BYTES => RowBody::Inline(hex::encode(d)),
            Body::Inline(d) => RowBody::Read { len: d.len() as u64, inline: true },
            Body::Extents(e) => RowBody::Read { len: e.iter().map(|x| x.len).sum(), inline: false },
        };
        let dk = opened_key(ctx, table, &s.summary, &s.meta)?;
        rows.push(Row { table, key: hex::encode(&k), summary: hex::encode(&s.summary), meta: hex::encode(&s.meta), body, dk });
    }
    let answer = match kc.page {
        Some(_) => Export::Page { rows, more },
        None => Export::All(rows),
    };
    Ok(serde_json::to_vec(&answer).expect("rows serialize"))
}

async fn serve_read(ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>, String> {
    let rc: ReadCall = serde_json::from_slice(payload).map_err(|e| format!("a malformed read call: {e}"))?;
    if rc.start > rc.end || rc.end - rc.start > PIECE_BYTES {
        return Err("a read over the limit".into());
    }
    let b = handing_over(ctx, &rc.call, false).await?.ok_or("the bucket is gone")?;
    let shard = crate::s3::shard_of(ctx, &b.name, &rc.call.key);
    let row = hex::decode(&rc.row).map_err(|_| "a malformed row key")?;
    let table = rc.table;
    let s = ctx
        .shards
        .txn(shard, Vec::new(), move |local| async move { crate::stripes_io::load(&local.shard, table, &row).await })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?
        .ok_or("the row is gone")?;
    crate::sse::stream::read_stored(ctx, shard, &s.body, rc.start..rc.end).await.map_err(|e| e.to_string())
}

async fn serve_drop(ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>, String> {
    let dc: DropCall = serde_json::from_slice(payload).map_err(|e| format!("a malformed drop call: {e}"))?;
    let Some(b) = handing_over(ctx, &dc.call, true).await? else { return Ok(b"0".to_vec()) };
    let shard = crate::s3::shard_of(ctx, &b.name, &dc.call.key);
    let mut rows = Vec::with_capacity(dc.rows.len());
    for (table, k) in &dc.rows {
        rows.push((*table, hex::decode(k).map_err(|_| "a malformed row key")?));
    }
    // Only rows of the key named (a caller cannot drop another key's).
    let (bid, key) = (b.id, dc.call.key.clone());
    let lock = vec![(T_OBJECTS, object_key(bid, &key))];
    let n = ctx
        .shards
        .txn(shard, lock, move |local| async move {
            let muts: Vec<Mutation> = rows
                .into_iter()
                .filter(|(table, k)| belongs(*table, k, bid, &key) && local.shard.get(*table, k).is_some())
                .map(|(table, key)| Mutation::Delete { table, key })
                .collect();
            let n = muts.len();
            if n > 0 {
                local.commit_in_txn(muts).await.map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(n)
        })
        .await
        .map_err(|e| e.to_string())??;
    Ok(n.to_string().into_bytes())
}

/// The bucket and object key of an index row of `table`.
fn key_of_row(table: u8, k: &[u8]) -> Option<(u64, Vec<u8>)> {
    let bucket = u64::from_be_bytes(k.get(..8)?.try_into().ok()?);
    match table {
        T_OBJECTS => Some((bucket, k[8..].to_vec())),
        T_VERSIONS => parse_version_key(k).map(|(b, key, _)| (b, key)),
        T_UPLOADS => split_upload_key(&k[8..]).map(|(key, _)| (bucket, key.to_vec())),
        _ => None,
    }
}

const LIST_TABLES: [u8; 3] = [T_OBJECTS, T_VERSIONS, T_UPLOADS];

async fn serve_list(ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>, String> {
    let lc: ListCall = serde_json::from_slice(payload).map_err(|e| format!("a malformed list call: {e}"))?;
    let (_, owners) = applied(ctx, lc.v, lc.layout)?;
    let (mut shard, mut ti, mut after) = match &lc.after {
        Some((s, t, k)) => (*s, LIST_TABLES.iter().position(|x| x == t).ok_or("a malformed cursor")?, Some(hex::decode(k).map_err(|_| "a malformed cursor")?)),
        None => (0, 0, None),
    };
    let mut keys: Vec<(String, u64, String)> = Vec::new();
    let mut names: std::collections::HashMap<u64, Option<String>> = Default::default();
    let mut scanned = 0;
    while shard < ctx.shards.count() {
        let table = LIST_TABLES[ti];
        let batch = ctx.shards.range(shard, table, Vec::new(), after.clone(), 1000).await.map_err(|e| e.to_string())?;
        let done = batch.len() < 1000;
        for (k, _) in batch {
            scanned += 1;
            if let Some((bid, key)) = key_of_row(table, &k) {
                let name = names
                    .entry(bid)
                    .or_insert_with(|| ctx.shared.buckets.matching(|b| b.id == bid).first().map(|b| b.name.clone()))
                    .clone();
                if let (Some(name), Ok(key)) = (name, String::from_utf8(key)) {
                    let p = crate::layout::partition_of(&name, &key);
                    let theirs = owners.owner_of(p).is_some_and(|o| o.id == lc.for_node);
                    if theirs && keys.last().is_none_or(|l| l.1 != bid || l.2 != key) {
                        keys.push((name, bid, key));
                    }
                }
            }
            after = Some(k);
        }
        if !done {
            if keys.len() >= LIST_KEYS as usize || scanned >= LIST_SCAN {
                let next = after.as_ref().map(|a| (shard, table, hex::encode(a)));
                return Ok(serde_json::to_vec(&ListAnswer { keys, next }).expect("serializes"));
            }
            continue;
        }
        after = None;
        ti += 1;
        if ti == LIST_TABLES.len() {
            ti = 0;
            shard += 1;
        }
        if keys.len() >= LIST_KEYS as usize || scanned >= LIST_SCAN {
            let next = (shard < ctx.shards.count()).then(|| (shard, LIST_TABLES[ti], String::new()));
            return Ok(serde_json::to_vec(&ListAnswer { keys, next }).expect("serializes"));
        }
    }
    Ok(serde_json::to_vec(&ListAnswer { keys, next: None }).expect("serializes"))
}

/// Answers a move call from another node (`holder::host`).
pub async fn serve(ctx: &Rc<Ctx>, method: u16, payload: &[u8]) -> Result<Vec<u8>, Vec<u8>> {
    let r = match method {
        METHOD_MOVE_EXPORT => serve_export(ctx, payload).await,
        METHOD_MOVE_READ => serve_read(ctx, payload).await,
        METHOD_MOVE_DROP => serve_drop(ctx, payload).await,
        METHOD_MOVE_LIST => serve_list(ctx, payload).await,
        METHOD_MOVE_QUEUE => serve_queue(ctx, payload).await,
        _ => Err("unknown move call".into()),
    };
    r.map_err(String::into_bytes)
}

// ---- queued replication work ---------------------------------------------------

/// Queue entries of one key handed to its owner (hex: entry key, summary,
/// meta, as stored in `table`).
#[derive(Serialize, Deserialize)]
struct QueueCall {
    call: KeyCall,
    table: u8,
    entries: Vec<(String, String, String)>,
}

/// The node that owns `(bucket, key)` now when it is another one and the
/// layout has no cluster lanes (keys move between owners only then): where
/// work this node queued for the key goes.
pub fn owner_elsewhere(ctx: &Ctx, bucket: &str, key: &str) -> Option<NodeIdentity> {
    let node = ctx.shared.cluster.as_ref()?;
    let owners = node.owners.load_full()?;
    if owners.has_lanes() {
        return None;
    }
    let owner = owners.owner_of(crate::layout::partition_of(bucket, key))?;
    if owner.id == node.id_hex() {
        return None;
    }
    crate::fanout::identity(owner)
}

/// One queue entry of this node's `shard` (its key, summary and meta in
/// `table`), queued for `key` of bucket `bucket`: handed to `to`, the
/// key's owner, then deleted here.
pub struct QueuedEntry<'a> {
    pub table: u8,
    pub shard: u32,
    pub entry: Vec<u8>,
    pub summary: Vec<u8>,
    pub meta: Vec<u8>,
    pub bucket: &'a str,
    pub bucket_id: u64,
    pub key: &'a str,
}

pub async fn hand_off_queued(ctx: &Ctx, to: &NodeIdentity, q: QueuedEntry<'_>) -> Result<(), String> {
    let node = ctx.shared.cluster.as_ref().ok_or("not in a cluster")?;
    let layout = node.owners.load().as_ref().map_or(0, |o| o.layout.version);
    let kc = KeyCall { v: VERSION, layout, bucket: q.bucket.to_string(), bucket_id: q.bucket_id, key: q.key.to_string(), page: None };
    let entries = vec![(hex::encode(&q.entry), hex::encode(&q.summary), hex::encode(&q.meta))];
    let qc = QueueCall { call: kc, table: q.table, entries };
    let payload = serde_json::to_vec(&qc).expect("a queue call serializes");
    call(node, to, METHOD_MOVE_QUEUE, payload).await.map_err(|e| format!("handing queued work of {}/{} to its owner: {}", q.bucket, q.key, e.message))?;
    ctx.shards
        .commit(q.shard, vec![Mutation::Delete { table: q.table, key: q.entry }])
        .await
        .map(|_| ())
        .map_err(|e| format!("deleting queued work handed to the key's owner: {e}"))
}

/// Takes queue entries of a key this node owns: the key moved here first
/// (its versions must be here before work on them is), then the entries
/// committed as they came (an entry already here kept), the clock of its
/// core raised past their ids and its worker woken.
async fn serve_queue(ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>, String> {
    let qc: QueueCall = serde_json::from_slice(payload).map_err(|e| format!("a malformed queue call: {e}"))?;
    let kc = &qc.call;
    if kc.v != VERSION {
        return Err("a move call of another version".into());
    }
    if ![T_REPLICATION, T_REPLSTATE, T_EVENTS].contains(&qc.table) {
        return Err(format!("queue entries of table {} are not taken", qc.table));
    }
    if !crate::forward::owned_here(ctx, &kc.bucket, &kc.key) {
        return Err("this node does not own the key".into());
    }
    // An event is delivered whatever became of its bucket and key since;
    // replication works on the version, so the bucket must be the same
    // and the key here first.
    if qc.table != T_EVENTS {
        let Some(b) = ctx.shared.buckets.get(&kc.bucket).filter(|b| b.id == kc.bucket_id) else {
            // The bucket is gone: so is the work on it.
            return Ok(b"0".to_vec());
        };
        ensure(ctx, &b, &kc.key).await.map_err(|e| e.message)?;
    }
    let mut rows = Vec::with_capacity(qc.entries.len());
    for (k, s, m) in &qc.entries {
        let (k, s, m) = (hex::decode(k), hex::decode(s), hex::decode(m));
        let (Ok(k), Ok(s), Ok(m)) = (k, s, m) else { return Err("a malformed queue entry".into()) };
        rows.push((k, s, m));
    }
    let shard = crate::s3::shard_of(ctx, &kc.bucket, &kc.key);
    let table = qc.table;
    let n = ctx
        .shards
        .txn(shard, Vec::new(), move |local| async move {
            let mut muts = Vec::new();
            for (key, summary, meta) in rows {
                if let Some(id) = crate::notify::event_id_of(&key) {
                    local.notify.observe(id);
                }
                if local.shard.get(table, &key).is_none() {
                    muts.push(Mutation::Put { table, key, summary, meta, body: Body::Inline(Vec::new()) });
                }
            }
            let n = muts.len();
            if n > 0 {
                local.commit_in_txn(muts).await?;
                local.notify.wake.notify_all();
            }
            Ok::<_, tessera_io::IoError>(n)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(n.to_string().into_bytes())
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
                Ok(n) => {
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

/// One pass over every previous owner of a partition this node gained:
/// the number of keys found to move.
async fn move_all(ctx: &Rc<Ctx>, node: &Arc<ClusterNode>, owners: &Owners) -> Result<u64, String> {
    let me = node.id_hex();
    let sources: BTreeSet<String> = (0..crate::layout::PARTITIONS)
        .filter(|&p| owners.owner_of(p).is_some_and(|o| o.id == me))
        .filter_map(|p| owners.moving_from(p).map(|r| r.id.clone()))
        .collect();
    let mut moved = 0u64;
    for id in sources {
        let peer = owners.nodes.get(&id).and_then(crate::fanout::identity).ok_or("a previous owner's record")?;
        let mut after = None;
        loop {
            let lc = ListCall { v: VERSION, layout: owners.layout.version, for_node: me.clone(), after };
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
    Ok(moved)
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
    use tessera_io::{ShardOptions, Shard};

    use super::*;
    use crate::meta::{part_key, upload_key, version_key, VersionId};

    fn put(table: u8, key: Vec<u8>) -> Mutation {
        Mutation::Put { table, key, summary: vec![1], meta: Vec::new(), body: Body::Inline(Vec::new()) }
    }

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

    #[test]
    fn a_keys_rows_are_its_own_and_no_neighbours() {
        let dir = tempfile::tempdir().expect("tempdir");
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build().expect("runtime").block_on(async {
            let shard = Shard::open(dir.path(), 0, ShardOptions::default()).await.expect("open");
            let v = |n: u8| VersionId::from_parts(u64::from(n), [n; 8]);
            let mut muts = Vec::new();
            // The key, and keys that share its bytes as a prefix, in another
            // bucket, or sort right after it.
            for (bucket, key) in [(1, "a"), (1, "a\u{1}"), (1, "ab"), (2, "a"), (1, "a/b")] {
                muts.push(put(T_OBJECTS, object_key(bucket, key)));
                muts.push(put(T_VERSIONS, version_key(bucket, key, &v(1))));
                muts.push(put(T_VERSIONS, version_key(bucket, key, &v(2))));
                muts.push(put(T_UPLOADS, upload_key(bucket, key, "00ff")));
                muts.push(put(T_PARTS, part_key(bucket, key, "00ff", 1)));
                muts.push(put(T_PARTS, part_key(bucket, key, "00ff", 2)));
            }
            shard.commit(muts).await.expect("commit");
            let rows = rows_of(&shard, 1, "a", usize::MAX);
            let mut want = vec![
                (T_OBJECTS, object_key(1, "a")),
                (T_VERSIONS, version_key(1, "a", &v(2))),
                (T_VERSIONS, version_key(1, "a", &v(1))),
                (T_PARTS, part_key(1, "a", "00ff", 1)),
                (T_PARTS, part_key(1, "a", "00ff", 2)),
                (T_UPLOADS, upload_key(1, "a", "00ff")),
            ];
            let mut got = rows.clone();
            got.sort();
            want.sort();
            assert_eq!(got, want);
            // Each row names its key back (what the list call filters on).
            for (table, k) in rows.iter().filter(|(t, _)| *t != T_PARTS) {
                assert_eq!(key_of_row(*table, k), Some((1, b"a".to_vec())), "table {table}");
            }
            assert!(rows_of(&shard, 1, "none", usize::MAX).is_empty());
            // What a drop call accepts: the key's rows, no neighbour's.
            for (table, k) in &rows {
                assert!(belongs(*table, k, 1, "a"), "table {table}");
            }
            for (bucket, key) in [(1, "a\u{1}"), (1, "ab"), (2, "a"), (1, "a/b")] {
                for (table, k) in rows_of(&shard, bucket, key, usize::MAX) {
                    assert!(!belongs(table, &k, 1, "a"), "{bucket} {key:?} table {table}");
                    assert!(belongs(table, &k, bucket, key), "{bucket} {key:?} table {table}");
                }
            }

            // Paged as the move pages it: a page taken, dropped, the next
            // asked for, until none is left; every row comes exactly once.
            let mut paged = Vec::new();
            loop {
                let page = rows_of(&shard, 1, "a", 4);
                assert!(page.len() <= 4);
                if page.is_empty() {
                    break;
                }
                shard
                    .commit(page.iter().map(|(table, key)| Mutation::Delete { table: *table, key: key.clone() }).collect())
                    .await
                    .expect("drop");
                paged.extend(page);
            }
            paged.sort();
            assert_eq!(paged, want);
            assert_eq!(rows_of(&shard, 1, "ab", usize::MAX).len(), 6, "a neighbour's rows stay");
        });
    }
}
