//! Routing: method + path + query + Host to a typed S3 operation.
//!
//! Path-style (`/bucket/key`) and virtual-host-style (`bucket.DOMAIN/key`)
//! requests both land here. Keys are percent-decoded exactly once and are
//! names, never paths: nothing here interprets `..` or `//`.

use crate::http::Method;
use crate::{S3Error, S3ErrorCode, S3Result};

/// Longest object key in bytes (S3's limit).
pub const MAX_KEY_BYTES: usize = 1024;

/// Decoded query parameters in wire order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    params: Vec<(String, String)>,
}

impl Query {
    /// Parses a raw query string. `+` is a space in values (form encoding,
    /// as S3 treats it); `%XX` is decoded once.
    pub fn parse(raw: &str) -> S3Result<Query> {
        let mut params = Vec::new();
        for (n, v) in raw_pairs(raw) {
            params.push((decode_query_component(n)?, decode_query_component(v)?));
        }
        Ok(Query { params })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Appends `other`'s parameters (after ours: `get` finds ours first).
    pub fn extend(&mut self, other: Query) {
        self.params.extend(other.params);
    }
}

/// A raw query's `(name, value)` pairs, still encoded: empty segments
/// skipped, a parameter without `=` has an empty value.
pub(crate) fn raw_pairs(raw: &str) -> impl Iterator<Item = (&str, &str)> {
    raw.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// The first value of parameter `name` in the raw query `raw`, decoded as
/// `Query::parse` decodes it; None if absent or not decodable. Only names
/// are decoded on the way (without allocating where they hold no `%` or
/// `+`), so looking up one parameter does not cost a whole parse.
pub fn query_param(raw: &str, name: &str) -> Option<String> {
    for (n, v) in raw_pairs(raw) {
        let is = if n.bytes().any(|b| b == b'%' || b == b'+') { decode(n, true).ok()? == name } else { n == name };
        if is {
            return decode(v, true).ok();
        }
    }
    None
}

/// A query name or value: `+` is a space, then `%XX` decoded, in one
/// pass (replacing `+` first and decoding then took two allocations and a
/// UTF-8 check per component; a presigned GET has a dozen components).
fn decode_query_component(s: &str) -> S3Result<String> {
    decode(s, true)
}

/// Percent-decodes `s` once into UTF-8. A `%` not followed by two hex digits
/// is kept literally; invalid UTF-8 after decoding is `InvalidURI`.
pub fn percent_decode(s: &str) -> S3Result<String> {
    decode(s, false)
}

/// `%XX` decoded (a `%` not followed by two hex digits stays as it is),
/// and with `plus_as_space` a `+` read as a space (an encoded `%2B` stays a
/// plus). Text without `%` (or `+`) is copied as it is: it is UTF-8
/// already, and most of a request's components are such.
fn decode(s: &str, plus_as_space: bool) -> S3Result<String> {
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&b| b == b'%' || (plus_as_space && b == b'+')) {
        return Ok(s.to_string());
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hi = (bytes[i + 1] as char).to_digit(16);
            let lo = (bytes[i + 2] as char).to_digit(16);
            if let (Some(h), Some(l)) = (hi, lo) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(if plus_as_space && bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8(out).map_err(|_| S3Error::new(S3ErrorCode::InvalidURI))
}

/// Every sub-resource S3 documents, sorted (looked up by binary search).
/// Only these select an operation; any other query parameter
/// (`content-type` that boto3 puts in presigned URLs, `x-id`, vendor extras)
/// is ignored, as AWS ignores it.
pub const SUBRESOURCES: &[&str] = &[
    "accelerate", "acl", "analytics", "attributes", "cors", "delete", "encryption",
    "intelligent-tiering", "inventory", "legal-hold", "lifecycle", "location", "logging",
    "metadataConfiguration", "metadataInventoryTable", "metadataJournalTable", "metadataTable",
    "metrics", "notification", "object-lock", "ownershipControls", "partNumber", "policy",
    "policyStatus", "publicAccessBlock", "renameObject", "replication", "requestPayment",
    "restore", "retention", "select", "session", "tagging", "torrent", "uploadId", "uploads",
    "versioning", "versions", "website",
];

/// Documented sub-resources not served here: answering them as a plain
/// object or bucket operation would be wrong (`DELETE /b?metadataTable`
/// must not delete the bucket), so they get `NotImplemented`.
const UNSUPPORTED_SUBRESOURCES: &[&str] = &[
    "policy", "website", "accelerate",
    "requestPayment", "ownershipControls", "publicAccessBlock", "intelligent-tiering",
    "inventory", "metrics", "analytics", "select", "torrent", "policyStatus",
    "metadataConfiguration", "metadataInventoryTable", "metadataJournalTable", "metadataTable",
    "renameObject", "session",
];

/// Whether `name` is a documented S3 sub-resource.
pub fn is_subresource(name: &str) -> bool {
    SUBRESOURCES.binary_search(&name).is_ok()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    ListBuckets,
    CreateBucket,
    HeadBucket,
    DeleteBucket,
    GetBucketLocation,
    GetBucketVersioning,
    PutBucketVersioning,
    GetBucketTagging,
    PutBucketTagging,
    DeleteBucketTagging,
    GetObjectLockConfiguration,
    PutObjectLockConfiguration,
    GetBucketAcl,
    GetObjectAcl,
    GetBucketCors,
    PutBucketCors,
    DeleteBucketCors,
    GetBucketEncryption,
    PutBucketEncryption,
    DeleteBucketEncryption,
    GetBucketLogging,
    PutBucketLogging,
    GetBucketLifecycleConfiguration,
    PutBucketLifecycleConfiguration,
    DeleteBucketLifecycle,
    GetBucketReplication,
    PutBucketReplication,
    DeleteBucketReplication,
    GetBucketNotificationConfiguration,
    PutBucketNotificationConfiguration,
    /// Browser form upload (`POST /bucket` with multipart/form-data).
    PostObject,
    /// CORS preflight (`OPTIONS` on a bucket or an object).
    Options,
    // Access control: ACLs, bucket policies, public access block, ownership.
    PutBucketAcl,
    PutObjectAcl,
    GetBucketPolicy,
    PutBucketPolicy,
    DeleteBucketPolicy,
    GetBucketPolicyStatus,
    GetPublicAccessBlock,
    PutPublicAccessBlock,
    DeletePublicAccessBlock,
    GetBucketOwnershipControls,
    PutBucketOwnershipControls,
    DeleteBucketOwnershipControls,
    GetObjectTagging,
    PutObjectTagging,
    DeleteObjectTagging,
    GetObjectRetention,
    PutObjectRetention,
    GetObjectLegalHold,
    PutObjectLegalHold,
    GetObjectAttributes,
    ListObjectsV1,
    ListObjectsV2,
    ListObjectVersions,
    ListMultipartUploads,
    DeleteObjects,
    PutObject,
    CopyObject,
    GetObject,
    HeadObject,
    DeleteObject,
    CreateMultipartUpload,
    UploadPart { part_number: u32, upload_id: String },
    UploadPartCopy { part_number: u32, upload_id: String },
    CompleteMultipartUpload { upload_id: String },
    AbortMultipartUpload { upload_id: String },
    ListParts { upload_id: String },
    SelectObjectContent,
    /// `POST ?restore`: a transitioned object's body brought back for N days.
    RestoreObject,
}

impl Op {
    /// Operation name as AWS spells it (logs, metrics).
    pub fn name(&self) -> &'static str {
        match self {
            Op::ListBuckets => "ListBuckets",
            Op::CreateBucket => "CreateBucket",
            Op::HeadBucket => "HeadBucket",
            Op::DeleteBucket => "DeleteBucket",
            Op::GetBucketLocation => "GetBucketLocation",
            Op::GetBucketVersioning => "GetBucketVersioning",
            Op::PutBucketVersioning => "PutBucketVersioning",
            Op::GetBucketTagging => "GetBucketTagging",
            Op::PutBucketTagging => "PutBucketTagging",
            Op::DeleteBucketTagging => "DeleteBucketTagging",
            Op::GetObjectLockConfiguration => "GetObjectLockConfiguration",
            Op::PutObjectLockConfiguration => "PutObjectLockConfiguration",
            Op::GetObjectTagging => "GetObjectTagging",
            Op::PutObjectTagging => "PutObjectTagging",
            Op::DeleteObjectTagging => "DeleteObjectTagging",
            Op::GetObjectRetention => "GetObjectRetention",
            Op::PutObjectRetention => "PutObjectRetention",
            Op::GetObjectLegalHold => "GetObjectLegalHold",
            Op::PutObjectLegalHold => "PutObjectLegalHold",
            Op::GetObjectAttributes => "GetObjectAttributes",
            Op::GetBucketAcl => "GetBucketAcl",
            Op::GetObjectAcl => "GetObjectAcl",
            Op::GetBucketCors => "GetBucketCors",
            Op::PutBucketCors => "PutBucketCors",
            Op::DeleteBucketCors => "DeleteBucketCors",
            Op::GetBucketEncryption => "GetBucketEncryption",
            Op::PutBucketEncryption => "PutBucketEncryption",
            Op::DeleteBucketEncryption => "DeleteBucketEncryption",
            Op::GetBucketLogging => "GetBucketLogging",
            Op::PutBucketLogging => "PutBucketLogging",
            Op::GetBucketLifecycleConfiguration => "GetBucketLifecycleConfiguration",
            Op::PutBucketLifecycleConfiguration => "PutBucketLifecycleConfiguration",
            Op::DeleteBucketLifecycle => "DeleteBucketLifecycle",
            Op::GetBucketReplication => "GetBucketReplication",
            Op::PutBucketReplication => "PutBucketReplication",
            Op::DeleteBucketReplication => "DeleteBucketReplication",
            Op::GetBucketNotificationConfiguration => "GetBucketNotificationConfiguration",
            Op::PutBucketNotificationConfiguration => "PutBucketNotificationConfiguration",
            Op::PostObject => "PostObject",
            Op::Options => "PreflightRequest",
            Op::PutBucketAcl => "PutBucketAcl",
            Op::PutObjectAcl => "PutObjectAcl",
            Op::GetBucketPolicy => "GetBucketPolicy",
            Op::PutBucketPolicy => "PutBucketPolicy",
            Op::DeleteBucketPolicy => "DeleteBucketPolicy",
            Op::GetBucketPolicyStatus => "GetBucketPolicyStatus",
            Op::GetPublicAccessBlock => "GetPublicAccessBlock",
            Op::PutPublicAccessBlock => "PutPublicAccessBlock",
            Op::DeletePublicAccessBlock => "DeletePublicAccessBlock",
            Op::GetBucketOwnershipControls => "GetBucketOwnershipControls",
            Op::PutBucketOwnershipControls => "PutBucketOwnershipControls",
            Op::DeleteBucketOwnershipControls => "DeleteBucketOwnershipControls",
            Op::ListObjectsV1 => "ListObjects",
            Op::ListObjectsV2 => "ListObjectsV2",
            Op::ListObjectVersions => "ListObjectVersions",
            Op::ListMultipartUploads => "ListMultipartUploads",
            Op::DeleteObjects => "DeleteObjects",
            Op::PutObject => "PutObject",
            Op::CopyObject => "CopyObject",
            Op::GetObject => "GetObject",
            Op::HeadObject => "HeadObject",
            Op::DeleteObject => "DeleteObject",
            Op::CreateMultipartUpload => "CreateMultipartUpload",
            Op::UploadPart { .. } => "UploadPart",
            Op::UploadPartCopy { .. } => "UploadPartCopy",
            Op::CompleteMultipartUpload { .. } => "CompleteMultipartUpload",
            Op::AbortMultipartUpload { .. } => "AbortMultipartUpload",
            Op::ListParts { .. } => "ListParts",
            Op::SelectObjectContent => "SelectObjectContent",
            Op::RestoreObject => "RestoreObject",
        }
    }
}

/// A request resolved to its bucket, key and operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub bucket: Option<String>,
    /// The bucket came from the Host header (virtual-host style).
    pub vhost: bool,
    pub key: Option<String>,
    pub op: Op,
    pub query: Query,
}

/// Resolves a request. `vhost_domains` are the base domains under which the
/// first label of Host names the bucket (e.g. `localhost` for
/// `bucket.localhost:9000`).
pub fn route(
    method: Method,
    raw_path: &str,
    raw_query: &str,
    host: Option<&str>,
    vhost_domains: &[String],
) -> S3Result<Routed> {
    let query = Query::parse(raw_query)?;
    let path = percent_decode(raw_path)?;
    let vhost_bucket = host.and_then(|h| vhost_bucket(h, vhost_domains));
    let vhost_bucket_found = vhost_bucket.is_some();
    let (bucket, key) = match vhost_bucket {
        Some(b) => {
            let key = path.strip_prefix('/').unwrap_or(&path);
            (Some(b), (!key.is_empty()).then(|| key.to_string()))
        }
        None => {
            let rest = path.strip_prefix('/').unwrap_or(&path);
            match rest.split_once('/') {
                Some((b, k)) => (Some(b.to_string()), (!k.is_empty()).then(|| k.to_string())),
                None if rest.is_empty() => (None, None),
                None => (Some(rest.to_string()), None),
            }
        }
    };
    if let Some(k) = &key {
        if k.len() > MAX_KEY_BYTES {
            return Err(S3Error::new(S3ErrorCode::KeyTooLongError));
        }
    }
    let op = match (&bucket, &key) {
        (None, _) => match method {
            Method::Get => Op::ListBuckets,
            _ => return Err(S3Error::new(S3ErrorCode::MethodNotAllowed)),
        },
        (Some(_), None) => bucket_op(method, &query)?,
        (Some(_), Some(_)) => object_op(method, &query)?,
    };
    Ok(Routed { bucket, vhost: vhost_bucket_found, key, op, query })
}

fn vhost_bucket(host: &str, domains: &[String]) -> Option<String> {
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) { h } else { host }
    });
    let host = host.to_ascii_lowercase();
    domains.iter().find_map(|d| {
        let b = host.strip_suffix(d.as_str())?.strip_suffix('.')?;
        (!b.is_empty()).then(|| b.to_string())
    })
}

