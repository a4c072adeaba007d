//! Browser POST forms: policy expirations and the signed fields of a form,
//! computed here with `ring` directly (independently of tessera-proto).

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use ring::hmac;

use crate::server::Server;
use crate::sign::unix_secs;

pub fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

pub fn expiration(from_now: Duration) -> String {
    let t = SystemTime::now() + from_now;
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
    // 20300101T000000Z -> 2030-01-01T00:00:00Z
    let d = tessera_proto::time::format_amz_date(secs);
    format!("{}-{}-{}T{}:{}:{}Z", &d[0..4], &d[4..6], &d[6..8], &d[9..11], &d[11..13], &d[13..15])
}

pub fn hmac256(key: &[u8], data: &str) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes()).as_ref().to_vec()
}

/// The SigV4 form fields for `policy_json`, computed independently of tessera-proto.
pub fn v4_fields(server: &Server, policy_json: &str) -> Vec<(String, String)> {
    let now = tessera_proto::time::format_amz_date(unix_secs(SystemTime::now()));
    let date = &now[..8];
    let credential = format!("{}/{date}/us-east-1/s3/aws4_request", server.access_key);
    let policy = b64(policy_json.as_bytes());
    let k = hmac256(format!("AWS4{}", server.secret_key).as_bytes(), date);
    let k = hmac256(&k, "us-east-1");
    let k = hmac256(&k, "s3");
    let k = hmac256(&k, "aws4_request");
    let sig = hex::encode(hmac256(&k, &policy));
    vec![
        ("x-amz-algorithm".into(), "AWS4-HMAC-SHA256".into()),
        ("x-amz-credential".into(), credential),
        ("x-amz-date".into(), now),
        ("policy".into(), policy),
        ("x-amz-signature".into(), sig),
    ]
}

pub fn v2_fields(access_key: &str, secret_key: &str, policy_json: &str) -> Vec<(String, String)> {
    let policy = b64(policy_json.as_bytes());
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret_key.as_bytes());
    let sig = b64(hmac::sign(&key, policy.as_bytes()).as_ref());
    vec![("AWSAccessKeyId".into(), access_key.into()), ("policy".into(), policy), ("signature".into(), sig)]
}

