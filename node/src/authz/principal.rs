//! Who a request comes from: the credentials of a signature resolved to a
//! principal (an account's root, an IAM user, a session), and the policies
//! that apply to it now.

use std::sync::Arc;

use tessera_policy::{Policy, PrincipalFacts, SubjectKind};
use tessera_proto::http::RequestHead;
use tessera_proto::{S3Error, S3ErrorCode};

use crate::iam::model::{root_arn, IamRole, IamUser};
use crate::iam::session::{SessionBase, SessionClaims, TokenError};
use crate::iam::store::IamState;
use crate::identity::User;
use crate::server::Shared;

/// The requester, resolved from its credentials.
#[derive(Debug, Clone)]
pub struct Principal {
    pub kind: SubjectKind,
    /// The account it acts for; `None` when anonymous.
    pub account: Option<Arc<User>>,
    pub facts: PrincipalFacts,
    pub user: Option<Arc<IamUser>>,
    pub role: Option<Arc<IamRole>>,
    pub session: Option<Arc<SessionClaims>>,
    /// The IAM snapshot the request was authenticated against.
    pub iam: Arc<IamState>,
}

/// The policies that apply to a principal (evaluated per request: a
/// policy change applies to the next request).
#[derive(Debug, Default)]
pub struct Policies {
    pub identity: Vec<Arc<Policy>>,
    pub session: Option<Arc<Policy>>,
    pub boundary: Option<Arc<Policy>>,
}

impl Principal {
    pub fn anonymous(iam: Arc<IamState>) -> Self {
        Principal {
            kind: SubjectKind::Anonymous,
            account: None,
            facts: PrincipalFacts::anonymous(),
            user: None,
            role: None,
            session: None,
            iam,
        }
    }

    fn root(account: Arc<User>, iam: Arc<IamState>) -> Self {
        let facts = PrincipalFacts {
            anonymous: false,
            account: account.user_id.clone(),
            arn: root_arn(&account.user_id),
            role_arn: None,
            is_root: true,
            // The account-less form Ceph's user ARNs take.
            aliases: vec![crate::iam::model::concat_str(&["arn:aws:iam:::user/", &account.user_id])],
        };
        Principal { kind: SubjectKind::Root, account: Some(account), facts, user: None, role: None, session: None, iam }
    }

    fn iam_user(account: Arc<User>, user: Arc<IamUser>, iam: Arc<IamState>) -> Self {
        let facts = PrincipalFacts {
            anonymous: false,
            account: account.user_id.clone(),
            arn: user.arn(),
            role_arn: None,
            is_root: false,
            aliases: Vec::new(),
        };
        Principal { kind: SubjectKind::User, account: Some(account), facts, user: Some(user), role: None, session: None, iam }
    }

    /// The account id, empty when anonymous.
    pub fn account_id(&self) -> &str {
        self.account.as_ref().map_or("", |a| a.user_id.as_str())
    }

    /// `aws:userid` as AWS forms it.
    pub fn user_id(&self) -> String {
        match (&self.user, &self.role, &self.session) {
            (_, Some(r), Some(s)) => match &s.base {
                SessionBase::Role { session_name, .. } => format!("{}:{session_name}", r.id),
                _ => r.id.clone(),
            },
            (Some(u), _, _) => u.id.clone(),
            _ => self.account_id().to_string(),
        }
    }

    /// `aws:username` (IAM users only).
    pub fn user_name(&self) -> Option<&str> {
        self.user.as_ref().map(|u| u.name.as_str())
    }

    /// `aws:PrincipalType`.
    pub fn principal_type(&self) -> &'static str {
        match self.kind {
            SubjectKind::Anonymous => "Anonymous",
            SubjectKind::Root => "Account",
            SubjectKind::User if self.session.is_some() => "FederatedUser",
            SubjectKind::User => "User",
            SubjectKind::RoleSession => "AssumedRole",
        }
    }

    /// Identity-based policies, session policy and permissions boundary,
    /// from the snapshot the request started with.
    pub fn policies(&self) -> Policies {
        let st = &self.iam;
        let mut out = Policies::default();
        let managed = |arns: &[String], out: &mut Vec<Arc<Policy>>| {
            for a in arns {
                // A policy deleted since it was attached grants nothing.
                if let Some(p) = crate::iam::managed_policy(st, a) {
                    out.push(p);
                }
            }
        };
        if let Some(u) = &self.user {
            out.identity.extend(u.inline.iter().map(|(_, d)| d.parsed.clone()));
            managed(&u.attached, &mut out.identity);
            for g in st.groups_of(&u.account, &u.id) {
                out.identity.extend(g.inline.iter().map(|(_, d)| d.parsed.clone()));
                managed(&g.attached, &mut out.identity);
            }
            out.boundary = u.boundary.as_deref().map(|b| boundary(st, b));
        }
        if let Some(r) = &self.role {
            out.identity.extend(r.inline.iter().map(|(_, d)| d.parsed.clone()));
            managed(&r.attached, &mut out.identity);
            out.boundary = r.boundary.as_deref().map(|b| boundary(st, b));
        }
        if let Some(text) = self.session.as_ref().and_then(|s| s.policy.as_deref()) {
            // Checked when the session was made; one that no longer parses allows nothing.
            out.session = Some(Arc::new(
                tessera_policy::parse(text, tessera_policy::Kind::Session).unwrap_or_else(|_| deny_all()),
            ));
        }
        out
    }
}

