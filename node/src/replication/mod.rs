//! Bucket replication: the operator's remote targets, the bucket section of
//! a `ReplicationConfiguration`, the durable work queue and its records, and
//! the replica headers a destination honours.
//!
//! Same design as `notify`: a `T_REPLICATION` entry is committed **in the
//! same commit** as the write that causes it (PUT, CompleteMultipartUpload,
//! CopyObject, a delete marker, a version delete), on the object key's
//! shard, through `notify::Pending` (which carries a [`Plan`] beside its
//! notification targets). The key is `target id ++ 00 ++ event id (u64 BE)`
//! with ids from the same `notify::CoreQueue` clock, so per target and shard
//! (hence per key) entries sort in commit order. `worker` sends them, with
//! retries and backoff, and on success marks the source version COMPLETED
//! and deletes the entry in one commit.
//!
//! A replica write (PutObject, or the CompleteMultipartUpload of a version
//! over a single PUT's limit) carries `x-tessera-replica-version` (and
//! `-mtime`, `-etag`, and `-null: true` for a null version, one the source
//! wrote before versioning was enabled): the destination keeps that version
//! id, mtime and ETag (a null version as its null version, replacing an
//! older one and losing to a newer one) and marks the version REPLICA. `authz` requires `s3:ReplicateObject` (writes) or
//! `s3:ReplicateDelete` (deletes) for any request carrying the header, so an
//! ordinary client cannot forge version ids. REPLICA versions are never
//! queued for replication: two sites replicating to each other do not loop.

pub mod backfill;
pub mod retry;
pub mod worker;

use tessera_io::{Body, Mutation};
use tessera_proto::notification::EventName;
use tessera_proto::replication::{parse_destination, ReplicationConfig};
use tessera_proto::time::now_unix_ms;
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use crate::buckets::{BucketInfo, Versioning};
use crate::codec::{Dec, Enc};
use crate::meta::{ObjectSummary, ReplStatus, VersionId, T_REPLICATION};

/// FORMAT BOUNDARY: version of a queue record (the entry's meta bytes).
pub const REPL_RECORD_V1: u8 = 1;
/// FORMAT BOUNDARY: version of the bucket record section holding the
/// configuration (its canonical XML).
pub const REPLICATION_CONFIG_V1: u8 = 1;
/// Replica headers (see the module doc).
pub const H_REPLICA_VERSION: &str = "x-tessera-replica-version";
pub const H_REPLICA_MTIME: &str = "x-tessera-replica-mtime";
pub const H_REPLICA_ETAG: &str = "x-tessera-replica-etag";
pub const H_REPLICA_NULL: &str = "x-tessera-replica-null";

/// A replication remote (`--replication-target`).
pub type TargetSpec = crate::remote_s3::RemoteSpec;

/// `NAME=http://HOST:PORT,ACCESS_KEY,SECRET_KEY[,region=R][,secret-file=PATH]`
/// (`--replication-target`, repeatable; `replication-target = [...]` in the
/// file). With `secret-file`, SECRET_KEY may be empty.
pub fn parse_target_spec(s: &str) -> Result<TargetSpec, String> {
    let (spec, path) = crate::remote_s3::parse_spec("--replication-target", s, &mut |_, _| Ok(false))?;
    if path != "/" {
        return Err(format!("--replication-target {}: URL must be http://HOST:PORT (no path)", spec.id));
    }
    Ok(spec)
}

pub fn check_targets(specs: &[TargetSpec]) -> Result<(), String> {
    for (i, s) in specs.iter().enumerate() {
        if specs[..i].iter().any(|o| o.id == s.id) {
            return Err(format!("--replication-target: name {:?} given twice", s.id));
        }
    }
    Ok(())
}

/// The target and bucket a rule's destination ARN names: a tessera ARN
/// names its target; `arn:aws:s3:::bucket` means the node's only target
/// (or the one called `default`).
pub fn resolve<'a>(targets: &'a [TargetSpec], arn: &'a str) -> Option<(&'a TargetSpec, &'a str)> {
    let (name, bucket) = parse_destination(arn)?;
    let t = match name {
        Some(n) => targets.iter().find(|t| t.id == n)?,
        None if targets.len() == 1 => &targets[0],
        None => targets.iter().find(|t| t.id == "default")?,
    };
    Some((t, bucket))
}

/// Checks a configuration against the node: the bucket versioned, every
/// destination a known target.
pub fn check_config(targets: &[TargetSpec], b: &BucketInfo, c: &ReplicationConfig) -> S3Result<()> {
    if b.versioning != Versioning::Enabled {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            "Versioning must be 'Enabled' on the bucket to apply a replication configuration",
        ));
    }
    for r in &c.rules {
        if resolve(targets, &r.destination).is_none() {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                format!("Destination {} names no replication target of this server (see --replication-target)", r.destination),
            ));
        }
    }
    Ok(())
}

