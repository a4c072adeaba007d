//! GetObject and HeadObject: conditionals, a single Range, response-*
//! overrides, and the body streamed from its shard.

use std::ops::Range;
use std::rc::Rc;

use tessera_proto::http::Method;
use tessera_proto::time::{format_http_date, parse_http_date};
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use tessera_proto::time::format_iso8601_ms;

use super::{error_with_headers, io_error, push_read_version, shard_of, unquote, versions};
use crate::buckets::BucketInfo;
use crate::request::Request;
use crate::meta::{object_key, ObjectMeta, ObjectSummary, VersionSel, T_OBJECTS};
use crate::response::{ObjectStream, StreamSource, RespBody, Response};
use crate::server::Ctx;

fn etag_matches(list: &str, etag: &str) -> bool {
    let etag = unquote(etag);
    list.split(',').any(|t| {
        let t = t.trim();
        t == "*" || unquote(t.strip_prefix("W/").unwrap_or(t)) == etag
    })
}

enum Cond {
    Proceed,
    NotModified,
    Failed,
}

/// RFC 7232 §6 order, as S3 applies it: If-Match, else If-Unmodified-Since;
/// then If-None-Match, else If-Modified-Since. Dates compare in whole seconds.
fn evaluate(h: impl Fn(&str) -> Option<String>, s: &ObjectSummary, names: [&str; 4]) -> Cond {
    // Formatted only for an If-Match or If-None-Match (most GETs have neither).
    let etag = std::cell::OnceCell::new();
    let etag = || etag.get_or_init(|| s.etag()).as_str();
    let mtime = s.mtime_ms.div_euclid(1000);
    let [if_match, if_unmod, if_none, if_mod] = names;
    if let Some(v) = h(if_match) {
        if !etag_matches(&v, etag()) {
            return Cond::Failed;
        }
    } else if let Some(t) = h(if_unmod).and_then(|v| parse_http_date(&v)) {
        if mtime > t {
            return Cond::Failed;
        }
    }
    if let Some(v) = h(if_none) {
        if etag_matches(&v, etag()) {
            return Cond::NotModified;
        }
    } else if let Some(t) = h(if_mod).and_then(|v| parse_http_date(&v)) {
        if mtime <= t {
            return Cond::NotModified;
        }
    }
    Cond::Proceed
}

/// CopyObject's `x-amz-copy-source-if-*` conditions (all failures are 412).
pub fn check_copy_conditions(req: &Request<'_>, s: &ObjectSummary) -> S3Result<()> {
    let names = [
        "x-amz-copy-source-if-match",
        "x-amz-copy-source-if-unmodified-since",
        "x-amz-copy-source-if-none-match",
        "x-amz-copy-source-if-modified-since",
    ];
    match evaluate(|n| req.header(n).map(str::to_string), s, names) {
        Cond::Proceed => Ok(()),
        _ => Err(S3Error::new(S3ErrorCode::PreconditionFailed)),
    }
}

/// Parses a single `bytes=` range against `size`. `Ok(None)`: no usable
/// range header (absent, multi-range or malformed: S3 then sends the whole
/// object). `Err`: syntactically valid but unsatisfiable.
pub fn parse_range(v: &str, size: u64) -> Result<Option<Range<u64>>, ()> {
    let Some(spec) = v.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return Ok(None) };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.len() <= 20 && s.bytes().all(|c| c.is_ascii_digit())).then(|| s.parse().ok()).flatten()
    };
    if a.is_empty() {
        let Some(n) = num(b) else { return Ok(None) };
        if n == 0 || size == 0 {
            return Err(());
        }
        return Ok(Some(size.saturating_sub(n)..size));
    }
    let Some(start) = num(a) else { return Ok(None) };
    let end = if b.is_empty() {
        size
    } else {
        match num(b) {
            Some(e) if e >= start => e.saturating_add(1).min(size),
            _ => return Ok(None),
        }
    };
    if start >= size {
        return Err(());
    }
    Ok(Some(start..end))
}

