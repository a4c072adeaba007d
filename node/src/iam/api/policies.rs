//! Customer managed policies and their versions; AWS managed policies
//! (built in) are listed and read here too.

use std::sync::Arc;

use tessera_policy::Kind;

use super::users::{check_name, check_path, encode_doc, parse_doc};
use super::xml::Out;
use super::{new_id, page, Call};
use crate::iam::managed;
use crate::iam::model::{
    self, ManagedPolicy, PolicyVersion, MAX_DESCRIPTION_BYTES, MAX_MANAGED_POLICY_CHARS, MAX_POLICIES_PER_ACCOUNT,
    MAX_POLICY_NAME_BYTES, MAX_POLICY_VERSIONS,
};
use crate::iam::store::IamState;
use crate::iam::{parse_arn, IamError};

pub async fn dispatch(c: &Call<'_>, action: &str) -> Result<Out, IamError> {
    match action {
        "CreatePolicy" => create_policy(c).await,
        "GetPolicy" => get_policy(c),
        "DeletePolicy" => delete_policy(c).await,
        "ListPolicies" => list_policies(c),
        "CreatePolicyVersion" => create_version(c).await,
        "GetPolicyVersion" => get_version(c),
        "DeletePolicyVersion" => delete_version(c).await,
        "ListPolicyVersions" => list_versions(c),
        "SetDefaultPolicyVersion" => set_default(c).await,
        "ListEntitiesForPolicy" => entities_for_policy(c),
        _ => Err(IamError::new("InvalidAction", 400, format!("Could not find operation {action}"))),
    }
}

fn no_such_policy(arn: &str) -> IamError {
    IamError::no_such_entity(format!("Policy {arn} does not exist or is not attachable."))
}

fn version_name(id: u32) -> String {
    format!("v{id}")
}

/// Users, groups and roles of `account` that have `arn` attached (or as boundary).
fn attachments(st: &IamState, account: &str, arn: &str) -> (Vec<String>, Vec<String>, Vec<String>, usize) {
    let users: Vec<String> =
        st.account_range(&st.users, account).filter(|u| u.attached.iter().any(|a| a == arn)).map(|u| u.name.clone()).collect();
    let groups: Vec<String> =
        st.account_range(&st.groups, account).filter(|g| g.attached.iter().any(|a| a == arn)).map(|g| g.name.clone()).collect();
    let roles: Vec<String> =
        st.account_range(&st.roles, account).filter(|r| r.attached.iter().any(|a| a == arn)).map(|r| r.name.clone()).collect();
    let boundaries = st.account_range(&st.users, account).filter(|u| u.boundary.as_deref() == Some(arn)).count()
        + st.account_range(&st.roles, account).filter(|r| r.boundary.as_deref() == Some(arn)).count();
    (users, groups, roles, boundaries)
}

fn policy_xml(o: &mut Out, p: &ManagedPolicy, st: &IamState) {
    let (u, g, r, b) = attachments(st, &p.account, &p.arn());
    o.elem("PolicyName", &p.name)
        .elem("DefaultVersionId", &version_name(p.default_version))
        .elem("PolicyId", &p.id)
        .elem("Path", &p.path)
        .elem("Arn", &p.arn())
        .elem("AttachmentCount", &(u.len() + g.len() + r.len()).to_string())
        .elem("PermissionsBoundaryUsageCount", &b.to_string())
        .bool("IsAttachable", true);
    if !p.description.is_empty() {
        o.elem("Description", &p.description);
    }
    o.date("CreateDate", p.created_ms).date("UpdateDate", p.updated_ms);
}

fn aws_policy_xml(o: &mut Out, p: &managed::AwsPolicy, st: &IamState, account: &str) {
    let (u, g, r, b) = attachments(st, account, &p.arn());
    o.elem("PolicyName", p.name)
        .elem("DefaultVersionId", "v1")
        .elem("PolicyId", p.id)
        .elem("Path", "/")
        .elem("Arn", &p.arn())
        .elem("AttachmentCount", &(u.len() + g.len() + r.len()).to_string())
        .elem("PermissionsBoundaryUsageCount", &b.to_string())
        .bool("IsAttachable", true)
        .date("CreateDate", 0)
        .date("UpdateDate", 0);
}

