//! IAM users, their access keys, inline and attached policies and
//! permissions boundaries.

use std::sync::Arc;

use tessera_policy::{Kind, SubjectKind};

use super::inline::{self, Holder};
use super::xml::Out;
use super::{new_id, page, random_token, Call, ID_ALPHABET, SECRET_ALPHABET};
use crate::iam::model::{
    self, policy_chars, root_arn, valid_name, valid_path, AccessKey, Doc, IamUser, MAX_ATTACHED_POLICIES,
    MAX_KEYS_PER_USER, MAX_NAME_BYTES, MAX_TAGS, MAX_USERS_PER_ACCOUNT,
};
use crate::iam::store::IamState;
use crate::iam::IamError;

pub async fn dispatch(c: &Call<'_>, action: &str) -> Result<Out, IamError> {
    match action {
        "CreateUser" => create_user(c).await,
        "GetUser" => get_user(c),
        "UpdateUser" => update_user(c).await,
        "DeleteUser" => delete_user(c).await,
        "ListUsers" => list_users(c),
        "TagUser" => tag_user(c, true).await,
        "UntagUser" => tag_user(c, false).await,
        "ListUserTags" => list_user_tags(c),
        "CreateAccessKey" => create_access_key(c).await,
        "UpdateAccessKey" => update_access_key(c).await,
        "DeleteAccessKey" => delete_access_key(c).await,
        "ListAccessKeys" => list_access_keys(c),
        "GetAccessKeyLastUsed" => get_access_key_last_used(c),
        "PutUserPolicy" => put_user_policy(c).await,
        "GetUserPolicy" => get_user_policy(c),
        "DeleteUserPolicy" => delete_user_policy(c).await,
        "ListUserPolicies" => list_user_policies(c),
        "AttachUserPolicy" => attach_user_policy(c, true).await,
        "DetachUserPolicy" => attach_user_policy(c, false).await,
        "ListAttachedUserPolicies" => list_attached_user_policies(c),
        "PutUserPermissionsBoundary" => user_boundary(c, true).await,
        "DeleteUserPermissionsBoundary" => user_boundary(c, false).await,
        "GetAccountSummary" => account_summary(c),
        _ => Err(IamError::new("InvalidAction", 400, format!("Could not find operation {action}"))),
    }
}

pub fn no_such_user(name: &str) -> IamError {
    IamError::no_such_entity(format!("The user with name {name} cannot be found."))
}

pub fn user_xml(o: &mut Out, u: &IamUser, tags: bool) {
    o.open("User");
    user_fields(o, u);
    if tags && !u.tags.is_empty() {
        tags_xml(o, &u.tags);
    }
    o.close("User");
}

pub fn user_fields(o: &mut Out, u: &IamUser) {
    o.elem("Path", &u.path).elem("UserName", &u.name).elem("UserId", &u.id).elem("Arn", &u.arn()).date("CreateDate", u.created_ms);
    if let Some(b) = &u.boundary {
        o.open("PermissionsBoundary")
            .elem("PermissionsBoundaryType", "Policy")
            .elem("PermissionsBoundaryArn", b)
            .close("PermissionsBoundary");
    }
}

pub fn tags_xml(o: &mut Out, tags: &[(String, String)]) {
    o.open("Tags");
    for (k, v) in tags {
        o.open("member").elem("Key", k).elem("Value", v).close("member");
    }
    o.close("Tags");
}

/// `Prefix.member.N` list parameters, in order.
pub fn members(c: &Call<'_>, prefix: &str) -> Vec<String> {
    (1..=super::MAX_ITEMS).map_while(|i| c.param(&format!("{prefix}.member.{i}")).map(str::to_string)).collect()
}

