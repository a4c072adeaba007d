//! S3 access control lists: grants of READ, WRITE, READ_ACP, WRITE_ACP and
//! FULL_CONTROL to canonical users and to the AllUsers, AuthenticatedUsers
//! and LogDelivery groups; canned ACLs; which actions each permission
//! grants on a bucket and on an object (AWS's mapping table).

/// Most grants in one ACL (S3's limit).
pub const MAX_GRANTS: usize = 100;

pub const ALL_USERS_URI: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
pub const AUTHENTICATED_USERS_URI: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";
pub const LOG_DELIVERY_URI: &str = "http://acs.amazonaws.com/groups/s3/LogDelivery";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    Read,
    Write,
    ReadAcp,
    WriteAcp,
    FullControl,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "READ",
            Permission::Write => "WRITE",
            Permission::ReadAcp => "READ_ACP",
            Permission::WriteAcp => "WRITE_ACP",
            Permission::FullControl => "FULL_CONTROL",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "READ" => Permission::Read,
            "WRITE" => Permission::Write,
            "READ_ACP" => Permission::ReadAcp,
            "WRITE_ACP" => Permission::WriteAcp,
            "FULL_CONTROL" => Permission::FullControl,
            _ => return None,
        })
    }

    /// Whether a grant of `self` covers `needed`.
    pub fn covers(self, needed: Permission) -> bool {
        self == needed || self == Permission::FullControl
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    AllUsers,
    AuthenticatedUsers,
    LogDelivery,
}

impl Group {
    pub fn uri(self) -> &'static str {
        match self {
            Group::AllUsers => ALL_USERS_URI,
            Group::AuthenticatedUsers => AUTHENTICATED_USERS_URI,
            Group::LogDelivery => LOG_DELIVERY_URI,
        }
    }

    pub fn from_uri(uri: &str) -> Option<Self> {
        match uri {
            ALL_USERS_URI => Some(Group::AllUsers),
            AUTHENTICATED_USERS_URI => Some(Group::AuthenticatedUsers),
            LOG_DELIVERY_URI => Some(Group::LogDelivery),
            _ => None,
        }
    }

    /// Public groups: a grant to them makes a resource public.
    pub fn is_public(self) -> bool {
        matches!(self, Group::AllUsers | Group::AuthenticatedUsers)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grantee {
    /// An account by its canonical id (display name as recorded).
    User { id: String, display_name: String },
    Group(Group),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub grantee: Grantee,
    pub permission: Permission,
}

/// An owner and its grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    pub owner_id: String,
    pub owner_display: String,
    pub grants: Vec<Grant>,
}

/// Who asks, as an ACL sees them: an account, or nobody.
#[derive(Debug, Clone, Copy)]
pub struct AclSubject<'a> {
    /// The requester's account (canonical id); `None` when anonymous.
    pub account: Option<&'a str>,
}

impl Acl {
    /// The owner with FULL_CONTROL: every bucket's and object's ACL until set.
    pub fn private(owner_id: &str, owner_display: &str) -> Acl {
        Acl {
            owner_id: owner_id.into(),
            owner_display: owner_display.into(),
            grants: vec![Grant {
                grantee: Grantee::User { id: owner_id.into(), display_name: owner_display.into() },
                permission: Permission::FullControl,
            }],
        }
    }

    /// Whether the ACL grants `needed` to `who`. Grants to the public
    /// groups are skipped when `ignore_public` (IgnorePublicAcls).
    /// `account_grants`: whether grants to the requester's account count
    /// (an account's root, not its IAM principals, which need the
    /// account's identity-based permission as well).
    pub fn grants(&self, needed: Permission, who: AclSubject<'_>, ignore_public: bool, account_grants: bool) -> bool {
        self.grants.iter().any(|g| {
            if !g.permission.covers(needed) {
                return false;
            }
            match &g.grantee {
                Grantee::User { id, .. } => account_grants && who.account == Some(id.as_str()),
                Grantee::Group(Group::AllUsers) => !ignore_public,
                Grantee::Group(Group::AuthenticatedUsers) => !ignore_public && who.account.is_some(),
                Grantee::Group(Group::LogDelivery) => false,
            }
        })
    }

