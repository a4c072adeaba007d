//! The SigV2 examples of the S3 developer guide ("Signing and authenticating REST requests",
//! AKIAIOSFODNN7EXAMPLE / wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY, March 2007), through
//! `authenticate_vhost`.

mod common;

use common::example_secrets;
use tessera_proto::sigv2::{canonical_resource, sign, string_to_sign};
use tessera_proto::sigv4::{authenticate_vhost, AuthKind, SigRequest, DEFAULT_REGION};
use tessera_proto::time::parse_http_date;
use tessera_proto::{Headers, S3ErrorCode};

struct Example {
    name: &'static str,
    method: &'static str,
    target: &'static str,
    /// Bucket from the Host header (virtual-hosted style), if any.
    vhost: Option<&'static str>,
    headers: &'static [(&'static str, &'static str)],
    signature: &'static str,
}

const EXAMPLES: &[Example] = &[
    Example {
        name: "object GET",
        method: "GET",
        target: "/photos/puppy.jpg",
        vhost: Some("johnsmith"),
        headers: &[("host", "johnsmith.s3.amazonaws.com"), ("date", "Tue, 27 Mar 2007 19:36:42 +0000")],
        signature: "bWq2s1WEIj+Ydj0vQ697zp+IXMU=",
    },
    Example {
        name: "object PUT",
        method: "PUT",
        target: "/photos/puppy.jpg",
        vhost: Some("johnsmith"),
        headers: &[
            ("content-type", "image/jpeg"),
            ("content-length", "94328"),
            ("host", "johnsmith.s3.amazonaws.com"),
            ("date", "Tue, 27 Mar 2007 21:15:45 +0000"),
        ],
        signature: "MyyxeRY7whkBe+bq8fHCL/2kKUg=",
    },
    Example {
        name: "list",
        method: "GET",
        target: "/?prefix=photos&max-keys=50&marker=puppy",
        vhost: Some("johnsmith"),
        headers: &[
            ("user-agent", "Mozilla/5.0"),
            ("host", "johnsmith.s3.amazonaws.com"),
            ("date", "Tue, 27 Mar 2007 19:42:41 +0000"),
        ],
        signature: "htDYFYduRNen8P9ZfE/s9SuKy0U=",
    },
    Example {
        name: "fetch ?acl",
        method: "GET",
        target: "/?acl",
        vhost: Some("johnsmith"),
        headers: &[("host", "johnsmith.s3.amazonaws.com"), ("date", "Tue, 27 Mar 2007 19:44:46 +0000")],
        signature: "c2WLPFtWHVgbEmeEG93a4cG37dM=",
    },
    Example {
        name: "upload with x-amz-* headers (CNAME bucket)",
        method: "PUT",
        target: "/db-backup.dat.gz",
        vhost: Some("static.johnsmith.net"),
        headers: &[
            ("user-agent", "curl/7.15.5"),
            ("host", "static.johnsmith.net:8080"),
            ("date", "Tue, 27 Mar 2007 21:06:08 +0000"),
            ("x-amz-acl", "public-read"),
            ("content-type", "application/x-download"),
            ("content-md5", "4gJE4saaMU4BqNR0kLY+lw=="),
            ("x-amz-meta-reviewedby", "joe@johnsmith.net"),
            ("x-amz-meta-reviewedby", "jane@johnsmith.net"),
            ("x-amz-meta-filechecksum", "0x02661779"),
            ("x-amz-meta-checksumalgorithm", "crc32"),
            ("content-disposition", "attachment; filename=database.dat"),
            ("content-encoding", "gzip"),
            ("content-length", "5913339"),
        ],
        signature: "ilyl83RwaSoYIEdixDQcA4OnAnc=",
    },
    Example {
        name: "list all my buckets",
        method: "GET",
        target: "/",
        vhost: None,
        headers: &[("host", "s3.amazonaws.com"), ("date", "Wed, 28 Mar 2007 01:29:59 +0000")],
        signature: "qGdzdERIC03wnaRNKh6OqZehG9s=",
    },
    Example {
        name: "unicode keys",
        method: "GET",
        target: "/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re",
        vhost: None,
        headers: &[("host", "s3.amazonaws.com"), ("date", "Wed, 28 Mar 2007 01:49:49 +0000")],
        signature: "DNEZGsoieTZ92F3bUfSPQcbGmlM=",
    },
];

