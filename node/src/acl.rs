//! ACLs in the node: their stored encoding (versioned, inside bucket
//! records and object metadata), the ACL a request asks for (`x-amz-acl`,
//! `x-amz-grant-*`, an AccessControlPolicy document) resolved against the
//! known accounts, and object ownership controls.
//!
//! FORMAT BOUNDARY: [`encode`] / [`decode`] are on disk.

use tessera_policy::acl::{Group, MAX_GRANTS};
use tessera_policy::{Acl, CannedAcl, Grant, Grantee, Permission};
use tessera_proto::xml_access::{AccessControlPolicy, XmlGrant, XmlGrantee};
use tessera_proto::{Headers, S3Error, S3ErrorCode, S3Result};

use crate::codec::{Dec, Enc};
use crate::identity::Identities;

const ACL_V1: u8 = 1;

fn perm_code(p: Permission) -> u8 {
    match p {
        Permission::Read => 1,
        Permission::Write => 2,
        Permission::ReadAcp => 3,
        Permission::WriteAcp => 4,
        Permission::FullControl => 5,
    }
}

fn perm_from(c: u8) -> Option<Permission> {
    Some(match c {
        1 => Permission::Read,
        2 => Permission::Write,
        3 => Permission::ReadAcp,
        4 => Permission::WriteAcp,
        5 => Permission::FullControl,
        _ => return None,
    })
}

fn group_code(g: Group) -> u8 {
    match g {
        Group::AllUsers => 1,
        Group::AuthenticatedUsers => 2,
        Group::LogDelivery => 3,
    }
}

fn group_from(c: u8) -> Option<Group> {
    Some(match c {
        1 => Group::AllUsers,
        2 => Group::AuthenticatedUsers,
        3 => Group::LogDelivery,
        _ => return None,
    })
}

/// Appends `acl` (its own version byte first) to `e`.
pub fn encode(e: &mut Enc, acl: &Acl) {
    e.u8(ACL_V1).str(&acl.owner_id).str(&acl.owner_display);
    e.u32(acl.grants.len() as u32);
    for g in &acl.grants {
        match &g.grantee {
            Grantee::User { id, display_name } => {
                e.u8(1).str(id).str(display_name);
            }
            Grantee::Group(gr) => {
                e.u8(2).u8(group_code(*gr));
            }
        }
        e.u8(perm_code(g.permission));
    }
}

/// Reads an ACL written by [`encode`]; `None` when corrupt.
pub fn decode(d: &mut Dec<'_>) -> Option<Acl> {
    if d.u8()? != ACL_V1 {
        return None;
    }
    let (owner_id, owner_display) = (d.str()?, d.str()?);
    let mut grants = Vec::new();
    for _ in 0..d.count(MAX_GRANTS)? {
        let grantee = match d.u8()? {
            1 => Grantee::User { id: d.str()?, display_name: d.str()? },
            2 => Grantee::Group(group_from(d.u8()?)?),
            _ => return None,
        };
        grants.push(Grant { grantee, permission: perm_from(d.u8()?)? });
    }
    Some(Acl { owner_id, owner_display, grants })
}

/// A bucket's object ownership setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// ACLs are disabled: the bucket owner owns every object.
    BucketOwnerEnforced,
    /// Objects written with `bucket-owner-full-control` go to the bucket owner.
    BucketOwnerPreferred,
    /// The writer owns what it writes (also what a bucket without
    /// ownership controls does, as S3 did before April 2023).
    ObjectWriter,
}

impl Ownership {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "BucketOwnerEnforced" => Ownership::BucketOwnerEnforced,
            "BucketOwnerPreferred" => Ownership::BucketOwnerPreferred,
            "ObjectWriter" => Ownership::ObjectWriter,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Ownership::BucketOwnerEnforced => "BucketOwnerEnforced",
            Ownership::BucketOwnerPreferred => "BucketOwnerPreferred",
            Ownership::ObjectWriter => "ObjectWriter",
        }
    }

    pub fn code(self) -> u8 {
        match self {
            Ownership::BucketOwnerEnforced => 1,
            Ownership::BucketOwnerPreferred => 2,
            Ownership::ObjectWriter => 3,
        }
    }

    pub fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => Ownership::BucketOwnerEnforced,
            2 => Ownership::BucketOwnerPreferred,
            3 => Ownership::ObjectWriter,
            _ => return None,
        })
    }
}