    /// Whether any grant goes to AllUsers or AuthenticatedUsers.
    pub fn is_public(&self) -> bool {
        self.grants.iter().any(|g| matches!(g.grantee, Grantee::Group(gr) if gr.is_public()))
    }

    /// Whether the bucket owner `owner` has FULL_CONTROL and nobody else
    /// has anything (what BucketOwnerEnforced accepts).
    pub fn is_owner_full_control_only(&self, owner: &str) -> bool {
        self.grants.iter().all(|g| matches!(&g.grantee, Grantee::User { id, .. } if id == owner))
            && self.grants.iter().any(|g| g.permission == Permission::FullControl)
    }
}

/// The canned ACLs (`x-amz-acl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CannedAcl {
    Private,
    PublicRead,
    PublicReadWrite,
    AuthenticatedRead,
    AwsExecRead,
    BucketOwnerRead,
    BucketOwnerFullControl,
    LogDeliveryWrite,
}

impl CannedAcl {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "private" => CannedAcl::Private,
            "public-read" => CannedAcl::PublicRead,
            "public-read-write" => CannedAcl::PublicReadWrite,
            "authenticated-read" => CannedAcl::AuthenticatedRead,
            "aws-exec-read" => CannedAcl::AwsExecRead,
            "bucket-owner-read" => CannedAcl::BucketOwnerRead,
            "bucket-owner-full-control" => CannedAcl::BucketOwnerFullControl,
            "log-delivery-write" => CannedAcl::LogDeliveryWrite,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CannedAcl::Private => "private",
            CannedAcl::PublicRead => "public-read",
            CannedAcl::PublicReadWrite => "public-read-write",
            CannedAcl::AuthenticatedRead => "authenticated-read",
            CannedAcl::AwsExecRead => "aws-exec-read",
            CannedAcl::BucketOwnerRead => "bucket-owner-read",
            CannedAcl::BucketOwnerFullControl => "bucket-owner-full-control",
            CannedAcl::LogDeliveryWrite => "log-delivery-write",
        }
    }

    /// The ACL this canned ACL stands for, for a resource owned by `owner`
    /// in a bucket owned by `bucket_owner` (the `bucket-owner-*` ACLs add
    /// the bucket owner; on a bucket they are the owner's alone).
    pub fn expand(self, owner: (&str, &str), bucket_owner: (&str, &str)) -> Acl {
        let mut acl = Acl::private(owner.0, owner.1);
        let group = |g, p| Grant { grantee: Grantee::Group(g), permission: p };
        let bucket_owner_grant = |p| Grant {
            grantee: Grantee::User { id: bucket_owner.0.into(), display_name: bucket_owner.1.into() },
            permission: p,
        };
        // Group grants come before the owner's (as Ceph's RGW lists them,
        // which ceph/s3-tests checks by position; S3 gives grants no order).
        let groups = |acl: &mut Acl, grants: Vec<Grant>| {
            acl.grants.splice(0..0, grants);
        };
        match self {
            CannedAcl::Private | CannedAcl::AwsExecRead => {}
            CannedAcl::PublicRead => groups(&mut acl, vec![group(Group::AllUsers, Permission::Read)]),
            CannedAcl::PublicReadWrite => {
                groups(&mut acl, vec![group(Group::AllUsers, Permission::Read), group(Group::AllUsers, Permission::Write)])
            }
            CannedAcl::AuthenticatedRead => groups(&mut acl, vec![group(Group::AuthenticatedUsers, Permission::Read)]),
            CannedAcl::BucketOwnerRead if owner.0 != bucket_owner.0 => {
                acl.grants.push(bucket_owner_grant(Permission::Read))
            }
            CannedAcl::BucketOwnerFullControl if owner.0 != bucket_owner.0 => {
                acl.grants.push(bucket_owner_grant(Permission::FullControl))
            }
            CannedAcl::BucketOwnerRead | CannedAcl::BucketOwnerFullControl => {}
            CannedAcl::LogDeliveryWrite => {
                groups(&mut acl, vec![group(Group::LogDelivery, Permission::Write), group(Group::LogDelivery, Permission::ReadAcp)])
            }
        }
        acl
    }

    /// Whether it grants anything to a public group.
    pub fn is_public(self) -> bool {
        matches!(self, CannedAcl::PublicRead | CannedAcl::PublicReadWrite | CannedAcl::AuthenticatedRead)
    }
}

