//! XML documents of access control: AccessControlPolicy (Get/Put ACLs),
//! PublicAccessBlockConfiguration, OwnershipControls and PolicyStatus.
//! Grants are carried as text here (permission names, grantee ids, group
//! URIs, e-mail addresses); the node validates and resolves them.

use crate::xml::{parse, Element, XmlWriter};
use crate::{S3Error, S3ErrorCode, S3Result};

/// Most `<Grant>` elements read from an AccessControlPolicy (S3 allows
/// 100; more is refused by the caller, this only bounds the work).
pub const MAX_XML_GRANTS: usize = 1000;

const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XmlGrantee {
    CanonicalUser { id: String, display_name: Option<String> },
    Group { uri: String },
    Email { address: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlGrant {
    pub grantee: XmlGrantee,
    pub permission: String,
}

/// An `<AccessControlPolicy>`: the owner as given and the grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessControlPolicy {
    pub owner_id: Option<String>,
    pub owner_display: Option<String>,
    pub grants: Vec<XmlGrant>,
}

fn malformed_acl() -> S3Error {
    S3Error::new(S3ErrorCode::MalformedACLError)
}

fn grantee(e: &Element) -> S3Result<XmlGrantee> {
    // The xsi:type attribute names the kind; the children say it as well.
    let text = |n: &str| e.child_text(n).map(|t| t.trim().to_string());
    if let Some(id) = text("ID") {
        return Ok(XmlGrantee::CanonicalUser { id, display_name: text("DisplayName") });
    }
    if let Some(uri) = text("URI") {
        return Ok(XmlGrantee::Group { uri });
    }
    if let Some(address) = text("EmailAddress") {
        return Ok(XmlGrantee::Email { address });
    }
    Err(malformed_acl())
}

/// Parses a PutBucketAcl / PutObjectAcl body.
pub fn parse_access_control_policy(body: &[u8]) -> S3Result<AccessControlPolicy> {
    let root = parse(body).map_err(|_| malformed_acl())?;
    if root.name != "AccessControlPolicy" {
        return Err(malformed_acl());
    }
    let owner = root.child("Owner");
    let owner_id = owner.and_then(|o| o.child_text("ID")).map(|t| t.trim().to_string());
    let owner_display = owner.and_then(|o| o.child_text("DisplayName")).map(|t| t.trim().to_string());
    let mut grants = Vec::new();
    if let Some(list) = root.child("AccessControlList") {
        for g in list.children_named("Grant") {
            if grants.len() >= MAX_XML_GRANTS {
                return Err(malformed_acl());
            }
            let who = g.child("Grantee").ok_or_else(malformed_acl)?;
            let permission = g.child_text("Permission").ok_or_else(malformed_acl)?.trim().to_string();
            grants.push(XmlGrant { grantee: grantee(who)?, permission });
        }
    }
    Ok(AccessControlPolicy { owner_id, owner_display, grants })
}

/// Renders an AccessControlPolicy as Get*Acl answers it.
pub fn render_access_control_policy(owner_id: &str, owner_display: &str, grants: &[XmlGrant]) -> String {
    let mut w = XmlWriter::new().root("AccessControlPolicy");
    w.open("Owner").elem("ID", owner_id).elem("DisplayName", owner_display).close("Owner");
    w.open("AccessControlList");
    let mut out = w.finish();
    for g in grants {
        out.push_str("<Grant>");
        let (kind, inner) = match &g.grantee {
            XmlGrantee::CanonicalUser { id, display_name } => {
                let mut w = XmlWriter::default();
                w.elem("ID", id);
                if let Some(d) = display_name {
                    w.elem("DisplayName", d);
                }
                ("CanonicalUser", w.finish())
            }
            XmlGrantee::Group { uri } => {
                let mut w = XmlWriter::default();
                w.elem("URI", uri);
                ("Group", w.finish())
            }
            XmlGrantee::Email { address } => {
                let mut w = XmlWriter::default();
                w.elem("EmailAddress", address);
                ("AmazonCustomerByEmail", w.finish())
            }
        };
        out.push_str(&format!("<Grantee xmlns:xsi=\"{XSI_NS}\" xsi:type=\"{kind}\">"));
        out.push_str(&inner);
        out.push_str("</Grantee>");
        let mut w = XmlWriter::default();
        w.elem("Permission", &g.permission).close("Grant");
        out.push_str(&w.finish());
    }
    out.push_str("</AccessControlList></AccessControlPolicy>");
    out
}

/// The four switches of a PublicAccessBlockConfiguration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublicAccessBlock {
    pub block_public_acls: bool,
    pub ignore_public_acls: bool,
    pub block_public_policy: bool,
    pub restrict_public_buckets: bool,
}

fn bool_child(e: &Element, name: &str) -> S3Result<bool> {
    match e.child_text(name).map(str::trim) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(S3Error::new(S3ErrorCode::MalformedXML)),
    }
}

