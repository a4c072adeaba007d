//! Whether a bucket policy is "public" (GetBucketPolicyStatus,
//! BlockPublicPolicy, RestrictPublicBuckets), as S3 decides it: an Allow
//! statement for everyone (`"*"` or a wildcard account) whose conditions
//! do not pin it to fixed values of a key that makes it non-public.

use crate::condition::Operator;
use crate::document::{Condition, Effect, Policy, PrincipalId, Principals, Statement};

/// Condition keys that, with fixed values, make an Allow for everyone
/// non-public (AWS's list, lowercased).
const RESTRICTING_KEYS: &[&str] = &[
    "aws:sourceip",
    "aws:sourcearn",
    "aws:sourcevpc",
    "aws:sourcevpce",
    "aws:sourceaccount",
    "aws:sourceowner",
    "aws:principalaccount",
    "aws:principalarn",
    "aws:principalorgid",
    "aws:userid",
    "s3:x-amz-server-side-encryption-aws-kms-key-id",
    "s3:dataaccesspointaccount",
    "s3:dataaccesspointarn",
];

fn wildcard(s: &str) -> bool {
    s.contains(['*', '?'])
}

fn restricts(c: &Condition) -> bool {
    let key = c.key.to_ascii_lowercase();
    if !RESTRICTING_KEYS.contains(&key.as_str()) {
        return false;
    }
    match c.op {
        Operator::IpAddress => c.values.iter().all(|v| {
            // A network that covers everything restricts nothing.
            !matches!(v.trim(), "0.0.0.0/0" | "::/0")
        }),
        Operator::StringEquals | Operator::StringEqualsIgnoreCase | Operator::ArnEquals => {
            c.values.iter().all(|v| !wildcard(v))
        }
        Operator::StringLike | Operator::ArnLike => c.values.iter().all(|v| !wildcard(v)),
        _ => false,
    }
}

fn for_everyone(s: &Statement) -> bool {
    match &s.principal {
        Some(Principals::Any) => true,
        Some(Principals::List(ids)) => ids.iter().any(|id| match id {
            PrincipalId::Aws(a) | PrincipalId::CanonicalUser(a) => wildcard(a),
            _ => false,
        }),
        None => false,
    }
}

/// Whether `policy` grants anything to the public.
pub fn policy_is_public(policy: &Policy) -> bool {
    policy
        .statements
        .iter()
        .any(|s| s.effect == Effect::Allow && !s.not_principal && for_everyone(s) && !s.conditions.iter().any(restricts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{parse, Kind};

    #[test]
    fn public_or_not() {
        let p = |stmt: &str| parse(&format!(r#"{{"Version":"2012-10-17","Statement":[{stmt}]}}"#), Kind::Resource).unwrap();
        let cases = [
            (r#"{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}"#, true),
            (r#"{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"s3:ListBucket","Resource":"arn:aws:s3:::b"}"#, true),
            (r#"{"Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}"#, false),
            (r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::1:root"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}"#, false),
            (r#"{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/32"}}}"#, false),
            (r#"{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*","Condition":{"IpAddress":{"aws:SourceIp":"0.0.0.0/0"}}}"#, true),
            (r#"{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*","Condition":{"StringLike":{"aws:Referer":"x"}}}"#, true),
            (r#"{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*","Condition":{"StringEquals":{"aws:PrincipalAccount":"1"}}}"#, false),
        ];
        for (stmt, want) in cases {
            assert_eq!(policy_is_public(&p(stmt)), want, "{stmt}");
        }
    }
}