fn headers_of(ex: &Example, authorization: Option<&str>) -> Headers {
    let mut h = Headers::new();
    for (n, v) in ex.headers {
        h.push(n, v);
    }
    if let Some(a) = authorization {
        h.push("authorization", a);
    }
    h
}

fn run(ex: &Example, signature: &str, now_delta: i64) -> Result<AuthKind, S3ErrorCode> {
    let auth = format!("AWS AKIAIOSFODNN7EXAMPLE:{signature}");
    let headers = headers_of(ex, Some(&auth));
    let (path, query) = ex.target.split_once('?').unwrap_or((ex.target, ""));
    let req = SigRequest { method: ex.method, path, query, headers: &headers };
    let date = headers.get("x-amz-date").or(headers.get("date")).and_then(parse_http_date).expect("date");
    authenticate_vhost(&req, ex.vhost, DEFAULT_REGION, date + now_delta, &example_secrets)
        .map(|c| c.expect("credentials").kind)
        .map_err(|e| e.code)
}

#[test]
fn documented_examples_authenticate() {
    for ex in EXAMPLES {
        assert_eq!(run(ex, ex.signature, 0), Ok(AuthKind::HeaderV2), "{}", ex.name);
        assert_eq!(run(ex, ex.signature, 600), Ok(AuthKind::HeaderV2), "{}", ex.name);
    }
}

#[test]
fn documented_examples_fail_when_tampered() {
    for ex in EXAMPLES {
        let mut bad = ex.signature.to_string();
        bad.replace_range(0..1, if bad.starts_with('A') { "B" } else { "A" });
        assert_eq!(run(ex, &bad, 0), Err(S3ErrorCode::SignatureDoesNotMatch), "{}", ex.name);
        assert_eq!(run(ex, ex.signature, 901), Err(S3ErrorCode::RequestTimeTooSkewed), "{}", ex.name);
        assert_eq!(run(ex, ex.signature, -901), Err(S3ErrorCode::RequestTimeTooSkewed), "{}", ex.name);
    }
    // The bucket of a virtual-hosted request is part of what is signed.
    let ex = &EXAMPLES[0];
    let auth = format!("AWS AKIAIOSFODNN7EXAMPLE:{}", ex.signature);
    let headers = headers_of(ex, Some(&auth));
    let req = SigRequest { method: "GET", path: "/photos/puppy.jpg", query: "", headers: &headers };
    let now = 1_175_024_202;
    let other = authenticate_vhost(&req, Some("janedoe"), DEFAULT_REGION, now, &example_secrets).map(|_| ());
    assert_eq!(other.map_err(|e| e.code), Err(S3ErrorCode::SignatureDoesNotMatch));
    let path_style = authenticate_vhost(&req, None, DEFAULT_REGION, now, &example_secrets).map(|_| ());
    assert_eq!(path_style.map_err(|e| e.code), Err(S3ErrorCode::SignatureDoesNotMatch));
}

#[test]
fn documented_query_string_example() {
    let mut h = Headers::new();
    h.push("host", "johnsmith.s3.amazonaws.com");
    let query =
        "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D&Expires=1175139620";
    let req = SigRequest { method: "GET", path: "/photos/puppy.jpg", query, headers: &h };
    let ctx = authenticate_vhost(&req, Some("johnsmith"), DEFAULT_REGION, 1_175_139_620, &example_secrets)
        .expect("authenticates")
        .expect("credentials");
    assert_eq!(ctx.kind, AuthKind::PresignedV2);
    let late = authenticate_vhost(&req, Some("johnsmith"), DEFAULT_REGION, 1_175_139_621, &example_secrets);
    let e = late.expect_err("expired");
    assert_eq!((e.code, e.message.as_str()), (S3ErrorCode::AccessDenied, "Request has expired"));
    // A raw '+' in the signature (not percent-encoded) still verifies.
    let raw_plus =
        "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=NpgCjnDzrM+WFzoENXmpNDUsSn8=&Expires=1175139620";
    let req = SigRequest { query: raw_plus, ..req };
    assert!(authenticate_vhost(&req, Some("johnsmith"), DEFAULT_REGION, 1_175_139_000, &example_secrets).is_ok());
}

