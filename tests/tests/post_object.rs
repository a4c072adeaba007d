//! POST Object: browser form uploads over raw HTTP, signed with SigV4 and
//! SigV2 policies, every policy condition and every error code.

use std::time::Duration;

use tessera_tests::form::{expiration, v2_fields, v4_fields};
use tessera_tests::*;

const BOUNDARY: &str = "----tesseraFormBoundary7MA4YWxkTrZu0gW";

/// A form: fields in order, then the file part.
struct Form {
    fields: Vec<(String, String)>,
    file_name: String,
    file: Vec<u8>,
}

impl Form {
    fn new(fields: &[(&str, &str)], file: &[u8]) -> Self {
        Form {
            fields: fields.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            file_name: "photo.txt".into(),
            file: file.to_vec(),
        }
    }

    fn field(mut self, n: &str, v: &str) -> Self {
        self.fields.push((n.to_string(), v.to_string()));
        self
    }

    fn body(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, v) in &self.fields {
            out.extend_from_slice(
                format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{n}\"\r\n\r\n{v}\r\n").as_bytes(),
            );
        }
        out.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                self.file_name
            )
            .as_bytes(),
        );
        out.extend_from_slice(&self.file);
        out.extend_from_slice(format!("\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"after\"\r\n\r\nignored\r\n--{BOUNDARY}--\r\n").as_bytes());
        out
    }

    fn post(&self, server: &Server, bucket: &str) -> RawResponse {
        let req = server
            .raw_request("POST", &format!("/{bucket}"))
            .header("Content-Type", &format!("multipart/form-data; boundary={BOUNDARY}"))
            .body(self.body());
        server.send(&req)
    }
}

/// A V4 policy over `bucket` with the usual conditions plus `extra`.
fn policy(bucket: &str, extra: &str) -> String {
    format!(
        r#"{{"expiration":"{}","conditions":[{{"bucket":"{bucket}"}},["starts-with","$key","uploads/"],["starts-with","$Content-Type","text/"],["content-length-range",0,4194304],{{"x-amz-algorithm":"AWS4-HMAC-SHA256"}},["starts-with","$x-amz-credential",""],["starts-with","$x-amz-date",""]{extra}]}}"#,
        expiration(Duration::from_secs(600))
    )
}

fn signed_form(server: &Server, policy_json: &str, fields: &[(&str, &str)], file: &[u8]) -> Form {
    let mut f = Form::new(fields, file);
    f.fields.extend(v4_fields(server, policy_json));
    f
}

