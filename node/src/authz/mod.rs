//! The one authorization point of the node. After a request is
//! authenticated and before any of its data moves, [`authorize`] maps its
//! operation to IAM actions and resources (`actions`), gathers what AWS
//! evaluates (the principal's identity policies, session policy and
//! boundary, the bucket policy, the bucket or object ACL, the public
//! access block and ownership controls, the condition keys) and asks
//! `tessera_policy::authorize` for the decision. No handler decides access
//! by itself: those that must first load an object (whose owner, ACL and
//! tags decide) hand its facts back here ([`check_object`],
//! [`check_copy_source`], [`allowed_key`]) before anything of it is sent,
//! and [`finish`] refuses a response whose pending checks were skipped.

pub mod actions;
pub mod admin;
pub mod context;
pub mod principal;

use std::cell::{Cell, OnceCell, RefCell};
use std::net::IpAddr;

use tessera_policy::acl::{bucket_permission_for, object_permission_for};
use tessera_policy::authorize::AclCheck;
use tessera_policy::{Acl, Context, Decision, Policy, Subject, SubjectKind, Target};
use tessera_proto::router::Op;
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use crate::acl::Ownership;
use crate::buckets::BucketInfo;
use crate::request::Request;
use crate::server::Ctx;
use actions::{Check, On};
pub use principal::Principal;
use principal::Policies;

/// What of an object decides access to it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ObjectFacts<'a> {
    /// The version's ACL; `None`: the bucket owner's, private.
    pub acl: Option<&'a Acl>,
    pub tags: &'a [(String, String)],
}

/// A request's authorization state: who asks, the condition keys and
/// policies (built on first use), and the checks left to the handler.
pub struct Authz {
    pub principal: Principal,
    pub peer: IpAddr,
    pub now_unix: i64,
    cond: OnceCell<Context>,
    policies: OnceCell<Policies>,
    object_pending: RefCell<Vec<Check>>,
    source_pending: Cell<Option<&'static str>>,
    per_key: Cell<bool>,
    bypass_governance: Cell<bool>,
}

impl Authz {
    pub fn new(principal: Principal, peer: IpAddr, now_unix: i64) -> Self {
        Authz {
            principal,
            peer,
            now_unix,
            cond: OnceCell::new(),
            policies: OnceCell::new(),
            object_pending: RefCell::new(Vec::new()),
            source_pending: Cell::new(None),
            per_key: Cell::new(false),
            bypass_governance: Cell::new(false),
        }
    }

    /// Whether the request asked to bypass GOVERNANCE retention and is
    /// allowed `s3:BypassGovernanceRetention`.
    pub fn bypass_governance(&self) -> bool {
        self.bypass_governance.get()
    }

    fn policies(&self) -> &Policies {
        self.policies.get_or_init(|| self.principal.policies())
    }

    fn cond(&self, req: &Request<'_>) -> &Context {
        self.cond.get_or_init(|| {
            let facts = context::RequestFacts {
                head: req.head,
                routed: &req.routed,
                auth: req.auth.as_ref(),
                peer: self.peer,
                secure: req.conn.is_tls(),
                now_unix: self.now_unix,
            };
            context::build(&self.principal, &facts)
        })
    }

    /// Whether any policy that applies looks at existing object tags.
    fn policies_use_object_tags(&self, b: Option<&BucketInfo>) -> bool {
        let key = "s3:existingobjecttag/";
        let p = self.policies();
        p.identity.iter().chain(&p.session).chain(&p.boundary).any(|p| p.uses_condition_key_prefix(key))
            || b.and_then(|b| b.policy.as_ref()).is_some_and(|bp| bp.parsed.uses_condition_key_prefix(key))
    }
}

fn denied() -> S3Error {
    S3Error::new(S3ErrorCode::AccessDenied)
}

