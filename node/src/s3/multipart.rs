//! Multipart uploads. Parts are data records in the object's shard;
//! completing writes one commit record that creates the object from the
//! parts' extents (no data copied) and drops the upload and its parts.

use std::rc::Rc;

use md5::{Digest, Md5};
use ring::rand::{SecureRandom, SystemRandom};
use tessera_io::{Body, Mutation};
use tessera_proto::time::{format_iso8601_ms, now_unix_ms};
use tessera_proto::xml::{self, XmlWriter};
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use super::put::{copy_range, load_copy_source, meta_from_headers, store_body};
use super::{io_error, precheck, shard_of, unquote, write_cond};
use crate::buckets::BucketInfo;
use crate::conn::Request;
use crate::identity::User;
use crate::meta::{
    bucket_prefix, object_key, part_key, part_prefix, upload_key, ObjectSummary, PartSummary, UploadInfo,
    T_OBJECTS, T_PARTS, T_UPLOADS,
};
use crate::response::Response;
use crate::s3::list::MergedRange;
use crate::server::Ctx;

/// Smallest part allowed, except the last (S3's limit).
pub const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;
/// Most parts in one upload.
pub const MAX_PARTS: usize = 10_000;

/// Random bytes in an upload id; the id is their lowercase hex.
const UPLOAD_ID_BYTES: usize = 24;

fn new_upload_id() -> S3Result<String> {
    let mut raw = [0u8; UPLOAD_ID_BYTES];
    SystemRandom::new().fill(&mut raw).map_err(|_| super::internal("no randomness"))?;
    Ok(hex::encode(raw))
}

