//! The request side of tiering: one request to a tier (on a thread of its
//! own: the client blocks), GET's read-through, and RestoreObject.

use std::ops::Range;
use std::rc::Rc;

use tessera_io::{Body, DataBuf, Mutation};
use tessera_proto::notification::EventName;
use tessera_proto::time::now_unix_ms;
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use super::{find, RestoreEntry, TierInfo};
use crate::buckets::BucketInfo;
use crate::conn::{Conn, ConnError};
use crate::request::Request;
use crate::meta::{object_key, ObjectMeta, ObjectSummary, T_OBJECTS};
use crate::notify::target::Reply;
use crate::remote_s3::{encode_path, MultipartUpload, Outcome, Remote, RemoteRequest, RemoteSpec};
use crate::response::Response;
use crate::s3::{io_error, versions};
use crate::server::Ctx;
use crate::s3::put::BodySource;
use crate::sse::cipher::Chunk;
use crate::sse::stream::{Decrypt, PlainReader};

/// Largest RestoreRequest document.
const MAX_RESTORE_BODY_BYTES: usize = 64 * 1024;

/// Bytes a GET of a transitioned version reads from its tier per request:
/// such a GET holds about two of these, whatever the object's size.
pub const STREAM_PIECE_BYTES: u64 = 8 << 20;

/// Sends `req` to `spec` from a thread of its own (the client blocks) and
/// waits for the answer without blocking the reactor; the answer's body
/// (at most `max_body` bytes) and headers come back in the `Reply`.
pub async fn call(spec: &RemoteSpec, req: RemoteRequest, max_body: u64) -> (Outcome, Reply) {
    let (tx, rx) = async_channel::bounded(1);
    let spec = spec.clone();
    let spawned = std::thread::Builder::new().name("tier-io".into()).spawn(move || {
        let mut reply = Reply::default();
        let out = match Remote::new(&spec) {
            Ok(mut r) => r.send_keeping(&req, Some(&mut reply), max_body),
            Err(e) => Outcome::Retry(e),
        };
        let _ = tx.send_blocking((out, reply));
    });
    if let Err(e) = spawned {
        return (Outcome::Retry(format!("cannot start a tier thread: {e}")), Reply::default());
    }
    rx.recv().await.unwrap_or_else(|_| (Outcome::Retry("the tier thread is gone".into()), Reply::default()))
}

/// Bytes of a streamed upload read per chunk from a body here
/// (`call_streamed`; a body at another tier is read a `STREAM_PIECE_BYTES`
/// piece at a time).
const UPLOAD_CHUNK_BYTES: u64 = 1 << 20;

/// What a streamed upload to a tier came to: the tier's answer, and the
/// MD5 of the bytes sent (when all of them were read), whole and per part
/// of a multipart upload.
pub struct Uploaded {
    pub outcome: Outcome,
    pub reply: Reply,
    pub md5: Option<[u8; 16]>,
    pub part_md5s: Vec<[u8; 16]>,
    /// Reading the body failed (not the receiving tier's fault).
    pub read_error: Option<String>,
}

impl Uploaded {
    /// The ETag the tier should answer for what was sent: the MD5 of the
    /// bytes, or of a multipart upload's parts' MD5s with `-N`.
    pub fn expected_etag(&self) -> Option<String> {
        use md5::{Digest, Md5};
        let md5 = self.md5?;
        if self.part_md5s.is_empty() {
            return Some(hex::encode(md5));
        }
        let mut all = Md5::new();
        for p in &self.part_md5s {
            all.update(p);
        }
        Some(format!("{}-{}", hex::encode(all.finalize()), self.part_md5s.len()))
    }
}

/// Where a streamed upload to a tier reads its body.
pub enum UploadBody {
    /// A body stored here (`PlainReader`, which follows compaction's moves).
    Local(Box<PlainReader>),
    /// A version on another tier (a move between tiers), read from it a
    /// piece at a time.
    Tier { ctx: Rc<Ctx>, info: TierInfo, size: u64 },
}

impl UploadBody {
    fn chunk_bytes(&self) -> u64 {
        match self {
            UploadBody::Local(_) => UPLOAD_CHUNK_BYTES,
            UploadBody::Tier { .. } => STREAM_PIECE_BYTES,
        }
    }