fn unsupported(query: &Query) -> Option<&'static str> {
    UNSUPPORTED_SUBRESOURCES.iter().copied().find(|s| query.has(s))
}

fn not_implemented(what: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::NotImplemented, format!("{what} is not implemented"))
}

/// A documented sub-resource that `method` on this resource does not serve:
/// refused, never ignored (only unknown parameters are ignored).
fn stray_subresource(q: &Query, served: &[&str]) -> Option<String> {
    q.iter().map(|(n, _)| n).find(|n| is_subresource(n) && !served.contains(n)).map(str::to_string)
}

/// Bucket sub-resources of access control (ACL, policy, public access
/// block, ownership controls).
fn bucket_access_op(method: Method, q: &Query) -> S3Result<Option<Op>> {
    let op = match method {
        Method::Get if q.has("acl") => Op::GetBucketAcl,
        Method::Put if q.has("acl") => Op::PutBucketAcl,
        Method::Get if q.has("policyStatus") => Op::GetBucketPolicyStatus,
        Method::Get if q.has("policy") => Op::GetBucketPolicy,
        Method::Put if q.has("policy") => Op::PutBucketPolicy,
        Method::Delete if q.has("policy") => Op::DeleteBucketPolicy,
        Method::Get if q.has("publicAccessBlock") => Op::GetPublicAccessBlock,
        Method::Put if q.has("publicAccessBlock") => Op::PutPublicAccessBlock,
        Method::Delete if q.has("publicAccessBlock") => Op::DeletePublicAccessBlock,
        Method::Get if q.has("ownershipControls") => Op::GetBucketOwnershipControls,
        Method::Put if q.has("ownershipControls") => Op::PutBucketOwnershipControls,
        Method::Delete if q.has("ownershipControls") => Op::DeleteBucketOwnershipControls,
        _ if ["acl", "policy", "policyStatus", "publicAccessBlock", "ownershipControls"].iter().any(|s| q.has(s)) => {
            return Err(S3Error::new(S3ErrorCode::MethodNotAllowed))
        }
        _ => return Ok(None),
    };
    if let Some(what) = stray_subresource(q, &["acl", "policy", "policyStatus", "publicAccessBlock", "ownershipControls"]) {
        return Err(not_implemented(&what));
    }
    Ok(Some(op))
}

