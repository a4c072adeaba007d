//! Authentication of a request by whichever mechanism it uses (SigV4 header or
//! presigned URL, SigV2 header or query, none), and of the IAM and STS query API
//! requests served on the same endpoint.

use super::canonical::{canonical_query, parse_query};
use super::keys::{credential_scope, derive_key};
use super::parse::{access_denied, header_malformed, parse_authorization_for};
use super::verify::{
    authenticate_header_v4, authenticate_presigned_v4, check_all_signed, lookup_secret, request_time, verify_v4,
    wrong_region, Check,
};
use super::{AuthContext, AuthKind, PayloadMode, SigRequest, SigningKeyCache, ALGORITHM, DEFAULT_REGION, MAX_CLOCK_SKEW_SECS};
use crate::error::{S3Error, S3ErrorCode};
use crate::headers::Headers;

/// The services of the AWS query protocol served on the S3 endpoint.
pub const QUERY_API_SERVICES: [&str; 2] = ["iam", "sts"];

/// The service named by a V4 Authorization header's credential scope, when
/// it is one of [`QUERY_API_SERVICES`] (how an IAM or STS request is told
/// from an S3 one on the same endpoint).
pub fn query_api_service(headers: &Headers) -> Option<&'static str> {
    let value = headers.get("authorization")?;
    let (_, service) = parse_authorization_for(value, &QUERY_API_SERVICES).ok()?;
    QUERY_API_SERVICES.iter().copied().find(|s| *s == service)
}

/// Authenticates an IAM or STS request (AWS query protocol: a form body
/// signed with SigV4 header auth). The body was read first; its SHA-256
/// is the payload hash (SDKs send no `x-amz-content-sha256` to these
/// services; one that is sent must agree). `regions`: the credential
/// scopes accepted (IAM is global and signed for us-east-1).
pub fn authenticate_query_api(
    req: &SigRequest<'_>,
    body_sha256_hex: &str,
    regions: &[&str],
    now_unix_secs: i64,
    secret_for: &dyn Fn(&str) -> Option<String>,
) -> Result<(AuthContext, &'static str), S3Error> {
    let value = req.headers.get("authorization").ok_or_else(|| access_denied("Missing Authentication Token"))?;
    let (auth, service) = parse_authorization_for(value, &QUERY_API_SERVICES)?;
    let service = QUERY_API_SERVICES.iter().copied().find(|s| *s == service).unwrap_or("sts");
    let cred = &auth.credential;
    if !regions.contains(&cred.region) {
        let expected = regions.first().copied().unwrap_or(DEFAULT_REGION);
        return Err(header_malformed(&wrong_region(cred.region, expected)));
    }
    let secret = lookup_secret(secret_for, cred.access_key)?;
    let (t, amz_date) = request_time(req.headers)?;
    if !amz_date.starts_with(cred.date) {
        return Err(header_malformed("Invalid credential date. Date is not the same as X-Amz-Date."));
    }
    if now_unix_secs.abs_diff(t) > MAX_CLOCK_SKEW_SECS.unsigned_abs() {
        return Err(S3Error::new(S3ErrorCode::RequestTimeTooSkewed));
    }
    if let Some(claimed) = req.headers.get("x-amz-content-sha256") {
        if !claimed.eq_ignore_ascii_case(body_sha256_hex) {
            return Err(S3Error::new(S3ErrorCode::XAmzContentSHA256Mismatch));
        }
    }
    check_all_signed(req.headers, &auth.signed_headers, None)?;
    let scope = credential_scope(cred.date, cred.region, service);
    let (_, hkey) = derive_key(None, &secret, cred.date, cred.region, service);
    let check = Check {
        req,
        signed_headers: &auth.signed_headers,
        canonical_query: &canonical_query(req.query, false),
        payload_hash: body_sha256_hex,
        amz_date: &amz_date,
        scope: &scope,
        key: &hkey,
    };
    verify_v4(&check, auth.signature.as_ref())?;
    let ctx = AuthContext {
        access_key: cred.access_key.to_string(),
        security_token: req.headers.get("x-amz-security-token").map(str::to_string),
        payload: PayloadMode::Unsigned,
        kind: AuthKind::HeaderV4,
    };
    Ok((ctx, service))
}

