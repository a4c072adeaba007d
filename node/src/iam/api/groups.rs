//! IAM groups: membership and the policies members inherit.

use std::sync::Arc;

use super::users::{attachable, attached_xml, check_name, check_path, edit_attached, named_user, user_fields};
use super::inline::{self, Holder};
use super::xml::Out;
use super::{new_id, page, Call};
use crate::iam::model::{
    self, IamGroup, MAX_GROUPS_PER_ACCOUNT, MAX_GROUPS_PER_USER, MAX_NAME_BYTES,
};
use crate::iam::store::IamState;
use crate::iam::IamError;

pub async fn dispatch(c: &Call<'_>, action: &str) -> Result<Out, IamError> {
    match action {
        "CreateGroup" => create_group(c).await,
        "GetGroup" => get_group(c),
        "UpdateGroup" => update_group(c).await,
        "DeleteGroup" => delete_group(c).await,
        "ListGroups" => list_groups(c),
        "AddUserToGroup" => membership(c, true).await,
        "RemoveUserFromGroup" => membership(c, false).await,
        "ListGroupsForUser" => groups_for_user(c),
        "PutGroupPolicy" => put_group_policy(c).await,
        "GetGroupPolicy" => get_group_policy(c),
        "DeleteGroupPolicy" => delete_group_policy(c).await,
        "ListGroupPolicies" => list_group_policies(c),
        "AttachGroupPolicy" => attach_group_policy(c, true).await,
        "DetachGroupPolicy" => attach_group_policy(c, false).await,
        "ListAttachedGroupPolicies" => list_attached_group_policies(c),
        _ => Err(IamError::new("InvalidAction", 400, format!("Could not find operation {action}"))),
    }
}

fn no_such_group(name: &str) -> IamError {
    IamError::no_such_entity(format!("The group with name {name} cannot be found."))
}

fn group_fields(o: &mut Out, g: &IamGroup) {
    o.elem("Path", &g.path).elem("GroupName", &g.name).elem("GroupId", &g.id).elem("Arn", &g.arn()).date("CreateDate", g.created_ms);
}

fn named_group(c: &Call<'_>, st: &IamState) -> Result<Arc<IamGroup>, IamError> {
    let account = c.account()?;
    let name = c.required("GroupName")?;
    st.group(&account.user_id, name).cloned().ok_or_else(|| no_such_group(name))
}

/// Whether the caller is a member of `g` (a change to its policies would
/// change the caller's own).
fn is_member(c: &Call<'_>, g: &IamGroup) -> bool {
    c.principal.user.as_ref().is_some_and(|u| g.members.contains(&u.id))
}

async fn create_group(c: &Call<'_>) -> Result<Out, IamError> {
    let account = c.account()?.user_id.clone();
    let name = c.required("GroupName")?.to_string();
    check_name(&name, "groupName", MAX_NAME_BYTES)?;
    let path = c.param("Path").unwrap_or("/").to_string();
    check_path(&path)?;
    c.authorize("iam:CreateGroup", &model::arn(&account, "group", &path, &name))?;
    let id = new_id(c, "AGPA")?;
    let g = c
        .ctx
        .shared
        .iam
        .update(&c.ctx.shards, |t| {
            if t.state.group(&account, &name).is_some() {
                return Err(IamError::already_exists(format!("Group with name {name} already exists.")));
            }
            if t.state.account_range(&t.state.groups, &account).count() >= MAX_GROUPS_PER_ACCOUNT {
                return Err(IamError::limit_exceeded(format!("Cannot exceed quota for GroupsPerAccount: {MAX_GROUPS_PER_ACCOUNT}")));
            }
            let g = IamGroup {
                account: account.clone(),
                name: name.clone(),
                path: path.clone(),
                id: id.clone(),
                created_ms: c.now_ms,
                inline: Vec::new(),
                attached: Vec::new(),
                members: Vec::new(),
            };
            t.put_group(g.clone());
            Ok(g)
        })
        .await?;
    let mut o = Out::default();
    o.open("Group");
    group_fields(&mut o, &g);
    o.close("Group");
    Ok(o)
}

