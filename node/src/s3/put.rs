//! PutObject and CopyObject, and the body-to-shard streaming that
//! UploadPart shares.

use std::collections::VecDeque;
use std::rc::Rc;

use md5::{Digest, Md5};
use monoio::task::JoinHandle;
use tessera_io::{Body, DataBuf, Extent, IoError, Mutation};
use tessera_proto::checksum::BodySums;
use tessera_proto::router::percent_decode;
use tessera_proto::time::{format_iso8601_ms, now_unix_ms};
use tessera_proto::xml::XmlWriter;
use tessera_proto::{Headers, S3Error, S3ErrorCode, S3Result};

use super::{commit_object, io_error, owned_bucket, precheck, shard_of, write_cond, MAX_OBJECT_BYTES};
use crate::bodybuf::{body_buf, first_buf_bytes, next_buf_bytes, BodyBuf};
use crate::buckets::BucketInfo;
use crate::conn::Request;
use crate::identity::User;
use crate::meta::{object_key, ObjectMeta, ObjectSummary, T_OBJECTS};
use super::get::{check_copy_conditions, load_object, LoadedObject};
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
            total += k.len() + value.len();
            user.push((k.to_string(), value.to_string()));
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
        part_sizes: Vec::new(),
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

/// Streams the request body into `shard`: bodies up to `INLINE_MAX_BYTES`
/// stay in memory for an inline commit (unless `force_extents`), bigger ones
/// go out as data records with a few writes in flight. Nothing is committed
/// here; the caller commits only after this returns Ok (body verified).
pub async fn store_body(
    ctx: &Rc<Ctx>,
    req: &mut Request<'_>,
    shard: u32,
    force_extents: bool,
) -> S3Result<StoredBody> {
    if let Some(n) = req.body.announced_len() {
        if n > MAX_OBJECT_BYTES {
            return Err(S3Error::new(S3ErrorCode::EntityTooLarge));
        }
    }
    let mut extents: Vec<Extent> = Vec::new();
    let mut inflight: VecDeque<JoinHandle<Result<Extent, IoError>>> = VecDeque::new();
    // Buffers grow with what arrives (see `bodybuf`), never a record up front.
    let announced = req.body.announced_len();
    let budget = &ctx.body_budget;
    let mut buf = body_buf(budget, first_buf_bytes(announced)).await?;
    let mut size = 0u64;
    loop {
        if buf.buf.remaining() == 0 {
            let next = next_buf_bytes(buf.buf.data_len(), announced.map(|n| n.saturating_sub(size)));
            if inflight.len() >= WRITE_WINDOW {
                if let Some(h) = inflight.pop_front() {
                    extents.push(h.await.map_err(io_error)?);
                }
            }
            let full = std::mem::replace(&mut buf, body_buf(budget, next).await?);
            inflight.push_back(spawn_write(ctx, shard, full));
        }
        let n = req.read_body(buf.buf.spare_mut()).await?;
        if n == 0 {
            break;
        }
        buf.buf.advance(n);
        size += n as u64;
        if size > MAX_OBJECT_BYTES {
            return Err(S3Error::new(S3ErrorCode::EntityTooLarge));
        }
    }
    let sums = req.body.sums().cloned().ok_or_else(|| super::internal("body ended unverified"))?;
    let nothing_written = extents.is_empty() && inflight.is_empty();
    if nothing_written && !force_extents && buf.buf.data_len() <= INLINE_MAX_BYTES {
        return Ok(StoredBody { body: Body::Inline(buf.buf.data().to_vec()), size, sums });
    }
    if buf.buf.data_len() > 0 {
        inflight.push_back(spawn_write(ctx, shard, buf));
    }
    while let Some(h) = inflight.pop_front() {
        extents.push(h.await.map_err(io_error)?);
    }
    Ok(StoredBody { body: Body::Extents(extents), size, sums })
}

pub async fn put_object(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    if req.body.announced_len().is_none() && !req.head.headers.contains("transfer-encoding") {
        return Err(S3Error::new(S3ErrorCode::MissingContentLength));
    }
    let mut meta = meta_from_headers(&req.head.headers)?;
    let key = req.key().to_string();
    let shard = shard_of(ctx, &b.name, &key);
    let okey = object_key(b.id, &key);
    let cond = write_cond(req)?;
    precheck(ctx, shard, &okey, cond.as_ref()).await?;
    let stored = store_body(ctx, req, shard, false).await?;
    let summary = ObjectSummary { size: stored.size, mtime_ms: now_unix_ms(), md5: stored.sums.md5, parts: 0 };
    meta.checksum = stored.sums.checksum.as_ref().map(|(a, v)| (a.header_name().to_string(), v.clone()));
    let m = Mutation::Put {
        table: T_OBJECTS,
        key: okey.clone(),
        summary: summary.encode(),
        meta: meta.encode(),
        body: stored.body,
    };
    let _gate = b.enter_write()?;
    commit_object(ctx, shard, okey, cond, vec![m]).await?;
    let mut resp = Response::new(200).header("ETag", summary.etag());
    if let Some((name, value)) = &meta.checksum {
        resp.push_header(name.clone(), value.clone());
    }
    Ok(resp)
}