const V4_QUERY_PARAMS: [&str; 3] = ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature"];
const V2_QUERY_PARAMS: [&str; 2] = ["AWSAccessKeyId", "Signature"];

/// Authenticates a request by whichever mechanism it uses.
///
/// `Ok(None)`: no authentication information at all (anonymous request). Credentials
/// anywhere (header or query) are always verified; two mechanisms at once are refused.
/// SigV4 credentials must be scoped to [`DEFAULT_REGION`].
pub fn authenticate(
    req: &SigRequest,
    now_unix_secs: i64,
    secret_for: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<AuthContext>, S3Error> {
    authenticate_vhost(req, None, DEFAULT_REGION, now_unix_secs, secret_for)
}

/// As [`authenticate`], for a node serving `region` (SigV4 credential scopes must
/// name it), and for a virtual-hosted-style request whose bucket came from the
/// Host header: SigV2 signs `/<bucket><path>`, which the path alone doesn't show.
pub fn authenticate_vhost(
    req: &SigRequest,
    vhost_bucket: Option<&str>,
    region: &str,
    now_unix_secs: i64,
    secret_for: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<AuthContext>, S3Error> {
    authenticate_cached(req, vhost_bucket, region, now_unix_secs, secret_for, None)
}

/// As [`authenticate_vhost`], deriving SigV4 signing keys through `keys`
/// (a server keeps one cache per thread): the same decisions, less work.
pub fn authenticate_cached(
    req: &SigRequest,
    vhost_bucket: Option<&str>,
    region: &str,
    now_unix_secs: i64,
    secret_for: &dyn Fn(&str) -> Option<String>,
    keys: Option<&SigningKeyCache>,
) -> Result<Option<AuthContext>, S3Error> {
    let params = parse_query(req.query);
    // Detected in any case, so that a near-miss spelling is refused rather than
    // served anonymously; verification then wants the exact names.
    let has = |names: &[&str]| params.iter().any(|(n, _)| names.iter().any(|a| a.eq_ignore_ascii_case(n)));
    let (v4_query, v2_query) = (has(&V4_QUERY_PARAMS), has(&V2_QUERY_PARAMS));
    let mut authorization = req.headers.get_all("authorization");
    let header = authorization.next();
    let only_one = || {
        S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, \
             Signature query string parameter or the Authorization header should be specified",
        )
    };
    if authorization.next().is_some()
        || (v4_query && v2_query)
        || (header.is_some() && (v4_query || v2_query))
    {
        return Err(only_one());
    }
    let scheme = header.map(|v| v.split(' ').next().unwrap_or_default());
    let ctx = match (header, scheme) {
        (Some(value), Some(ALGORITHM)) => authenticate_header_v4(req, value, region, now_unix_secs, secret_for, keys)?,
        (Some(value), Some("AWS")) => {
            crate::sigv2::authenticate_header(req, vhost_bucket, value, now_unix_secs, secret_for)?
        }
        (Some(_), Some("AWS4-ECDSA-P256-SHA256")) => {
            return Err(S3Error::with_message(S3ErrorCode::NotImplemented, "SigV4a is not supported."));
        }
        (Some(_), _) => {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                "Unsupported Authorization Type",
            ));
        }
        (None, _) if v4_query => authenticate_presigned_v4(req, &params, region, now_unix_secs, secret_for, keys)?,
        (None, _) if v2_query => {
            crate::sigv2::authenticate_query(req, vhost_bucket, &params, now_unix_secs, secret_for)?
        }
        (None, _) => return Ok(None),
    };
    let mut ctx = ctx;
    ctx.security_token = req
        .headers
        .get("x-amz-security-token")
        .map(str::to_string)
        .or_else(|| params.iter().find(|(n, _)| n == "X-Amz-Security-Token").map(|(_, v)| v.to_string()));
    Ok(Some(ctx))
}