fn get_group(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let g = named_group(c, &st)?;
    c.authorize("iam:GetGroup", &g.arn())?;
    let (max, marker) = c.paging()?;
    let mut users: Vec<_> = g.members.iter().filter_map(|id| st.user_by_id(id)).cloned().collect();
    users.sort_by_key(|u| u.name.to_ascii_lowercase());
    let (users, next) = page(users, |u| u.name.to_ascii_lowercase(), max, marker.as_deref());
    let mut o = Out::default();
    o.open("Group");
    group_fields(&mut o, &g);
    o.close("Group").open("Users");
    for u in &users {
        o.open("member");
        user_fields(&mut o, u);
        o.close("member");
    }
    o.close("Users").truncation(next.as_deref());
    Ok(o)
}

async fn update_group(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let g = named_group(c, &st)?;
    c.authorize("iam:UpdateGroup", &g.arn())?;
    let new_name = c.param("NewGroupName").map(str::to_string);
    let new_path = c.param("NewPath").map(str::to_string);
    if let Some(n) = &new_name {
        check_name(n, "newGroupName", MAX_NAME_BYTES)?;
    }
    if let Some(p) = &new_path {
        check_path(p)?;
    }
    let (account, old) = (g.account.clone(), g.name.clone());
    c.ctx
        .shared
        .iam
        .update(&c.ctx.shards, |t| {
            let mut g = IamGroup::clone(t.state.group(&account, &old).ok_or_else(|| no_such_group(&old))?);
            if let Some(n) = &new_name {
                if !n.eq_ignore_ascii_case(&old) && t.state.group(&account, n).is_some() {
                    return Err(IamError::already_exists(format!("Group with name {n} already exists.")));
                }
                t.remove_group(&account, &old);
                g.name = n.clone();
            }
            if let Some(p) = &new_path {
                g.path = p.clone();
            }
            t.put_group(g);
            Ok(())
        })
        .await?;
    Ok(Out::default())
}

async fn delete_group(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let g = named_group(c, &st)?;
    c.authorize("iam:DeleteGroup", &g.arn())?;
    let (account, name) = (g.account.clone(), g.name.clone());
    c.ctx
        .shared
        .iam
        .update(&c.ctx.shards, |t| {
            let g = t.state.group(&account, &name).cloned().ok_or_else(|| no_such_group(&name))?;
            if !g.members.is_empty() {
                return Err(IamError::delete_conflict("Cannot delete entity, must remove users from group first."));
            }
            if !g.inline.is_empty() || !g.attached.is_empty() {
                return Err(IamError::delete_conflict("Cannot delete entity, must delete policies first."));
            }
            t.remove_group(&account, &name);
            Ok(())
        })
        .await?;
    Ok(Out::default())
}

fn groups_xml(o: &mut Out, groups: Vec<Arc<IamGroup>>, c: &Call<'_>) -> Result<(), IamError> {
    let (max, marker) = c.paging()?;
    let (groups, next) = page(groups, |g| g.name.to_ascii_lowercase(), max, marker.as_deref());
    o.open("Groups");
    for g in &groups {
        o.open("member");
        group_fields(o, g);
        o.close("member");
    }
    o.close("Groups").truncation(next.as_deref());
    Ok(())
}

fn list_groups(c: &Call<'_>) -> Result<Out, IamError> {
    let account = c.account()?.user_id.clone();
    c.authorize("iam:ListGroups", &model::arn(&account, "group", "/", "*"))?;
    let st = c.state();
    let prefix = c.param("PathPrefix").unwrap_or("/");
    let groups = st.account_range(&st.groups, &account).filter(|g| g.path.starts_with(prefix)).cloned().collect();
    let mut o = Out::default();
    groups_xml(&mut o, groups, c)?;
    Ok(o)
}

