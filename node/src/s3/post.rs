//! POST Object: browser form uploads (`multipart/form-data`).
//!
//! The fields before the file part are read (bounded), the form's
//! signature and every policy condition are checked, then the file part
//! streams into the shard through the same path PutObject uses (never
//! buffered whole); `content-length-range` is enforced while it streams.
//! Nothing is committed unless every check passed.

use std::ops::Range;
use std::rc::Rc;

use md5::{Digest, Md5};
use tessera_proto::checksum::{BodySums, ChecksumAlgo};
use tessera_proto::form::{self, FormEvent, FormParser};
use tessera_proto::post_policy::{self, PostPolicy};
use tessera_proto::router::MAX_KEY_BYTES;
use tessera_proto::time::now_unix_ms;
use tessera_proto::xml::{self, XmlWriter};
use tessera_proto::{Headers, S3Error, S3ErrorCode, S3Result};

use super::put::{meta_from_headers, store_from, BodySource};
use super::versions::NewVersion;
use super::{push_written_version, shard_of, tagging, write_version};
use crate::authz::{principal, Authz};
use crate::buckets::BucketInfo;
use crate::request::Request;
use crate::meta::{ObjectSummary, VersionId};
use crate::response::Response;
use crate::server::Ctx;

/// Most bytes of form fields before the file part (AWS's limit).
pub const MAX_POST_FIELDS_BYTES: usize = 20 * 1024;
/// Most fields in one form.
pub const MAX_POST_FIELDS: usize = 256;
/// Bytes read from the connection per step while parsing the form.
const FORM_READ_BYTES: usize = 64 * 1024;
/// Most bytes read after the file part (ignored fields, epilogue) before
/// answering; past it the connection is closed instead of drained.
const MAX_POST_TAIL_BYTES: usize = 64 * 1024;

fn malformed(e: form::FormError) -> S3Error {
    S3Error::with_message(S3ErrorCode::MalformedPOSTRequest, e.to_string())
}

/// The form being parsed: the parser and the bytes received but not consumed.
struct FormReader {
    parser: FormParser,
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl FormReader {
    async fn fill(&mut self, req: &mut Request<'_>) -> S3Result<()> {
        self.buf.drain(..self.pos);
        self.pos = 0;
        let len = self.buf.len();
        self.buf.resize(len + FORM_READ_BYTES, 0);
        let n = match req.read_body(&mut self.buf[len..]).await {
            Ok(n) => n,
            Err(e) => {
                self.buf.truncate(len);
                return Err(e);
            }
        };
        self.buf.truncate(len + n);
        if n == 0 {
            self.eof = true;
        }
        Ok(())
    }

    /// The next event; a `Data` range indexes `self.buf` until the next call.
    async fn next(&mut self, req: &mut Request<'_>) -> S3Result<FormEvent> {
        loop {
            let (n, ev) = self.parser.feed(&self.buf[self.pos..], self.eof).map_err(malformed)?;
            let base = self.pos;
            self.pos += n;
            match ev {
                Some(FormEvent::Data(r)) => return Ok(FormEvent::Data(base + r.start..base + r.end)),
                Some(e) => return Ok(e),
                None if n > 0 => {}
                None if self.eof => return Err(malformed(form::FormError::Truncated)),
                None => self.fill(req).await?,
            }
        }
    }
}

/// The file part as a body source: its bytes, its MD5, and the policy's
/// size limit enforced as they arrive.
struct FileSource<'f, 'r, 'a> {
    form: &'f mut FormReader,
    req: &'r mut Request<'a>,
    pending: Range<usize>,
    done: bool,
    md5: Md5,
    size: u64,
    max: u64,
}

impl BodySource for FileSource<'_, '_, '_> {
    fn announced_len(&self) -> Option<u64> {
        None
    }
    fn declared_algo(&self) -> Option<ChecksumAlgo> {
        None
    }
    async fn read(&mut self, dst: &mut [u8]) -> S3Result<usize> {
        while self.pending.is_empty() && !self.done {
            match self.form.next(self.req).await? {
                FormEvent::Data(r) => self.pending = r,
                FormEvent::PartEnd => self.done = true,
                _ => return Err(malformed(form::FormError::Malformed("file part not closed"))),
            }
        }
        let n = dst.len().min(self.pending.len());
        let src = &self.form.buf[self.pending.start..self.pending.start + n];
        dst[..n].copy_from_slice(src);
        self.md5.update(src);
        self.pending.start += n;
        self.size += n as u64;
        if self.size > self.max {
            return Err(too_large(self.max));
        }
        Ok(n)
    }
    fn sums(&self) -> S3Result<BodySums> {
        Ok(BodySums { md5: self.md5.clone().finalize().into(), checksum: None })
    }
}