/// The resource ARN of a check.
fn resource_arn(on: On, bucket: Option<&BucketInfo>, key: &str) -> String {
    match (on, bucket) {
        (On::Object, Some(b)) => format!("arn:aws:s3:::{}/{key}", b.name),
        (On::Bucket, Some(b)) => format!("arn:aws:s3:::{}", b.name),
        _ => "arn:aws:s3:::*".to_string(),
    }
}

/// Decides one action. `bucket`: `None` for ListAllMyBuckets and for
/// CreateBucket's check (`created`: the name being created).
#[allow(clippy::too_many_arguments)]
fn decide(
    a: &Authz,
    req: &Request<'_>,
    check: Check,
    bucket: Option<&BucketInfo>,
    created: Option<&str>,
    key: &str,
    object: Option<ObjectFacts<'_>>,
) -> Decision {
    let p = &a.principal;
    // BucketOwnerEnforced disables ACLs: the bucket owner owns everything.
    let acls = bucket.filter(|b| b.ownership != Some(Ownership::BucketOwnerEnforced));
    let object_perm = acls.and_then(|_| (check.on == On::Object).then(|| object_permission_for(check.action)).flatten());
    let object_acl = object_perm.and_then(|_| object.and_then(|o| o.acl));
    // Whose resource it is: the object ACL's owner, else the bucket's
    // (an object without an ACL is its bucket owner's), else the caller's.
    let owner: &str = match (bucket, object_acl) {
        (_, Some(acl)) => &acl.owner_id,
        (Some(b), None) => &b.owner_id,
        (None, None) => p.account_id(),
    };
    let policy: Option<&Policy> = bucket.and_then(|b| b.policy.as_ref().map(|bp| &bp.parsed));
    // The common case, decided without building anything: an account's
    // root on its own resource, no bucket policy.
    if p.kind == SubjectKind::Root && owner == p.account_id() && policy.is_none() {
        return Decision::Allow;
    }
    // The ACL that may grant the action, and whether the bucket policy may
    // grant it (not on another account's objects).
    let acl_owned: Option<(Acl, tessera_policy::Permission)> = acls.and_then(|b| match object_perm {
        Some(perm) => Some((object_acl.cloned().unwrap_or_else(|| Acl::private(&b.owner_id, &b.owner_display)), perm)),
        None => bucket_permission_for(check.action).map(|perm| (b.effective_acl(), perm)),
    });
    let (ignore_public, restrict_public) = bucket.map_or((false, false), |b| {
        let pab = b.public_access_block.unwrap_or_default();
        (pab.ignore_public_acls, pab.restrict_public_buckets && b.policy.as_ref().is_some_and(|bp| bp.public))
    });
    let resource = match created {
        Some(name) => format!("arn:aws:s3:::{name}"),
        None => resource_arn(check.on, bucket, key),
    };
    let pols = a.policies();
    let identity: Vec<&Policy> = pols.identity.iter().map(|p| p.as_ref()).collect();
    let subject = Subject {
        kind: p.kind,
        facts: &p.facts,
        identity: &identity,
        session: pols.session.as_deref(),
        boundary: pols.boundary.as_deref(),
    };
    let policy_grants = bucket.is_none_or(|b| b.owner_id == owner);
    let target = Target {
        action: check.action,
        resource: &resource,
        owner,
        policy,
        policy_grants,
        acl: acl_owned.as_ref().map(|(acl, permission)| AclCheck { acl, permission: *permission }),
        ignore_public_acls: ignore_public,
        restrict_public,
        root_backstop: matches!(check.action, "s3:GetBucketPolicy" | "s3:PutBucketPolicy" | "s3:DeleteBucketPolicy"),
    };
    let base = a.cond(req);
    let tagged = object.and_then(|o| context::with_object_tags(base, o.tags));
    tessera_policy::authorize(&subject, &target, tagged.as_ref().unwrap_or(base))
}

