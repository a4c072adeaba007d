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

use tessera_proto::checksum::{self, ChecksumAlgo, Checksummer};

use crate::sse::cipher::{DataKey, SegmentKey, SALT_BYTES};
use super::put::{copy_through, declared_algo, load_copy_source, meta_from_headers, store_body};
use super::versions::{self, NewVersion};
use super::{io_error, lock, precheck, push_written_version, shard_of, tagging, unquote, write_cond};
use crate::buckets::{BucketInfo, Versioning};
use crate::request::Request;
use crate::meta::{
    bucket_prefix, object_key, part_key, part_prefix, upload_key, ChecksumType, ObjectMeta, ObjectSummary,
    PartSummary, UploadInfo, VersionId, T_OBJECTS, T_PARTS, T_UPLOADS,
};
use crate::response::Response;
use crate::s3::list::MergedRange;
use crate::server::Ctx;

/// Smallest part allowed, except the last (S3's limit).
pub const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;
/// Most parts in one upload.
pub const MAX_PARTS: usize = crate::meta::MAX_PARTS;

/// Random bytes in an upload id; the id is their lowercase hex.
const UPLOAD_ID_BYTES: usize = 24;

/// Largest upload record (it is an index summary: `tessera_io`'s 4 KiB).
const MAX_UPLOAD_RECORD_BYTES: usize = 4096;

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

/// The display name of the account `id` (as recorded on the bucket for its owner).
fn display_of(ctx: &Ctx, b: &BucketInfo, id: &str) -> String {
    if id == b.owner_id {
        return b.owner_display.clone();
    }
    ctx.shared.identities.load().account(id).map_or_else(|| id.to_string(), |a| a.display_name.clone())
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

fn invalid_request(msg: impl Into<String>) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidRequest, msg)
}

/// `x-amz-checksum-algorithm` and `x-amz-checksum-type` of
/// CreateMultipartUpload. FULL_OBJECT needs a CRC (it is combined from the
/// parts'); CRC64NVME is FULL_OBJECT only; the default type is COMPOSITE
/// (FULL_OBJECT for CRC64NVME).
fn checksum_request(req: &Request<'_>) -> S3Result<(Option<ChecksumAlgo>, Option<ChecksumType>)> {
    let algo = match req.header("x-amz-checksum-algorithm") {
        None => None,
        Some(v) => Some(ChecksumAlgo::from_algorithm_name(v).ok_or_else(|| {
            invalid_request("Checksum algorithm provided is unsupported. Please try again with any of the valid types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]")
        })?),
    };
    let ctype = match req.header("x-amz-checksum-type") {
        None => None,
        Some(v) => Some(ChecksumType::parse(v).ok_or_else(|| invalid_request("Value for x-amz-checksum-type header is invalid."))?),
    };
    let Some(a) = algo else {
        return match ctype {
            None => Ok((None, None)),
            Some(_) => Err(invalid_request("The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header.")),
        };
    };
    let t = ctype.unwrap_or(if a == ChecksumAlgo::Crc64Nvme { ChecksumType::FullObject } else { ChecksumType::Composite });
    match t {
        ChecksumType::FullObject if !checksum::combinable(a) => Err(invalid_request(format!(
            "The FULL_OBJECT checksum type cannot be used with the {} checksum algorithm.",
            a.name().to_ascii_lowercase()
        ))),
        ChecksumType::Composite if a == ChecksumAlgo::Crc64Nvme => {
            Err(invalid_request("The COMPOSITE checksum type cannot be used with the crc64nvme checksum algorithm."))
        }
        _ => Ok((Some(a), Some(t))),
    }
}

/// Encoding of an upload record's meta bytes: the ACL the object will
/// get (kept out of the summary, which is small and in memory).
const UPLOAD_META_V1: u8 = 1;

fn encode_upload_acl(acl: Option<&tessera_policy::Acl>) -> Vec<u8> {
    let Some(acl) = acl else { return Vec::new() };
    let mut e = crate::codec::Enc::new(UPLOAD_META_V1);
    crate::acl::encode(&mut e, acl);
    e.finish()
}

fn decode_upload_acl(b: &[u8]) -> Option<Option<tessera_policy::Acl>> {
    if b.is_empty() {
        return Some(None);
    }
    let mut d = crate::codec::Dec::new(b, UPLOAD_META_V1)?;
    let acl = crate::acl::decode(&mut d)?;
    d.end()?;
    Some(Some(acl))
}