fn bucket_op(method: Method, q: &Query) -> S3Result<Op> {
    if method == Method::Options {
        return Ok(Op::Options);
    }
    if let Some(op) = bucket_access_op(method, q)? {
        return Ok(op);
    }
    Ok(match method {
        Method::Get if q.has("location") => Op::GetBucketLocation,
        Method::Get if q.has("versioning") => Op::GetBucketVersioning,
        Method::Put if q.has("versioning") => Op::PutBucketVersioning,
        Method::Get if q.has("tagging") => Op::GetBucketTagging,
        Method::Put if q.has("tagging") => Op::PutBucketTagging,
        Method::Delete if q.has("tagging") => Op::DeleteBucketTagging,
        Method::Get if q.has("object-lock") => Op::GetObjectLockConfiguration,
        Method::Put if q.has("object-lock") => Op::PutObjectLockConfiguration,
        Method::Get if q.has("cors") => Op::GetBucketCors,
        Method::Put if q.has("cors") => Op::PutBucketCors,
        Method::Delete if q.has("cors") => Op::DeleteBucketCors,
        Method::Get if q.has("encryption") => Op::GetBucketEncryption,
        Method::Put if q.has("encryption") => Op::PutBucketEncryption,
        Method::Delete if q.has("encryption") => Op::DeleteBucketEncryption,
        Method::Get if q.has("logging") => Op::GetBucketLogging,
        Method::Put if q.has("logging") => Op::PutBucketLogging,
        Method::Get if q.has("lifecycle") => Op::GetBucketLifecycleConfiguration,
        Method::Put if q.has("lifecycle") => Op::PutBucketLifecycleConfiguration,
        Method::Delete if q.has("lifecycle") => Op::DeleteBucketLifecycle,
        Method::Get if q.has("replication") => Op::GetBucketReplication,
        Method::Put if q.has("replication") => Op::PutBucketReplication,
        Method::Delete if q.has("replication") => Op::DeleteBucketReplication,
        Method::Get if q.has("notification") => Op::GetBucketNotificationConfiguration,
        Method::Put if q.has("notification") => Op::PutBucketNotificationConfiguration,
        _ if ["versioning", "object-lock", "tagging", "cors", "logging", "lifecycle", "notification", "replication"].iter().any(|s| q.has(s)) => {
            return Err(S3Error::new(S3ErrorCode::MethodNotAllowed))
        }
        Method::Get if q.has("uploads") => Op::ListMultipartUploads,
        Method::Get if q.has("versions") => Op::ListObjectVersions,
        Method::Post if q.has("delete") => Op::DeleteObjects,
        _ if unsupported(q).is_some() => {
            return Err(not_implemented(unsupported(q).unwrap_or("sub-resource")))
        }
        _ if stray_subresource(q, &[]).is_some() => {
            let what = stray_subresource(q, &[]).unwrap_or_default();
            return Err(not_implemented(&format!("{} {what} on a bucket", method.as_str())));
        }
        Method::Get if q.get("list-type") == Some("2") => Op::ListObjectsV2,
        Method::Get => Op::ListObjectsV1,
        Method::Put => Op::CreateBucket,
        Method::Head => Op::HeadBucket,
        Method::Delete => Op::DeleteBucket,
        Method::Post => Op::PostObject,
        _ => return Err(S3Error::new(S3ErrorCode::MethodNotAllowed)),
    })
}