/// The caller's account's policy named by `PolicyArn`.
fn named_policy(c: &Call<'_>, st: &IamState) -> Result<Arc<ManagedPolicy>, IamError> {
    let account = c.account()?;
    let arn = c.required("PolicyArn")?;
    let (acct, path, name) = parse_arn(arn, "policy").ok_or_else(|| IamError::invalid_input(format!("ARN {arn} is not valid.")))?;
    if acct != account.user_id {
        return Err(no_such_policy(arn));
    }
    st.policy(acct, name).filter(|p| p.path == path).cloned().ok_or_else(|| no_such_policy(arn))
}

/// Whether `arn` applies to the caller (a new version would change its
/// own permissions).
fn applies_to_caller(c: &Call<'_>, st: &IamState, arn: &str) -> bool {
    let has = |l: &[String], b: &Option<String>| l.iter().any(|a| a == arn) || b.as_deref() == Some(arn);
    if let Some(u) = &c.principal.user {
        let me = st.user_by_id(&u.id).cloned().unwrap_or_else(|| u.clone());
        if has(&me.attached, &me.boundary) || st.groups_of(&me.account, &me.id).any(|g| g.attached.iter().any(|a| a == arn)) {
            return true;
        }
    }
    c.principal.role.as_ref().is_some_and(|r| has(&r.attached, &r.boundary))
}

async fn create_policy(c: &Call<'_>) -> Result<Out, IamError> {
    let account = c.account()?.user_id.clone();
    let name = c.required("PolicyName")?.to_string();
    check_name(&name, "policyName", MAX_POLICY_NAME_BYTES)?;
    let path = c.param("Path").unwrap_or("/").to_string();
    check_path(&path)?;
    let description = c.param("Description").unwrap_or("").to_string();
    if description.len() > MAX_DESCRIPTION_BYTES {
        return Err(IamError::validation("The description is too long."));
    }
    let doc = parse_doc(c.required("PolicyDocument")?, Kind::Identity, MAX_MANAGED_POLICY_CHARS)?;
    c.authorize("iam:CreatePolicy", &model::arn(&account, "policy", &path, &name))?;
    let id = new_id(c, "ANPA")?;
    let p = c
        .ctx
        .shared
        .iam
        .update(&c.ctx.shards, |t| {
            if t.state.policy(&account, &name).is_some() {
                return Err(IamError::already_exists(format!("A policy called {name} already exists. Duplicate names are not allowed.")));
            }
            if t.state.account_range(&t.state.policies, &account).count() >= MAX_POLICIES_PER_ACCOUNT {
                return Err(IamError::limit_exceeded(format!("Cannot exceed quota for PoliciesPerAccount: {MAX_POLICIES_PER_ACCOUNT}")));
            }
            let p = ManagedPolicy {
                account: account.clone(),
                name: name.clone(),
                path: path.clone(),
                id: id.clone(),
                created_ms: c.now_ms,
                updated_ms: c.now_ms,
                description: description.clone(),
                default_version: 1,
                next_version: 2,
                versions: vec![PolicyVersion { id: 1, doc: doc.clone(), created_ms: c.now_ms }],
            };
            t.put_policy(p.clone());
            Ok(p)
        })
        .await?;
    let st = c.state();
    let mut o = Out::default();
    o.open("Policy");
    policy_xml(&mut o, &p, &st);
    o.close("Policy");
    Ok(o)
}

fn get_policy(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let account = c.account()?.user_id.clone();
    let arn = c.required("PolicyArn")?;
    c.authorize("iam:GetPolicy", arn)?;
    let mut o = Out::default();
    o.open("Policy");
    match managed::by_arn(arn) {
        Some(p) => aws_policy_xml(&mut o, p, &st, &account),
        None => policy_xml(&mut o, &*named_policy(c, &st)?, &st),
    }
    o.close("Policy");
    Ok(o)
}

async fn delete_policy(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let p = named_policy(c, &st)?;
    let arn = p.arn();
    c.authorize("iam:DeletePolicy", &arn)?;
    let (account, name) = (p.account.clone(), p.name.clone());
    c.ctx
        .shared
        .iam
        .update(&c.ctx.shards, |t| {
            let p = t.state.policy(&account, &name).cloned().ok_or_else(|| no_such_policy(&arn))?;
            let (u, g, r, b) = attachments(&t.state, &account, &arn);
            if !u.is_empty() || !g.is_empty() || !r.is_empty() || b > 0 {
                return Err(IamError::delete_conflict("Cannot delete a policy attached to entities."));
            }
            if p.versions.len() > 1 {
                return Err(IamError::delete_conflict("This policy has more than one version. Before you delete a policy, you must delete the policy's versions. The default version is deleted with the policy."));
            }
            t.remove_policy(&account, &name);
            Ok(())
        })
        .await?;
    Ok(Out::default())
}