pub async fn create(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    let mut meta = meta_from_headers(&req.head.headers)?;
    meta.tags = tagging::from_header(req)?;
    let acl = super::acl::for_new_object(ctx, req, b)?;
    let lock = lock::from_headers(req, b)?;
    let (algo, ctype) = checksum_request(req)?;
    // The upload's data key is made now; each part gets its own key from it.
    let sealing = crate::sse::start(&*ctx.shared.kms, crate::sse::wanted(&req.head.headers)?, b)?;
    meta.sse = sealing.map(|s| s.info.clone());
    let key = req.key().to_string();
    let id = new_upload_id()?;
    let owner = acl.as_ref().map_or_else(|| b.owner_id.clone(), |a| a.owner_id.clone());
    let mut info = UploadInfo::new(now_unix_ms(), owner, meta);
    info.checksum_algo = algo;
    info.checksum_type = ctype;
    info.retention = lock.retention;
    info.legal_hold = lock.legal_hold;
    // The upload record lives in its index entry: with the encryption
    // section it must still fit (checked here, never a 500 at commit).
    if info.encode().len() > MAX_UPLOAD_RECORD_BYTES {
        return Err(S3Error::with_message(S3ErrorCode::MetadataTooLarge, "Your metadata headers and encryption context exceed the maximum allowed size."));
    }
    let shard = shard_of(ctx, &b.name, &key);
    let m = Mutation::Put {
        table: T_UPLOADS,
        key: upload_key(b.id, &key, &id),
        summary: info.encode(),
        meta: encode_upload_acl(acl.as_ref()),
        body: Body::Inline(Vec::new()),
    };
    let _gate = b.enter_write()?;
    ctx.shards.commit(shard, vec![m]).await.map_err(io_error)?;
    let mut w = XmlWriter::new().root("InitiateMultipartUploadResult");
    w.elem("Bucket", &b.name).elem("Key", &key).elem("UploadId", &id).close("InitiateMultipartUploadResult");
    let mut resp = Response::xml(200, w.finish());
    if let (Some(a), Some(t)) = (algo, ctype) {
        resp.push_header("x-amz-checksum-algorithm", a.name());
        resp.push_header("x-amz-checksum-type", t.as_str());
    }
    if let Some(info) = &info.meta.sse {
        crate::sse::push_headers(&mut resp, info);
    }
    Ok(resp)
}

pub async fn upload_part(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo, part: u32, id: &str) -> S3Result<Response> {
    if req.body.announced_len().is_none() && !req.head.headers.contains("transfer-encoding") {
        return Err(S3Error::new(S3ErrorCode::MissingContentLength));
    }
    let key = req.key().to_string();
    let shard = shard_of(ctx, &b.name, &key);
    let upload = load_upload(ctx, shard, b.id, &key, id).await?;
    if let (Some(want), Some(got)) = (upload.checksum_algo, declared_algo(&req.head.headers)) {
        if want != got {
            return Err(invalid_request(format!(
                "Checksum Type mismatch occurred, expected checksum Type: {}, actual checksum Type: {}",
                want.name().to_ascii_lowercase(),
                got.name().to_ascii_lowercase()
            )));
        }
    }
    let (dk, seg) = sealing_part_key(ctx, req, &upload, part)?;
    let salt = seg.as_ref().map(|s| s.0);
    let stored = match seg {
        Some((_, k)) => crate::sse::stream::store_sealed(ctx, req, shard, true, upload.checksum_algo, k).await?,
        None => store_body(ctx, req, shard, true, upload.checksum_algo).await?,
    };
    let sum = stored.checksum();
    let raw = sum.as_ref().and_then(|(a, v)| checksum::decode_value(*a, v).map(|r| (*a, r)));
    let md5 = part_md5(&upload, dk.as_ref(), stored.sums.md5);
    let summary = PartSummary { size: stored.size, mtime_ms: now_unix_ms(), md5, checksum: raw, salt };
    let m = Mutation::Put {
        table: T_PARTS,
        key: part_key(b.id, &key, id, part),
        summary: summary.encode(),
        meta: Vec::new(),
        body: stored.body,
    };
    commit_part(ctx, shard, b, upload_key(b.id, &key, id), m).await?;
    let mut resp = Response::new(200).header("ETag", summary.etag());
    if let Some((a, v)) = &sum {
        resp.push_header(a.header_name(), v.clone());
    }
    if let Some(info) = &upload.meta.sse {
        crate::sse::push_headers(&mut resp, info);
    }
    Ok(resp)
}

