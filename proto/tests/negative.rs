//! What must be refused, and with which S3 error.

mod common;

use common::{
    decode_in_pieces, example_secrets, parse_request, RawRequest, S3_AKID, S3_EXAMPLE_TIME, S3_SECRET,
};
use tessera_proto::aws_chunked::{
    AwsChunkedDecoder, MAX_CHUNK_HEADER_LINE_BYTES, MAX_TRAILER_LINES, MAX_TRAILER_SECTION_BYTES,
};
use tessera_proto::checksum::BodyVerifier;
use tessera_proto::sigv4::{
    authenticate, authenticate_vhost, canonical_query, canonical_request, credential_scope, presign_query, sign_request,
    signature_hex, signing_key, string_to_sign, AuthContext, AuthKind, ChunkSigner, PayloadMode,
    EMPTY_SHA256_HEX,
};
use tessera_proto::time::format_amz_date;
use tessera_proto::{Headers, S3Error, S3ErrorCode};

use S3ErrorCode::*;

const NOW: i64 = S3_EXAMPLE_TIME;
/// The region of the node under test; `signed` scopes its credentials to it.
const REGION: &str = "us-east-1";

fn code<T>(r: Result<T, S3Error>) -> Result<(), S3ErrorCode> {
    r.map(|_| ()).map_err(|e| e.code)
}

fn auth(req: &RawRequest, now: i64) -> Result<Option<AuthContext>, S3Error> {
    authenticate_vhost(&req.sig_request(), None, REGION, now, &example_secrets)
}

/// A request signed by `sign_request`, with `extra` headers signed too.
fn signed(
    method: &str,
    path: &str,
    query: &str,
    extra: &[(&str, &str)],
    payload: &str,
    secret: &str,
) -> RawRequest {
    let mut headers = Headers::new();
    headers.push("host", "examplebucket.s3.amazonaws.com");
    headers.push("x-amz-date", &format_amz_date(NOW));
    headers.push("x-amz-content-sha256", payload);
    for (n, v) in extra {
        headers.push(n, v);
    }
    let value = sign_request(method, path, query, &headers, payload, S3_AKID, secret, REGION, NOW);
    headers.push("authorization", &value);
    RawRequest { method: method.into(), path: path.into(), query: query.into(), headers, body: Vec::new() }
}

fn get() -> RawRequest {
    signed(
        "GET",
        "/examplebucket/k%20ey",
        "versionId=1&x=a%2Bb",
        &[("range", "bytes=0-9")],
        EMPTY_SHA256_HEX,
        S3_SECRET,
    )
}

#[test]
fn the_helpers_sign_what_authenticate_accepts() {
    let ctx = auth(&get(), NOW).expect("ok").expect("credentials");
    assert_eq!((ctx.kind, ctx.access_key.as_str()), (AuthKind::HeaderV4, S3_AKID));
    let mut headers = Headers::new();
    headers.push("host", "examplebucket.s3.amazonaws.com");
    let q = presign_query("GET", "/examplebucket/k", "", &headers, S3_AKID, S3_SECRET, REGION, NOW, 60);
    let req =
        RawRequest { method: "GET".into(), path: "/examplebucket/k".into(), query: q, headers, body: vec![] };
    assert_eq!(auth(&req, NOW).expect("ok").expect("credentials").kind, AuthKind::PresignedV4);
}

#[test]
fn credentials_scoped_to_another_region_are_refused() {
    // Header form: AuthorizationHeaderMalformed naming the expected region, before any signature work.
    let e = authenticate_vhost(&get().sig_request(), None, "eu-west-3", NOW, &example_secrets).expect_err("region");
    assert_eq!(e.code, AuthorizationHeaderMalformed);
    assert!(e.message.contains("'us-east-1' is wrong; expecting 'eu-west-3'"), "{}", e.message);
    assert_eq!(e.detail, Some(("Region", "eu-west-3".to_string())));
    // Presigned form: AuthorizationQueryParametersError.
    let mut headers = Headers::new();
    headers.push("host", "examplebucket.s3.amazonaws.com");
    let q = presign_query("GET", "/examplebucket/k", "", &headers, S3_AKID, S3_SECRET, "ap-south-2", NOW, 60);
    let req =
        RawRequest { method: "GET".into(), path: "/examplebucket/k".into(), query: q, headers, body: vec![] };
    assert_eq!(code(auth(&req, NOW)), Err(AuthorizationQueryParametersError));
}