/// `Tags.member.N.Key` / `.Value` pairs.
pub fn tag_params(c: &Call<'_>) -> Result<Vec<(String, String)>, IamError> {
    let mut tags = Vec::new();
    for i in 1..=MAX_TAGS + 1 {
        let Some(k) = c.param(&format!("Tags.member.{i}.Key")) else { break };
        let v = c.param(&format!("Tags.member.{i}.Value")).unwrap_or("");
        if tags.len() >= MAX_TAGS || k.is_empty() || k.len() > 128 || v.len() > 256 {
            return Err(IamError::validation("Invalid tag: at most 50 tags, keys 1-128 and values 0-256 characters"));
        }
        tags.push((k.to_string(), v.to_string()));
    }
    Ok(tags)
}

pub fn check_name(name: &str, what: &str, max: usize) -> Result<(), IamError> {
    if !valid_name(name, max) {
        return Err(IamError::validation(format!(
            "The specified value for {what} is invalid. It must contain only alphanumeric characters and/or the following: +=,.@_-"
        )));
    }
    Ok(())
}

pub fn check_path(path: &str) -> Result<(), IamError> {
    if !valid_path(path) {
        return Err(IamError::validation("The specified value for path is invalid. It must begin and end with / and contain only printable ASCII characters."));
    }
    Ok(())
}

/// A policy document of `kind` within `max_chars`, as IAM validates it.
pub fn parse_doc(text: &str, kind: Kind, max_chars: usize) -> Result<Doc, IamError> {
    if policy_chars(text) > max_chars {
        return Err(IamError::limit_exceeded(format!("Cannot exceed quota for PolicySize: {max_chars}")));
    }
    Doc::new(text.to_string(), kind).map_err(|e| IamError::malformed_policy(e.0))
}

/// A policy document as IAM returns it: URL-encoded (RFC 3986).
pub fn encode_doc(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2D", "-")
        .replace("%2E", ".")
        .replace("%5F", "_")
        .replace("%7E", "~")
}

/// The user a call names, or for a call without `UserName` the calling
/// IAM user itself (`None`: the account's root).
fn target_user(c: &Call<'_>, st: &IamState) -> Result<Option<Arc<IamUser>>, IamError> {
    let account = c.account()?;
    match c.param("UserName") {
        Some(n) => st.user(&account.user_id, n).cloned().map(Some).ok_or_else(|| no_such_user(n)),
        None => match (&c.principal.user, c.principal.kind) {
            (Some(u), _) => Ok(Some(u.clone())),
            (None, SubjectKind::Root) => Ok(None),
            _ => Err(IamError::validation("Must specify userName when calling with non-User credentials")),
        },
    }
}

/// The named user, which must exist.
pub fn named_user(c: &Call<'_>, st: &IamState) -> Result<Arc<IamUser>, IamError> {
    let account = c.account()?;
    let name = c.required("UserName")?;
    st.user(&account.user_id, name).cloned().ok_or_else(|| no_such_user(name))
}

/// Whether a change to `user`'s policies would change the caller's own.
fn is_self(c: &Call<'_>, user: &IamUser) -> bool {
    c.principal.user.as_ref().is_some_and(|u| u.id == user.id)
}

