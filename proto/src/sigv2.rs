//! Legacy AWS Signature Version 2: `Authorization: AWS <AKID>:<base64 HMAC-SHA1>` and
//! the query form (`AWSAccessKeyId`, `Signature`, `Expires`). Reached through
//! [`crate::sigv4::authenticate`].
//!
//! String to sign:
//! `METHOD\nContent-MD5\nContent-Type\nDate\n<x-amz-* headers><resource>`, where the
//! resource is `[/bucket]` + the path as sent + the sub-resources, sorted.

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ring::hmac;

use crate::error::{S3Error, S3ErrorCode};
use crate::headers::Headers;
use crate::sigv4::{canonical_uri, AuthContext, AuthKind, PayloadMode, SigRequest, MAX_CLOCK_SKEW_SECS};
use crate::time::{parse_amz_date, parse_http_date};

/// Sub-resources that the clients we know sign (union of the AWS documentation,
/// botocore and minio-go). Sorted.
pub const SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "delete",
    "encryption",
    "inventory",
    "legal-hold",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "partNumber",
    "policy",
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "retention",
    "select",
    "select-type",
    "storageClass",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// botocore's list (`HmacV1Auth.QSAOfInterest`), tried when the union fails.
const BOTOCORE_SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "defaultObjectAcl",
    "delete",
    "inventory",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "partNumber",
    "policy",
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "select",
    "select-type",
    "storageClass",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// minio-go's list, tried last; it also writes `name` for an empty `name=`.
const MINIO_GO_SUBRESOURCES: &[&str] = &[
    "acl",
    "cors",
    "delete",
    "encryption",
    "legal-hold",
    "lifecycle",
    "location",
    "logging",
    "notification",
    "partNumber",
    "policy",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "retention",
    "select",
    "select-type",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// How a client lists sub-resources in the canonical resource.
#[derive(Debug, Clone, Copy)]
pub struct SubresourceRule {
    pub names: &'static [&'static str],
    /// `acl=` written as `acl` (minio-go) rather than as sent (botocore).
    pub drop_empty_equals: bool,
}

pub const RULE_UNION: SubresourceRule = SubresourceRule { names: SUBRESOURCES, drop_empty_equals: false };
const RULES: [SubresourceRule; 3] = [
    RULE_UNION,
    SubresourceRule { names: BOTOCORE_SUBRESOURCES, drop_empty_equals: false },
    SubresourceRule { names: MINIO_GO_SUBRESOURCES, drop_empty_equals: true },
];

/// The canonical resource: `[/bucket]` + `path` + `?` + sub-resources sorted by name,
/// values decoded.
pub fn canonical_resource(
    path: &str,
    query: &str,
    vhost_bucket: Option<&str>,
    rule: SubresourceRule,
) -> String {
    let mut out = String::with_capacity(path.len() + 32);
    if let Some(bucket) = vhost_bucket {
        out.push('/');
        out.push_str(bucket);
    }
    out.push_str(if path.is_empty() { "/" } else { path });
    let mut subs: Vec<(Cow<'_, str>, Option<Cow<'_, str>>)> = query
        .split('&')
        .filter_map(|p| {
            let (n, v) = match p.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (p, None),
            };
            let name = crate::sigv4::decode_component(n);
            if !rule.names.contains(&name.as_ref()) {
                return None;
            }
            let value = v.map(crate::sigv4::decode_component);
            let value = value.filter(|v| !(rule.drop_empty_equals && v.is_empty()));
            Some((name, value))
        })
        .collect();
    subs.sort_by(|a, b| a.0.cmp(&b.0));
    for (i, (name, value)) in subs.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(name);
        if let Some(v) = value {
            out.push('=');
            out.push_str(v);
        }
    }
    out
}

/// The `x-amz-*` headers, sorted by name, repeated values joined with `,`, each line
/// ending in `\n`. `x-amz-date` is one of them.
pub fn canonical_amz_headers(headers: &Headers) -> String {
    amz_headers(headers, false)
}

fn amz_headers(headers: &Headers, skip_amz_date: bool) -> String {
    let mut names: Vec<&str> = headers
        .iter()
        .map(|(n, _)| n)
        .filter(|n| n.starts_with("x-amz-") && !(skip_amz_date && *n == "x-amz-date"))
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut out = String::new();
    for name in names {
        out.push_str(name);
        out.push(':');
        for (i, v) in headers.get_all(name).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(v.trim());
        }
        out.push('\n');
    }
    out
}

/// The string to sign; `date_line` is the `Date` header, `""` when `x-amz-date` is
/// sent, or the `Expires` value for the query form. `resource` from
/// [`canonical_resource`].
pub fn string_to_sign(method: &str, headers: &Headers, date_line: &str, resource: &str) -> String {
    string_to_sign_with(method, headers, date_line, resource, false)
}