/// Headers that must be signed, present but not in SignedHeaders: refused with
/// AccessDenied, for header and presigned authentication alike.
#[test]
fn unsigned_amz_headers_and_content_md5_are_refused() {
    let base = signed("PUT", "/b/k", "", &[], EMPTY_SHA256_HEX, S3_SECRET);
    for (name, value) in [
        ("x-amz-copy-source", "b/secret"),
        ("x-amz-metadata-directive", "REPLACE"),
        ("x-amz-meta-a", "1"),
        ("x-amz-security-token", "t"),
        ("X-Amz-Acl", "public-read"),
        ("content-md5", "1B2M2Y8AsgTpgAmY7PhCfg=="),
    ] {
        let mut req = base.clone();
        req.headers.push(name, value);
        let e = auth(&req, NOW).expect_err(name);
        assert_eq!((e.code, e.message.as_str()), (AccessDenied, "There were headers present in the request which were not signed"), "{name}");
        assert_eq!(e.detail, Some(("HeadersNotSigned", name.to_ascii_lowercase())), "{name}");
    }
    // Signed, they are accepted (the signer signs every header it is given).
    let ok = signed("PUT", "/b/k", "", &[("x-amz-copy-source", "b/k2"), ("content-md5", "x")], EMPTY_SHA256_HEX, S3_SECRET);
    assert!(auth(&ok, NOW).is_ok());
    // Headers outside the rule may stay unsigned.
    let mut req = base.clone();
    req.headers.push("user-agent", "x");
    req.headers.push("content-type", "text/plain");
    req.headers.push("x-amzn-trace-id", "Root=1");
    assert!(auth(&req, NOW).is_ok());
    // The payload hash and the date must be signed too.
    for name in ["x-amz-content-sha256", "x-amz-date"] {
        let mut headers = Headers::new();
        headers.push("host", "examplebucket.s3.amazonaws.com");
        let signed_only_host = sign_request("PUT", "/b/k", "", &headers, EMPTY_SHA256_HEX, S3_AKID, S3_SECRET, REGION, NOW);
        headers.push("x-amz-date", &format_amz_date(NOW));
        headers.push("x-amz-content-sha256", EMPTY_SHA256_HEX);
        headers.push("authorization", &signed_only_host);
        let req = RawRequest { method: "PUT".into(), path: "/b/k".into(), query: String::new(), headers, body: vec![] };
        let e = auth(&req, NOW).expect_err(name);
        assert_eq!(e.code, AccessDenied, "{name}");
    }

    // Presigned: a header added to a URL signed for `host` only is refused...
    let mut headers = Headers::new();
    headers.push("host", "examplebucket.s3.amazonaws.com");
    let q = presign_query("PUT", "/b/k", "", &headers, S3_AKID, S3_SECRET, REGION, NOW, 60);
    let url = RawRequest { method: "PUT".into(), path: "/b/k".into(), query: q.clone(), headers, body: vec![] };
    assert!(auth(&url, NOW).is_ok());
    let with_copy = url.with_header("x-amz-copy-source", Some("b/secret"));
    assert_eq!(code(auth(&with_copy, NOW)), Err(AccessDenied));
    let with_sha = url.with_header("x-amz-content-sha256", Some("UNSIGNED-PAYLOAD"));
    assert_eq!(code(auth(&with_sha, NOW)), Err(AccessDenied));
    // ...unless the signed query carries the same value (S3 lets x-amz-* ride there).
    let mut headers = Headers::new();
    headers.push("host", "examplebucket.s3.amazonaws.com");
    let q = presign_query("PUT", "/b/k", "x-amz-acl=private", &headers, S3_AKID, S3_SECRET, REGION, NOW, 60);
    let url = RawRequest { method: "PUT".into(), path: "/b/k".into(), query: q, headers, body: vec![] };
    assert!(auth(&url.with_header("x-amz-acl", Some("private")), NOW).is_ok());
    assert_eq!(code(auth(&url.with_header("x-amz-acl", Some("public-read")), NOW)), Err(AccessDenied));
}

#[test]
fn wrong_secret_and_unknown_key() {
    let req = signed("GET", "/b/k", "", &[], EMPTY_SHA256_HEX, "not-the-secret");
    assert_eq!(code(auth(&req, NOW)), Err(SignatureDoesNotMatch));
    let req = get();
    let nobody = |_: &str| None;
    assert_eq!(code(authenticate(&req.sig_request(), NOW, &nobody)), Err(InvalidAccessKeyId));
}

#[test]
fn tampering_with_any_signed_part_fails() {
    let base = get();
    let mut path = base.clone();
    path.path = "/examplebucket/k%20ez".into();
    let mut query = base.clone();
    query.query = "versionId=2&x=a%2Bb".into();
    let mut extra_param = base.clone();
    extra_param.query.push_str("&acl");
    let mut method = base.clone();
    method.method = "DELETE".into();
    let header = base.with_header("range", Some("bytes=0-99"));
    let dropped = base.with_header("range", None);
    let host = base.with_header("host", Some("evil.example.com"));
    for (what, req) in [
        ("path", path),
        ("query", query),
        ("extra query parameter", extra_param),
        ("method", method),
        ("header", header),
        ("dropped header", dropped),
        ("host", host),
    ] {
        assert_eq!(code(auth(&req, NOW)), Err(SignatureDoesNotMatch), "{what}");
    }
}