fn upload_id(q: &Query) -> S3Result<String> {
    match q.get("uploadId") {
        Some(id) if !id.is_empty() => Ok(id.to_string()),
        _ => Err(S3Error::new(S3ErrorCode::NoSuchUpload)),
    }
}

/// Object sub-resources served: tagging, retention, legal hold, attributes.
fn object_subresource_op(method: Method, q: &Query) -> S3Result<Option<Op>> {
    let op = match method {
        Method::Get if q.has("tagging") => Op::GetObjectTagging,
        Method::Put if q.has("tagging") => Op::PutObjectTagging,
        Method::Delete if q.has("tagging") => Op::DeleteObjectTagging,
        Method::Get if q.has("retention") => Op::GetObjectRetention,
        Method::Put if q.has("retention") => Op::PutObjectRetention,
        Method::Get if q.has("legal-hold") => Op::GetObjectLegalHold,
        Method::Put if q.has("legal-hold") => Op::PutObjectLegalHold,
        Method::Get if q.has("attributes") => Op::GetObjectAttributes,
        _ if ["tagging", "retention", "legal-hold", "attributes"].iter().any(|s| q.has(s)) => {
            return Err(S3Error::new(S3ErrorCode::MethodNotAllowed))
        }
        _ => return Ok(None),
    };
    if let Some(what) = stray_subresource(q, &["tagging", "retention", "legal-hold", "attributes", "versionId"]) {
        return Err(not_implemented(&what));
    }
    Ok(Some(op))
}