    /// Bytes `at..at + want` of the `len` to send.
    async fn read(&mut self, at: u64, want: u64, len: u64) -> Result<Vec<u8>, String> {
        match self {
            UploadBody::Local(reader) => {
                let mut chunk = vec![0u8; want as usize];
                let mut got = 0;
                while got < chunk.len() {
                    match reader.read(&mut chunk[got..]).await {
                        Ok(0) => return Err(format!("the body ended {} bytes short", len - at - got as u64)),
                        Ok(n) => got += n,
                        Err(e) => return Err(format!("reading the body: {e:?}")),
                    }
                }
                Ok(chunk)
            }
            UploadBody::Tier { ctx, info, size } => {
                // (Its length is checked there.)
                read_through(ctx, info, at..at + want, *size)
                    .await
                    .map_err(|e| format!("reading from tier {}: {}", info.class, e.message))
            }
        }
    }
}

/// `call` for a PUT whose body (`len` bytes) is read from `body` a chunk
/// at a time while a thread of its own sends it, so a transition holds a
/// few MiB whatever the version's size (up to three pieces of 8 MiB when
/// the body comes from another tier); the MD5 of what was sent is computed
/// on the way. With `multipart`, the body goes as that multipart upload
/// (its parts' sizes sum to `len`; no chunk crosses a part's end), and
/// the reply is the CompleteMultipartUpload's.
pub async fn call_streamed(spec: &RemoteSpec, req: RemoteRequest, len: u64, mut body: UploadBody, multipart: Option<MultipartUpload>) -> Uploaded {
    use md5::{Digest, Md5};
    let (chunk_tx, chunks) = async_channel::bounded::<Result<Vec<u8>, String>>(2);
    let (tx, rx) = async_channel::bounded(1);
    let spec = spec.clone();
    let parts = multipart.as_ref().map_or_else(|| vec![len], |m| m.parts.clone());
    let multi = multipart.is_some();
    let spawned = std::thread::Builder::new().name("tier-io".into()).spawn(move || {
        let mut reply = Reply::default();
        let out = match (Remote::new(&spec), &multipart) {
            (Ok(mut r), Some(m)) => r.send_multipart(m, &chunks, Some(&mut reply)),
            (Ok(mut r), None) => r.send_streamed_keeping(&req, len, &chunks, Some(&mut reply)),
            (Err(e), _) => Outcome::Retry(e),
        };
        // The reader stops at its next chunk.
        drop(chunks);
        let _ = tx.send_blocking((out, reply));
    });
    if let Err(e) = spawned {
        let outcome = Outcome::Retry(format!("cannot start a tier thread: {e}"));
        return Uploaded { outcome, reply: Reply::default(), md5: None, part_md5s: Vec::new(), read_error: None };
    }
    let produce = async move {
        let mut md5 = Md5::new();
        let mut part_md5s = Vec::new();
        let mut sent = 0u64;
        let step = body.chunk_bytes();
        for part in parts {
            let mut part_md5 = Md5::new();
            let end = sent + part;
            while sent < end {
                let want = (end - sent).min(step);
                let chunk = match body.read(sent, want, len).await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = chunk_tx.send(Err(e.clone())).await;
                        return (None, Vec::new(), Some(e));
                    }
                };
                md5.update(&chunk);
                part_md5.update(&chunk);
                sent += chunk.len() as u64;
                if chunk_tx.send(Ok(chunk)).await.is_err() {
                    // The sender stopped (its answer says why).
                    return (None, Vec::new(), None);
                }
            }
            part_md5s.push(part_md5.finalize().into());
        }
        (Some(md5.finalize().into()), if multi { part_md5s } else { Vec::new() }, None)
    };
    let ((md5, part_md5s, read_error), got) = futures_util::future::join(produce, rx.recv()).await;
    let (outcome, reply) = got.unwrap_or_else(|_| (Outcome::Retry("the tier thread is gone".into()), Reply::default()));
    Uploaded { outcome, reply, md5, part_md5s, read_error }
}

fn unavailable(class: &str, why: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::ServiceUnavailable, format!("The storage tier {class} cannot be reached: {why}"))
}

