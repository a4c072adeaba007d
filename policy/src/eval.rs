//! Evaluating one policy against one request: which statements apply
//! (action, resource, principal, conditions) and with which effect.

use crate::condition;
use crate::context::Context;
use crate::document::{Effect, Policy, PrincipalId, Principals, Statement, Version};
use crate::glob;

/// Who is asking, as a Principal element can name them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrincipalFacts {
    pub anonymous: bool,
    /// The account (its canonical id); empty for anonymous.
    pub account: String,
    /// The principal's own ARN: `arn:aws:iam::<account>:root`, a user's
    /// ARN, or an assumed-role session's `arn:aws:sts::...` ARN.
    pub arn: String,
    /// For a role session: the role's ARN.
    pub role_arn: Option<String>,
    /// The account's root identity.
    pub is_root: bool,
    /// Other ARNs that name exactly this principal (compatibility forms).
    pub aliases: Vec<String>,
}

impl PrincipalFacts {
    pub fn anonymous() -> Self {
        PrincipalFacts { anonymous: true, ..Default::default() }
    }
}

/// How a statement's Principal element named the requester, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PrincipalMatch {
    /// Via the requester's account (the account delegates to its
    /// identities: they still need an identity-based allow).
    Account,
    /// Via the role of a session (session policies still restrict it).
    Role,
    /// `"*"`: everyone, anonymous included.
    Everyone,
    /// The requester itself (user, session, or an account's root).
    Exact,
    /// No Principal element: an identity-based policy.
    Identity,
}

fn account_of_root_arn(s: &str) -> Option<&str> {
    s.strip_prefix("arn:aws:iam::").and_then(|r| r.strip_suffix(":root"))
}

/// How `id` names `p`, if it does.
fn principal_id_matches(id: &PrincipalId, p: &PrincipalFacts) -> Option<PrincipalMatch> {
    if p.anonymous {
        return None;
    }
    let account_level = |acct: &str| {
        (acct == p.account).then_some(if p.is_root { PrincipalMatch::Exact } else { PrincipalMatch::Account })
    };
    match id {
        PrincipalId::Aws(s) => {
            if *s == p.arn || p.aliases.iter().any(|a| a == s) {
                return Some(PrincipalMatch::Exact);
            }
            if let Some(acct) = account_of_root_arn(s) {
                return account_level(acct);
            }
            if !s.starts_with("arn:") {
                return account_level(s);
            }
            (p.role_arn.as_deref() == Some(s.as_str())).then_some(PrincipalMatch::Role)
        }
        PrincipalId::CanonicalUser(c) => account_level(c),
        PrincipalId::Service(_) | PrincipalId::Federated(_) => None,
    }
}

/// How the statement's Principal/NotPrincipal element names `p`; `None`
/// when it does not apply to `p`.
fn principal_matches(s: &Statement, p: Option<&PrincipalFacts>) -> Option<PrincipalMatch> {
    let Some(principals) = &s.principal else { return Some(PrincipalMatch::Identity) };
    let p = p?;
    let hit = match principals {
        Principals::Any => Some(PrincipalMatch::Everyone),
        Principals::List(ids) => ids.iter().filter_map(|id| principal_id_matches(id, p)).max(),
    };
    if s.not_principal {
        // Everyone except those named (anonymous included).
        return match hit {
            Some(_) => None,
            None => Some(PrincipalMatch::Everyone),
        };
    }
    hit
}

/// The parts of a request a statement is matched against.
#[derive(Debug, Clone, Copy)]
pub struct EvalRequest<'a> {
    /// `service:Action`, e.g. `s3:GetObject`.
    pub action: &'a str,
    /// The resource's ARN, e.g. `arn:aws:s3:::bucket/key`.
    pub resource: &'a str,
    /// The requester, for resource and trust policies.
    pub principal: Option<&'a PrincipalFacts>,
    pub context: &'a Context,
}

/// What one policy says about a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyResult {
    /// An Allow statement applies; how its Principal named the requester.
    pub allow: Option<PrincipalMatch>,
    /// A Deny statement applies.
    pub deny: bool,
}

fn statement_applies(s: &Statement, req: &EvalRequest<'_>, vars: Option<&Context>) -> Option<PrincipalMatch> {
    let action_hit = s.actions.iter().any(|a| glob::matches(a, req.action, true, None));
    if action_hit == s.not_action {
        return None;
    }
    if let Some(resources) = &s.resources {
        let hit = resources.iter().any(|r| glob::matches(r, req.resource, false, vars));
        if hit == s.not_resource {
            return None;
        }
    }
    let m = principal_matches(s, req.principal)?;
    s.conditions.iter().all(|c| condition::evaluate(c, req.context, vars)).then_some(m)
}