/// The data key of an encrypted upload (the SSE-C key checked: a part
/// needs the upload's key) and a new key for `part` with its salt.
#[allow(clippy::type_complexity)]
fn sealing_part_key(
    ctx: &Ctx,
    req: &Request<'_>,
    upload: &UploadInfo,
    part: u32,
) -> S3Result<(Option<DataKey>, Option<([u8; SALT_BYTES], SegmentKey)>)> {
    let customer = crate::sse::customer_key(&req.head.headers, crate::sse::CUSTOMER)?;
    let Some(dk) = crate::sse::open(&*ctx.shared.kms, upload.meta.sse.as_ref(), customer.as_ref())? else {
        return Ok((None, None));
    };
    let salt = crate::sse::cipher::random_salt().map_err(|e| super::internal(e.to_string()))?;
    let k = SegmentKey::derive(&dk, &salt, part);
    Ok((Some(dk), Some((salt, k))))
}

/// A part's ETag MD5: hidden as the object's is for SSE-C and SSE-KMS.
fn part_md5(upload: &UploadInfo, dk: Option<&DataKey>, md5: [u8; 16]) -> [u8; 16] {
    match (&upload.meta.sse, dk) {
        (Some(info), Some(dk)) => info.etag_md5(dk, md5),
        _ => md5,
    }
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
    part: u32,
    id: &str,
) -> S3Result<Response> {
    let key = req.key().to_string();
    let shard = shard_of(ctx, &b.name, &key);
    let upload = load_upload(ctx, shard, b.id, &key, id).await?;
    let src_customer = crate::sse::customer_key(&req.head.headers, crate::sse::COPY_SOURCE_CUSTOMER)?;
    let (dk, seg) = sealing_part_key(ctx, req, &upload, part)?;
    let (sb, sk, sel, src, mut remote) = load_copy_source(ctx, req).await?;
    let decrypt = super::put::open_copy_source(ctx, &src, remote.as_mut(), src_customer.as_ref())?;
    let range = match req.header("x-amz-copy-source-range") {
        None => 0..src.summary.size,
        Some(v) => parse_copy_range(v, src.summary.size)?,
    };
    let algo = upload.checksum_algo;
    let salt = seg.as_ref().map(|s| s.0);
    let source = super::put::copy_source_identity(ctx, &sb, &sk, &src);
    let from = super::put::CopyFrom { shard: src.shard, body: src.body, remote, source };
    let copied = copy_through(ctx, from, decrypt, range.clone(), shard, true, algo, seg.map(|s| s.1)).await?;
    let md5 = part_md5(&upload, dk.as_ref(), copied.md5);
    let raw = match (algo, &copied.checksum) {
        (Some(a), Some(v)) => checksum::decode_value(a, v).map(|r| (a, r)),
        _ => None,
    };
    let summary = PartSummary { size: range.end - range.start, mtime_ms: now_unix_ms(), md5, checksum: raw, salt };
    let m = Mutation::Put {
        table: T_PARTS,
        key: part_key(b.id, &key, id, part),
        summary: summary.encode(),
        meta: Vec::new(),
        body: copied.body,
    };
    commit_part(ctx, shard, b, upload_key(b.id, &key, id), m).await?;
    let mut w = XmlWriter::new().root("CopyPartResult");
    w.elem("LastModified", &format_iso8601_ms(summary.mtime_ms)).elem("ETag", &summary.etag());
    if let (Some(a), Some(v)) = (algo, &copied.checksum) {
        w.elem(xml::checksum_element(a), v);
    }
    w.close("CopyPartResult");
    let mut resp = Response::xml(200, w.finish());
    if let Some(info) = &upload.meta.sse {
        crate::sse::push_headers(&mut resp, info);
    }
    if sel.is_some() || !src.summary.null_version {
        resp.push_header("x-amz-copy-source-version-id", src.summary.version_id());
    }
    Ok(resp)
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

/// The parts of a Complete request in ascending order; a part number
/// listed several times in a row counts once, its last entry (the upload
/// that finished last), as S3 accepts it.
fn dedup_parts(parts: Vec<xml::CompletePart>) -> S3Result<Vec<xml::CompletePart>> {
    let mut out: Vec<xml::CompletePart> = Vec::with_capacity(parts.len());
    for p in parts {
        match out.last_mut() {
            Some(last) if last.part_number == p.part_number => *last = p,
            Some(last) if last.part_number > p.part_number => return Err(S3Error::new(S3ErrorCode::InvalidPartOrder)),
            _ => out.push(p),
        }
    }
    Ok(out)
}

/// What a completion made, for its answer.
struct Completed {
    etag: String,
    summary: ObjectSummary,
    checksum: Option<(String, String)>,
    checksum_type: Option<ChecksumType>,
    sse: Option<crate::sse::SseInfo>,
}

impl Completed {
    fn of(summary: ObjectSummary, meta: &ObjectMeta) -> Self {
        Completed {
            etag: summary.etag(),
            checksum: meta.checksum.clone(),
            checksum_type: meta.checksum.as_ref().map(|_| meta.effective_checksum_type()),
            sse: meta.sse.clone(),
            summary,
        }
    }
}

/// The `x-amz-checksum-<algo>` header of CompleteMultipartUpload: the
/// checksum the client expects the object to get.
fn expected_checksum(req: &Request<'_>) -> Option<(ChecksumAlgo, String)> {
    req.head.headers.iter().find_map(|(n, v)| ChecksumAlgo::from_header_name(n).map(|a| (a, v.trim().to_string())))
}

/// Bucket settings a completion needs on the shard's core.
#[derive(Clone, Copy)]
struct Target {
    bucket: u64,
    versioning: Versioning,
    default_retention: Option<crate::meta::Retention>,
    min_part_bytes: u64,
}

pub async fn complete(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo, id: &str) -> S3Result<Response> {
    let key = req.key().to_string();
    let shard = shard_of(ctx, &b.name, &key);
    let okey = object_key(b.id, &key);
    let cond = write_cond(req)?;
    let expected = expected_checksum(req);
    let body = req.read_body_to_vec(xml::MAX_XML_BODY_BYTES).await?;
    let wanted = dedup_parts(xml::parse_complete_multipart(&body)?)?;
    if wanted.len() > MAX_PARTS {
        return Err(S3Error::with_message(S3ErrorCode::InvalidArgument, "too many parts"));
    }
    precheck(ctx, shard, &okey, cond.as_ref()).await?;
    // An SSE-C upload completes only with its key (as every part needed it).
    if let Ok(upload) = load_upload(ctx, shard, b.id, &key, id).await {
        if matches!(upload.meta.sse.as_ref().map(|i| &i.mode), Some(crate::sse::SseMode::Customer { .. })) {
            let customer = crate::sse::customer_key(&req.head.headers, crate::sse::CUSTOMER)?;
            crate::sse::open(&*ctx.shared.kms, upload.meta.sse.as_ref(), customer.as_ref())?;
        }
    }
    let _gate = b.enter_write()?;
    let target = Target {
        bucket: b.id,
        versioning: b.versioning,
        default_retention: lock::default_retention(b, now_unix_ms()),
        min_part_bytes: ctx.shared.config.min_part_bytes,
    };
    let id = id.to_string();
    let ukey = upload_key(b.id, &key, &id);
    let locks = vec![(T_UPLOADS, ukey.clone()), (T_OBJECTS, okey)];
    let ev = super::event(ctx, req, b, &key, tessera_proto::notification::EventName::CompleteMultipartUpload)?;
    let k = key.clone();
    let done = ctx
        .shards
        .txn(shard, locks, move |local| async move {
            let Some(upload) = local.shard.get(T_UPLOADS, &ukey) else {
                return repeated_complete(&local.shard, target.bucket, &k, &wanted).await;
            };
            let mut upload = UploadInfo::decode(&upload.summary).ok_or_else(|| super::internal("corrupt upload record"))?;
            let record = local.shard.load(T_UPLOADS, &ukey).await.map_err(io_error)?;
            upload.meta.acl = record
                .and_then(|r| decode_upload_acl(&r.meta))
                .ok_or_else(|| super::internal("corrupt upload record"))?;
            let have = parts_of(&local.shard, target.bucket, &k, &id)?;
            let part_keys: Vec<Vec<u8>> = have.iter().map(|p| p.1.clone()).collect();
            let (mut new, meta) = assemble(&local.shard, upload, &wanted, have, target).await?;
            if let Some(ev) = &ev {
                ev.stamp(&mut new.summary);
            }
            check_expected(expected.as_ref(), &meta)?;
            let random = versions::random8()?;
            let (mut muts, summary) =
                versions::place(&local.shard, target.bucket, &k, target.versioning, new, cond.as_ref(), random).await?;
            muts.push(Mutation::Delete { table: T_UPLOADS, key: ukey });
            muts.extend(part_keys.into_iter().map(|key| Mutation::Delete { table: T_PARTS, key }));
            if let Some(ev) = &ev {
                muts.extend(ev.mutations(&local.notify, Some(&summary)));
            }
            local.commit_in_txn(muts).await.map_err(io_error)?;
            if ev.is_some() {
                local.notify.wake.notify_all();
            }
            Ok(Completed::of(summary, &meta))
        })
        .await
        .map_err(io_error)??;
    Ok(complete_result(&b.name, &key, &done))
}

/// A Complete of an upload that is gone succeeds again when the current
/// object is what these parts made (same multipart ETag).
async fn repeated_complete(
    shard: &tessera_io::Shard,
    bucket: u64,
    key: &str,
    wanted: &[xml::CompletePart],
) -> S3Result<Completed> {
    let Some((loc, meta, _)) = versions::load(shard, bucket, key, None).await? else {
        return Err(no_such_upload());
    };
    if loc.summary.delete_marker || Some(loc.summary.etag()) != multipart_etag(wanted) {
        return Err(no_such_upload());
    }
    Ok(Completed::of(loc.summary, &meta))
}

/// The Complete request's expected object checksum must be the one computed.
fn check_expected(expected: Option<&(ChecksumAlgo, String)>, meta: &ObjectMeta) -> S3Result<()> {
    let Some((algo, value)) = expected else { return Ok(()) };
    let bad = || {
        S3Error::with_message(
            S3ErrorCode::BadDigest,
            format!("The {} you specified did not match the calculated checksum.", algo.name()),
        )
    };
    let Some((name, have)) = &meta.checksum else { return Err(bad()) };
    if name != algo.header_name() {
        return Err(bad());
    }
    // A COMPOSITE value may be given with or without its -N suffix.
    let base = have.split_once('-').map_or(have.as_str(), |(b, _)| b);
    if value != have && value != base {
        return Err(bad());
    }
    Ok(())
}

fn invalid_part(msg: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidPart, msg)
}

