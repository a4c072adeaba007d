//! IAM roles: trust policies (who may assume them), permission policies,
//! boundaries and tags.

use std::sync::Arc;

use tessera_policy::Kind;

use super::users::{
    attachable, attached_xml, check_name, check_path, edit_attached, encode_doc, members, parse_doc,
    tag_params, tags_xml,
};
use super::inline::{self, Holder};
use super::xml::Out;
use super::{new_id, page, Call};
use crate::iam::model::{
    self, IamRole, DEFAULT_MAX_SESSION_SECS, MAX_DESCRIPTION_BYTES, MAX_MAX_SESSION_SECS,
    MAX_NAME_BYTES, MAX_ROLES_PER_ACCOUNT, MAX_TAGS,
    MAX_TRUST_POLICY_CHARS, MIN_SESSION_SECS,
};
use crate::iam::store::IamState;
use crate::iam::IamError;

pub async fn dispatch(c: &Call<'_>, action: &str) -> Result<Out, IamError> {
    match action {
        "CreateRole" => create_role(c).await,
        "GetRole" => get_role(c),
        "UpdateRole" | "UpdateRoleDescription" => update_role(c, action).await,
        "UpdateAssumeRolePolicy" => update_trust(c).await,
        "DeleteRole" => delete_role(c).await,
        "ListRoles" => list_roles(c),
        "PutRolePolicy" => put_role_policy(c).await,
        "GetRolePolicy" => get_role_policy(c),
        "DeleteRolePolicy" => delete_role_policy(c).await,
        "ListRolePolicies" => list_role_policies(c),
        "AttachRolePolicy" => attach_role_policy(c, true).await,
        "DetachRolePolicy" => attach_role_policy(c, false).await,
        "ListAttachedRolePolicies" => list_attached_role_policies(c),
        "PutRolePermissionsBoundary" => role_boundary(c, true).await,
        "DeleteRolePermissionsBoundary" => role_boundary(c, false).await,
        "TagRole" => tag_role(c, true).await,
        "UntagRole" => tag_role(c, false).await,
        "ListRoleTags" => list_role_tags(c),
        _ => Err(IamError::new("InvalidAction", 400, format!("Could not find operation {action}"))),
    }
}

fn no_such_role(name: &str) -> IamError {
    IamError::no_such_entity(format!("The role with name {name} cannot be found."))
}

fn role_xml(o: &mut Out, r: &IamRole, full: bool) {
    o.elem("Path", &r.path).elem("RoleName", &r.name).elem("RoleId", &r.id).elem("Arn", &r.arn()).date("CreateDate", r.created_ms);
    o.elem("AssumeRolePolicyDocument", &encode_doc(&r.trust.text));
    if !r.description.is_empty() {
        o.elem("Description", &r.description);
    }
    o.elem("MaxSessionDuration", &r.max_session_secs.to_string());
    if let Some(b) = &r.boundary {
        o.open("PermissionsBoundary")
            .elem("PermissionsBoundaryType", "Policy")
            .elem("PermissionsBoundaryArn", b)
            .close("PermissionsBoundary");
    }
    if full && !r.tags.is_empty() {
        tags_xml(o, &r.tags);
    }
}

fn named_role(c: &Call<'_>, st: &IamState) -> Result<Arc<IamRole>, IamError> {
    let account = c.account()?;
    let name = c.required("RoleName")?;
    st.role(&account.user_id, name).cloned().ok_or_else(|| no_such_role(name))
}

/// Whether the caller is a session of `r` (a change to its policies would
/// change the caller's own).
fn is_self(c: &Call<'_>, r: &IamRole) -> bool {
    c.principal.role.as_ref().is_some_and(|me| me.id == r.id)
}

fn session_secs(c: &Call<'_>) -> Result<Option<u32>, IamError> {
    match c.param("MaxSessionDuration") {
        None => Ok(None),
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (MIN_SESSION_SECS..=MAX_MAX_SESSION_SECS).contains(n))
            .map(Some)
            .ok_or_else(|| IamError::validation(format!("MaxSessionDuration must be between {MIN_SESSION_SECS} and {MAX_MAX_SESSION_SECS}"))),
    }
}

