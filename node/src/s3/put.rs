//! PutObject and CopyObject, and the body-to-shard streaming that
//! UploadPart shares.

use std::collections::VecDeque;
use std::rc::Rc;

use md5::{Digest, Md5};
use monoio::task::JoinHandle;
use tessera_io::{Body, DataBuf, Extent, IoError};
use tessera_proto::checksum::{BodySums, ChecksumAlgo, Checksummer};
use tessera_proto::router::percent_decode;
use tessera_proto::time::{format_iso8601_ms, now_unix_ms};
use tessera_proto::notification::EventName;
use tessera_proto::xml::XmlWriter;
use tessera_proto::{Headers, S3Error, S3ErrorCode, S3Result};

use super::get::{check_copy_conditions, read_version, LoadedObject};
use super::versions::NewVersion;
use super::{
    io_error, lock, precheck, push_written_version, require_integrity_check, shard_of, tagging,
    write_cond, write_version, MAX_OBJECT_BYTES,
};
use crate::bodybuf::{body_buf, first_buf_bytes, first_buf_bytes_roomy, grown_buf_bytes, next_buf_bytes, BodyBuf};
use crate::buckets::BucketInfo;
use crate::request::Request;
use crate::authz;
use crate::meta::{object_key, ChecksumType, ObjectMeta, ObjectSummary, VersionId, VersionSel};
use crate::response::{pieces, Response};
use crate::server::Ctx;

/// Size of one data record written while streaming a body.
pub const DATA_RECORD_BYTES: usize = 1024 * 1024;
/// Bodies up to this size are stored inside their commit record (one I/O).
pub const INLINE_MAX_BYTES: usize = 128 * 1024;
/// Data records in flight per upload.
pub const WRITE_WINDOW: usize = 4;
/// Limit on the total size of user metadata (`x-amz-meta-*`), as S3 has.
pub const MAX_USER_META_BYTES: usize = 2048;
/// Limit on all the metadata stored with an object or an upload (user
/// metadata, Content-Type, Cache-Control and the other stored headers), as
/// encoded. S3 bounds the PUT header at 8 KB; ours is lower because an
/// upload's metadata lives in its index entry (`tessera_io`'s 4 KiB
/// summary limit, with room for the owner id). Checked up front so that
/// PutObject, CopyObject and CreateMultipartUpload agree.
pub const MAX_STORED_METADATA_BYTES: usize = 3 * 1024;

/// A body stored in a shard, not yet committed.
pub struct StoredBody {
    pub body: Body,
    pub size: u64,
    pub sums: BodySums,
    /// The checksum the caller asked `store_body` to compute (base64), when
    /// the client did not send one of that algorithm.
    pub computed: Option<(ChecksumAlgo, String)>,
}

impl StoredBody {
    /// The body's checksum: the verified one the client sent, else the one computed here.
    pub fn checksum(&self) -> Option<(ChecksumAlgo, String)> {
        self.sums.checksum.clone().or_else(|| self.computed.clone())
    }
}

/// The checksum algorithm a request declares for its body (a checksum
/// header, an `x-amz-trailer`, or `x-amz-sdk-checksum-algorithm`).
pub fn declared_algo(h: &Headers) -> Option<ChecksumAlgo> {
    h.iter()
        .find_map(|(n, _)| ChecksumAlgo::from_header_name(n))
        .or_else(|| h.get_all("x-amz-trailer").flat_map(|v| v.split(',')).find_map(ChecksumAlgo::from_header_name))
        .or_else(|| h.get("x-amz-sdk-checksum-algorithm").and_then(ChecksumAlgo::from_algorithm_name))
}