/// The object made of the `wanted` parts of an upload (size, ETag,
/// checksums and extents all from the one part record each part's index
/// entry points at), and its meta.
async fn assemble(
    shard: &tessera_io::Shard,
    upload: UploadInfo,
    wanted: &[xml::CompletePart],
    have: Vec<(u32, Vec<u8>, PartSummary)>,
    target: Target,
) -> S3Result<(NewVersion, ObjectMeta)> {
    let mut extents = Vec::new();
    let mut md5s = Md5::new();
    let mut size = 0u64;
    let mut part_sizes = Vec::with_capacity(wanted.len());
    let mut part_sums: Vec<Vec<u8>> = Vec::new();
    let mut segments = Vec::new();
    for (i, w) in wanted.iter().enumerate() {
        let Ok(pos) = have.binary_search_by_key(&w.part_number, |p| p.0) else {
            return Err(S3Error::new(S3ErrorCode::InvalidPart));
        };
        let pkey = &have[pos].1;
        let stored = crate::stripes_io::load(shard, T_PARTS, pkey).await.map_err(io_error)?.ok_or_else(|| S3Error::new(S3ErrorCode::InvalidPart))?;
        let ps = PartSummary::decode(&stored.summary).ok_or_else(|| super::internal("corrupt part record"))?;
        if unquote(&w.etag) != hex::encode(ps.md5) {
            return Err(S3Error::new(S3ErrorCode::InvalidPart));
        }
        if i + 1 < wanted.len() && ps.size < target.min_part_bytes {
            return Err(S3Error::new(S3ErrorCode::EntityTooSmall));
        }
        if let Some(algo) = upload.checksum_algo {
            let raw = match &ps.checksum {
                Some((a, raw)) if *a == algo => raw.clone(),
                _ => return Err(invalid_part("The part was uploaded without the upload's checksum algorithm.")),
            };
            if let Some((ga, gv)) = &w.checksum {
                if *ga != algo || checksum::decode_value(*ga, gv).as_deref() != Some(raw.as_slice()) {
                    return Err(invalid_part("The checksum given for a part does not match the part's checksum."));
                }
            }
            part_sums.push(raw);
        }
        match stored.body {
            Body::Extents(e) => extents.extend(e),
            Body::Inline(d) if d.is_empty() => {}
            Body::Inline(_) => return Err(super::internal("inline part body")),
        }
        match (&upload.meta.sse, ps.salt) {
            (Some(_), Some(salt)) => segments.push((w.part_number, salt)),
            (None, None) => {}
            _ => return Err(super::internal("part encryption does not match its upload's")),
        }
        md5s.update(ps.md5);
        size += ps.size;
        part_sizes.push(ps.size);
    }
    let mut meta = upload.meta;
    if let Some(info) = meta.sse.as_mut() {
        info.segments = segments;
    }
    if let (Some(algo), Some(ctype)) = (upload.checksum_algo, upload.checksum_type) {
        let value = object_checksum(algo, ctype, &part_sums, &part_sizes)?;
        meta.checksum = Some((algo.header_name().to_string(), value));
        meta.checksum_type = Some(ctype);
        meta.part_checksums = part_sums.iter().map(|r| checksum::encode_value(r)).collect();
    }
    meta.part_sizes = part_sizes;
    let mut summary = ObjectSummary::new(size, now_unix_ms(), md5s.finalize().into(), wanted.len() as u16, VersionId::from_parts(0, [0; 8]), true);
    summary.retention = upload.retention.or(target.default_retention);
    summary.legal_hold = upload.legal_hold;
    let new = NewVersion { summary, meta: meta.encode(), body: Body::Extents(extents) };
    Ok((new, meta))
}

