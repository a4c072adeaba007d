//! The IAM and STS APIs in the AWS query protocol, on the S3 endpoint: a
//! POST to `/` with a form body (`Action=...&Version=...`), signed with
//! SigV4 for service `iam` or `sts` (the credential scope tells them from
//! S3), answered in XML. Every action is authorized like an S3 one: the
//! caller's identity policies decide, the account's root may do
//! everything in its account, and nobody but the root changes the
//! policies that apply to itself.

mod groups;
mod inline;
mod policies;
mod roles;
mod users;
pub mod xml;

use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;

use ring::digest;
use tessera_policy::{Context, Decision, Subject, SubjectKind, Target};
use tessera_proto::http::{Method, RequestHead};
use tessera_proto::router::Query;
use tessera_proto::sigv4::{self, SigRequest};
use tessera_proto::{S3Error, S3ErrorCode};

use super::store::IamState;
use super::IamError;
use crate::authz::principal::{self, Principal};
use crate::body::BodyReader;
use crate::conn::Conn;
use crate::identity::User;
use crate::response::Response;
use crate::server::Ctx;
use xml::Out;

/// Largest form body of an IAM or STS request (policy documents are at
/// most 10 KiB, three times that form-encoded).
pub const MAX_QUERY_BODY_BYTES: usize = 256 * 1024;
/// Most items a List action returns per page.
pub const MAX_ITEMS: usize = 1000;
pub const DEFAULT_MAX_ITEMS: usize = 100;

/// Whether `head` is an IAM or STS request: a POST to the service root
/// (not a virtual-hosted bucket) signed for `iam`/`sts`, or an unsigned
/// form post there (AssumeRoleWithWebIdentity).
pub fn is_query_api(ctx: &Ctx, head: &RequestHead) -> bool {
    if head.method != Method::Post || !(head.path == "/" || head.path.is_empty()) {
        return false;
    }
    let host = head.headers.get("host").unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h).to_ascii_lowercase();
    if ctx.shared.config.vhost_domains.iter().any(|d| host.ends_with(&format!(".{d}"))) {
        return false;
    }
    if sigv4::query_api_service(&head.headers).is_some() {
        return true;
    }
    !head.headers.contains("authorization")
        && head
            .headers
            .get("content-type")
            .is_some_and(|c| c.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"))
}

/// One IAM or STS call being served.
pub struct Call<'a> {
    pub ctx: &'a Ctx,
    pub principal: Principal,
    pub params: Query,
    pub cond: Context,
    pub request_id: String,
    pub now_ms: i64,
}

impl Call<'_> {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name)
    }

    /// A required parameter, as AWS's validation reports a missing one.
    pub fn required(&self, name: &str) -> Result<&str, IamError> {
        self.params.get(name).ok_or_else(|| {
            IamError::validation(format!("1 validation error detected: Value null at '{name}' failed to satisfy constraint: Member must not be null"))
        })
    }

    /// The caller's account; anonymous callers are refused.
    pub fn account(&self) -> Result<&Arc<User>, IamError> {
        self.principal.account.as_ref().ok_or_else(|| IamError::access_denied("Anonymous requests are not allowed."))
    }

    pub fn state(&self) -> Arc<IamState> {
        self.ctx.shared.iam.snapshot()
    }

    /// Authorizes `action` on the IAM resource `resource` of the caller's
    /// account.
    pub fn authorize(&self, action: &str, resource: &str) -> Result<(), IamError> {
        let account = self.account()?;
        if decide(&self.principal, &self.cond, action, resource, &account.user_id, None) == Decision::Allow {
            return Ok(());
        }
        let who = &self.principal.facts.arn;
        Err(IamError::access_denied(format!(
            "User: {who} is not authorized to perform: {action} on resource: {resource}"
        )))
    }

    /// Refuses a change, by anyone but the account's root, to the policies
    /// that apply to the caller itself (no privilege escalation through IAM).
    pub fn not_self(&self, touches_self: bool) -> Result<(), IamError> {
        if touches_self && self.principal.kind != SubjectKind::Root {
            return Err(IamError::access_denied("A principal cannot change the policies that apply to itself."));
        }
        Ok(())
    }

    /// `MaxItems` and `Marker` of a List action.
    pub fn paging(&self) -> Result<(usize, Option<String>), IamError> {
        let max = match self.param("MaxItems") {
            None => DEFAULT_MAX_ITEMS,
            Some(v) => v.parse::<usize>().ok().filter(|n| (1..=MAX_ITEMS).contains(n)).ok_or_else(|| {
                IamError::validation("MaxItems must be an integer between 1 and 1000")
            })?,
        };
        Ok((max, self.param("Marker").map(str::to_string)))
    }
}