async fn create_user(c: &Call<'_>) -> Result<Out, IamError> {
    let account = c.account()?.user_id.clone();
    let name = c.required("UserName")?.to_string();
    check_name(&name, "userName", MAX_NAME_BYTES)?;
    let path = c.param("Path").unwrap_or("/").to_string();
    check_path(&path)?;
    let tags = tag_params(c)?;
    c.authorize("iam:CreateUser", &model::arn(&account, "user", &path, &name))?;
    let boundary = c.param("PermissionsBoundary").map(str::to_string);
    let id = new_id(c, "AIDA")?;
    let u = c
        .ctx
        .shared
        .iam
        .update(&c.ctx.shards, |t| {
            if t.state.user(&account, &name).is_some() {
                return Err(IamError::already_exists(format!("User with name {name} already exists.")));
            }
            if t.state.account_range(&t.state.users, &account).count() >= MAX_USERS_PER_ACCOUNT {
                return Err(IamError::limit_exceeded(format!("Cannot exceed quota for UsersPerAccount: {MAX_USERS_PER_ACCOUNT}")));
            }
            if let Some(b) = &boundary {
                crate::iam::managed_policy(&t.state, b).ok_or_else(|| IamError::no_such_entity(format!("Policy {b} does not exist or is not attachable.")))?;
            }
            let u = IamUser {
                account: account.clone(),
                name: name.clone(),
                path: path.clone(),
                id: id.clone(),
                created_ms: c.now_ms,
                inline: Vec::new(),
                attached: Vec::new(),
                boundary: boundary.clone(),
                tags: tags.clone(),
            };
            t.put_user(u.clone());
            Ok(u)
        })
        .await?;
    let mut o = Out::default();
    user_xml(&mut o, &u, true);
    Ok(o)
}

fn get_user(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let account = c.account()?;
    let mut o = Out::default();
    match target_user(c, &st)? {
        Some(u) => {
            c.authorize("iam:GetUser", &u.arn())?;
            user_xml(&mut o, &u, true);
        }
        None => {
            // The account's root identity.
            o.open("User")
                .elem("Path", "/")
                .elem("UserName", &account.display_name)
                .elem("UserId", &account.user_id)
                .elem("Arn", &root_arn(&account.user_id))
                .date("CreateDate", 0)
                .close("User");
        }
    }
    Ok(o)
}

async fn update_user(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let u = named_user(c, &st)?;
    c.authorize("iam:UpdateUser", &u.arn())?;
    let new_name = c.param("NewUserName").map(str::to_string);
    let new_path = c.param("NewPath").map(str::to_string);
    if let Some(n) = &new_name {
        check_name(n, "newUserName", MAX_NAME_BYTES)?;
    }
    if let Some(p) = &new_path {
        check_path(p)?;
    }
    let (account, old_name) = (u.account.clone(), u.name.clone());
    c.ctx
        .shared
        .iam
        .update(&c.ctx.shards, |t| {
            let mut u = IamUser::clone(t.state.user(&account, &old_name).ok_or_else(|| no_such_user(&old_name))?);
            if let Some(n) = &new_name {
                if !n.eq_ignore_ascii_case(&old_name) && t.state.user(&account, n).is_some() {
                    return Err(IamError::already_exists(format!("User with name {n} already exists.")));
                }
                t.remove_user(&account, &old_name);
                u.name = n.clone();
            }
            if let Some(p) = &new_path {
                u.path = p.clone();
            }
            t.put_user(u);
            Ok(())
        })
        .await?;
    Ok(Out::default())
}

async fn delete_user(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let u = named_user(c, &st)?;
    c.authorize("iam:DeleteUser", &u.arn())?;
    let (account, name, id) = (u.account.clone(), u.name.clone(), u.id.clone());
    c.ctx
        .shared
        .iam
        .update(&c.ctx.shards, |t| {
            let u = t.state.user(&account, &name).cloned().ok_or_else(|| no_such_user(&name))?;
            if t.state.keys_of(&account, Some(&id)).next().is_some() {
                return Err(IamError::delete_conflict("Cannot delete entity, must delete access keys first."));
            }
            if !u.inline.is_empty() || !u.attached.is_empty() {
                return Err(IamError::delete_conflict("Cannot delete entity, must delete policies first."));
            }
            if t.state.groups_of(&account, &id).next().is_some() {
                return Err(IamError::delete_conflict("Cannot delete entity, must remove users from group first."));
            }
            t.remove_user(&account, &name);
            Ok(())
        })
        .await?;
    Ok(Out::default())
}

