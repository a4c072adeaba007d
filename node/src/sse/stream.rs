//! Encrypted bodies in motion: sealing a body as it streams into a shard,
//! reading a stored range back (opening packages when sealed) for copies,
//! and the reads that a streamed GET of a sealed body makes.

use std::ops::Range;
use std::rc::Rc;

use md5::{Digest, Md5};
use tessera_io::{Body, Extent, IoError};
use tessera_proto::checksum::{BodySums, ChecksumAlgo, Checksummer};
use tessera_proto::S3Result;

use super::cipher::{DataKey, Layout, SegmentKey, PACKAGE_BYTES};
use crate::response::{pieces, STREAM_PIECE_BYTES};
use crate::s3::put::{store_from, BodySource, StoredBody};
use crate::s3::{internal, io_error};
use crate::server::Ctx;

/// A sealed body's layout and data key: what a reader needs to open it.
pub struct Decrypt {
    pub layout: Layout,
    pub dk: DataKey,
}

impl Decrypt {
    pub fn key(&self, segment: usize) -> SegmentKey {
        let s = self.layout.segment(segment);
        SegmentKey::derive(&self.dk, &s.salt, s.part)
    }

    /// Opens sealed bytes read for `chunk`; corrupt data is an internal
    /// error (logged once by the caller), never bytes.
    pub fn open(&self, chunk: &super::cipher::Chunk, sealed: Vec<u8>) -> S3Result<Vec<u8>> {
        self.layout
            .open_chunk(&self.key(chunk.segment), chunk, sealed)
            .map_err(|e| internal(format!("reading an encrypted object: {e}")))
    }
}

/// Reads `range` of a stored body (its stored bytes) into one buffer.
pub async fn read_stored(ctx: &Ctx, shard: u32, body: &Body, range: Range<u64>) -> Result<Vec<u8>, IoError> {
    match body {
        Body::Inline(d) => d
            .get(range.start as usize..range.end as usize)
            .map(<[u8]>::to_vec)
            .ok_or(IoError::InvalidExtent("range outside an inline body")),
        Body::Extents(e) => read_extents(ctx, shard, e, range).await,
    }
}

pub async fn read_extents(ctx: &Ctx, shard: u32, extents: &[Extent], range: Range<u64>) -> Result<Vec<u8>, IoError> {
    let mut todo = pieces(extents, range.clone());
    if todo.len() == 1 {
        // Within one extent (the usual case): the read's own buffer.
        let (e, r) = todo.remove(0);
        return ctx.shards.read_extent(shard, e, r).await;
    }
    let mut out = Vec::with_capacity((range.end - range.start) as usize);
    for (e, r) in todo {
        out.extend_from_slice(&ctx.shards.read_extent(shard, e, r).await?);
    }
    Ok(out)
}

/// A body source that seals what `src` yields, one package at a time,
/// marking the last one (found by reading one byte past each package).
struct SealingSource<'a, S: BodySource> {
    src: &'a mut S,
    key: SegmentKey,
    /// Plaintext read and not sealed yet: `plain[..filled]`.
    plain: Box<[u8]>,
    filled: usize,
    out: Vec<u8>,
    out_pos: usize,
    index: u64,
    eof: bool,
    finished: bool,
    plain_len: u64,
    sum: Option<Checksummer>,
}

impl<S: BodySource> SealingSource<'_, S> {
    async fn produce(&mut self) -> S3Result<()> {
        let p = PACKAGE_BYTES as usize;
        while self.filled <= p && !self.eof {
            let n = self.src.read(&mut self.plain[self.filled..]).await?;
            if let Some(c) = self.sum.as_mut() {
                c.update(&self.plain[self.filled..self.filled + n]);
            }
            self.filled += n;
            self.plain_len += n as u64;
            self.eof = n == 0;
        }
        let take = self.filled.min(p);
        let last = self.eof && self.filled <= p;
        self.out.clear();
        self.out.extend_from_slice(&self.plain[..take]);
        self.plain.copy_within(take..self.filled, 0);
        self.filled -= take;
        self.key.seal(self.index, last, &mut self.out, 0).map_err(|e| internal(e.to_string()))?;
        self.index += 1;
        self.out_pos = 0;
        self.finished = last;
        Ok(())
    }
}