#[test]
fn a_signature_that_is_not_64_hex_does_not_match() {
    for sig in ["", "abc", &"g".repeat(64), &"a".repeat(63), &"a".repeat(66)] {
        let req = get();
        let value = req.headers.get("authorization").expect("auth");
        let forged = format!("{}{sig}", &value[..value.find("Signature=").expect("sig") + 10]);
        let req = req.with_header("authorization", Some(&forged));
        assert_eq!(code(auth(&req, NOW)), Err(SignatureDoesNotMatch), "{sig:?}");
    }
}

#[test]
fn clock_skew() {
    let req = get();
    assert!(auth(&req, NOW + 900).is_ok());
    assert!(auth(&req, NOW - 900).is_ok());
    assert_eq!(code(auth(&req, NOW + 901)), Err(RequestTimeTooSkewed));
    assert_eq!(code(auth(&req, NOW - 901)), Err(RequestTimeTooSkewed));
}

#[test]
fn malformed_authorization_headers() {
    let sig = "a".repeat(64);
    for value in [
        "AWS4-HMAC-SHA256".to_string(),
        "AWS4-HMAC-SHA256 ".to_string(),
        format!("AWS4-HMAC-SHA256 Credential={S3_AKID}/20130524/us-east-1/s3/aws4_request, Signature={sig}"),
        format!("AWS4-HMAC-SHA256 Credential={S3_AKID}/20130524/us-east-1/s3/aws4_request, SignedHeaders=host, SignedHeaders=host, Signature={sig}"),
        format!("AWS4-HMAC-SHA256 Credential={S3_AKID}/20130524/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature={sig}"),
        format!("AWS4-HMAC-SHA256 Credential={S3_AKID}/2013-05-24/us-east-1/s3/aws4_request, SignedHeaders=host, Signature={sig}"),
        format!("AWS4-HMAC-SHA256 Credential={S3_AKID}/20130524/us-east-1/s3/aws4_request, SignedHeaders=x-amz-date, Signature={sig}"),
        format!("AWS4-HMAC-SHA256 Credential={S3_AKID}/20130524/us-east-1/s3/aws4_request, SignedHeaders=host, Signature={sig}, Extra=1"),
        format!("AWS4-HMAC-SHA256 Credential={S3_AKID}/20130525/us-east-1/s3/aws4_request, SignedHeaders=host, Signature={sig}"),
    ] {
        let req = get().with_header("authorization", Some(&value));
        assert_eq!(code(auth(&req, NOW)), Err(AuthorizationHeaderMalformed), "{value}");
    }
    for (value, want) in [
        ("Bearer abc", InvalidArgument),
        ("AWS4-ECDSA-P256-SHA256 Credential=x", NotImplemented),
        ("", InvalidArgument),
    ] {
        let req = get().with_header("authorization", Some(value));
        assert_eq!(code(auth(&req, NOW)), Err(want), "{value:?}");
    }
}

#[test]
fn payload_hash_header_rules() {
    let req = get().with_header("x-amz-content-sha256", None);
    let e = auth(&req, NOW).expect_err("missing");
    assert_eq!(
        (e.code, e.message.as_str()),
        (InvalidRequest, "Missing required header for this request: x-amz-content-sha256")
    );
    for bad in ["", "abc", "UNSIGNED", "STREAMING-AWS4-HMAC-SHA256", &"z".repeat(64)] {
        let req = signed("PUT", "/b/k", "", &[], bad, S3_SECRET);
        assert_eq!(code(auth(&req, NOW)), Err(InvalidArgument), "{bad:?}");
    }
    let req = signed("PUT", "/b/k", "", &[], "UNSIGNED-PAYLOAD", S3_SECRET);
    assert!(matches!(auth(&req, NOW).expect("ok").expect("ctx").payload, PayloadMode::Unsigned));
    // x-amz-content-sha256 is hex; the base64 of x-amz-checksum-sha256 is not accepted there.
    let b64 = "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=";
    let req = signed("PUT", "/b/k", "", &[], b64, S3_SECRET);
    assert_eq!(code(auth(&req, NOW)), Err(InvalidArgument));
}