/// Authorizes a routed S3 request before its handler runs. `b`: its
/// bucket (looked up already; `None` for ListBuckets and CreateBucket).
pub async fn authorize(ctx: &Ctx, req: &Request<'_>, b: Option<&BucketInfo>) -> S3Result<()> {
    let a = &req.authz;
    let versioned = req.routed.query.has("versionId");
    let plan = actions::plan(&req.routed.op, &req.head.headers, versioned);
    let key = req.key();
    let created = (req.routed.op == Op::CreateBucket).then(|| req.bucket());
    // Object tags for conditions on them are loaded only when a policy asks.
    let needs_tags = plan.now.iter().any(|c| c.on == On::Object) && a.policies_use_object_tags(b);
    let loaded = match (needs_tags, b) {
        (true, Some(b)) => {
            let sel = crate::s3::versions::requested(&req.routed.query).ok().flatten();
            crate::s3::get::read_version(ctx, b, key, sel).await.ok()
        }
        _ => None,
    };
    let facts = loaded.as_ref().map(|o| ObjectFacts { acl: o.meta.acl.as_ref(), tags: &o.meta.tags });
    for check in &plan.now {
        let f = if check.on == On::Object { facts } else { None };
        if !passes(*check, decide(a, req, *check, b, created, key, f)) {
            return Err(denied());
        }
    }
    *a.object_pending.borrow_mut() = plan.object;
    a.source_pending.set(plan.copy_source);
    a.per_key.set(plan.per_key);
    let bypass_asked = req
        .header("x-amz-bypass-governance-retention")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if bypass_asked && matches!(req.routed.op, Op::DeleteObject | Op::DeleteObjects | Op::PutObjectRetention) {
        let check = Check { action: "s3:BypassGovernanceRetention", on: On::Object };
        a.bypass_governance.set(decide(a, req, check, b, None, key, facts).allowed());
    }
    Ok(())
}

/// POST Object: the form's writer may write `key` with what the form's
/// fields ask (`h`: them as the headers of a PUT would carry them).
pub fn authorize_post(req: &Request<'_>, b: &BucketInfo, key: &str, h: &tessera_proto::Headers) -> S3Result<()> {
    let mut checks = Vec::new();
    actions::write_checks(h, &mut checks);
    for check in checks {
        if !passes(check, decide(&req.authz, req, check, Some(b), None, key, None)) {
            return Err(denied());
        }
    }
    Ok(())
}

/// Whether a check made before a write lets it go on. The ACL that the
/// headers (or form fields) of a write of a new object ask for is granted
/// with `s3:PutObject`: S3's documented cross-account upload policies
/// grant only that, conditioned on `s3:x-amz-acl` / `s3:x-amz-grant-*`,
/// and a bucket ACL's WRITE lets whom it names write objects that they
/// then own, ACL included. So on a write `s3:PutObjectAcl` counts only
/// when a policy denies it explicitly. (PutObjectAcl on an existing
/// object is an object check made by its handler, not this.)
fn passes(check: Check, d: Decision) -> bool {
    d.allowed() || (check.action == "s3:PutObjectAcl" && d != Decision::ExplicitDeny)
}

/// The request's object actions, now that the handler loaded the object.
pub fn check_object(req: &Request<'_>, b: &BucketInfo, facts: ObjectFacts<'_>) -> S3Result<()> {
    let a = &req.authz;
    let pending = std::mem::take(&mut *a.object_pending.borrow_mut());
    for check in pending {
        if !decide(a, req, check, Some(b), None, req.key(), Some(facts)).allowed() {
            return Err(denied());
        }
    }
    Ok(())
}

/// For an object (or version) that does not exist: `Ok` when the requester
/// may learn that, else AccessDenied. S3's rule: the 404 goes to who may
/// list the bucket under the key's name (`s3:ListBucket`), whether or not
/// anything would have let them read it; a missing object has no ACL to
/// grant the read, so requiring the read too would answer 403 to an
/// anonymous reader of a public-read bucket, where S3 answers 404. An
/// explicit deny of the read still refuses.
pub fn check_missing(req: &Request<'_>, b: &BucketInfo) -> S3Result<()> {
    let a = &req.authz;
    let pending = std::mem::take(&mut *a.object_pending.borrow_mut());
    let key = req.key();
    for check in pending {
        if decide(a, req, check, Some(b), None, key, None) == Decision::ExplicitDeny {
            return Err(denied());
        }
    }
    list_allowed(req, b, key)
}

