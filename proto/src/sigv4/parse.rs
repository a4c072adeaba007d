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
    // The last four '/'-separated fields, from the right (the access key
    // before them may hold '/'); missing fields are empty.
    let mut fields = [""; 4]; // terminator, service, region, date
    let mut rest = value;
    let mut access_key = "";
    for (n, field) in fields.iter_mut().enumerate() {
        match rest.bytes().rposition(|b| b == b'/') {
            Some(i) => {
                *field = &rest[i + 1..];
                rest = &rest[..i];
                if n == 3 {
                    access_key = rest;
                }
            }
            None => {
                *field = rest;
                break;
            }
        }
    }
    let [terminator, service, region, date] = fields;
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

/// `s` split at every `sep`, like `str::split` with an ASCII separator
/// (a byte scan: `str::split`'s searcher costs more than these short
/// header fields do).
fn split_ascii(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.bytes().position(|b| b == sep) {
            Some(i) => {
                rest = Some(&r[i + 1..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

pub(super) fn parse_signed_headers(value: &str) -> Result<Vec<&str>, &'static str> {
    let names: Vec<&str> = split_ascii(value, b';').collect();
    if names.len() > MAX_SIGNED_HEADERS || names.iter().any(|n| n.is_empty()) {
        return Err("the SignedHeaders list is mal-formed.");
    }
    if !names.iter().any(|n| n.eq_ignore_ascii_case("host")) {
        return Err("the host header must be signed.");
    }
    Ok(names)
}

/// 32 bytes from exactly 64 hex digits (either case).
pub(super) fn parse_signature(value: &str) -> Option<[u8; 32]> {
    fn nibble(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let v = value.as_bytes();
    if v.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(v.chunks_exact(2)) {
        *o = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
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
    for part in split_ascii(rest, b',') {
        let part = part.trim();
        let (key, val) = part
            .bytes()
            .position(|b| b == b'=')
            .map(|i| (&part[..i], &part[i + 1..]))
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
    /// The `str`-based parser these byte scans replaced, kept as the oracle.
    mod reference {
        use super::super::{header_malformed, Credential, HeaderAuth, ALGORITHM, MAX_SIGNED_HEADERS};
        use crate::error::S3Error;

        pub fn credential<'v>(value: &'v str, services: &[&str]) -> Result<(Credential<'v>, &'v str), &'static str> {
            let mut parts = value.rsplitn(5, '/');
            let terminator = parts.next().unwrap_or_default();
            let service = parts.next().unwrap_or_default();
            let region = parts.next().unwrap_or_default();
            let date = parts.next().unwrap_or_default();
            let access_key = parts.next().unwrap_or_default();
            let region_needed = service == "s3" || !services.contains(&service);
            if access_key.is_empty() || (region.is_empty() && region_needed) || terminator != "aws4_request" {
                return Err("malformed");
            }
            if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
                return Err("date");
            }
            if !services.contains(&service) {
                return Err("service");
            }
            if !region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err("region");
            }
            Ok((Credential { access_key, date, region }, service))
        }

        pub fn authorization<'v>(value: &'v str, services: &[&str]) -> Result<(HeaderAuth<'v>, &'v str), S3Error> {
            let rest = value
                .strip_prefix(ALGORITHM)
                .filter(|r| r.starts_with(' '))
                .ok_or_else(|| header_malformed("type"))?;
            let (mut credential, mut signed, mut signature) = (None, None, None);
            for part in rest.split(',') {
                let (key, val) = part.trim().split_once('=').ok_or_else(|| header_malformed("pair"))?;
                let slot = match key {
                    "Credential" => &mut credential,
                    "SignedHeaders" => &mut signed,
                    "Signature" => &mut signature,
                    _ => return Err(header_malformed("unknown")),
                };
                if slot.replace(val).is_some() {
                    return Err(header_malformed("repeated"));
                }
            }
            let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
                return Err(header_malformed("missing"));
            };
            let (credential, service) = self::credential(credential, services).map_err(header_malformed)?;
            let names: Vec<&str> = signed.split(';').collect();
            if names.len() > MAX_SIGNED_HEADERS || names.iter().any(|n| n.is_empty()) {
                return Err(header_malformed("signed"));
            }
            if !names.iter().any(|n| n.eq_ignore_ascii_case("host")) {
                return Err(header_malformed("host"));
            }
            let mut sig = [0u8; 32];
            let sig = hex::decode_to_slice(signature, &mut sig).ok().map(|()| sig);
            Ok((HeaderAuth { credential, signed_headers: names, signature: sig }, service))
        }
    }

    type Outcome<'a> = Result<(&'a str, &'a str, &'a str, &'a str, Vec<&'a str>, Option<[u8; 32]>), ()>;

    fn outcome<'a>(r: Result<(HeaderAuth<'a>, &'a str), S3Error>) -> Outcome<'a> {
        r.map(|(h, service)| {
            let c = h.credential;
            (c.access_key, c.date, c.region, service, h.signed_headers, h.signature)
        })
        .map_err(|_| ())
    }

    #[test]
    fn byte_scans_parse_as_the_str_parser_did() {
        const SIG: &str = "fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024";
        let pieces: &[&str] = &[
            "AWS4-HMAC-SHA256", " ", ",", ", ", "=", "Credential=", "SignedHeaders=", "Signature=", "/", ";",
            "AKID", "AK/ID", "20130524", "2013052", "us-east-1", "", "s3", "iam", "sts", "ec2", "aws4_request",
            "host", "HOST", "x-amz-date", SIG, "FE5F80F77D5FA3BECA038A248FF027D0445342FE2855DDC963176630326F1024",
            "zz", "\t", "\u{3000}", "é", ";;", "//", "us east",
        ];
        let valid = format!(
            "AWS4-HMAC-SHA256 Credential=AKID/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature={SIG}"
        );
        let mut inputs = vec![valid.clone(), valid.replace(", ", ","), valid.replace("s3", "iam")];
        // Every single-byte deletion and a char replacement of the valid header.
        for i in 0..valid.len() {
            inputs.push(format!("{}{}", &valid[..i], &valid[i + 1..]));
            inputs.push(format!("{}/{}", &valid[..i], &valid[i + 1..]));
            inputs.push(format!("{},{}", &valid[..i], &valid[i + 1..]));
        }
        // Random concatenations of the pieces.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut s = String::new();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (x % 14) as usize;
            for _ in 0..n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.push_str(pieces[(x % pieces.len() as u64) as usize]);
            }
            inputs.push(s.clone());
            inputs.push(format!("AWS4-HMAC-SHA256 Credential={s}, SignedHeaders=host, Signature={SIG}"));
            inputs.push(format!("AWS4-HMAC-SHA256 Credential=AKID/20130524/us-east-1/s3/aws4_request, {s}"));
        }
        let mut ok = 0;
        for input in &inputs {
            for services in [&["s3"][..], &["iam", "sts"][..]] {
                let new = outcome(parse_authorization_for(input, services));
                let old = outcome(reference::authorization(input, services));
                assert_eq!(new, old, "{input:?} for {services:?}");
                ok += new.is_ok() as usize;
                let new = parse_credential_for(input, services).map(|(c, s)| (c.access_key, c.date, c.region, s));
                let old = reference::credential(input, services).map(|(c, s)| (c.access_key, c.date, c.region, s));
                assert_eq!(new.is_ok(), old.is_ok(), "{input:?}");
                assert_eq!(new.ok(), old.ok(), "{input:?}");
            }
        }
        assert!(ok > 100, "only {ok} inputs parsed: the generator is too hostile");
        for sig in [SIG, &SIG.to_uppercase(), &SIG[..62], "", &format!("{SIG}00"), &SIG.replace('f', "g")] {
            let mut want = [0u8; 32];
            let want = hex::decode_to_slice(sig, &mut want).ok().map(|()| want);
            assert_eq!(parse_signature(sig), want, "{sig:?}");
        }
    }
}