#[test]
fn credentials_anywhere_are_verified_never_ignored() {
    for query in [
        "X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request",
        "X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
        "X-Amz-Algorithm=AWS4-HMAC-SHA256",
    ] {
        let mut h = Headers::new();
        h.push("host", "examplebucket.s3.amazonaws.com");
        let req = RawRequest {
            method: "GET".into(),
            path: "/k".into(),
            query: query.into(),
            headers: h,
            body: vec![],
        };
        assert_eq!(code(auth(&req, NOW)), Err(AuthorizationQueryParametersError), "{query}");
    }
    for query in [
        "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE",
        "Signature=abc",
        "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=abc",
    ] {
        let mut h = Headers::new();
        h.push("host", "examplebucket.s3.amazonaws.com");
        let req = RawRequest {
            method: "GET".into(),
            path: "/k".into(),
            query: query.into(),
            headers: h,
            body: vec![],
        };
        assert_eq!(code(auth(&req, NOW)), Err(AccessDenied), "{query}");
    }
    // Header and query credentials at once, or two Authorization headers.
    let mut both = get();
    both.query.push_str("&X-Amz-Signature=00");
    assert_eq!(code(auth(&both, NOW)), Err(InvalidArgument));
    let mut v2_too = get();
    v2_too.query.push_str("&AWSAccessKeyId=x");
    assert_eq!(code(auth(&v2_too, NOW)), Err(InvalidArgument));
    let mut twice = get();
    let value = twice.headers.get("authorization").expect("auth").to_string();
    twice.headers.push("authorization", &value);
    assert_eq!(code(auth(&twice, NOW)), Err(InvalidArgument));
    // Near-miss spellings are not served anonymously either.
    for query in ["x-amz-credential=a", "X-AMZ-SIGNATURE=b", "awsaccesskeyid=c"] {
        let mut h = Headers::new();
        h.push("host", "examplebucket.s3.amazonaws.com");
        let req = RawRequest {
            method: "GET".into(),
            path: "/k".into(),
            query: query.into(),
            headers: h,
            body: vec![],
        };
        assert!(auth(&req, NOW).is_err(), "{query}");
    }
    // Nothing at all is anonymous.
    let mut h = Headers::new();
    h.push("host", "x");
    let anon = RawRequest {
        method: "GET".into(),
        path: "/k".into(),
        query: "X-Amz-Date=1&prefix=a".into(),
        headers: h,
        body: vec![],
    };
    assert!(matches!(auth(&anon, NOW), Ok(None)));
}

fn presigned(expires: i64, method: &str) -> RawRequest {
    let mut headers = Headers::new();
    headers.push("host", "examplebucket.s3.amazonaws.com");
    let q = presign_query(
        method,
        "/examplebucket/k",
        "partNumber=1",
        &headers,
        S3_AKID,
        S3_SECRET,
        "us-east-1",
        NOW,
        expires,
    );
    RawRequest { method: method.into(), path: "/examplebucket/k".into(), query: q, headers, body: vec![] }
}

#[test]
fn presigned_url_limits() {
    let req = presigned(604_800, "PUT");
    assert!(auth(&req, NOW + 604_800).is_ok());
    let e = auth(&req, NOW + 604_801).expect_err("expired");
    assert_eq!((e.code, e.message.as_str()), (AccessDenied, "Request has expired"));
    assert_eq!(code(auth(&presigned(604_801, "PUT"), NOW)), Err(AuthorizationQueryParametersError));
    assert_eq!(code(auth(&presigned(-1, "PUT"), NOW)), Err(AuthorizationQueryParametersError));
    // Signed in the future, beyond the allowed skew.
    assert_eq!(code(auth(&presigned(3600, "PUT"), NOW - 901)), Err(AccessDenied));
    // Tampered: another method, another query, another signature.
    let mut m = presigned(3600, "PUT");
    m.method = "GET".into();
    assert_eq!(code(auth(&m, NOW)), Err(SignatureDoesNotMatch));
    let mut q = presigned(3600, "PUT");
    q.query = q.query.replace("partNumber=1", "partNumber=2");
    assert_eq!(code(auth(&q, NOW)), Err(SignatureDoesNotMatch));
    let mut s = presigned(3600, "PUT");
    s.query = s.query.replace("X-Amz-Expires=3600", "X-Amz-Expires=7200");
    assert_eq!(code(auth(&s, NOW)), Err(SignatureDoesNotMatch));
    // Parameters missing or repeated.
    let full = presigned(3600, "PUT");
    for param in ["X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Credential"] {
        let mut r = full.clone();
        r.query = r.query.split('&').filter(|p| !p.starts_with(param)).collect::<Vec<_>>().join("&");
        assert_eq!(code(auth(&r, NOW)), Err(AuthorizationQueryParametersError), "without {param}");
    }
    let mut twice = full.clone();
    twice.query.push_str("&X-Amz-Date=20130524T000000Z");
    assert_eq!(code(auth(&twice, NOW)), Err(AuthorizationQueryParametersError));
    let mut algo = full.clone();
    algo.query = algo.query.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512");
    assert_eq!(code(auth(&algo, NOW)), Err(AuthorizationQueryParametersError));
    let mut nokey = full;
    nokey.query = nokey.query.replace(S3_AKID, "AKIDNOBODY");
    assert_eq!(code(auth(&nokey, NOW)), Err(InvalidAccessKeyId));
}