fn list_policies(c: &Call<'_>) -> Result<Out, IamError> {
    let account = c.account()?.user_id.clone();
    c.authorize("iam:ListPolicies", &model::arn(&account, "policy", "/", "*"))?;
    let st = c.state();
    let scope = c.param("Scope").unwrap_or("All");
    let prefix = c.param("PathPrefix").unwrap_or("/");
    let only_attached = c.param("OnlyAttached").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let (max, marker) = c.paging()?;
    // (sort key, rendered member)
    let mut items: Vec<(String, Out)> = Vec::new();
    if scope == "All" || scope == "AWS" {
        for p in managed::all() {
            let (u, g, r, _) = attachments(&st, &account, &p.arn());
            if prefix == "/" && (!only_attached || u.len() + g.len() + r.len() > 0) {
                let mut o = Out::default();
                aws_policy_xml(&mut o, p, &st, &account);
                items.push((p.name.to_ascii_lowercase(), o));
            }
        }
    }
    if scope == "All" || scope == "Local" {
        for p in st.account_range(&st.policies, &account).filter(|p| p.path.starts_with(prefix)) {
            let (u, g, r, _) = attachments(&st, &account, &p.arn());
            if !only_attached || u.len() + g.len() + r.len() > 0 {
                let mut o = Out::default();
                policy_xml(&mut o, p, &st);
                items.push((p.name.to_ascii_lowercase(), o));
            }
        }
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let (items, next) = page(items, |(k, _)| k.clone(), max, marker.as_deref());
    let mut o = Out::default();
    o.open("Policies");
    for (_, item) in items {
        o.open("member");
        o.raw(item);
        o.close("member");
    }
    o.close("Policies").truncation(next.as_deref());
    Ok(o)
}

fn version_xml(o: &mut Out, v: &PolicyVersion, default: u32, with_doc: bool) {
    if with_doc {
        o.elem("Document", &encode_doc(&v.doc.text));
    }
    o.elem("VersionId", &version_name(v.id)).bool("IsDefaultVersion", v.id == default).date("CreateDate", v.created_ms);
}

async fn create_version(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let p = named_policy(c, &st)?;
    let arn = p.arn();
    c.authorize("iam:CreatePolicyVersion", &arn)?;
    c.not_self(applies_to_caller(c, &st, &arn))?;
    let doc = parse_doc(c.required("PolicyDocument")?, Kind::Identity, MAX_MANAGED_POLICY_CHARS)?;
    let set_default = c.param("SetAsDefault").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let (account, name) = (p.account.clone(), p.name.clone());
    let (v, default) = c
        .ctx
        .shared
        .iam
        .update(&c.ctx.shards, |t| {
            let mut p = ManagedPolicy::clone(t.state.policy(&account, &name).ok_or_else(|| no_such_policy(&arn))?);
            if p.versions.len() >= MAX_POLICY_VERSIONS {
                return Err(IamError::limit_exceeded(format!(
                    "A managed policy can have up to {MAX_POLICY_VERSIONS} versions. Before you create a new version, you must delete an existing version."
                )));
            }
            let v = PolicyVersion { id: p.next_version, doc: doc.clone(), created_ms: c.now_ms };
            p.next_version += 1;
            if set_default {
                p.default_version = v.id;
            }
            p.updated_ms = c.now_ms;
            p.versions.push(v.clone());
            let default = p.default_version;
            t.put_policy(p);
            Ok((v, default))
        })
        .await?;
    let mut o = Out::default();
    o.open("PolicyVersion");
    version_xml(&mut o, &v, default, false);
    o.close("PolicyVersion");
    Ok(o)
}

fn requested_version(c: &Call<'_>) -> Result<u32, IamError> {
    let v = c.required("VersionId")?;
    v.strip_prefix('v')
        .and_then(|n| n.parse::<u32>().ok())
        .ok_or_else(|| IamError::validation(format!("The specified version id {v} is invalid.")))
}

fn get_version(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let arn = c.required("PolicyArn")?.to_string();
    c.authorize("iam:GetPolicyVersion", &arn)?;
    let id = requested_version(c)?;
    let mut o = Out::default();
    o.open("PolicyVersion");
    if let Some(p) = managed::by_arn(&arn) {
        if id != 1 {
            return Err(IamError::no_such_entity(format!("Policy {arn} version v{id} does not exist.")));
        }
        version_xml(&mut o, &PolicyVersion { id: 1, doc: p.doc.clone(), created_ms: 0 }, 1, true);
    } else {
        let p = named_policy(c, &st)?;
        let v = p
            .versions
            .iter()
            .find(|v| v.id == id)
            .ok_or_else(|| IamError::no_such_entity(format!("Policy {arn} version v{id} does not exist.")))?;
        version_xml(&mut o, v, p.default_version, true);
    }
    o.close("PolicyVersion");
    Ok(o)
}

async fn delete_version(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let p = named_policy(c, &st)?;
    let arn = p.arn();
    c.authorize("iam:DeletePolicyVersion", &arn)?;
    c.not_self(applies_to_caller(c, &st, &arn))?;
    let id = requested_version(c)?;
    let (account, name) = (p.account.clone(), p.name.clone());
    c.ctx
        .shared
        .iam
        .update(&c.ctx.shards, |t| {
            let mut p = ManagedPolicy::clone(t.state.policy(&account, &name).ok_or_else(|| no_such_policy(&arn))?);
            if !p.versions.iter().any(|v| v.id == id) {
                return Err(IamError::no_such_entity(format!("Policy {arn} version v{id} does not exist.")));
            }
            if p.default_version == id {
                return Err(IamError::delete_conflict("Cannot delete the default version of a policy."));
            }
            p.versions.retain(|v| v.id != id);
            t.put_policy(p);
            Ok(())
        })
        .await?;
    Ok(Out::default())
}

fn list_versions(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let arn = c.required("PolicyArn")?.to_string();
    c.authorize("iam:ListPolicyVersions", &arn)?;
    let mut o = Out::default();
    o.open("Versions");
    if let Some(p) = managed::by_arn(&arn) {
        o.open("member");
        version_xml(&mut o, &PolicyVersion { id: 1, doc: p.doc.clone(), created_ms: 0 }, 1, false);
        o.close("member");
    } else {
        let p = named_policy(c, &st)?;
        for v in p.versions.iter().rev() {
            o.open("member");
            version_xml(&mut o, v, p.default_version, false);
            o.close("member");
        }
    }
    o.close("Versions").bool("IsTruncated", false);
    Ok(o)
}

async fn set_default(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let p = named_policy(c, &st)?;
    let arn = p.arn();
    c.authorize("iam:SetDefaultPolicyVersion", &arn)?;
    c.not_self(applies_to_caller(c, &st, &arn))?;
    let id = requested_version(c)?;
    let (account, name) = (p.account.clone(), p.name.clone());
    c.ctx
        .shared
        .iam
        .update(&c.ctx.shards, |t| {
            let mut p = ManagedPolicy::clone(t.state.policy(&account, &name).ok_or_else(|| no_such_policy(&arn))?);
            if !p.versions.iter().any(|v| v.id == id) {
                return Err(IamError::no_such_entity(format!("Policy {arn} version v{id} does not exist.")));
            }
            p.default_version = id;
            p.updated_ms = c.now_ms;
            t.put_policy(p);
            Ok(())
        })
        .await?;
    Ok(Out::default())
}

fn entities_for_policy(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let account = c.account()?.user_id.clone();
    let arn = c.required("PolicyArn")?.to_string();
    c.authorize("iam:ListEntitiesForPolicy", &arn)?;
    if managed::by_arn(&arn).is_none() {
        named_policy(c, &st)?;
    }
    let (users, groups, roles, _) = attachments(&st, &account, &arn);
    let mut o = Out::default();
    let mut list = |element: &str, field: &str, id_field: &str, names: &[String], ids: &dyn Fn(&str) -> String| {
        o.open(element);
        for n in names {
            o.open("member").elem(field, n).elem(id_field, &ids(n)).close("member");
        }
        o.close(element);
    };
    list("PolicyUsers", "UserName", "UserId", &users, &|n| st.user(&account, n).map(|u| u.id.clone()).unwrap_or_default());
    list("PolicyGroups", "GroupName", "GroupId", &groups, &|n| st.group(&account, n).map(|g| g.id.clone()).unwrap_or_default());
    list("PolicyRoles", "RoleName", "RoleId", &roles, &|n| st.role(&account, n).map(|r| r.id.clone()).unwrap_or_default());
    o.bool("IsTruncated", false);
    Ok(o)
}