async fn create_role(c: &Call<'_>) -> Result<Out, IamError> {
    let account = c.account()?.user_id.clone();
    let name = c.required("RoleName")?.to_string();
    check_name(&name, "roleName", MAX_NAME_BYTES)?;
    let path = c.param("Path").unwrap_or("/").to_string();
    check_path(&path)?;
    let trust = parse_doc(c.required("AssumeRolePolicyDocument")?, Kind::Trust, MAX_TRUST_POLICY_CHARS)?;
    let description = c.param("Description").unwrap_or("").to_string();
    if description.len() > MAX_DESCRIPTION_BYTES {
        return Err(IamError::validation("The description is too long."));
    }
    let max_session_secs = session_secs(c)?.unwrap_or(DEFAULT_MAX_SESSION_SECS);
    let tags = tag_params(c)?;
    let boundary = c.param("PermissionsBoundary").map(str::to_string);
    c.authorize("iam:CreateRole", &model::arn(&account, "role", &path, &name))?;
    let id = new_id(c, "AROA")?;
    let r = c
        .ctx
        .shared
        .iam
        .update(&c.ctx.shards, |t| {
            if t.state.role(&account, &name).is_some() {
                return Err(IamError::already_exists(format!("Role with name {name} already exists.")));
            }
            if t.state.account_range(&t.state.roles, &account).count() >= MAX_ROLES_PER_ACCOUNT {
                return Err(IamError::limit_exceeded(format!("Cannot exceed quota for RolesPerAccount: {MAX_ROLES_PER_ACCOUNT}")));
            }
            if let Some(b) = &boundary {
                attachable(&t.state, b)?;
            }
            let r = IamRole {
                account: account.clone(),
                name: name.clone(),
                path: path.clone(),
                id: id.clone(),
                created_ms: c.now_ms,
                trust: trust.clone(),
                description: description.clone(),
                max_session_secs,
                inline: Vec::new(),
                attached: Vec::new(),
                boundary: boundary.clone(),
                tags: tags.clone(),
            };
            t.put_role(r.clone());
            Ok(r)
        })
        .await?;
    let mut o = Out::default();
    o.open("Role");
    role_xml(&mut o, &r, true);
    o.close("Role");
    Ok(o)
}

fn get_role(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let r = named_role(c, &st)?;
    c.authorize("iam:GetRole", &r.arn())?;
    let mut o = Out::default();
    o.open("Role");
    role_xml(&mut o, &r, true);
    o.close("Role");
    Ok(o)
}

/// Applies `f` to the named role, as one change.
async fn edit_role(c: &Call<'_>, r: &IamRole, mut f: impl FnMut(&mut IamRole, &IamState) -> Result<(), IamError>) -> Result<(), IamError> {
    let (account, name) = (r.account.clone(), r.name.clone());
    c.ctx
        .shared
        .iam
        .update(&c.ctx.shards, |t| {
            let mut r = IamRole::clone(t.state.role(&account, &name).ok_or_else(|| no_such_role(&name))?);
            f(&mut r, &t.state)?;
            t.put_role(r);
            Ok(())
        })
        .await
}

async fn update_role(c: &Call<'_>, action: &str) -> Result<Out, IamError> {
    let st = c.state();
    let r = named_role(c, &st)?;
    c.authorize(&format!("iam:{action}"), &r.arn())?;
    let description = c.param("Description").map(str::to_string);
    if description.as_ref().is_some_and(|d| d.len() > MAX_DESCRIPTION_BYTES) {
        return Err(IamError::validation("The description is too long."));
    }
    let secs = session_secs(c)?;
    let updated = description.clone();
    edit_role(c, &r, |r, _| {
        if let Some(d) = updated.clone() {
            r.description = d;
        }
        if let Some(s) = secs {
            r.max_session_secs = s;
        }
        Ok(())
    })
    .await?;
    let mut o = Out::default();
    if action == "UpdateRoleDescription" {
        let st = c.state();
        let r = named_role(c, &st)?;
        o.open("Role");
        role_xml(&mut o, &r, true);
        o.close("Role");
    }
    Ok(o)
}

async fn update_trust(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let r = named_role(c, &st)?;
    let trust = parse_doc(c.required("PolicyDocument")?, Kind::Trust, MAX_TRUST_POLICY_CHARS)?;
    c.authorize("iam:UpdateAssumeRolePolicy", &r.arn())?;
    c.not_self(is_self(c, &r))?;
    edit_role(c, &r, |r, _| {
        r.trust = trust.clone();
        Ok(())
    })
    .await?;
    Ok(Out::default())
}

async fn delete_role(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let r = named_role(c, &st)?;
    c.authorize("iam:DeleteRole", &r.arn())?;
    let (account, name) = (r.account.clone(), r.name.clone());
    c.ctx
        .shared
        .iam
        .update(&c.ctx.shards, |t| {
            let r = t.state.role(&account, &name).cloned().ok_or_else(|| no_such_role(&name))?;
            if !r.inline.is_empty() || !r.attached.is_empty() {
                return Err(IamError::delete_conflict("Cannot delete entity, must delete policies first."));
            }
            t.remove_role(&account, &name);
            Ok(())
        })
        .await?;
    Ok(Out::default())
}