/// Bytes `range` of a transitioned version's body, read from its tier.
/// A tier that is down is `ServiceUnavailable` (503, retryable); a tier
/// that refuses (its copy gone) is an internal error.
pub async fn read_through(ctx: &Ctx, t: &TierInfo, range: Range<u64>, size: u64) -> S3Result<Vec<u8>> {
    if range.is_empty() {
        return Ok(Vec::new());
    }
    let spec = find(&ctx.shared.config.tiers, &t.class).ok_or_else(|| unavailable(&t.class, "the tier is not configured on this server"))?;
    let len = range.end - range.start;
    if len > STREAM_PIECE_BYTES {
        return Err(crate::s3::internal(format!("a tier read of {len} bytes (pieces are at most {STREAM_PIECE_BYTES})")));
    }
    let mut headers = Vec::new();
    if range != (0..size) {
        headers.push(("range".to_string(), format!("bytes={}-{}", range.start, range.end - 1)));
    }
    let req = RemoteRequest { method: "GET", path: encode_path(&t.remote_bucket, &t.remote_key), query: String::new(), headers, body: Vec::new() };
    let (out, reply) = call(&spec.remote, req, len).await;
    match out {
        Outcome::Done if reply.body.len() as u64 == len => Ok(reply.body),
        Outcome::Done => Err(crate::s3::internal(format!("the tier {} sent {} bytes for {len}", t.class, reply.body.len()))),
        Outcome::Refused(why) => Err(crate::s3::internal(format!("the tier {} refused the read: {why}", t.class))),
        Outcome::Retry(why) => Err(unavailable(&t.class, &why)),
    }
}

/// A GET's range of a transitioned version, read from its tier a piece
/// (`STREAM_PIECE_BYTES`) at a time: the first before the answer starts
/// (a tier that is down is a clean 503), each next one while the one
/// before is written to the client. A piece that fails later closes the
/// connection (the client sees a short body, as for a local read error).
/// An encrypted version's copy at the tier is its sealed body: each piece
/// is whole chunks of packages, opened here.
pub struct TierStream {
    ctx: Rc<Ctx>,
    info: TierInfo,
    /// Bytes of the copy at the tier (sealed, when encrypted).
    stored: u64,
    decrypt: Option<Rc<Decrypt>>,
    first: Vec<u8>,
    /// The reads after `first`, in order.
    rest: std::collections::VecDeque<Piece>,
    /// Bytes the answer carries (plaintext).
    len: u64,
}

/// One read from the tier: its range of the stored copy, and for a sealed
/// copy the chunks it holds (opened for their wanted plaintext).
struct Piece {
    range: Range<u64>,
    chunks: Vec<Chunk>,
}

impl TierStream {
    /// Plaintext `range` of a version of `size` bytes (`decrypt`: its
    /// sealed layout and key, when encrypted).
    pub async fn open(ctx: &Rc<Ctx>, info: TierInfo, range: Range<u64>, size: u64, decrypt: Option<Rc<Decrypt>>) -> S3Result<Self> {
        let len = range.end - range.start;
        let (stored, mut rest) = match &decrypt {
            None => (size, plain_pieces(range)),
            Some(d) => (d.layout.sealed_len(), sealed_pieces(d.layout.chunks(range))),
        };
        let first = match rest.pop_front() {
            Some(p) => fetch(ctx, &info, stored, decrypt.as_deref(), p).await?,
            None => Vec::new(),
        };
        Ok(TierStream { ctx: ctx.clone(), info, stored, decrypt, first, rest, len })
    }

    /// Bytes the answer carries.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub async fn write_to(self, conn: &mut Conn) -> Result<(), ConnError> {
        let TierStream { ctx, info, stored, decrypt, first, mut rest, .. } = self;
        let mut piece = first;
        while let Some(p) = rest.pop_front() {
            let (written, next) = futures_util::future::join(conn.write_all(piece), fetch(&ctx, &info, stored, decrypt.as_deref(), p)).await;
            written?;
            piece = next.map_err(|e| {
                tracing::warn!(class = %info.class, key = %info.remote_key, "reading from the tier mid-answer: {}", e.message);
                ConnError::Io(std::io::Error::other(e.message))
            })?;
        }
        conn.write_all(piece).await?;
        Ok(())
    }
}

