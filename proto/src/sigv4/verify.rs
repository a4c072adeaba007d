//! Verification of SigV4 credentials: which headers must be signed, the
//! signature check itself, and the two V4 mechanisms, the `Authorization` header
//! and the presigned URL (dates, expiry, clock skew, region, payload claim).

use std::borrow::Cow;

use ring::hmac;

use super::canonical::{canonical_query, canonical_request, canonical_uri, string_to_sign};
use super::keys::{credential_scope, derive_key};
use super::parse::{
    access_denied, header_malformed, parse_authorization, parse_credential, parse_payload_claim, parse_signature,
    parse_signed_headers, query_malformed, PayloadClaim,
};
use super::{
    AuthContext, AuthKind, ChunkSigner, PayloadMode, SigRequest, SigningKeyCache, ALGORITHM, MAX_CLOCK_SKEW_SECS,
    MAX_PRESIGN_EXPIRES_SECS, UNSIGNED_PAYLOAD,
};
use crate::error::{S3Error, S3ErrorCode};
use crate::headers::Headers;
use crate::time::{format_amz_date, parse_amz_date, parse_http_date};

/// Whether a header present in the request must be listed in SignedHeaders: every
/// `x-amz-*` header (copy sources, metadata directives, checksums, ACLs, the payload
/// hash, the date and the session token alike) and `content-md5`, as S3 requires,
/// and tessera's own `x-tessera-*` (a replica write's version id: a presigned URL's
/// holder must not add one). `host` is required separately (it is always present).
pub fn must_be_signed(name: &str) -> bool {
    name.starts_with("x-amz-") || name.starts_with("x-tessera-") || name == "content-md5"
}

/// Refuses a request carrying a header that must be signed but is not in
/// `signed_headers`. For a presigned URL, `query` holds its parameters: an `x-amz-*`
/// value may ride there instead (the canonical query then covers it), so a header is
/// also accepted when the query carries the same name with the same value.
pub(super) fn check_all_signed(
    headers: &Headers,
    signed_headers: &[&str],
    query: Option<&[(Cow<'_, str>, Cow<'_, str>)]>,
) -> Result<(), S3Error> {
    let mut unsigned: Vec<&str> = Vec::new();
    for (name, value) in headers.iter() {
        if !must_be_signed(name) || signed_headers.iter().any(|s| s.eq_ignore_ascii_case(name)) {
            continue;
        }
        let in_query = query.is_some_and(|q| q.iter().any(|(n, v)| n.eq_ignore_ascii_case(name) && v == value));
        if !in_query && !unsigned.contains(&name) {
            unsigned.push(name);
        }
    }
    if unsigned.is_empty() {
        return Ok(());
    }
    Err(S3Error::with_message(
        S3ErrorCode::AccessDenied,
        "There were headers present in the request which were not signed",
    )
    .with_detail("HeadersNotSigned", unsigned.join(", ")))
}

/// AWS's answer to a credential scoped to another region than ours.
pub(super) fn wrong_region(found: &str, expected: &str) -> String {
    format!("the region '{found}' is wrong; expecting '{expected}'")
}

/// Everything needed to check one V4 signature.
pub(super) struct Check<'a> {
    pub(super) req: &'a SigRequest<'a>,
    pub(super) signed_headers: &'a [&'a str],
    pub(super) canonical_query: &'a str,
    pub(super) payload_hash: &'a str,
    pub(super) amz_date: &'a str,
    pub(super) scope: &'a str,
    /// The signing key, ready for HMAC.
    pub(super) key: &'a hmac::Key,
}

/// Verifies `provided` against the canonical path, then against the raw wire path
/// (clients that leave `=` and friends unencoded sign the raw form).
pub(super) fn verify_v4(check: &Check<'_>, provided: Option<&[u8; 32]>) -> Result<(), S3Error> {
    let mismatch = || S3Error::new(S3ErrorCode::SignatureDoesNotMatch);
    let provided = provided.ok_or_else(mismatch)?;
    let key = check.key;
    let canonical = canonical_uri(check.req.path);
    let raw = if check.req.path.is_empty() { "/" } else { check.req.path };
    let candidates: &[&str] = if raw == canonical { &[&canonical] } else { &[&canonical, raw] };
    for uri in candidates {
        let creq = canonical_request(
            check.req.method,
            uri,
            check.canonical_query,
            check.req.headers,
            check.signed_headers,
            check.payload_hash,
        );
        let sts = string_to_sign(check.amz_date, check.scope, &creq);
        if hmac::verify(key, sts.as_bytes(), provided).is_ok() {
            return Ok(());
        }
    }
    Err(mismatch())
}

