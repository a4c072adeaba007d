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
        for part in raw.split('&').filter(|p| !p.is_empty()) {
            let (n, v) = part.split_once('=').unwrap_or((part, ""));
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
}

fn decode_query_component(s: &str) -> S3Result<String> {
    let plus_as_space = s.replace('+', " ");
    percent_decode(&plus_as_space)
}

/// Percent-decodes `s` once into UTF-8. A `%` not followed by two hex digits
/// is kept literally; invalid UTF-8 after decoding is `InvalidURI`.
pub fn percent_decode(s: &str) -> S3Result<String> {
    let bytes = s.as_bytes();
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
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| S3Error::new(S3ErrorCode::InvalidURI))
}

/// Sub-resources we recognise but do not serve yet: answering them as a plain
/// object or bucket operation would be wrong, so they get `NotImplemented`.
const UNSUPPORTED_SUBRESOURCES: &[&str] = &[
    "policy", "cors", "lifecycle", "tagging", "website", "logging", "notification",
    "replication", "encryption", "object-lock", "retention", "legal-hold", "accelerate",
    "requestPayment", "ownershipControls", "publicAccessBlock", "intelligent-tiering",
    "inventory", "metrics", "analytics", "attributes", "restore", "select", "torrent",
    "policyStatus",
];

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

/// Query parameters that carry credentials or client bookkeeping, never an
/// operation.
fn is_neutral_param(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("x-amz-") || matches!(lower.as_str(), "x-id" | "awsaccesskeyid" | "signature" | "expires")
}

/// For writes, every query parameter must be one the operation knows: an
/// unknown sub-resource (`DELETE /b?metadataTable`, `PUT /b/k?renameObject`)
/// must not fall through to DeleteBucket or an overwriting PutObject.
fn check_write_params(method: Method, q: &Query, known: &[&str]) -> S3Result<()> {
    if matches!(method, Method::Get | Method::Head) {
        return Ok(());
    }
    match q.iter().map(|(n, _)| n).find(|n| !known.contains(n) && !is_neutral_param(n)) {
        Some(n) => Err(not_implemented(n)),
        None => Ok(()),
    }
}

fn unsupported(query: &Query) -> Option<&'static str> {
    UNSUPPORTED_SUBRESOURCES.iter().copied().find(|s| query.has(s))
}

fn not_implemented(what: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::NotImplemented, format!("{what} is not implemented"))
}

fn bucket_op(method: Method, q: &Query) -> S3Result<Op> {
    check_write_params(method, q, &["delete", "acl", "versioning", "tagging", "object-lock"])?;
    Ok(match method {
        Method::Get if q.has("location") => Op::GetBucketLocation,
        Method::Get if q.has("versioning") => Op::GetBucketVersioning,
        Method::Put if q.has("versioning") => Op::PutBucketVersioning,
        Method::Get if q.has("tagging") => Op::GetBucketTagging,
        Method::Put if q.has("tagging") => Op::PutBucketTagging,
        Method::Delete if q.has("tagging") => Op::DeleteBucketTagging,
        Method::Get if q.has("object-lock") => Op::GetObjectLockConfiguration,
        Method::Put if q.has("object-lock") => Op::PutObjectLockConfiguration,
        _ if q.has("versioning") || q.has("object-lock") || q.has("tagging") => {
            return Err(S3Error::new(S3ErrorCode::MethodNotAllowed))
        }
        Method::Get if q.has("acl") => Op::GetBucketAcl,
        _ if q.has("acl") => return Err(not_implemented("acl")),
        Method::Get if q.has("uploads") => Op::ListMultipartUploads,
        Method::Get if q.has("versions") => Op::ListObjectVersions,
        Method::Post if q.has("delete") => Op::DeleteObjects,
        _ if unsupported(q).is_some() => {
            return Err(not_implemented(unsupported(q).unwrap_or("sub-resource")))
        }
        Method::Get if q.get("list-type") == Some("2") => Op::ListObjectsV2,
        Method::Get => Op::ListObjectsV1,
        Method::Put => Op::CreateBucket,
        Method::Head => Op::HeadBucket,
        Method::Delete => Op::DeleteBucket,
        Method::Post => return Err(not_implemented("POST object upload")),
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
    check_write_params(method, q, &["tagging", "retention", "legal-hold", "versionId"])?;
    Ok(Some(op))
}

fn object_op(method: Method, q: &Query) -> S3Result<Op> {
    if let Some(op) = object_subresource_op(method, q)? {
        return Ok(op);
    }
    // `POST ?select&select-type=2` (select-type is the API's version: 2 is the only one).
    if method == Method::Post && q.has("select") {
        check_write_params(method, q, &["select", "select-type", "versionId"])?;
        if q.get("select-type").is_some_and(|t| t != "2") {
            return Err(S3Error::with_message(S3ErrorCode::InvalidArgument, "select-type must be 2"));
        }
        return Ok(Op::SelectObjectContent);
    }
    if let Some(what) = unsupported(q) {
        return Err(not_implemented(what));
    }
    check_write_params(method, q, &["partNumber", "uploadId", "uploads", "versionId", "acl"])?;
    Ok(match method {
        Method::Get if q.has("acl") => Op::GetObjectAcl,
        _ if q.has("acl") => return Err(not_implemented("acl")),
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
            (Put, "/b/k", "acl", S3ErrorCode::NotImplemented),
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
            (Put, "/b", "cors", S3ErrorCode::NotImplemented),
            (Put, "/b/k", "renameObject", S3ErrorCode::NotImplemented),
            (Post, "/b", "someNewThing", S3ErrorCode::NotImplemented),
            (Get, "/b/k", "select&select-type=2", S3ErrorCode::NotImplemented),
            (Post, "/b/k", "select&select-type=3", S3ErrorCode::InvalidArgument),
            (Post, "/b/k", "select&renameObject", S3ErrorCode::NotImplemented),
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