/// A client that signs the raw path (here with a literal `=` and `+`) rather than
/// S3's canonical encoding is accepted through the raw-path fallback; `%20` is never
/// encoded twice; a raw `+` is a literal plus.
#[test]
fn path_canonicalization_rules() {
    let raw_signer = |path: &str| {
        let mut headers = Headers::new();
        headers.push("host", "h");
        headers.push("x-amz-date", &format_amz_date(NOW));
        headers.push("x-amz-content-sha256", EMPTY_SHA256_HEX);
        let signed = ["host", "x-amz-content-sha256", "x-amz-date"];
        let creq =
            canonical_request("GET", path, &canonical_query("", false), &headers, &signed, EMPTY_SHA256_HEX);
        let scope = credential_scope("20130524", "us-east-1", "s3");
        let sig = signature_hex(
            &signing_key(S3_SECRET, "20130524", "us-east-1", "s3"),
            &string_to_sign(&format_amz_date(NOW), &scope, &creq),
        );
        headers.push(
            "authorization",
            &format!(
                "AWS4-HMAC-SHA256 Credential={S3_AKID}/{scope}, SignedHeaders={}, Signature={sig}",
                signed.join(";")
            ),
        );
        RawRequest { method: "GET".into(), path: path.into(), query: String::new(), headers, body: vec![] }
    };
    assert!(auth(&raw_signer("/b/a=b+c"), NOW).is_ok(), "raw path fallback");
    assert!(auth(&raw_signer("/b/a%20b"), NOW).is_ok(), "%20 stays %20");
    assert!(auth(&raw_signer("/b/a%2Bb"), NOW).is_ok());
    // Signed canonical `%2B`, sent as a raw '+': the same key.
    let mut plus = raw_signer("/b/a%2Bb");
    plus.path = "/b/a+b".into();
    assert!(auth(&plus, NOW).is_ok(), "raw + is a literal plus");
    // Signed canonical `%20` (a space), sent as a raw '+': not the same key.
    let mut space = raw_signer("/b/a%20b");
    space.path = "/b/a+b".into();
    assert_eq!(code(auth(&space, NOW)), Err(SignatureDoesNotMatch));
    // A double-encoded signature (what a non-S3 SigV4 signer does) is not accepted.
    let mut double = raw_signer("/b/a%2520b");
    double.path = "/b/a%20b".into();
    assert_eq!(code(auth(&double, NOW)), Err(SignatureDoesNotMatch));
}

// ----------------------------------------------------------------------------------
// Streaming bodies
// ----------------------------------------------------------------------------------

fn streaming_signer() -> ChunkSigner {
    let key = signing_key(S3_SECRET, "20130524", "us-east-1", "s3");
    ChunkSigner::new(
        &key,
        "20130524T000000Z",
        "20130524/us-east-1/s3/aws4_request",
        "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
    )
}

/// A signed body of the given chunks and trailers, signed with `signer`.
fn signed_body(signer: &ChunkSigner, chunks: &[&[u8]], trailers: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut prev = signer.seed_signature().to_string();
    for chunk in chunks.iter().chain([&&b""[..]]) {
        let sig = signer.sign_chunk(&prev, chunk);
        body.extend_from_slice(format!("{:x};chunk-signature={sig}\r\n", chunk.len()).as_bytes());
        if !chunk.is_empty() {
            body.extend_from_slice(chunk);
            body.extend_from_slice(b"\r\n");
        }
        prev = sig;
    }
    if !trailers.is_empty() {
        let mut canonical = Vec::new();
        for (n, v) in trailers {
            body.extend_from_slice(format!("{n}:{v}\r\n").as_bytes());
            canonical.extend_from_slice(format!("{n}:{v}\n").as_bytes());
        }
        let sig = signer.sign_trailer(&prev, &canonical);
        body.extend_from_slice(format!("x-amz-trailer-signature:{sig}\r\n").as_bytes());
    }
    body.extend_from_slice(b"\r\n");
    body
}

fn decode(signer: Option<ChunkSigner>, trailer: bool, body: &[u8]) -> Result<Vec<u8>, S3ErrorCode> {
    let mut dec = AwsChunkedDecoder::new(signer, trailer);
    decode_in_pieces(&mut dec, body, 100).map_err(|e| e.code)
}