/// Metadata from request headers (PutObject, CreateMultipartUpload, Copy with REPLACE).
pub fn meta_from_headers(h: &Headers) -> S3Result<ObjectMeta> {
    let get = |n: &str| h.get(n).map(str::to_string);
    let content_encoding = h.get("content-encoding").and_then(|v| {
        // aws-chunked is transfer framing, not a property of the object.
        let rest: Vec<&str> =
            v.split(',').map(str::trim).filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("aws-chunked")).collect();
        (!rest.is_empty()).then(|| rest.join(", "))
    });
    let mut user = Vec::new();
    let mut total = 0usize;
    for (name, value) in h.iter() {
        if let Some(k) = name.strip_prefix("x-amz-meta-") {
            // Non-ASCII values arrive RFC 2047 encoded; they are kept decoded.
            let value = tessera_proto::rfc2047::decode(value);
            total += k.len() + value.len();
            user.push((k.to_string(), value));
        }
    }
    if total > MAX_USER_META_BYTES {
        return Err(S3Error::new(S3ErrorCode::MetadataTooLarge));
    }
    let meta = ObjectMeta {
        content_type: get("content-type"),
        content_encoding,
        content_disposition: get("content-disposition"),
        content_language: get("content-language"),
        cache_control: get("cache-control"),
        expires: get("expires"),
        checksum: None,
        user,
        ..Default::default()
    };
    if meta.encode().len() > MAX_STORED_METADATA_BYTES {
        return Err(S3Error::with_message(
            S3ErrorCode::MetadataTooLarge,
            format!("Your metadata headers exceed the maximum allowed metadata size ({MAX_STORED_METADATA_BYTES} bytes in all)."),
        ));
    }
    Ok(meta)
}

/// Writes one record; the buffer's budget grant is returned when the write ends.
fn spawn_write(ctx: &Rc<Ctx>, shard: u32, buf: BodyBuf) -> JoinHandle<Result<Extent, IoError>> {
    let ctx = ctx.clone();
    monoio::spawn(async move {
        let BodyBuf { buf, grant } = buf;
        let r = ctx.shards.write_data(shard, buf).await;
        drop(grant);
        r
    })
}

/// Where a body to store comes from: the request itself, or the file part
/// of a POST form.
#[allow(async_fn_in_trait)] // used on one reactor only; no Send bound wanted
pub trait BodySource {
    /// The body's length when known up front.
    fn announced_len(&self) -> Option<u64>;
    /// The checksum algorithm the client declared for this body.
    fn declared_algo(&self) -> Option<ChecksumAlgo>;
    /// Reads body bytes into `dst`; `Ok(0)` at the verified end.
    async fn read(&mut self, dst: &mut [u8]) -> S3Result<usize>;
    /// Reads body bytes into `buf`'s spare room; `Ok(0)` at the verified
    /// end. A source that can receive straight into it overrides this.
    async fn read_into(&mut self, buf: &mut DataBuf) -> S3Result<usize> {
        let n = self.read(buf.spare_mut()).await?;
        buf.advance(n);
        Ok(n)
    }
    /// MD5 (and declared checksum) of the body, once read to its end.
    fn sums(&self) -> S3Result<BodySums>;
}

impl BodySource for Request<'_> {
    fn announced_len(&self) -> Option<u64> {
        self.body.announced_len()
    }
    fn declared_algo(&self) -> Option<ChecksumAlgo> {
        declared_algo(&self.head.headers)
    }
    async fn read(&mut self, dst: &mut [u8]) -> S3Result<usize> {
        self.read_body(dst).await
    }
    async fn read_into(&mut self, buf: &mut DataBuf) -> S3Result<usize> {
        self.body.read_into(self.conn, buf).await
    }
    fn sums(&self) -> S3Result<BodySums> {
        self.body.sums().cloned().ok_or_else(|| super::internal("body ended unverified"))
    }
}

/// Streams the request body into `shard` (see [`store_from`]).
pub async fn store_body(
    ctx: &Rc<Ctx>,
    req: &mut Request<'_>,
    shard: u32,
    force_extents: bool,
    also: Option<ChecksumAlgo>,
) -> S3Result<StoredBody> {
    store_from(ctx, req, shard, force_extents, also).await
}