/// Decides `action` on `resource`, owned by `owner`, with an optional
/// resource policy (a role's trust policy).
pub fn decide(
    p: &Principal,
    cond: &Context,
    action: &str,
    resource: &str,
    owner: &str,
    resource_policy: Option<&tessera_policy::Policy>,
) -> Decision {
    if p.kind == SubjectKind::Root && p.account_id() == owner && resource_policy.is_none() {
        return Decision::Allow;
    }
    let pols = p.policies();
    let identity: Vec<&tessera_policy::Policy> = pols.identity.iter().map(|x| x.as_ref()).collect();
    let subject = Subject {
        kind: p.kind,
        facts: &p.facts,
        identity: &identity,
        session: pols.session.as_deref(),
        boundary: pols.boundary.as_deref(),
    };
    let target = Target {
        action,
        resource,
        owner,
        policy: resource_policy,
        policy_grants: true,
        acl: None,
        ignore_public_acls: false,
        restrict_public: false,
        root_backstop: false,
    };
    tessera_policy::authorize(&subject, &target, cond)
}

/// Paginates `items` (already in order) after `marker` (the last name of
/// the previous page): `(page, next marker when truncated)`.
pub fn page<T>(items: Vec<T>, key: impl Fn(&T) -> String, max: usize, marker: Option<&str>) -> (Vec<T>, Option<String>) {
    let mut items: Vec<T> = match marker {
        Some(m) => items.into_iter().filter(|i| key(i).as_str() > m).collect(),
        None => items,
    };
    if items.len() > max {
        items.truncate(max);
        let next = items.last().map(&key);
        (items, next)
    } else {
        (items, None)
    }
}

fn auth_error(e: S3Error) -> IamError {
    match e.code {
        S3ErrorCode::InvalidAccessKeyId | S3ErrorCode::InvalidToken => {
            IamError::new("InvalidClientTokenId", 403, "The security token included in the request is invalid.")
        }
        S3ErrorCode::ExpiredToken => IamError::new("ExpiredToken", 400, "The security token included in the request is expired"),
        S3ErrorCode::SignatureDoesNotMatch => IamError::new("SignatureDoesNotMatch", 403, e.message),
        S3ErrorCode::RequestTimeTooSkewed => IamError::new("RequestExpired", 400, "Request has expired."),
        S3ErrorCode::AccessDenied => IamError::new("AccessDenied", 403, e.message),
        _ => IamError::new("IncompleteSignature", 400, e.message),
    }
}