fn too_large(max: u64) -> S3Error {
    S3Error::with_message(S3ErrorCode::EntityTooLarge, "Your proposed upload exceeds the maximum allowed size")
        .with_detail("MaxSizeAllowed", max.to_string())
}

/// The fields before the file part (names lowercased, first value kept)
/// and the file part's headers.
async fn read_fields(form: &mut FormReader, req: &mut Request<'_>) -> S3Result<(Vec<(String, String)>, form::PartHeaders)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut total = 0usize;
    let mut current: Option<(String, Vec<u8>)> = None;
    loop {
        match form.next(req).await? {
            FormEvent::PartStart(h) if h.name.eq_ignore_ascii_case("file") => return Ok((fields, h)),
            FormEvent::PartStart(h) => {
                if fields.len() >= MAX_POST_FIELDS {
                    return Err(S3Error::new(S3ErrorCode::MaxPostPreDataLengthExceeded));
                }
                total += h.name.len();
                current = Some((h.name.to_ascii_lowercase(), Vec::new()));
            }
            FormEvent::Data(r) => {
                total += r.len();
                if total > MAX_POST_FIELDS_BYTES {
                    return Err(S3Error::new(S3ErrorCode::MaxPostPreDataLengthExceeded));
                }
                if let Some((_, v)) = current.as_mut() {
                    v.extend_from_slice(&form.buf[r]);
                }
            }
            FormEvent::PartEnd => {
                if let Some((name, value)) = current.take() {
                    let value = String::from_utf8(value).map_err(|_| {
                        S3Error::with_message(S3ErrorCode::InvalidArgument, format!("The form field {name} is not UTF-8"))
                    })?;
                    if !fields.iter().any(|(n, _)| *n == name) {
                        fields.push((name, value));
                    }
                }
            }
            FormEvent::End => return Err(S3Error::new(S3ErrorCode::IncorrectNumberOfFilesInPostRequest)),
        }
    }
}

/// What the redirect and Location URLs encode: all but unreserved characters.
const URL_SET: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Form fields that become object headers.
const HEADER_FIELDS: &[&str] = &[
    "content-type",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-context",
    "x-amz-server-side-encryption-bucket-key-enabled",
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-server-side-encryption-customer-key",
    "x-amz-server-side-encryption-customer-key-md5",
];