/// Streams a body into `shard`: bodies up to `INLINE_MAX_BYTES`
/// stay in memory for an inline commit (unless `force_extents`), bigger ones
/// go out as data records with a few writes in flight. Nothing is committed
/// here; the caller commits only after this returns Ok (body verified).
/// `also` asks for a checksum of that algorithm too, computed here unless
/// the client declared one of it (then the verified one is used).
pub async fn store_from(
    ctx: &Rc<Ctx>,
    src: &mut impl BodySource,
    shard: u32,
    force_extents: bool,
    also: Option<ChecksumAlgo>,
) -> S3Result<StoredBody> {
    let mut own = also.filter(|a| src.declared_algo() != Some(*a)).map(Checksummer::new);
    if let Some(n) = src.announced_len() {
        if n > MAX_OBJECT_BYTES {
            return Err(S3Error::new(S3ErrorCode::EntityTooLarge));
        }
    }
    let mut extents: Vec<Extent> = Vec::new();
    let mut inflight: VecDeque<JoinHandle<Result<Extent, IoError>>> = VecDeque::new();
    // Buffers grow with what arrives (see `bodybuf`): a record-sized one up
    // front only for an announced body while the budget is roomy.
    let announced = src.announced_len();
    let budget = &ctx.body_budget;
    let first = if budget.roomy() { first_buf_bytes_roomy(announced) } else { first_buf_bytes(announced) };
    let mut buf = body_buf(budget, first).await?;
    let mut size = 0u64;
    loop {
        if buf.buf.remaining() == 0 {
            let left = announced.map(|n| n.saturating_sub(size));
            if let Some(room) = grown_buf_bytes(buf.buf.data_len(), left).filter(|_| extents.is_empty() && inflight.is_empty()) {
                // The first buffer filled and more is announced: its bytes
                // move into a bigger one (fewer, larger records).
                let mut grown = body_buf(budget, room).await?;
                let filled = buf.buf.data_len();
                grown.buf.spare_mut()[..filled].copy_from_slice(buf.buf.data());
                grown.buf.advance(filled);
                buf = grown;
                continue;
            }
            let next = next_buf_bytes(buf.buf.data_len(), left);
            if inflight.len() >= WRITE_WINDOW {
                if let Some(h) = inflight.pop_front() {
                    extents.push(h.await.map_err(io_error)?);
                }
            }
            let full = std::mem::replace(&mut buf, body_buf(budget, next).await?);
            inflight.push_back(spawn_write(ctx, shard, full));
        }
        let before = buf.buf.data_len();
        let n = src.read_into(&mut buf.buf).await?;
        if n == 0 {
            break;
        }
        if let Some(c) = own.as_mut() {
            c.update(&buf.buf.data()[before..before + n]);
        }
        size += n as u64;
        if size > MAX_OBJECT_BYTES {
            return Err(S3Error::new(S3ErrorCode::EntityTooLarge));
        }
    }
    let sums = src.sums()?;
    let computed = own.map(|c| (c.algo(), c.finish_base64()));
    let nothing_written = extents.is_empty() && inflight.is_empty();
    if nothing_written && !force_extents && buf.buf.data_len() <= INLINE_MAX_BYTES {
        return Ok(StoredBody { body: Body::Inline(buf.buf.data().to_vec()), size, sums, computed });
    }
    if buf.buf.data_len() > 0 {
        inflight.push_back(spawn_write(ctx, shard, buf));
    }
    while let Some(h) = inflight.pop_front() {
        extents.push(h.await.map_err(io_error)?);
    }
    Ok(StoredBody { body: Body::Extents(extents), size, sums, computed })
}

