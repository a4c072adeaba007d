//! The worked examples of the S3 API reference (AKIAIOSFODNN7EXAMPLE, bucket
//! examplebucket, 20130524T000000Z), end to end through `authenticate`, the aws-chunked
//! decoder and the body verifier:
//! - sig-v4-header-based-auth: GET object with Range, PUT object, GET ?lifecycle, list objects;
//! - sigv4-query-string-auth: the presigned GET of test.txt;
//! - sigv4-streaming: 65 KiB of 'a' in 64 KiB + 1 KiB chunks;
//! - sigv4-streaming-trailers: the same with a signed CRC32C trailer;
//! - and the CRT's trailer-signature vector (awslabs/aws-crt-swift ChunkSignerTests).

mod common;

use common::{decode_in_pieces, example_secrets, RawRequest, S3_AKID, S3_EXAMPLE_TIME};
use tessera_proto::aws_chunked::AwsChunkedDecoder;
use tessera_proto::checksum::{BodyVerifier, ChecksumAlgo};
use tessera_proto::sigv4::{authenticate, AuthKind, ChunkSigner, PayloadMode};
use tessera_proto::{Headers, S3ErrorCode};

const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const SCOPE: &str = "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request";

fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> RawRequest {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut h = Headers::new();
    for (n, v) in headers {
        h.push(n, v);
    }
    RawRequest { method: method.into(), path: path.into(), query: query.into(), headers: h, body: Vec::new() }
}

fn authorization(signed_headers: &str, signature: &str) -> String {
    format!("AWS4-HMAC-SHA256 Credential={SCOPE},SignedHeaders={signed_headers},Signature={signature}")
}