pub(super) fn payload_mode(
    claim: PayloadClaim,
    key: &[u8; 32],
    amz_date: &str,
    scope: &str,
    signature: &[u8; 32],
) -> PayloadMode {
    match claim {
        PayloadClaim::Unsigned => PayloadMode::Unsigned,
        PayloadClaim::Sha256(d) => PayloadMode::Sha256(d),
        PayloadClaim::StreamingUnsignedTrailer => PayloadMode::StreamingUnsignedTrailer,
        PayloadClaim::Streaming { trailer } => PayloadMode::StreamingSigned {
            signer: ChunkSigner::new(key, amz_date, scope, &hex::encode(signature)),
            trailer,
        },
    }
}

/// The request time for header auth: `x-amz-date`, else `Date`; with the amz-format
/// text that goes in the string to sign.
pub(super) fn request_time(headers: &Headers) -> Result<(i64, String), S3Error> {
    let invalid = || access_denied("AWS authentication requires a valid Date or x-amz-date header");
    if let Some(v) = headers.get("x-amz-date") {
        let t = parse_amz_date(v).ok_or_else(invalid)?;
        return Ok((t, v.to_string()));
    }
    let t = headers.get("date").and_then(parse_http_date).ok_or_else(invalid)?;
    Ok((t, format_amz_date(t)))
}

pub(super) fn lookup_secret(secret_for: &dyn Fn(&str) -> Option<String>, access_key: &str) -> Result<String, S3Error> {
    secret_for(access_key).ok_or_else(|| S3Error::new(S3ErrorCode::InvalidAccessKeyId))
}

pub(super) fn authenticate_header_v4(
    req: &SigRequest<'_>,
    value: &str,
    region: &str,
    now_unix_secs: i64,
    secret_for: &dyn Fn(&str) -> Option<String>,
    keys: Option<&SigningKeyCache>,
) -> Result<AuthContext, S3Error> {
    let auth = parse_authorization(value)?;
    if auth.credential.region != region {
        return Err(header_malformed(&wrong_region(auth.credential.region, region)).with_detail("Region", region));
    }
    let secret = lookup_secret(secret_for, auth.credential.access_key)?;
    let (t, amz_date) = request_time(req.headers)?;
    if !amz_date.starts_with(auth.credential.date) {
        return Err(header_malformed("Invalid credential date. Date is not the same as X-Amz-Date."));
    }
    if now_unix_secs.abs_diff(t) > MAX_CLOCK_SKEW_SECS.unsigned_abs() {
        return Err(S3Error::new(S3ErrorCode::RequestTimeTooSkewed));
    }
    let payload_hash = req.headers.get("x-amz-content-sha256").ok_or_else(|| {
        S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            "Missing required header for this request: x-amz-content-sha256",
        )
    })?;
    let claim = parse_payload_claim(payload_hash)?;
    check_all_signed(req.headers, &auth.signed_headers, None)?;
    let cred = &auth.credential;
    let scope = credential_scope(cred.date, cred.region, "s3");
    let (key, hkey) = derive_key(keys, &secret, cred.date, cred.region, "s3");
    let check = Check {
        req,
        signed_headers: &auth.signed_headers,
        canonical_query: &canonical_query(req.query, false),
        payload_hash,
        amz_date: &amz_date,
        scope: &scope,
        key: &hkey,
    };
    verify_v4(&check, auth.signature.as_ref())?;
    let signature = auth.signature.unwrap_or_default();
    Ok(AuthContext {
        access_key: cred.access_key.to_string(),
        security_token: None,
        payload: payload_mode(claim, &key, &amz_date, &scope, &signature),
        kind: AuthKind::HeaderV4,
    })
}

