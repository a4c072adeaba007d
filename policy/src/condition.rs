//! Condition operators: string, numeric, date, bool, binary, IP address,
//! ARN and Null, each with `...IfExists`, and the set qualifiers
//! `ForAnyValue:` / `ForAllValues:`.
//!
//! Semantics (AWS's): a key the request lacks makes a positive operator
//! false and a negated one (`StringNotEquals`, `NotIpAddress`...) true;
//! `IfExists` makes a missing key true; `ForAllValues` is true for a missing
//! or empty key, `ForAnyValue` false. A condition's values are ORed; a
//! negated operator is true when no value matches.

use std::net::IpAddr;

use base64::Engine as _;

use crate::context::Context;
use crate::document::{Condition, PolicyError};
use crate::glob;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOp {
    Single,
    ForAnyValue,
    ForAllValues,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    DateEquals,
    DateNotEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
    BinaryEquals,
    IpAddress,
    NotIpAddress,
    ArnEquals,
    ArnLike,
    ArnNotEquals,
    ArnNotLike,
    Null,
}

const OPERATORS: &[(&str, Operator)] = &[
    ("StringEquals", Operator::StringEquals),
    ("StringNotEquals", Operator::StringNotEquals),
    ("StringEqualsIgnoreCase", Operator::StringEqualsIgnoreCase),
    ("StringNotEqualsIgnoreCase", Operator::StringNotEqualsIgnoreCase),
    ("StringLike", Operator::StringLike),
    ("StringNotLike", Operator::StringNotLike),
    ("NumericEquals", Operator::NumericEquals),
    ("NumericNotEquals", Operator::NumericNotEquals),
    ("NumericLessThan", Operator::NumericLessThan),
    ("NumericLessThanEquals", Operator::NumericLessThanEquals),
    ("NumericGreaterThan", Operator::NumericGreaterThan),
    ("NumericGreaterThanEquals", Operator::NumericGreaterThanEquals),
    ("DateEquals", Operator::DateEquals),
    ("DateNotEquals", Operator::DateNotEquals),
    ("DateLessThan", Operator::DateLessThan),
    ("DateLessThanEquals", Operator::DateLessThanEquals),
    ("DateGreaterThan", Operator::DateGreaterThan),
    ("DateGreaterThanEquals", Operator::DateGreaterThanEquals),
    ("Bool", Operator::Bool),
    ("BinaryEquals", Operator::BinaryEquals),
    ("IpAddress", Operator::IpAddress),
    ("NotIpAddress", Operator::NotIpAddress),
    ("ArnEquals", Operator::ArnEquals),
    ("ArnLike", Operator::ArnLike),
    ("ArnNotEquals", Operator::ArnNotEquals),
    ("ArnNotLike", Operator::ArnNotLike),
    ("Null", Operator::Null),
];

/// `[ForAnyValue:|ForAllValues:]Operator[IfExists]`. Operator names are
/// matched case-sensitively, as AWS does.
pub fn parse_operator(name: &str) -> Option<(SetOp, bool, Operator)> {
    let (set, rest) = if let Some(r) = name.strip_prefix("ForAnyValue:") {
        (SetOp::ForAnyValue, r)
    } else if let Some(r) = name.strip_prefix("ForAllValues:") {
        (SetOp::ForAllValues, r)
    } else {
        (SetOp::Single, name)
    };
    let (base, if_exists) = match rest.strip_suffix("IfExists") {
        Some(b) => (b, true),
        None => (rest, false),
    };
    let op = OPERATORS.iter().find(|(n, _)| *n == base).map(|(_, o)| *o)?;
    if op == Operator::Null && (if_exists || set != SetOp::Single) {
        return None;
    }
    Some((set, if_exists, op))
}

impl Operator {
    fn negated(self) -> bool {
        matches!(
            self,
            Operator::StringNotEquals
                | Operator::StringNotEqualsIgnoreCase
                | Operator::StringNotLike
                | Operator::NumericNotEquals
                | Operator::DateNotEquals
                | Operator::NotIpAddress
                | Operator::ArnNotEquals
                | Operator::ArnNotLike
        )
    }
}