fn object_op(method: Method, q: &Query) -> S3Result<Op> {
    if method == Method::Options {
        return Ok(Op::Options);
    }
    if let Some(op) = object_subresource_op(method, q)? {
        return Ok(op);
    }
    // `POST ?select&select-type=2` (select-type is the API's version: 2 is the only one).
    if method == Method::Post && q.has("select") {
        if let Some(what) = stray_subresource(q, &["select", "versionId"]) {
            return Err(not_implemented(&what));
        }
        if q.get("select-type").is_some_and(|t| t != "2") {
            return Err(S3Error::with_message(S3ErrorCode::InvalidArgument, "select-type must be 2"));
        }
        return Ok(Op::SelectObjectContent);
    }
    if method == Method::Post && q.has("restore") {
        if let Some(what) = stray_subresource(q, &["restore", "versionId"]) {
            return Err(not_implemented(&what));
        }
        return Ok(Op::RestoreObject);
    }
    if let Some(what) = unsupported(q) {
        return Err(not_implemented(what));
    }
    if let Some(what) = stray_subresource(q, &["partNumber", "uploadId", "uploads", "versionId", "acl"]) {
        return Err(not_implemented(&what));
    }
    Ok(match method {
        Method::Get if q.has("acl") => Op::GetObjectAcl,
        Method::Put if q.has("acl") => Op::PutObjectAcl,
        _ if q.has("acl") => return Err(S3Error::new(S3ErrorCode::MethodNotAllowed)),
        Method::Put if q.has("partNumber") || q.has("uploadId") => {
            let part_number = q
                .get("partNumber")
                .and_then(|p| p.parse::<u32>().ok())
                .filter(|n| (1..=10_000).contains(n))
                .ok_or_else(|| {
                    S3Error::with_message(
                        S3ErrorCode::InvalidArgument,
                        "Part number must be an integer between 1 and 10000, inclusive",
                    )
                })?;
            Op::UploadPart { part_number, upload_id: upload_id(q)? }
        }
        Method::Put => Op::PutObject,
        Method::Get if q.has("uploadId") => Op::ListParts { upload_id: upload_id(q)? },
        Method::Get => Op::GetObject,
        Method::Head => Op::HeadObject,
        Method::Delete if q.has("uploadId") => Op::AbortMultipartUpload { upload_id: upload_id(q)? },
        Method::Delete => Op::DeleteObject,
        Method::Post if q.has("uploads") => Op::CreateMultipartUpload,
        Method::Post if q.has("uploadId") => Op::CompleteMultipartUpload { upload_id: upload_id(q)? },
        Method::Post => return Err(not_implemented("this POST")),
        _ => return Err(S3Error::new(S3ErrorCode::MethodNotAllowed)),
    })
}