impl<S: BodySource> BodySource for SealingSource<'_, S> {
    fn announced_len(&self) -> Option<u64> {
        self.src.announced_len().map(super::cipher::sealed_len)
    }
    fn declared_algo(&self) -> Option<ChecksumAlgo> {
        self.src.declared_algo()
    }
    async fn read(&mut self, dst: &mut [u8]) -> S3Result<usize> {
        if self.out_pos == self.out.len() {
            if self.finished {
                return Ok(0);
            }
            self.produce().await?;
        }
        let n = dst.len().min(self.out.len() - self.out_pos);
        dst[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        Ok(n)
    }
    fn sums(&self) -> S3Result<BodySums> {
        self.src.sums()
    }
}

/// `store_from` for a body sealed under `key`: the stored bytes are
/// ciphertext; the size, MD5 and checksum returned are the plaintext's.
pub async fn store_sealed(
    ctx: &Rc<Ctx>,
    src: &mut impl BodySource,
    shard: u32,
    force_extents: bool,
    also: Option<ChecksumAlgo>,
    key: SegmentKey,
) -> S3Result<StoredBody> {
    let sum = also.filter(|a| src.declared_algo() != Some(*a)).map(Checksummer::new);
    let p = PACKAGE_BYTES as usize;
    let mut s = SealingSource {
        src,
        key,
        plain: vec![0u8; 2 * p].into_boxed_slice(),
        filled: 0,
        out: Vec::with_capacity(p + 16),
        out_pos: 0,
        index: 0,
        eof: false,
        finished: false,
        plain_len: 0,
        sum,
    };
    let mut stored = store_from(ctx, &mut s, shard, force_extents, None).await?;
    stored.size = s.plain_len;
    stored.computed = s.sum.map(|c| (c.algo(), c.finish_base64()));
    Ok(stored)
}

/// A plaintext range of a stored object as a body source (the source of
/// CopyObject and UploadPartCopy when either side is encrypted).
pub struct PlainReader {
    ctx: Rc<Ctx>,
    shard: u32,
    body: Body,
    decrypt: Option<Decrypt>,
    chunks: std::collections::VecDeque<super::cipher::Chunk>,
    /// Unsealed bodies: the rest of the range.
    plain_rest: Range<u64>,
    buf: Vec<u8>,
    pos: usize,
    md5: Md5,
    md5_done: Option<[u8; 16]>,
    len: u64,
    /// Finds the body again when compaction moves it mid-read.
    source: Option<crate::response::StreamSource>,
    reloads: u32,
    /// A copy source another node owns: its bytes come from there.
    remote: Option<Rc<crate::copy_remote::RemoteSource>>,
    /// Reads of a remote source already asked for, in order (each piece's
    /// sealed chunk when the bytes are sealed): `REMOTE_AHEAD` round trips
    /// overlap instead of waiting one after another.
    ahead: std::collections::VecDeque<(Option<super::cipher::Chunk>, monoio::task::JoinHandle<S3Result<Vec<u8>>>)>,
}

/// Pieces of a remote copy source in flight at once (each at most
/// `STREAM_PIECE_BYTES`, or one sealed chunk).
const REMOTE_AHEAD: usize = 2;

impl PlainReader {
    /// Reads found moved by compaction load the version's extents again
    /// through `source` (the same bytes) and go on, as a GET does.
    pub fn reloading(mut self, source: Option<crate::response::StreamSource>) -> Self {
        self.source = source;
        self
    }

    /// Reads through `remote` (a source another node owns) instead of a shard.
    pub fn from_remote(mut self, remote: Rc<crate::copy_remote::RemoteSource>) -> Self {
        self.remote = Some(remote);
        self
    }