fn string_to_sign_with(
    method: &str,
    headers: &Headers,
    date_line: &str,
    resource: &str,
    skip_amz_date: bool,
) -> String {
    format!(
        "{}\n{}\n{}\n{}\n{}{}",
        method,
        headers.get("content-md5").unwrap_or(""),
        headers.get("content-type").unwrap_or(""),
        date_line,
        amz_headers(headers, skip_amz_date),
        resource
    )
}

/// Base64 HMAC-SHA1 of a string to sign.
pub fn sign(secret: &str, string_to_sign: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    BASE64.encode(hmac::sign(&key, string_to_sign.as_bytes()))
}

/// Client side: the `Authorization` value of a path-style request. `headers` must hold
/// `date` (or `x-amz-date`); path and query are raw, as they will be sent.
pub fn sign_request(
    method: &str,
    path: &str,
    query: &str,
    headers: &Headers,
    access_key: &str,
    secret: &str,
) -> String {
    let date_line = if headers.contains("x-amz-date") { "" } else { headers.get("date").unwrap_or("") };
    let resource = canonical_resource(path, query, None, RULE_UNION);
    let sig = sign(secret, &string_to_sign(method, headers, date_line, &resource));
    format!("AWS {access_key}:{sig}")
}

/// Verifies `signature_b64` over every candidate string to sign: each sub-resource
/// rule, with the path as sent and in its canonical encoding.
/// A candidate Date line, and whether x-amz-date then leaves the x-amz-* headers.
type DateLine<'a> = (&'a str, bool);