pub async fn put_object(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    if req.body.announced_len().is_none() && !req.head.headers.contains("transfer-encoding") {
        return Err(S3Error::new(S3ErrorCode::MissingContentLength));
    }
    let mut meta = meta_from_headers(&req.head.headers)?;
    meta.tags = tagging::from_header(req)?;
    meta.acl = super::acl::for_new_object(ctx, req, b)?;
    let lock = lock::from_headers(req, b)?;
    let mut sealing = crate::sse::start(&*ctx.shared.kms, crate::sse::wanted(&req.head.headers)?, b)?;
    let key = req.key().to_string();
    let shard = shard_of(ctx, &b.name, &key);
    let okey = object_key(b.id, &key);
    let cond = write_cond(req)?;
    precheck(ctx, shard, &okey, cond.as_ref()).await?;
    let stored = match sealing.as_mut() {
        Some(s) => {
            let seg = s.new_segment(1)?;
            crate::sse::stream::store_sealed(ctx, req, shard, false, None, seg).await?
        }
        None => store_body(ctx, req, shard, false, None).await?,
    };
    if lock.explicit {
        require_integrity_check(req)?;
    }
    meta.checksum = stored.checksum().map(|(a, v)| (a.header_name().to_string(), v));
    if meta.checksum.is_some() {
        meta.checksum_type = Some(ChecksumType::FullObject);
    }
    let md5 = sealing.as_ref().map_or(stored.sums.md5, |s| s.info.etag_md5(&s.dk, stored.sums.md5));
    meta.sse = sealing.map(|s| s.info.clone());
    let mut summary = ObjectSummary::new(stored.size, now_unix_ms(), md5, 0, VersionId::from_parts(0, [0; 8]), true);
    lock.apply(&mut summary, b);
    let new = NewVersion { summary, meta: meta.encode(), body: stored.body };
    let ev = super::event(ctx, req, b, &key, EventName::Put)?;
    let _gate = b.enter_write()?;
    let summary = write_version(ctx, b, shard, &key, new, cond, ev).await?;
    let mut resp = Response::new(200).header("ETag", summary.etag());
    push_written_version(&mut resp, &summary);
    super::lifecycle::push_expiration(&mut resp, b, &key, &meta.tags, summary.size, summary.mtime_ms);
    if let Some(info) = &meta.sse {
        crate::sse::push_headers(&mut resp, info);
    }
    if let Some((name, value)) = &meta.checksum {
        resp.push_header(name.clone(), value.clone());
        resp.push_header("x-amz-checksum-type", ChecksumType::FullObject.as_str());
    }
    Ok(resp)
}

/// Parses `x-amz-copy-source`: `[/]bucket/key[?versionId=...]`, URL-encoded.
pub(super) fn parse_copy_source(v: &str) -> S3Result<(String, String, Option<VersionSel>)> {
    let (path, version) = match v.split_once("?versionId=") {
        Some((p, id)) => (p, Some(VersionSel::parse(&percent_decode(id)?)?)),
        None => (v, None),
    };
    let decoded = percent_decode(path)?;
    let s = decoded.strip_prefix('/').unwrap_or(&decoded);
    match s.split_once('/') {
        Some((b, k)) if !b.is_empty() && !k.is_empty() => Ok((b.to_string(), k.to_string(), version)),
        _ => Err(S3Error::with_message(S3ErrorCode::InvalidArgument, "Copy Source must mention the source bucket and key: sourcebucket/sourcekey")),
    }
}

