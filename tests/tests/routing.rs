//! Routing: only documented sub-resources select an operation, other query
//! parameters are ignored (as AWS ignores them); presigned URLs as boto3
//! builds them; SigV2 presigned URLs; session tokens; virtual-host-style
//! requests under `--domain` (the Host `bucket.localhost` sent to loopback).

use std::time::SystemTime;

use base64::Engine as _;
use ring::hmac;
use tessera_proto::Headers;
use tessera_tests::sign::unix_secs;
use tessera_tests::*;

/// A presigned URL (path and query) for `method` on `path` with extra
/// query parameters signed into it, as boto3 builds them.
fn presigned(server: &Server, method: &str, path: &str, query: &str) -> String {
    let mut h = Headers::new();
    h.push("host", &server.host());
    let now = unix_secs(SystemTime::now());
    let q = tessera_proto::sigv4::presign_query(
        method, path, query, &h, &server.access_key, &server.secret_key, "us-east-1", now, 300,
    );
    format!("{path}?{q}")
}

#[tokio::test(flavor = "multi_thread")]
async fn boto3_presigned_put_with_content_type_in_the_query_works() {
    let (server, s3) = with_bucket("pre").await;
    // boto3's generate_presigned_url('put_object', Params={..., 'ContentType': 'text/plain'}).
    let url = presigned(&server, "PUT", "/pre/note.txt", "content-type=text%2Fplain&x-id=PutObject");
    let resp = server.send(&server.raw_request("PUT", &url).header("Content-Type", "text/plain").body("hi"));
    assert_eq!(resp.status, 200, "{}", resp.body_text());
    let got = ok(s3.get_object().bucket("pre").key("note.txt").send().await, "get");
    assert_eq!(read_body(got).await, b"hi");
    // response-* overrides on a presigned GET.
    let url = presigned(&server, "GET", "/pre/note.txt", "response-content-type=application%2Fx-test&response-cache-control=no-store");
    let resp = server.send(&server.raw_request("GET", &url));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/x-test"));
    assert_eq!(resp.header("cache-control"), Some("no-store"));
}