/// `range` in reads of at most `STREAM_PIECE_BYTES`.
fn plain_pieces(range: Range<u64>) -> std::collections::VecDeque<Piece> {
    let mut out = std::collections::VecDeque::new();
    let mut at = range.start;
    while at < range.end {
        let end = range.end.min(at + STREAM_PIECE_BYTES);
        out.push_back(Piece { range: at..end, chunks: Vec::new() });
        at = end;
    }
    out
}

/// Consecutive chunks (their sealed ranges follow each other) grouped
/// into reads of at most `STREAM_PIECE_BYTES` (at least one chunk each).
fn sealed_pieces(chunks: Vec<Chunk>) -> std::collections::VecDeque<Piece> {
    let mut out: std::collections::VecDeque<Piece> = std::collections::VecDeque::new();
    for c in chunks {
        match out.back_mut() {
            Some(p) if p.range.end == c.sealed.start && c.sealed.end - p.range.start <= STREAM_PIECE_BYTES => {
                p.range.end = c.sealed.end;
                p.chunks.push(c);
            }
            _ => out.push_back(Piece { range: c.sealed.clone(), chunks: vec![c] }),
        }
    }
    out
}

/// One piece's plaintext.
async fn fetch(ctx: &Ctx, info: &TierInfo, stored: u64, decrypt: Option<&Decrypt>, p: Piece) -> S3Result<Vec<u8>> {
    let data = read_through(ctx, info, p.range.clone(), stored).await?;
    let Some(d) = decrypt else { return Ok(data) };
    if let [c] = p.chunks.as_slice() {
        // One chunk: opened in the buffer it was read into.
        return d.open(c, data);
    }
    let mut out = Vec::new();
    for c in &p.chunks {
        let at = (c.sealed.start - p.range.start) as usize..(c.sealed.end - p.range.start) as usize;
        let sealed = data.get(at).ok_or_else(|| crate::s3::internal("a chunk outside its tier read"))?;
        out.extend_from_slice(&d.open(c, sealed.to_vec())?);
    }
    Ok(out)
}

/// A transitioned version's body (`size` bytes) copied back from its tier
/// onto `shard`, a piece at a time (memory stays one piece whatever the
/// size): inline when small, else data records. A piece that fails leaves
/// its predecessors' records uncommitted (freed as a failed upload's).
pub async fn restore_body(ctx: &Ctx, shard: u32, t: &TierInfo, size: u64) -> S3Result<Body> {
    if size <= crate::s3::put::INLINE_MAX_BYTES as u64 {
        return Ok(Body::Inline(read_through(ctx, t, 0..size, size).await?));
    }
    let mut out = Vec::new();
    let mut at = 0;
    while at < size {
        let end = size.min(at + STREAM_PIECE_BYTES);
        let data = read_through(ctx, t, at..end, size).await?;
        for piece in data.chunks(crate::s3::put::DATA_RECORD_BYTES) {
            let mut buf = DataBuf::new(piece.len());
            buf.spare_mut()[..piece.len()].copy_from_slice(piece);
            buf.advance(piece.len());
            out.push(ctx.shards.write_data(shard, buf).await.map_err(io_error)?);
        }
        at = end;
    }
    Ok(Body::Extents(out))
}

/// `<RestoreRequest><Days>N</Days></RestoreRequest>`: N.
fn parse_days(body: &[u8]) -> S3Result<u32> {
    let root = tessera_proto::xml::parse(body)?;
    if root.name != "RestoreRequest" {
        return Err(S3Error::with_message(S3ErrorCode::MalformedXML, "Expected RestoreRequest"));
    }
    let days = root.child_text("Days").ok_or_else(|| S3Error::with_message(S3ErrorCode::MalformedXML, "RestoreRequest needs Days"))?;
    match days.trim().parse::<i64>() {
        Ok(d) if d > 0 && d <= i64::from(u32::MAX) => Ok(d as u32),
        _ => Err(S3Error::with_message(S3ErrorCode::InvalidArgument, "Days must be a positive integer")),
    }
}

