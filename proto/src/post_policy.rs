//! Browser POST uploads: the policy document (base64 JSON with `expiration`
//! and `conditions`), its signature (SigV4 or SigV2 over the base64 text),
//! and the check of every form field against every condition.
//!
//! Form field names are case-insensitive (kept lowercased here); condition
//! operators are too; the policy's own keys (`expiration`, `conditions`)
//! are not, as AWS has it.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ring::hmac;

use crate::error::{S3Error, S3ErrorCode};
use crate::sigv4::{signing_key, ALGORITHM};
use crate::time::{parse_amz_date, parse_iso8601_ms};

/// Largest policy document accepted (decoded JSON).
pub const MAX_POLICY_BYTES: usize = 20 * 1024;
/// Most conditions in one policy.
pub const MAX_CONDITIONS: usize = 256;

/// Form fields that need no condition (AWS: the signature fields, `file`,
/// `policy` and anything prefixed `x-ignore-`).
const EXEMPT_FIELDS: &[&str] = &["awsaccesskeyid", "signature", "x-amz-signature", "file", "policy"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `{"field": "value"}` or `["eq", "$field", "value"]`.
    Eq { field: String, value: String },
    /// `["starts-with", "$field", "prefix"]`.
    StartsWith { field: String, prefix: String },
    /// `["content-length-range", min, max]`.
    LengthRange { min: u64, max: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostPolicy {
    pub expiration_ms: i64,
    pub conditions: Vec<Condition>,
}

fn invalid_policy(msg: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidPolicyDocument, format!("Invalid Policy: {msg}"))
}

fn denied(msg: impl Into<String>) -> S3Error {
    S3Error::with_message(S3ErrorCode::AccessDenied, format!("Invalid according to Policy: {}", msg.into()))
}

/// Strips the `$` of a condition's field name and lowercases it.
fn field_name(v: &serde_json::Value) -> Result<String, S3Error> {
    let s = v.as_str().ok_or_else(|| invalid_policy("Invalid condition field."))?;
    let s = s.strip_prefix('$').ok_or_else(|| invalid_policy("Condition field names must start with '$'."))?;
    Ok(s.to_ascii_lowercase())
}

fn length_bound(v: &serde_json::Value) -> Result<u64, S3Error> {
    let bad = || invalid_policy("Invalid content-length-range.");
    match v {
        serde_json::Value::Number(n) => n.as_u64().ok_or_else(bad),
        // Some SDKs send the bounds as strings.
        serde_json::Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().map_err(|_| bad())
        }
        _ => Err(bad()),
    }
}

impl PostPolicy {
    /// Decodes and validates the base64 policy text of a form.
    pub fn parse(policy_b64: &str) -> Result<PostPolicy, S3Error> {
        let raw = BASE64
            .decode(policy_b64.trim().as_bytes())
            .map_err(|_| invalid_policy("Unable to decode the policy as base64."))?;
        if raw.len() > MAX_POLICY_BYTES {
            return Err(invalid_policy("Policy document too large."));
        }
        let doc: serde_json::Value = serde_json::from_slice(&raw).map_err(|_| invalid_policy("Invalid JSON."))?;
        let obj = doc.as_object().ok_or_else(|| invalid_policy("Invalid JSON."))?;
        let exp = obj.get("expiration").ok_or_else(|| invalid_policy("Policy missing expiration."))?;
        let exp_text = exp.as_str().ok_or_else(|| invalid_policy("Invalid 'expiration' value."))?;
        let expiration_ms = parse_iso8601_ms(exp_text)
            .filter(|_| exp_text.len() >= 20 && exp_text.as_bytes().get(10) == Some(&b'T'))
            .ok_or_else(|| invalid_policy(&format!("Invalid 'expiration' value: '{exp_text}'")))?;
        let list = obj.get("conditions").ok_or_else(|| invalid_policy("Policy missing conditions."))?;
        let list = list.as_array().ok_or_else(|| invalid_policy("Invalid 'conditions' value."))?;
        if list.len() > MAX_CONDITIONS {
            return Err(invalid_policy("Too many conditions."));
        }
        let mut conditions = Vec::with_capacity(list.len());
        for c in list {
            conditions.push(Self::condition(c)?);
        }
        Ok(PostPolicy { expiration_ms, conditions })
    }