/// The source of CopyObject / UploadPartCopy, after the caller's ownership
/// and the `x-amz-copy-source-if-*` checks: (bucket, key, version named,
/// object, and where its bytes are when another node of the cluster owns
/// the source key: `copy_remote`; the object's body is then empty).
pub(super) async fn load_copy_source(
    ctx: &Ctx,
    req: &Request<'_>,
) -> S3Result<(String, String, Option<VersionSel>, LoadedObject, Option<crate::copy_remote::RemoteSource>)> {
    let (sb, sk, sel) = parse_copy_source(req.header("x-amz-copy-source").unwrap_or_default())?;
    let src_bucket = ctx.shared.buckets.find(&sb).await?;
    super::expected_owner(req, "x-amz-source-expected-bucket-owner", &src_bucket)?;
    let versioned = sel.is_some();
    // In a cluster the request runs on the destination key's owner; a
    // source another node owns is read from it, and checked here exactly
    // as a local one.
    let (src, remote) = match crate::copy_remote::owner_elsewhere(ctx, &sb, &sk) {
        None => match async {
            crate::handover::ensure(ctx, &src_bucket, &sk).await?;
            read_version(ctx, &src_bucket, &sk, sel).await
        }
        .await
        {
            Ok(s) => (s, None),
            Err(e) => return Err(authz::copy_source_missing(req, &src_bucket, &sk, versioned, e)),
        },
        Some(peer) => match crate::copy_remote::head(ctx, peer, &src_bucket, &sk, sel).await {
            Ok((s, r)) => (s, Some(r)),
            Err(e) => return Err(authz::copy_source_missing(req, &src_bucket, &sk, versioned, e)),
        },
    };
    if src.summary.delete_marker {
        let e = match sel {
            Some(_) => S3Error::with_message(
                S3ErrorCode::InvalidRequest,
                "The source of a copy request may not specifically refer to a delete marker by version id.",
            ),
            None => S3Error::new(S3ErrorCode::NoSuchKey),
        };
        return Err(authz::copy_source_missing(req, &src_bucket, &sk, versioned, e));
    }
    // The source is read with the requester's permissions on it.
    let facts = authz::ObjectFacts { acl: src.meta.acl.as_ref(), tags: &src.meta.tags };
    authz::check_copy_source(req, &src_bucket, &sk, versioned, facts)?;
    check_copy_conditions(req, &src.summary)?;
    crate::tier::refuse_stub(&src.meta)?;
    Ok((sb, sk, sel, src, remote))
}

/// How a copy source's bytes are opened: here, with the request's SSE-C
/// key or the key service (a local source, or any SSE-C source), or by a
/// remote source's owner (SSE-S3 / SSE-KMS: that node's key service holds
/// the master key; the bytes then come as plaintext).
pub(super) fn open_copy_source(
    ctx: &Ctx,
    src: &LoadedObject,
    remote: Option<&mut crate::copy_remote::RemoteSource>,
    customer: Option<&crate::sse::CustomerKey>,
) -> S3Result<Option<crate::sse::stream::Decrypt>> {
    let by_owner = matches!(
        src.meta.sse.as_ref().map(|i| &i.mode),
        Some(crate::sse::SseMode::S3 { .. } | crate::sse::SseMode::Kms { .. })
    ) && customer.is_none();
    if let (true, Some(r)) = (by_owner, remote) {
        r.opened_by_owner();
        return Ok(None);
    }
    let dk = crate::sse::open(&*ctx.shared.kms, src.meta.sse.as_ref(), customer)?;
    crate::sse::stream::decrypt_of(&src.meta, src.summary.size, dk)
}

/// Whether a copy of `key` onto itself copies its current version (a copy
/// of an older version is how a version is restored, and is allowed).
async fn copies_current_onto_itself(ctx: &Ctx, b: &BucketInfo, key: &str, sel: Option<VersionSel>) -> S3Result<bool> {
    let Some(sel) = sel else { return Ok(true) };
    let shard = shard_of(ctx, &b.name, key);
    let current = ctx.shards.get(shard, crate::meta::T_OBJECTS, object_key(b.id, key)).await.map_err(io_error)?;
    Ok(current.and_then(|e| ObjectSummary::decode(&e.summary)).is_some_and(|s| sel.matches(&s)))
}

/// A COPY/REPLACE directive header; anything else is `InvalidArgument`.
fn directive(req: &Request<'_>, name: &str) -> S3Result<bool> {
    match req.header(name).map(str::trim) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("COPY") => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("REPLACE") => Ok(true),
        Some(_) => Err(S3Error::with_message(S3ErrorCode::InvalidArgument, format!("Unknown {name}"))),
    }
}