#[test]
fn signed_chunks_tampered_dropped_reordered() {
    let signer = streaming_signer();
    let (a, b, c) = (vec![b'a'; 300], vec![b'b'; 200], vec![b'c'; 100]);
    let body = signed_body(&signer, &[&a, &b, &c], &[]);
    assert_eq!(decode(Some(signer.clone()), false, &body).map(|d| d.len()), Ok(600));

    let mut tampered = body.clone();
    let i = tampered.iter().position(|&x| x == b'b').expect("b");
    tampered[i] = b'x';
    assert_eq!(decode(Some(signer.clone()), false, &tampered), Err(SignatureDoesNotMatch));

    let dropped = signed_body(&signer, &[&a, &b, &c], &[]);
    let text = String::from_utf8_lossy(&dropped).into_owned();
    let start = text.find("c8;").expect("second chunk");
    let end = text.find("64;").expect("third chunk");
    let without_second = format!("{}{}", &text[..start], &text[end..]);
    assert_eq!(decode(Some(signer.clone()), false, without_second.as_bytes()), Err(SignatureDoesNotMatch));

    // Each chunk with its own valid signature, but in another order.
    let first_end = text.find("c8;").expect("second chunk");
    let reordered = format!("{}{}{}", &text[first_end..end], &text[..first_end], &text[end..]);
    assert_eq!(decode(Some(signer.clone()), false, reordered.as_bytes()), Err(SignatureDoesNotMatch));

    // The final chunk is signed too: dropping it leaves the body incomplete.
    let cut = &body[..body.len() - 2 - 86];
    assert_eq!(decode(Some(signer.clone()), false, cut), Err(IncompleteBody));
    // A chunk without its signature, or with another key's.
    let unsigned = b"5\r\nhello\r\n0\r\n\r\n";
    assert_eq!(decode(Some(signer.clone()), false, unsigned), Err(SignatureDoesNotMatch));
    let other = ChunkSigner::new(
        &[1; 32],
        "20130524T000000Z",
        "20130524/us-east-1/s3/aws4_request",
        signer.seed_signature(),
    );
    assert_eq!(decode(Some(other), false, &body), Err(SignatureDoesNotMatch));
}

#[test]
fn signed_trailers() {
    let signer = streaming_signer();
    let data = vec![b'z'; 1000];
    let crc = "sOO8/Q==";
    let good = signed_body(&signer, &[&data], &[("x-amz-checksum-crc32c", crc)]);
    assert!(decode(Some(signer.clone()), true, &good).is_ok());

    let value_changed = String::from_utf8_lossy(&good).replace(crc, "AAAAAA==");
    assert_eq!(decode(Some(signer.clone()), true, value_changed.as_bytes()), Err(SignatureDoesNotMatch));

    let text = String::from_utf8_lossy(&good).into_owned();
    let sig_at = text.find("x-amz-trailer-signature:").expect("sig") + 24;
    let mut bad_sig = text.clone();
    bad_sig.replace_range(sig_at..sig_at + 1, if &text[sig_at..sig_at + 1] == "0" { "1" } else { "0" });
    assert_eq!(decode(Some(signer.clone()), true, bad_sig.as_bytes()), Err(SignatureDoesNotMatch));

    let line_end = text[sig_at..].find("\r\n").expect("eol") + sig_at + 2;
    let no_sig = format!("{}{}", &text[..sig_at - 24], &text[line_end..]);
    assert_eq!(decode(Some(signer.clone()), true, no_sig.as_bytes()), Err(SignatureDoesNotMatch));

    // Trailers in a body that announced none.
    assert_eq!(decode(Some(signer.clone()), false, &good), Err(InvalidRequest));
}

fn unsigned_trailer_request() -> RawRequest {
    parse_request(&common::read("botocore/put-unsigned-trailer-crc32.http"))
}

fn signed_at(req: &RawRequest) -> i64 {
    tessera_proto::time::parse_amz_date(req.headers.get("x-amz-date").expect("date")).expect("date")
}

#[test]
fn unsigned_trailer_seed_signature_is_always_verified() {
    let req = unsigned_trailer_request();
    let now = signed_at(&req);
    assert!(auth(&req, now).is_ok());
    let value = req.headers.get("authorization").expect("auth").to_string();
    let last = value.chars().last().expect("sig");
    let forged = format!("{}{}", &value[..value.len() - 1], if last == '0' { '1' } else { '0' });
    let forged = req.with_header("authorization", Some(&forged));
    assert_eq!(code(auth(&forged, now)), Err(SignatureDoesNotMatch));
    // The signed headers of the mode can't be changed either.
    let other_trailer = req.with_header("x-amz-trailer", Some("x-amz-checksum-sha256"));
    assert_eq!(code(auth(&other_trailer, now)), Err(SignatureDoesNotMatch));
    let signed_mode = req.with_header("x-amz-content-sha256", Some("STREAMING-AWS4-HMAC-SHA256-PAYLOAD"));
    assert_eq!(code(auth(&signed_mode, now)), Err(SignatureDoesNotMatch));
}