fn list_users(c: &Call<'_>) -> Result<Out, IamError> {
    let account = c.account()?.user_id.clone();
    c.authorize("iam:ListUsers", &model::arn(&account, "user", "/", "*"))?;
    let st = c.state();
    let prefix = c.param("PathPrefix").unwrap_or("/");
    let (max, marker) = c.paging()?;
    let users: Vec<Arc<IamUser>> = st.account_range(&st.users, &account).filter(|u| u.path.starts_with(prefix)).cloned().collect();
    let (users, next) = page(users, |u| u.name.to_ascii_lowercase(), max, marker.as_deref());
    let mut o = Out::default();
    o.open("Users");
    for u in &users {
        o.open("member");
        user_fields(&mut o, u);
        o.close("member");
    }
    o.close("Users").truncation(next.as_deref());
    Ok(o)
}

async fn tag_user(c: &Call<'_>, add: bool) -> Result<Out, IamError> {
    let st = c.state();
    let u = named_user(c, &st)?;
    c.authorize(if add { "iam:TagUser" } else { "iam:UntagUser" }, &u.arn())?;
    let tags = if add { tag_params(c)? } else { Vec::new() };
    let remove = if add { Vec::new() } else { members(c, "TagKeys") };
    let (account, name) = (u.account.clone(), u.name.clone());
    c.ctx
        .shared
        .iam
        .update(&c.ctx.shards, |t| {
            let mut u = IamUser::clone(t.state.user(&account, &name).ok_or_else(|| no_such_user(&name))?);
            u.tags.retain(|(k, _)| !remove.contains(k) && !tags.iter().any(|(n, _)| n == k));
            u.tags.extend(tags.clone());
            if u.tags.len() > MAX_TAGS {
                return Err(IamError::limit_exceeded("The number of tags has reached the maximum limit."));
            }
            t.put_user(u);
            Ok(())
        })
        .await?;
    Ok(Out::default())
}

fn list_user_tags(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let u = named_user(c, &st)?;
    c.authorize("iam:ListUserTags", &u.arn())?;
    let mut o = Out::default();
    tags_xml(&mut o, &u.tags);
    o.bool("IsTruncated", false);
    Ok(o)
}

// ---- access keys --------------------------------------------------------------

fn key_owner_arn(account: &str, u: Option<&IamUser>) -> String {
    u.map_or_else(|| root_arn(account), IamUser::arn)
}

async fn create_access_key(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let account = c.account()?.user_id.clone();
    let user = target_user(c, &st)?;
    c.authorize("iam:CreateAccessKey", &key_owner_arn(&account, user.as_deref()))?;
    let user_id = user.as_ref().map(|u| u.id.clone());
    let mut id = String::new();
    for _ in 0..8 {
        id = format!("AKIA{}", random_token(c, 16, ID_ALPHABET)?);
        if c.ctx.shared.identities.load().get(&id).is_none() && !st.keys.contains_key(&id) {
            break;
        }
    }
    let secret = random_token(c, 40, SECRET_ALPHABET)?;
    let key = AccessKey { id, secret, account: account.clone(), user: user_id.clone(), active: true, created_ms: c.now_ms };
    let k = key.clone();
    c.ctx
        .shared
        .iam
        .update(&c.ctx.shards, move |t| {
            if let Some(uid) = &user_id {
                t.state.user_by_id(uid).ok_or_else(|| IamError::no_such_entity("The user cannot be found."))?;
            }
            if t.state.keys.contains_key(&k.id) || t.state.keys_of(&account, user_id.as_deref()).count() >= MAX_KEYS_PER_USER {
                return Err(IamError::limit_exceeded(format!("Cannot exceed quota for AccessKeysPerUser: {MAX_KEYS_PER_USER}")));
            }
            t.put_key(k.clone())
        })
        .await?;
    let mut o = Out::default();
    o.open("AccessKey");
    o.elem_opt("UserName", user.as_ref().map(|u| u.name.as_str()));
    o.elem("AccessKeyId", &key.id).elem("Status", "Active").elem("SecretAccessKey", &key.secret);
    o.date("CreateDate", key.created_ms).close("AccessKey");
    Ok(o)
}

