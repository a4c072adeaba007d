//! Policy documents: the JSON grammar of AWS access policies, parsed and
//! validated into [`Policy`]. What AWS refuses is refused here with a
//! message in AWS's words; the caller maps [`PolicyError`] to the service's
//! error code (`MalformedPolicy` for S3, `MalformedPolicyDocument` for IAM).

use serde_json::{Map, Value};

use crate::condition::{Operator, SetOp};

/// Largest policy document text parsed (the largest AWS accepts anywhere,
/// a role trust policy raised to its quota, is below this; each service
/// applies its own, smaller limit before parsing).
pub const MAX_POLICY_BYTES: usize = 64 * 1024;
/// Most statements in one policy.
pub const MAX_STATEMENTS: usize = 1000;
/// Most entries in one Action/Resource/Principal list or condition value list.
pub const MAX_LIST_ENTRIES: usize = 1000;
/// Most condition clauses in one statement.
pub const MAX_CONDITIONS: usize = 100;
/// Deepest JSON nesting accepted (a policy needs 5).
pub const MAX_JSON_DEPTH: usize = 12;

/// Where a policy is used: it decides which elements are required or
/// forbidden.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Attached to a user, group or role: no Principal, Resource required.
    Identity,
    /// A bucket policy: Principal and Resource required.
    Resource,
    /// A role's trust policy: Principal required, no Resource.
    Trust,
    /// A session policy passed to AssumeRole: as an identity policy.
    Session,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `2008-10-17` (or no Version): policy variables are plain text.
    V2008,
    /// `2012-10-17`: `${...}` policy variables are substituted.
    V2012,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// One entry of a Principal element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalId {
    /// `"AWS": "<account id | ARN | *>"`
    Aws(String),
    /// `"CanonicalUser": "<canonical id>"`
    CanonicalUser(String),
    /// `"Service": "<service>.amazonaws.com"`: never one of our principals.
    Service(String),
    /// `"Federated": "<provider>"`: web identity providers.
    Federated(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principals {
    /// `"*"`: everyone, anonymous included.
    Any,
    List(Vec<PrincipalId>),
}

/// A condition clause: `"Operator": {"key": [values]}`, one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub op: Operator,
    pub set: SetOp,
    pub if_exists: bool,
    /// The key as written (lookups use [`crate::context::normalize_key`]).
    pub key: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    /// `None`: no Principal element (identity and session policies).
    pub principal: Option<Principals>,
    /// The principal element was `NotPrincipal`.
    pub not_principal: bool,
    pub actions: Vec<String>,
    pub not_action: bool,
    /// `None`: no Resource element (trust policies).
    pub resources: Option<Vec<String>>,
    pub not_resource: bool,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub version: Version,
    pub id: Option<String>,
    pub statements: Vec<Statement>,
}

/// Why a document was refused, in AWS's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError(pub String);

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PolicyError {}

fn err<T>(msg: impl Into<String>) -> Result<T, PolicyError> {
    Err(PolicyError(msg.into()))
}

/// Parses and validates a policy document of `kind`.
pub fn parse(text: &str, kind: Kind) -> Result<Policy, PolicyError> {
    if text.len() > MAX_POLICY_BYTES {
        return err("Policy document is too large");
    }
    if json_depth(text.as_bytes()) > MAX_JSON_DEPTH {
        return err("Policy document is nested too deeply");
    }
    let value: Value = serde_json::from_str(text).map_err(|_| PolicyError("Policies must be valid JSON".into()))?;
    let Value::Object(top) = value else { return err("Policies must be valid JSON and the first byte must be '{'") };
    let mut version = Version::V2008;
    let mut id = None;
    let mut statements = None;
    for (k, v) in &top {
        match k.as_str() {
            "Version" => {
                version = match v.as_str() {
                    Some("2012-10-17") => Version::V2012,
                    Some("2008-10-17") => Version::V2008,
                    _ => return err("The policy must contain a valid version string"),
                }
            }
            "Id" => id = Some(string(v, "Id")?),
            "Statement" => statements = Some(v),
            other => return err(format!("Policy document contains an unknown field: {other}")),
        }
    }
    let list: Vec<&Value> = match statements {
        None => return err("Missing required field Statement"),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v @ Value::Object(_)) => vec![v],
        Some(_) => return err("Statement must be an object or an array of objects"),
    };
    if list.is_empty() {
        return err("Missing required field Statement");
    }
    if list.len() > MAX_STATEMENTS {
        return err("Too many statements");
    }
    let statements = list.into_iter().map(|s| statement(s, kind)).collect::<Result<Vec<_>, _>>()?;
    let mut sids: Vec<&str> = statements.iter().filter_map(|s| s.sid.as_deref()).collect();
    sids.sort_unstable();
    if sids.windows(2).any(|w| w[0] == w[1]) {
        return err("Statement IDs (SID) in a single policy must be unique");
    }
    Ok(Policy { version, id, statements })
}