fn verify_unsigned_trailer_body(req: &RawRequest, body: &[u8]) -> Result<(), S3ErrorCode> {
    let ctx = auth(req, signed_at(req)).map_err(|e| e.code)?.expect("ctx");
    let mut dec = AwsChunkedDecoder::new(None, true);
    let data = decode_in_pieces(&mut dec, body, 1000).map_err(|e| e.code)?;
    let mut v = BodyVerifier::from_request(&req.headers, &ctx.payload).map_err(|e| e.code)?;
    v.update(&data);
    v.finish(dec.trailers()).map(|_| ()).map_err(|e| e.code)
}

#[test]
fn unsigned_trailer_checksum_is_the_integrity_check() {
    let req = unsigned_trailer_request();
    assert_eq!(verify_unsigned_trailer_body(&req, &req.body), Ok(()));
    let tampered_checksum = String::from_utf8_lossy(&req.body).replace("t3KUzw==", "t3KUzA==");
    assert_eq!(verify_unsigned_trailer_body(&req, tampered_checksum.as_bytes()), Err(BadDigest));
    let tampered_data = String::from_utf8_lossy(&req.body).replacen("Hello", "Jello", 1);
    assert_eq!(verify_unsigned_trailer_body(&req, tampered_data.as_bytes()), Err(BadDigest));
    let bad_base64 = String::from_utf8_lossy(&req.body).replace("t3KUzw==", "t3KUzw");
    assert_eq!(verify_unsigned_trailer_body(&req, bad_base64.as_bytes()), Err(BadDigest));
    let text = String::from_utf8_lossy(&req.body).into_owned();
    let no_trailer = format!("{}\r\n", &text[..text.find("x-amz-checksum-crc32").expect("trailer")]);
    assert_eq!(verify_unsigned_trailer_body(&req, no_trailer.as_bytes()), Err(InvalidRequest));
}

#[test]
fn aws_chunked_limits() {
    // A chunk header line at the limit is accepted, one byte more is not.
    let ext = |total: usize| {
        let pad = total - "5;x=".len();
        format!("5;x={}\r\nhello\r\n0\r\n\r\n", "y".repeat(pad))
    };
    assert!(decode(None, false, ext(MAX_CHUNK_HEADER_LINE_BYTES).as_bytes()).is_ok());
    assert_eq!(decode(None, false, ext(MAX_CHUNK_HEADER_LINE_BYTES + 1).as_bytes()), Err(InvalidRequest));
    // An endless header line is refused without waiting for its end.
    let mut dec = AwsChunkedDecoder::new(None, false);
    let endless = vec![b'1'; MAX_CHUNK_HEADER_LINE_BYTES + 10];
    assert_eq!(dec.feed(&endless).map(|_| ()).map_err(|e| e.code), Err(InvalidRequest));

    // Trailer count: at the limit, and one more.
    let trailers = |n: usize| {
        let mut body = String::from("0\r\n");
        for i in 0..n {
            body.push_str(&format!("x-t{i}:v\r\n"));
        }
        body.push_str("\r\n");
        body
    };
    assert!(decode(None, true, trailers(MAX_TRAILER_LINES).as_bytes()).is_ok());
    assert_eq!(decode(None, true, trailers(MAX_TRAILER_LINES + 1).as_bytes()), Err(InvalidRequest));

    // Trailer section size: at the limit, and one more byte.
    let sized = |total: usize| {
        // "0\r\n" + "x:" + value + "\r\n" + "\r\n"; the section counts the line and final CRLFs.
        let value = "v".repeat(total - "x:".len() - 4);
        format!("0\r\nx:{value}\r\n\r\n")
    };
    assert!(decode(None, true, sized(MAX_TRAILER_SECTION_BYTES).as_bytes()).is_ok());
    assert_eq!(decode(None, true, sized(MAX_TRAILER_SECTION_BYTES + 1).as_bytes()), Err(InvalidRequest));
}

