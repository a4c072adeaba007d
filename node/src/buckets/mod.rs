//! Buckets: a registry every reactor reads without locks (an `ArcSwap`
//! snapshot), kept durable as records in the meta shard's bucket table.
//!
//! Creating, deleting and reconfiguring a bucket (versioning, object lock,
//! tags) is rare: those take a per-name claim (never on the object path),
//! commit the record, then publish a new snapshot.
//!
//! - `info.rs`: the bucket's configuration (`BucketInfo` and the types of
//!   its fields: versioning, object lock, policy) and the S3 limits on it.
//! - `record.rs`: the stored record, `BucketInfo::encode` / `decode` (a
//!   format boundary: summary v1..v3, meta bytes v1 and sections).
//! - `gate.rs`: the write gate that orders object writes against
//!   DeleteBucket.
//! - `registry.rs`: `Buckets`, the in-memory registry: load, create,
//!   update, delete.
//! - `name.rs`: bucket name validation.
//! - `cluster.rs`: in cluster mode, the records in the Raft configuration
//!   (`bucket/<name>`), the feed that rebuilds every node's snapshot from
//!   them, and DeleteBucket across the nodes.

pub mod cluster;
mod gate;
mod info;
mod name;
mod record;
mod registry;

pub use gate::{GateGuard, WriteGate};
pub use info::{
    BucketInfo, BucketPolicy, DefaultRetention, LockConfig, RetentionPeriod, Versioning, DAY_MS,
    MAX_BUCKET_POLICY_BYTES, MAX_BUCKET_TAGS,
};
pub use name::valid_bucket_name;
pub use registry::{Buckets, DELETE_DRAIN_TIMEOUT, UPDATE_CLAIM_WAIT};