/// Whether `id` has the form of our upload ids. Checked before an id goes
/// into any key: upload and part keys are built by concatenation, and a byte
/// such as NUL in an id would reach another key's upload.
fn valid_upload_id(id: &str) -> bool {
    id.len() == 2 * UPLOAD_ID_BYTES && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn no_such_upload() -> S3Error {
    S3Error::new(S3ErrorCode::NoSuchUpload)
}

async fn load_upload(ctx: &Ctx, shard: u32, b: u64, k: &str, id: &str) -> S3Result<UploadInfo> {
    if !valid_upload_id(id) {
        return Err(no_such_upload());
    }
    let e = ctx.shards.get(shard, T_UPLOADS, upload_key(b, k, id)).await.map_err(io_error)?.ok_or_else(no_such_upload)?;
    UploadInfo::decode(&e.summary).ok_or_else(|| super::internal("corrupt upload record"))
}

pub async fn create(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo, user: &User) -> S3Result<Response> {
    let meta = meta_from_headers(&req.head.headers)?;
    let key = req.key().to_string();
    let id = new_upload_id()?;
    let info = UploadInfo { initiated_ms: now_unix_ms(), owner_id: user.user_id.clone(), meta };
    let shard = shard_of(ctx, &b.name, &key);
    let m = Mutation::Put {
        table: T_UPLOADS,
        key: upload_key(b.id, &key, &id),
        summary: info.encode(),
        meta: Vec::new(),
        body: Body::Inline(Vec::new()),
    };
    let _gate = b.enter_write()?;
    ctx.shards.commit(shard, vec![m]).await.map_err(io_error)?;
    let mut w = XmlWriter::new().root("InitiateMultipartUploadResult");
    w.elem("Bucket", &b.name).elem("Key", &key).elem("UploadId", &id).close("InitiateMultipartUploadResult");
    Ok(Response::xml(200, w.finish()))
}

pub async fn upload_part(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo, part: u32, id: &str) -> S3Result<Response> {
    if req.body.announced_len().is_none() && !req.head.headers.contains("transfer-encoding") {
        return Err(S3Error::new(S3ErrorCode::MissingContentLength));
    }
    let key = req.key().to_string();
    let shard = shard_of(ctx, &b.name, &key);
    load_upload(ctx, shard, b.id, &key, id).await?;
    let stored = store_body(ctx, req, shard, true).await?;
    let summary = PartSummary { size: stored.size, mtime_ms: now_unix_ms(), md5: stored.sums.md5 };
    let m = Mutation::Put {
        table: T_PARTS,
        key: part_key(b.id, &key, id, part),
        summary: summary.encode(),
        meta: Vec::new(),
        body: stored.body,
    };
    commit_part(ctx, shard, b, upload_key(b.id, &key, id), m).await?;
    let mut resp = Response::new(200).header("ETag", summary.etag());
    if let Some((a, v)) = &stored.sums.checksum {
        resp.push_header(a.header_name(), v.clone());
    }
    Ok(resp)
}

/// Commits a part while holding its upload's lock, so the part lands only
/// if the upload still exists, and Complete/Abort (which hold the same
/// lock) see it or it fails: an acknowledged part is never orphaned.
async fn commit_part(ctx: &Ctx, shard: u32, b: &BucketInfo, upload: Vec<u8>, part: Mutation) -> S3Result<()> {
    let _gate = b.enter_write()?;
    let lock = vec![(T_UPLOADS, upload.clone())];
    ctx.shards
        .txn(shard, lock, move |local| async move {
            if local.shard.get(T_UPLOADS, &upload).is_none() {
                return Err(no_such_upload());
            }
            local.commit_in_txn(vec![part]).await.map_err(io_error)?;
            Ok(())
        })
        .await
        .map_err(io_error)?
}

/// UploadPartCopy: a part made of (a range of) an existing object.
pub async fn upload_part_copy(
    ctx: &Rc<Ctx>,
    req: &mut Request<'_>,
    b: &BucketInfo,
    user: &User,
    part: u32,
    id: &str,
) -> S3Result<Response> {
    let key = req.key().to_string();
    let shard = shard_of(ctx, &b.name, &key);
    load_upload(ctx, shard, b.id, &key, id).await?;
    let (_, _, src) = load_copy_source(ctx, req, user).await?;
    let range = match req.header("x-amz-copy-source-range") {
        None => 0..src.summary.size,
        Some(v) => parse_copy_range(v, src.summary.size)?,
    };
    let (body, md5) = copy_range(ctx, src.shard, src.body, range.clone(), shard, true).await?;
    let summary = PartSummary { size: range.end - range.start, mtime_ms: now_unix_ms(), md5 };
    let m = Mutation::Put {
        table: T_PARTS,
        key: part_key(b.id, &key, id, part),
        summary: summary.encode(),
        meta: Vec::new(),
        body,
    };
    commit_part(ctx, shard, b, upload_key(b.id, &key, id), m).await?;
    let mut w = XmlWriter::new().root("CopyPartResult");
    w.elem("LastModified", &format_iso8601_ms(summary.mtime_ms)).elem("ETag", &summary.etag()).close("CopyPartResult");
    Ok(Response::xml(200, w.finish()))
}

/// `x-amz-copy-source-range: bytes=first-last`, both required and inside the source.
fn parse_copy_range(v: &str, size: u64) -> S3Result<std::ops::Range<u64>> {
    let bad = || S3Error::with_message(S3ErrorCode::InvalidArgument, "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy");
    let spec = v.trim().strip_prefix("bytes=").ok_or_else(bad)?;
    let (a, z) = spec.split_once('-').ok_or_else(bad)?;
    let first: u64 = a.trim().parse().map_err(|_| bad())?;
    let last: u64 = z.trim().parse().map_err(|_| bad())?;
    if first > last {
        return Err(bad());
    }
    if last >= size {
        return Err(S3Error::with_message(S3ErrorCode::InvalidRange, "The requested range is not satisfiable"));
    }
    Ok(first..last + 1)
}

/// The ETag a completed upload of `parts` has: MD5 of the parts' MD5s, "-N".
fn multipart_etag(parts: &[xml::CompletePart]) -> Option<String> {
    let mut md5s = Md5::new();
    for p in parts {
        let raw = hex::decode(unquote(&p.etag)).ok().filter(|r| r.len() == 16)?;
        md5s.update(&raw);
    }
    Some(format!("\"{}-{}\"", hex::encode(md5s.finalize()), parts.len()))
}

/// Every part of an upload, in part-number order: (number, key, summary).
/// Reads the owning core's index directly (inside a transaction).
fn parts_of(shard: &tessera_io::Shard, b: u64, k: &str, id: &str) -> S3Result<Vec<(u32, Vec<u8>, PartSummary)>> {
    let prefix = part_prefix(b, k, id);
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let batch = shard.range(T_PARTS, &prefix, after.as_deref(), 1000);
        let done = batch.len() < 1000;
        for (key, e) in batch {
            after = Some(key.clone());
            // A key that merely shares the prefix (an object key holding NUL
            // bytes) is not a part of this upload.
            let Ok(n) = key[prefix.len()..].try_into().map(u32::from_be_bytes) else { continue };
            let s = PartSummary::decode(&e.summary).ok_or_else(|| super::internal("corrupt part record"))?;
            out.push((n, key, s));
        }
        if done {
            return Ok(out);
        }
    }
}

