//! tessera-proto's SigV4 signer (used by the raw tests) agrees with the AWS
//! reference signer, so the raw tests do not share a blind spot with the
//! server's verifier.

use std::time::{Duration, SystemTime};

use tessera_tests::sign::{sign_headers, sign_headers_reference, Payload};

const AK: &str = "AKIDEXAMPLE";
const SK: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn authorization(headers: &[(String, String)]) -> String {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        .expect("authorization")
        .1
        .clone()
}

#[test]
fn proto_signer_matches_aws_reference_signer() {
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600); // 2026-01-01
    let body = b"hello, world".to_vec();
    let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    };
    type Case<'a> = (&'a str, &'a str, Vec<(String, String)>, Payload<'a>);
    let cases: Vec<Case> = vec![
        ("GET", "/", h(&[("host", "127.0.0.1:9000")]), Payload::Bytes(b"")),
        (
            "GET",
            "/bucket?list-type=2&prefix=a%2Fb&delimiter=%2F",
            h(&[("host", "127.0.0.1:9000")]),
            Payload::Bytes(b""),
        ),
        ("GET", "/bucket?uploads", h(&[("host", "h")]), Payload::Bytes(b"")),
        (
            "GET",
            "/bucket?prefix=sp%20ace&start-after=%2B%7E",
            h(&[("host", "h")]),
            Payload::Bytes(b""),
        ),
        (
            "PUT",
            "/bucket/dir/file%20name%2B1.txt",
            h(&[
                ("host", "h"),
                ("content-type", "text/plain"),
                ("x-amz-meta-note", "  two   spaces  "),
            ]),
            Payload::Bytes(&body),
        ),
        (
            "PUT",
            "/bucket/%E6%97%A5%E6%9C%AC%E8%AA%9E",
            h(&[("host", "h")]),
            Payload::Unsigned,
        ),
        (
            "PUT",
            "/bucket/k?partNumber=2&uploadId=abc%2Bdef",
            h(&[("host", "h")]),
            Payload::StreamingUnsignedTrailer,
        ),
        (
            "PUT",
            "/bucket/k",
            h(&[("host", "h"), ("content-encoding", "aws-chunked")]),
            Payload::StreamingSigned,
        ),
        (
            "HEAD",
            "/bucket/k",
            h(&[("host", "h"), ("range", "bytes=0-9")]),
            Payload::Bytes(b""),
        ),
        ("DELETE", "/bucket/a/..//b", h(&[("host", "h")]), Payload::Bytes(b"")),
    ];
    for (method, target, headers, payload) in cases {
        let ours = authorization(&sign_headers(method, target, &headers, payload.clone(), AK, SK, time));
        let uri = format!("http://h{target}");
        let (reference, _) = sign_headers_reference(method, &uri, &headers, payload, AK, SK, time);
        assert_eq!(ours, authorization(&reference), "{method} {target}");
    }
}
