//! Authentication over raw HTTP: header signatures, presigned URLs,
//! anonymous requests, unsigned-trailer uploads, error bodies.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::presigning::{PresignedRequest, PresigningConfig};
use tessera_tests::sign::Payload;
use tessera_tests::*;

async fn with_object(bucket: &str, key: &str, data: &[u8]) -> (Server, aws_sdk_s3::Client) {
    let server = Server::start();
    let s3 = server.client();
    ok(s3.create_bucket().bucket(bucket).send().await, "create bucket");
    ok(
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(bytestream(data))
            .send()
            .await,
        "put",
    );
    (server, s3)
}

async fn absent(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> bool {
    match s3.head_object().bucket(bucket).key(key).send().await {
        Ok(_) => false,
        Err(e) => failure_of(&e).status == Some(404),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_secret_is_signature_does_not_match() {
    let (server, s3) = with_object("sig", "k", b"secret data").await;
    let now = SystemTime::now();
    let wrong = format!("{}x", server.secret_key);
    let resp = server.send(
        &server
            .raw_request("GET", "/sig/k")
            .sign(&server.access_key, &wrong, now),
    );
    resp.assert_error(403, "SignatureDoesNotMatch");
    assert!(!resp.body_text().contains("secret data"));

    let put = server
        .raw_request("PUT", "/sig/new")
        .body(b"intruder".to_vec())
        .sign(&server.access_key, &wrong, now);
    server.send(&put).assert_error(403, "SignatureDoesNotMatch");
    assert!(absent(&s3, "sig", "new").await, "a refused PUT stored an object");

    // A signature for one request does not authorize another: change the
    // path after signing.
    let mut moved = server.sign(server.raw_request("GET", "/sig/k"));
    moved.target = "/sig/other".into();
    server.send(&moved).assert_error(403, "SignatureDoesNotMatch");
    // ... or a signed header.
    let mut changed = server.sign(server.raw_request("GET", "/sig/k").header("x-amz-meta-a", "1"));
    changed.headers.iter_mut().find(|(n, _)| n == "x-amz-meta-a").unwrap().1 = "2".into();
    server.send(&changed).assert_error(403, "SignatureDoesNotMatch");

    // The same request signed properly works (the failures above are about
    // the signature, not the request).
    let resp = server.send(&server.sign(server.raw_request("GET", "/sig/k")));
    assert_eq!((resp.status, resp.body.as_slice()), (200, b"secret data".as_slice()));
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_access_key_is_invalid_access_key_id() {
    let (server, _s3) = with_object("akid", "k", b"x").await;
    let resp = server.send(&server.raw_request("GET", "/akid/k").sign(
        "AKIDNOTKNOWN00000000",
        &server.secret_key,
        SystemTime::now(),
    ));
    resp.assert_error(403, "InvalidAccessKeyId");
    let resp = server.send(
        &server
            .raw_request("GET", "/")
            .sign("AKIDNOTKNOWN00000000", "whatever", SystemTime::now()),
    );
    resp.assert_error(403, "InvalidAccessKeyId");
}

#[tokio::test(flavor = "multi_thread")]
async fn skewed_date_is_request_time_too_skewed() {
    let (server, _s3) = with_object("skew", "k", b"x").await;
    for skew in [-3600i64, 3600, -16 * 60, 16 * 60] {
        let t = if skew < 0 {
            SystemTime::now() - Duration::from_secs(skew.unsigned_abs())
        } else {
            SystemTime::now() + Duration::from_secs(skew as u64)
        };
        let resp = server.send(
            &server
                .raw_request("GET", "/skew/k")
                .sign(&server.access_key, &server.secret_key, t),
        );
        resp.assert_error(403, "RequestTimeTooSkewed");
    }
    // Within the 15-minute window is fine.
    let t = SystemTime::now() - Duration::from_secs(10 * 60);
    let resp = server.send(
        &server
            .raw_request("GET", "/skew/k")
            .sign(&server.access_key, &server.secret_key, t),
    );
    assert_eq!(resp.status, 200, "{resp:?}");
}

/// Sends a presigned request over raw TCP, with `body` for a PUT.
fn fetch_presigned(
    server: &Server,
    p: &PresignedRequest,
    body: Option<&[u8]>,
    tamper: impl Fn(String) -> String,
) -> RawResponse {
    let uri = p.uri();
    let prefix = server.endpoint();
    let target = uri
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("presigned URI {uri} is not on {prefix}"));
    let mut req = server.raw_request(p.method(), &tamper(target.to_string()));
    for (name, value) in p.headers() {
        if !name.eq_ignore_ascii_case("host") {
            req = req.header(name, value);
        }
    }
    if let Some(b) = body {
        req = req.body(b.to_vec());
    }
    server.send(&req)
}

fn presign_for(secs: u64) -> PresigningConfig {
    PresigningConfig::expires_in(Duration::from_secs(secs)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn presigned_get_and_put_work() {
    let (server, s3) = with_object("pre", "dir/obj ✓", b"presigned content").await;
    let p = s3
        .get_object()
        .bucket("pre")
        .key("dir/obj ✓")
        .presigned(presign_for(300))
        .await
        .expect("presign");
    assert!(p.uri().contains("X-Amz-Signature="), "{}", p.uri());
    let resp = fetch_presigned(&server, &p, None, |t| t);
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body, b"presigned content");

    let p = s3
        .put_object()
        .bucket("pre")
        .key("uploaded")
        .presigned(presign_for(300))
        .await
        .expect("presign put");
    let resp = fetch_presigned(&server, &p, Some(b"via presigned put"), |t| t);
    assert_eq!(resp.status, 200, "{resp:?}");
    let got = read_body(ok(s3.get_object().bucket("pre").key("uploaded").send().await, "get")).await;
    assert_eq!(got, b"via presigned put");
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_presigned_url_is_access_denied() {
    let (server, s3) = with_object("exp", "k", b"old news").await;
    let cfg = PresigningConfig::builder()
        .start_time(SystemTime::now() - Duration::from_secs(3600))
        .expires_in(Duration::from_secs(60))
        .build()
        .unwrap();
    let p = s3
        .get_object()
        .bucket("exp")
        .key("k")
        .presigned(cfg)
        .await
        .expect("presign");
    let resp = fetch_presigned(&server, &p, None, |t| t);
    resp.assert_error(403, "AccessDenied");
    assert!(!resp.body_text().contains("old news"));
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_presigned_url_is_refused() {
    let (server, s3) = with_object("tamper", "k", b"guarded").await;
    ok(
        s3.put_object()
            .bucket("tamper")
            .key("other")
            .body(bytestream(b"also guarded"))
            .send()
            .await,
        "put",
    );
    let p = s3
        .get_object()
        .bucket("tamper")
        .key("k")
        .presigned(presign_for(300))
        .await
        .expect("presign");
    let flip_last_sig_char = |t: String| {
        let i = t.find("X-Amz-Signature=").expect("signature param") + "X-Amz-Signature=".len();
        let mut b = t.into_bytes();
        b[i] = if b[i] == b'0' { b'1' } else { b'0' };
        String::from_utf8(b).unwrap()
    };
    type Tamper = Box<dyn Fn(String) -> String>;
    let tampers: Vec<(&str, Tamper, &[u16])> = vec![
        ("signature changed", Box::new(flip_last_sig_char), &[403]),
        (
            "expiry extended",
            Box::new(|t: String| t.replace("X-Amz-Expires=300", "X-Amz-Expires=604800")),
            &[403],
        ),
        (
            "other key",
            Box::new(|t: String| t.replacen("/tamper/k?", "/tamper/other?", 1)),
            &[403],
        ),
        (
            "extra override",
            Box::new(|t: String| format!("{t}&response-content-type=text%2Fhtml")),
            &[403],
        ),
        // S3 answers 400 AuthorizationQueryParametersError to a partial set.
        (
            "signature removed",
            Box::new(|t: String| t.split("&X-Amz-Signature=").next().unwrap().to_string()),
            &[400, 403],
        ),
    ];
    for (what, tamper, statuses) in tampers {
        let target = p.uri().strip_prefix(&server.endpoint()).unwrap().to_string();
        assert_ne!(tamper(target.clone()), target, "{what}: tamper did nothing");
        let resp = fetch_presigned(&server, &p, None, tamper);
        assert!(
            statuses.contains(&resp.status),
            "{what}: expected {statuses:?}, got {resp:?}"
        );
        assert!(
            resp.error_code().is_some(),
            "{what}: no error code in {:?}",
            resp.body_text()
        );
        assert!(!resp.body_text().contains("guarded"), "{what}: leaked the object");
    }
    // Untouched, it works.
    let resp = fetch_presigned(&server, &p, None, |t| t);
    assert_eq!((resp.status, resp.body.as_slice()), (200, b"guarded".as_slice()));
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_requests_to_private_bucket_are_access_denied() {
    let (server, s3) = with_object("private", "k", b"private data").await;
    let requests = [
        server.raw_request("GET", "/private/k"),
        server.raw_request("GET", "/private"),
        server.raw_request("GET", "/private?list-type=2"),
        server.raw_request("GET", "/"),
        server.raw_request("PUT", "/private/anon").body(b"anonymous".to_vec()),
        server.raw_request("DELETE", "/private/k"),
        server.raw_request("PUT", "/anon-bucket"),
        server.raw_request("DELETE", "/private"),
    ];
    for req in &requests {
        let resp = server.send(req);
        assert_eq!(
            (resp.status, resp.error_code().as_deref()),
            (403, Some("AccessDenied")),
            "anonymous {} {}: {resp:?}",
            req.method,
            req.target
        );
        assert!(!resp.body_text().contains("private data"));
    }
    let head = server.send(&server.raw_request("HEAD", "/private/k"));
    assert_eq!(head.status, 403, "anonymous HEAD: {head:?}");
    assert!(absent(&s3, "private", "anon").await, "anonymous PUT stored an object");
    ok(
        s3.head_object().bucket("private").key("k").send().await,
        "anonymous DELETE removed the object",
    );
    assert_status(s3.head_bucket().bucket("anon-bucket").send().await, 404);
}

/// An aws-chunked body as the SDKs send it with STREAMING-UNSIGNED-PAYLOAD-TRAILER.
fn aws_chunked_with_crc32(data: &[u8], crc32: u32, chunk_size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in data.chunks(chunk_size) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n");
    out.extend_from_slice(format!("x-amz-checksum-crc32:{}\r\n\r\n", b64(&crc32.to_be_bytes())).as_bytes());
    out
}

fn unsigned_trailer_put(server: &Server, target: &str, data: &[u8], crc32: u32, secret: &str) -> RawRequest {
    server
        .raw_request("PUT", target)
        .header("Content-Encoding", "aws-chunked")
        .header("x-amz-decoded-content-length", &data.len().to_string())
        .header("x-amz-trailer", "x-amz-checksum-crc32")
        .body(aws_chunked_with_crc32(data, crc32, 64 * 1024))
        .sign_payload(
            &server.access_key,
            secret,
            SystemTime::now(),
            Payload::StreamingUnsignedTrailer,
        )
}

#[tokio::test(flavor = "multi_thread")]
async fn unsigned_trailer_put_verifies_seed_signature_and_checksum() {
    let server = Server::start();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("trailer").send().await, "create");
    let data = random_bytes(200_000, 5);
    let crc = crc32fast::hash(&data);

    // Control: a correct request is accepted and stores the decoded bytes.
    let resp = server.send(&unsigned_trailer_put(
        &server,
        "/trailer/good",
        &data,
        crc,
        &server.secret_key,
    ));
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.header("etag"), Some(etag(&data).as_str()));
    let got = read_body(ok(s3.get_object().bucket("trailer").key("good").send().await, "get")).await;
    assert!(got == data, "stored bytes differ from the decoded payload");

    // Wrong seed signature: refused, nothing stored.
    let wrong = format!("{}x", server.secret_key);
    let resp = server.send(&unsigned_trailer_put(&server, "/trailer/bad-sig", &data, crc, &wrong));
    resp.assert_error(403, "SignatureDoesNotMatch");
    assert!(
        absent(&s3, "trailer", "bad-sig").await,
        "unsigned-trailer PUT with a wrong signature stored data"
    );
    // ... nor does it overwrite.
    let resp = server.send(&unsigned_trailer_put(
        &server,
        "/trailer/good",
        b"overwritten",
        crc32fast::hash(b"overwritten"),
        &wrong,
    ));
    resp.assert_error(403, "SignatureDoesNotMatch");
    let got = read_body(ok(s3.get_object().bucket("trailer").key("good").send().await, "get")).await;
    assert!(got == data, "refused PUT replaced the object");

    // Right signature, wrong trailer checksum: refused, nothing stored.
    let resp = server.send(&unsigned_trailer_put(
        &server,
        "/trailer/bad-crc",
        &data,
        crc ^ 1,
        &server.secret_key,
    ));
    assert_eq!(resp.status, 400, "checksum mismatch must be 400: {resp:?}");
    assert!(
        absent(&s3, "trailer", "bad-crc").await,
        "PUT with a wrong CRC32 trailer stored data"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn payload_not_matching_signed_sha256_is_refused() {
    let server = Server::start();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("sha").send().await, "create");
    let signed_body = b"the body that was signed".to_vec();
    let req = server.sign(server.raw_request("PUT", "/sha/k").body(signed_body.clone()));
    let swapped = req.raw_body(b"the body that was SENT!!".to_vec());
    let resp = server.send(&swapped);
    resp.assert_error(400, "XAmzContentSHA256Mismatch");
    assert!(
        absent(&s3, "sha", "k").await,
        "a body not matching x-amz-content-sha256 was stored"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn error_bodies_are_xml_with_code_message_resource_request_id() {
    let (server, _s3) = with_object("errs", "k", b"x").await;
    let now = SystemTime::now();
    let cases: Vec<(&str, RawRequest, u16, &str)> = vec![
        (
            "no such key",
            server.sign(server.raw_request("GET", "/errs/missing")),
            404,
            "NoSuchKey",
        ),
        (
            "no such bucket",
            server.sign(server.raw_request("GET", "/nobucket/k")),
            404,
            "NoSuchBucket",
        ),
        (
            "invalid bucket name",
            server.sign(server.raw_request("PUT", "/Invalid_Name")),
            400,
            "InvalidBucketName",
        ),
        (
            "bad signature",
            server
                .raw_request("GET", "/errs/k")
                .sign(&server.access_key, "wrong-secret", now),
            403,
            "SignatureDoesNotMatch",
        ),
        (
            "unknown key",
            server.raw_request("GET", "/errs/k").sign("AKIDUNKNOWN", "s", now),
            403,
            "InvalidAccessKeyId",
        ),
        ("anonymous", server.raw_request("GET", "/errs/k"), 403, "AccessDenied"),
        (
            "bucket not empty",
            server.sign(server.raw_request("DELETE", "/errs")),
            409,
            "BucketNotEmpty",
        ),
    ];
    for (what, req, status, code) in cases {
        let resp = server.send(&req);
        resp.assert_error(status, code);
        let ct = resp.header("content-type").unwrap_or("");
        assert!(ct.contains("xml"), "{what}: Content-Type {ct:?}");
        let body = resp.body_text();
        assert!(
            body.trim_start().starts_with("<?xml") || body.trim_start().starts_with("<Error>"),
            "{what}: {body}"
        );
        assert!(body.contains("<Error>") && body.contains("</Error>"), "{what}: {body}");
        let message = resp.xml("Message").unwrap_or_default();
        assert!(!message.is_empty(), "{what}: no Message in {body}");
        assert!(resp.xml("Resource").is_some(), "{what}: no Resource in {body}");
        let request_id = resp.xml("RequestId").unwrap_or_default();
        assert!(!request_id.is_empty(), "{what}: no RequestId in {body}");
        assert_eq!(
            resp.header("x-amz-request-id"),
            Some(request_id.as_str()),
            "{what}: x-amz-request-id header"
        );
    }
    let resp = server.send(&server.sign(server.raw_request("GET", "/errs/missing")));
    assert_eq!(resp.xml("Resource").as_deref(), Some("/errs/missing"));
    // Two requests get two request ids.
    let again = server.send(&server.sign(server.raw_request("GET", "/errs/missing")));
    assert_ne!(resp.xml("RequestId"), again.xml("RequestId"));

    // HEAD errors: right status, no body.
    for (target, status) in [("/errs/missing", 404), ("/nobucket/k", 404)] {
        let resp = server.send(&server.sign(server.raw_request("HEAD", target)));
        assert_eq!(resp.status, status, "HEAD {target}");
    }
    let resp = server.send(
        &server
            .raw_request("HEAD", "/errs/k")
            .sign(&server.access_key, "wrong", now),
    );
    assert_eq!(resp.status, 403, "HEAD with a bad signature");
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_appear_in_server_output() {
    let (server, s3) = with_object("quiet", "k", b"x").await;
    let now = SystemTime::now();
    let wrong = format!("{}x", server.secret_key);
    for _ in 0..3 {
        server.send(
            &server
                .raw_request("GET", "/quiet/k")
                .sign(&server.access_key, &wrong, now),
        );
        server.send(&server.sign(server.raw_request("GET", "/quiet/k")));
    }
    let p = s3
        .get_object()
        .bucket("quiet")
        .key("k")
        .presigned(presign_for(60))
        .await
        .unwrap();
    fetch_presigned(&server, &p, None, |t| t.replace("X-Amz-Expires=60", "X-Amz-Expires=61"));
    let out = format!("{}\n{}", server.stderr_since_start(), server.stdout_lines().join("\n"));
    assert!(
        !out.contains(&server.secret_key),
        "the root secret key appears in the server's output"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_such_key_and_no_such_bucket_errors_name_the_key_and_bucket() {
    // As AWS does: NoSuchKey carries <Key>, NoSuchBucket carries <BucketName>.
    let (server, _s3) = with_object("named", "k", b"x").await;
    let resp = server.send(&server.sign(server.raw_request("GET", "/named/dir/missing%20key")));
    resp.assert_error(404, "NoSuchKey");
    assert_eq!(
        resp.xml("Key").as_deref(),
        Some("dir/missing key"),
        "{}",
        resp.body_text()
    );
    let resp = server.send(&server.sign(server.raw_request("GET", "/nobucket/k")));
    resp.assert_error(404, "NoSuchBucket");
    assert_eq!(
        resp.xml("BucketName").as_deref(),
        Some("nobucket"),
        "{}",
        resp.body_text()
    );
}

/// How to spoil a STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER] upload.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Spoil {
    Nothing,
    /// Sign every chunk against the seed instead of the previous chunk.
    Unchained,
    /// Change a data byte after signing.
    FlipDataByte,
    /// Sign the trailer with the wrong previous signature.
    TrailerSignature,
    /// A correctly signed trailer with a wrong CRC32.
    TrailerChecksum,
}

/// An upload with signed aws-chunked framing, as the SDKs send over plain
/// HTTP; with a signed CRC32 trailer when `trailer` is set.
fn signed_streaming_put(
    server: &Server,
    target: &str,
    data: &[u8],
    secret: &str,
    trailer: bool,
    spoil: Spoil,
) -> RawRequest {
    use tessera_proto::sigv4::{credential_scope, signing_key, ChunkSigner};
    const CHUNK: usize = 64 * 1024;
    let chunks: Vec<&[u8]> = data.chunks(CHUNK).chain(std::iter::once(&[][..])).collect();
    let crc = crc32fast::hash(data) ^ u32::from(spoil == Spoil::TrailerChecksum);
    let trailer_line = format!("x-amz-checksum-crc32:{}", b64(&crc.to_be_bytes()));
    let mut encoded_len: usize = chunks
        .iter()
        .map(|c| format!("{:x}", c.len()).len() + ";chunk-signature=".len() + 64 + 2 + c.len() + 2)
        .sum();
    if trailer {
        // The final "\r\n" after the zero chunk is replaced by the trailer section.
        encoded_len += trailer_line.len() + 2 + "x-amz-trailer-signature:".len() + 64 + 2;
    }
    let mut req = server
        .raw_request("PUT", target)
        .header("Content-Encoding", "aws-chunked")
        .header("x-amz-decoded-content-length", &data.len().to_string())
        .header("Content-Length", &encoded_len.to_string());
    if trailer {
        req = req.header("x-amz-trailer", "x-amz-checksum-crc32");
    }
    let payload = if trailer {
        Payload::StreamingSignedTrailer
    } else {
        Payload::StreamingSigned
    };
    let req = req.sign_payload(&server.access_key, secret, SystemTime::now(), payload);
    let seed = req.signature().expect("seed signature").to_string();
    let amz_date = req.get_header("x-amz-date").unwrap().to_string();
    let date = &amz_date[..8];
    let signer = ChunkSigner::new(
        &signing_key(secret, date, tessera_tests::sign::REGION, "s3"),
        &amz_date,
        &credential_scope(date, tessera_tests::sign::REGION, "s3"),
        &seed,
    );
    let mut body = Vec::with_capacity(encoded_len);
    let mut previous = seed.clone();
    for c in &chunks {
        let sig = signer.sign_chunk(&previous, c);
        body.extend(format!("{:x};chunk-signature={sig}\r\n", c.len()).into_bytes());
        body.extend_from_slice(c);
        if !(trailer && c.is_empty()) {
            body.extend_from_slice(b"\r\n");
        }
        if spoil != Spoil::Unchained {
            previous = sig;
        }
    }
    if trailer {
        let against = if spoil == Spoil::TrailerSignature {
            seed.as_str()
        } else {
            previous.as_str()
        };
        let sig = signer.sign_trailer(against, format!("{trailer_line}\n").as_bytes());
        body.extend(format!("{trailer_line}\r\nx-amz-trailer-signature:{sig}\r\n\r\n").into_bytes());
    }
    assert_eq!(body.len(), encoded_len);
    if spoil == Spoil::FlipDataByte {
        let at = body.windows(2).position(|w| w == b"\r\n").unwrap() + 2 + 1000;
        body[at] ^= 0x55;
    }
    req.raw_body(body)
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_streaming_put_verifies_chunk_chain_and_trailer() {
    let server = Server::start();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("chunks").send().await, "create");
    let data = random_bytes(200_000, 8);
    let wrong_secret = format!("{}x", server.secret_key);

    for trailer in [false, true] {
        let good = format!("good-{trailer}");
        let req = signed_streaming_put(
            &server,
            &format!("/chunks/{good}"),
            &data,
            &server.secret_key,
            trailer,
            Spoil::Nothing,
        );
        let resp = server.send(&req);
        assert_eq!(resp.status, 200, "trailer {trailer}: {resp:?}");
        let got = read_body(ok(s3.get_object().bucket("chunks").key(&good).send().await, "get")).await;
        assert!(
            got == data,
            "trailer {trailer}: stored bytes differ from the decoded payload"
        );

        let mut cases = vec![
            ("wrong seed signature", wrong_secret.as_str(), Spoil::Nothing, 403),
            (
                "chunk data changed after signing",
                server.secret_key.as_str(),
                Spoil::FlipDataByte,
                403,
            ),
            ("chunks not chained", server.secret_key.as_str(), Spoil::Unchained, 403),
        ];
        if trailer {
            cases.push((
                "trailer signature wrong",
                server.secret_key.as_str(),
                Spoil::TrailerSignature,
                403,
            ));
            cases.push((
                "signed trailer with a wrong CRC32",
                server.secret_key.as_str(),
                Spoil::TrailerChecksum,
                400,
            ));
        }
        for (what, secret, spoil, status) in cases {
            let key = format!("{}-{trailer}", what.replace(' ', "-"));
            let resp = server.send(&signed_streaming_put(
                &server,
                &format!("/chunks/{key}"),
                &data,
                secret,
                trailer,
                spoil,
            ));
            if status == 403 {
                resp.assert_error(403, "SignatureDoesNotMatch");
            } else {
                assert_eq!(resp.status, status, "{what}: {resp:?}");
            }
            assert!(
                absent(&s3, "chunks", &key).await,
                "{what} (trailer {trailer}): data was stored"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn checksum_header_instead_of_trailer_is_verified() {
    // Some SDKs send x-amz-checksum-* as a header (the Rust SDK does for
    // in-memory bodies).
    let server = Server::start();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("sums").send().await, "create");
    let data = random_bytes(50_000, 9);
    let good = b64(&crc32fast::hash(&data).to_be_bytes());
    let bad = b64(&(crc32fast::hash(&data) ^ 1).to_be_bytes());
    let put = |key: &str, crc: &str| {
        server.sign(
            server
                .raw_request("PUT", &format!("/sums/{key}"))
                .header("x-amz-checksum-crc32", crc)
                .body(data.clone()),
        )
    };
    let resp = server.send(&put("good", &good));
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.header("x-amz-checksum-crc32"), Some(good.as_str()));
    let resp = server.send(&put("bad", &bad));
    assert_eq!(resp.status, 400, "wrong x-amz-checksum-crc32 header: {resp:?}");
    assert!(
        absent(&s3, "sums", "bad").await,
        "an object with a wrong checksum header was stored"
    );
}