fn list_roles(c: &Call<'_>) -> Result<Out, IamError> {
    let account = c.account()?.user_id.clone();
    c.authorize("iam:ListRoles", &model::arn(&account, "role", "/", "*"))?;
    let st = c.state();
    let prefix = c.param("PathPrefix").unwrap_or("/");
    let (max, marker) = c.paging()?;
    let roles: Vec<Arc<IamRole>> = st.account_range(&st.roles, &account).filter(|r| r.path.starts_with(prefix)).cloned().collect();
    let (roles, next) = page(roles, |r| r.name.to_ascii_lowercase(), max, marker.as_deref());
    let mut o = Out::default();
    o.open("Roles");
    for r in &roles {
        o.open("member");
        role_xml(&mut o, r, false);
        o.close("member");
    }
    o.close("Roles").truncation(next.as_deref());
    Ok(o)
}

async fn put_role_policy(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let r = named_role(c, &st)?;
    let (name, doc) = inline::put_args(c, Holder::Role)?;
    c.authorize("iam:PutRolePolicy", &r.arn())?;
    c.not_self(is_self(c, &r))?;
    let rname = r.name.clone();
    edit_role(c, &r, |r, _| inline::put(&mut r.inline, Holder::Role, &rname, name.clone(), doc.clone()))
    .await?;
    Ok(Out::default())
}

fn get_role_policy(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let r = named_role(c, &st)?;
    let name = c.required("PolicyName")?;
    c.authorize("iam:GetRolePolicy", &r.arn())?;
    inline::get(&r.inline, Holder::Role, &r.name, name)
}

async fn delete_role_policy(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let r = named_role(c, &st)?;
    let name = c.required("PolicyName")?.to_string();
    c.authorize("iam:DeleteRolePolicy", &r.arn())?;
    c.not_self(is_self(c, &r))?;
    edit_role(c, &r, |r, _| inline::remove(&mut r.inline, Holder::Role, &name))
    .await?;
    Ok(Out::default())
}

fn list_role_policies(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let r = named_role(c, &st)?;
    c.authorize("iam:ListRolePolicies", &r.arn())?;
    inline::list(&r.inline, c)
}

async fn attach_role_policy(c: &Call<'_>, attach: bool) -> Result<Out, IamError> {
    let st = c.state();
    let r = named_role(c, &st)?;
    let arn = c.required("PolicyArn")?.to_string();
    c.authorize(if attach { "iam:AttachRolePolicy" } else { "iam:DetachRolePolicy" }, &r.arn())?;
    c.not_self(is_self(c, &r))?;
    edit_role(c, &r, |r, st| {
        if attach {
            attachable(st, &arn)?;
        }
        edit_attached(&mut r.attached, &arn, attach)
    })
    .await?;
    Ok(Out::default())
}

fn list_attached_role_policies(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let r = named_role(c, &st)?;
    c.authorize("iam:ListAttachedRolePolicies", &r.arn())?;
    let mut o = Out::default();
    attached_xml(&mut o, &r.attached, c)?;
    Ok(o)
}

async fn role_boundary(c: &Call<'_>, put: bool) -> Result<Out, IamError> {
    let st = c.state();
    let r = named_role(c, &st)?;
    let action = if put { "iam:PutRolePermissionsBoundary" } else { "iam:DeleteRolePermissionsBoundary" };
    c.authorize(action, &r.arn())?;
    c.not_self(is_self(c, &r))?;
    let arn = if put { Some(c.required("PermissionsBoundary")?.to_string()) } else { None };
    edit_role(c, &r, |r, st| {
        if let Some(a) = &arn {
            attachable(st, a)?;
        }
        r.boundary = arn.clone();
        Ok(())
    })
    .await?;
    Ok(Out::default())
}

async fn tag_role(c: &Call<'_>, add: bool) -> Result<Out, IamError> {
    let st = c.state();
    let r = named_role(c, &st)?;
    c.authorize(if add { "iam:TagRole" } else { "iam:UntagRole" }, &r.arn())?;
    let tags = if add { tag_params(c)? } else { Vec::new() };
    let remove = if add { Vec::new() } else { members(c, "TagKeys") };
    edit_role(c, &r, |r, _| {
        r.tags.retain(|(k, _)| !remove.contains(k) && !tags.iter().any(|(n, _)| n == k));
        r.tags.extend(tags.clone());
        if r.tags.len() > MAX_TAGS {
            return Err(IamError::limit_exceeded("The number of tags has reached the maximum limit."));
        }
        Ok(())
    })
    .await?;
    Ok(Out::default())
}

fn list_role_tags(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let r = named_role(c, &st)?;
    c.authorize("iam:ListRoleTags", &r.arn())?;
    let mut o = Out::default();
    tags_xml(&mut o, &r.tags);
    o.bool("IsTruncated", false);
    Ok(o)
}
