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
use crate::sigv4::{AuthContext, AuthKind, PayloadMode, SigRequest, MAX_CLOCK_SKEW_SECS, MAX_PRESIGN_EXPIRES_SECS};
use crate::time::{parse_amz_date, parse_http_date};

/// Sub-resources that go in the canonical resource (union of the AWS documentation,
/// botocore and minio-go lists). Sorted: looked up by binary search.
pub const SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "defaultObjectAcl",
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

/// The canonical resource: `/bucket` + the path as sent (for a virtual-hosted request;
/// a path-style request already starts with its bucket) + `?` + the sub-resources
/// sorted by name, values decoded, an empty value written as the bare name. A
/// bucket-level request's resource ends with `/` in both styles (`/bucket/`), as
/// AWS and botocore have it.
pub fn canonical_resource(path: &str, query: &str, vhost_bucket: Option<&str>) -> String {
    let mut out = String::with_capacity(path.len() + 32);
    if let Some(bucket) = vhost_bucket {
        out.push('/');
        out.push_str(bucket);
    }
    out.push_str(if path.is_empty() { "/" } else { path });
    if vhost_bucket.is_none() && out.len() > 1 && out.rfind('/') == Some(0) {
        out.push('/');
    }
    let mut subs: Vec<(Cow<'_, str>, Cow<'_, str>)> = query
        .split('&')
        .filter_map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            let name = crate::sigv4::decode_component(n);
            SUBRESOURCES.binary_search(&name.as_ref()).ok()?;
            Some((name, crate::sigv4::decode_component(v)))
        })
        .collect();
    subs.sort_by(|a, b| a.0.cmp(&b.0));
    for (i, (name, value)) in subs.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(name);
        if !value.is_empty() {
            out.push('=');
            out.push_str(value);
        }
    }
    out
}

/// The `x-amz-*` headers, sorted by name, repeated values joined with `,`, each line
/// ending in `\n`. `x-amz-date` is one of them.
pub fn canonical_amz_headers(headers: &Headers) -> String {
    let mut names: Vec<&str> = headers.iter().map(|(n, _)| n).filter(|n| n.starts_with("x-amz-")).collect();
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

/// The Date line of a header-signed request: empty when `x-amz-date` is sent (AWS:
/// "if you include the x-amz-date header, use the empty string for the Date"), else
/// the `Date` header.
pub fn date_line(headers: &Headers) -> &str {
    if headers.contains("x-amz-date") {
        ""
    } else {
        headers.get("date").unwrap_or("")
    }
}

/// The string to sign; `date_line` is [`date_line`] for a header-signed request or
/// the `Expires` value for the query form. `resource` from [`canonical_resource`].
pub fn string_to_sign(method: &str, headers: &Headers, date_line: &str, resource: &str) -> String {
    format!(
        "{}\n{}\n{}\n{}\n{}{}",
        method,
        headers.get("content-md5").unwrap_or(""),
        headers.get("content-type").unwrap_or(""),
        date_line,
        canonical_amz_headers(headers),
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
    let resource = canonical_resource(path, query, None);
    let sig = sign(secret, &string_to_sign(method, headers, date_line(headers), &resource));
    format!("AWS {access_key}:{sig}")
}

/// Verifies `signature_b64` over the one string to sign the request has. Building
/// it is linear in the size of the head; exactly one HMAC is computed.
fn verify(
    req: &SigRequest<'_>,
    vhost_bucket: Option<&str>,
    date_line: &str,
    secret: &str,
    signature_b64: &str,
) -> Result<(), S3Error> {
    let mismatch = || S3Error::new(S3ErrorCode::SignatureDoesNotMatch);
    let provided = BASE64.decode(signature_b64.trim()).map_err(|_| mismatch())?;
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let resource = canonical_resource(req.path, req.query, vhost_bucket);
    let sts = string_to_sign(req.method, req.headers, date_line, &resource);
    hmac::verify(&key, sts.as_bytes(), &provided).map_err(|_| mismatch())
}

/// SigV2 signs no `x-tessera-*` header (only `x-amz-*` ones), so a request
/// carrying one (a replica write's version id) is refused: it needs SigV4,
/// which must sign it.
fn refuse_unsigned_tessera_headers(req: &SigRequest<'_>) -> Result<(), S3Error> {
    match req.headers.iter().find(|(n, _)| n.starts_with("x-tessera-")) {
        Some((n, _)) => Err(S3Error::with_message(
            S3ErrorCode::AccessDenied,
            format!("{n} needs AWS Signature Version 4 with the header signed"),
        )),
        None => Ok(()),
    }
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
    refuse_unsigned_tessera_headers(req)?;
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
    verify(req, vhost_bucket, date_line(req.headers), &secret, signature)?;
    Ok(AuthContext {
        access_key: access_key.to_string(),
        security_token: None,
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
    refuse_unsigned_tessera_headers(req)?;
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
    if expires_at - now_unix_secs > MAX_PRESIGN_EXPIRES_SECS {
        return Err(S3Error::with_message(
            S3ErrorCode::AccessDenied,
            "Expires must be less than a week (604800 seconds) in the future",
        ));
    }
    // The query parameters of the signature itself are not sub-resources; a
    // signature sent with a raw '+' may have been read as a space by a proxy.
    let signature = signature.replace(' ', "+");
    verify(req, vhost_bucket, expires, &secret, &signature)?;
    Ok(AuthContext {
        access_key: access_key.to_string(),
        security_token: None,
        payload: PayloadMode::Unsigned,
        kind: AuthKind::PresignedV2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subresource_lists_are_sorted() {
        assert!(SUBRESOURCES.windows(2).all(|w| w[0] < w[1]), "{SUBRESOURCES:?}");
    }

    #[test]
    fn canonical_resources() {
        let r = canonical_resource;
        assert_eq!(r("/b/k", "", None), "/b/k");
        assert_eq!(r("", "", Some("b")), "/b/");
        assert_eq!(r("/k", "acl", Some("b")), "/b/k?acl");
        assert_eq!(r("/b/k", "versionId=3%2Fx&acl", None), "/b/k?acl&versionId=3/x");
        assert_eq!(r("/b", "prefix=p&marker=m&encoding-type=url", None), "/b/");
        assert_eq!(r("/b", "uploads&prefix=x", None), "/b/?uploads");
        assert_eq!(r("/b/k", "uploadId=u&partNumber=2", None), "/b/k?partNumber=2&uploadId=u");
        assert_eq!(r("/b", "delete=", None), "/b/?delete");
        assert_eq!(r("/b/", "delete", None), "/b/?delete");
        assert_eq!(r("/", "", None), "/");
    }

    /// The worked example of the S3 developer guide ("RESTAuthentication", GET object
    /// from bucket johnsmith, AKIAIOSFODNN7EXAMPLE / wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY).
    #[test]
    fn aws_documented_get_object_example() {
        let mut h = Headers::new();
        h.push("Host", "johnsmith.s3.amazonaws.com");
        h.push("Date", "Tue, 27 Mar 2007 19:36:42 +0000");
        let resource = canonical_resource("/photos/puppy.jpg", "", Some("johnsmith"));
        let sts = string_to_sign("GET", &h, "Tue, 27 Mar 2007 19:36:42 +0000", &resource);
        assert_eq!(sts, "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/johnsmith/photos/puppy.jpg");
        assert_eq!(sign("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", &sts), "bWq2s1WEIj+Ydj0vQ697zp+IXMU=");
    }
}
