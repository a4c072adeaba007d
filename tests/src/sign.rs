//! SigV4 for raw requests.
//!
//! Raw requests are signed with the project's one signer,
//! `tessera_proto::sigv4::sign_request`. Because a canonicalization bug
//! shared by that signer and the server's verifier would cancel out,
//! `tests/signer.rs` checks the project's signer against `aws-sigv4` (the
//! signer inside the AWS SDKs) over a table of requests, and the SDK-driven
//! tests sign everything with `aws-sigv4` anyway. [`sign_headers_reference`]
//! is also what imitates clients that sign the path exactly as sent.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use tessera_proto::sigv4;
use tessera_proto::Headers;

pub const REGION: &str = "us-east-1";

/// What the `x-amz-content-sha256` header says about the body.
#[derive(Debug, Clone)]
pub enum Payload<'a> {
    /// The hex SHA-256 of these bytes.
    Bytes(&'a [u8]),
    /// `UNSIGNED-PAYLOAD`.
    Unsigned,
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER` (aws-chunked body, checksum trailer).
    StreamingUnsignedTrailer,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` (aws-chunked, signed chunks).
    StreamingSigned,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER` (signed chunks, signed trailer).
    StreamingSignedTrailer,
}

impl Payload<'_> {
    pub fn hash_header(&self) -> String {
        match self {
            Payload::Bytes(b) => sha256_hex(b),
            Payload::Unsigned => sigv4::UNSIGNED_PAYLOAD.to_string(),
            Payload::StreamingUnsignedTrailer => sigv4::STREAMING_UNSIGNED_PAYLOAD_TRAILER.to_string(),
            Payload::StreamingSigned => sigv4::STREAMING_PAYLOAD.to_string(),
            Payload::StreamingSignedTrailer => sigv4::STREAMING_PAYLOAD_TRAILER.to_string(),
        }
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

pub fn unix_secs(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).expect("time after 1970").as_secs() as i64
}

/// The SigV4 headers (`x-amz-date`, `x-amz-content-sha256`,
/// `authorization`) for a request, from tessera-proto's signer. `target` is
/// the path and query as sent; `headers` must include `host`.
pub fn sign_headers(
    method: &str,
    target: &str,
    headers: &[(String, String)],
    payload: Payload<'_>,
    access_key: &str,
    secret_key: &str,
    time: SystemTime,
) -> Vec<(String, String)> {
    let secs = unix_secs(time);
    let amz_date = tessera_proto::time::format_amz_date(secs);
    let hash = payload.hash_header();
    let mut all = Headers::new();
    for (n, v) in headers {
        all.push(n, v);
    }
    all.push("x-amz-date", &amz_date);
    all.push("x-amz-content-sha256", &hash);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let auth = sigv4::sign_request(method, path, query, &all, &hash, access_key, secret_key, REGION, secs);
    vec![
        ("x-amz-date".into(), amz_date),
        ("x-amz-content-sha256".into(), hash),
        ("Authorization".into(), auth),
    ]
}

/// Same as [`sign_headers`] with `aws-sigv4`, the AWS reference signer,
/// which signs the path exactly as given (no re-encoding).
/// Returns the headers and the hex signature.
pub fn sign_headers_reference(
    method: &str,
    uri: &str,
    headers: &[(String, String)],
    payload: Payload<'_>,
    access_key: &str,
    secret_key: &str,
    time: SystemTime,
) -> (Vec<(String, String)>, String) {
    let identity: Identity = Credentials::new(access_key, secret_key, None, None, "tessera-tests").into();
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("s3")
        .time(time)
        .settings(settings)
        .build()
        .expect("signing params")
        .into();
    let body = match payload {
        Payload::Bytes(b) => SignableBody::Bytes(b),
        Payload::Unsigned => SignableBody::UnsignedPayload,
        Payload::StreamingUnsignedTrailer => SignableBody::StreamingUnsignedPayloadTrailer,
        Payload::StreamingSigned => SignableBody::Precomputed(sigv4::STREAMING_PAYLOAD.to_string()),
        Payload::StreamingSignedTrailer => SignableBody::StreamingSignedPayloadTrailer,
    };
    let request = SignableRequest::new(method, uri, headers.iter().map(|(n, v)| (n.as_str(), v.as_str())), body)
        .unwrap_or_else(|e| panic!("signable request {method} {uri}: {e}"));
    let (instructions, signature) = sign(request, &params).expect("sign").into_parts();
    let (new_headers, _params) = instructions.into_parts();
    (
        new_headers
            .into_iter()
            .map(|h| (h.name().to_string(), h.value().to_string()))
            .collect(),
        signature,
    )
}