/// CopyObject: reads the source through its shard and writes a new object
/// (data is copied piece by piece, never buffered whole; shards do not
/// share extents).
pub async fn copy_object(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    let replace_meta = directive(req, "x-amz-metadata-directive")?;
    let replace_tags = directive(req, "x-amz-tagging-directive")?;
    let lock = lock::from_headers(req, b)?;
    let acl = super::acl::for_new_object(ctx, req, b)?;
    let wanted = crate::sse::wanted(&req.head.headers)?;
    let src_customer = crate::sse::customer_key(&req.head.headers, crate::sse::COPY_SOURCE_CUSTOMER)?;
    let (sb, sk, sel, src, mut remote) = load_copy_source(ctx, req).await?;
    let decrypt = open_copy_source(ctx, &src, remote.as_mut(), src_customer.as_ref())?;
    let key = req.key().to_string();
    let changes_something = replace_meta
        || replace_tags
        || lock.explicit
        || req.header("x-amz-storage-class").is_some()
        || req.header("x-amz-website-redirect-location").is_some()
        || !matches!(wanted, crate::sse::Wanted::Default);
    if sb == b.name && sk == key && !changes_something && copies_current_onto_itself(ctx, b, &key, sel).await? {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
        ));
    }
    let mut meta = if replace_meta { meta_from_headers(&req.head.headers)? } else { src.meta.clone() };
    // The copy is a new version stored here (the source was restored).
    meta.tier = None;
    meta.tags = if replace_tags { tagging::from_header(req)? } else { src.meta.tags.clone() };
    // A copy is a new object: its ACL is the request's, not the source's.
    meta.acl = acl;
    if replace_meta {
        // The checksum describes the bytes, which do not change.
        meta.checksum = src.meta.checksum.clone();
    }
    // A copy is a new single-part object: its ETag is the MD5 of its bytes,
    // its checksum (if any) of the whole object.
    meta.part_sizes.clear();
    meta.part_checksums.clear();
    let dst_shard = shard_of(ctx, &b.name, &key);
    let size = src.summary.size;
    // The source's checksum carries over when it covers the whole object in
    // the algorithm wanted; otherwise the copy computes it.
    let src_algo = src.meta.checksum.as_ref().and_then(|(n, _)| ChecksumAlgo::from_header_name(n));
    let full_object = src.meta.effective_checksum_type() == ChecksumType::FullObject;
    let wanted_algo = match req.header("x-amz-checksum-algorithm") {
        None => src_algo,
        Some(v) => Some(ChecksumAlgo::from_algorithm_name(v).ok_or_else(|| {
            S3Error::with_message(S3ErrorCode::InvalidRequest, "Checksum algorithm provided is unsupported.")
        })?),
    };
    let compute = wanted_algo.filter(|w| !(Some(*w) == src_algo && full_object));
    let mut sealing = crate::sse::start(&*ctx.shared.kms, wanted, b)?;
    let seg = sealing.as_mut().map(|s| s.new_segment(1)).transpose()?;
    let source = copy_source_identity(ctx, &sb, &sk, &src);
    let from = CopyFrom { shard: src.shard, body: src.body, remote, source };
    let copied = copy_through(ctx, from, decrypt, 0..size, dst_shard, false, compute, seg).await?;
    let md5 = sealing.as_ref().map_or(copied.md5, |s| s.info.etag_md5(&s.dk, copied.md5));
    meta.sse = sealing.map(|s| s.info.clone());
    if let (Some(a), Some(v)) = (compute, &copied.checksum) {
        meta.checksum = Some((a.header_name().to_string(), v.clone()));
    }
    if meta.checksum.is_some() {
        meta.checksum_type = Some(ChecksumType::FullObject);
    }
    let mut summary = ObjectSummary::new(size, now_unix_ms(), md5, 0, VersionId::from_parts(0, [0; 8]), true);
    lock.apply(&mut summary, b);
    let new = NewVersion { summary, meta: meta.encode(), body: copied.body };
    let ev = super::event(ctx, req, b, &key, EventName::Copy)?;
    let _gate = b.enter_write()?;
    let summary = write_version(ctx, b, dst_shard, &key, new, None, ev).await?;
    let mut w = XmlWriter::new().root("CopyObjectResult");
    w.elem("LastModified", &format_iso8601_ms(summary.mtime_ms)).elem("ETag", &summary.etag());
    if let Some((n, v)) = &meta.checksum {
        if let Some(a) = ChecksumAlgo::from_header_name(n) {
            w.elem(tessera_proto::xml::checksum_element(a), v);
        }
    }
    w.close("CopyObjectResult");
    let mut resp = Response::xml(200, w.finish());
    push_written_version(&mut resp, &summary);
    if let Some(info) = &meta.sse {
        crate::sse::push_headers(&mut resp, info);
    }
    if sel.is_some() || !src.summary.null_version {
        resp.push_header("x-amz-copy-source-version-id", src.summary.version_id());
    }
    Ok(resp)
}