/// A boundary that is missing allows nothing (fail closed).
fn boundary(st: &IamState, arn: &str) -> Arc<Policy> {
    crate::iam::managed_policy(st, arn).unwrap_or_else(|| Arc::new(deny_all()))
}

fn deny_all() -> Policy {
    Policy { version: tessera_policy::document::Version::V2012, id: None, statements: Vec::new() }
}

/// The session token of a request (header, or query for presigned URLs).
pub fn security_token(head: &RequestHead) -> Option<String> {
    if let Some(t) = head.headers.get("x-amz-security-token") {
        return Some(t.to_string());
    }
    // One parameter, not a whole parse (7% of a presigned GET's instructions).
    tessera_proto::router::query_param(&head.query, "X-Amz-Security-Token")
}

/// The claims of a session token, or AWS's error for a bad or expired one.
pub fn open_session(shared: &Shared, token: &str, now_unix: i64) -> Result<SessionClaims, S3Error> {
    SessionClaims::open(&shared.iam.keys, token, now_unix).map_err(|e| match e {
        TokenError::Invalid => S3Error::new(S3ErrorCode::InvalidToken),
        TokenError::Expired => S3Error::new(S3ErrorCode::ExpiredToken),
    })
}

/// The secret of `access_key`: a static identity's, an active IAM key's,
/// or the session's when a token came with the request (a token binds its
/// own key id only).
pub fn secret_for(shared: &Shared, iam: &IamState, session: Option<&SessionClaims>, access_key: &str) -> Option<String> {
    if let Some(s) = session {
        return (s.access_key == access_key).then(|| s.secret.clone());
    }
    if let Some(u) = shared.identities.load().get(access_key) {
        return Some(u.secret_key.clone());
    }
    iam.keys.get(access_key).filter(|k| k.active).map(|k| k.secret.clone())
}

/// The principal behind an authenticated access key.
pub fn principal_for(
    shared: &Shared,
    iam: Arc<IamState>,
    session: Option<SessionClaims>,
    access_key: &str,
) -> Result<Principal, S3Error> {
    let invalid = || S3Error::new(S3ErrorCode::InvalidAccessKeyId);
    let account_of = |id: &str| shared.identities.load().account(id).cloned().ok_or_else(invalid);
    if let Some(s) = session {
        let account = account_of(&s.account)?;
        let s = Arc::new(s);
        let mut p = match &s.base {
            SessionBase::Root => Principal::root(account, iam.clone()),
            SessionBase::User { user_id } => {
                let u = iam.user_by_id(user_id).cloned().ok_or_else(invalid)?;
                Principal::iam_user(account, u, iam.clone())
            }
            SessionBase::Role { role_id, session_name } => {
                // A role deleted (or re-created: a new id) ends its sessions.
                let role = iam.role_by_id(&account.user_id, role_id).cloned().ok_or_else(invalid)?;
                let facts = PrincipalFacts {
                    anonymous: false,
                    account: account.user_id.clone(),
                    arn: format!("arn:aws:sts::{}:assumed-role/{}/{session_name}", account.user_id, role.name),
                    role_arn: Some(role.arn()),
                    is_root: false,
                    aliases: Vec::new(),
                };
                Principal {
                    kind: SubjectKind::RoleSession,
                    account: Some(account),
                    facts,
                    user: None,
                    role: Some(role),
                    session: None,
                    iam: iam.clone(),
                }
            }
        };
        p.session = Some(s);
        return Ok(p);
    }
    if let Some(u) = shared.identities.load().get(access_key) {
        return Ok(Principal::root(u.clone(), iam));
    }
    let key = iam.keys.get(access_key).filter(|k| k.active).cloned().ok_or_else(invalid)?;
    let account = account_of(&key.account)?;
    match &key.user {
        None => Ok(Principal::root(account, iam)),
        Some(uid) => {
            let u = iam.user_by_id(uid).cloned().ok_or_else(invalid)?;
            Ok(Principal::iam_user(account, u, iam))
        }
    }
}