    fn condition(c: &serde_json::Value) -> Result<Condition, S3Error> {
        match c {
            serde_json::Value::Object(m) => {
                if m.len() != 1 {
                    return Err(invalid_policy(
                        "Invalid Simple-Condition: Simple-Conditions must have exactly one property specified.",
                    ));
                }
                let (k, v) = m.iter().next().ok_or_else(|| invalid_policy("Invalid condition."))?;
                let value = v.as_str().ok_or_else(|| invalid_policy("Invalid Simple-Condition value."))?;
                Ok(Condition::Eq { field: k.trim_start_matches('$').to_ascii_lowercase(), value: value.to_string() })
            }
            serde_json::Value::Array(a) => {
                let op = a.first().and_then(|v| v.as_str()).ok_or_else(|| invalid_policy("Invalid condition."))?;
                match op.to_ascii_lowercase().as_str() {
                    "eq" | "starts-with" if a.len() == 3 => {
                        let field = field_name(&a[1])?;
                        let value = a[2].as_str().ok_or_else(|| invalid_policy("Invalid condition value."))?.to_string();
                        Ok(if op.eq_ignore_ascii_case("eq") {
                            Condition::Eq { field, value }
                        } else {
                            Condition::StartsWith { field, prefix: value }
                        })
                    }
                    "content-length-range" if a.len() == 3 => {
                        let (min, max) = (length_bound(&a[1])?, length_bound(&a[2])?);
                        if min > max {
                            return Err(invalid_policy("Invalid content-length-range."));
                        }
                        Ok(Condition::LengthRange { min, max })
                    }
                    "eq" | "starts-with" | "content-length-range" => {
                        Err(invalid_policy(&format!("Invalid '{op}' condition: wrong number of arguments.")))
                    }
                    _ => Err(invalid_policy(&format!("Invalid condition operator '{op}'."))),
                }
            }
            _ => Err(invalid_policy("Invalid condition.")),
        }
    }

    /// The allowed body size, when the policy bounds it.
    pub fn length_range(&self) -> Option<(u64, u64)> {
        self.conditions.iter().rev().find_map(|c| match c {
            Condition::LengthRange { min, max } => Some((*min, *max)),
            _ => None,
        })
    }

    /// Checks expiry and every field condition against `fields` (lowercased
    /// names; the caller adds `bucket` and the final `key`). Every field not
    /// exempt must be named by some condition.
    pub fn check(&self, fields: &[(String, String)], now_ms: i64) -> Result<(), S3Error> {
        if now_ms > self.expiration_ms {
            return Err(denied("Policy expired."));
        }
        let value_of = |name: &str| fields.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str());
        for c in &self.conditions {
            let ok = match c {
                Condition::Eq { field, value } => value_of(field) == value,
                // Content-Type may list several values, each of which must match.
                Condition::StartsWith { field, prefix } if field == "content-type" => {
                    value_of(field).split(',').all(|v| v.trim_start().starts_with(prefix.as_str()))
                }
                Condition::StartsWith { field, prefix } => value_of(field).starts_with(prefix.as_str()),
                Condition::LengthRange { .. } => true,
            };
            if !ok {
                return Err(denied(format!("Policy Condition failed: {}", describe(c))));
            }
        }
        for (name, _) in fields {
            // A checksum field can only make the upload stricter: it is verified, not conditioned.
            let exempt = EXEMPT_FIELDS.contains(&name.as_str())
                || name.starts_with("x-ignore-")
                || name.starts_with("x-amz-checksum-");
            let named = self.conditions.iter().any(|c| match c {
                Condition::Eq { field, .. } | Condition::StartsWith { field, .. } => field == name,
                Condition::LengthRange { .. } => false,
            });
            if !exempt && !named {
                return Err(denied(format!("Extra input fields: {name}")));
            }
        }
        Ok(())
    }
}

fn describe(c: &Condition) -> String {
    match c {
        Condition::Eq { field, value } => format!("[\"eq\", \"${field}\", \"{value}\"]"),
        Condition::StartsWith { field, prefix } => format!("[\"starts-with\", \"${field}\", \"{prefix}\"]"),
        Condition::LengthRange { min, max } => format!("[\"content-length-range\", {min}, {max}]"),
    }
}

/// Who signed a form, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostAuth {
    pub access_key: String,
    /// `x-amz-security-token` of the form, for temporary credentials: the
    /// caller must validate it against the access key.
    pub security_token: Option<String>,
}

fn missing(field: &str) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::InvalidArgument,
        format!("Bucket POST must contain a field named '{field}'.  If it is specified, please check the order of the fields."),
    )
}