fn verify(
    req: &SigRequest<'_>,
    vhost_bucket: Option<&str>,
    date_lines: &[DateLine<'_>],
    secret: &str,
    signature_b64: &str,
) -> Result<(), S3Error> {
    let mismatch = || S3Error::new(S3ErrorCode::SignatureDoesNotMatch);
    let provided = BASE64.decode(signature_b64.trim()).map_err(|_| mismatch())?;
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let mut paths = vec![req.path.to_string(), canonical_uri(req.path)];
    // botocore signs a bucket-level path-style request as `/bucket/` while sending `/bucket`.
    if vhost_bucket.is_none() && req.path.len() > 1 && req.path.rfind('/') == Some(0) {
        paths.push(format!("{}/", req.path));
    }
    let mut tried: Vec<String> = Vec::with_capacity(8);
    for path in &paths {
        for rule in RULES {
            let resource = canonical_resource(path, req.query, vhost_bucket, rule);
            for &(date_line, skip_amz_date) in date_lines {
                let sts = string_to_sign_with(req.method, req.headers, date_line, &resource, skip_amz_date);
                if tried.contains(&sts) {
                    continue;
                }
                if hmac::verify(&key, sts.as_bytes(), &provided).is_ok() {
                    return Ok(());
                }
                tried.push(sts);
            }
        }
    }
    Err(mismatch())
}

fn invalid_header() -> S3Error {
    S3Error::with_message(
        S3ErrorCode::InvalidArgument,
        "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature",
    )
}

/// `Authorization: AWS AKID:signature`.
pub(crate) fn authenticate_header(
    req: &SigRequest<'_>,
    vhost_bucket: Option<&str>,
    value: &str,
    now_unix_secs: i64,
    secret_for: &dyn Fn(&str) -> Option<String>,
) -> Result<AuthContext, S3Error> {
    let rest = value.strip_prefix("AWS ").ok_or_else(invalid_header)?;
    let (access_key, signature) = rest.trim().rsplit_once(':').ok_or_else(invalid_header)?;
    if access_key.is_empty() || signature.is_empty() {
        return Err(invalid_header());
    }
    let secret = secret_for(access_key).ok_or_else(|| S3Error::new(S3ErrorCode::InvalidAccessKeyId))?;
    let amz_date = req.headers.get("x-amz-date");
    let date = req.headers.get("date");
    // x-amz-date wins over Date; V2 clients send it as an HTTP date, some in SigV4 form.
    let t = match (amz_date, date) {
        (Some(v), _) => parse_http_date(v).or_else(|| parse_amz_date(v)),
        (None, Some(v)) => parse_http_date(v),
        (None, None) => None,
    }
    .ok_or_else(|| {
        S3Error::with_message(
            S3ErrorCode::AccessDenied,
            "AWS authentication requires a valid Date or x-amz-date header",
        )
    })?;
    if now_unix_secs.abs_diff(t) > MAX_CLOCK_SKEW_SECS.unsigned_abs() {
        return Err(S3Error::new(S3ErrorCode::RequestTimeTooSkewed));
    }
    // With x-amz-date the Date line is empty (AWS's rule); some clients still put the
    // Date header there, and the documentation's own example puts x-amz-date there.
    let mut date_lines: Vec<DateLine<'_>> = Vec::with_capacity(3);
    match amz_date {
        Some(a) => {
            date_lines.push(("", false));
            date_lines.extend(date.map(|d| (d, false)));
            date_lines.push((a, true));
        }
        None => date_lines.extend(date.map(|d| (d, false))),
    }
    verify(req, vhost_bucket, &date_lines, &secret, signature)?;
    Ok(AuthContext {
        access_key: access_key.to_string(),
        payload: PayloadMode::Unsigned,
        kind: AuthKind::HeaderV2,
    })
}

/// `?AWSAccessKeyId=..&Signature=..&Expires=..`.
pub(crate) fn authenticate_query(
    req: &SigRequest<'_>,
    vhost_bucket: Option<&str>,
    params: &[(Cow<'_, str>, Cow<'_, str>)],
    now_unix_secs: i64,
    secret_for: &dyn Fn(&str) -> Option<String>,
) -> Result<AuthContext, S3Error> {
    let missing = || {
        S3Error::with_message(
            S3ErrorCode::AccessDenied,
            "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters",
        )
    };
    let single = |name: &str| -> Result<&str, S3Error> {
        let mut values = params.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_ref());
        match (values.next(), values.next()) {
            (Some(v), None) if !v.is_empty() => Ok(v),
            _ => Err(missing()),
        }
    };
    let access_key = single("AWSAccessKeyId")?;
    let signature = single("Signature")?;
    let expires = single("Expires")?;
    let secret = secret_for(access_key).ok_or_else(|| S3Error::new(S3ErrorCode::InvalidAccessKeyId))?;
    let expires_at: i64 = match expires.parse() {
        Ok(v) if expires.bytes().all(|b| b.is_ascii_digit()) => v,
        _ => {
            return Err(S3Error::with_message(
                S3ErrorCode::AccessDenied,
                "Invalid date (should be seconds since epoch)",
            ))
        }
    };
    if now_unix_secs > expires_at {
        return Err(S3Error::with_message(S3ErrorCode::AccessDenied, "Request has expired"));
    }
    // The query parameters of the signature itself are not sub-resources; a
    // signature sent with a raw '+' may have been read as a space by a proxy.
    let signature = signature.replace(' ', "+");
    verify(req, vhost_bucket, &[(expires, false)], &secret, &signature)?;
    Ok(AuthContext {
        access_key: access_key.to_string(),
        payload: PayloadMode::Unsigned,
        kind: AuthKind::PresignedV2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subresource_lists_are_sorted() {
        for list in [SUBRESOURCES, BOTOCORE_SUBRESOURCES, MINIO_GO_SUBRESOURCES] {
            assert!(list.windows(2).all(|w| w[0] < w[1]), "{list:?}");
        }
    }

    #[test]
    fn canonical_resources() {
        let r = |p, q, b| canonical_resource(p, q, b, RULE_UNION);
        assert_eq!(r("/b/k", "", None), "/b/k");
        assert_eq!(r("", "", Some("b")), "/b/");
        assert_eq!(r("/k", "acl", Some("b")), "/b/k?acl");
        assert_eq!(r("/b/k", "versionId=3%2Fx&acl", None), "/b/k?acl&versionId=3/x");
        assert_eq!(r("/b", "prefix=p&marker=m&encoding-type=url", None), "/b");
        assert_eq!(r("/b", "uploads&prefix=x", None), "/b?uploads");
        assert_eq!(r("/b/k", "uploadId=u&partNumber=2", None), "/b/k?partNumber=2&uploadId=u");
        let minio = SubresourceRule { names: MINIO_GO_SUBRESOURCES, drop_empty_equals: true };
        assert_eq!(canonical_resource("/b", "delete=", None, minio), "/b?delete");
        assert_eq!(r("/b", "delete=", None), "/b?delete=");
    }

    /// The worked example of the S3 developer guide ("RESTAuthentication", GET object
    /// from bucket johnsmith, AKIAIOSFODNN7EXAMPLE / wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY).
    #[test]
    fn aws_documented_get_object_example() {
        let mut h = Headers::new();
        h.push("Host", "johnsmith.s3.amazonaws.com");
        h.push("Date", "Tue, 27 Mar 2007 19:36:42 +0000");
        let resource = canonical_resource("/photos/puppy.jpg", "", Some("johnsmith"), RULE_UNION);
        let sts = string_to_sign("GET", &h, "Tue, 27 Mar 2007 19:36:42 +0000", &resource);
        assert_eq!(sts, "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/johnsmith/photos/puppy.jpg");
        assert_eq!(sign("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", &sts), "bWq2s1WEIj+Ydj0vQ697zp+IXMU=");
    }
}
