//! Client side: the `Authorization` value of a request and the query string of a
//! presigned URL (tests, the bench tool and the node's own outgoing requests).

use percent_encoding::percent_encode;

use super::canonical::{canonical_query, canonical_request, canonical_uri, string_to_sign, STRICT};
use super::keys::{credential_scope, signature_hex, signing_key};
use super::{ALGORITHM, UNSIGNED_PAYLOAD};
use crate::headers::Headers;
use crate::time::format_amz_date;

/// Headers a client never signs (they change in transit or are the signature).
const UNSIGNABLE: [&str; 5] =
    ["authorization", "user-agent", "expect", "x-amzn-trace-id", "transfer-encoding"];

fn headers_to_sign(headers: &Headers) -> Vec<&str> {
    let mut names: Vec<&str> = headers.iter().map(|(n, _)| n).filter(|n| !UNSIGNABLE.contains(n)).collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Client side: the `Authorization` value for a request. `headers` must already hold
/// `host`, `x-amz-date` (= `format_amz_date(unix_secs)`) and, for S3,
/// `x-amz-content-sha256` (= `payload_hash`); every header but the unsignable ones is
/// signed. Path and query are raw, as they will be sent.
#[allow(clippy::too_many_arguments)]
pub fn sign_request(
    method: &str,
    path: &str,
    query: &str,
    headers: &Headers,
    payload_hash: &str,
    access_key: &str,
    secret: &str,
    region: &str,
    unix_secs: i64,
) -> String {
    let amz_date = format_amz_date(unix_secs);
    let date = &amz_date[..8];
    let signed = headers_to_sign(headers);
    let creq = canonical_request(
        method,
        &canonical_uri(path),
        &canonical_query(query, false),
        headers,
        &signed,
        payload_hash,
    );
    let scope = credential_scope(date, region, "s3");
    let sig =
        signature_hex(&signing_key(secret, date, region, "s3"), &string_to_sign(&amz_date, &scope, &creq));
    format!(
        "{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={}, Signature={sig}",
        signed.join(";")
    )
}

/// Client side: the query string of a presigned URL (the given `query` plus the
/// `X-Amz-*` parameters and the signature). Signs `headers` (at least `host`).
#[allow(clippy::too_many_arguments)]
pub fn presign_query(
    method: &str,
    path: &str,
    query: &str,
    headers: &Headers,
    access_key: &str,
    secret: &str,
    region: &str,
    unix_secs: i64,
    expires_secs: i64,
) -> String {
    let amz_date = format_amz_date(unix_secs);
    let date = &amz_date[..8];
    let scope = credential_scope(date, region, "s3");
    let signed = headers_to_sign(headers);
    let credential = percent_encode(format!("{access_key}/{scope}").as_bytes(), STRICT).to_string();
    let signed_list = percent_encode(signed.join(";").as_bytes(), STRICT).to_string();
    let mut full = String::from(query);
    if !full.is_empty() {
        full.push('&');
    }
    full.push_str(&format!(
        "X-Amz-Algorithm={ALGORITHM}&X-Amz-Credential={credential}&X-Amz-Date={amz_date}\
         &X-Amz-Expires={expires_secs}&X-Amz-SignedHeaders={signed_list}"
    ));
    let creq = canonical_request(
        method,
        &canonical_uri(path),
        &canonical_query(&full, true),
        headers,
        &signed,
        UNSIGNED_PAYLOAD,
    );
    let sig =
        signature_hex(&signing_key(secret, date, region, "s3"), &string_to_sign(&amz_date, &scope, &creq));
    full.push_str("&X-Amz-Signature=");
    full.push_str(&sig);
    full
}