/// What a request asks the new ACL to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclRequest {
    Canned(CannedAcl),
    /// From `x-amz-grant-*` headers or an AccessControlPolicy document.
    Grants(Vec<Grant>),
}

impl AclRequest {
    /// The ACL for a resource owned by `owner` in a bucket owned by `bucket_owner`.
    pub fn resolve(&self, owner: (&str, &str), bucket_owner: (&str, &str)) -> Acl {
        match self {
            AclRequest::Canned(c) => c.expand(owner, bucket_owner),
            AclRequest::Grants(g) => Acl { owner_id: owner.0.into(), owner_display: owner.1.into(), grants: g.clone() },
        }
    }

    pub fn is_public(&self) -> bool {
        match self {
            AclRequest::Canned(c) => c.is_public(),
            AclRequest::Grants(g) => g.iter().any(|g| matches!(g.grantee, Grantee::Group(gr) if gr.is_public())),
        }
    }

    pub fn canned(&self) -> Option<CannedAcl> {
        match self {
            AclRequest::Canned(c) => Some(*c),
            AclRequest::Grants(_) => None,
        }
    }
}

const GRANT_HEADERS: [(&str, Permission); 5] = [
    ("x-amz-grant-read", Permission::Read),
    ("x-amz-grant-write", Permission::Write),
    ("x-amz-grant-read-acp", Permission::ReadAcp),
    ("x-amz-grant-write-acp", Permission::WriteAcp),
    ("x-amz-grant-full-control", Permission::FullControl),
];

fn invalid_argument(msg: impl Into<String>) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidArgument, msg)
}

/// A grantee named by id, group URI or e-mail, resolved against the
/// accounts we know (display names are recorded with the grant).
fn resolve_grantee(kind: &str, value: &str, accounts: &Identities) -> S3Result<Grantee> {
    match kind {
        "id" => {
            let acct = accounts.account(value).ok_or_else(|| invalid_argument("Invalid id"))?;
            Ok(Grantee::User { id: acct.user_id.clone(), display_name: acct.display_name.clone() })
        }
        "uri" => Group::from_uri(value).map(Grantee::Group).ok_or_else(|| invalid_argument("Invalid group uri")),
        // No account here has an e-mail address on record.
        "emailaddress" => Err(S3Error::new(S3ErrorCode::UnresolvableGrantByEmailAddress)),
        _ => Err(invalid_argument(format!("Invalid grantee type {kind}"))),
    }
}

/// `id="...", uri="...", emailAddress="..."` of one grant header.
fn parse_grant_header(value: &str, permission: Permission, accounts: &Identities, out: &mut Vec<Grant>) -> S3Result<()> {
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| invalid_argument("Invalid grant header"))?;
        let v = v.trim();
        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
        out.push(Grant { grantee: resolve_grantee(&k.trim().to_ascii_lowercase(), v, accounts)?, permission });
        if out.len() > MAX_GRANTS {
            return Err(invalid_argument("Too many grants"));
        }
    }
    Ok(())
}

/// The ACL asked by `x-amz-acl` or `x-amz-grant-*` headers, if any (both
/// at once is refused, as S3 does).
pub fn from_headers(h: &Headers, accounts: &Identities) -> S3Result<Option<AclRequest>> {
    let canned = h.get("x-amz-acl").map(str::trim);
    let has_grants = GRANT_HEADERS.iter().any(|(n, _)| h.contains(n));
    match (canned, has_grants) {
        (Some(_), true) => Err(S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            "Specifying both Canned ACLs and Header Grants is not allowed",
        )),
        (Some(c), false) => {
            CannedAcl::parse(c).map(|c| Some(AclRequest::Canned(c))).ok_or_else(|| invalid_argument("Invalid canned ACL"))
        }
        (None, true) => {
            let mut grants = Vec::new();
            for (name, perm) in GRANT_HEADERS {
                for v in h.get_all(name) {
                    parse_grant_header(v, perm, accounts, &mut grants)?;
                }
            }
            Ok(Some(AclRequest::Grants(grants)))
        }
        (None, false) => Ok(None),
    }
}