/// What names a copy source's bytes, for finding them again when
/// compaction moves them mid-copy.
pub(super) fn copy_source_identity(ctx: &Ctx, bucket: &str, key: &str, src: &LoadedObject) -> Option<crate::response::StreamSource> {
    Some(crate::response::StreamSource {
        bucket: ctx.shared.buckets.get(bucket)?,
        key: key.to_string(),
        version: src.summary.version,
        null_version: src.summary.null_version,
        size: src.summary.size,
        md5: src.summary.md5,
    })
}

/// What `copy_range` made: the new body, the MD5 of the bytes copied and,
/// when asked, their checksum (base64).
pub(super) struct Copied {
    pub body: Body,
    pub md5: [u8; 16],
    pub checksum: Option<String>,
}

/// Where a copy's source bytes are: a body in a shard of this node (found
/// again through `source` when compaction moves it), or on another node.
pub(super) struct CopyFrom {
    pub shard: u32,
    pub body: Body,
    pub remote: Option<crate::copy_remote::RemoteSource>,
    pub source: Option<crate::response::StreamSource>,
}

/// Copies plaintext `range` of a stored object into `dst`: through
/// `copy_range` when neither side is encrypted and the source is here,
/// else read piece by piece (from the source's node when remote), opened
/// with `decrypt` (a sealed source) and sealed under `seal` (an encrypted
/// destination).
#[allow(clippy::too_many_arguments)]
pub(super) async fn copy_through(
    ctx: &Rc<Ctx>,
    from: CopyFrom,
    decrypt: Option<crate::sse::stream::Decrypt>,
    range: std::ops::Range<u64>,
    dst: u32,
    force_extents: bool,
    algo: Option<ChecksumAlgo>,
    seal: Option<crate::sse::cipher::SegmentKey>,
) -> S3Result<Copied> {
    let CopyFrom { shard: src, body, remote, source } = from;
    if decrypt.is_none() && seal.is_none() && remote.is_none() {
        return copy_range(ctx, src, body, range, dst, force_extents, algo, source.as_ref()).await;
    }
    let mut reader = crate::sse::stream::PlainReader::new(ctx, src, body, decrypt, range).reloading(source);
    if let Some(r) = remote {
        reader = reader.from_remote(Rc::new(r));
    }
    let stored = match seal {
        Some(k) => crate::sse::stream::store_sealed(ctx, &mut reader, dst, force_extents, algo, k).await?,
        None => store_from(ctx, &mut reader, dst, force_extents, algo).await?,
    };
    let checksum = stored.checksum().map(|(_, v)| v);
    Ok(Copied { body: stored.body, md5: stored.sums.md5, checksum })
}