#[cfg(test)]
mod tests {
    /// One-pass `decode` answers exactly what replacing `+` and then
    /// percent-decoding answered, over every short string of the bytes
    /// `query_param` finds what `Query::parse` then `get` finds: the first
    /// value, names matched after decoding, absent names None.
    #[test]
    fn query_param_matches_a_whole_parse() {
        let queries = [
            "",
            "a=1&b=2&a=3",
            "X-Amz-Security-Token=tok%2Ben+x&X-Amz-Date=1",
            "X%2DAmz-Security-Token=encoded-name",
            "x-amz-security-token=other-case",
            "&&X-Amz-Security-Token&y=1",
            "X-Amz-Security-Token=&X-Amz-Security-Token=second",
            "a+b=c+d&a%20b=e",
        ];
        for q in queries {
            let parsed = Query::parse(q).unwrap();
            for name in ["a", "b", "X-Amz-Security-Token", "X-Amz-Date", "a b", "missing", "x-amz-security-token"] {
                assert_eq!(query_param(q, name).as_deref(), parsed.get(name), "{name} in {q:?}");
            }
        }
    }

    /// that matter (and errors alike on invalid UTF-8).
    #[test]
    fn one_pass_query_decoding_matches_replace_then_decode() {
        fn old(s: &str) -> S3Result<String> {
            let s = s.replace('+', " ");
            let bytes = s.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' && i + 2 < bytes.len() {
                    if let (Some(h), Some(l)) = ((bytes[i + 1] as char).to_digit(16), (bytes[i + 2] as char).to_digit(16)) {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                }
                out.push(bytes[i]);
                i += 1;
            }
            String::from_utf8(out).map_err(|_| S3Error::new(S3ErrorCode::InvalidURI))
        }
        let alphabet = ["%", "+", "2", "B", "c", "3", "A", "9", "F", "G", " ", "é", "=", "%C3", "%A9", "%2B", "%FF"];
        let mut n = 0;
        let mut stack = vec![String::new()];
        while let Some(s) = stack.pop() {
            let got = decode_query_component(&s).map_err(|e| e.code);
            assert_eq!(got, old(&s).map_err(|e| e.code), "{s:?}");
            assert_eq!(percent_decode(&s).map_err(|e| e.code), old(&s.replace('+', "%2B")).map_err(|e| e.code), "path {s:?}");
            n += 1;
            if s.chars().count() < 4 {
                for a in alphabet {
                    stack.push(format!("{s}{a}"));
                }
            }
        }
        assert!(n > 40_000, "{n} strings");
    }

    use super::*;

    fn r(method: Method, path: &str, query: &str) -> S3Result<Routed> {
        route(method, path, query, Some("127.0.0.1:9000"), &["localhost".to_string()])
    }

    #[test]
    fn table() {
        use Method::*;
        let cases: &[(Method, &str, &str, Option<&str>, Option<&str>, &str)] = &[
            (Get, "/", "", None, None, "ListBuckets"),
            (Put, "/b", "", Some("b"), None, "CreateBucket"),
            (Put, "/b/", "", Some("b"), None, "CreateBucket"),
            (Get, "/b", "location", Some("b"), None, "GetBucketLocation"),
            (Get, "/b", "list-type=2&prefix=a", Some("b"), None, "ListObjectsV2"),
            (Get, "/b", "prefix=a", Some("b"), None, "ListObjects"),
            (Post, "/b", "delete", Some("b"), None, "DeleteObjects"),
            (Put, "/b/a/b/c", "", Some("b"), Some("a/b/c"), "PutObject"),
            (Put, "/b/k", "x-id=PutObject", Some("b"), Some("k"), "PutObject"),
            (Put, "/b/k", "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=x", Some("b"), Some("k"), "PutObject"),
            (Delete, "/b", "x-id=DeleteBucket", Some("b"), None, "DeleteBucket"),
            (Put, "/b/k%20x", "", Some("b"), Some("k x"), "PutObject"),
            (Put, "/b/a+b", "", Some("b"), Some("a+b"), "PutObject"),
            (Put, "/b/%2520", "", Some("b"), Some("%20"), "PutObject"),
            (Get, "/b//lead", "", Some("b"), Some("/lead"), "GetObject"),
            (Get, "/b/../x", "", Some("b"), Some("../x"), "GetObject"),
            (Post, "/b/k", "uploads", Some("b"), Some("k"), "CreateMultipartUpload"),
            (Put, "/b/k", "partNumber=3&uploadId=u", Some("b"), Some("k"), "UploadPart"),
            (Post, "/b/k", "uploadId=u", Some("b"), Some("k"), "CompleteMultipartUpload"),
            (Delete, "/b/k", "uploadId=u", Some("b"), Some("k"), "AbortMultipartUpload"),
            (Get, "/b/k", "uploadId=u", Some("b"), Some("k"), "ListParts"),
            (Get, "/%E6%97%A5", "", Some("日"), None, "ListObjects"),
            (Put, "/b", "versioning", Some("b"), None, "PutBucketVersioning"),
            (Get, "/b", "versioning", Some("b"), None, "GetBucketVersioning"),
            (Put, "/b", "tagging", Some("b"), None, "PutBucketTagging"),
            (Get, "/b", "tagging", Some("b"), None, "GetBucketTagging"),
            (Delete, "/b", "tagging", Some("b"), None, "DeleteBucketTagging"),
            (Put, "/b", "object-lock", Some("b"), None, "PutObjectLockConfiguration"),
            (Get, "/b", "object-lock", Some("b"), None, "GetObjectLockConfiguration"),
            (Put, "/b/k", "tagging&versionId=v", Some("b"), Some("k"), "PutObjectTagging"),
            (Get, "/b/k", "tagging", Some("b"), Some("k"), "GetObjectTagging"),
            (Delete, "/b/k", "tagging", Some("b"), Some("k"), "DeleteObjectTagging"),
            (Put, "/b/k", "retention", Some("b"), Some("k"), "PutObjectRetention"),
            (Get, "/b/k", "retention&versionId=v", Some("b"), Some("k"), "GetObjectRetention"),
            (Put, "/b/k", "legal-hold", Some("b"), Some("k"), "PutObjectLegalHold"),
            (Get, "/b/k", "legal-hold", Some("b"), Some("k"), "GetObjectLegalHold"),
            (Get, "/b/k", "attributes", Some("b"), Some("k"), "GetObjectAttributes"),
            (Delete, "/b/k", "versionId=v", Some("b"), Some("k"), "DeleteObject"),
            (Post, "/b/k", "select&select-type=2", Some("b"), Some("k"), "SelectObjectContent"),
            (Post, "/b/k", "select&select-type=2&versionId=v", Some("b"), Some("k"), "SelectObjectContent"),
            (Post, "/b/k", "restore", Some("b"), Some("k"), "RestoreObject"),
            (Post, "/b/k", "restore&versionId=v", Some("b"), Some("k"), "RestoreObject"),
            // boto3 presigned PutObject with ContentType: not a sub-resource, ignored.
            (Put, "/b/k", "content-type=text%2Fplain&X-Amz-Signature=x", Some("b"), Some("k"), "PutObject"),
            (Put, "/b", "someVendorThing=1", Some("b"), None, "CreateBucket"),
            (Post, "/b/k", "uploads&foo=bar", Some("b"), Some("k"), "CreateMultipartUpload"),
            (Get, "/b/k", "response-content-type=a%2Fb", Some("b"), Some("k"), "GetObject"),
            (Put, "/b", "cors", Some("b"), None, "PutBucketCors"),
            (Get, "/b", "cors", Some("b"), None, "GetBucketCors"),
            (Delete, "/b", "cors", Some("b"), None, "DeleteBucketCors"),
            (Put, "/b", "encryption", Some("b"), None, "PutBucketEncryption"),
            (Get, "/b", "encryption", Some("b"), None, "GetBucketEncryption"),
            (Delete, "/b", "encryption", Some("b"), None, "DeleteBucketEncryption"),
            (Put, "/b", "logging", Some("b"), None, "PutBucketLogging"),
            (Put, "/b", "lifecycle", Some("b"), None, "PutBucketLifecycleConfiguration"),
            (Get, "/b", "lifecycle", Some("b"), None, "GetBucketLifecycleConfiguration"),
            (Delete, "/b", "lifecycle", Some("b"), None, "DeleteBucketLifecycle"),
            (Put, "/b", "replication", Some("b"), None, "PutBucketReplication"),
            (Get, "/b", "replication", Some("b"), None, "GetBucketReplication"),
            (Delete, "/b", "replication", Some("b"), None, "DeleteBucketReplication"),
            (Put, "/b", "notification", Some("b"), None, "PutBucketNotificationConfiguration"),
            (Get, "/b", "notification", Some("b"), None, "GetBucketNotificationConfiguration"),
            (Get, "/b", "logging", Some("b"), None, "GetBucketLogging"),
            (Post, "/b", "", Some("b"), None, "PostObject"),
            (Post, "/b/", "", Some("b"), None, "PostObject"),
            (Options, "/b", "", Some("b"), None, "PreflightRequest"),
            (Options, "/b/k", "", Some("b"), Some("k"), "PreflightRequest"),
            (Put, "/b", "acl", Some("b"), None, "PutBucketAcl"),
            (Get, "/b", "acl", Some("b"), None, "GetBucketAcl"),
            (Put, "/b/k", "acl&versionId=v", Some("b"), Some("k"), "PutObjectAcl"),
            (Get, "/b/k", "acl", Some("b"), Some("k"), "GetObjectAcl"),
            (Put, "/b", "policy", Some("b"), None, "PutBucketPolicy"),
            (Get, "/b", "policy", Some("b"), None, "GetBucketPolicy"),
            (Delete, "/b", "policy", Some("b"), None, "DeleteBucketPolicy"),
            (Get, "/b", "policyStatus", Some("b"), None, "GetBucketPolicyStatus"),
            (Put, "/b", "publicAccessBlock", Some("b"), None, "PutPublicAccessBlock"),
            (Get, "/b", "publicAccessBlock", Some("b"), None, "GetPublicAccessBlock"),
            (Delete, "/b", "publicAccessBlock", Some("b"), None, "DeletePublicAccessBlock"),
            (Put, "/b", "ownershipControls", Some("b"), None, "PutBucketOwnershipControls"),
            (Get, "/b", "ownershipControls", Some("b"), None, "GetBucketOwnershipControls"),
            (Delete, "/b", "ownershipControls", Some("b"), None, "DeleteBucketOwnershipControls"),
        ];
        for (m, p, q, b, k, op) in cases {
            let got = r(*m, p, q).unwrap_or_else(|e| panic!("{p}?{q}: {e}"));
            assert_eq!(got.bucket.as_deref(), *b, "{p}");
            assert_eq!(got.key.as_deref(), *k, "{p}");
            assert_eq!(got.op.name(), *op, "{p}?{q}");
        }
    }

    #[test]
    fn errors() {
        use Method::*;
        let cases: &[(Method, &str, &str, S3ErrorCode)] = &[
            (Put, "/b/k", "partNumber=0&uploadId=u", S3ErrorCode::InvalidArgument),
            (Put, "/b/k", "partNumber=10001&uploadId=u", S3ErrorCode::InvalidArgument),
            (Put, "/b/k", "partNumber=1&uploadId=", S3ErrorCode::NoSuchUpload),
            (Post, "/b/k", "acl", S3ErrorCode::MethodNotAllowed),
            (Post, "/b", "policy", S3ErrorCode::MethodNotAllowed),
            (Put, "/b", "policy&renameObject", S3ErrorCode::NotImplemented),
            (Get, "/b/k", "torrent", S3ErrorCode::NotImplemented),
            (Post, "/b/k", "tagging", S3ErrorCode::MethodNotAllowed),
            (Delete, "/b/k", "retention", S3ErrorCode::MethodNotAllowed),
            (Put, "/b/k", "attributes", S3ErrorCode::MethodNotAllowed),
            (Put, "/b/k", "tagging&renameObject", S3ErrorCode::NotImplemented),
            (Delete, "/b", "versioning", S3ErrorCode::MethodNotAllowed),
            (Post, "/b", "tagging", S3ErrorCode::MethodNotAllowed),
            (Put, "/", "", S3ErrorCode::MethodNotAllowed),
            (Get, "/b/%FF", "", S3ErrorCode::InvalidURI),
            (Delete, "/b", "metadataTable", S3ErrorCode::NotImplemented),
            (Put, "/b", "website", S3ErrorCode::NotImplemented),
            (Post, "/b", "cors", S3ErrorCode::MethodNotAllowed),
            (Put, "/b/k", "renameObject", S3ErrorCode::NotImplemented),
            (Get, "/b/k", "select&select-type=2", S3ErrorCode::NotImplemented),
            (Post, "/b/k", "select&select-type=3", S3ErrorCode::InvalidArgument),
            (Post, "/b/k", "select&renameObject", S3ErrorCode::NotImplemented),
            (Delete, "/b", "versions", S3ErrorCode::NotImplemented),
            (Put, "/b/k", "location", S3ErrorCode::NotImplemented),
            (Post, "/b/k", "", S3ErrorCode::NotImplemented),
        ];
        for (m, p, q, code) in cases {
            assert_eq!(r(*m, p, q).unwrap_err().code, *code, "{p}?{q}");
        }
        let long = format!("/b/{}", "k".repeat(MAX_KEY_BYTES + 1));
        assert_eq!(r(Put, &long, "").unwrap_err().code, S3ErrorCode::KeyTooLongError);
        let max = format!("/b/{}", "k".repeat(MAX_KEY_BYTES));
        assert!(r(Put, &max, "").is_ok());
    }

    #[test]
    fn subresource_list_is_sorted() {
        assert!(SUBRESOURCES.windows(2).all(|w| w[0] < w[1]));
        assert!(UNSUPPORTED_SUBRESOURCES.iter().all(|s| is_subresource(s)), "unsupported ones are documented");
    }

    #[test]
    fn virtual_host() {
        let d = ["localhost".to_string()];
        let got = route(Method::Get, "/a/b", "", Some("bkt.localhost:9000"), &d).unwrap();
        assert_eq!((got.bucket.as_deref(), got.key.as_deref()), (Some("bkt"), Some("a/b")));
        let got = route(Method::Get, "/", "", Some("bkt.localhost"), &d).unwrap();
        assert_eq!(got.op, Op::ListObjectsV1);
        let got = route(Method::Get, "/", "", Some("localhost:9000"), &d).unwrap();
        assert_eq!(got.op, Op::ListBuckets);
    }

    #[test]
    fn query_decoding() {
        let q = Query::parse("prefix=a+b%2Bc&delimiter=%2F&empty&x=").unwrap();
        assert_eq!(q.get("prefix"), Some("a b+c"));
        assert_eq!(q.get("delimiter"), Some("/"));
        assert_eq!(q.get("empty"), Some(""));
        assert!(q.has("x"));
    }
}
