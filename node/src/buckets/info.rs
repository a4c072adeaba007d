//! A bucket's configuration: `BucketInfo` (what the registry holds per
//! bucket) and the types of its fields (versioning, object lock and default
//! retention, the bucket policy), with the S3 limits on them. The stored
//! form is in `record.rs`.

use std::sync::Arc;

use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use tessera_proto::cors::CorsRule;
use tessera_proto::lifecycle::Lifecycle;
use tessera_proto::logging::LoggingConfig;
use tessera_proto::notification::NotificationConfig;

use tessera_policy::{Acl, Policy};
use tessera_proto::xml_access::PublicAccessBlock;

use super::gate::{GateGuard, WriteGate};
use crate::acl::Ownership;
use crate::meta::LockMode;

/// Largest bucket policy accepted (S3's limit).
pub const MAX_BUCKET_POLICY_BYTES: usize = 20 * 1024;
/// Most tags a bucket has (S3's limit).
pub const MAX_BUCKET_TAGS: usize = 50;

/// A bucket's versioning state. Once versioned, a bucket never goes back to
/// `Unversioned`; `Suspended` writes `null` versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Versioning {
    #[default]
    Unversioned,
    Enabled,
    Suspended,
}

/// How long a bucket's default retention keeps new versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionPeriod {
    Days(u32),
    Years(u32),
}

/// Milliseconds in a day; a retention year is 365 days.
pub const DAY_MS: i64 = 86_400_000;

impl RetentionPeriod {
    pub fn millis(self) -> i64 {
        match self {
            // Saturating: a record read from disk may hold any count.
            RetentionPeriod::Days(d) => i64::from(d).saturating_mul(DAY_MS),
            RetentionPeriod::Years(y) => i64::from(y).saturating_mul(365 * DAY_MS),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultRetention {
    pub mode: LockMode,
    pub period: RetentionPeriod,
}

/// Object lock configuration: present means object lock is enabled (for
/// good: S3 cannot turn it off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LockConfig {
    pub default_retention: Option<DefaultRetention>,
}

/// A bucket policy: the document as the client gave it (GetBucketPolicy
/// returns it byte for byte) and as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketPolicy {
    pub text: String,
    pub parsed: Policy,
    /// Grants something to everyone (see `tessera_policy::public`).
    pub public: bool,
}

impl BucketPolicy {
    /// Parses a stored or submitted document.
    pub fn new(text: String) -> Result<Self, tessera_policy::PolicyError> {
        let parsed = tessera_policy::parse(&text, tessera_policy::Kind::Resource)?;
        let public = tessera_policy::public::policy_is_public(&parsed);
        Ok(BucketPolicy { text, parsed, public })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketInfo {
    /// Random id chosen at creation; keys of the bucket's objects carry it.
    pub id: u64,
    pub name: String,
    pub owner_id: String,
    pub owner_display: String,
    pub created_ms: i64,
    pub location: Option<String>,
    pub versioning: Versioning,
    /// `Some` once object lock is enabled.
    pub object_lock: Option<LockConfig>,
    /// Bucket tags (kept in the record's meta bytes: they can be large).
    pub tags: Vec<(String, String)>,
    /// CORS rules (none: CORS not configured). In the meta bytes.
    pub cors: Vec<CorsRule>,
    /// Server access logging (in the meta bytes).
    pub logging: Option<LoggingConfig>,
    /// The bucket's ACL; `None`: the owner's FULL_CONTROL (meta bytes).
    pub acl: Option<Acl>,
    /// The bucket policy (meta bytes).
    pub policy: Option<Arc<BucketPolicy>>,
    pub public_access_block: Option<PublicAccessBlock>,
    /// Object ownership controls; `None` behaves as ObjectWriter.
    pub ownership: Option<Ownership>,
    /// Default encryption of new objects (meta bytes).
    pub encryption: Option<crate::sse::BucketEncryption>,
    /// Lifecycle rules (meta bytes).
    pub lifecycle: Option<Arc<Lifecycle>>,
    /// Chosen at random (never 0) when the bucket gains a lifecycle
    /// configuration, kept while it has one: the lifecycle index of the
    /// bucket is complete on a shard only if its backfill ran for this
    /// stamp (`lifecycle::index`). 0 for a configuration stored before the
    /// stamp existed. Meta bytes, with the configuration.
    pub lifecycle_stamp: u64,
    /// Event notifications (meta bytes); `None` or empty: none.
    pub notification: Option<Arc<NotificationConfig>>,
    /// Bucket replication rules (meta bytes).
    pub replication: Option<Arc<tessera_proto::replication::ReplicationConfig>>,
    /// Not stored: the writes to this bucket in flight, which DeleteBucket
    /// waits out (see [`WriteGate`]).
    pub gate: Arc<WriteGate>,
}

impl BucketInfo {
    /// Enters the bucket's write gate right before a commit; hold the guard
    /// until the commit is acknowledged. `NoSuchBucket` once the bucket is
    /// being deleted or is gone (also when it was deleted and created again
    /// since the request looked it up: the new one has another gate).
    pub fn enter_write(&self) -> S3Result<GateGuard> {
        self.gate.enter().ok_or_else(|| S3Error::new(S3ErrorCode::NoSuchBucket))
    }

    /// The bucket's ACL as stored, or the owner's FULL_CONTROL.
    pub fn effective_acl(&self) -> Acl {
        self.acl.clone().unwrap_or_else(|| Acl::private(&self.owner_id, &self.owner_display))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_periods_never_overflow() {
        assert_eq!(RetentionPeriod::Days(1).millis(), DAY_MS);
        assert_eq!(RetentionPeriod::Years(1).millis(), 365 * DAY_MS);
        assert_eq!(RetentionPeriod::Years(u32::MAX).millis(), i64::MAX, "saturates");
        assert!(RetentionPeriod::Days(u32::MAX).millis() > 0);
    }
}
