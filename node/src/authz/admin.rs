//! Authorization of the admin API (`/admin/v1/...` on the admin listener).
//! The node's operator is the root account (the one of `TESSERA_ACCESS_KEY`
//! or the generated credentials): its root identity may call every admin
//! action, and so may its IAM users, roles and sessions whose policies
//! allow the action (`admin:ServerInfo`, or `admin:*`). Other accounts, the
//! users-file ones included, are tenants: never admins.

use std::net::IpAddr;

use tessera_policy::{Context, Policy, Subject, SubjectKind, Target};
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use super::Principal;

/// `GET /admin/v1/info`.
pub const ACTION_SERVER_INFO: &str = "admin:ServerInfo";
/// `GET /admin/v1/buckets`: bucket usage (MinIO's name for it).
pub const ACTION_DATA_USAGE: &str = "admin:DataUsageInfo";
/// `GET /admin/v1/scrub`: scrub and compaction status.
pub const ACTION_SCRUB_STATUS: &str = "admin:ScrubStatus";
/// `GET /admin/v1/heal`: disks' state and healing.
pub const ACTION_HEAL_STATUS: &str = "admin:HealStatus";
/// `GET /admin/v1/config`: the settings in effect (no secret among them).
pub const ACTION_GET_CONFIG: &str = "admin:GetConfig";
/// `GET /admin/v1/cluster`: members and their state.
pub const ACTION_CLUSTER_STATUS: &str = "admin:ClusterStatus";
/// `PUT`/`DELETE /admin/v1/cluster/config/KEY`: write the cluster configuration.
pub const ACTION_CLUSTER_CONFIG: &str = "admin:ClusterConfig";
/// `GET /admin/v1/replication`: the bucket replication backlog.
pub const ACTION_REPLICATION_STATUS: &str = "admin:ReplicationStatus";
/// `POST /admin/v1/replication/resync?bucket=B`: queue a bucket's FAILED
/// versions again.
pub const ACTION_REPLICATION_RESYNC: &str = "admin:ReplicationResync";
/// List and create master keys of the built-in key service.
pub const ACTION_KMS_KEYS: &str = "admin:KmsKeys";
/// The resource every admin action is on (one node, one resource).
pub const ADMIN_RESOURCE: &str = "arn:tessera:admin:::node";

/// Allows `action` to `p`, or answers AccessDenied.
pub fn authorize(p: &Principal, action: &str, peer: IpAddr, now_unix: i64) -> S3Result<()> {
    let denied = || S3Error::with_message(S3ErrorCode::AccessDenied, "admin access denied");
    let Some(account) = p.account.as_ref().filter(|a| a.is_root) else { return Err(denied()) };
    if p.kind == SubjectKind::Root && p.session.is_none() {
        return Ok(());
    }
    let pols = p.policies();
    let identity: Vec<&Policy> = pols.identity.iter().map(|x| x.as_ref()).collect();
    let subject = Subject {
        kind: p.kind,
        facts: &p.facts,
        identity: &identity,
        session: pols.session.as_deref(),
        boundary: pols.boundary.as_deref(),
    };
    let target = Target {
        action,
        resource: ADMIN_RESOURCE,
        owner: &account.user_id,
        policy: None,
        policy_grants: false,
        acl: None,
        ignore_public_acls: false,
        restrict_public: false,
        root_backstop: false,
    };
    let mut cond = Context::new();
    cond.insert("aws:SourceIp", peer.to_string());
    cond.insert("aws:CurrentTime", tessera_policy::time::format_iso8601(now_unix));
    cond.insert("aws:EpochTime", now_unix.to_string());
    cond.insert("aws:PrincipalType", p.principal_type());
    cond.insert("aws:PrincipalArn", p.facts.arn.clone());
    if tessera_policy::authorize(&subject, &target, &cond).allowed() {
        Ok(())
    } else {
        Err(denied())
    }
}