/// The bucket record section.
pub fn encode_config(c: &ReplicationConfig) -> Vec<u8> {
    let mut e = Enc::default();
    e.u8(REPLICATION_CONFIG_V1).str(&tessera_proto::replication::render_config(c));
    e.buf
}

/// A stored configuration (valid when stored, IDs given); one that no
/// longer parses makes the record unreadable rather than silently narrower.
pub fn decode_config(d: &mut Dec<'_>) -> Option<ReplicationConfig> {
    if d.u8()? != REPLICATION_CONFIG_V1 {
        return None;
    }
    let text = d.str()?;
    tessera_proto::replication::parse_config(text.as_bytes(), &mut String::new).ok()
}

/// What a queued entry asks of the remote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Copy the version (object data and metadata).
    Put = 1,
    /// Place a delete marker with the source's id.
    DeleteMarker = 2,
    /// Remove the version by id.
    DeleteVersion = 3,
}

impl Op {
    fn from_code(c: u8) -> Option<Self> {
        [Op::Put, Op::DeleteMarker, Op::DeleteVersion].into_iter().find(|o| *o as u8 == c)
    }
}

/// Replication work a write causes: decided on the request's core, turned
/// into a queue entry inside the write's commit (`notify::Pending`).
#[derive(Debug, Clone)]
pub struct Plan {
    pub op: Op,
    pub target: String,
    pub dest_bucket: String,
    pub storage_class: Option<String>,
    pub rule_id: String,
}

/// The plan of event `name` on `key`, when the bucket's configuration
/// selects it. Tags are not known here: a rule with a tag filter is
/// re-checked by the worker against the version's tags.
pub fn plan(targets: &[TargetSpec], b: &BucketInfo, key: &str, name: EventName) -> Option<Plan> {
    let rc = b.replication.as_ref()?;
    let rule = rc.rule_for(key, None)?;
    let op = match name {
        EventName::Put | EventName::Post | EventName::Copy | EventName::CompleteMultipartUpload => Op::Put,
        EventName::DeleteMarkerCreated if rule.delete_markers == Some(true) => Op::DeleteMarker,
        EventName::Delete if b.versioning != Versioning::Unversioned => Op::DeleteVersion,
        _ => return None,
    };
    let Some((t, bucket)) = resolve(targets, &rule.destination) else {
        tracing::warn!(bucket = %b.name, arn = %rule.destination, "replication target no longer configured; not queued");
        return None;
    };
    Some(Plan {
        op,
        target: t.id.clone(),
        dest_bucket: bucket.to_string(),
        storage_class: rule.storage_class.clone(),
        rule_id: rule.id.clone(),
    })
}

impl Plan {
    /// Marks the version about to be written (PENDING).
    pub fn stamp(&self, s: &mut ObjectSummary) {
        if self.op != Op::DeleteVersion {
            s.repl = ReplStatus::Pending;
        }
    }

    /// The queue entry for `summary` (the version written or removed).
    pub fn mutation(&self, id: u64, bucket: &str, bucket_id: u64, key: &str, summary: &ObjectSummary) -> Mutation {
        let rec = Record {
            op: self.op,
            time_ms: now_unix_ms(),
            bucket: bucket.to_string(),
            bucket_id,
            key: key.to_string(),
            version: summary.version,
            null_version: summary.null_version,
            size: if self.op == Op::Put { summary.size } else { 0 },
            dest_bucket: self.dest_bucket.clone(),
            storage_class: self.storage_class.clone(),
            rule_id: self.rule_id.clone(),
        };
        Mutation::Put {
            table: T_REPLICATION,
            key: crate::notify::queue_key(&self.target, id),
            summary: retry::entry_summary(rec.size, 0),
            meta: rec.encode(),
            body: Body::Inline(Vec::new()),
        }
    }
}

/// The bytes an entry will send (from its index summary).
pub fn entry_bytes(summary: &[u8]) -> u64 {
    summary.get(1..9).and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes)
}

/// One queued piece of work (FORMAT BOUNDARY: the meta bytes of a
/// `T_REPLICATION` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub op: Op,
    pub time_ms: i64,
    pub bucket: String,
    pub bucket_id: u64,
    pub key: String,
    pub version: VersionId,
    pub null_version: bool,
    pub size: u64,
    pub dest_bucket: String,
    pub storage_class: Option<String>,
    pub rule_id: String,
}