/// Every part of an upload, from any core.
async fn all_parts(ctx: &Ctx, shard: u32, b: u64, k: &str, id: &str) -> S3Result<Vec<(u32, Vec<u8>, PartSummary)>> {
    let (k, id) = (k.to_string(), id.to_string());
    ctx.shards.txn(shard, Vec::new(), move |local| async move { parts_of(&local.shard, b, &k, &id) }).await.map_err(io_error)?
}

pub async fn complete(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo, id: &str) -> S3Result<Response> {
    let key = req.key().to_string();
    let shard = shard_of(ctx, &b.name, &key);
    let okey = object_key(b.id, &key);
    let cond = write_cond(req)?;
    let body = req.read_body_to_vec(xml::MAX_XML_BODY_BYTES).await?;
    let wanted = xml::parse_complete_multipart(&body)?;
    if wanted.len() > MAX_PARTS {
        return Err(S3Error::with_message(S3ErrorCode::InvalidArgument, "too many parts"));
    }
    if wanted.windows(2).any(|w| w[0].part_number >= w[1].part_number) {
        return Err(S3Error::new(S3ErrorCode::InvalidPartOrder));
    }
    precheck(ctx, shard, &okey, cond.as_ref()).await?;
    let _gate = b.enter_write()?;
    let (bid, id) = (b.id, id.to_string());
    let ukey = upload_key(bid, &key, &id);
    let locks = vec![(T_UPLOADS, ukey.clone()), (T_OBJECTS, okey.clone())];
    let k = key.clone();
    let etag = ctx
        .shards
        .txn(shard, locks, move |local| async move {
            let Some(upload) = local.shard.get(T_UPLOADS, &ukey) else {
                // A repeated Complete of an upload that already made this object succeeds again.
                let current = local.shard.get(T_OBJECTS, &okey).and_then(|c| ObjectSummary::decode(&c.summary));
                let etag = current.map(|s| s.etag());
                return match etag {
                    Some(e) if Some(&e) == multipart_etag(&wanted).as_ref() => Ok(e),
                    _ => Err(no_such_upload()),
                };
            };
            let upload = UploadInfo::decode(&upload.summary).ok_or_else(|| super::internal("corrupt upload record"))?;
            if let Some(c) = &cond {
                c.check(local.shard.get(T_OBJECTS, &okey).and_then(|e| ObjectSummary::decode(&e.summary)).as_ref())?;
            }
            let have = parts_of(&local.shard, bid, &k, &id)?;
            let (summary, muts) = assemble(&local.shard, upload, &wanted, have, okey, ukey).await?;
            local.commit_in_txn(muts).await.map_err(io_error)?;
            Ok(summary.etag())
        })
        .await
        .map_err(io_error)??;
    Ok(complete_result(&b.name, &key, &etag))
}