/// The ACL permission on a bucket that grants `action`, if any.
pub fn bucket_permission_for(action: &str) -> Option<Permission> {
    Some(match action {
        "s3:ListBucket" | "s3:ListBucketVersions" | "s3:ListBucketMultipartUploads" => Permission::Read,
        "s3:PutObject" | "s3:DeleteObject" | "s3:DeleteObjectVersion" | "s3:AbortMultipartUpload" => Permission::Write,
        "s3:GetBucketAcl" => Permission::ReadAcp,
        "s3:PutBucketAcl" => Permission::WriteAcp,
        _ => return None,
    })
}

/// The ACL permission on an object that grants `action`, if any.
pub fn object_permission_for(action: &str) -> Option<Permission> {
    Some(match action {
        "s3:GetObject" | "s3:GetObjectVersion" | "s3:GetObjectTorrent" => Permission::Read,
        "s3:GetObjectAcl" | "s3:GetObjectVersionAcl" => Permission::ReadAcp,
        "s3:PutObjectAcl" | "s3:PutObjectVersionAcl" => Permission::WriteAcp,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_expansions() {
        let o = ("owner", "Owner");
        let b = ("bucket-owner", "BO");
        let acl = CannedAcl::PublicReadWrite.expand(o, o);
        assert_eq!(acl.grants.len(), 3);
        // The groups' grants first, the owner's last.
        assert!(matches!(acl.grants[0].grantee, Grantee::Group(Group::AllUsers)) && acl.grants[0].permission == Permission::Read);
        assert!(matches!(acl.grants[1].grantee, Grantee::Group(Group::AllUsers)) && acl.grants[1].permission == Permission::Write);
        assert!(matches!(&acl.grants[2].grantee, Grantee::User { id, .. } if id == "owner"));
        assert!(acl.is_public());
        let anon = AclSubject { account: None };
        let other = AclSubject { account: Some("x") };
        assert!(acl.grants(Permission::Write, anon, false, true));
        assert!(!acl.grants(Permission::Write, anon, true, true), "IgnorePublicAcls");
        let acl = CannedAcl::AuthenticatedRead.expand(o, o);
        assert!(!acl.grants(Permission::Read, anon, false, true));
        assert!(acl.grants(Permission::Read, other, false, true));
        let acl = CannedAcl::BucketOwnerFullControl.expand(o, b);
        assert!(acl.grants(Permission::WriteAcp, AclSubject { account: Some("bucket-owner") }, false, true));
        assert!(!acl.grants(Permission::WriteAcp, AclSubject { account: Some("bucket-owner") }, false, false));
        assert_eq!(CannedAcl::BucketOwnerFullControl.expand(o, o).grants.len(), 1);
        assert!(CannedAcl::Private.expand(o, o).is_owner_full_control_only("owner"));
        assert!(!CannedAcl::PublicRead.expand(o, o).is_owner_full_control_only("owner"));
        for c in ["private", "public-read", "public-read-write", "authenticated-read", "aws-exec-read", "bucket-owner-read", "bucket-owner-full-control", "log-delivery-write"] {
            assert_eq!(CannedAcl::parse(c).map(CannedAcl::as_str), Some(c));
        }
        assert!(CannedAcl::parse("public").is_none());
    }

    #[test]
    fn permission_mapping() {
        assert_eq!(bucket_permission_for("s3:ListBucket"), Some(Permission::Read));
        assert_eq!(bucket_permission_for("s3:PutObject"), Some(Permission::Write));
        assert_eq!(object_permission_for("s3:GetObjectVersion"), Some(Permission::Read));
        assert_eq!(object_permission_for("s3:PutObject"), None);
        assert!(Permission::FullControl.covers(Permission::ReadAcp));
        assert!(!Permission::Read.covers(Permission::Write));
    }
}