/// Verifies the form's signature over its policy. `get` looks a field up by
/// its lowercased name. `Ok(None)`: an anonymous form (no policy and no
/// signature fields at all).
pub fn authenticate(
    get: &dyn Fn(&str) -> Option<String>,
    region: &str,
    secret_for: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<PostAuth>, S3Error> {
    let policy = get("policy");
    let v4 = get("x-amz-signature").is_some() || get("x-amz-algorithm").is_some() || get("x-amz-credential").is_some();
    let v2 = get("signature").is_some() || get("awsaccesskeyid").is_some();
    if policy.is_none() && !v4 && !v2 {
        return Ok(None);
    }
    if v4 && v2 {
        return Err(S3Error::with_message(S3ErrorCode::InvalidArgument, "Only one auth mechanism allowed."));
    }
    let security_token = get("x-amz-security-token");
    let mismatch = || S3Error::new(S3ErrorCode::SignatureDoesNotMatch);
    if v4 {
        let algorithm = get("x-amz-algorithm").ok_or_else(|| missing("x-amz-algorithm"))?;
        let credential = get("x-amz-credential").ok_or_else(|| missing("x-amz-credential"))?;
        let amz_date = get("x-amz-date").ok_or_else(|| missing("x-amz-date"))?;
        let signature = get("x-amz-signature").ok_or_else(|| missing("x-amz-signature"))?;
        let policy = policy.ok_or_else(|| missing("policy"))?;
        if algorithm != ALGORITHM {
            return Err(S3Error::with_message(S3ErrorCode::InvalidArgument, "Unsupported x-amz-algorithm."));
        }
        let parts: Vec<&str> = credential.split('/').collect();
        let [access_key, date, cred_region, service, "aws4_request"] = parts[..] else {
            return Err(S3Error::with_message(S3ErrorCode::InvalidArgument, "Invalid x-amz-credential."));
        };
        if service != "s3" || parse_amz_date(&amz_date).is_none() || !amz_date.starts_with(date) {
            return Err(S3Error::with_message(S3ErrorCode::InvalidArgument, "Invalid x-amz-credential or x-amz-date."));
        }
        if cred_region != region {
            return Err(S3Error::with_message(
                S3ErrorCode::AuthorizationQueryParametersError,
                format!("Error parsing the X-Amz-Credential parameter; the region '{cred_region}' is wrong; expecting '{region}'"),
            )
            .with_detail("Region", region));
        }
        let secret = secret_for(access_key).ok_or_else(|| S3Error::new(S3ErrorCode::InvalidAccessKeyId))?;
        let key = signing_key(&secret, date, cred_region, service);
        let provided = hex::decode(signature.trim()).map_err(|_| mismatch())?;
        let hkey = hmac::Key::new(hmac::HMAC_SHA256, &key);
        hmac::verify(&hkey, policy.as_bytes(), &provided).map_err(|_| mismatch())?;
        return Ok(Some(PostAuth { access_key: access_key.to_string(), security_token }));
    }
    let access_key = get("awsaccesskeyid").ok_or_else(|| missing("AWSAccessKeyId"))?;
    let signature = get("signature").ok_or_else(|| missing("Signature"))?;
    let policy = policy.ok_or_else(|| missing("policy"))?;
    let secret = secret_for(&access_key).ok_or_else(|| S3Error::new(S3ErrorCode::InvalidAccessKeyId))?;
    let provided = BASE64.decode(signature.trim().replace(' ', "+")).map_err(|_| mismatch())?;
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    hmac::verify(&key, policy.as_bytes(), &provided).map_err(|_| mismatch())?;
    Ok(Some(PostAuth { access_key, security_token }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sigv4::signature_hex;

    fn b64(s: &str) -> String {
        BASE64.encode(s)
    }

    fn fields(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    const NOW: i64 = 1_900_000_000_000;
    const DOC: &str = r#"{"expiration":"2030-06-01T00:00:00Z","conditions":[{"bucket":"b"},["StArTs-WiTh","$KeY","foo"],{"acl":"private"},["starts-with","$Content-Type","text/"],["content-length-range",0,1024],["eq","$x-amz-meta-a",""]]}"#;

    #[test]
    fn parses_and_checks() {
        let p = PostPolicy::parse(&b64(DOC)).unwrap();
        assert_eq!(p.length_range(), Some((0, 1024)));
        let ok = fields(&[("bucket", "b"), ("key", "foo/x"), ("acl", "private"), ("content-type", "text/plain"), ("x-ignore-z", "1"), ("policy", "p")]);
        assert_eq!(p.check(&ok, NOW), Ok(()));
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("bucket", "c"), ("key", "foo"), ("acl", "private"), ("content-type", "text/a")], "bucket"),
            (&[("bucket", "b"), ("key", "bar"), ("acl", "private"), ("content-type", "text/a")], "key"),
            (&[("bucket", "b"), ("key", "foo"), ("acl", "public-read"), ("content-type", "text/a")], "acl"),
            (&[("bucket", "b"), ("key", "foo"), ("acl", "private"), ("content-type", "text/a, image/png")], "type list"),
            (&[("bucket", "b"), ("key", "foo"), ("acl", "private"), ("content-type", "text/a"), ("x-amz-meta-a", "v")], "eq empty"),
            (&[("bucket", "b"), ("key", "foo"), ("acl", "private"), ("content-type", "text/a"), ("extra", "v")], "extra field"),
        ];
        for (f, what) in cases {
            let e = p.check(&fields(f), NOW).unwrap_err();
            assert_eq!(e.code, S3ErrorCode::AccessDenied, "{what}");
        }
        let late = 1_991_000_000_000;
        assert!(p.check(&ok, late).unwrap_err().message.contains("expired"));
    }

    #[test]
    fn invalid_documents() {
        let bad = [
            "not base64 !",
            &b64("[1]"),
            &b64("{\"conditions\":[]}"),
            &b64("{\"EXPIRATION\":\"2030-06-01T00:00:00Z\",\"conditions\":[]}"),
            &b64("{\"expiration\":\"2030-06-01T00:00:00Z\"}"),
            &b64("{\"expiration\":\"2030-06-01T00:00:00Z\",\"CONDITIONS\":[]}"),
            &b64("{\"expiration\":\"2030-06-01 00:00:00.1+00:00\",\"conditions\":[]}"),
            &b64("{\"expiration\":\"2030-06-01T00:00:00Z\",\"conditions\":[{}]}"),
            &b64("{\"expiration\":\"2030-06-01T00:00:00Z\",\"conditions\":[[\"content-length-range\",-1,0]]}"),
            &b64("{\"expiration\":\"2030-06-01T00:00:00Z\",\"conditions\":[[\"content-length-range\",0]]}"),
            &b64("{\"expiration\":\"2030-06-01T00:00:00Z\",\"conditions\":[[\"content-length-range\",5,1]]}"),
            &b64("{\"expiration\":\"2030-06-01T00:00:00Z\",\"conditions\":[[\"in\",\"$key\",\"a\"]]}"),
            &b64("{\"expiration\":\"2030-06-01T00:00:00Z\",\"conditions\":[[\"eq\",\"key\",\"a\"]]}"),
            &b64("{\"expiration\":\"2030-06-01T00:00:00Z\",\"conditions\":[{\"a\":\"1\",\"b\":\"2\"}]}"),
        ];
        for d in bad {
            let e = PostPolicy::parse(d).unwrap_err();
            assert_eq!(e.code, S3ErrorCode::InvalidPolicyDocument, "{d}");
        }
    }

    #[test]
    fn signatures() {
        let policy = b64(DOC);
        let secret = |ak: &str| (ak == "AK").then(|| "SECRET".to_string());
        // SigV2: base64(HMAC-SHA1(secret, policy)).
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"SECRET");
        let sig2 = BASE64.encode(hmac::sign(&key, policy.as_bytes()).as_ref());
        let v2 = |ak: &str, sig: &str| {
            let f = fields(&[("awsaccesskeyid", ak), ("signature", sig), ("policy", &policy)]);
            authenticate(&|n| f.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()), "us-east-1", &secret)
        };
        assert_eq!(v2("AK", &sig2).unwrap().unwrap().access_key, "AK");
        assert_eq!(v2("AK", "AAAA").unwrap_err().code, S3ErrorCode::SignatureDoesNotMatch);
        assert_eq!(v2("XX", &sig2).unwrap_err().code, S3ErrorCode::InvalidAccessKeyId);
        // SigV4: hex(HMAC-SHA256(signing key, policy)).
        let sk = signing_key("SECRET", "20300101", "us-east-1", "s3");
        let sig4 = signature_hex(&sk, &policy);
        let v4 = |cred: &str, sig: &str| {
            let f = fields(&[
                ("x-amz-algorithm", ALGORITHM),
                ("x-amz-credential", cred),
                ("x-amz-date", "20300101T000000Z"),
                ("x-amz-signature", sig),
                ("policy", &policy),
            ]);
            authenticate(&|n| f.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()), "us-east-1", &secret)
        };
        assert!(v4("AK/20300101/us-east-1/s3/aws4_request", &sig4).unwrap().is_some());
        assert_eq!(v4("AK/20300101/us-east-1/s3/aws4_request", &"0".repeat(64)).unwrap_err().code, S3ErrorCode::SignatureDoesNotMatch);
        assert_eq!(v4("AK/20300102/us-east-1/s3/aws4_request", &sig4).unwrap_err().code, S3ErrorCode::InvalidArgument);
        assert_eq!(v4("AK/20300101/eu-west-1/s3/aws4_request", &sig4).unwrap_err().code, S3ErrorCode::AuthorizationQueryParametersError);
        // Missing pieces.
        let none: Vec<(String, String)> = Vec::new();
        assert_eq!(authenticate(&|n| none.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()), "us-east-1", &secret), Ok(None));
        let f = fields(&[("awsaccesskeyid", "AK"), ("policy", &policy)]);
        let e = authenticate(&|n| f.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()), "us-east-1", &secret).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::InvalidArgument);
    }
}