/// Refuses values an operator can never compare (AWS refuses these
/// policies when they are stored).
pub fn validate(op: Operator, values: &[String]) -> Result<(), PolicyError> {
    let bad = |v: &str| Err(PolicyError(format!("Invalid value {v:?} for condition operator {op:?}")));
    for v in values {
        // A value that is a policy variable is checked when substituted.
        if v.contains("${") {
            continue;
        }
        let ok = match op {
            Operator::NumericEquals
            | Operator::NumericNotEquals
            | Operator::NumericLessThan
            | Operator::NumericLessThanEquals
            | Operator::NumericGreaterThan
            | Operator::NumericGreaterThanEquals => number(v).is_some(),
            Operator::DateEquals
            | Operator::DateNotEquals
            | Operator::DateLessThan
            | Operator::DateLessThanEquals
            | Operator::DateGreaterThan
            | Operator::DateGreaterThanEquals => crate::time::parse_date(v).is_some(),
            Operator::Bool | Operator::Null => v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false"),
            Operator::IpAddress | Operator::NotIpAddress => Cidr::parse(v).is_some(),
            Operator::BinaryEquals => base64::engine::general_purpose::STANDARD.decode(v).is_ok(),
            _ => true,
        };
        if !ok {
            return bad(v);
        }
    }
    Ok(())
}

fn number(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    s.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// An IPv4 or IPv6 network (`10.0.0.0/8`, `2001:db8::/32`) or address.
#[derive(Debug, Clone, Copy)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let s = s.trim();
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
            Some(_) => return None,
        };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4-mapped IPv6 client address compares as IPv4.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix)) };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(self.prefix)) };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// ARN matching, component by component (the six `:`-separated parts,
/// the last one keeping its colons), wildcards within each.
fn arn_like(pattern: &str, arn: &str) -> bool {
    let p: Vec<&str> = pattern.splitn(6, ':').collect();
    let a: Vec<&str> = arn.splitn(6, ':').collect();
    p.len() == a.len() && p.iter().zip(&a).all(|(p, a)| glob::matches(p, a, false, None))
}

/// One policy value against one request value (positive form of the operator).
fn one(op: Operator, policy: &str, request: &str, vars: Option<&Context>) -> bool {
    use Operator::*;
    let sub = |p: &str| -> Option<String> {
        match vars {
            Some(ctx) => glob::substitute(p, ctx),
            None => Some(p.to_string()),
        }
    };
    let num_cmp = |f: fn(f64, f64) -> bool| match (number(request), number(policy)) {
        (Some(r), Some(p)) => f(r, p),
        _ => false,
    };
    let date_cmp = |f: fn(i64, i64) -> bool| match (crate::time::parse_date(request), crate::time::parse_date(policy)) {
        (Some(r), Some(p)) => f(r, p),
        _ => false,
    };
    match op {
        StringEquals | StringNotEquals => sub(policy).is_some_and(|p| p == request),
        StringEqualsIgnoreCase | StringNotEqualsIgnoreCase => {
            sub(policy).is_some_and(|p| p.to_lowercase() == request.to_lowercase())
        }
        StringLike | StringNotLike => glob::matches(policy, request, false, vars),
        NumericEquals | NumericNotEquals => num_cmp(|r, p| r == p),
        NumericLessThan => num_cmp(|r, p| r < p),
        NumericLessThanEquals => num_cmp(|r, p| r <= p),
        NumericGreaterThan => num_cmp(|r, p| r > p),
        NumericGreaterThanEquals => num_cmp(|r, p| r >= p),
        DateEquals | DateNotEquals => date_cmp(|r, p| r == p),
        DateLessThan => date_cmp(|r, p| r < p),
        DateLessThanEquals => date_cmp(|r, p| r <= p),
        DateGreaterThan => date_cmp(|r, p| r > p),
        DateGreaterThanEquals => date_cmp(|r, p| r >= p),
        Bool => policy.eq_ignore_ascii_case(request),
        BinaryEquals => {
            // The policy holds base64; the request's value is the bytes themselves.
            base64::engine::general_purpose::STANDARD.decode(policy).is_ok_and(|p| p == request.as_bytes())
        }
        IpAddress | NotIpAddress => match (Cidr::parse(policy), request.trim().parse::<IpAddr>()) {
            (Some(c), Ok(ip)) => c.contains(ip),
            _ => false,
        },
        // Variables are substituted first; IAM names cannot hold wildcards.
        ArnEquals | ArnLike | ArnNotEquals | ArnNotLike => sub(policy).is_some_and(|p| arn_like(&p, request)),
        Null => false,
    }
}