/// The key `AccessKeyId` of the call's target user (or root).
fn owned_key(c: &Call<'_>, st: &IamState) -> Result<(Arc<AccessKey>, Option<Arc<IamUser>>), IamError> {
    let account = c.account()?.user_id.clone();
    let user = target_user(c, st)?;
    let id = c.required("AccessKeyId")?;
    let key = st
        .keys
        .get(id)
        .filter(|k| k.account == account && k.user.as_deref() == user.as_ref().map(|u| u.id.as_str()))
        .cloned()
        .ok_or_else(|| IamError::no_such_entity(format!("The Access Key with id {id} cannot be found.")))?;
    Ok((key, user))
}

async fn update_access_key(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let (key, user) = owned_key(c, &st)?;
    c.authorize("iam:UpdateAccessKey", &key_owner_arn(&key.account, user.as_deref()))?;
    let active = match c.required("Status")? {
        "Active" => true,
        "Inactive" => false,
        _ => return Err(IamError::validation("Status must be Active or Inactive")),
    };
    let id = key.id.clone();
    c.ctx
        .shared
        .iam
        .update(&c.ctx.shards, |t| {
            let mut k = AccessKey::clone(t.state.keys.get(&id).ok_or_else(|| IamError::no_such_entity("The Access Key cannot be found."))?);
            k.active = active;
            t.put_key(k)
        })
        .await?;
    Ok(Out::default())
}

async fn delete_access_key(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let (key, user) = owned_key(c, &st)?;
    c.authorize("iam:DeleteAccessKey", &key_owner_arn(&key.account, user.as_deref()))?;
    let id = key.id.clone();
    c.ctx
        .shared
        .iam
        .update(&c.ctx.shards, |t| {
            t.state.keys.get(&id).ok_or_else(|| IamError::no_such_entity("The Access Key cannot be found."))?;
            t.remove_key(&id);
            Ok(())
        })
        .await?;
    Ok(Out::default())
}

fn list_access_keys(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let account = c.account()?.user_id.clone();
    let user = target_user(c, &st)?;
    c.authorize("iam:ListAccessKeys", &key_owner_arn(&account, user.as_deref()))?;
    let mut o = Out::default();
    o.open("AccessKeyMetadata");
    for k in st.keys_of(&account, user.as_ref().map(|u| u.id.as_str())) {
        o.open("member");
        o.elem_opt("UserName", user.as_ref().map(|u| u.name.as_str()));
        o.elem("AccessKeyId", &k.id).elem("Status", if k.active { "Active" } else { "Inactive" });
        o.date("CreateDate", k.created_ms).close("member");
    }
    o.close("AccessKeyMetadata").bool("IsTruncated", false);
    Ok(o)
}

fn get_access_key_last_used(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let account = c.account()?.user_id.clone();
    let id = c.required("AccessKeyId")?;
    let key = st.keys.get(id).filter(|k| k.account == account).cloned().ok_or_else(|| IamError::access_denied("Access denied"))?;
    let user = key.user.as_deref().and_then(|u| st.user_by_id(u)).cloned();
    c.authorize("iam:GetAccessKeyLastUsed", &key_owner_arn(&account, user.as_deref()))?;
    let mut o = Out::default();
    o.elem_opt("UserName", user.as_ref().map(|u| u.name.as_str()));
    // Use is not tracked (it would be a write per request).
    o.open("AccessKeyLastUsed").elem("ServiceName", "N/A").elem("Region", "N/A").close("AccessKeyLastUsed");
    Ok(o)
}

// ---- user policies ------------------------------------------------------------