/// The single value of a presign parameter; absent or repeated is an error.
fn single_param<'q>(params: &'q [(Cow<'q, str>, Cow<'q, str>)], name: &str) -> Result<&'q str, S3Error> {
    let mut values = params.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_ref());
    match (values.next(), values.next()) {
        (Some(v), None) => Ok(v),
        (Some(_), Some(_)) => Err(query_malformed("Query-string authentication parameters must not repeat.")),
        (None, _) => Err(query_malformed(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, \
             X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.",
        )),
    }
}

pub(super) fn authenticate_presigned_v4(
    req: &SigRequest<'_>,
    params: &[(Cow<'_, str>, Cow<'_, str>)],
    region: &str,
    now_unix_secs: i64,
    secret_for: &dyn Fn(&str) -> Option<String>,
    keys: Option<&SigningKeyCache>,
) -> Result<AuthContext, S3Error> {
    if single_param(params, "X-Amz-Algorithm")? != ALGORITHM {
        return Err(query_malformed("X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\""));
    }
    let credential = single_param(params, "X-Amz-Credential")?;
    let amz_date = single_param(params, "X-Amz-Date")?;
    let expires = single_param(params, "X-Amz-Expires")?;
    let signed_headers = single_param(params, "X-Amz-SignedHeaders")?;
    let signature = parse_signature(single_param(params, "X-Amz-Signature")?);
    let cred = parse_credential(credential).map_err(|detail| {
        query_malformed(&format!("Error parsing the X-Amz-Credential parameter; {detail}"))
    })?;
    let signed_headers = parse_signed_headers(signed_headers).map_err(|detail| {
        query_malformed(&format!("Error parsing the X-Amz-SignedHeaders parameter; {detail}"))
    })?;
    if cred.region != region {
        return Err(query_malformed(&format!(
            "Error parsing the X-Amz-Credential parameter; {}",
            wrong_region(cred.region, region)
        ))
        .with_detail("Region", region));
    }
    let secret = lookup_secret(secret_for, cred.access_key)?;
    let t = parse_amz_date(amz_date).ok_or_else(|| {
        query_malformed("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    })?;
    if !amz_date.starts_with(cred.date) {
        return Err(query_malformed("Invalid credential date. Date is not the same as X-Amz-Date."));
    }
    let expires_secs: i64 = match expires.parse::<i64>() {
        Ok(v) if expires.bytes().all(|b| b.is_ascii_digit()) => v,
        _ => return Err(query_malformed("X-Amz-Expires should be a number")),
    };
    if expires_secs > MAX_PRESIGN_EXPIRES_SECS {
        return Err(query_malformed("X-Amz-Expires must be less than a week (in seconds) that is; 604800"));
    }
    if t > now_unix_secs.saturating_add(MAX_CLOCK_SKEW_SECS) {
        return Err(access_denied("Request is not valid yet"));
    }
    // A URL valid for zero seconds is expired as soon as it exists.
    if expires_secs == 0 || now_unix_secs > t.saturating_add(expires_secs) {
        return Err(access_denied("Request has expired"));
    }
    let (payload_hash, claim) = match params.iter().find(|(n, _)| n == "X-Amz-Content-Sha256") {
        None => (UNSIGNED_PAYLOAD, PayloadClaim::Unsigned),
        Some((_, v)) => match parse_payload_claim(v)? {
            c @ (PayloadClaim::Unsigned | PayloadClaim::Sha256(_)) => (v.as_ref(), c),
            _ => {
                return Err(query_malformed(
                    "X-Amz-Content-Sha256 must be UNSIGNED-PAYLOAD or a sha256 value",
                ))
            }
        },
    };
    check_all_signed(req.headers, &signed_headers, Some(params))?;
    let scope = credential_scope(cred.date, cred.region, "s3");
    let (key, hkey) = derive_key(keys, &secret, cred.date, cred.region, "s3");
    let check = Check {
        req,
        signed_headers: &signed_headers,
        canonical_query: &canonical_query(req.query, true),
        payload_hash,
        amz_date,
        scope: &scope,
        key: &hkey,
    };
    verify_v4(&check, signature.as_ref())?;
    Ok(AuthContext {
        access_key: cred.access_key.to_string(),
        security_token: None,
        payload: payload_mode(claim, &key, amz_date, &scope, &signature.unwrap_or_default()),
        kind: AuthKind::PresignedV4,
    })
}