pub fn parse_public_access_block(body: &[u8]) -> S3Result<PublicAccessBlock> {
    let root = parse(body)?;
    if root.name != "PublicAccessBlockConfiguration" {
        return Err(S3Error::new(S3ErrorCode::MalformedXML));
    }
    Ok(PublicAccessBlock {
        block_public_acls: bool_child(&root, "BlockPublicAcls")?,
        ignore_public_acls: bool_child(&root, "IgnorePublicAcls")?,
        block_public_policy: bool_child(&root, "BlockPublicPolicy")?,
        restrict_public_buckets: bool_child(&root, "RestrictPublicBuckets")?,
    })
}

pub fn render_public_access_block(p: &PublicAccessBlock) -> String {
    let b = |v: bool| if v { "true" } else { "false" };
    let mut w = XmlWriter::new().root("PublicAccessBlockConfiguration");
    w.elem("BlockPublicAcls", b(p.block_public_acls))
        .elem("IgnorePublicAcls", b(p.ignore_public_acls))
        .elem("BlockPublicPolicy", b(p.block_public_policy))
        .elem("RestrictPublicBuckets", b(p.restrict_public_buckets))
        .close("PublicAccessBlockConfiguration");
    w.finish()
}

/// The `ObjectOwnership` of an `<OwnershipControls>` document (exactly one
/// rule), as given.
pub fn parse_ownership_controls(body: &[u8]) -> S3Result<String> {
    let root = parse(body)?;
    let malformed = || S3Error::new(S3ErrorCode::MalformedXML);
    if root.name != "OwnershipControls" {
        return Err(malformed());
    }
    let mut rules = root.children_named("Rule");
    let (Some(rule), None) = (rules.next(), rules.next()) else { return Err(malformed()) };
    Ok(rule.child_text("ObjectOwnership").ok_or_else(malformed)?.trim().to_string())
}

pub fn render_ownership_controls(ownership: &str) -> String {
    let mut w = XmlWriter::new().root("OwnershipControls");
    w.open("Rule").elem("ObjectOwnership", ownership).close("Rule").close("OwnershipControls");
    w.finish()
}

pub fn render_policy_status(is_public: bool) -> String {
    let mut w = XmlWriter::new().root("PolicyStatus");
    w.elem("IsPublic", if is_public { "true" } else { "false" }).close("PolicyStatus");
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_round_trip() {
        let grants = vec![
            XmlGrant {
                grantee: XmlGrantee::CanonicalUser { id: "abc".into(), display_name: Some("A & B".into()) },
                permission: "FULL_CONTROL".into(),
            },
            XmlGrant {
                grantee: XmlGrantee::Group { uri: "http://acs.amazonaws.com/groups/global/AllUsers".into() },
                permission: "READ".into(),
            },
            XmlGrant { grantee: XmlGrantee::Email { address: "a@b.c".into() }, permission: "WRITE".into() },
        ];
        let text = render_access_control_policy("abc", "A & B", &grants);
        let p = parse_access_control_policy(text.as_bytes()).unwrap();
        assert_eq!(p.owner_id.as_deref(), Some("abc"));
        assert_eq!(p.owner_display.as_deref(), Some("A & B"));
        assert_eq!(p.grants, grants);
    }

    #[test]
    fn acl_refusals() {
        for bad in [
            &b"<Other/>"[..],
            b"<AccessControlPolicy><AccessControlList><Grant><Permission>READ</Permission></Grant></AccessControlList></AccessControlPolicy>",
            b"<AccessControlPolicy><AccessControlList><Grant><Grantee><Foo/></Grantee><Permission>READ</Permission></Grant></AccessControlList></AccessControlPolicy>",
            b"<AccessControlPolicy><AccessControlList><Grant><Grantee><ID>x</ID></Grantee></Grant></AccessControlList></AccessControlPolicy>",
            b"not xml",
        ] {
            assert_eq!(parse_access_control_policy(bad).unwrap_err().code, S3ErrorCode::MalformedACLError);
        }
        let empty = parse_access_control_policy(b"<AccessControlPolicy><Owner><ID>o</ID></Owner></AccessControlPolicy>").unwrap();
        assert!(empty.grants.is_empty());
    }

    #[test]
    fn public_access_block_and_ownership() {
        let p = PublicAccessBlock { block_public_acls: true, ignore_public_acls: false, block_public_policy: true, restrict_public_buckets: false };
        assert_eq!(parse_public_access_block(render_public_access_block(&p).as_bytes()).unwrap(), p);
        assert!(parse_public_access_block(b"<PublicAccessBlockConfiguration><BlockPublicAcls>yes</BlockPublicAcls></PublicAccessBlockConfiguration>").is_err());
        assert_eq!(parse_ownership_controls(render_ownership_controls("BucketOwnerEnforced").as_bytes()).unwrap(), "BucketOwnerEnforced");
        assert!(parse_ownership_controls(b"<OwnershipControls></OwnershipControls>").is_err());
        assert!(parse_ownership_controls(b"<OwnershipControls><Rule><ObjectOwnership>A</ObjectOwnership></Rule><Rule/></OwnershipControls>").is_err());
        assert!(render_policy_status(true).contains("<IsPublic>true</IsPublic>"));
    }
}
