//! Requests captured from botocore (testdata/botocore/README.md), through `authenticate`,
//! the aws-chunked decoder and the body verifier.

mod common;

use common::{decode_in_pieces, example_secrets, parse_request, RawRequest, S3_AKID};
use tessera_proto::aws_chunked::AwsChunkedDecoder;
use tessera_proto::checksum::{BodySums, BodyVerifier, ChecksumAlgo};
use tessera_proto::sigv4::{authenticate, AuthContext, AuthKind, PayloadMode};
use tessera_proto::time::{parse_amz_date, parse_http_date};
use tessera_proto::{Headers, S3Error};

/// (file, kind, checksum the body carries)
const CAPTURES: &[(&str, AuthKind, Option<ChecksumAlgo>)] = &[
    ("put-unsigned-trailer-crc32", AuthKind::HeaderV4, Some(ChecksumAlgo::Crc32)),
    ("put-unsigned-trailer-empty", AuthKind::HeaderV4, Some(ChecksumAlgo::Crc32)),
    ("put-unsigned-trailer-sha256", AuthKind::HeaderV4, Some(ChecksumAlgo::Sha256)),
    ("upload-part-unsigned-trailer", AuthKind::HeaderV4, Some(ChecksumAlgo::Crc32)),
    ("put-signed-payload-http", AuthKind::HeaderV4, Some(ChecksumAlgo::Crc32)),
    ("get-special-key", AuthKind::HeaderV4, None),
    ("list-objects-v2", AuthKind::HeaderV4, None),
    ("delete-objects", AuthKind::HeaderV4, Some(ChecksumAlgo::Crc32)),
    ("v2-put", AuthKind::HeaderV2, Some(ChecksumAlgo::Crc32)),
    ("v2-get-acl", AuthKind::HeaderV2, None),
    ("v2-get-response-override", AuthKind::HeaderV2, None),
    ("v2-list", AuthKind::HeaderV2, None),
];

pub fn load(name: &str) -> RawRequest {
    parse_request(&common::read(&format!("botocore/{name}.http")))
}

/// The time the request was signed at.
pub fn signed_at(req: &RawRequest) -> i64 {
    let h = &req.headers;
    h.get("x-amz-date")
        .and_then(parse_amz_date)
        .or_else(|| h.get("date").and_then(parse_http_date))
        .expect("a date header")
}

pub fn auth(req: &RawRequest, now: i64) -> Result<AuthContext, S3Error> {
    authenticate(&req.sig_request(), now, &example_secrets).map(|c| c.expect("credentials present"))
}

fn is_aws_chunked(headers: &Headers) -> bool {
    headers.get("content-encoding").is_some_and(|v| v.split(',').any(|t| t.trim() == "aws-chunked"))
}

/// Decodes (if aws-chunked) and verifies the body of an authenticated request.
pub fn check_body(req: &RawRequest, ctx: &AuthContext, piece: usize) -> Result<(Vec<u8>, BodySums), S3Error> {
    let (data, trailers) = if is_aws_chunked(&req.headers) {
        let signer = match &ctx.payload {
            PayloadMode::StreamingSigned { signer, .. } => Some(signer.clone()),
            _ => None,
        };
        let mut dec = AwsChunkedDecoder::new(signer, req.headers.contains("x-amz-trailer"));
        if let Some(len) = req.headers.get("x-amz-decoded-content-length") {
            dec = dec.with_decoded_len(len.parse().expect("decoded length"));
        }
        let data = decode_in_pieces(&mut dec, &req.body, piece)?;
        (data, dec.trailers().to_vec())
    } else {
        (req.body.clone(), Vec::new())
    };
    let mut verifier = BodyVerifier::from_request(&req.headers, &ctx.payload)?;
    for part in data.chunks(piece.max(1)) {
        verifier.update(part);
    }
    let sums = verifier.finish(&trailers)?;
    Ok((data, sums))
}

#[test]
fn every_capture_authenticates_and_its_body_verifies() {
    for &(name, kind, checksum) in CAPTURES {
        let req = load(name);
        let now = signed_at(&req);
        let ctx = auth(&req, now + 30).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((ctx.kind, ctx.access_key.as_str()), (kind, S3_AKID), "{name}");
        let (whole, sums) = check_body(&req, &ctx, usize::MAX).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (bytewise, _) = check_body(&req, &ctx, 1).unwrap_or_else(|e| panic!("{name} bytewise: {e}"));
        assert_eq!(whole, bytewise, "{name}: one byte at a time decodes the same");
        assert_eq!(sums.checksum.map(|(a, _)| a), checksum, "{name}");
        if let Some(len) = req.headers.get("x-amz-decoded-content-length") {
            assert_eq!(whole.len().to_string(), len, "{name}");
        }
    }
}

#[test]
fn default_boto3_upload_is_the_unsigned_trailer_mode() {
    let req = load("put-unsigned-trailer-crc32");
    let ctx = auth(&req, signed_at(&req)).expect("authenticates");
    assert!(matches!(ctx.payload, PayloadMode::StreamingUnsignedTrailer));
    assert_eq!(req.headers.get("x-amz-trailer"), Some("x-amz-checksum-crc32"));
    let (data, sums) = check_body(&req, &ctx, 4096).expect("body verifies");
    assert_eq!(data, b"Hello from botocore! ".repeat(200));
    assert_eq!(sums.checksum, Some((ChecksumAlgo::Crc32, "t3KUzw==".to_string())));
}

fn presigned(file: &str) -> RawRequest {
    let url = String::from_utf8(common::read(&format!("botocore/{file}"))).expect("UTF-8");
    let rest = url.trim().strip_prefix("https://localhost:9000").expect("endpoint");
    let (path, query) = rest.split_once('?').expect("query");
    let mut headers = Headers::new();
    headers.push("host", "localhost:9000");
    RawRequest { method: "GET".into(), path: path.into(), query: query.into(), headers, body: Vec::new() }
}

fn query_param<'a>(req: &'a RawRequest, name: &str) -> &'a str {
    req.query.split('&').find_map(|p| p.strip_prefix(&format!("{name}="))).expect(name)
}

#[test]
fn presigned_urls_authenticate() {
    let v4 = presigned("presigned-v4-get.url");
    let t = parse_amz_date(query_param(&v4, "X-Amz-Date")).expect("date");
    let ctx = auth(&v4, t + 3600).expect("v4 GET");
    assert_eq!(ctx.kind, AuthKind::PresignedV4);
    assert!(auth(&v4, t + 3601).is_err(), "expired");

    let mut put = presigned("presigned-v4-put.url");
    put.method = "PUT".into();
    let t = parse_amz_date(query_param(&put, "X-Amz-Date")).expect("date");
    assert_eq!(auth(&put, t + 604_800).expect("v4 PUT").kind, AuthKind::PresignedV4);
    put.method = "GET".into();
    assert!(auth(&put, t).is_err(), "the method is signed");

    let v2 = presigned("presigned-get.url");
    let expires: i64 = query_param(&v2, "Expires").parse().expect("Expires");
    assert_eq!(auth(&v2, expires).expect("v2").kind, AuthKind::PresignedV2);
    assert!(auth(&v2, expires + 1).is_err(), "expired");
}
