//! Every routed S3 operation mapped to the IAM actions it needs, and on
//! which resource (AWS's "Actions, resources, and condition keys for
//! Amazon S3"). Headers that ask for more (an ACL, tags, object lock
//! settings on a write) add the actions that govern them.

use tessera_proto::router::Op;
use tessera_proto::Headers;

/// What an action applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    /// No bucket (`arn:aws:s3:::*`): ListAllMyBuckets.
    Service,
    Bucket,
    Object,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    pub action: &'static str,
    pub on: On,
}

const fn b(action: &'static str) -> Check {
    Check { action, on: On::Bucket }
}

const fn o(action: &'static str) -> Check {
    Check { action, on: On::Object }
}

/// How an operation is authorized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Checked before the operation runs.
    pub now: Vec<Check>,
    /// Object actions that an object's ACL can grant: checked by the
    /// handler with the object's owner, ACL and tags once it has loaded
    /// the object (reading it twice would double the I/O of every GET),
    /// before anything of it is sent.
    pub object: Vec<Check>,
    /// CopyObject / UploadPartCopy: the source's read action, checked
    /// once the source is loaded.
    pub copy_source: Option<&'static str>,
    /// DeleteObjects: each key is checked by the handler.
    pub per_key: bool,
}

fn has_any(h: &Headers, names: &[&str]) -> bool {
    names.iter().any(|n| h.contains(n))
}

fn acl_headers(h: &Headers) -> bool {
    has_any(
        h,
        &["x-amz-acl", "x-amz-grant-read", "x-amz-grant-write", "x-amz-grant-read-acp", "x-amz-grant-write-acp", "x-amz-grant-full-control"],
    )
}

/// Checks a write of a new object version asks for, by its headers.
pub fn write_checks(h: &Headers, out: &mut Vec<Check>) {
    out.push(o("s3:PutObject"));
    if acl_headers(h) {
        // Counts only when explicitly denied (see `authz::passes`).
        out.push(o("s3:PutObjectAcl"));
    }
    if h.contains("x-amz-tagging") {
        out.push(o("s3:PutObjectTagging"));
    }
    if has_any(h, &["x-amz-object-lock-mode", "x-amz-object-lock-retain-until-date"]) {
        out.push(o("s3:PutObjectRetention"));
    }
    if h.contains("x-amz-object-lock-legal-hold") {
        out.push(o("s3:PutObjectLegalHold"));
    }
    if h.contains(crate::replication::H_REPLICA_VERSION) {
        // A replica write keeps the version id it names (see `replication`).
        out.push(o("s3:ReplicateObject"));
    }
}