#[test]
fn malformed_v2_headers() {
    let ex = &EXAMPLES[0];
    for (value, code) in [
        ("AWS AKIAIOSFODNN7EXAMPLE", S3ErrorCode::InvalidArgument),
        ("AWS :sig", S3ErrorCode::InvalidArgument),
        ("AWS AKIAIOSFODNN7EXAMPLE:", S3ErrorCode::InvalidArgument),
        ("AWS NOBODY:bWq2s1WEIj+Ydj0vQ697zp+IXMU=", S3ErrorCode::InvalidAccessKeyId),
        ("AWS AKIAIOSFODNN7EXAMPLE:!!notbase64!!", S3ErrorCode::SignatureDoesNotMatch),
    ] {
        let headers = headers_of(ex, Some(value));
        let req = SigRequest { method: "GET", path: "/photos/puppy.jpg", query: "", headers: &headers };
        let r = authenticate_vhost(&req, Some("johnsmith"), DEFAULT_REGION, 1_175_024_202, &example_secrets);
        assert_eq!(r.map(|_| ()).map_err(|e| e.code), Err(code), "{value}");
    }
    // No date at all.
    let mut headers = Headers::new();
    headers.push("authorization", "AWS AKIAIOSFODNN7EXAMPLE:bWq2s1WEIj+Ydj0vQ697zp+IXMU=");
    let req = SigRequest { method: "GET", path: "/photos/puppy.jpg", query: "", headers: &headers };
    let r = authenticate_vhost(&req, Some("johnsmith"), DEFAULT_REGION, 1_175_024_202, &example_secrets);
    assert_eq!(r.map(|_| ()).map_err(|e| e.code), Err(S3ErrorCode::AccessDenied));
}

/// The guide's DELETE example sends `x-amz-date` and puts its value on the Date line
/// (signature `lx3byBScXR6KzyMaifNkardMwNk=`), against the guide's own rule: "if you
/// include the x-amz-date header, use the empty string for the Date when constructing
/// the StringToSign", with `x-amz-date` among the `x-amz-*` lines. tessera builds the
/// one string the rule defines, and no other.
#[test]
fn x_amz_date_empties_the_date_line() {
    let mut h = Headers::new();
    h.push("user-agent", "dotnet");
    h.push("host", "s3.amazonaws.com");
    h.push("date", "Tue, 27 Mar 2007 21:20:27 +0000");
    h.push("x-amz-date", "Tue, 27 Mar 2007 21:20:26 +0000");
    let path = "/johnsmith/photos/puppy.jpg";
    let sts = string_to_sign("DELETE", &h, "", &canonical_resource(path, "", None));
    assert_eq!(
        sts,
        "DELETE\n\n\n\nx-amz-date:Tue, 27 Mar 2007 21:20:26 +0000\n/johnsmith/photos/puppy.jpg"
    );
    let now = parse_http_date("Tue, 27 Mar 2007 21:20:26 +0000").expect("date");
    let run = |signature: &str| {
        let mut headers = h.clone();
        headers.push("authorization", &format!("AWS AKIAIOSFODNN7EXAMPLE:{signature}"));
        let req = SigRequest { method: "DELETE", path, query: "", headers: &headers };
        authenticate_vhost(&req, None, DEFAULT_REGION, now, &example_secrets).map(|_| ()).map_err(|e| e.code)
    };
    assert_eq!(run(&sign(common::S3_SECRET, &sts)), Ok(()));
    assert_eq!(run("lx3byBScXR6KzyMaifNkardMwNk="), Err(S3ErrorCode::SignatureDoesNotMatch));
    // The Date header on the Date line (as if x-amz-date were absent) is not tried either.
    let with_date = string_to_sign("DELETE", &h, "Tue, 27 Mar 2007 21:20:27 +0000", &canonical_resource(path, "", None));
    assert_eq!(run(&sign(common::S3_SECRET, &with_date)), Err(S3ErrorCode::SignatureDoesNotMatch));
}

#[test]
fn query_string_expires_is_at_most_a_week_ahead() {
    let mut h = Headers::new();
    h.push("host", "johnsmith.s3.amazonaws.com");
    let now = 1_175_139_620 - 604_800;
    let query =
        "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D&Expires=1175139620";
    let req = SigRequest { method: "GET", path: "/photos/puppy.jpg", query, headers: &h };
    assert!(authenticate_vhost(&req, Some("johnsmith"), DEFAULT_REGION, now, &example_secrets).is_ok());
    let e = authenticate_vhost(&req, Some("johnsmith"), DEFAULT_REGION, now - 1, &example_secrets).expect_err("too far");
    assert_eq!(e.code, S3ErrorCode::AccessDenied);
}