/// Evaluates `policy` against `req`.
pub fn evaluate(policy: &Policy, req: &EvalRequest<'_>) -> PolicyResult {
    let vars = (policy.version == Version::V2012).then_some(req.context);
    let mut out = PolicyResult::default();
    for s in &policy.statements {
        let Some(m) = statement_applies(s, req, vars) else { continue };
        match s.effect {
            Effect::Deny => out.deny = true,
            Effect::Allow => out.allow = out.allow.max(Some(m)),
        }
    }
    out
}

/// Evaluates several policies (e.g. all identity policies of a user) as one.
pub fn evaluate_all<'p>(policies: impl IntoIterator<Item = &'p Policy>, req: &EvalRequest<'_>) -> PolicyResult {
    let mut out = PolicyResult::default();
    for p in policies {
        let r = evaluate(p, req);
        out.deny |= r.deny;
        out.allow = out.allow.max(r.allow);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{parse, Kind};

    fn user() -> PrincipalFacts {
        PrincipalFacts {
            anonymous: false,
            account: "111122223333".into(),
            arn: "arn:aws:iam::111122223333:user/alice".into(),
            role_arn: None,
            is_root: false,
            aliases: Vec::new(),
        }
    }

    #[test]
    fn principals() {
        let ctx = Context::new();
        let doc = |p: &str| {
            parse(&format!(r#"{{"Statement":{{"Effect":"Allow","Principal":{p},"Action":"s3:*","Resource":"*"}}}}"#), Kind::Resource)
                .unwrap()
        };
        let req = |p: &'static PrincipalFacts| EvalRequest { action: "s3:GetObject", resource: "arn:aws:s3:::b/k", principal: Some(p), context: &ctx };
        let alice: &'static PrincipalFacts = Box::leak(Box::new(user()));
        let anon: &'static PrincipalFacts = Box::leak(Box::new(PrincipalFacts::anonymous()));
        let mut root = user();
        root.is_root = true;
        root.arn = "arn:aws:iam::111122223333:root".into();
        let root: &'static PrincipalFacts = Box::leak(Box::new(root));
        let cases: &[(&str, &'static PrincipalFacts, Option<PrincipalMatch>)] = &[
            (r#""*""#, alice, Some(PrincipalMatch::Everyone)),
            (r#""*""#, anon, Some(PrincipalMatch::Everyone)),
            (r#"{"AWS":"*"}"#, anon, Some(PrincipalMatch::Everyone)),
            (r#"{"AWS":"111122223333"}"#, alice, Some(PrincipalMatch::Account)),
            (r#"{"AWS":"arn:aws:iam::111122223333:root"}"#, alice, Some(PrincipalMatch::Account)),
            (r#"{"AWS":"arn:aws:iam::111122223333:root"}"#, root, Some(PrincipalMatch::Exact)),
            (r#"{"AWS":"arn:aws:iam::111122223333:root"}"#, anon, None),
            (r#"{"AWS":"arn:aws:iam::111122223333:user/alice"}"#, alice, Some(PrincipalMatch::Exact)),
            (r#"{"AWS":["arn:aws:iam::9:root","arn:aws:iam::111122223333:user/alice"]}"#, alice, Some(PrincipalMatch::Exact)),
            (r#"{"AWS":"arn:aws:iam::111122223333:user/bob"}"#, alice, None),
            (r#"{"CanonicalUser":"111122223333"}"#, alice, Some(PrincipalMatch::Account)),
            (r#"{"Service":"logging.s3.amazonaws.com"}"#, alice, None),
        ];
        for (p, who, want) in cases {
            assert_eq!(evaluate(&doc(p), &req(who)).allow, *want, "{p} / {}", who.arn);
        }
    }

    #[test]
    fn not_action_and_not_resource() {
        let ctx = Context::new();
        let p = parse(
            r#"{"Statement":[{"Effect":"Allow","NotAction":"s3:DeleteObject","NotResource":"arn:aws:s3:::b/secret/*"}]}"#,
            Kind::Identity,
        )
        .unwrap();
        let r = |action, resource| evaluate(&p, &EvalRequest { action, resource, principal: None, context: &ctx });
        assert!(r("s3:GetObject", "arn:aws:s3:::b/x").allow.is_some());
        assert!(r("s3:DeleteObject", "arn:aws:s3:::b/x").allow.is_none());
        assert!(r("s3:GetObject", "arn:aws:s3:::b/secret/x").allow.is_none());
    }

    #[test]
    fn deny_and_allow_together() {
        let ctx = Context::new();
        let p = parse(
            r#"{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"},{"Effect":"Deny","Action":"s3:Delete*","Resource":"*"}]}"#,
            Kind::Identity,
        )
        .unwrap();
        let r = evaluate(&p, &EvalRequest { action: "s3:DeleteObject", resource: "arn:aws:s3:::b/k", principal: None, context: &ctx });
        assert_eq!(r, PolicyResult { allow: Some(PrincipalMatch::Identity), deny: true });
    }
}