async fn put_user_policy(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let u = named_user(c, &st)?;
    let (name, doc) = inline::put_args(c, Holder::User)?;
    c.authorize("iam:PutUserPolicy", &u.arn())?;
    c.not_self(is_self(c, &u))?;
    let (account, uname) = (u.account.clone(), u.name.clone());
    c.ctx
        .shared
        .iam
        .update(&c.ctx.shards, |t| {
            let mut u = IamUser::clone(t.state.user(&account, &uname).ok_or_else(|| no_such_user(&uname))?);
            inline::put(&mut u.inline, Holder::User, &uname, name.clone(), doc.clone())?;
            t.put_user(u);
            Ok(())
        })
        .await?;
    Ok(Out::default())
}

fn get_user_policy(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let u = named_user(c, &st)?;
    let name = c.required("PolicyName")?;
    c.authorize("iam:GetUserPolicy", &u.arn())?;
    inline::get(&u.inline, Holder::User, &u.name, name)
}

async fn delete_user_policy(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let u = named_user(c, &st)?;
    let name = c.required("PolicyName")?.to_string();
    c.authorize("iam:DeleteUserPolicy", &u.arn())?;
    c.not_self(is_self(c, &u))?;
    let (account, uname) = (u.account.clone(), u.name.clone());
    c.ctx
        .shared
        .iam
        .update(&c.ctx.shards, |t| {
            let mut u = IamUser::clone(t.state.user(&account, &uname).ok_or_else(|| no_such_user(&uname))?);
            inline::remove(&mut u.inline, Holder::User, &name)?;
            t.put_user(u);
            Ok(())
        })
        .await?;
    Ok(Out::default())
}

pub fn names_xml(o: &mut Out, element: &str, names: Vec<String>, c: &Call<'_>) -> Result<(), IamError> {
    let (max, marker) = c.paging()?;
    let (names, next) = page(names, |n| n.clone(), max, marker.as_deref());
    o.open(element);
    for n in &names {
        o.elem("member", n);
    }
    o.close(element).truncation(next.as_deref());
    Ok(())
}

fn list_user_policies(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let u = named_user(c, &st)?;
    c.authorize("iam:ListUserPolicies", &u.arn())?;
    inline::list(&u.inline, c)
}

/// Checks that `arn` names an attachable policy.
pub fn attachable(st: &IamState, arn: &str) -> Result<(), IamError> {
    crate::iam::managed_policy(st, arn)
        .map(|_| ())
        .ok_or_else(|| IamError::no_such_entity(format!("Policy {arn} does not exist or is not attachable.")))
}

/// Adds or removes `arn` in an attachment list.
pub fn edit_attached(list: &mut Vec<String>, arn: &str, attach: bool) -> Result<(), IamError> {
    if attach {
        if !list.iter().any(|a| a == arn) {
            if list.len() >= MAX_ATTACHED_POLICIES {
                return Err(IamError::limit_exceeded(format!(
                    "Cannot exceed quota for PoliciesPerEntity: {MAX_ATTACHED_POLICIES}"
                )));
            }
            list.push(arn.to_string());
        }
        return Ok(());
    }
    let before = list.len();
    list.retain(|a| a != arn);
    if list.len() == before {
        return Err(IamError::no_such_entity(format!("Policy {arn} was not found.")));
    }
    Ok(())
}

async fn attach_user_policy(c: &Call<'_>, attach: bool) -> Result<Out, IamError> {
    let st = c.state();
    let u = named_user(c, &st)?;
    let arn = c.required("PolicyArn")?.to_string();
    c.authorize(if attach { "iam:AttachUserPolicy" } else { "iam:DetachUserPolicy" }, &u.arn())?;
    c.not_self(is_self(c, &u))?;
    let (account, uname) = (u.account.clone(), u.name.clone());
    c.ctx
        .shared
        .iam
        .update(&c.ctx.shards, |t| {
            let mut u = IamUser::clone(t.state.user(&account, &uname).ok_or_else(|| no_such_user(&uname))?);
            if attach {
                attachable(&t.state, &arn)?;
            }
            edit_attached(&mut u.attached, &arn, attach)?;
            t.put_user(u);
            Ok(())
        })
        .await?;
    Ok(Out::default())
}