fn object_headers(resp: &mut Response, b: &BucketInfo, s: &ObjectSummary, m: &ObjectMeta) {
    resp.push_header("ETag", s.etag());
    push_read_version(resp, b, s);
    if let Some(r) = &s.retention {
        resp.push_header("x-amz-object-lock-mode", r.mode.as_str());
        resp.push_header("x-amz-object-lock-retain-until-date", format_iso8601_ms(r.until_ms));
    }
    if s.legal_hold {
        resp.push_header("x-amz-object-lock-legal-hold", "ON");
    }
    if let Some(info) = &m.sse {
        crate::sse::push_headers(resp, info);
    }
    crate::tier::push_headers(resp, m);
    if !m.tags.is_empty() {
        resp.push_header("x-amz-tagging-count", m.tags.len().to_string());
    }
    resp.push_header("Last-Modified", format_http_date(s.mtime_ms.div_euclid(1000)));
    for (name, v) in [
        ("Content-Encoding", &m.content_encoding),
        ("Content-Disposition", &m.content_disposition),
        ("Content-Language", &m.content_language),
        ("Cache-Control", &m.cache_control),
        ("Expires", &m.expires),
    ] {
        if let Some(v) = v {
            resp.push_header(name, v.clone());
        }
    }
    for (k, v) in &m.user {
        // Header values are ASCII: non-ASCII ones go back RFC 2047 encoded, as S3 does.
        resp.push_header(format!("x-amz-meta-{k}"), tessera_proto::rfc2047::encode(v));
    }
}

/// An object read from its shard: where it lives, its body description,
/// its summary and its metadata.
pub struct LoadedObject {
    pub shard: u32,
    pub body: tessera_io::Body,
    pub summary: ObjectSummary,
    pub meta: ObjectMeta,
}

impl LoadedObject {
    /// Operations on a version refuse delete markers: 405 when the marker
    /// was named by its version id, 404 when it is the current version.
    pub fn refuse_delete_marker(&self, sel: Option<VersionSel>) -> S3Result<()> {
        if !self.summary.delete_marker {
            return Ok(());
        }
        Err(match sel {
            Some(_) => S3Error::new(S3ErrorCode::MethodNotAllowed),
            None => S3Error::new(S3ErrorCode::NoSuchKey),
        })
    }

    /// The error answer for a delete marker, with the headers S3 sends:
    /// `x-amz-delete-marker`, its version id and (for 405) Last-Modified.
    pub fn delete_marker_response(&self, req: &Request<'_>, sel: Option<VersionSel>) -> Response {
        let mut headers = vec![
            ("x-amz-delete-marker", "true".to_string()),
            ("x-amz-version-id", self.summary.version_id()),
        ];
        let e = match sel {
            Some(_) => {
                headers.push(("Last-Modified", format_http_date(self.summary.mtime_ms.div_euclid(1000))));
                S3Error::new(S3ErrorCode::MethodNotAllowed)
            }
            None => S3Error::new(S3ErrorCode::NoSuchKey),
        };
        error_with_headers(req, e, headers)
    }
}

/// Reads version `sel` (the current one when `None`) of `key` in bucket
/// `b`: `NoSuchKey` / `NoSuchVersion` when there is none. A delete marker
/// is returned as found (callers decide what it means for them).
pub async fn read_version(ctx: &Ctx, b: &BucketInfo, key: &str, sel: Option<VersionSel>) -> S3Result<LoadedObject> {
    read_version_with(ctx, b, key, sel, None).await.map(|(o, _)| o)
}

/// `read_version` for GetObject and HeadObject: the current version comes
/// through the owning core's hot-object cache (`Shards::load_for_read`;
/// `fill`: a whole-object GET, worth reading a small extent body whole).
/// The object is the same as `read_version`'s, but for a body the cache
/// holds: that comes as the shared bytes beside it (uncopied), and the
/// object's `body` is then empty.
async fn read_version_for_get(
    ctx: &Ctx,
    b: &BucketInfo,
    key: &str,
    sel: Option<VersionSel>,
    fill: bool,
) -> S3Result<(LoadedObject, Option<bytes::Bytes>)> {
    read_version_with(ctx, b, key, sel, Some(fill)).await
}

