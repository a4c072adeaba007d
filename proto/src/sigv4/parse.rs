//! Parsing what a V4 request claims: the `Authorization` header, the credential
//! and its scope, SignedHeaders, the signature, the payload hash claim; and the
//! S3 errors these checks answer with.

use super::{
    ALGORITHM, MAX_SIGNED_HEADERS, STREAMING_PAYLOAD, STREAMING_PAYLOAD_TRAILER, STREAMING_UNSIGNED_PAYLOAD_TRAILER,
    UNSIGNED_PAYLOAD,
};
use crate::error::{S3Error, S3ErrorCode};

/// A parsed credential: `AKID/YYYYMMDD/region/service/aws4_request`.
pub(super) struct Credential<'a> {
    pub(super) access_key: &'a str,
    pub(super) date: &'a str,
    pub(super) region: &'a str,
}

pub(super) fn parse_credential(value: &str) -> Result<Credential<'_>, &'static str> {
    parse_credential_for(value, &["s3"]).map(|(c, _)| c)
}

/// A credential scoped to one of `services` (S3 requests accept only `s3`;
/// the query APIs `iam` and `sts`), with the service it names.
pub(super) fn parse_credential_for<'v>(value: &'v str, services: &[&str]) -> Result<(Credential<'v>, &'v str), &'static str> {
    let mut parts = value.rsplitn(5, '/');
    let terminator = parts.next().unwrap_or_default();
    let service = parts.next().unwrap_or_default();
    let region = parts.next().unwrap_or_default();
    let date = parts.next().unwrap_or_default();
    let access_key = parts.next().unwrap_or_default();
    // boto3 clients of the global IAM/STS endpoints made with `region_name=''`
    // sign with an empty region; S3 credentials must name one.
    let region_needed = service == "s3" || !services.contains(&service);
    if access_key.is_empty() || (region.is_empty() && region_needed) || terminator != "aws4_request" {
        return Err(
            "the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".",
        );
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err("incorrect date format. This date in the credential must be in the format \"yyyyMMdd\".");
    }
    if !services.contains(&service) {
        return Err("incorrect service. This endpoint belongs to \"s3\".");
    }
    if !region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err("the region is mal-formed.");
    }
    Ok((Credential { access_key, date, region }, service))
}

pub(super) fn parse_signed_headers(value: &str) -> Result<Vec<&str>, &'static str> {
    let names: Vec<&str> = value.split(';').collect();
    if names.len() > MAX_SIGNED_HEADERS || names.iter().any(|n| n.is_empty()) {
        return Err("the SignedHeaders list is mal-formed.");
    }
    if !names.iter().any(|n| n.eq_ignore_ascii_case("host")) {
        return Err("the host header must be signed.");
    }
    Ok(names)
}

pub(super) fn parse_signature(value: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(value, &mut out).ok()?;
    Some(out)
}

pub(super) fn header_malformed(detail: &str) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::AuthorizationHeaderMalformed,
        format!("The authorization header is malformed; {detail}"),
    )
}

pub(super) fn query_malformed(message: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::AuthorizationQueryParametersError, message)
}

pub(super) fn access_denied(message: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::AccessDenied, message)
}

/// The three fields of a V4 `Authorization` header.
pub(super) struct HeaderAuth<'a> {
    pub(super) credential: Credential<'a>,
    pub(super) signed_headers: Vec<&'a str>,
    pub(super) signature: Option<[u8; 32]>,
}

pub(super) fn parse_authorization(value: &str) -> Result<HeaderAuth<'_>, S3Error> {
    parse_authorization_for(value, &["s3"]).map(|(h, _)| h)
}

pub(super) fn parse_authorization_for<'v>(value: &'v str, services: &[&str]) -> Result<(HeaderAuth<'v>, &'v str), S3Error> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with(' '))
        .ok_or_else(|| header_malformed("the authorization type is not AWS4-HMAC-SHA256."))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (key, val) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| header_malformed("the authorization component is not a key=value pair."))?;
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => return Err(header_malformed("unknown authorization component.")),
        };
        if slot.replace(val).is_some() {
            return Err(header_malformed("repeated authorization component."));
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(header_malformed(
            "the authorization header requires Credential, SignedHeaders and Signature.",
        ));
    };
    let (credential, service) = parse_credential_for(credential, services).map_err(header_malformed)?;
    Ok((
        HeaderAuth {
            credential,
            signed_headers: parse_signed_headers(signed).map_err(header_malformed)?,
            signature: parse_signature(signature),
        },
        service,
    ))
}

/// What `x-amz-content-sha256` (or the presign parameter) said about the body.
pub(super) enum PayloadClaim {
    Unsigned,
    Sha256([u8; 32]),
    Streaming { trailer: bool },
    StreamingUnsignedTrailer,
}

pub(super) fn parse_payload_claim(value: &str) -> Result<PayloadClaim, S3Error> {
    Ok(match value {
        UNSIGNED_PAYLOAD => PayloadClaim::Unsigned,
        STREAMING_PAYLOAD => PayloadClaim::Streaming { trailer: false },
        STREAMING_PAYLOAD_TRAILER => PayloadClaim::Streaming { trailer: true },
        STREAMING_UNSIGNED_PAYLOAD_TRAILER => PayloadClaim::StreamingUnsignedTrailer,
        _ => PayloadClaim::Sha256(parse_signature(value).ok_or_else(|| {
            S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, \
                 STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER \
                 or a valid sha256 value.",
            )
        })?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_parse() {
        let c = parse_credential("AKID/20130524/us-east-1/s3/aws4_request").map_err(|_| ()).unwrap();
        assert_eq!((c.access_key, c.date, c.region), ("AKID", "20130524", "us-east-1"));
        for bad in [
            "",
            "AKID/20130524/us-east-1/s3",
            "/20130524/us-east-1/s3/aws4_request",
            "AKID/2013052/us-east-1/s3/aws4_request",
            "AKID/20130524/us-east-1/ec2/aws4_request",
            "AKID/20130524//s3/aws4_request",
            "AKID/20130524/us east/s3/aws4_request",
            "AKID/20130524/us-east-1/s3/aws4_requests",
        ] {
            assert!(parse_credential(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn signed_headers_limits() {
        assert!(parse_signed_headers("host;x-amz-date").is_ok());
        assert!(parse_signed_headers("x-amz-date").is_err());
        assert!(parse_signed_headers("host;;x").is_err());
        let many = vec!["h"; MAX_SIGNED_HEADERS].join(";").replacen('h', "host", 1);
        assert!(parse_signed_headers(&many).is_ok());
        let too_many = format!("{many};x");
        assert!(parse_signed_headers(&too_many).is_err());
    }
}