/// The deepest nesting of `{`/`[` outside strings (checked before parsing
/// so that a hostile document cannot make the parser recurse deeply).
fn json_depth(b: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for &c in b {
        if in_str {
            match c {
                _ if esc => esc = false,
                b'\\' => esc = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

fn string(v: &Value, what: &str) -> Result<String, PolicyError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        _ => err(format!("{what} must be a string")),
    }
}

/// A string or a non-empty array of strings.
fn string_list(v: &Value, what: &str) -> Result<Vec<String>, PolicyError> {
    let out = match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) if a.len() > MAX_LIST_ENTRIES => return err(format!("{what} has too many entries")),
        Value::Array(a) => a.iter().map(|x| string(x, what)).collect::<Result<Vec<_>, _>>()?,
        _ => return err(format!("{what} must be a string or an array of strings")),
    };
    if out.is_empty() {
        return err(format!("{what} must not be empty"));
    }
    Ok(out)
}

/// Picks the element named `a` or its negation `b` (at most one of them).
fn one_of<'v>(o: &'v Map<String, Value>, a: &str, b: &str) -> Result<Option<(&'v Value, bool)>, PolicyError> {
    match (o.get(a), o.get(b)) {
        (Some(_), Some(_)) => err(format!("Statement cannot contain both {a} and {b}")),
        (Some(v), None) => Ok(Some((v, false))),
        (None, Some(v)) => Ok(Some((v, true))),
        (None, None) => Ok(None),
    }
}

fn statement(v: &Value, kind: Kind) -> Result<Statement, PolicyError> {
    let Value::Object(o) = v else { return err("Statement must be an object") };
    for k in o.keys() {
        if !matches!(
            k.as_str(),
            "Sid" | "Effect" | "Principal" | "NotPrincipal" | "Action" | "NotAction" | "Resource" | "NotResource" | "Condition"
        ) {
            return err(format!("Statement contains an unknown field: {k}"));
        }
    }
    let sid = o.get("Sid").map(|s| string(s, "Sid")).transpose()?;
    if let Some(s) = &sid {
        // IAM allows ASCII letters and digits only; S3 bucket policies allow more.
        if kind != Kind::Resource && !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return err("Statement IDs (SID) must be alpha-numeric");
        }
    }
    let effect = match o.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        Some(_) => return err("Invalid effect: the Effect must be Allow or Deny"),
        None => return err("Missing required field Effect"),
    };
    let (principal, not_principal) = match one_of(o, "Principal", "NotPrincipal")? {
        None => (None, false),
        Some((v, not)) => (Some(principals(v)?), not),
    };
    match kind {
        Kind::Identity | Kind::Session if principal.is_some() => {
            return err("Policy document should not specify a principal.")
        }
        Kind::Resource | Kind::Trust if principal.is_none() => return err("Missing required field Principal"),
        _ => {}
    }
    if not_principal && effect == Effect::Allow {
        return err("NotPrincipal is only supported with Effect Deny");
    }
    let Some((action_v, not_action)) = one_of(o, "Action", "NotAction")? else {
        return err("Missing required field Action");
    };
    let actions = string_list(action_v, "Action")?;
    for a in &actions {
        valid_action(a)?;
    }
    let (resources, not_resource) = match one_of(o, "Resource", "NotResource")? {
        None if kind == Kind::Trust => (None, false),
        None => return err("Missing required field Resource"),
        Some((v, not)) => (Some(string_list(v, "Resource")?), not),
    };
    if let Some(rs) = &resources {
        for r in rs {
            if r != "*" && !r.starts_with("arn:") {
                return err(format!("Resource {r} must be in ARN format or \"*\"."));
            }
        }
    }
    let conditions = match o.get("Condition") {
        None => Vec::new(),
        Some(c) => conditions(c)?,
    };
    Ok(Statement { sid, effect, principal, not_principal, actions, not_action, resources, not_resource, conditions })
}

fn valid_action(a: &str) -> Result<(), PolicyError> {
    if a == "*" {
        return Ok(());
    }
    match a.split_once(':') {
        Some((service, name))
            if !service.is_empty()
                && !name.is_empty()
                && service.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'*' || b == b'?' || b == b'-' || b == b'_') =>
        {
            Ok(())
        }
        _ => err(format!(
            "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc. (got {a})"
        )),
    }
}

fn principals(v: &Value) -> Result<Principals, PolicyError> {
    match v {
        Value::String(s) if s == "*" => Ok(Principals::Any),
        Value::Object(o) if !o.is_empty() => {
            let mut list = Vec::new();
            for (k, v) in o {
                let values = string_list(v, "Principal")?;
                for s in values {
                    if k == "AWS" && s == "*" {
                        // {"AWS": "*"} is everyone, as "*" is.
                        return Ok(Principals::Any);
                    }
                    list.push(match k.as_str() {
                        "AWS" => PrincipalId::Aws(s),
                        "CanonicalUser" => PrincipalId::CanonicalUser(s),
                        "Service" => PrincipalId::Service(s),
                        "Federated" => PrincipalId::Federated(s),
                        other => return err(format!("Invalid principal type: {other}")),
                    });
                }
            }
            Ok(Principals::List(list))
        }
        _ => err("Invalid principal in policy: Principal must be \"*\" or an object"),
    }
}