/// POST Object on bucket `b` (it exists). The requester is the form's
/// signer (or the request's own, for a signed or anonymous POST), and is
/// authorized for `s3:PutObject` on the form's key like any writer.
pub async fn post_object(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    let ct = req.header("content-type").unwrap_or_default();
    let boundary = form::boundary(ct).map_err(|_| {
        S3Error::with_message(S3ErrorCode::MalformedPOSTRequest, "POST requires a multipart/form-data body")
    })?;
    let mut form = FormReader { parser: FormParser::new(&boundary), buf: Vec::new(), pos: 0, eof: false };
    let (fields, file) = read_fields(&mut form, req).await?;
    let field = |n: &str| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());

    // Who: the form's own signature, else the request's (a signed POST).
    let shared = &ctx.shared;
    let now = tessera_proto::time::now_unix_secs();
    let iam = shared.iam.snapshot();
    let session = match field("x-amz-security-token") {
        Some(t) => Some(principal::open_session(shared, &t, now)?),
        None => None,
    };
    let secret_for = |ak: &str| principal::secret_for(shared, &iam, session.as_ref(), ak);
    let auth = post_policy::authenticate(&field, &shared.config.region, &secret_for)?;
    if let Some(a) = &auth {
        let p = principal::principal_for(shared, iam.clone(), session, &a.access_key)?;
        req.user = p.account.clone();
        req.authz = Authz::new(p, req.authz.peer, now);
    }
    let bucket_name = b.name.clone();

    let key_field = field("key").ok_or_else(|| {
        S3Error::with_message(S3ErrorCode::InvalidArgument, "Bucket POST must contain a field named 'key'.  If it is specified, please check the order of the fields.")
    })?;
    let key = key_field.replace("${filename}", file.filename.as_deref().unwrap_or(""));
    if key.is_empty() {
        return Err(S3Error::with_message(S3ErrorCode::InvalidArgument, "User key must have a length greater than 0."));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(S3Error::new(S3ErrorCode::KeyTooLongError));
    }
    // In a cluster the key's owner must store it. `forward_post::post_owner`
    // forwards a form whose key it finds ahead; one it could not read
    // ahead (a chunked body, a header-signed POST with Expect, a long
    // prefix) gets here.
    // In service for its partition from before its ownership is checked
    // (`handover::Busy`), as `forward::decide` counts other requests.
    let _busy = crate::handover::Busy::for_key(ctx, &bucket_name, &key);
    if !crate::forward::owned_here(ctx, &bucket_name, &key) {
        return Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "In a cluster, this browser upload could not be forwarded to the node that owns its key (a chunked body, or a header-signed request expecting 100-continue); send it with a Content-Length.",
        ));
    }
    // The check `forward::decide` makes of every other object request
    // (it cannot place a form before its key is read): under the lease,
    // and ready to act for the key's lane owner (`takeover`).
    if let Some(node) = &ctx.shared.cluster {
        let owners = node.owners.load_full();
        let partition = crate::layout::partition_of(&bucket_name, &key);
        let lane_owner = owners.as_ref().and_then(|o| o.layout_owner_of(partition)).map(|o| o.id.clone());
        if let (Some(o), Some(lane_owner)) = (&owners, lane_owner) {
            if !crate::takeover::ready(node, o, &lane_owner) {
                return Err(S3Error::with_message(
                    S3ErrorCode::ServiceUnavailable,
                    "This node cannot confirm it still serves this key (no configuration lease, or it is taking over a node's keys); please retry.",
                ));
            }
        }
    }
    crate::handover::ensure(ctx, b, &key).await?;

    // Every condition, before anything is stored.
    let mut max_size = super::MAX_OBJECT_BYTES;
    let mut min_size = 0;
    if auth.is_some() {
        let policy_text = field("policy").unwrap_or_default();
        let policy = PostPolicy::parse(&policy_text)?;
        // The bucket is the one posted to and the key the final one: form
        // fields of those names never stand in for them.
        let mut checked: Vec<(String, String)> =
            fields.iter().filter(|(n, _)| n != "key" && n != "bucket").cloned().collect();
        checked.push(("key".to_string(), key.clone()));
        checked.push(("bucket".to_string(), bucket_name.clone()));
        policy.check(&checked, now_unix_ms())?;
        if let Some((min, max)) = policy.length_range() {
            min_size = min;
            max_size = max.min(max_size);
        }
    }
    let mut headers = Headers::new();
    for (n, v) in &fields {
        if HEADER_FIELDS.contains(&n.as_str()) || n.starts_with("x-amz-meta-") {
            headers.push(n, v);
        }
    }
    // The form's `acl` and grant fields say what the headers of a PUT say.
    for (n, v) in &fields {
        if n == "acl" {
            headers.push("x-amz-acl", v.trim());
        } else if n.starts_with("x-amz-grant-") {
            headers.push(n, v);
        }
    }
    crate::authz::authorize_post(req, b, &key, &headers)?;
    let mut meta = meta_from_headers(&headers)?;
    meta.acl = super::acl::for_new_object_with(ctx, req, b, &headers)?;
    if let Some(t) = field("tagging") {
        let mut tags = xml::parse_tagging(t.as_bytes())?;
        tagging::validate(&tags, tagging::MAX_OBJECT_TAGS)?;
        tags.sort();
        meta.tags = tags;
    }
    let status = field("success_action_status");
    let redirect = field("success_action_redirect").or_else(|| field("redirect")).filter(|r| !r.is_empty());

    let checksum = checksum_field(&fields)?;
    super::encryption::require_secure_transport_for(&headers, req.conn.peer, req.conn.is_tls())?;
    let mut sealing = crate::sse::start(&*ctx.shared.kms, crate::sse::wanted(&headers)?, &b)?;
    let shard = shard_of(ctx, &b.name, &key);
    let mut src =
        FileSource { form: &mut form, req, pending: 0..0, done: false, md5: Md5::new(), size: 0, max: max_size };
    let also = checksum.as_ref().map(|(a, _)| *a);
    let stored = match sealing.as_mut() {
        Some(s) => {
            let seg = s.new_segment(1)?;
            crate::sse::stream::store_sealed(ctx, &mut src, shard, false, also, seg).await?
        }
        None => store_from(ctx, &mut src, shard, false, also).await?,
    };
    if let Some((algo, want)) = &checksum {
        let got = stored.computed.as_ref().map(|(_, v)| v.as_str());
        if got != Some(want.as_str()) {
            return Err(S3Error::with_message(
                S3ErrorCode::BadDigest,
                format!("The {} you specified did not match the calculated checksum.", algo.header_name()),
            ));
        }
        meta.checksum = Some((algo.header_name().to_string(), want.clone()));
        meta.checksum_type = Some(crate::meta::ChecksumType::FullObject);
    }
    if stored.size < min_size {
        return Err(S3Error::with_message(S3ErrorCode::EntityTooSmall, "Your proposed upload is smaller than the minimum allowed size")
            .with_detail("MinSizeAllowed", min_size.to_string()));
    }
    drain_tail(&mut form, req).await;

    let md5 = sealing.as_ref().map_or(stored.sums.md5, |s| s.info.etag_md5(&s.dk, stored.sums.md5));
    meta.sse = sealing.map(|s| s.info.clone());
    let summary = ObjectSummary::new(stored.size, now_unix_ms(), md5, 0, VersionId::from_parts(0, [0; 8]), true);
    let new = NewVersion { summary, meta: meta.encode(), body: stored.body };
    let _gate = b.enter_write()?;
    let ev = super::event(ctx, req, &b, &key, tessera_proto::notification::EventName::Post)?;
    let summary = write_version(ctx, &b, shard, &key, new, None, ev).await?;
    drop(_gate);
    respond(req, &b.name, &key, &summary, status.as_deref(), redirect.as_deref())
}