async fn membership(c: &Call<'_>, add: bool) -> Result<Out, IamError> {
    let st = c.state();
    let g = named_group(c, &st)?;
    let u = named_user(c, &st)?;
    c.authorize(if add { "iam:AddUserToGroup" } else { "iam:RemoveUserFromGroup" }, &g.arn())?;
    c.not_self(c.principal.user.as_ref().is_some_and(|me| me.id == u.id))?;
    let (account, gname, uid) = (g.account.clone(), g.name.clone(), u.id.clone());
    c.ctx
        .shared
        .iam
        .update(&c.ctx.shards, |t| {
            let mut g = IamGroup::clone(t.state.group(&account, &gname).ok_or_else(|| no_such_group(&gname))?);
            if add {
                if !g.members.contains(&uid) {
                    if t.state.groups_of(&account, &uid).count() >= MAX_GROUPS_PER_USER {
                        return Err(IamError::limit_exceeded(format!("Cannot exceed quota for GroupsPerUser: {MAX_GROUPS_PER_USER}")));
                    }
                    g.members.push(uid.clone());
                }
            } else {
                let before = g.members.len();
                g.members.retain(|m| *m != uid);
                if g.members.len() == before {
                    return Err(IamError::no_such_entity("The user is not in the group."));
                }
            }
            t.put_group(g);
            Ok(())
        })
        .await?;
    Ok(Out::default())
}

fn groups_for_user(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let u = named_user(c, &st)?;
    c.authorize("iam:ListGroupsForUser", &u.arn())?;
    let groups = st.groups_of(&u.account, &u.id).cloned().collect();
    let mut o = Out::default();
    groups_xml(&mut o, groups, c)?;
    Ok(o)
}

async fn put_group_policy(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let g = named_group(c, &st)?;
    let (name, doc) = inline::put_args(c, Holder::Group)?;
    c.authorize("iam:PutGroupPolicy", &g.arn())?;
    c.not_self(is_member(c, &g))?;
    let (account, gname) = (g.account.clone(), g.name.clone());
    c.ctx
        .shared
        .iam
        .update(&c.ctx.shards, |t| {
            let mut g = IamGroup::clone(t.state.group(&account, &gname).ok_or_else(|| no_such_group(&gname))?);
            inline::put(&mut g.inline, Holder::Group, &gname, name.clone(), doc.clone())?;
            t.put_group(g);
            Ok(())
        })
        .await?;
    Ok(Out::default())
}

fn get_group_policy(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let g = named_group(c, &st)?;
    let name = c.required("PolicyName")?;
    c.authorize("iam:GetGroupPolicy", &g.arn())?;
    inline::get(&g.inline, Holder::Group, &g.name, name)
}

async fn delete_group_policy(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let g = named_group(c, &st)?;
    let name = c.required("PolicyName")?.to_string();
    c.authorize("iam:DeleteGroupPolicy", &g.arn())?;
    c.not_self(is_member(c, &g))?;
    let (account, gname) = (g.account.clone(), g.name.clone());
    c.ctx
        .shared
        .iam
        .update(&c.ctx.shards, |t| {
            let mut g = IamGroup::clone(t.state.group(&account, &gname).ok_or_else(|| no_such_group(&gname))?);
            inline::remove(&mut g.inline, Holder::Group, &name)?;
            t.put_group(g);
            Ok(())
        })
        .await?;
    Ok(Out::default())
}

fn list_group_policies(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let g = named_group(c, &st)?;
    c.authorize("iam:ListGroupPolicies", &g.arn())?;
    inline::list(&g.inline, c)
}

async fn attach_group_policy(c: &Call<'_>, attach: bool) -> Result<Out, IamError> {
    let st = c.state();
    let g = named_group(c, &st)?;
    let arn = c.required("PolicyArn")?.to_string();
    c.authorize(if attach { "iam:AttachGroupPolicy" } else { "iam:DetachGroupPolicy" }, &g.arn())?;
    c.not_self(is_member(c, &g))?;
    let (account, gname) = (g.account.clone(), g.name.clone());
    c.ctx
        .shared
        .iam
        .update(&c.ctx.shards, |t| {
            let mut g = IamGroup::clone(t.state.group(&account, &gname).ok_or_else(|| no_such_group(&gname))?);
            if attach {
                attachable(&t.state, &arn)?;
            }
            edit_attached(&mut g.attached, &arn, attach)?;
            t.put_group(g);
            Ok(())
        })
        .await?;
    Ok(Out::default())
}

fn list_attached_group_policies(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let g = named_group(c, &st)?;
    c.authorize("iam:ListAttachedGroupPolicies", &g.arn())?;
    let mut o = Out::default();
    attached_xml(&mut o, &g.attached, c)?;
    Ok(o)
}
