//! AWS's SigV4 test suite against the building blocks (see testdata/sigv4-suite/README.md).

mod common;

use common::parse_request;
use ring::digest;
use tessera_proto::sigv4::{
    canonical_query, canonical_request, canonical_uri, credential_scope, signature_hex, signing_key,
    string_to_sign,
};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const AMZ_DATE: &str = "20150830T123600Z";

fn read_text(case: &str, file: &str) -> String {
    String::from_utf8(common::read(&format!("sigv4-suite/{case}/{file}"))).expect("UTF-8")
}

fn cases() -> Vec<String> {
    let dir = common::testdata("sigv4-suite");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("suite dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Pulls `SignedHeaders=` out of an Authorization value.
fn signed_headers_of(authorization: &str) -> Vec<String> {
    let list = authorization
        .split("SignedHeaders=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .expect("SignedHeaders");
    list.split(';').map(str::to_string).collect()
}

fn body_hash(body: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, body))
}

#[test]
fn every_case_in_header_form() {
    let key = signing_key(SECRET, "20150830", "us-east-1", "service");
    let scope = credential_scope("20150830", "us-east-1", "service");
    let cases = cases();
    assert!(cases.len() >= 30, "suite copied: {}", cases.len());
    for case in cases {
        let req = parse_request(read_text(&case, "header-signed-request.txt").as_bytes());
        let authorization = req.headers.get("authorization").expect("authorization").to_string();
        let signed = signed_headers_of(&authorization);
        let signed: Vec<&str> = signed.iter().map(String::as_str).collect();
        let creq = canonical_request(
            &req.method,
            &canonical_uri(&req.path),
            &canonical_query(&req.query, false),
            &req.headers,
            &signed,
            &body_hash(&req.body),
        );
        assert_eq!(creq, read_text(&case, "header-canonical-request.txt"), "{case}: canonical request");
        let sts = string_to_sign(AMZ_DATE, &scope, &creq);
        assert_eq!(sts, read_text(&case, "header-string-to-sign.txt"), "{case}: string to sign");
        let sig = signature_hex(&key, &sts);
        assert_eq!(sig, read_text(&case, "header-signature.txt").trim(), "{case}: signature");
        assert!(authorization.ends_with(&format!("Signature={sig}")), "{case}");
    }
}

#[test]
fn every_case_in_query_form() {
    let key = signing_key(SECRET, "20150830", "us-east-1", "service");
    let scope = credential_scope("20150830", "us-east-1", "service");
    for case in cases() {
        if case == "post-sts-header-after" {
            // The token is added to the URL after signing: not part of the canonical query.
            continue;
        }
        let req = parse_request(read_text(&case, "query-signed-request.txt").as_bytes());
        let signed = req
            .query
            .split('&')
            .find_map(|p| p.strip_prefix("X-Amz-SignedHeaders="))
            .expect("X-Amz-SignedHeaders")
            .replace("%3B", ";");
        let signed: Vec<&str> = signed.split(';').collect();
        let creq = canonical_request(
            &req.method,
            &canonical_uri(&req.path),
            &canonical_query(&req.query, true),
            &req.headers,
            &signed,
            &body_hash(&req.body),
        );
        assert_eq!(creq, read_text(&case, "query-canonical-request.txt"), "{case}: canonical request");
        let sts = string_to_sign(AMZ_DATE, &scope, &creq);
        assert_eq!(sts, read_text(&case, "query-string-to-sign.txt"), "{case}: string to sign");
        let sig = signature_hex(&key, &sts);
        assert_eq!(sig, read_text(&case, "query-signature.txt").trim(), "{case}: signature");
        assert!(req.query.ends_with(&format!("X-Amz-Signature={sig}")), "{case}");
    }
}