    /// The stored bytes of `range`, found again if compaction moved them.
    async fn read_range(&mut self, range: Range<u64>) -> S3Result<Vec<u8>> {
        loop {
            match read_stored(&self.ctx, self.shard, &self.body, range.clone()).await {
                Err(IoError::Moved) if self.reloads < crate::response::MAX_STREAM_RELOADS && self.source.is_some() => {
                    self.reloads += 1;
                    let again = match &self.source {
                        Some(s) => s.extents(&self.ctx).await,
                        None => None,
                    };
                    let Some(extents) = again else {
                        return Err(tessera_proto::S3Error::with_message(
                            tessera_proto::S3ErrorCode::ServiceUnavailable,
                            "the copy source changed during the copy; retry",
                        ));
                    };
                    self.body = Body::Extents(extents);
                }
                r => return r.map_err(io_error),
            }
        }
    }
    pub fn new(ctx: &Rc<Ctx>, shard: u32, body: Body, decrypt: Option<Decrypt>, range: Range<u64>) -> Self {
        let chunks = decrypt.as_ref().map(|d| d.layout.chunks(range.clone())).unwrap_or_default().into();
        PlainReader {
            ctx: ctx.clone(),
            shard,
            body,
            decrypt,
            chunks,
            len: range.end - range.start,
            plain_rest: range,
            buf: Vec::new(),
            pos: 0,
            md5: Md5::new(),
            md5_done: None,
            source: None,
            reloads: 0,
            remote: None,
            ahead: std::collections::VecDeque::new(),
        }
    }

    /// The stored range of the next piece, with its sealed chunk when the
    /// bytes are sealed; None at the end.
    fn take_range(&mut self) -> Option<(Range<u64>, Option<super::cipher::Chunk>)> {
        if self.decrypt.is_some() {
            let c = self.chunks.pop_front()?;
            return Some((c.sealed.clone(), Some(c)));
        }
        let r = self.plain_rest.clone();
        if r.is_empty() {
            return None;
        }
        let end = r.end.min(r.start + STREAM_PIECE_BYTES);
        self.plain_rest.start = end;
        Some((r.start..end, None))
    }

    async fn next_piece(&mut self) -> S3Result<Option<Vec<u8>>> {
        let (stored, chunk) = match self.remote.clone() {
            // A remote source: the next pieces are asked for before this
            // one is awaited (a round trip each; one after another, a
            // 5 GiB copy waited for 5,120 of them).
            Some(remote) => {
                while self.ahead.len() < REMOTE_AHEAD {
                    let Some((range, chunk)) = self.take_range() else { break };
                    let r = remote.clone();
                    self.ahead.push_back((chunk, monoio::spawn(async move { r.read(range).await })));
                }
                let Some((chunk, read)) = self.ahead.pop_front() else { return Ok(None) };
                (read.await?, chunk)
            }
            None => {
                let Some((range, chunk)) = self.take_range() else { return Ok(None) };
                (self.read_range(range).await?, chunk)
            }
        };
        match (chunk, &self.decrypt) {
            (Some(c), Some(d)) => d.open(&c, stored).map(Some),
            (None, None) => Ok(Some(stored)),
            _ => Err(internal("decryption lost")),
        }
    }
}

impl BodySource for PlainReader {
    fn announced_len(&self) -> Option<u64> {
        Some(self.len)
    }
    fn declared_algo(&self) -> Option<ChecksumAlgo> {
        None
    }
    async fn read(&mut self, dst: &mut [u8]) -> S3Result<usize> {
        while self.pos == self.buf.len() {
            match self.next_piece().await? {
                Some(p) => {
                    self.md5.update(&p);
                    self.buf = p;
                    self.pos = 0;
                }
                None => {
                    if self.md5_done.is_none() {
                        self.md5_done = Some(std::mem::take(&mut self.md5).finalize().into());
                    }
                    return Ok(0);
                }
            }
        }
        let n = dst.len().min(self.buf.len() - self.pos);
        dst[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
    fn sums(&self) -> S3Result<BodySums> {
        let md5 = self.md5_done.ok_or_else(|| internal("copy source read short"))?;
        Ok(BodySums { md5, checksum: None })
    }
}

/// The decryption of a loaded object (`dk` from `sse::open`), if sealed.
pub fn decrypt_of(meta: &crate::meta::ObjectMeta, size: u64, dk: Option<DataKey>) -> S3Result<Option<Decrypt>> {
    match (dk, &meta.sse) {
        (Some(dk), Some(info)) => Ok(Some(Decrypt { layout: info.layout(size, &meta.part_sizes)?, dk })),
        _ => Ok(None),
    }
}