/// The plan of `op`. `versioned`: the request names a version (`versionId`).
pub fn plan(op: &Op, h: &Headers, versioned: bool) -> Plan {
    let v = |plain: &'static str, version: &'static str| if versioned { version } else { plain };
    let mut p = Plan { now: Vec::new(), object: Vec::new(), copy_source: None, per_key: false };
    let now = |checks: &[Check]| Plan { now: checks.to_vec(), object: Vec::new(), copy_source: None, per_key: false };
    match op {
        Op::ListBuckets => return now(&[Check { action: "s3:ListAllMyBuckets", on: On::Service }]),
        Op::CreateBucket => {
            p.now.push(b("s3:CreateBucket"));
            if acl_headers(h) {
                p.now.push(b("s3:PutBucketAcl"));
            }
            if h.contains("x-amz-object-ownership") {
                p.now.push(b("s3:PutBucketOwnershipControls"));
            }
        }
        Op::HeadBucket | Op::ListObjectsV1 | Op::ListObjectsV2 => return now(&[b("s3:ListBucket")]),
        Op::DeleteBucket => return now(&[b("s3:DeleteBucket")]),
        Op::GetBucketLocation => return now(&[b("s3:GetBucketLocation")]),
        Op::GetBucketVersioning => return now(&[b("s3:GetBucketVersioning")]),
        Op::PutBucketVersioning => return now(&[b("s3:PutBucketVersioning")]),
        Op::GetBucketTagging => return now(&[b("s3:GetBucketTagging")]),
        Op::PutBucketTagging | Op::DeleteBucketTagging => return now(&[b("s3:PutBucketTagging")]),
        Op::GetObjectLockConfiguration => return now(&[b("s3:GetBucketObjectLockConfiguration")]),
        Op::PutObjectLockConfiguration => return now(&[b("s3:PutBucketObjectLockConfiguration")]),
        Op::GetBucketAcl => return now(&[b("s3:GetBucketAcl")]),
        Op::PutBucketAcl => return now(&[b("s3:PutBucketAcl")]),
        Op::GetBucketPolicy => return now(&[b("s3:GetBucketPolicy")]),
        Op::PutBucketPolicy => return now(&[b("s3:PutBucketPolicy")]),
        Op::DeleteBucketPolicy => return now(&[b("s3:DeleteBucketPolicy")]),
        Op::GetBucketPolicyStatus => return now(&[b("s3:GetBucketPolicyStatus")]),
        Op::GetPublicAccessBlock => return now(&[b("s3:GetBucketPublicAccessBlock")]),
        Op::PutPublicAccessBlock | Op::DeletePublicAccessBlock => return now(&[b("s3:PutBucketPublicAccessBlock")]),
        Op::GetBucketOwnershipControls => return now(&[b("s3:GetBucketOwnershipControls")]),
        Op::PutBucketOwnershipControls | Op::DeleteBucketOwnershipControls => {
            return now(&[b("s3:PutBucketOwnershipControls")])
        }
        Op::ListObjectVersions => return now(&[b("s3:ListBucketVersions")]),
        Op::ListMultipartUploads => return now(&[b("s3:ListBucketMultipartUploads")]),
        Op::DeleteObjects => p.per_key = true,
        Op::PutObject | Op::CreateMultipartUpload => write_checks(h, &mut p.now),
        // Checked by the handler once the form (key, ACL fields) is read.
        Op::PostObject | Op::Options => {}
        Op::GetBucketCors => return now(&[b("s3:GetBucketCORS")]),
        Op::PutBucketCors | Op::DeleteBucketCors => return now(&[b("s3:PutBucketCORS")]),
        Op::GetBucketEncryption => return now(&[b("s3:GetEncryptionConfiguration")]),
        Op::PutBucketEncryption | Op::DeleteBucketEncryption => return now(&[b("s3:PutEncryptionConfiguration")]),
        Op::GetBucketLogging => return now(&[b("s3:GetBucketLogging")]),
        Op::PutBucketLogging => return now(&[b("s3:PutBucketLogging")]),
        Op::GetBucketLifecycleConfiguration => return now(&[b("s3:GetLifecycleConfiguration")]),
        Op::PutBucketLifecycleConfiguration | Op::DeleteBucketLifecycle => return now(&[b("s3:PutLifecycleConfiguration")]),
        Op::GetBucketNotificationConfiguration => return now(&[b("s3:GetBucketNotification")]),
        Op::PutBucketNotificationConfiguration => return now(&[b("s3:PutBucketNotification")]),
        Op::GetBucketReplication => return now(&[b("s3:GetReplicationConfiguration")]),
        Op::PutBucketReplication | Op::DeleteBucketReplication => return now(&[b("s3:PutReplicationConfiguration")]),
        Op::CopyObject => {
            write_checks(h, &mut p.now);
            p.copy_source = Some("s3:GetObject");
        }
        Op::CompleteMultipartUpload { .. } if h.contains(crate::replication::H_REPLICA_VERSION) => {
            // A replica completion keeps the version id it names.
            return now(&[o("s3:PutObject"), o("s3:ReplicateObject")]);
        }
        Op::UploadPart { .. } | Op::CompleteMultipartUpload { .. } => return now(&[o("s3:PutObject")]),
        Op::UploadPartCopy { .. } => {
            p.now.push(o("s3:PutObject"));
            p.copy_source = Some("s3:GetObject");
        }
        Op::AbortMultipartUpload { .. } => return now(&[o("s3:AbortMultipartUpload")]),
        Op::ListParts { .. } => return now(&[o("s3:ListMultipartUploadParts")]),
        Op::GetObject | Op::HeadObject | Op::SelectObjectContent => {
            p.object.push(o(v("s3:GetObject", "s3:GetObjectVersion")))
        }
        Op::RestoreObject => return now(&[o("s3:RestoreObject")]),
        Op::GetObjectAcl => p.object.push(o(v("s3:GetObjectAcl", "s3:GetObjectVersionAcl"))),
        Op::PutObjectAcl => p.object.push(o(v("s3:PutObjectAcl", "s3:PutObjectVersionAcl"))),
        Op::DeleteObject if h.contains(crate::replication::H_REPLICA_VERSION) => {
            return now(&[o(v("s3:DeleteObject", "s3:DeleteObjectVersion")), o("s3:ReplicateDelete")])
        }
        Op::DeleteObject => return now(&[o(v("s3:DeleteObject", "s3:DeleteObjectVersion"))]),
        Op::GetObjectTagging => return now(&[o(v("s3:GetObjectTagging", "s3:GetObjectVersionTagging"))]),
        Op::PutObjectTagging => return now(&[o(v("s3:PutObjectTagging", "s3:PutObjectVersionTagging"))]),
        Op::DeleteObjectTagging => return now(&[o(v("s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging"))]),
        Op::GetObjectRetention => return now(&[o("s3:GetObjectRetention")]),
        Op::PutObjectRetention => return now(&[o("s3:PutObjectRetention")]),
        Op::GetObjectLegalHold => return now(&[o("s3:GetObjectLegalHold")]),
        Op::PutObjectLegalHold => return now(&[o("s3:PutObjectLegalHold")]),
        Op::GetObjectAttributes => {
            return now(&[o(v("s3:GetObjectAttributes", "s3:GetObjectVersionAttributes"))])
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_add_what_their_headers_ask() {
        let mut h = Headers::new();
        assert_eq!(plan(&Op::PutObject, &h, false).now, vec![o("s3:PutObject")]);
        h.push("x-amz-acl", "public-read");
        h.push("x-amz-tagging", "a=b");
        h.push("x-amz-object-lock-legal-hold", "ON");
        let p = plan(&Op::PutObject, &h, false);
        let actions: Vec<_> = p.now.iter().map(|c| c.action).collect();
        assert_eq!(actions, ["s3:PutObject", "s3:PutObjectAcl", "s3:PutObjectTagging", "s3:PutObjectLegalHold"]);
        let p = plan(&Op::CopyObject, &Headers::new(), false);
        assert_eq!(p.copy_source, Some("s3:GetObject"));
    }

    #[test]
    fn versions_have_their_own_actions() {
        let h = Headers::new();
        assert_eq!(plan(&Op::GetObject, &h, true).object, vec![o("s3:GetObjectVersion")]);
        assert_eq!(plan(&Op::DeleteObject, &h, true).now, vec![o("s3:DeleteObjectVersion")]);
        assert_eq!(plan(&Op::GetObjectAcl, &h, false).object, vec![o("s3:GetObjectAcl")]);
        assert!(plan(&Op::DeleteObjects, &h, false).per_key);
        assert_eq!(plan(&Op::ListBuckets, &h, false).now[0].on, On::Service);
    }
}