async fn read_body(head: &RequestHead, conn: &mut Conn) -> Result<Vec<u8>, IamError> {
    let mut body = BodyReader::new(head, None).map_err(|e| IamError::validation(e.message))?;
    if body.announced_len().is_some_and(|n| n > MAX_QUERY_BODY_BYTES as u64) {
        return Err(IamError::validation("The request body is too large."));
    }
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = body.read(conn, &mut chunk).await.map_err(|e| IamError::validation(e.message))?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > MAX_QUERY_BODY_BYTES {
            return Err(IamError::validation("The request body is too large."));
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// Authenticates the call (the body's hash is the signed payload hash).
fn authenticate(ctx: &Ctx, head: &RequestHead, body: &[u8], now: i64) -> Result<(Principal, &'static str), IamError> {
    let shared = &ctx.shared;
    let iam = shared.iam.snapshot();
    if !head.headers.contains("authorization") {
        return Ok((Principal::anonymous(iam), "sts"));
    }
    let hash = hex::encode(digest::digest(&digest::SHA256, body));
    let session = match principal::security_token(head) {
        Some(t) => Some(principal::open_session(shared, &t, now).map_err(auth_error)?),
        None => None,
    };
    let sig = SigRequest { method: &head.method_raw, path: &head.path, query: &head.query, headers: &head.headers };
    // IAM is global (signed for us-east-1, or an empty region by boto3 with `region_name=''`).
    let regions = [shared.config.region.as_str(), sigv4::DEFAULT_REGION, ""];
    let secret_for = |ak: &str| principal::secret_for(shared, &iam, session.as_ref(), ak);
    let (auth, service) =
        sigv4::authenticate_query_api(&sig, &hash, &regions, now, &secret_for).map_err(auth_error)?;
    let p = principal::principal_for(shared, iam, session, &auth.access_key).map_err(auth_error)?;
    Ok((p, service))
}

/// Serves one IAM/STS request; the bool says whether its body was read
/// to the end (the connection can carry another request).
pub async fn serve(ctx: &Rc<Ctx>, head: &RequestHead, conn: &mut Conn, request_id: String, peer: IpAddr) -> (Response, bool) {
    let now = tessera_proto::time::now_unix_secs();
    let service = sigv4::query_api_service(&head.headers).unwrap_or("sts");
    let body = match read_body(head, conn).await {
        Ok(b) => b,
        Err(e) => return (xml::error(service, &e, &request_id), false),
    };
    let secure = conn.is_tls();
    let result = async {
        // In a cluster, a key or session created a moment ago through
        // another node may not be applied here yet: looked up again at the
        // leader's read index.
        let (principal, service) = match authenticate(ctx, head, &body, now) {
            Err(e) if e.code == "InvalidClientTokenId" && ctx.shared.iam.catch_up().await => {
                authenticate(ctx, head, &body, now)?
            }
            r => r?,
        };
        let mut params = Query::parse(&head.query).map_err(|_| IamError::validation("Malformed query string"))?;
        let form = std::str::from_utf8(&body).map_err(|_| IamError::validation("The form body is not UTF-8"))?;
        let form = Query::parse(form).map_err(|_| IamError::validation("Malformed form body"))?;
        params.extend(form);
        let facts = crate::authz::context::RequestFacts {
            head,
            routed: &tessera_proto::router::Routed {
                bucket: None,
                vhost: false,
                key: None,
                op: tessera_proto::router::Op::ListBuckets,
                query: Query::default(),
            },
            auth: None,
            peer,
            secure,
            now_unix: now,
        };
        let cond = crate::authz::context::build(&principal, &facts);
        let call = Call { ctx, principal, params, cond, request_id: request_id.clone(), now_ms: now.saturating_mul(1000) };
        let action = call.required("Action")?.to_string();
        let before = ctx.shared.iam.snapshot();
        let dispatch = || async {
            match service {
                "iam" => dispatch_iam(&call, &action).await,
                _ => super::sts::dispatch(&call, &action).await,
            }
        };
        let mut out = dispatch().await;
        // In a cluster a refusal may come from a snapshot behind the leader's
        // (a user created a moment ago through another node): the call is
        // answered again once this node has applied the leader's read index,
        // if that changed anything. A call that changed something answered
        // after its write (a change is checked against the guard when it
        // commits, `iam::cluster`), so only refusals (4xx) need this.
        let refused = matches!(&out, Err(e) if e.status < 500);
        if refused && ctx.shared.iam.catch_up().await && !Arc::ptr_eq(&before, &ctx.shared.iam.snapshot()) {
            out = dispatch().await;
        }
        let out = out?;
        Ok::<_, IamError>((service, action, out))
    }
    .await;
    match result {
        Ok((service, action, out)) => (xml::success(service, &action, out, &request_id), true),
        Err(e) => {
            if e.status >= 500 {
                tracing::error!(request_id, "{}: {}", e.code, e.message);
            }
            (xml::error(service, &e, &request_id), true)
        }
    }
}

async fn dispatch_iam(c: &Call<'_>, action: &str) -> Result<Out, IamError> {
    match action {
        "CreateUser" | "GetUser" | "UpdateUser" | "DeleteUser" | "ListUsers" | "TagUser" | "UntagUser" | "ListUserTags"
        | "CreateAccessKey" | "UpdateAccessKey" | "DeleteAccessKey" | "ListAccessKeys" | "GetAccessKeyLastUsed"
        | "PutUserPolicy" | "GetUserPolicy" | "DeleteUserPolicy" | "ListUserPolicies" | "AttachUserPolicy"
        | "DetachUserPolicy" | "ListAttachedUserPolicies" | "PutUserPermissionsBoundary"
        | "DeleteUserPermissionsBoundary" | "GetAccountSummary" => users::dispatch(c, action).await,
        "CreateGroup" | "GetGroup" | "UpdateGroup" | "DeleteGroup" | "ListGroups" | "AddUserToGroup"
        | "RemoveUserFromGroup" | "ListGroupsForUser" | "PutGroupPolicy" | "GetGroupPolicy" | "DeleteGroupPolicy"
        | "ListGroupPolicies" | "AttachGroupPolicy" | "DetachGroupPolicy" | "ListAttachedGroupPolicies" => {
            groups::dispatch(c, action).await
        }
        "CreatePolicy" | "GetPolicy" | "DeletePolicy" | "ListPolicies" | "CreatePolicyVersion" | "GetPolicyVersion"
        | "DeletePolicyVersion" | "ListPolicyVersions" | "SetDefaultPolicyVersion" | "ListEntitiesForPolicy" => {
            policies::dispatch(c, action).await
        }
        "CreateRole" | "GetRole" | "UpdateRole" | "UpdateRoleDescription" | "UpdateAssumeRolePolicy" | "DeleteRole"
        | "ListRoles" | "PutRolePolicy" | "GetRolePolicy" | "DeleteRolePolicy" | "ListRolePolicies"
        | "AttachRolePolicy" | "DetachRolePolicy" | "ListAttachedRolePolicies" | "PutRolePermissionsBoundary"
        | "DeleteRolePermissionsBoundary" | "TagRole" | "UntagRole" | "ListRoleTags" => roles::dispatch(c, action).await,
        "ListOpenIDConnectProviders" => {
            c.account()?;
            let mut o = Out::default();
            o.open("OpenIDConnectProviderList").close("OpenIDConnectProviderList");
            Ok(o)
        }
        _ => Err(IamError::new("InvalidAction", 400, format!("Could not find operation {action} for version 2010-05-08"))),
    }
}

/// Random characters from `alphabet` (ids, access keys, secrets).
pub fn random_token(c: &Call<'_>, n: usize, alphabet: &[u8]) -> Result<String, IamError> {
    let mut raw = vec![0u8; n];
    c.ctx.shared.iam.keys.random(&mut raw).map_err(IamError::internal)?;
    Ok(raw.iter().map(|b| alphabet[*b as usize % alphabet.len()] as char).collect())
}

pub const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
pub const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// A unique id with AWS's prefix for the kind (`AIDA` users, `AGPA`
/// groups, `AROA` roles, `ANPA` policies, `AKIA` access keys).
pub fn new_id(c: &Call<'_>, prefix: &str) -> Result<String, IamError> {
    Ok(format!("{prefix}{}", random_token(c, 17, ID_ALPHABET)?))
}