/// The `x-amz-checksum-<algorithm>` field of a form, if any (at most one).
fn checksum_field(fields: &[(String, String)]) -> S3Result<Option<(ChecksumAlgo, String)>> {
    let mut found = fields.iter().filter_map(|(n, v)| ChecksumAlgo::from_header_name(n).map(|a| (a, v.trim().to_string())));
    let first = found.next();
    if found.next().is_some() {
        return Err(S3Error::with_message(S3ErrorCode::InvalidRequest, "Expecting a single x-amz-checksum- field"));
    }
    if let Some((algo, v)) = &first {
        if tessera_proto::checksum::decode_value(*algo, v).is_none() {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidRequest,
                format!("Value for {} is not a valid checksum", algo.header_name()),
            ));
        }
    }
    Ok(first)
}

/// Reads what follows the file part (ignored fields, epilogue), bounded,
/// so the connection can carry another request.
async fn drain_tail(form: &mut FormReader, req: &mut Request<'_>) {
    let mut seen = 0usize;
    while !form.parser.is_done() && seen < MAX_POST_TAIL_BYTES {
        match form.next(req).await {
            Ok(FormEvent::Data(r)) => seen += r.len(),
            Ok(FormEvent::End) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let mut sink = [0u8; 4096];
    while seen < MAX_POST_TAIL_BYTES {
        match req.read_body(&mut sink).await {
            Ok(0) | Err(_) => break,
            Ok(n) => seen += n,
        }
    }
}

fn respond(
    req: &Request<'_>,
    bucket: &str,
    key: &str,
    summary: &ObjectSummary,
    status: Option<&str>,
    redirect: Option<&str>,
) -> S3Result<Response> {
    let etag = summary.etag();
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, URL_SET).to_string();
    let host = req.header("host").unwrap_or("localhost");
    let location = format!("http://{host}/{}/{}", enc(bucket), enc(key));
    let mut resp = if let Some(url) = redirect {
        let sep = if url.contains('?') { '&' } else { '?' };
        let to = format!("{url}{sep}bucket={}&key={}&etag={}", enc(bucket), enc(key), enc(&etag));
        Response::new(303).header("Location", to)
    } else {
        match status {
            Some("200") => Response::new(200),
            Some("201") => {
                // S3 sends this document without a namespace; clients
                // read `Key` and friends as bare children of the root.
                let mut w = XmlWriter::new().root_bare("PostResponse");
                w.elem("Location", &location).elem("Bucket", bucket).elem("Key", key).elem("ETag", &etag);
                w.close("PostResponse");
                Response::xml(201, w.finish())
            }
            _ => Response::new(204),
        }
    };
    resp.push_header("ETag", etag);
    if redirect.is_none() {
        resp.push_header("Location", location);
    }
    push_written_version(&mut resp, summary);
    Ok(resp)
}
