//! Inline policies (`Put`/`Get`/`Delete`/`List` `UserPolicy`,
//! `GroupPolicy`, `RolePolicy`): one set of rules for the three kinds of
//! principal that hold them; the handlers keep only what differs (how the
//! holder is named, authorized and written back).

use tessera_policy::Kind;

use super::users::{check_name, encode_doc, names_xml, parse_doc};
use super::xml::Out;
use super::Call;
use crate::iam::model::{
    policy_chars, Doc, Inline, MAX_GROUP_INLINE_CHARS, MAX_POLICY_NAME_BYTES, MAX_ROLE_INLINE_CHARS,
    MAX_USER_INLINE_CHARS,
};
use crate::iam::IamError;

/// Who holds the policies.
#[derive(Clone, Copy, Debug)]
pub(super) enum Holder {
    User,
    Group,
    Role,
}

impl Holder {
    fn noun(self) -> &'static str {
        match self {
            Holder::User => "user",
            Holder::Group => "group",
            Holder::Role => "role",
        }
    }

    /// The element naming the holder in a Get*Policy answer.
    fn name_element(self) -> &'static str {
        match self {
            Holder::User => "UserName",
            Holder::Group => "GroupName",
            Holder::Role => "RoleName",
        }
    }

    /// AWS's quota on the holder's inline policies, all together.
    fn max_chars(self) -> usize {
        match self {
            Holder::User => MAX_USER_INLINE_CHARS,
            Holder::Group => MAX_GROUP_INLINE_CHARS,
            Holder::Role => MAX_ROLE_INLINE_CHARS,
        }
    }

    fn not_found(self, name: &str) -> IamError {
        IamError::no_such_entity(format!("The {} policy with name {name} cannot be found.", self.noun()))
    }
}

/// A Put*Policy call's PolicyName and PolicyDocument, validated.
pub(super) fn put_args(c: &Call<'_>, holder: Holder) -> Result<(String, Doc), IamError> {
    let name = c.required("PolicyName")?.to_string();
    check_name(&name, "policyName", MAX_POLICY_NAME_BYTES)?;
    let doc = parse_doc(c.required("PolicyDocument")?, Kind::Identity, holder.max_chars())?;
    Ok((name, doc))
}

/// Adds `name` (replacing a policy of that name) within the holder's quota.
pub(super) fn put(inline: &mut Inline, holder: Holder, owner: &str, name: String, doc: Doc) -> Result<(), IamError> {
    inline.retain(|(n, _)| *n != name);
    inline.push((name, doc));
    let total: usize = inline.iter().map(|(_, d)| policy_chars(&d.text)).sum();
    if total > holder.max_chars() {
        return Err(IamError::limit_exceeded(format!(
            "Maximum policy size of {} bytes exceeded for {} {owner}",
            holder.max_chars(),
            holder.noun()
        )));
    }
    Ok(())
}

/// Removes `name`; NoSuchEntity when the holder has no policy of that name.
pub(super) fn remove(inline: &mut Inline, holder: Holder, name: &str) -> Result<(), IamError> {
    let before = inline.len();
    inline.retain(|(n, _)| n != name);
    if inline.len() == before {
        return Err(holder.not_found(name));
    }
    Ok(())
}

/// The Get*Policy answer.
pub(super) fn get(inline: &Inline, holder: Holder, owner: &str, name: &str) -> Result<Out, IamError> {
    let (_, doc) = inline.iter().find(|(n, _)| n == name).ok_or_else(|| holder.not_found(name))?;
    let mut o = Out::default();
    o.elem(holder.name_element(), owner).elem("PolicyName", name).elem("PolicyDocument", &encode_doc(&doc.text));
    Ok(o)
}

/// The List*Policies answer: the names in order, paged.
pub(super) fn list(inline: &Inline, c: &Call<'_>) -> Result<Out, IamError> {
    let mut names: Vec<String> = inline.iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    let mut o = Out::default();
    names_xml(&mut o, "PolicyNames", names, c)?;
    Ok(o)
}