/// Evaluates one condition clause against the request context. `vars`:
/// the context again when the policy's version substitutes variables.
pub fn evaluate(c: &Condition, ctx: &Context, vars: Option<&Context>) -> bool {
    let present = ctx.get(&c.key);
    if c.op == Operator::Null {
        let want_absent = c.values.iter().any(|v| v.eq_ignore_ascii_case("true"));
        let absent = present.is_none_or(|v| v.is_empty());
        return want_absent == absent;
    }
    let negated = c.op.negated();
    let Some(values) = present else {
        return match c.set {
            SetOp::ForAllValues => true,
            SetOp::ForAnyValue => c.if_exists,
            SetOp::Single => c.if_exists || negated,
        };
    };
    // Whether one request value passes the clause (any policy value matches,
    // or for a negated operator none does).
    let passes = |r: &str| {
        let hit = c.values.iter().any(|p| one(c.op, p, r, vars));
        hit != negated
    };
    match c.set {
        SetOp::ForAllValues => values.iter().all(|r| passes(r)),
        SetOp::ForAnyValue => values.iter().any(|r| passes(r)),
        SetOp::Single if values.is_empty() => c.if_exists || negated,
        SetOp::Single if negated => values.iter().all(|r| passes(r)),
        SetOp::Single => values.iter().any(|r| passes(r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(op: &str, key: &str, values: &[&str]) -> Condition {
        let (set, if_exists, op) = parse_operator(op).unwrap();
        Condition { op, set, if_exists, key: key.into(), values: values.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn operators_table() {
        let mut ctx = Context::new();
        ctx.insert("aws:SourceIp", "192.168.1.77")
            .insert("aws:SecureTransport", "false")
            .insert("s3:max-keys", "50")
            .insert("aws:CurrentTime", "2024-05-01T12:00:00Z")
            .insert("s3:prefix", "home/alice/")
            .insert("aws:PrincipalArn", "arn:aws:iam::123456789012:user/alice")
            .insert("aws:UserAgent", "Mozilla/5.0")
            .set("s3:RequestObjectTagKeys", vec!["a".into(), "b".into()]);
        let cases: &[(&str, &str, &[&str], bool)] = &[
            ("StringEquals", "s3:prefix", &["home/alice/"], true),
            ("StringEquals", "S3:Prefix", &["home/alice/"], true),
            ("StringEquals", "s3:prefix", &["home/bob/", "home/alice/"], true),
            ("StringEquals", "s3:prefix", &["HOME/alice/"], false),
            ("StringEqualsIgnoreCase", "s3:prefix", &["HOME/alice/"], true),
            ("StringNotEquals", "s3:prefix", &["home/bob/"], true),
            ("StringNotEquals", "s3:prefix", &["home/alice/"], false),
            ("StringNotEquals", "s3:delimiter", &["/"], true),
            ("StringLike", "s3:prefix", &["home/*"], true),
            ("StringLike", "aws:UserAgent", &["*Mozilla*"], true),
            ("StringNotLike", "s3:prefix", &["home/*"], false),
            ("StringEquals", "s3:delimiter", &["/"], false),
            ("StringEqualsIfExists", "s3:delimiter", &["/"], true),
            ("NumericLessThanEquals", "s3:max-keys", &["100"], true),
            ("NumericGreaterThan", "s3:max-keys", &["100"], false),
            ("NumericEquals", "s3:max-keys", &["50.0"], true),
            ("NumericNotEquals", "s3:max-keys", &["50"], false),
            ("DateGreaterThan", "aws:CurrentTime", &["2024-01-01T00:00:00Z"], true),
            ("DateLessThan", "aws:CurrentTime", &["2024-01-01T00:00:00Z"], false),
            ("DateEquals", "aws:CurrentTime", &["1714564800"], true),
            ("Bool", "aws:SecureTransport", &["false"], true),
            ("Bool", "aws:SecureTransport", &["true"], false),
            ("BoolIfExists", "aws:MultiFactorAuthPresent", &["true"], true),
            ("IpAddress", "aws:SourceIp", &["192.168.1.0/24"], true),
            ("IpAddress", "aws:SourceIp", &["10.0.0.0/8", "192.168.0.0/16"], true),
            ("IpAddress", "aws:SourceIp", &["192.168.2.0/24"], false),
            ("IpAddress", "aws:SourceIp", &["0.0.0.0/0"], true),
            ("IpAddress", "aws:SourceIp", &["2001:db8::/32"], false),
            ("NotIpAddress", "aws:SourceIp", &["192.168.1.0/24"], false),
            ("NotIpAddress", "aws:SourceIp", &["10.0.0.0/8"], true),
            ("ArnLike", "aws:PrincipalArn", &["arn:aws:iam::*:user/*"], true),
            ("ArnLike", "aws:PrincipalArn", &["arn:aws:iam::*:role/*"], false),
            ("ArnEquals", "aws:PrincipalArn", &["arn:aws:iam::123456789012:user/alice"], true),
            ("ArnNotLike", "aws:PrincipalArn", &["arn:aws:iam::*:role/*"], true),
            ("ArnLike", "aws:PrincipalArn", &["arn:aws:iam::123456789012"], false),
            ("Null", "s3:delimiter", &["true"], true),
            ("Null", "s3:prefix", &["true"], false),
            ("Null", "s3:prefix", &["false"], true),
            ("ForAllValues:StringEquals", "s3:RequestObjectTagKeys", &["a", "b", "c"], true),
            ("ForAllValues:StringEquals", "s3:RequestObjectTagKeys", &["a"], false),
            ("ForAllValues:StringEquals", "s3:Missing", &["a"], true),
            ("ForAnyValue:StringEquals", "s3:RequestObjectTagKeys", &["b"], true),
            ("ForAnyValue:StringEquals", "s3:RequestObjectTagKeys", &["z"], false),
            ("ForAnyValue:StringEquals", "s3:Missing", &["z"], false),
            ("ForAnyValue:StringNotEquals", "s3:RequestObjectTagKeys", &["a"], true),
            ("ForAllValues:StringNotEquals", "s3:RequestObjectTagKeys", &["a"], false),
            ("BinaryEquals", "s3:prefix", &["aG9tZS9hbGljZS8="], true),
        ];
        for (op, key, values, want) in cases {
            assert_eq!(evaluate(&cond(op, key, values), &ctx, None), *want, "{op} {key} {values:?}");
        }
    }

    #[test]
    fn operator_names() {
        assert!(parse_operator("StringLikeIfExists").is_some());
        assert!(parse_operator("ForAnyValue:StringLike").is_some());
        assert!(parse_operator("stringequals").is_none());
        assert!(parse_operator("NullIfExists").is_none());
        assert!(parse_operator("ForAllValues:Null").is_none());
        assert!(parse_operator("Foo").is_none());
    }

    #[test]
    fn cidrs() {
        assert!(Cidr::parse("10.0.0.0/8").is_some());
        assert!(Cidr::parse("10.0.0.1").is_some());
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("::1/128").is_some());
        assert!(Cidr::parse("10.0.0.0/").is_none());
        let c = Cidr::parse("127.0.0.0/8").unwrap();
        assert!(c.contains("::ffff:127.0.0.1".parse().unwrap()), "mapped addresses compare as IPv4");
    }

    #[test]
    fn variables_in_values() {
        let mut ctx = Context::new();
        ctx.insert("aws:username", "alice").insert("s3:prefix", "home/alice/x");
        let c = cond("StringLike", "s3:prefix", &["home/${aws:username}/*"]);
        assert!(evaluate(&c, &ctx, Some(&ctx)));
        assert!(!evaluate(&c, &ctx, None), "2008 policies take variables literally");
    }
}