async fn read_version_with(
    ctx: &Ctx,
    b: &BucketInfo,
    key: &str,
    sel: Option<VersionSel>,
    cached: Option<bool>,
) -> S3Result<(LoadedObject, Option<bytes::Bytes>)> {
    let shard = shard_of(ctx, &b.name, key);
    let Some(sel) = sel else {
        let k = object_key(b.id, key);
        let loaded = match cached {
            Some(fill) => ctx.shards.load_for_read(shard, T_OBJECTS, k, fill).await,
            None => ctx.shards.load(shard, T_OBJECTS, k).await.map(|s| s.map(|stored| crate::shards::ReadStored { stored, cached: None })),
        };
        let crate::shards::ReadStored { stored, cached } = loaded
            .map_err(io_error)?
            .ok_or_else(|| S3Error::new(S3ErrorCode::NoSuchKey))?;
        let summary = ObjectSummary::decode(&stored.summary).ok_or_else(|| super::internal("corrupt summary"))?;
        let meta = ObjectMeta::decode(&stored.meta).ok_or_else(|| super::internal("corrupt meta"))?;
        return Ok((LoadedObject { shard, body: stored.body, summary, meta }, cached));
    };
    let (bid, k) = (b.id, key.to_string());
    let found = ctx
        .shards
        .txn(shard, Vec::new(), move |local| async move { versions::load(&local.shard, bid, &k, Some(sel)).await })
        .await
        .map_err(io_error)??;
    let (loc, meta, body) = found.ok_or_else(|| versions::not_found(Some(sel)))?;
    Ok((LoadedObject { shard, body, summary: loc.summary, meta }, None))
}

/// `NoSuchKey` (with `x-amz-delete-marker: false`, as S3 answers a HEAD of
/// a deleted key) for a key that has no current version.
fn no_such_key(req: &Request<'_>, sel: Option<VersionSel>) -> Response {
    match sel {
        None => error_with_headers(req, S3Error::new(S3ErrorCode::NoSuchKey), vec![("x-amz-delete-marker", "false".into())]),
        Some(_) => error_with_headers(req, S3Error::new(S3ErrorCode::NoSuchVersion), Vec::new()),
    }
}

