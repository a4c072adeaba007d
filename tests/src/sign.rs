//! SigV4 for raw requests.
//!
//! The signature comes from `aws-sigv4`, the signer inside the AWS SDKs,
//! not from tessera's own code: a canonicalization bug shared by the
//! server's verifier and a signer of the same project would cancel out and
//! go unseen. There is still one implementation of signing in this
//! repository (in `tessera-proto`); the tests only call a reference one.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

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
}

/// Computes the SigV4 headers (`authorization`, `x-amz-date`,
/// `x-amz-content-sha256`) for a request to `uri` (absolute, path and query
/// already percent-encoded as sent). `headers` must include `host`; all of
/// them are signed except those AWS never signs (user-agent,
/// transfer-encoding).
pub fn sign_headers(
    method: &str,
    uri: &str,
    headers: &[(String, String)],
    payload: Payload<'_>,
    access_key: &str,
    secret_key: &str,
    time: SystemTime,
) -> Vec<(String, String)> {
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
    };
    let request = SignableRequest::new(method, uri, headers.iter().map(|(n, v)| (n.as_str(), v.as_str())), body)
        .unwrap_or_else(|e| panic!("signable request {method} {uri}: {e}"));
    let (instructions, _signature) = sign(request, &params).expect("sign").into_parts();
    let (new_headers, _params) = instructions.into_parts();
    new_headers.into_iter().map(|h| (h.name().to_string(), h.value().to_string())).collect()
}