/// Parses `x-amz-copy-source`: `[/]bucket/key[?versionId=...]`, URL-encoded.
pub(super) fn parse_copy_source(v: &str) -> S3Result<(String, String)> {
    let v = match v.split_once("?versionId=") {
        Some((p, "null")) => p,
        Some(_) => return Err(S3Error::with_message(S3ErrorCode::InvalidArgument, "Invalid version id specified")),
        None => v,
    };
    let decoded = percent_decode(v)?;
    let s = decoded.strip_prefix('/').unwrap_or(&decoded);
    match s.split_once('/') {
        Some((b, k)) if !b.is_empty() && !k.is_empty() => Ok((b.to_string(), k.to_string())),
        _ => Err(S3Error::with_message(S3ErrorCode::InvalidArgument, "Copy Source must mention the source bucket and key: sourcebucket/sourcekey")),
    }
}

/// The source of CopyObject / UploadPartCopy: (bucket name, key, object),
/// after the caller's ownership and the `x-amz-copy-source-if-*` checks.
pub(super) async fn load_copy_source(
    ctx: &Ctx,
    req: &Request<'_>,
    user: &User,
) -> S3Result<(String, String, LoadedObject)> {
    let (sb, sk) = parse_copy_source(req.header("x-amz-copy-source").unwrap_or_default())?;
    let src_bucket = owned_bucket(ctx, &sb, user)?;
    let src = load_object(ctx, &src_bucket, &sk).await?;
    check_copy_conditions(req, &src.summary)?;
    Ok((sb, sk, src))
}

/// CopyObject: reads the source through its shard and writes a new object
/// (data is copied; shards do not share extents).
pub async fn copy_object(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo, user: &User) -> S3Result<Response> {
    let (sb, sk, src) = load_copy_source(ctx, req, user).await?;
    let key = req.key().to_string();
    let replace = req.header("x-amz-metadata-directive").is_some_and(|d| d.eq_ignore_ascii_case("REPLACE"));
    if !replace && sb == b.name && sk == key {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
        ));
    }
    let mut meta = if replace { meta_from_headers(&req.head.headers)? } else { src.meta };
    // A copy is a new single-part object: its ETag is the MD5 of its bytes.
    meta.part_sizes.clear();
    let dst_shard = shard_of(ctx, &b.name, &key);
    let size = src.summary.size;
    let (body, md5) = copy_range(ctx, src.shard, src.body, 0..size, dst_shard, false).await?;
    let summary = ObjectSummary { size, mtime_ms: now_unix_ms(), md5, parts: 0 };
    let m = Mutation::Put {
        table: T_OBJECTS,
        key: object_key(b.id, &key),
        summary: summary.encode(),
        meta: meta.encode(),
        body,
    };
    let _gate = b.enter_write()?;
    ctx.shards.commit(dst_shard, vec![m]).await.map_err(io_error)?;
    let mut w = XmlWriter::new().root("CopyObjectResult");
    w.elem("LastModified", &format_iso8601_ms(summary.mtime_ms)).elem("ETag", &summary.etag());
    w.close("CopyObjectResult");
    Ok(Response::xml(200, w.finish()))
}

/// Copies `range` of a stored body into `dst`: inline when small (unless
/// `force_extents`), else as data records. Returns the new body and the MD5
/// of the bytes copied.
pub(super) async fn copy_range(
    ctx: &Rc<Ctx>,
    src: u32,
    body: Body,
    range: std::ops::Range<u64>,
    dst: u32,
    force_extents: bool,
) -> S3Result<(Body, [u8; 16])> {
    let mut md5 = Md5::new();
    let extents = match body {
        Body::Inline(data) => {
            let piece = data
                .get(range.start as usize..range.end as usize)
                .ok_or_else(|| super::internal("copy range outside the object"))?;
            md5.update(piece);
            if !force_extents || piece.is_empty() {
                let body = if piece.is_empty() && force_extents { Body::Extents(Vec::new()) } else { Body::Inline(piece.to_vec()) };
                return Ok((body, md5.finalize().into()));
            }
            let mut buf = DataBuf::new(piece.len());
            buf.spare_mut()[..piece.len()].copy_from_slice(piece);
            buf.advance(piece.len());
            let e = ctx.shards.write_data(dst, buf).await.map_err(io_error)?;
            return Ok((Body::Extents(vec![e]), md5.finalize().into()));
        }
        Body::Extents(e) => e,
    };
    let mut out = Vec::new();
    let mut buf = DataBuf::new(DATA_RECORD_BYTES);
    for (e, r) in pieces(&extents, range) {
        let data = ctx.shards.read_extent(src, e, r).await.map_err(io_error)?;
        md5.update(&data);
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
    Ok((Body::Extents(out), md5.finalize().into()))
}