fn conditions(v: &Value) -> Result<Vec<Condition>, PolicyError> {
    let Value::Object(ops) = v else { return err("Condition must be an object") };
    let mut out = Vec::new();
    for (op_name, body) in ops {
        let (set, if_exists, op) = crate::condition::parse_operator(op_name)
            .ok_or_else(|| PolicyError(format!("Invalid Condition type : {op_name}")))?;
        let Value::Object(keys) = body else { return err(format!("Condition {op_name} must map keys to values")) };
        if keys.is_empty() {
            return err(format!("Condition {op_name} has no keys"));
        }
        for (key, vals) in keys {
            if key.is_empty() {
                return err("Condition keys must not be empty");
            }
            let values = condition_values(vals)?;
            crate::condition::validate(op, &values)?;
            out.push(Condition { op, set, if_exists, key: key.clone(), values });
            if out.len() > MAX_CONDITIONS {
                return err("Too many condition clauses in a statement");
            }
        }
    }
    Ok(out)
}

/// Condition values: strings, numbers or booleans, alone or in an array;
/// numbers and booleans compare as their text.
fn condition_values(v: &Value) -> Result<Vec<String>, PolicyError> {
    let one = |x: &Value| -> Result<String, PolicyError> {
        match x {
            Value::String(s) => Ok(s.clone()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Number(n) => Ok(n.to_string()),
            _ => err("Condition values must be strings, numbers or booleans"),
        }
    };
    let out = match v {
        Value::Array(a) if a.len() > MAX_LIST_ENTRIES => return err("Too many condition values"),
        Value::Array(a) => a.iter().map(one).collect::<Result<Vec<_>, _>>()?,
        x => vec![one(x)?],
    };
    if out.is_empty() {
        return err("Condition value lists must not be empty");
    }
    Ok(out)
}

impl Policy {
    /// Whether any statement uses `key` in a condition (e.g. to know
    /// whether a request must load something only that key needs).
    pub fn uses_condition_key_prefix(&self, prefix_lc: &str) -> bool {
        self.statements
            .iter()
            .flat_map(|s| &s.conditions)
            .any(|c| c.key.to_ascii_lowercase().starts_with(prefix_lc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_documents() {
        let p = parse(r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#, Kind::Identity)
            .unwrap();
        assert_eq!(p.version, Version::V2012);
        assert_eq!(p.statements.len(), 1);
        let p = parse(r#"{"Statement":[{"Effect":"Deny","Principal":"*","Action":["s3:GetObject"],"Resource":"arn:aws:s3:::b/*"}]}"#, Kind::Resource).unwrap();
        assert_eq!(p.version, Version::V2008);
        assert_eq!(p.statements[0].principal, Some(Principals::Any));
    }

    #[test]
    fn refusals() {
        let cases: &[(&str, Kind)] = &[
            ("", Kind::Identity),
            ("[]", Kind::Identity),
            (r#"{"Statement":[]}"#, Kind::Identity),
            (r#"{"Version":"2012-10-18","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#, Kind::Identity),
            (r#"{"Statement":{"Effect":"Permit","Action":"*","Resource":"*"}}"#, Kind::Identity),
            (r#"{"Statement":{"Action":"*","Resource":"*"}}"#, Kind::Identity),
            (r#"{"Statement":{"Effect":"Allow","Resource":"*"}}"#, Kind::Identity),
            (r#"{"Statement":{"Effect":"Allow","Action":"*"}}"#, Kind::Identity),
            (r#"{"Statement":{"Effect":"Allow","Action":"foo","Resource":"*"}}"#, Kind::Identity),
            (r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"bucket"}}"#, Kind::Identity),
            (r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}}"#, Kind::Identity),
            (r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#, Kind::Resource),
            (r#"{"Statement":{"Effect":"Allow","NotPrincipal":{"AWS":"x"},"Action":"*","Resource":"*"}}"#, Kind::Resource),
            (r#"{"Statement":{"Effect":"Allow","Action":"*","NotAction":"s3:*","Resource":"*"}}"#, Kind::Identity),
            (r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringEqualz":{"a":"b"}}}}"#, Kind::Identity),
            (r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"300.0.0.0/8"}}}}"#, Kind::Identity),
            (r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Foo":1}}"#, Kind::Identity),
            (r#"{"Statement":[{"Sid":"a","Effect":"Allow","Action":"*","Resource":"*"},{"Sid":"a","Effect":"Allow","Action":"*","Resource":"*"}]}"#, Kind::Identity),
            (r#"{"Statement":{"Effect":"Allow","Principal":{"Alien":"x"},"Action":"*","Resource":"*"}}"#, Kind::Resource),
        ];
        for (text, kind) in cases {
            assert!(parse(text, *kind).is_err(), "accepted: {text}");
        }
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(parse(&deep, Kind::Identity).is_err());
        assert!(parse(&"x".repeat(MAX_POLICY_BYTES + 1), Kind::Identity).is_err());
    }

    #[test]
    fn trust_policies_need_no_resource() {
        let p = parse(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"sts:AssumeRole"}}"#,
            Kind::Trust,
        )
        .unwrap();
        assert!(p.statements[0].resources.is_none());
    }
}