/// The commit that makes the object out of the `wanted` parts of an upload
/// (size, ETag and extents all from the one part record each part's index
/// entry points at) and drops the upload and every part it has.
async fn assemble(
    shard: &tessera_io::Shard,
    upload: UploadInfo,
    wanted: &[xml::CompletePart],
    have: Vec<(u32, Vec<u8>, PartSummary)>,
    okey: Vec<u8>,
    ukey: Vec<u8>,
) -> S3Result<(ObjectSummary, Vec<Mutation>)> {
    let mut extents = Vec::new();
    let mut md5s = Md5::new();
    let mut size = 0u64;
    let mut part_sizes = Vec::with_capacity(wanted.len());
    for (i, w) in wanted.iter().enumerate() {
        let Ok(pos) = have.binary_search_by_key(&w.part_number, |p| p.0) else {
            return Err(S3Error::new(S3ErrorCode::InvalidPart));
        };
        let pkey = &have[pos].1;
        let stored = shard.load(T_PARTS, pkey).await.map_err(io_error)?.ok_or_else(|| S3Error::new(S3ErrorCode::InvalidPart))?;
        let ps = PartSummary::decode(&stored.summary).ok_or_else(|| super::internal("corrupt part record"))?;
        if unquote(&w.etag) != hex::encode(ps.md5) {
            return Err(S3Error::new(S3ErrorCode::InvalidPart));
        }
        if i + 1 < wanted.len() && ps.size < MIN_PART_BYTES {
            return Err(S3Error::new(S3ErrorCode::EntityTooSmall));
        }
        match stored.body {
            Body::Extents(e) => extents.extend(e),
            Body::Inline(d) if d.is_empty() => {}
            Body::Inline(_) => return Err(super::internal("inline part body")),
        }
        md5s.update(ps.md5);
        size += ps.size;
        part_sizes.push(ps.size);
    }
    let mut meta = upload.meta;
    meta.part_sizes = part_sizes;
    let summary = ObjectSummary { size, mtime_ms: now_unix_ms(), md5: md5s.finalize().into(), parts: wanted.len() as u16 };
    let mut muts = vec![
        Mutation::Put {
            table: T_OBJECTS,
            key: okey,
            summary: summary.encode(),
            meta: meta.encode(),
            body: Body::Extents(extents),
        },
        Mutation::Delete { table: T_UPLOADS, key: ukey },
    ];
    muts.extend(have.into_iter().map(|(_, k, _)| Mutation::Delete { table: T_PARTS, key: k }));
    Ok((summary, muts))
}

fn complete_result(bucket: &str, key: &str, etag: &str) -> Response {
    let mut w = XmlWriter::new().root("CompleteMultipartUploadResult");
    w.elem("Location", &format!("/{bucket}/{key}"))
        .elem("Bucket", bucket)
        .elem("Key", key)
        .elem("ETag", etag)
        .close("CompleteMultipartUploadResult");
    Response::xml(200, w.finish())
}

pub async fn abort(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo, id: &str) -> S3Result<Response> {
    let key = req.key().to_string();
    let shard = shard_of(ctx, &b.name, &key);
    let (bid, id) = (b.id, id.to_string());
    let ukey = upload_key(bid, &key, &id);
    let lock = vec![(T_UPLOADS, ukey.clone())];
    ctx.shards
        .txn(shard, lock, move |local| async move {
            if local.shard.get(T_UPLOADS, &ukey).is_none() {
                return Err(no_such_upload());
            }
            let parts = parts_of(&local.shard, bid, &key, &id)?;
            let mut muts = vec![Mutation::Delete { table: T_UPLOADS, key: ukey }];
            muts.extend(parts.into_iter().map(|(_, k, _)| Mutation::Delete { table: T_PARTS, key: k }));
            local.commit_in_txn(muts).await.map_err(io_error)?;
            Ok(())
        })
        .await
        .map_err(io_error)??;
    Ok(Response::new(204))
}

pub async fn list_parts(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo, id: &str) -> S3Result<Response> {
    let key = req.key().to_string();
    let shard = shard_of(ctx, &b.name, &key);
    let upload = load_upload(ctx, shard, b.id, &key, id).await?;
    let q = &req.routed.query;
    let bad = |m: &str| S3Error::with_message(S3ErrorCode::InvalidArgument, m);
    let max_parts = match q.get("max-parts") {
        None => 1000,
        Some(v) => v.parse::<usize>().map_err(|_| bad("max-parts must be an integer"))?.min(1000),
    };
    let marker = match q.get("part-number-marker") {
        None | Some("") => 0,
        Some(v) => v.parse::<u32>().map_err(|_| bad("part-number-marker must be an integer"))?,
    };
    let parts: Vec<_> = all_parts(ctx, shard, b.id, &key, id).await?.into_iter().filter(|p| p.0 > marker).collect();
    let truncated = parts.len() > max_parts;
    let shown = &parts[..parts.len().min(max_parts)];
    let owner_display = if upload.owner_id == b.owner_id { b.owner_display.clone() } else { upload.owner_id.clone() };
    let mut w = XmlWriter::new().root("ListPartsResult");
    w.elem("Bucket", &b.name).elem("Key", &key).elem("UploadId", id);
    w.open("Initiator").elem("ID", &upload.owner_id).elem("DisplayName", &owner_display).close("Initiator");
    w.open("Owner").elem("ID", &upload.owner_id).elem("DisplayName", &owner_display).close("Owner");
    w.elem("StorageClass", "STANDARD").elem("PartNumberMarker", &marker.to_string());
    if let Some(last) = shown.last() {
        w.elem("NextPartNumberMarker", &last.0.to_string());
    }
    w.elem("MaxParts", &max_parts.to_string()).elem("IsTruncated", if truncated { "true" } else { "false" });
    for (n, _, s) in shown {
        w.open("Part")
            .elem("PartNumber", &n.to_string())
            .elem("LastModified", &format_iso8601_ms(s.mtime_ms))
            .elem("ETag", &s.etag())
            .elem("Size", &s.size.to_string())
            .close("Part");
    }
    w.close("ListPartsResult");
    Ok(Response::xml(200, w.finish()))
}