/// Copies `range` of a stored body into `dst`: inline when small (unless
/// `force_extents`), else as data records, one piece at a time. Computes
/// the MD5 of the bytes copied, and their `algo` checksum when asked.
/// When compaction moves the source's data during the copy, its extents
/// are found again through `source` (the same version, size and MD5: the
/// same bytes) and the copy goes on from where it was, as a GET does.
#[allow(clippy::too_many_arguments)]
pub(super) async fn copy_range(
    ctx: &Rc<Ctx>,
    src: u32,
    body: Body,
    range: std::ops::Range<u64>,
    dst: u32,
    force_extents: bool,
    algo: Option<ChecksumAlgo>,
    source: Option<&crate::response::StreamSource>,
) -> S3Result<Copied> {
    let mut md5 = Md5::new();
    let mut sum = algo.map(Checksummer::new);
    let extents = match body {
        Body::Inline(data) => {
            let piece = data
                .get(range.start as usize..range.end as usize)
                .ok_or_else(|| super::internal("copy range outside the object"))?;
            md5.update(piece);
            if let Some(c) = sum.as_mut() {
                c.update(piece);
            }
            let checksum = sum.map(Checksummer::finish_base64);
            if !force_extents || piece.is_empty() {
                let body = if piece.is_empty() && force_extents { Body::Extents(Vec::new()) } else { Body::Inline(piece.to_vec()) };
                return Ok(Copied { body, md5: md5.finalize().into(), checksum });
            }
            let mut buf = DataBuf::new(piece.len());
            buf.spare_mut()[..piece.len()].copy_from_slice(piece);
            buf.advance(piece.len());
            let e = ctx.shards.write_data(dst, buf).await.map_err(io_error)?;
            return Ok(Copied { body: Body::Extents(vec![e]), md5: md5.finalize().into(), checksum });
        }
        Body::Extents(e) => e,
    };
    let mut out = Vec::new();
    let mut buf = DataBuf::new(DATA_RECORD_BYTES);
    let (mut extents, mut pos, mut reloads) = (extents, range.start, 0u32);
    let mut todo = pieces(&extents, pos..range.end).into_iter();
    while let Some((e, r)) = todo.next() {
        let data = match ctx.shards.read_extent(src, e, r).await {
            Ok(d) => d,
            Err(tessera_io::IoError::Moved) if reloads < crate::response::MAX_STREAM_RELOADS && source.is_some() => {
                reloads += 1;
                let Some(again) = source.unwrap().extents(ctx).await else {
                    return Err(S3Error::with_message(S3ErrorCode::ServiceUnavailable, "the copy source changed during the copy; retry"));
                };
                extents = again;
                todo = pieces(&extents, pos..range.end).into_iter();
                continue;
            }
            Err(err) if reloads < crate::response::MAX_STREAM_RELOADS => {
                // Any other error: the version may have been rewritten
                // elsewhere (a re-striping walk; `StreamSource::rewritten`).
                let Some(src) = source else { return Err(io_error(err)) };
                let Some(again) = src.rewritten(ctx, &extents).await else { return Err(io_error(err)) };
                tracing::warn!("copy source read failed ({err}); the version was rewritten meanwhile, reading it again where it is now");
                reloads += 1;
                extents = again;
                todo = pieces(&extents, pos..range.end).into_iter();
                continue;
            }
            Err(e) => return Err(io_error(e)),
        };
        pos += data.len() as u64;
        md5.update(&data);
        if let Some(c) = sum.as_mut() {
            c.update(&data);
        }
        let mut rest = &data[..];
        while !rest.is_empty() {
            let n = rest.len().min(buf.remaining());
            buf.spare_mut()[..n].copy_from_slice(&rest[..n]);
            buf.advance(n);
            rest = &rest[n..];
            if buf.remaining() == 0 {
                let full = std::mem::replace(&mut buf, DataBuf::new(DATA_RECORD_BYTES));
                out.push(ctx.shards.write_data(dst, full).await.map_err(io_error)?);
            }
        }
    }
    if buf.data_len() > 0 {
        out.push(ctx.shards.write_data(dst, buf).await.map_err(io_error)?);
    }
    Ok(Copied { body: Body::Extents(out), md5: md5.finalize().into(), checksum: sum.map(Checksummer::finish_base64) })
}