/// The grants of an AccessControlPolicy document for a resource owned by
/// `owner_id`. A document naming another owner is refused.
pub fn from_document(doc: AccessControlPolicy, owner_id: &str, accounts: &Identities) -> S3Result<AclRequest> {
    if doc.owner_id.as_deref().is_some_and(|id| id != owner_id) {
        return Err(S3Error::new(S3ErrorCode::AccessDenied));
    }
    if doc.grants.len() > MAX_GRANTS {
        return Err(S3Error::new(S3ErrorCode::MalformedACLError));
    }
    let mut grants = Vec::with_capacity(doc.grants.len());
    for g in doc.grants {
        let permission = Permission::parse(&g.permission).ok_or_else(|| S3Error::new(S3ErrorCode::MalformedACLError))?;
        let grantee = match g.grantee {
            XmlGrantee::CanonicalUser { id, .. } => resolve_grantee("id", &id, accounts)?,
            XmlGrantee::Group { uri } => resolve_grantee("uri", &uri, accounts)?,
            XmlGrantee::Email { address } => resolve_grantee("emailaddress", &address, accounts)?,
        };
        grants.push(Grant { grantee, permission });
    }
    Ok(AclRequest::Grants(grants))
}

/// The ACL as Get*Acl renders it.
pub fn render(acl: &Acl) -> String {
    let grants: Vec<XmlGrant> = acl
        .grants
        .iter()
        .map(|g| XmlGrant {
            grantee: match &g.grantee {
                Grantee::User { id, display_name } => {
                    XmlGrantee::CanonicalUser { id: id.clone(), display_name: Some(display_name.clone()) }
                }
                Grantee::Group(gr) => XmlGrantee::Group { uri: gr.uri().to_string() },
            },
            permission: g.permission.as_str().to_string(),
        })
        .collect();
    tessera_proto::xml_access::render_access_control_policy(&acl.owner_id, &acl.owner_display, &grants)
}

/// Whether a request's ACL is acceptable under `ownership`: with
/// BucketOwnerEnforced only `bucket-owner-full-control` (or an ACL that
/// gives the bucket owner full control and nothing to anyone else) passes.
pub fn check_enforced(req: Option<&AclRequest>, ownership: Option<Ownership>, bucket_owner: &str) -> S3Result<()> {
    if ownership != Some(Ownership::BucketOwnerEnforced) {
        return Ok(());
    }
    let ok = match req {
        None => true,
        Some(AclRequest::Canned(c)) => *c == CannedAcl::BucketOwnerFullControl,
        Some(AclRequest::Grants(g)) => {
            Acl { owner_id: bucket_owner.into(), owner_display: String::new(), grants: g.clone() }
                .is_owner_full_control_only(bucket_owner)
        }
    };
    if ok {
        Ok(())
    } else {
        Err(S3Error::new(S3ErrorCode::AccessControlListNotSupported))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trip() {
        let mut acl = CannedAcl::PublicReadWrite.expand(("o", "Owner"), ("o", "Owner"));
        acl.grants.push(Grant { grantee: Grantee::Group(Group::LogDelivery), permission: Permission::WriteAcp });
        let mut e = Enc::default();
        encode(&mut e, &acl);
        let bytes = e.finish();
        let mut d = Dec::from_raw(&bytes);
        assert_eq!(decode(&mut d), Some(acl));
        let mut d = Dec::from_raw(&bytes[..bytes.len() - 1]);
        assert_eq!(decode(&mut d), None, "truncated");
        let mut bad = bytes.clone();
        bad[0] = 9;
        assert_eq!(decode(&mut Dec::from_raw(&bad)), None, "unknown version");
    }

    #[test]
    fn enforced_ownership() {
        let e = Some(Ownership::BucketOwnerEnforced);
        assert!(check_enforced(None, e, "o").is_ok());
        assert!(check_enforced(Some(&AclRequest::Canned(CannedAcl::BucketOwnerFullControl)), e, "o").is_ok());
        assert!(check_enforced(Some(&AclRequest::Canned(CannedAcl::Private)), e, "o").is_err());
        assert!(check_enforced(Some(&AclRequest::Canned(CannedAcl::PublicRead)), None, "o").is_ok());
        for o in [Ownership::BucketOwnerEnforced, Ownership::BucketOwnerPreferred, Ownership::ObjectWriter] {
            assert_eq!(Ownership::from_code(o.code()), Some(o));
            assert_eq!(Ownership::parse(o.as_str()), Some(o));
        }
    }
}