/// `s3:ListBucket` on `b` with `s3:prefix` = `key`.
fn list_allowed(req: &Request<'_>, b: &BucketInfo, key: &str) -> S3Result<()> {
    let a = &req.authz;
    let p = &a.principal;
    if p.kind == SubjectKind::Root && p.account_id() == b.owner_id && b.policy.is_none() {
        return Ok(());
    }
    // The list check sees the key as the prefix asked for.
    let mut cond = a.cond(req).clone();
    cond.set("s3:prefix", vec![key.to_string()]);
    let scoped = Authz::new(a.principal.clone(), a.peer, a.now_unix);
    let _ = scoped.cond.set(cond);
    let check = Check { action: "s3:ListBucket", on: On::Bucket };
    if decide(&scoped, req, check, Some(b), None, key, None).allowed() {
        Ok(())
    } else {
        Err(denied())
    }
}

/// The source of CopyObject / UploadPartCopy, loaded by the handler:
/// `s3:GetObject` (`s3:GetObjectVersion` for a named version) on it.
pub fn check_copy_source(req: &Request<'_>, src: &BucketInfo, key: &str, versioned: bool, facts: ObjectFacts<'_>) -> S3Result<()> {
    let a = &req.authz;
    let Some(action) = a.source_pending.take() else { return Ok(()) };
    let action = if versioned { "s3:GetObjectVersion" } else { action };
    let check = Check { action, on: On::Object };
    if decide(a, req, check, Some(src), None, key, Some(facts)).allowed() {
        Ok(())
    } else {
        Err(denied())
    }
}

/// A copy source that does not exist: its 404 only for who may read it.
pub fn copy_source_missing(req: &Request<'_>, src: &BucketInfo, key: &str, versioned: bool, err: S3Error) -> S3Error {
    let a = &req.authz;
    let Some(action) = a.source_pending.take() else { return err };
    let action = if versioned { "s3:GetObjectVersion" } else { action };
    let check = Check { action, on: On::Object };
    if decide(a, req, check, Some(src), None, key, None).allowed() {
        err
    } else {
        denied()
    }
}

/// DeleteObjects: whether one entry may be deleted.
pub fn allowed_key(req: &Request<'_>, b: &BucketInfo, key: &str, versioned: bool) -> bool {
    let action = if versioned { "s3:DeleteObjectVersion" } else { "s3:DeleteObject" };
    decide(&req.authz, req, Check { action, on: On::Object }, Some(b), None, key, None).allowed()
}

/// Called once the handler is done: a response whose object checks were
/// never made is refused (fail closed); a not-found answer the requester
/// may not see becomes AccessDenied.
pub fn finish(req: &Request<'_>, b: Option<&BucketInfo>, result: S3Result<crate::response::Response>) -> S3Result<crate::response::Response> {
    let a = &req.authz;
    let object_left = !a.object_pending.borrow().is_empty();
    let source_left = a.source_pending.get().is_some();
    a.per_key.set(false);
    if !object_left && !source_left {
        return result;
    }
    match (result, b) {
        (Err(e), Some(b)) if object_left && matches!(e.code, S3ErrorCode::NoSuchKey | S3ErrorCode::NoSuchVersion) => {
            check_missing(req, b).map(|_| ()).and(Err(e))
        }
        // An error before the object was reached (a bad argument) reveals nothing of it.
        (Err(e), _) if !matches!(e.code, S3ErrorCode::NoSuchKey | S3ErrorCode::NoSuchVersion) => Err(e),
        (r, _) => {
            if r.is_ok() {
                tracing::error!(op = req.routed.op.name(), "object authorization was skipped; refused");
            }
            Err(denied())
        }
    }
}