/// `AttachedPolicies` members: each policy's name and ARN.
pub fn attached_xml(o: &mut Out, arns: &[String], c: &Call<'_>) -> Result<(), IamError> {
    let (max, marker) = c.paging()?;
    let mut items: Vec<(String, String)> = arns
        .iter()
        .map(|a| (a.rsplit('/').next().unwrap_or(a).to_string(), a.clone()))
        .filter(|(n, _)| c.param("PathPrefix").is_none_or(|_| !n.is_empty()))
        .collect();
    items.sort();
    let (items, next) = page(items, |(n, _)| n.clone(), max, marker.as_deref());
    o.open("AttachedPolicies");
    for (name, arn) in &items {
        o.open("member").elem("PolicyName", name).elem("PolicyArn", arn).close("member");
    }
    o.close("AttachedPolicies").truncation(next.as_deref());
    Ok(())
}

fn list_attached_user_policies(c: &Call<'_>) -> Result<Out, IamError> {
    let st = c.state();
    let u = named_user(c, &st)?;
    c.authorize("iam:ListAttachedUserPolicies", &u.arn())?;
    let mut o = Out::default();
    attached_xml(&mut o, &u.attached, c)?;
    Ok(o)
}

async fn user_boundary(c: &Call<'_>, put: bool) -> Result<Out, IamError> {
    let st = c.state();
    let u = named_user(c, &st)?;
    let action = if put { "iam:PutUserPermissionsBoundary" } else { "iam:DeleteUserPermissionsBoundary" };
    c.authorize(action, &u.arn())?;
    c.not_self(is_self(c, &u))?;
    let arn = if put { Some(c.required("PermissionsBoundary")?.to_string()) } else { None };
    let (account, uname) = (u.account.clone(), u.name.clone());
    c.ctx
        .shared
        .iam
        .update(&c.ctx.shards, |t| {
            let mut u = IamUser::clone(t.state.user(&account, &uname).ok_or_else(|| no_such_user(&uname))?);
            if let Some(a) = &arn {
                attachable(&t.state, a)?;
            }
            u.boundary = arn.clone();
            t.put_user(u);
            Ok(())
        })
        .await?;
    Ok(Out::default())
}

fn account_summary(c: &Call<'_>) -> Result<Out, IamError> {
    let account = c.account()?.user_id.clone();
    c.authorize("iam:GetAccountSummary", "*")?;
    let st = c.state();
    let count = |n: usize| n.to_string();
    let entries = [
        ("Users", count(st.account_range(&st.users, &account).count())),
        ("UsersQuota", count(MAX_USERS_PER_ACCOUNT)),
        ("Groups", count(st.account_range(&st.groups, &account).count())),
        ("GroupsQuota", count(model::MAX_GROUPS_PER_ACCOUNT)),
        ("Roles", count(st.account_range(&st.roles, &account).count())),
        ("RolesQuota", count(model::MAX_ROLES_PER_ACCOUNT)),
        ("Policies", count(st.account_range(&st.policies, &account).count())),
        ("PoliciesQuota", count(model::MAX_POLICIES_PER_ACCOUNT)),
        ("AccessKeysPerUserQuota", count(MAX_KEYS_PER_USER)),
        ("AttachedPoliciesPerUserQuota", count(MAX_ATTACHED_POLICIES)),
        ("GroupsPerUserQuota", count(model::MAX_GROUPS_PER_USER)),
        ("PolicyVersionsInUseQuota", count(model::MAX_POLICY_VERSIONS)),
    ];
    let mut o = Out::default();
    o.open("SummaryMap");
    for (k, v) in entries {
        o.open("entry").elem("key", k).elem("value", &v).close("entry");
    }
    o.close("SummaryMap");
    Ok(o)
}