/// The object checksum of a multipart upload from its parts' checksums:
/// COMPOSITE is the checksum of the concatenated part digests, `-N`;
/// FULL_OBJECT is the CRC of the whole object, combined from the parts'.
fn object_checksum(algo: ChecksumAlgo, ctype: ChecksumType, sums: &[Vec<u8>], sizes: &[u64]) -> S3Result<String> {
    match ctype {
        ChecksumType::Composite => {
            let mut c = Checksummer::new(algo);
            for s in sums {
                c.update(s);
            }
            Ok(format!("{}-{}", c.finish_base64(), sums.len()))
        }
        ChecksumType::FullObject => {
            let mut acc: Option<Vec<u8>> = None;
            for (s, len) in sums.iter().zip(sizes) {
                acc = Some(match acc {
                    None => s.clone(),
                    Some(a) => checksum::combine_crc(algo, &a, s, *len)
                        .ok_or_else(|| super::internal("checksum cannot be combined"))?,
                });
            }
            Ok(checksum::encode_value(&acc.unwrap_or_default()))
        }
    }
}

fn complete_result(bucket: &str, key: &str, done: &Completed) -> Response {
    let mut w = XmlWriter::new().root("CompleteMultipartUploadResult");
    w.elem("Location", &format!("/{bucket}/{key}")).elem("Bucket", bucket).elem("Key", key).elem("ETag", &done.etag);
    if let Some((name, value)) = &done.checksum {
        if let Some(a) = ChecksumAlgo::from_header_name(name) {
            w.elem(xml::checksum_element(a), value);
        }
    }
    if let Some(t) = done.checksum_type {
        w.elem("ChecksumType", t.as_str());
    }
    w.close("CompleteMultipartUploadResult");
    let mut resp = Response::xml(200, w.finish());
    push_written_version(&mut resp, &done.summary);
    if let Some(info) = &done.sse {
        crate::sse::push_headers(&mut resp, info);
    }
    resp
}

