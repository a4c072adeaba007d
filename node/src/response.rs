//! Responses: status, headers and a body that is empty, in memory, or
//! streamed from a shard.

use std::borrow::Cow;
use std::ops::Range;
use std::rc::Rc;

use tessera_io::{Body, Extent};
use tessera_proto::{S3Error, S3ErrorCode};

use crate::conn::{Conn, ConnError};
use crate::server::Ctx;

/// Largest piece read from a shard per call while streaming a body.
pub const STREAM_PIECE_BYTES: u64 = 1024 * 1024;
/// Bytes of a streamed body read ahead of what is being sent (the piece
/// being sent included): a whole 1 MiB object's records are read at once.
pub const STREAM_WINDOW_BYTES: u64 = 2 * STREAM_PIECE_BYTES;

pub struct Response {
    pub status: u16,
    pub headers: Vec<(Cow<'static, str>, String)>,
    pub body: RespBody,
}

pub enum RespBody {
    Empty,
    Bytes(Vec<u8>),
    Object(ObjectStream),
    /// SelectObjectContent's event stream, sent chunked.
    Select(Box<crate::s3::select::SelectStream>),
    /// A transitioned version's bytes, read from its tier as they are sent.
    Tier(Box<crate::tier::read::TierStream>),
}

impl RespBody {
    pub fn len(&self) -> u64 {
        match self {
            RespBody::Empty => 0,
            RespBody::Bytes(b) => b.len() as u64,
            RespBody::Object(s) => s.range.end - s.range.start,
            RespBody::Select(_) => 0,
            RespBody::Tier(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Response {
    pub fn new(status: u16) -> Self {
        Response { status, headers: Vec::new(), body: RespBody::Empty }
    }

    pub fn xml(status: u16, body: String) -> Self {
        Response::new(status).header("Content-Type", "application/xml").with_body(body.into_bytes())
    }

    pub fn header(mut self, name: impl Into<Cow<'static, str>>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn push_header(&mut self, name: impl Into<Cow<'static, str>>, value: impl Into<String>) {
        self.headers.push((name.into(), value.into()));
    }

    pub fn with_body(mut self, body: Vec<u8>) -> Self {
        self.body = RespBody::Bytes(body);
        self
    }

    pub fn error(e: &S3Error, resource: &str, request_id: &str) -> Self {
        Self::error_with(e, resource, request_id, &[])
    }

    /// An error naming what it is about (`Key`, `BucketName`, `UploadId`).
    pub fn error_with(e: &S3Error, resource: &str, request_id: &str, extra: &[(&str, &str)]) -> Self {
        let mut extra = extra.to_vec();
        if let Some((element, text)) = &e.detail {
            extra.push((element, text));
        }
        // What went wrong inside stays in the log: clients get the code's generic text.
        let message = if e.code == S3ErrorCode::InternalError { e.code.default_message() } else { e.message.as_str() };
        let body = tessera_proto::xml::error_body(e.code.as_str(), message, resource, request_id, &extra);
        Response::xml(e.status(), body).header("x-amz-request-id", request_id.to_string())
    }
}

/// An object body (or a range of it) to stream to the client.
pub struct ObjectStream {
    pub ctx: Rc<Ctx>,
    pub shard: u32,
    pub body: Body,
    /// The whole body, shared with the hot-object cache (then `body` is
    /// empty): sent as it is, never copied. Never sealed (`sse` is None).
    pub shared: Option<bytes::Bytes>,
    /// Byte range of the object to send.
    pub range: Range<u64>,
    /// The version being sent, to find its data again if compaction moves
    /// it while it streams (None: an inline body, which cannot move).
    pub source: Option<StreamSource>,
    /// The body is sealed (`range` is of the plaintext): open it as it goes.
    pub sse: Option<Rc<crate::sse::stream::Decrypt>>,
}

/// What identifies the bytes of a stream: the same version id, size and MD5
/// after a reload means the same bytes (compaction moves data, never changes it).
#[derive(Clone)]
pub struct StreamSource {
    pub bucket: std::sync::Arc<crate::buckets::BucketInfo>,
    pub key: String,
    pub version: crate::meta::VersionId,
    /// The version is the key's null version (an unversioned bucket's
    /// objects are): found again as such, by its id.
    pub null_version: bool,
    pub size: u64,
    pub md5: [u8; 16],
}

/// Reloads of a stream's version after `Moved` before giving up.
pub const MAX_STREAM_RELOADS: u32 = 4;

/// The pieces (extent, range within the extent) that cover `range` of an
/// object made of `extents`, each at most `STREAM_PIECE_BYTES`.
pub fn pieces(extents: &[Extent], range: Range<u64>) -> Vec<(Extent, Range<u64>)> {
    let mut out = Vec::new();
    let mut base = 0u64;
    for e in extents {
        let (lo, hi) = (base, base + e.len);
        base = hi;
        if hi <= range.start || lo >= range.end {
            continue;
        }
        let mut s = range.start.max(lo) - lo;
        let end = range.end.min(hi) - lo;
        while s < end {
            let n = (end - s).min(STREAM_PIECE_BYTES);
            out.push((*e, s..s + n));
            s += n;
        }
    }
    out
}

/// Largest object body sent in the same write as the response head (one
/// send instead of two for small GETs; bigger ones are not worth a copy).
pub const COALESCE_BODY_BYTES: usize = 16 * 1024;

impl ObjectStream {
    /// The bytes to send when they are in memory, plain and small enough to
    /// go out with the head (`COALESCE_BODY_BYTES`).
    pub fn small_inline(&self) -> Option<&[u8]> {
        if self.sse.is_some() || self.range.end - self.range.start > COALESCE_BODY_BYTES as u64 {
            return None;
        }
        let r = self.range.start as usize..self.range.end as usize;
        match (&self.shared, &self.body) {
            (Some(d), _) => d.get(r),
            (None, Body::Inline(data)) => data.get(r),
            (None, Body::Extents(_)) => None,
        }
    }

    /// Streams the range; the next piece is read while the current one is
    /// being written. A read error after the head went out closes the
    /// connection (the client sees a short body, never wrong bytes).
    pub async fn write_to(mut self, conn: &mut Conn) -> Result<(), ConnError> {
        if let Some(d) = self.sse.take() {
            return self.write_sealed(conn, d).await;
        }
        if let Some(data) = self.shared.take() {
            let r = self.range.start as usize..self.range.end as usize;
            if r.end > data.len() || r.start > r.end {
                return Err(ConnError::Io(std::io::Error::other("range")));
            }
            conn.write_all(data.slice(r)).await?;
            return Ok(());
        }
        match std::mem::replace(&mut self.body, Body::Inline(Vec::new())) {
            Body::Inline(data) => {
                let r = self.range.start as usize..self.range.end as usize;
                if r == (0..data.len()) {
                    // The whole body (a cache hit's copy is ours): no second copy.
                    conn.write_all(data).await?;
                } else {
                    let slice = data.get(r).ok_or_else(|| ConnError::Io(std::io::Error::other("range")))?;
                    conn.write_all(slice.to_vec()).await?;
                }
            }
            Body::Extents(extents) => {
                let mut extents = extents;
                let mut pos = self.range.start;
                let mut reloads = 0u32;
                'stream: loop {
                    let mut todo = pieces(&extents, pos..self.range.end).into_iter().peekable();
                    let spawn_read = |(e, r): (Extent, Range<u64>)| {
                        let ctx = self.ctx.clone();
                        let shard = self.shard;
                        let len = r.end - r.start;
                        (len, monoio::spawn(async move { ctx.shards.read_extent_buf(shard, e, r).await }))
                    };
                    // Reads ahead of what is being sent, in order: as many
                    // pieces as fit in `STREAM_WINDOW_BYTES` (at least one),
                    // so the records of an object (a 1 MiB one is 4) are
                    // read together instead of one round trip after another.
                    let mut ahead = std::collections::VecDeque::new();
                    let mut ahead_bytes = 0u64;
                    loop {
                        while let Some((_, r)) = todo.peek() {
                            let len = r.end - r.start;
                            if !ahead.is_empty() && ahead_bytes + len > STREAM_WINDOW_BYTES {
                                break;
                            }
                            let Some(p) = todo.next() else { break };
                            ahead_bytes += len;
                            ahead.push_back(spawn_read(p));
                        }
                        let Some((len, cur)) = ahead.pop_front() else { break };
                        ahead_bytes -= len;
                        let data = match cur.await {
                            Ok(d) => d,
                            Err(tessera_io::IoError::Moved) if reloads < MAX_STREAM_RELOADS => {
                                // Compaction moved the data under us: find it again.
                                reloads += 1;
                                extents = self.reload().await?;
                                continue 'stream;
                            }
                            Err(e) => {
                                if reloads < MAX_STREAM_RELOADS {
                                    if let Some(fresh) = self.rewritten(&extents, &e).await {
                                        reloads += 1;
                                        extents = fresh;
                                        continue 'stream;
                                    }
                                }
                                tracing::error!("read for response failed: {e}");
                                return Err(ConnError::Io(std::io::Error::other(e.to_string())));
                            }
                        };
                        pos += data.len() as u64;
                        conn.write_read(data).await?;
                    }
                    break;
                }
            }
        }
        Ok(())
    }
}

impl ObjectStream {
    /// Streams a sealed body: whole packages are read (the next chunk while
    /// the current one is written), opened and trimmed to the range. A
    /// package that fails its tag ends the response like a read error.
    async fn write_sealed(mut self, conn: &mut Conn, d: Rc<crate::sse::stream::Decrypt>) -> Result<(), ConnError> {
        let chunks = d.layout.chunks(self.range.clone());
        let fail = |what: String| {
            tracing::error!("read for response failed: {what}");
            ConnError::Io(std::io::Error::other(what))
        };
        let extents = match std::mem::replace(&mut self.body, Body::Inline(Vec::new())) {
            Body::Inline(data) => {
                if let [c] = chunks.as_slice() {
                    if c.sealed == (0..data.len() as u64) {
                        // The whole body in one chunk (a cache hit's copy
                        // is ours): opened in its own buffer.
                        let plain = d.open(c, data).map_err(|e| fail(e.message))?;
                        conn.write_all(plain).await?;
                        return Ok(());
                    }
                }
                for c in &chunks {
                    let sealed = data.get(c.sealed.start as usize..c.sealed.end as usize).ok_or_else(|| fail("range".into()))?;
                    let plain = d.open(c, sealed.to_vec()).map_err(|e| fail(e.message))?;
                    conn.write_all(plain).await?;
                }
                return Ok(());
            }
            Body::Extents(e) => e,
        };
        let mut extents = Rc::new(extents);
        let mut reloads = 0u32;
        let mut i = 0usize;
        'stream: loop {
            let spawn_read = |r: Range<u64>, ex: Rc<Vec<Extent>>| {
                let ctx = self.ctx.clone();
                let shard = self.shard;
                monoio::spawn(async move { crate::sse::stream::read_extents(&ctx, shard, &ex, r).await })
            };
            let mut next = chunks.get(i).map(|c| spawn_read(c.sealed.clone(), extents.clone()));
            while let Some(cur) = next.take() {
                let sealed = match cur.await {
                    Ok(d) => d,
                    Err(tessera_io::IoError::Moved) if reloads < MAX_STREAM_RELOADS => {
                        reloads += 1;
                        extents = Rc::new(self.reload().await?);
                        continue 'stream;
                    }
                    Err(e) => {
                        if reloads < MAX_STREAM_RELOADS {
                            if let Some(fresh) = self.rewritten(&extents, &e).await {
                                reloads += 1;
                                extents = Rc::new(fresh);
                                continue 'stream;
                            }
                        }
                        return Err(fail(e.to_string()));
                    }
                };
                next = chunks.get(i + 1).map(|c| spawn_read(c.sealed.clone(), extents.clone()));
                let plain = d.open(&chunks[i], sealed).map_err(|e| fail(e.message))?;
                i += 1;
                conn.write_all(plain).await?;
            }
            break;
        }
        Ok(())
    }

    /// After a read error other than `Moved`: the same version's extents if
    /// they are no longer the ones being read. A re-striping walk (lanes
    /// shrinking or growing, `restripe.rs`) rewrites a record in its new
    /// shape and drops the old stripes' blocks, and a read of those blocks
    /// then fails as missing: found by `cluster_grow`'s decommission test,
    /// whose GET lost 3 of 4 holders of a stripe just restriped, and closed
    /// its connection mid-body. The same extents again: the error stands.
    async fn rewritten(&self, current: &[Extent], e: &tessera_io::IoError) -> Option<Vec<Extent>> {
        let fresh = self.source.as_ref()?.rewritten(&self.ctx, current).await?;
        tracing::warn!("read for response failed ({e}); the version was rewritten meanwhile, reading it again where it is now");
        Some(fresh)
    }

    /// The extents of the same version after compaction moved them.
    async fn reload(&self) -> Result<Vec<Extent>, ConnError> {
        let gone = || ConnError::Io(std::io::Error::other("the object changed while being sent"));
        let src = self.source.as_ref().ok_or_else(gone)?;
        src.extents(&self.ctx).await.ok_or_else(gone)
    }
}

impl StreamSource {
    /// After a read of `current` failed with an error other than `Moved`:
    /// the version's extents if they are no longer `current` (it was
    /// rewritten elsewhere, `ObjectStream::rewritten` says when), else
    /// None and the error stands. GET streams and copies both ask.
    pub async fn rewritten(&self, ctx: &Rc<Ctx>, current: &[Extent]) -> Option<Vec<Extent>> {
        self.extents(ctx).await.filter(|fresh| fresh.as_slice() != current)
    }

    /// The version's extents as they are now (after compaction moved
    /// them), or None when it is gone or no longer the same bytes.
    pub async fn extents(&self, ctx: &Rc<Ctx>) -> Option<Vec<Extent>> {
        // By id a null version is never found (`VersionSel::Id` names
        // versioned ones): before, every reload of an unversioned bucket's
        // object failed (a GET's connection closed, a copy answered 503).
        let sel = Some(if self.null_version { crate::meta::VersionSel::Null } else { crate::meta::VersionSel::Id(self.version) });
        let obj = crate::s3::read_version(ctx, &self.bucket, &self.key, sel).await.ok()?;
        if obj.summary.version != self.version || obj.summary.size != self.size || obj.summary.md5 != self.md5 {
            return None;
        }
        match obj.body {
            Body::Extents(e) => Some(e),
            Body::Inline(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(len: u64) -> Extent {
        Extent { segment: 0, offset: 0, len }
    }

    #[test]
    fn pieces_cover_range_exactly() {
        let exts = [ext(3 * STREAM_PIECE_BYTES), ext(10), ext(STREAM_PIECE_BYTES + 1)];
        let total: u64 = exts.iter().map(|e| e.len).sum();
        for range in [0..total, 5..6, STREAM_PIECE_BYTES - 1..3 * STREAM_PIECE_BYTES + 5, total - 1..total] {
            let p = pieces(&exts, range.clone());
            let sum: u64 = p.iter().map(|(_, r)| r.end - r.start).sum();
            assert_eq!(sum, range.end - range.start);
            assert!(p.iter().all(|(_, r)| r.end - r.start <= STREAM_PIECE_BYTES && r.start < r.end));
        }
        assert!(pieces(&exts, 0..0).is_empty());
    }
}