/// (name, method, wire target, extra headers, SignedHeaders, published signature)
type HeaderExample =
    (&'static str, &'static str, &'static str, Vec<(&'static str, &'static str)>, &'static str, &'static str);

fn header_examples() -> Vec<HeaderExample> {
    vec![
        (
            "GET object with Range",
            "GET",
            "/test.txt",
            vec![("range", "bytes=0-9"), ("x-amz-content-sha256", EMPTY)],
            "host;range;x-amz-content-sha256;x-amz-date",
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        ),
        (
            "PUT object (key as the client encoded it)",
            "PUT",
            "/test%24file.text",
            vec![
                ("date", "Fri, 24 May 2013 00:00:00 GMT"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                ("x-amz-content-sha256", "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"),
            ],
            "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
        ),
        (
            "PUT object (key with a raw $)",
            "PUT",
            "/test$file.text",
            vec![
                ("date", "Fri, 24 May 2013 00:00:00 GMT"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                ("x-amz-content-sha256", "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"),
            ],
            "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
        ),
        (
            "GET bucket lifecycle",
            "GET",
            "/?lifecycle",
            vec![("x-amz-content-sha256", EMPTY)],
            "host;x-amz-content-sha256;x-amz-date",
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
        ),
        (
            "list objects",
            "GET",
            "/?max-keys=2&prefix=J",
            vec![("x-amz-content-sha256", EMPTY)],
            "host;x-amz-content-sha256;x-amz-date",
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
        ),
    ]
}

pub fn example_request(ex: &HeaderExample) -> RawRequest {
    let (_, method, target, extra, signed, sig) = ex;
    let auth = authorization(signed, sig);
    let mut headers = vec![
        ("host", "examplebucket.s3.amazonaws.com"),
        ("x-amz-date", "20130524T000000Z"),
        ("authorization", auth.as_str()),
    ];
    headers.extend(extra.iter().copied());
    request(method, target, &headers)
}

#[test]
fn header_examples_authenticate() {
    for ex in header_examples() {
        let req = example_request(&ex);
        let ctx = authenticate(&req.sig_request(), S3_EXAMPLE_TIME + 60, &example_secrets)
            .unwrap_or_else(|e| panic!("{}: {e}", ex.0))
            .unwrap_or_else(|| panic!("{}: anonymous?", ex.0));
        assert_eq!(ctx.access_key, S3_AKID, "{}", ex.0);
        assert_eq!(ctx.kind, AuthKind::HeaderV4, "{}", ex.0);
        assert!(matches!(ctx.payload, PayloadMode::Sha256(_)), "{}", ex.0);
    }
}

#[test]
fn put_example_body_must_match_the_signed_hash() {
    let ex = &header_examples()[1];
    let ctx = authenticate(&example_request(ex).sig_request(), S3_EXAMPLE_TIME, &example_secrets)
        .expect("authenticates")
        .expect("not anonymous");
    let headers = Headers::new();
    let mut ok = BodyVerifier::from_request(&headers, &ctx.payload).expect("verifier");
    ok.update(b"Welcome to Amazon S3.");
    assert!(ok.finish(&[]).is_ok());
    let mut bad = BodyVerifier::from_request(&headers, &ctx.payload).expect("verifier");
    bad.update(b"Welcome to Amazon S3!");
    assert_eq!(bad.finish(&[]).map_err(|e| e.code), Err(S3ErrorCode::XAmzContentSHA256Mismatch));
}

pub const PRESIGNED_QUERY: &str = "X-Amz-Algorithm=AWS4-HMAC-SHA256\
&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

#[test]
fn presigned_example_authenticates_until_it_expires() {
    let req = request(
        "GET",
        &format!("/test.txt?{PRESIGNED_QUERY}"),
        &[("host", "examplebucket.s3.amazonaws.com")],
    );
    for now in [S3_EXAMPLE_TIME, S3_EXAMPLE_TIME + 86_400, S3_EXAMPLE_TIME - 899] {
        let ctx = authenticate(&req.sig_request(), now, &example_secrets)
            .unwrap_or_else(|e| panic!("{now}: {e}"))
            .expect("not anonymous");
        assert_eq!(ctx.kind, AuthKind::PresignedV4);
        assert!(matches!(ctx.payload, PayloadMode::Unsigned));
    }
    let expired = authenticate(&req.sig_request(), S3_EXAMPLE_TIME + 86_401, &example_secrets);
    let e = expired.expect_err("expired");
    assert_eq!((e.code, e.message.as_str()), (S3ErrorCode::AccessDenied, "Request has expired"));
    let early = authenticate(&req.sig_request(), S3_EXAMPLE_TIME - 901, &example_secrets);
    assert_eq!(early.map(|_| ()).map_err(|e| e.code), Err(S3ErrorCode::AccessDenied));
}

const SEED: &str = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
pub const CHUNK_SIGS: [&str; 3] = [
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
];

pub fn streaming_request() -> RawRequest {
    let auth = authorization(
        "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class",
        SEED,
    );
    request(
        "PUT",
        "/examplebucket/chunkObject.txt",
        &[
            ("host", "s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("authorization", &auth),
            ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "66560"),
            ("content-length", "66824"),
        ],
    )
}

/// The signed aws-chunked body of the streaming example.
pub fn streaming_body(sigs: &[&str; 3]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(format!("10000;chunk-signature={}\r\n", sigs[0]).as_bytes());
    body.extend_from_slice(&[b'a'; 65_536]);
    body.extend_from_slice(format!("\r\n400;chunk-signature={}\r\n", sigs[1]).as_bytes());
    body.extend_from_slice(&[b'a'; 1_024]);
    body.extend_from_slice(format!("\r\n0;chunk-signature={}\r\n\r\n", sigs[2]).as_bytes());
    body
}

pub fn streaming_signer() -> ChunkSigner {
    let ctx = authenticate(&streaming_request().sig_request(), S3_EXAMPLE_TIME, &example_secrets)
        .expect("the published seed signature verifies")
        .expect("not anonymous");
    match ctx.payload {
        PayloadMode::StreamingSigned { signer, trailer: false } => signer,
        other => panic!("payload {other:?}"),
    }
}

#[test]
fn streaming_example_decodes_whatever_the_slicing() {
    let signer = streaming_signer();
    assert_eq!(signer.seed_signature(), SEED);
    let body = streaming_body(&CHUNK_SIGS);
    assert_eq!(body.len(), 66_824, "the published Content-Length");
    for piece in [1, 2, 7, 81, 4096, 65_536, 66_824] {
        let mut dec = AwsChunkedDecoder::new(Some(signer.clone()), false).with_decoded_len(66_560);
        let data = decode_in_pieces(&mut dec, &body, piece).unwrap_or_else(|e| panic!("piece {piece}: {e}"));
        assert_eq!(data.len(), 66_560);
        assert!(data.iter().all(|&b| b == b'a'));
        assert!(dec.is_done());
        assert!(dec.trailers().is_empty());
        assert_eq!(dec.decoded_len(), 66_560);
    }
}

#[test]
fn streaming_example_chunk_signatures_are_reproduced() {
    let signer = streaming_signer();
    let s1 = signer.sign_chunk(SEED, &[b'a'; 65_536]);
    let s2 = signer.sign_chunk(&s1, &[b'a'; 1_024]);
    let s3 = signer.sign_chunk(&s2, b"");
    assert_eq!([s1.as_str(), s2.as_str(), s3.as_str()], CHUNK_SIGS);
}

/// The CRT's trailer vector continues the streaming example: trailers first:1st,
/// second:2nd, third:3rd signed after the final chunk.
#[test]
fn crt_trailer_signature_vector() {
    let signer = streaming_signer();
    let mut body = streaming_body(&CHUNK_SIGS);
    body.truncate(body.len() - 2);
    body.extend_from_slice(
        b"first:1st\r\nsecond:2nd\r\nthird:3rd\r\n\
          x-amz-trailer-signature:df5735bd9f3295cd9386572292562fefc93ba94e80a0a1ddcbd652c4e0a75e6c\r\n\r\n",
    );
    let mut dec = AwsChunkedDecoder::new(Some(signer.clone()), true);
    let data = decode_in_pieces(&mut dec, &body, 1000).expect("decodes");
    assert_eq!(data.len(), 66_560);
    let names: Vec<&str> = dec.trailers().iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["first", "second", "third"]);
    assert_eq!(
        signer.sign_trailer(CHUNK_SIGS[2], b"first:1st\nsecond:2nd\nthird:3rd\n"),
        "df5735bd9f3295cd9386572292562fefc93ba94e80a0a1ddcbd652c4e0a75e6c"
    );
}

const TRAILER_SEED: &str = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e";
const TRAILER_CHUNK_SIGS: [&str; 3] = [
    "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
    "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
    "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
];
const TRAILER_SIG: &str = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435";

fn trailer_example_request() -> RawRequest {
    let auth = authorization(
        "content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer",
        TRAILER_SEED,
    );
    request(
        "PUT",
        "/examplebucket/chunkObject.txt",
        &[
            ("host", "s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("authorization", &auth),
            ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"),
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "66560"),
            ("x-amz-trailer", "x-amz-checksum-crc32c"),
        ],
    )
}

/// The body of the trailer example; `blank_before_trailers` puts an empty line between
/// the final chunk and the trailers, as the documentation's listing is often read.
pub fn trailer_example_body(blank_before_trailers: bool, crc: &str, trailer_sig: &str) -> Vec<u8> {
    let mut body = streaming_body(&TRAILER_CHUNK_SIGS);
    body.truncate(body.len() - 2);
    if blank_before_trailers {
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(
        format!("x-amz-checksum-crc32c:{crc}\r\nx-amz-trailer-signature:{trailer_sig}\r\n\r\n").as_bytes(),
    );
    body
}

/// The seed signature of the trailer example, verified through `authenticate` on the
/// rebuilt request (headers as listed in the documentation).
fn trailer_signer() -> ChunkSigner {
    let req = trailer_example_request();
    let ctx = authenticate(&req.sig_request(), S3_EXAMPLE_TIME, &example_secrets)
        .expect("the published seed signature verifies")
        .expect("not anonymous");
    match ctx.payload {
        PayloadMode::StreamingSigned { signer, trailer: true } => signer,
        other => panic!("payload {other:?}"),
    }
}

#[test]
fn trailer_example_decodes_and_its_checksum_verifies() {
    let signer = trailer_signer();
    for blank in [false, true] {
        let body = trailer_example_body(blank, "sOO8/Q==", TRAILER_SIG);
        for piece in [1, 13, 70_000] {
            let mut dec = AwsChunkedDecoder::new(Some(signer.clone()), true);
            let data =
                decode_in_pieces(&mut dec, &body, piece).unwrap_or_else(|e| panic!("{blank} {piece}: {e}"));
            assert_eq!(dec.trailers(), &[("x-amz-checksum-crc32c".to_string(), "sOO8/Q==".to_string())]);
            let req = trailer_example_request();
            let payload = PayloadMode::StreamingSigned { signer: signer.clone(), trailer: true };
            let mut verifier = BodyVerifier::from_request(&req.headers, &payload).expect("verifier");
            verifier.update(&data);
            let sums = verifier.finish(dec.trailers()).expect("checksum matches");
            assert_eq!(sums.checksum, Some((ChecksumAlgo::Crc32c, "sOO8/Q==".to_string())));
        }
    }
}
