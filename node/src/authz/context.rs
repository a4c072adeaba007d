//! The condition keys of a request (`aws:*` global keys and the `s3:*`
//! keys S3 defines), built once per request when a policy is evaluated.

use std::net::IpAddr;

use tessera_policy::Context;
use tessera_proto::http::RequestHead;
use tessera_proto::router::{Op, Routed};
use tessera_proto::sigv4::{AuthContext, AuthKind};

use super::principal::Principal;

/// Request headers exposed as `s3:<header>` condition keys.
const HEADER_KEYS: &[&str] = &[
    "x-amz-acl",
    "x-amz-grant-read",
    "x-amz-grant-write",
    "x-amz-grant-read-acp",
    "x-amz-grant-write-acp",
    "x-amz-grant-full-control",
    "x-amz-copy-source",
    "x-amz-metadata-directive",
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-storage-class",
    "x-amz-website-redirect-location",
    "x-amz-content-sha256",
    "x-amz-object-ownership",
];

/// Everything a request's condition keys come from.
pub struct RequestFacts<'a> {
    pub head: &'a RequestHead,
    pub routed: &'a Routed,
    pub auth: Option<&'a AuthContext>,
    pub peer: IpAddr,
    /// Whether the request came over TLS (`aws:SecureTransport`).
    pub secure: bool,
    pub now_unix: i64,
}

pub fn build(p: &Principal, r: &RequestFacts<'_>) -> Context {
    let mut c = Context::new();
    // An IPv4 client on a dual-stack socket shows as ::ffff:a.b.c.d.
    let ip = match r.peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(r.peer),
        v4 => v4,
    };
    c.insert("aws:SourceIp", ip.to_string());
    c.insert("aws:SecureTransport", if r.secure { "true" } else { "false" });
    c.insert("aws:CurrentTime", tessera_policy::time::format_iso8601(r.now_unix));
    c.insert("aws:EpochTime", r.now_unix.to_string());
    c.insert("aws:PrincipalType", p.principal_type());
    let h = &r.head.headers;
    if let Some(ua) = h.get("user-agent") {
        c.insert("aws:UserAgent", ua);
    }
    if let Some(referer) = h.get("referer") {
        c.insert("aws:Referer", referer);
    }
    if !p.facts.anonymous {
        c.insert("aws:PrincipalArn", p.facts.arn.clone());
        c.insert("aws:PrincipalAccount", p.account_id());
        c.insert("aws:userid", p.user_id());
        if let Some(name) = p.user_name() {
            c.insert("aws:username", name);
        }
    }
    if let Some(a) = r.auth {
        let (version, kind) = match a.kind {
            AuthKind::HeaderV4 => ("AWS4-HMAC-SHA256", "REST-HEADER"),
            AuthKind::PresignedV4 => ("AWS4-HMAC-SHA256", "REST-QUERY-STRING"),
            AuthKind::HeaderV2 => ("AWS", "REST-HEADER"),
            AuthKind::PresignedV2 => ("AWS", "REST-QUERY-STRING"),
        };
        c.insert("s3:signatureversion", version);
        c.insert("s3:authType", kind);
    }
    for name in HEADER_KEYS {
        if let Some(v) = h.get(name) {
            c.insert(&format!("s3:{name}"), v.trim());
        }
    }
    let q = &r.routed.query;
    if matches!(r.routed.op, Op::ListObjectsV1 | Op::ListObjectsV2 | Op::ListObjectVersions | Op::ListMultipartUploads) {
        for (key, param) in [("s3:prefix", "prefix"), ("s3:delimiter", "delimiter"), ("s3:max-keys", "max-keys")] {
            if let Some(v) = q.get(param) {
                c.insert(key, v);
            }
        }
    }
    if let Some(v) = q.get("versionId") {
        c.insert("s3:VersionId", v);
    }
    if let Some(tags) = h.get("x-amz-tagging") {
        let mut keys = Vec::new();
        if let Ok(parsed) = tessera_proto::router::Query::parse(tags) {
            for (k, v) in parsed.iter() {
                c.insert(&format!("s3:RequestObjectTag/{k}"), v);
                keys.push(k.to_string());
            }
        }
        c.set("s3:RequestObjectTagKeys", keys);
    }
    if let Some(m) = h.get("x-amz-object-lock-mode") {
        c.insert("s3:object-lock-mode", m.trim());
    }
    if let Some(d) = h.get("x-amz-object-lock-retain-until-date") {
        c.insert("s3:object-lock-retain-until-date", d.trim());
        if let Some(until) = tessera_policy::time::parse_date(d) {
            let days = ((until - r.now_unix).max(0) + 86_399) / 86_400;
            c.insert("s3:object-lock-remaining-retention-days", days.to_string());
        }
    }
    if let Some(l) = h.get("x-amz-object-lock-legal-hold") {
        c.insert("s3:object-lock-legal-hold", l.trim());
    }
    c
}

/// The context of one object: the request's, plus the object's tags as
/// `s3:ExistingObjectTag/<key>`.
pub fn with_object_tags(base: &Context, tags: &[(String, String)]) -> Option<Context> {
    if tags.is_empty() {
        return None;
    }
    let mut c = base.clone();
    for (k, v) in tags {
        c.insert(&format!("s3:ExistingObjectTag/{k}"), v.clone());
    }
    Some(c)
}