pub async fn get_object(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    let sel = versions::requested(&req.routed.query)?;
    let whole = req.head.method == Method::Get
        && req.header("range").is_none()
        && req.routed.query.get("partNumber").is_none();
    let (obj, cached) = match read_version_for_get(ctx, b, req.key(), sel, whole).await {
        Ok(o) => o,
        Err(e) if matches!(e.code, S3ErrorCode::NoSuchKey | S3ErrorCode::NoSuchVersion) => {
            crate::authz::check_missing(req, b)?;
            return Ok(no_such_key(req, sel));
        }
        Err(e) => return Err(e),
    };
    if obj.summary.delete_marker {
        crate::authz::check_missing(req, b)?;
        return Ok(obj.delete_marker_response(req, sel));
    }
    crate::authz::check_object(req, b, crate::authz::ObjectFacts { acl: obj.meta.acl.as_ref(), tags: &obj.meta.tags })?;
    crate::sse::refuse_write_headers_on_read(&req.head.headers)?;
    // A part number the object does not have is `InvalidPart` whatever the
    // key headers say (S3 checks it before asking for an SSE-C key).
    let (part_range, parts_count) = part_range(req, &obj.meta)?;
    let customer = crate::sse::customer_key(&req.head.headers, crate::sse::CUSTOMER)?;
    let dk = crate::sse::open(&*ctx.shared.kms, obj.meta.sse.as_ref(), customer.as_ref())?;
    let LoadedObject { shard, body, summary, meta } = obj;
    let names = ["if-match", "if-unmodified-since", "if-none-match", "if-modified-since"];
    match evaluate(|n| req.header(n).map(str::to_string), &summary, names) {
        Cond::Proceed => {}
        Cond::Failed => return Err(S3Error::new(S3ErrorCode::PreconditionFailed)),
        Cond::NotModified => {
            let mut r = Response::new(304);
            r.push_header("ETag", summary.etag());
            push_read_version(&mut r, b, &summary);
            r.push_header("Last-Modified", format_http_date(summary.mtime_ms.div_euclid(1000)));
            return Ok(r);
        }
    }
    let size = summary.size;
    let range = match req.header("range").map(|v| parse_range(v, size)) {
        _ if part_range.is_some() => part_range,
        None | Some(Ok(None)) => None,
        Some(Ok(Some(r))) => Some(r),
        Some(Err(())) => {
            let mut e = S3Error::new(S3ErrorCode::InvalidRange);
            e.message = format!("The requested range is not satisfiable (object size {size})");
            return Err(e);
        }
    };
    let mut resp = Response::new(if range.is_some() { 206 } else { 200 });
    object_headers(&mut resp, b, &summary, &meta);
    if sel.is_none() {
        super::lifecycle::push_expiration(&mut resp, b, req.key(), &meta.tags, size, summary.mtime_ms);
    }
    if sel.is_some() && !resp.headers.iter().any(|(n, _)| n == "x-amz-version-id") {
        // A version asked for by id is named in the answer, `null` too.
        resp.push_header("x-amz-version-id", summary.version_id());
    }
    resp.push_header("Accept-Ranges", "bytes");
    if let Some(r) = range.as_ref().filter(|r| !r.is_empty()) {
        resp.push_header("Content-Range", format!("bytes {}-{}/{size}", r.start, r.end - 1));
    }
    if let Some(n) = parts_count {
        resp.push_header("x-amz-mp-parts-count", n.to_string());
    }
    if req.header("x-amz-checksum-mode").is_some_and(|v| v.eq_ignore_ascii_case("ENABLED")) {
        push_checksum(&mut resp, &meta, range.is_none(), parts_count.and(req.routed.query.get("partNumber")));
    }
    let content_type = meta.content_type.clone().unwrap_or_else(|| "binary/octet-stream".into());
    let overrides = [
        ("response-content-type", "Content-Type"),
        ("response-content-language", "Content-Language"),
        ("response-expires", "Expires"),
        ("response-cache-control", "Cache-Control"),
        ("response-content-disposition", "Content-Disposition"),
        ("response-content-encoding", "Content-Encoding"),
    ];
    let mut ct = Some(content_type);
    for (param, header) in overrides {
        if let Some(v) = req.routed.query.get(param) {
            // Decoded query values may hold CR/LF: never let them into a header.
            if v.chars().any(|c| c.is_control()) {
                return Err(S3Error::with_message(S3ErrorCode::InvalidArgument, format!("Invalid value for {param}")));
            }
            resp.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(header));
            if header == "Content-Type" {
                ct = None;
            }
            resp.push_header(header, v.to_string());
        }
    }
    if let Some(ct) = ct {
        resp.push_header("Content-Type", ct);
    }
    let range = range.unwrap_or(0..size);
    if req.head.method == Method::Head || range.is_empty() {
        // HEAD still reports the length of what GET would send.
        resp.body = RespBody::Object(ObjectStream {
            ctx: ctx.clone(),
            shard,
            body: tessera_io::Body::Inline(Vec::new()),
            shared: None,
            range,
            source: None,
            sse: None,
        });
        if req.head.method != Method::Head {
            resp.body = RespBody::Empty;
        }
        return Ok(resp);
    }
    let sse = crate::sse::stream::decrypt_of(&meta, summary.size, dk)?.map(Rc::new);
    if crate::tier::is_stub(&meta) {
        // Transitioned: the range is read from the tier a piece at a time,
        // the first before the answer starts (a tier that is down is a
        // clean 503); a sealed copy is opened here.
        let t = meta.tier.clone().ok_or_else(|| super::internal("tier info vanished"))?;
        let stream = crate::tier::read::TierStream::open(ctx, t, range, size, sse).await?;
        resp.body = RespBody::Tier(Box::new(stream));
        return Ok(resp);
    }
    let source = matches!(body, tessera_io::Body::Extents(_)).then(|| StreamSource {
        bucket: std::sync::Arc::new(b.clone()),
        key: req.key().to_string(),
        version: summary.version,
        null_version: summary.null_version,
        size: summary.size,
        md5: summary.md5,
    });
    // A cached body goes out as the cache holds it; a sealed one is
    // opened from a copy (the decrypting path reads a `Body`).
    let (body, shared) = match cached {
        Some(d) if sse.is_some() => (tessera_io::Body::Inline(d.to_vec()), None),
        shared => (body, shared),
    };
    resp.body = RespBody::Object(ObjectStream { ctx: ctx.clone(), shard, body, shared, range, source, sse });
    Ok(resp)
}