pub async fn abort(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo, id: &str) -> S3Result<Response> {
    let key = req.key().to_string();
    let shard = shard_of(ctx, &b.name, &key);
    abort_upload(ctx, shard, b.id, &key, id).await?;
    Ok(Response::new(204))
}

/// Removes upload `id` of `key` and its parts (`NoSuchUpload` when gone):
/// AbortMultipartUpload, and the lifecycle worker's
/// AbortIncompleteMultipartUpload.
pub(crate) async fn abort_upload(ctx: &Ctx, shard: u32, bid: u64, key: &str, id: &str) -> S3Result<()> {
    let (key, id) = (key.to_string(), id.to_string());
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
        .map_err(io_error)?
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
    let owner_display = display_of(ctx, b, &upload.owner_id);
    let mut w = XmlWriter::new().root("ListPartsResult");
    w.elem("Bucket", &b.name).elem("Key", &key).elem("UploadId", id);
    w.open("Initiator").elem("ID", &upload.owner_id).elem("DisplayName", &owner_display).close("Initiator");
    w.open("Owner").elem("ID", &upload.owner_id).elem("DisplayName", &owner_display).close("Owner");
    w.elem("StorageClass", "STANDARD").elem("PartNumberMarker", &marker.to_string());
    if let (Some(a), Some(t)) = (upload.checksum_algo, upload.checksum_type) {
        w.elem("ChecksumAlgorithm", a.name()).elem("ChecksumType", t.as_str());
    }
    if let Some(last) = shown.last() {
        w.elem("NextPartNumberMarker", &last.0.to_string());
    }
    w.elem("MaxParts", &max_parts.to_string()).elem("IsTruncated", if truncated { "true" } else { "false" });
    for (n, _, s) in shown {
        w.open("Part")
            .elem("PartNumber", &n.to_string())
            .elem("LastModified", &format_iso8601_ms(s.mtime_ms))
            .elem("ETag", &s.etag())
            .elem("Size", &s.size.to_string());
        if let Some((a, raw)) = &s.checksum {
            w.elem(xml::checksum_element(*a), &checksum::encode_value(raw));
        }
        w.close("Part");
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
    let delimiter = q.get("delimiter").unwrap_or("").to_string();
    let mut range = MergedRange::new(ctx, T_UPLOADS, full, after, max + 1);
    let mut uploads = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut last_prefix = false;
    while uploads.len() + prefixes.len() < max {
        let Some((k, e)) = range.next().await? else { break };
        let rest = &k[bp.len()..];
        let Some((key, id)) = crate::meta::split_upload_key(rest) else { continue };
        let Some(info) = UploadInfo::decode(&e.summary) else { continue };
        let key = String::from_utf8_lossy(key).into_owned();
        if !delimiter.is_empty() {
            if let Some(i) = key.get(prefix.len()..).and_then(|r| r.find(&delimiter)) {
                let cp = key[..prefix.len() + i + delimiter.len()].to_string();
                // Keys are UTF-8, so no key byte is 0xFF: past every upload under cp.
                let mut bound = object_key(b.id, &cp);
                bound.push(0xFF);
                range.skip_through(&bound);
                if key_marker.is_empty() || cp.as_str() > key_marker.as_str() {
                    prefixes.push(cp);
                    last_prefix = true;
                }
                continue;
            }
        }
        let id = String::from_utf8_lossy(id).into_owned();
        uploads.push((key, id, info));
        last_prefix = false;
    }
    let truncated = max > 0 && range.peek().await?.is_some();
    let mut w = XmlWriter::new().root("ListMultipartUploadsResult");
    w.elem("Bucket", &b.name).elem("KeyMarker", &key_marker).elem("UploadIdMarker", &id_marker);
    if truncated {
        match (last_prefix, prefixes.last(), uploads.last()) {
            (true, Some(p), _) => {
                w.elem("NextKeyMarker", p);
            }
            (_, _, Some((k, id, _))) => {
                w.elem("NextKeyMarker", k).elem("NextUploadIdMarker", id);
            }
            _ => {}
        }
    }
    w.elem("Prefix", &prefix);
    if !delimiter.is_empty() {
        w.elem("Delimiter", &delimiter);
    }
    w.elem("MaxUploads", &max.to_string());
    w.elem("IsTruncated", if truncated { "true" } else { "false" });
    for (key, id, info) in &uploads {
        let display = display_of(ctx, b, &info.owner_id);
        let display = display.as_str();
        w.open("Upload").elem("Key", key).elem("UploadId", id);
        w.open("Initiator").elem("ID", &info.owner_id).elem("DisplayName", display).close("Initiator");
        w.open("Owner").elem("ID", &info.owner_id).elem("DisplayName", display).close("Owner");
        w.elem("StorageClass", "STANDARD").elem("Initiated", &format_iso8601_ms(info.initiated_ms)).close("Upload");
    }
    for p in &prefixes {
        w.open("CommonPrefixes").elem("Prefix", p).close("CommonPrefixes");
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