#[tokio::test(flavor = "multi_thread")]
async fn presigned_v4_expiry_limits() {
    let (server, _s3) = with_bucket("expiry").await;
    let mut h = Headers::new();
    h.push("host", &server.host());
    let now = unix_secs(SystemTime::now());
    let url = |expires: i64| {
        let q = tessera_proto::sigv4::presign_query("GET", "/expiry", "", &h, &server.access_key, &server.secret_key, "us-east-1", now, expires);
        format!("/expiry?{q}")
    };
    assert_eq!(server.send(&server.raw_request("GET", &url(604_800))).status, 200, "seven days is the limit");
    server.send(&server.raw_request("GET", &url(604_801))).assert_error(400, "AuthorizationQueryParametersError");
    server.send(&server.raw_request("GET", &url(0))).assert_error(403, "AccessDenied");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_parameters_are_ignored_documented_unserved_ones_are_501() {
    let (server, s3) = with_bucket("route").await;
    let send = |method: &str, target: &str, body: &str| {
        server.send(&server.sign(server.raw_request(method, target).body(body.to_string())))
    };
    assert_eq!(send("PUT", "/route/k?vendorExtra=1&foo", "v").status, 200);
    assert_eq!(send("GET", "/route/k?someTracking=abc", "").status, 200);
    send("PUT", "/route?website", "<x/>").assert_error(501, "NotImplemented");
    send("PUT", "/route/k?renameObject", "").assert_error(501, "NotImplemented");
    // A documented sub-resource never falls through to a destructive default.
    send("DELETE", "/route?metadataTable", "").assert_error(501, "NotImplemented");
    send("DELETE", "/route?versions", "").assert_error(501, "NotImplemented");
    assert!(s3.head_bucket().bucket("route").send().await.is_ok(), "the bucket survived");
    let got = ok(s3.get_object().bucket("route").key("k").send().await, "get");
    assert_eq!(read_body(got).await, b"v");
}

/// The SigV2 query string for `method` on `resource`, valid `secs` from now.
fn presign_v2(server: &Server, method: &str, resource: &str, content_type: &str, secs: i64) -> String {
    let expires = unix_secs(SystemTime::now()) + secs;
    let sts = format!("{method}\n\n{content_type}\n{expires}\n{resource}");
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, server.secret_key.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(hmac::sign(&key, sts.as_bytes()).as_ref());
    let sig: String = sig.bytes().map(|b| match b {
        b'+' => "%2B".to_string(),
        b'/' => "%2F".to_string(),
        b'=' => "%3D".to_string(),
        b => (b as char).to_string(),
    }).collect();
    format!("AWSAccessKeyId={}&Expires={expires}&Signature={sig}", server.access_key)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigv2_presigned_urls_for_every_method() {
    let (server, s3) = with_bucket("sigv2").await;
    let q = presign_v2(&server, "PUT", "/sigv2/obj", "text/plain", 300);
    let resp = server.send(&server.raw_request("PUT", &format!("/sigv2/obj?{q}")).header("Content-Type", "text/plain").body("v2!"));
    assert_eq!(resp.status, 200, "{}", resp.body_text());
    let q = presign_v2(&server, "GET", "/sigv2/obj", "", 300);
    let resp = server.send(&server.raw_request("GET", &format!("/sigv2/obj?{q}")));
    assert_eq!((resp.status, resp.body_text().as_str()), (200, "v2!"));
    let q = presign_v2(&server, "HEAD", "/sigv2/obj", "", 300);
    assert_eq!(server.send(&server.raw_request("HEAD", &format!("/sigv2/obj?{q}"))).status, 200);
    // Expired, too far in the future, tampered.
    let q = presign_v2(&server, "GET", "/sigv2/obj", "", -10);
    server.send(&server.raw_request("GET", &format!("/sigv2/obj?{q}"))).assert_error(403, "AccessDenied");
    let q = presign_v2(&server, "GET", "/sigv2/obj", "", 8 * 86_400);
    server.send(&server.raw_request("GET", &format!("/sigv2/obj?{q}"))).assert_error(403, "AccessDenied");
    let q = presign_v2(&server, "GET", "/sigv2/other", "", 300);
    server.send(&server.raw_request("GET", &format!("/sigv2/obj?{q}"))).assert_error(403, "SignatureDoesNotMatch");
    let q = presign_v2(&server, "DELETE", "/sigv2/obj", "", 300);
    assert_eq!(server.send(&server.raw_request("DELETE", &format!("/sigv2/obj?{q}"))).status, 204);
    assert!(s3.head_object().bucket("sigv2").key("obj").send().await.is_err(), "deleted");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_token_without_sts_is_invalid_and_access_denied_leaks_nothing() {
    let (server, _s3) = with_bucket("tok").await;
    // Presigned: the token rides in the signed query.
    let url = presigned(&server, "GET", "/tok", "X-Amz-Security-Token=FQoGZXIvYXdzEJr");
    server.send(&server.raw_request("GET", &url)).assert_error(400, "InvalidToken");
    // Header: it must be signed, and is then refused as invalid.
    let req = server.raw_request("GET", "/tok").header("x-amz-security-token", "FQoGZXIvYXdzEJr");
    server.send(&server.sign(req)).assert_error(400, "InvalidToken");
    // An anonymous refusal says nothing about the bucket's owner or contents.
    let resp = server.send(&server.raw_request("GET", "/tok/secret-key"));
    resp.assert_error(403, "AccessDenied");
    let body = resp.body_text();
    assert!(!body.contains(&server.access_key) && !body.contains("tessera-root"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn virtual_host_style_requests_under_the_domain() {
    let (server, s3) = with_bucket("vhost").await;
    let host = format!("vhost.localhost:{}", server.addr().port());
    // PutObject and GetObject with the bucket in the Host header (SigV4).
    let req = RawRequest::new("PUT", "/dir/file.txt").header("Host", &host).body("virtual");
    assert_eq!(server.send(&server.sign(req)).status, 200);
    let got = ok(s3.get_object().bucket("vhost").key("dir/file.txt").send().await, "get");
    assert_eq!(read_body(got).await, b"virtual");
    let req = RawRequest::new("GET", "/?list-type=2").header("Host", &host);
    let resp = server.send(&server.sign(req));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.xml("Key").as_deref(), Some("dir/file.txt"));
    // SigV2 signs /bucket/key for a virtual-hosted request.
    let date = tessera_proto::time::format_http_date(unix_secs(SystemTime::now()));
    let mut h = Headers::new();
    h.push("host", &host);
    h.push("date", &date);
    let auth = tessera_proto::sigv2::sign_request("GET", "/vhost/dir/file.txt", "", &h, &server.access_key, &server.secret_key);
    let req = RawRequest::new("GET", "/dir/file.txt").header("Host", &host).header("Date", &date).header("Authorization", &auth);
    let resp = server.send(&req);
    assert_eq!((resp.status, resp.body_text().as_str()), (200, "virtual"));
    // An unknown domain is path-style: `/dir/...` is then bucket "dir".
    let req = RawRequest::new("GET", "/dir/file.txt").header("Host", &format!("vhost.example.com:{}", server.addr().port()));
    server.send(&server.sign(req)).assert_error(404, "NoSuchBucket");
}

#[tokio::test(flavor = "multi_thread")]
async fn virtual_host_with_a_custom_domain() {
    let server = Server::start_with(ServerOpts {
        args: vec!["--domain".into(), "s3.test".into()],
        ..Default::default()
    });
    let s3 = server.client();
    ok(s3.create_bucket().bucket("cust").send().await, "create");
    let req = RawRequest::new("PUT", "/k").header("Host", &format!("cust.s3.test:{}", server.addr().port())).body("c");
    assert_eq!(server.send(&server.sign(req)).status, 200);
    // Upper case in Host is the same name.
    let req = RawRequest::new("GET", "/k").header("Host", &format!("CUST.S3.Test:{}", server.addr().port()));
    let resp = server.send(&server.sign(req));
    assert_eq!((resp.status, resp.body_text().as_str()), (200, "c"));
    // `localhost` is no longer a vhost domain.
    let req = RawRequest::new("GET", "/k").header("Host", &format!("cust.localhost:{}", server.addr().port()));
    server.send(&server.sign(req)).assert_error(404, "NoSuchBucket");
}