/// The object's checksum (whole object) or part N's (`partNumber=N` of a
/// multipart object), with its type; nothing for other ranges.
fn push_checksum(resp: &mut Response, meta: &ObjectMeta, whole: bool, part: Option<&str>) {
    let Some((name, value)) = &meta.checksum else { return };
    let value = match part.and_then(|p| p.parse::<usize>().ok()) {
        Some(n) => match meta.part_checksums.get(n.wrapping_sub(1)) {
            Some(v) => v,
            None => return,
        },
        None if whole => value,
        None => return,
    };
    resp.push_header(name.clone(), value.clone());
    resp.push_header("x-amz-checksum-type", meta.effective_checksum_type().as_str());
}

/// `partNumber=N`: the byte range of part N and the part count of a
/// multipart object; part 1 of a single-part object is the whole object.
fn part_range(req: &Request<'_>, meta: &ObjectMeta) -> S3Result<(Option<Range<u64>>, Option<usize>)> {
    let Some(v) = req.routed.query.get("partNumber") else { return Ok((None, None)) };
    let n = v.parse::<usize>().ok().filter(|n| (1..=10_000).contains(n)).ok_or_else(|| {
        S3Error::with_message(S3ErrorCode::InvalidArgument, "Part number must be an integer between 1 and 10000, inclusive")
    })?;
    let invalid = || S3Error::with_message(S3ErrorCode::InvalidPart, "The requested partnumber is not satisfiable");
    if meta.part_sizes.is_empty() {
        return if n == 1 { Ok((None, None)) } else { Err(invalid()) };
    }
    let size = *meta.part_sizes.get(n - 1).ok_or_else(invalid)?;
    let start: u64 = meta.part_sizes[..n - 1].iter().sum();
    Ok((Some(start..start + size), Some(meta.part_sizes.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let cases: &[(&str, u64, Result<Option<Range<u64>>, ()>)] = &[
            ("bytes=0-9", 100, Ok(Some(0..10))),
            ("bytes=90-", 100, Ok(Some(90..100))),
            ("bytes=-10", 100, Ok(Some(90..100))),
            ("bytes=-200", 100, Ok(Some(0..100))),
            ("bytes=50-1000", 100, Ok(Some(50..100))),
            ("bytes=100-", 100, Err(())),
            ("bytes=100-200", 100, Err(())),
            ("bytes=-0", 100, Err(())),
            ("bytes=0-0", 0, Err(())),
            ("bytes=-5", 0, Err(())),
            ("bytes=0-", 0, Err(())),
            ("bytes=5-2", 100, Ok(None)),
            ("bytes=0-1,5-6", 100, Ok(None)),
            ("items=0-1", 100, Ok(None)),
            ("bytes=a-b", 100, Ok(None)),
        ];
        for (v, size, want) in cases {
            assert_eq!(&parse_range(v, *size), want, "{v}");
        }
    }

    #[test]
    fn etag_lists() {
        assert!(etag_matches("\"abc\"", "\"abc\""));
        assert!(etag_matches("x, \"abc\"", "\"abc\""));
        assert!(etag_matches("*", "\"abc\""));
        assert!(etag_matches("abc", "\"abc\""));
        assert!(!etag_matches("\"abd\"", "\"abc\""));
    }
}