#[test]
fn decoder_fed_one_byte_at_a_time_matches_whole() {
    let signer = streaming_signer();
    let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let body = signed_body(&signer, &[&data[..4096], &data[4096..]], &[("x-amz-checksum-crc32", "AAAAAA==")]);
    let mut whole = AwsChunkedDecoder::new(Some(signer.clone()), true);
    let a = decode_in_pieces(&mut whole, &body, body.len()).expect("whole");
    let mut bytewise = AwsChunkedDecoder::new(Some(signer), true);
    let b = decode_in_pieces(&mut bytewise, &body, 1).expect("bytewise");
    assert_eq!(a, data);
    assert_eq!(a, b);
    assert_eq!(whole.trailers(), bytewise.trailers());
    assert_eq!(whole.decoded_len(), bytewise.decoded_len());
}

#[test]
fn body_verifier_rules() {
    let md5_of_hello = "XUFAKrxLKna5cZ2REBfFkg==";
    let h = |pairs: &[(&str, &str)]| {
        let mut h = Headers::new();
        for (n, v) in pairs {
            h.push(n, v);
        }
        h
    };
    let run = |headers: &Headers, body: &[u8], trailers: &[(String, String)]| {
        let mut v = BodyVerifier::from_request(headers, &PayloadMode::Unsigned).map_err(|e| e.code)?;
        v.update(body);
        v.finish(trailers).map_err(|e| e.code)
    };
    let sums = run(&h(&[("content-md5", md5_of_hello)]), b"hello", &[]).expect("md5 ok");
    assert_eq!(hex::encode(sums.md5), "5d41402abc4b2a76b9719d911017c592");
    assert_eq!(run(&h(&[("content-md5", md5_of_hello)]), b"hellO", &[]).map(|_| ()), Err(BadDigest));
    assert_eq!(run(&h(&[("content-md5", "notbase64!")]), b"hello", &[]).map(|_| ()), Err(InvalidDigest));
    assert_eq!(run(&h(&[("content-md5", "aGVsbG8=")]), b"hello", &[]).map(|_| ()), Err(InvalidDigest));

    let crc_hello = "NhCmhg==";
    assert!(run(&h(&[("x-amz-checksum-crc32", crc_hello)]), b"hello", &[]).is_ok());
    let e = BodyVerifier::from_request(&h(&[("x-amz-checksum-crc32", crc_hello)]), &PayloadMode::Unsigned)
        .map(|mut v| {
            v.update(b"hellO");
            v.finish(&[])
        })
        .expect("verifier")
        .expect_err("mismatch");
    assert_eq!(
        (e.code, e.message.as_str()),
        (BadDigest, "The CRC32 you specified did not match the calculated checksum.")
    );
    assert_eq!(run(&h(&[("x-amz-checksum-crc32", "NhCm")]), b"hello", &[]).map(|_| ()), Err(BadDigest));
    assert_eq!(
        run(&h(&[("x-amz-checksum-crc32", crc_hello), ("x-amz-checksum-crc32c", "AAAAAA==")]), b"hello", &[])
            .map(|_| ()),
        Err(InvalidRequest)
    );
    assert_eq!(
        run(&h(&[("x-amz-sdk-checksum-algorithm", "MD4")]), b"hello", &[]).map(|_| ()),
        Err(InvalidRequest)
    );
    // Announced as a trailer but sent as a header: accepted.
    let both = h(&[("x-amz-trailer", "x-amz-checksum-crc32"), ("x-amz-checksum-crc32", crc_hello)]);
    assert!(run(&both, b"hello", &[]).is_ok());
    // Announced as a trailer, sent nowhere.
    let announced = h(&[("x-amz-trailer", "x-amz-checksum-crc32")]);
    assert_eq!(run(&announced, b"hello", &[]).map(|_| ()), Err(InvalidRequest));
    let trailer = vec![("x-amz-checksum-crc32".to_string(), crc_hello.to_string())];
    assert!(run(&announced, b"hello", &trailer).is_ok());
    // Trailer and header announcing different algorithms.
    let mixed = h(&[("x-amz-trailer", "x-amz-checksum-crc32c"), ("x-amz-checksum-crc32", crc_hello)]);
    assert_eq!(run(&mixed, b"hello", &[]).map(|_| ()), Err(InvalidRequest));
    // A trailer payload mode must say which checksum trails.
    let e = BodyVerifier::from_request(&h(&[]), &PayloadMode::StreamingUnsignedTrailer)
        .map(|_| ())
        .map_err(|e| e.code);
    assert_eq!(e, Err(InvalidRequest));
    assert!(BodyVerifier::from_request(&announced, &PayloadMode::StreamingUnsignedTrailer).is_ok());
    // The algorithm header alone: computed and reported.
    let algo_only = run(&h(&[("x-amz-sdk-checksum-algorithm", "crc32")]), b"hello", &[]).expect("ok");
    assert_eq!(algo_only.checksum.map(|(_, v)| v), Some(crc_hello.to_string()));
}