impl Record {
    /// The version this entry is about, current or noncurrent (a null
    /// version replaced since is not it).
    pub fn find(&self, shard: &tessera_io::Shard) -> S3Result<Option<crate::s3::versions::Located>> {
        crate::s3::versions::find_exact(shard, self.bucket_id, &self.key, self.version, self.null_version)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new(REPL_RECORD_V1);
        e.u8(self.op as u8).i64(self.time_ms).str(&self.bucket).u64(self.bucket_id).str(&self.key);
        e.buf.extend_from_slice(&self.version.0);
        e.u8(self.null_version as u8).u64(self.size).str(&self.dest_bucket).opt_str(self.storage_class.as_deref());
        e.str(&self.rule_id);
        e.finish()
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let mut d = Dec::new(b, REPL_RECORD_V1)?;
        let rec = Record {
            op: Op::from_code(d.u8()?)?,
            time_ms: d.i64()?,
            bucket: d.str()?,
            bucket_id: d.u64()?,
            key: d.str()?,
            version: VersionId(d.fixed()?),
            null_version: match d.u8()? {
                0 => false,
                1 => true,
                _ => return None,
            },
            size: d.u64()?,
            dest_bucket: d.str()?,
            storage_class: d.opt_str()?,
            rule_id: d.str()?,
        };
        d.end()?;
        Some(rec)
    }
}

/// What a replica write asks the destination to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaWrite {
    pub version: VersionId,
    pub mtime_ms: i64,
    /// The source's ETag (MD5 and part count), kept for a PUT.
    pub etag: Option<([u8; 16], u16)>,
    /// The source's version is its null version.
    pub null: bool,
}

impl ReplicaWrite {
    /// The replica headers of a request (authorized by `authz`): `None`
    /// without them, an error when they are malformed or the bucket is not
    /// versioned.
    pub fn from_headers(h: &tessera_proto::Headers, b: &BucketInfo) -> S3Result<Option<Self>> {
        let Some(v) = h.get(H_REPLICA_VERSION) else { return Ok(None) };
        let bad = |what: &str| S3Error::with_message(S3ErrorCode::InvalidArgument, format!("invalid {what}"));
        let version = VersionId::parse(v.trim()).ok_or_else(|| bad(H_REPLICA_VERSION))?;
        if b.versioning != Versioning::Enabled {
            return Err(S3Error::with_message(S3ErrorCode::InvalidRequest, "replica writes need versioning enabled on the destination"));
        }
        let mtime_ms = match h.get(H_REPLICA_MTIME) {
            Some(m) => m.trim().parse::<i64>().map_err(|_| bad(H_REPLICA_MTIME))?,
            None => (version.micros() / 1000) as i64,
        };
        let etag = match h.get(H_REPLICA_ETAG) {
            None => None,
            Some(e) => {
                let e = e.trim().trim_matches('"');
                let (hexpart, parts) = match e.split_once('-') {
                    Some((x, n)) => (x, n.parse::<u16>().map_err(|_| bad(H_REPLICA_ETAG))?),
                    None => (e, 0),
                };
                let mut md5 = [0u8; 16];
                hex::decode_to_slice(hexpart, &mut md5).map_err(|_| bad(H_REPLICA_ETAG))?;
                Some((md5, parts))
            }
        };
        let null = match h.get(H_REPLICA_NULL).map(str::trim) {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(bad(H_REPLICA_NULL)),
        };
        Ok(Some(ReplicaWrite { version, mtime_ms, etag, null }))
    }

    /// Makes `s` the replica: the source's id, mtime and ETag.
    pub fn stamp(&self, s: &mut ObjectSummary) {
        s.repl = ReplStatus::Replica;
        s.version = self.version;
        s.null_version = self.null;
        s.mtime_ms = self.mtime_ms;
        if let Some((md5, parts)) = self.etag {
            s.md5 = md5;
            s.parts = parts;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_refuse_other_versions() {
        let r = Record {
            op: Op::DeleteMarker,
            time_ms: 5,
            bucket: "b".into(),
            bucket_id: 7,
            key: "k".into(),
            version: VersionId::from_parts(99, [1; 8]),
            null_version: false,
            size: 3,
            dest_bucket: "d".into(),
            storage_class: Some("STANDARD".into()),
            rule_id: "r".into(),
        };
        let b = r.encode();
        assert_eq!(Record::decode(&b), Some(r));
        let mut other = b.clone();
        other[0] = 2;
        assert_eq!(Record::decode(&other), None);
        assert_eq!(Record::decode(&b[..b.len() - 1]), None);
    }

    #[test]
    fn target_specs() {
        let t = parse_target_spec("site2=http://127.0.0.1:9000,AK,SK,region=eu-west-1").unwrap();
        assert_eq!((t.id.as_str(), t.access_key.as_str(), t.region.as_str()), ("site2", "AK", "eu-west-1"));
        assert!(!format!("{t:?}").contains("SK"));
        assert!(parse_target_spec("site2=http://127.0.0.1:9000,AK").is_err());
        assert!(parse_target_spec("bad name=http://x:1,a,b").is_err());
        assert!(parse_target_spec("a=http://x:1,a,b,what=1").is_err());
        let ts = vec![t.clone()];
        assert_eq!(resolve(&ts, "arn:aws:s3:::dst").map(|(t, b)| (t.id.as_str(), b)), Some(("site2", "dst")));
        assert!(resolve(&ts, "arn:tessera:s3::other:dst").is_none());
        assert!(check_targets(&[t.clone(), t]).is_err());
    }
}