pub async fn list_uploads(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    let q = &req.routed.query;
    let prefix = q.get("prefix").unwrap_or("").to_string();
    let max = match q.get("max-uploads") {
        None => 1000,
        Some(v) => v.parse::<usize>().map_err(|_| S3Error::with_message(S3ErrorCode::InvalidArgument, "max-uploads must be an integer"))?.min(1000),
    };
    let key_marker = q.get("key-marker").unwrap_or("").to_string();
    let id_marker = q.get("upload-id-marker").unwrap_or("").to_string();
    if !id_marker.is_empty() && !valid_upload_id(&id_marker) {
        return Err(S3Error::with_message(S3ErrorCode::InvalidArgument, "Invalid upload-id-marker"));
    }
    // Start after the marker's upload, or after every upload of the marker key.
    let after = match (key_marker.is_empty(), id_marker.is_empty()) {
        (true, _) => None,
        (false, false) => Some(upload_key(b.id, &key_marker, &id_marker)),
        (false, true) => {
            let mut k = object_key(b.id, &key_marker);
            k.extend_from_slice(&[0, 0xFF]);
            Some(k)
        }
    };
    let bp = bucket_prefix(b.id);
    let mut full = bp.clone();
    full.extend_from_slice(prefix.as_bytes());
    let mut range = MergedRange::new(ctx, T_UPLOADS, full, after, max + 1);
    let mut uploads = Vec::new();
    while uploads.len() < max {
        let Some((k, e)) = range.next().await? else { break };
        let rest = &k[bp.len()..];
        let Some(split) = rest.iter().rposition(|&c| c == 0) else { continue };
        let Some(info) = UploadInfo::decode(&e.summary) else { continue };
        let key = String::from_utf8_lossy(&rest[..split]).into_owned();
        let id = String::from_utf8_lossy(&rest[split + 1..]).into_owned();
        uploads.push((key, id, info));
    }
    let truncated = max > 0 && range.peek().await?.is_some();
    let mut w = XmlWriter::new().root("ListMultipartUploadsResult");
    w.elem("Bucket", &b.name).elem("KeyMarker", &key_marker).elem("UploadIdMarker", &id_marker);
    if truncated {
        if let Some((k, id, _)) = uploads.last() {
            w.elem("NextKeyMarker", k).elem("NextUploadIdMarker", id);
        }
    }
    w.elem("Prefix", &prefix).elem("MaxUploads", &max.to_string());
    w.elem("IsTruncated", if truncated { "true" } else { "false" });
    for (key, id, info) in &uploads {
        let display = if info.owner_id == b.owner_id { b.owner_display.as_str() } else { info.owner_id.as_str() };
        w.open("Upload").elem("Key", key).elem("UploadId", id);
        w.open("Initiator").elem("ID", &info.owner_id).elem("DisplayName", display).close("Initiator");
        w.open("Owner").elem("ID", &info.owner_id).elem("DisplayName", display).close("Owner");
        w.elem("StorageClass", "STANDARD").elem("Initiated", &format_iso8601_ms(info.initiated_ms)).close("Upload");
    }
    w.close("ListMultipartUploadsResult");
    Ok(Response::xml(200, w.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_are_validated_strictly() {
        let id = new_upload_id().map_err(|_| ()).unwrap();
        assert!(valid_upload_id(&id), "{id}");
        for bad in [
            String::new(),
            id[1..].to_string(),
            format!("{id}0"),
            id.to_uppercase(),
            format!("X\0{}", &id[2..]),
            format!("{}g", &id[1..]),
            format!("{}\u{e9}", &id[2..]),
        ] {
            assert!(!valid_upload_id(&bad), "{bad:?}");
        }
    }
}