/// Whether `s` is still the version `expected` (same id and content).
pub fn same_version(s: &ObjectSummary, expected: &ObjectSummary) -> bool {
    s.version == expected.version && s.null_version == expected.null_version && s.md5 == expected.md5 && s.size == expected.size && !s.delete_marker
}

/// RestoreObject: a transitioned version's body copied back here for
/// `Days` lifecycle days (202), or an already restored one's expiry moved
/// (200). Other versions are `InvalidObjectState`, as S3 answers for an
/// object that is not archived.
pub async fn restore_object(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    let sel = versions::requested(&req.routed.query)?;
    let body = req.read_body_to_vec(MAX_RESTORE_BODY_BYTES).await?;
    let days = parse_days(&body)?;
    let obj = crate::s3::read_version(ctx, b, req.key(), sel).await?;
    obj.refuse_delete_marker(sel)?;
    crate::authz::check_object(req, b, crate::authz::ObjectFacts { acl: obj.meta.acl.as_ref(), tags: &obj.meta.tags })?;
    let Some(t) = obj.meta.tier.clone() else {
        return Err(S3Error::with_message(S3ErrorCode::InvalidObjectState, "Restore is not allowed for the object's current storage class"));
    };
    let day_ms = (ctx.shared.config.lifecycle_day_secs.max(1) * 1000) as i64;
    let until = now_unix_ms().saturating_add(i64::from(days).saturating_mul(day_ms));
    let already = t.restored_until_ms.is_some();
    let new_body = if already {
        None
    } else {
        // (An encrypted version's copy is its sealed body: restored as such.)
        Some(restore_body(ctx, obj.shard, &t, super::stored_len(&obj.meta, obj.summary.size)?).await?)
    };
    // The restore was asked for, and (a new copy) is complete once this
    // commit is: both events go with it.
    let origin = crate::notify::Origin::of(req);
    let mut events: Vec<_> = crate::tier::storage_event(ctx, b, req.key(), EventName::RestorePost, Some(origin.clone())).into_iter().collect();
    if new_body.is_some() {
        events.extend(crate::tier::storage_event(ctx, b, req.key(), EventName::RestoreCompleted, Some(origin)));
    }
    let (bid, key, expected) = (b.id, req.key().to_string(), obj.summary.clone());
    let lock = vec![(T_OBJECTS, object_key(bid, &key))];
    let sel = if expected.null_version { crate::meta::VersionSel::Null } else { crate::meta::VersionSel::Id(expected.version) };
    ctx.shards
        .txn(obj.shard, lock, move |local| async move {
            let Some(loc) = versions::find(&local.shard, bid, &key, sel)?.filter(|l| same_version(&l.summary, &expected)) else {
                return Err(versions::not_found(Some(sel)));
            };
            let stored = crate::stripes_io::load(&local.shard, loc.table, &loc.key).await.map_err(io_error)?.ok_or_else(|| versions::not_found(Some(sel)))?;
            let mut meta = ObjectMeta::decode(&stored.meta).ok_or_else(|| crate::s3::internal("corrupt object meta"))?;
            let Some(t) = meta.tier.as_mut() else {
                return Err(S3Error::with_message(S3ErrorCode::InvalidObjectState, "Restore is not allowed for the object's current storage class"));
            };
            let mut muts = Vec::new();
            let body = match (t.restored_until_ms, new_body) {
                (Some(old), _) => {
                    muts.push(RestoreEntry::of(old, bid, &key, &loc.summary).delete());
                    stored.body
                }
                (None, Some(body)) => body,
                (None, None) => return Err(crate::s3::internal("the version was transitioned again while restoring")),
            };
            t.restored_until_ms = Some(until);
            muts.push(RestoreEntry::of(until, bid, &key, &loc.summary).put());
            for ev in &events {
                muts.extend(ev.mutations(&local.notify, Some(&loc.summary)));
            }
            muts.push(Mutation::Put { table: loc.table, key: loc.key, summary: stored.summary, meta: meta.encode(), body });
            local.commit_in_txn(muts).await.map_err(io_error)?;
            if !events.is_empty() {
                local.notify.wake.notify_all();
            }
            Ok(())
        })
        .await
        .map_err(io_error)??;
    Ok(Response::new(if already { 200 } else { 202 }))
}
