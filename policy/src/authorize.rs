//! AWS's evaluation logic, in one function: explicit deny anywhere wins;
//! otherwise a request is allowed when, in the requester's own account,
//! an identity-based policy, the resource policy or the ACL allows it,
//! and across accounts when the requester's identity allows it *and* the
//! resource's policy or ACL grants it. Session policies and permission
//! boundaries narrow identity-based allows; an account's root identity has
//! every permission of its account and can always manage its buckets'
//! policies (AWS's guard against locking oneself out).

use crate::acl::{Acl, AclSubject, Permission};
use crate::context::Context;
use crate::document::Policy;
use crate::eval::{evaluate, evaluate_all, EvalRequest, PolicyResult, PrincipalFacts, PrincipalMatch};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    Anonymous,
    /// An account's root identity.
    Root,
    /// An IAM user (or a GetSessionToken session of one).
    User,
    /// An assumed-role session.
    RoleSession,
}

/// The requester and the policies attached to it.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub kind: SubjectKind,
    pub facts: &'a PrincipalFacts,
    /// Identity-based policies: a user's own and its groups', or a role's.
    pub identity: &'a [&'a Policy],
    /// The session policy passed when the session was made.
    pub session: Option<&'a Policy>,
    pub boundary: Option<&'a Policy>,
}

/// An ACL and the permission the action needs from it.
#[derive(Debug, Clone, Copy)]
pub struct AclCheck<'a> {
    pub acl: &'a Acl,
    pub permission: Permission,
}

/// The action and the resource it touches.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub action: &'a str,
    /// The resource's ARN.
    pub resource: &'a str,
    /// The account that owns the resource (for an object under an ACL:
    /// the object's owner).
    pub owner: &'a str,
    /// The resource-based policy: a bucket policy, a role's trust policy.
    pub policy: Option<&'a Policy>,
    /// Whether `policy` may grant (its denies always count): a bucket
    /// owner's policy grants nothing on objects another account owns.
    pub policy_grants: bool,
    pub acl: Option<AclCheck<'a>>,
    /// IgnorePublicAcls: grants to AllUsers/AuthenticatedUsers don't count.
    pub ignore_public_acls: bool,
    /// RestrictPublicBuckets on a bucket whose policy is public: the
    /// policy grants only to principals of the owner's account.
    pub restrict_public: bool,
    /// The owner's root may always do this (Get/Put/DeleteBucketPolicy).
    pub root_backstop: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    ExplicitDeny,
    ImplicitDeny,
}

impl Decision {
    pub fn allowed(self) -> bool {
        self == Decision::Allow
    }
}

fn allows(r: Option<PolicyResult>) -> bool {
    r.is_none_or(|r| r.allow.is_some())
}

pub fn authorize(subject: &Subject<'_>, target: &Target<'_>, ctx: &Context) -> Decision {
    let facts = subject.facts;
    let anonymous = subject.kind == SubjectKind::Anonymous;
    let same_account = !anonymous && facts.account == target.owner;
    if subject.kind == SubjectKind::Root && same_account && target.root_backstop {
        return Decision::Allow;
    }
    let ident_req = EvalRequest { action: target.action, resource: target.resource, principal: None, context: ctx };
    let res_req = EvalRequest { principal: Some(facts), ..ident_req };
    let identity = match subject.kind {
        SubjectKind::User | SubjectKind::RoleSession => evaluate_all(subject.identity.iter().copied(), &ident_req),
        SubjectKind::Root | SubjectKind::Anonymous => PolicyResult::default(),
    };
    let session = subject.session.map(|p| evaluate(p, &ident_req));
    let boundary = subject.boundary.map(|p| evaluate(p, &ident_req));
    let resource = target.policy.map(|p| evaluate(p, &res_req)).unwrap_or_default();
    let denied = identity.deny
        || resource.deny
        || session.is_some_and(|s| s.deny)
        || boundary.is_some_and(|b| b.deny);
    if denied {
        return Decision::ExplicitDeny;
    }
    let identity_allows = match subject.kind {
        SubjectKind::Anonymous => false,
        SubjectKind::Root => true,
        SubjectKind::User | SubjectKind::RoleSession => identity.allow.is_some() && allows(session) && allows(boundary),
    };
    let mut resource_allow = if target.policy_grants { resource.allow } else { None };
    if target.restrict_public && !same_account {
        resource_allow = None;
    }
    // A session policy narrows what a resource policy grants too, unless
    // that policy names the session itself.
    if resource_allow.is_some_and(|m| m != PrincipalMatch::Exact) && !allows(session) {
        resource_allow = None;
    }
    let who = AclSubject { account: (!anonymous).then_some(facts.account.as_str()) };
    let acl = |account_grants| {
        target.acl.is_some_and(|a| a.acl.grants(a.permission, who, target.ignore_public_acls, account_grants))
    };
    let allowed = if same_account {
        // Naming the account only delegates to its identities, whose own
        // policies were just evaluated.
        identity_allows
            || resource_allow.is_some_and(|m| m != PrincipalMatch::Account)
            || acl(subject.kind == SubjectKind::Root)
    } else {
        (identity_allows || anonymous) && (resource_allow.is_some() || acl(true))
    };
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}