#[tokio::test(flavor = "multi_thread")]
async fn v4_signed_form_upload_stores_the_file_with_its_metadata() {
    let (server, s3) = with_bucket("forms").await;
    let data = random_bytes(3 * 1024 * 1024 + 17, 1); // several data records, streamed
    let p = policy("forms", r#",["starts-with","$x-amz-meta-tag",""],{"success_action_status":"201"}"#);
    let form = signed_form(
        &server,
        &p,
        &[("key", "uploads/${filename}"), ("Content-Type", "text/plain"), ("x-amz-meta-tag", "blue"), ("success_action_status", "201")],
        &data,
    );
    let resp = form.post(&server, "forms");
    assert_eq!(resp.status, 201, "{}", resp.body_text());
    assert_eq!(resp.xml("Key").as_deref(), Some("uploads/photo.txt"));
    assert_eq!(resp.xml("Bucket").as_deref(), Some("forms"));
    assert_eq!(resp.header("etag"), Some(etag(&data).as_str()));
    let got = ok(s3.get_object().bucket("forms").key("uploads/photo.txt").send().await, "get");
    assert_eq!(got.content_type(), Some("text/plain"));
    assert_eq!(got.metadata().and_then(|m| m.get("tag")).map(String::as_str), Some("blue"));
    assert_eq!(read_body(got).await, data);
}

#[tokio::test(flavor = "multi_thread")]
async fn v2_signed_form_and_success_statuses() {
    let (server, s3) = with_bucket("formsv2").await;
    let p = format!(
        r#"{{"expiration":"{}","conditions":[{{"bucket":"formsv2"}},["starts-with","$key",""],["starts-with","$success_action_status",""]]}}"#,
        expiration(Duration::from_secs(600))
    );
    for (status, want) in [("200", 200), ("204", 204), ("404", 204), ("201", 201)] {
        let mut f = Form::new(&[("key", &format!("k{status}")), ("success_action_status", status)], b"v2 body");
        f.fields.extend(v2_fields(&server.access_key, &server.secret_key, &p));
        let resp = f.post(&server, "formsv2");
        assert_eq!(resp.status, want, "status {status}: {}", resp.body_text());
        let got = ok(s3.get_object().bucket("formsv2").key(format!("k{status}")).send().await, "get");
        assert_eq!(read_body(got).await, b"v2 body");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn success_action_redirect_answers_303_with_the_object() {
    let (server, _s3) = with_bucket("redir").await;
    let p = policy("redir", r#",["eq","$success_action_redirect","http://app.example/done?x=1"]"#);
    let form = signed_form(
        &server,
        &p,
        &[("key", "uploads/a b"), ("Content-Type", "text/plain"), ("success_action_redirect", "http://app.example/done?x=1")],
        b"hello",
    );
    let resp = form.post(&server, "redir");
    assert_eq!(resp.status, 303, "{}", resp.body_text());
    let loc = resp.header("location").unwrap_or_default();
    assert!(loc.starts_with("http://app.example/done?x=1&bucket=redir&key=uploads%2Fa%20b&etag=%22"), "{loc}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_broken_condition_is_refused_and_nothing_is_stored() {
    let (server, s3) = with_bucket("strict").await;
    let good = policy("strict", "");
    let base: &[(&str, &str)] = &[("key", "uploads/x"), ("Content-Type", "text/plain")];
    let expired = r#"{"expiration":"2001-01-01T00:00:00Z","conditions":[{"bucket":"strict"}]}"#;
    let cases: Vec<(&str, Form, u16, &str)> = vec![
        ("key outside the prefix", signed_form(&server, &good, &[("key", "other/x"), ("Content-Type", "text/plain")], b"x"), 403, "AccessDenied"),
        ("content type", signed_form(&server, &good, &[("key", "uploads/x"), ("Content-Type", "image/png")], b"x"), 403, "AccessDenied"),
        ("field not in the policy", signed_form(&server, &good, base, b"x").field("x-amz-meta-sneaky", "1"), 403, "AccessDenied"),
        ("too large", signed_form(&server, &policy("strict", "").replace("4194304", "3"), base, b"four"), 400, "EntityTooLarge"),
        ("too small", signed_form(&server, &policy("strict", "").replace("[\"content-length-range\",0,", "[\"content-length-range\",10,"), base, b"four"), 400, "EntityTooSmall"),
        ("expired", signed_form(&server, expired, base, b"x"), 403, "AccessDenied"),
        ("other bucket's policy", signed_form(&server, &policy("elsewhere", ""), base, b"x"), 403, "AccessDenied"),
        ("no key", signed_form(&server, &good, &[("Content-Type", "text/plain")], b"x"), 400, "InvalidArgument"),
        ("bad policy json", signed_form(&server, "{not json", base, b"x"), 400, "InvalidPolicyDocument"),
        ("no conditions", signed_form(&server, &format!(r#"{{"expiration":"{}"}}"#, expiration(Duration::from_secs(60))), base, b"x"), 400, "InvalidPolicyDocument"),
    ];
    for (what, form, status, code) in cases {
        let resp = form.post(&server, "strict");
        assert_eq!((resp.status, resp.error_code().as_deref()), (status, Some(code)), "{what}: {}", resp.body_text());
    }
    // A signature that does not match, an unknown key, a missing signature.
    let mut bad_sig = signed_form(&server, &good, base, b"x");
    for f in bad_sig.fields.iter_mut().filter(|(n, _)| n == "x-amz-signature") {
        f.1 = "0".repeat(64);
    }
    bad_sig.post(&server, "strict").assert_error(403, "SignatureDoesNotMatch");
    let mut f = Form::new(base, b"x");
    f.fields.extend(v2_fields("NOSUCHKEY", "secret", &good));
    f.post(&server, "strict").assert_error(403, "InvalidAccessKeyId");
    let mut f = Form::new(base, b"x");
    f.fields.extend(v2_fields(&server.access_key, &server.secret_key, &good).into_iter().filter(|(n, _)| n != "signature"));
    f.post(&server, "strict").assert_error(400, "InvalidArgument");
    let listed = ok(s3.list_objects_v2().bucket("strict").send().await, "list");
    assert_eq!(listed.key_count(), Some(0), "a refused form stored something");
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_and_malformed_forms() {
    let (server, _s3) = with_bucket("anon").await;
    // No signature at all: a private bucket refuses the anonymous writer.
    Form::new(&[("key", "k")], b"x").post(&server, "anon").assert_error(403, "AccessDenied");
    Form::new(&[("key", "k")], b"x").post(&server, "nosuchbucket").assert_error(404, "NoSuchBucket");
    // Not multipart, no file part, a truncated body.
    let req = server.raw_request("POST", "/anon").header("Content-Type", "text/plain").body("key=k");
    server.send(&req).assert_error(400, "MalformedPOSTRequest");
    let no_file = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nk\r\n--{BOUNDARY}--\r\n");
    let req = server
        .raw_request("POST", "/anon")
        .header("Content-Type", &format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(no_file);
    server.send(&req).assert_error(400, "IncorrectNumberOfFilesInPostRequest");
    let cut = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nk");
    let req = server
        .raw_request("POST", "/anon")
        .header("Content-Type", &format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(cut);
    server.send(&req).assert_error(400, "MalformedPOSTRequest");
    // Fields before the file are bounded.
    let big = "a".repeat(21 * 1024);
    Form::new(&[("key", "k"), ("x-ignore-big", &big)], b"x").post(&server, "anon").assert_error(400, "MaxPostPreDataLengthExceeded");
}

/// An unsigned form to a public-read-write bucket is an anonymous write:
/// the bucket's WRITE grant covers the `acl` (and `tagging`) fields too,
/// as a PUT's ACL headers; `success_action_status` is honoured.
#[tokio::test(flavor = "multi_thread")]
async fn anonymous_forms_write_to_a_public_read_write_bucket() {
    let server = Server::start();
    let s3 = server.client();
    ok(s3.create_bucket().bucket("open").acl(aws_sdk_s3::types::BucketCannedAcl::PublicReadWrite).send().await, "create");
    let resp = Form::new(&[("key", "foo.txt"), ("acl", "public-read"), ("success_action_status", "201"), ("Content-Type", "text/plain")], b"bar")
        .post(&server, "open");
    assert_eq!(resp.status, 201, "{}", resp.body_text());
    assert!(resp.body_text().contains("<PostResponse><Location>"), "no namespace, as S3 sends it: {}", resp.body_text());
    assert!(resp.body_text().contains("<Key>foo.txt</Key>"), "{}", resp.body_text());
    assert_eq!(server.anonymous("GET", "/open/foo.txt", b""), (200, b"bar".to_vec()), "public-read as the form asked");
    let tagging = "<Tagging><TagSet><Tag><Key>0</Key><Value>0</Value></Tag></TagSet></Tagging>";
    let resp = Form::new(&[("key", "tagged"), ("acl", "public-read"), ("tagging", tagging)], b"t").post(&server, "open");
    assert_eq!(resp.status, 204, "{}", resp.body_text());
    let tags = ok(s3.get_object_tagging().bucket("open").key("tagged").send().await, "tags");
    assert_eq!(tags.tag_set().len(), 1);
    // A private bucket still refuses the same form.
    ok(s3.create_bucket().bucket("closed").send().await, "create");
    Form::new(&[("key", "foo.txt"), ("acl", "public-read")], b"bar").post(&server, "closed").assert_error(403, "AccessDenied");
}

#[tokio::test(flavor = "multi_thread")]
async fn another_users_signature_cannot_write_my_bucket() {
    let users = "BOBKEYBOBKEYBOBKEY00 bobsecretbobsecretbobsecretbobsecret0000 bob-id bob\n";
    let server = Server::start_with(ServerOpts { users: Some(users.into()), ..Default::default() });
    let s3 = server.client();
    ok(s3.create_bucket().bucket("mine").send().await, "create");
    let p = format!(r#"{{"expiration":"{}","conditions":[{{"bucket":"mine"}},["starts-with","$key",""]]}}"#, expiration(Duration::from_secs(60)));
    let mut f = Form::new(&[("key", "k")], b"x");
    f.fields.extend(v2_fields("BOBKEYBOBKEYBOBKEY00", "bobsecretbobsecretbobsecretbobsecret0000", &p));
    f.post(&server, "mine").assert_error(403, "AccessDenied");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_field_never_stands_in_for_the_bucket_posted_to() {
    let (server, s3) = with_bucket("alpha").await;
    ok(s3.create_bucket().bucket("beta").send().await, "create beta");
    // Signed for alpha, posted to beta, with a form field claiming alpha.
    let form = signed_form(&server, &policy("alpha", ""), &[("key", "uploads/x"), ("bucket", "alpha"), ("Content-Type", "text/plain")], b"x");
    form.post(&server, "beta").assert_error(403, "AccessDenied");
    let listed = ok(s3.list_objects_v2().bucket("beta").send().await, "list");
    assert_eq!(listed.key_count(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn checksum_fields_are_verified() {
    let (server, s3) = with_bucket("sums").await;
    let data = b"checksummed form body";
    let sha = b64(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
    let good = signed_form(&server, &policy("sums", ""), &[("key", "uploads/ok"), ("Content-Type", "text/plain"), ("x-amz-checksum-sha256", &sha)], data);
    let resp = good.post(&server, "sums");
    assert_eq!(resp.status, 204, "{}", resp.body_text());
    let head = ok(
        s3.head_object().bucket("sums").key("uploads/ok").checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled).send().await,
        "head",
    );
    assert_eq!(head.checksum_sha256(), Some(sha.as_str()));
    let wrong = b64(ring::digest::digest(&ring::digest::SHA256, b"other").as_ref());
    let bad = signed_form(&server, &policy("sums", ""), &[("key", "uploads/bad"), ("Content-Type", "text/plain"), ("x-amz-checksum-sha256", &wrong)], data);
    bad.post(&server, "sums").assert_error(400, "BadDigest");
    let garbage = signed_form(&server, &policy("sums", ""), &[("key", "uploads/bad"), ("Content-Type", "text/plain"), ("x-amz-checksum-sha256", "sailorjerry")], data);
    garbage.post(&server, "sums").assert_error(400, "InvalidRequest");
    assert!(s3.head_object().bucket("sums").key("uploads/bad").send().await.is_err(), "nothing stored");
}

fn b64(s: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}
