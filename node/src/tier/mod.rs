//! Tiering: lifecycle `Transition` rules move a version's body to a remote
//! S3 store (another tessera, any S3 endpoint) the operator configured as
//! a tier (`--tier CLASS=http://HOST:PORT/BUCKET,ACCESS,SECRET`); the tier's
//! name is the storage class rules name.
//!
//! A transitioned version keeps its record here: the summary (size, ETag,
//! lock state) flagged `tiered` (summary v4), the metadata (user metadata,
//! tags, ACL) with a [`TierInfo`] saying where the body went (meta v5), and
//! an empty body, so the engine's compaction frees the bytes. HEAD answers
//! locally with the tier's class; GET reads through from the tier (the
//! range asked, on a thread of its own); RestoreObject copies the body back
//! for a number of lifecycle days (`x-amz-restore`), after which the
//! lifecycle worker drops the local copy again.
//!
//! Removing a transitioned version (delete, overwrite of a null version,
//! expiration) commits a **forget** entry in `T_TIER` with the removal;
//! the worker deletes the tier's copy from that queue, with retries, never
//! holding up the local delete. Restores put a **restore** entry in
//! `T_TIER` keyed by their expiry, so expiring them is a range read.
//!
//! Copies at the tier are named `SOURCE-BUCKET/KEY/VERSION-ID.ATTEMPT` in
//! the tier's bucket (`ATTEMPT` random per transition attempt), so no two
//! attempts share a copy and a forget entry deletes only its own. Before
//! its PUT an attempt commits a **pending** entry naming its copy, keyed by
//! a deadline (`PENDING_GRACE` later); the commit that makes the version a
//! stub removes it, and a failed attempt turns it into a forget entry at
//! once. One left by a crash is turned into a forget entry by the worker
//! once its deadline passed, so a copy whose stub was never committed is
//! deleted, not leaked. (Before, copies were named `.../VERSION-ID` for
//! every attempt; such stubs stay readable, their names are in their meta.)

pub mod read;
pub mod worker;

use tessera_io::{Body, Mutation, Shard};
use tessera_proto::{S3Error, S3ErrorCode, S3Result};

use crate::codec::{Dec, Enc};
use crate::meta::{ObjectMeta, ObjectSummary, VersionId, T_TIER};
use crate::remote_s3::RemoteSpec;

/// FORMAT BOUNDARY: version of the tier section of object meta v5.
pub const TIER_INFO_V1: u8 = 1;
/// FORMAT BOUNDARY: version of a `T_TIER` entry's meta bytes.
pub const TIER_ENTRY_V1: u8 = 1;
/// `T_TIER` key kinds.
const KIND_FORGET: u8 = b'D';
const KIND_RESTORE: u8 = b'R';
const KIND_PENDING: u8 = b'P';
/// How long a transition attempt may take before the worker takes its
/// copy for one a crash left behind (`Pending`); a day covers a 5 TiB
/// object at 60 MB/s. `--test-tier-pending-grace-ms` shortens it for tests.
pub const PENDING_GRACE_MS: u64 = 24 * 3600 * 1000;

/// A tier as the operator configured it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TierSpec {
    /// The storage class rules name (the spec's NAME).
    pub class: String,
    /// The endpoint and credentials (`id` = `class`).
    pub remote: RemoteSpec,
    /// The bucket at the remote that holds the copies.
    pub bucket: String,
}

/// Storage classes that are this store's own, never a tier's name.
const OWN_CLASSES: &[&str] = &["STANDARD", "REDUCED_REDUNDANCY"];

/// `CLASS=http://HOST:PORT/BUCKET,ACCESS_KEY,SECRET_KEY[,region=R][,secret-file=PATH]`
/// (`--tier`, repeatable; `tier = [...]` in the file).
pub fn parse_tier_spec(s: &str) -> Result<TierSpec, String> {
    let (remote, path) = crate::remote_s3::parse_spec("--tier", s, &mut |_, _| Ok(false))?;
    let class = remote.id.clone();
    if !class.bytes().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_') || OWN_CLASSES.contains(&class.as_str()) {
        return Err(format!("--tier: name {class:?} must be a storage class: A-Z 0-9 _, not STANDARD"));
    }
    let bucket = path.trim_matches('/').to_string();
    if bucket.is_empty() || bucket.contains('/') {
        return Err(format!("--tier {class}: URL must be http://HOST:PORT/BUCKET (the bucket that holds the copies)"));
    }
    Ok(TierSpec { class, remote, bucket })
}

pub fn check_tiers(specs: &[TierSpec]) -> Result<(), String> {
    for (i, s) in specs.iter().enumerate() {
        if specs[..i].iter().any(|o| o.class == s.class) {
            return Err(format!("--tier: name {:?} given twice", s.class));
        }
    }
    Ok(())
}

/// The tier named `class`.
pub fn find<'a>(tiers: &'a [TierSpec], class: &str) -> Option<&'a TierSpec> {
    tiers.iter().find(|t| t.class == class)
}

/// A lifecycle configuration's transitions must name configured tiers.
pub fn check_lifecycle(tiers: &[TierSpec], lc: &tessera_proto::lifecycle::Lifecycle) -> S3Result<()> {
    for class in lc.storage_classes() {
        if find(tiers, class).is_none() {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidStorageClass,
                format!("The storage class {class} is not a tier of this server (see --tier)"),
            ));
        }
    }
    Ok(())
}

/// Where a transitioned version's body is (FORMAT BOUNDARY: the tier
/// section of object meta v5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierInfo {
    /// The tier's storage class (its name).
    pub class: String,
    /// The bucket and key of the copy at the tier.
    pub remote_bucket: String,
    pub remote_key: String,
    /// Restored: the local body is a copy kept until then (Unix ms).
    pub restored_until_ms: Option<i64>,
}

impl TierInfo {
    pub fn encode(&self, e: &mut Enc) {
        e.u8(TIER_INFO_V1).str(&self.class).str(&self.remote_bucket).str(&self.remote_key);
        match self.restored_until_ms {
            None => e.u8(0),
            Some(t) => e.u8(1).i64(t),
        };
    }

    pub fn decode(d: &mut Dec<'_>) -> Option<Self> {
        if d.u8()? != TIER_INFO_V1 {
            return None;
        }
        let (class, remote_bucket, remote_key) = (d.str()?, d.str()?, d.str()?);
        let restored_until_ms = match d.u8()? {
            0 => None,
            1 => Some(d.i64()?),
            _ => return None,
        };
        Some(TierInfo { class, remote_bucket, remote_key, restored_until_ms })
    }
}

/// The copy's key at the tier: unique per version.
pub fn remote_key(bucket: &str, key: &str, version: &VersionId, attempt: &[u8]) -> String {
    format!("{bucket}/{key}/{}.{}", version.render(), hex::encode(attempt))
}

/// Bytes of a version's body as stored, and so as its copy at a tier
/// holds it: the sealed length when encrypted (the tier gets the sealed
/// body, never plaintext).
pub fn stored_len(meta: &ObjectMeta, size: u64) -> S3Result<u64> {
    match &meta.sse {
        Some(info) => Ok(info.layout(size, &meta.part_sizes)?.sealed_len()),
        None => Ok(size),
    }
}

/// Whether the version's body is only at the tier (transitioned, not
/// restored).
pub fn is_stub(meta: &ObjectMeta) -> bool {
    meta.tier.as_ref().is_some_and(|t| t.restored_until_ms.is_none())
}

/// Operations that need the body here (copy, select) refuse a version
/// whose body is only at the tier, as S3 refuses archived objects.
pub fn refuse_stub(meta: &ObjectMeta) -> S3Result<()> {
    if is_stub(meta) {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidObjectState,
            "The operation is not valid for the object's storage class (restore it first)",
        ));
    }
    Ok(())
}

/// The headers a transitioned version adds to HEAD and GET.
pub fn push_headers(resp: &mut crate::response::Response, meta: &ObjectMeta) {
    let Some(t) = &meta.tier else { return };
    resp.push_header("x-amz-storage-class", t.class.clone());
    if let Some(until) = t.restored_until_ms {
        let date = tessera_proto::time::format_http_date(until.div_euclid(1000));
        resp.push_header("x-amz-restore", format!("ongoing-request=\"false\", expiry-date=\"{date}\""));
    }
}

/// What a `T_TIER` forget entry asks: delete this copy at the tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forget {
    pub class: String,
    pub remote_bucket: String,
    pub remote_key: String,
}

impl Forget {
    fn key(&self) -> Vec<u8> {
        let mut k = vec![KIND_FORGET];
        k.extend_from_slice(self.class.as_bytes());
        k.push(0);
        k.extend_from_slice(self.remote_bucket.as_bytes());
        k.push(0);
        k.extend_from_slice(self.remote_key.as_bytes());
        k
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new(TIER_ENTRY_V1);
        e.str(&self.class).str(&self.remote_bucket).str(&self.remote_key);
        e.finish()
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let mut d = Dec::new(b, TIER_ENTRY_V1)?;
        let f = Forget { class: d.str()?, remote_bucket: d.str()?, remote_key: d.str()? };
        d.end()?;
        Some(f)
    }

    pub fn of(t: &TierInfo) -> Self {
        Forget { class: t.class.clone(), remote_bucket: t.remote_bucket.clone(), remote_key: t.remote_key.clone() }
    }

    pub fn mutation(&self) -> Mutation {
        Mutation::Put { table: T_TIER, key: self.key(), summary: vec![TIER_ENTRY_V1], meta: self.encode(), body: Body::Inline(Vec::new()) }
    }
}

/// A transition attempt in progress (see the module doc):
/// `P ++ deadline (i64 BE, ms) ++ the forget entry's key`, meta the
/// forget entry's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub deadline_ms: i64,
    pub forget: Forget,
}

impl Pending {
    pub fn key(&self) -> Vec<u8> {
        let mut k = vec![KIND_PENDING];
        k.extend_from_slice(&self.deadline_ms.to_be_bytes());
        k.extend_from_slice(&self.forget.key());
        k
    }

    pub fn put(&self) -> Mutation {
        Mutation::Put { table: T_TIER, key: self.key(), summary: vec![TIER_ENTRY_V1], meta: self.forget.encode(), body: Body::Inline(Vec::new()) }
    }

    pub fn delete(&self) -> Mutation {
        Mutation::Delete { table: T_TIER, key: self.key() }
    }

    /// Its deadline, from its key.
    pub fn deadline_of(k: &[u8]) -> Option<i64> {
        if k.first() != Some(&KIND_PENDING) {
            return None;
        }
        Some(i64::from_be_bytes(k.get(1..9)?.try_into().ok()?))
    }
}

pub fn pending_prefix() -> Vec<u8> {
    vec![KIND_PENDING]
}

/// The forget entry to commit with the removal of the version at
/// `(table, key)` (summary `s`): none unless it was transitioned.
pub async fn forget_mutation(shard: &Shard, table: u8, key: &[u8], s: &ObjectSummary) -> S3Result<Option<Mutation>> {
    if !s.tiered() {
        return Ok(None);
    }
    let Some(stored) = shard.load(table, key).await.map_err(crate::s3::io_error)? else { return Ok(None) };
    Ok(ObjectMeta::decode(&stored.meta).and_then(|m| m.tier).map(|t| Forget::of(&t).mutation()))
}

/// A restored version's entry in `T_TIER`, keyed by its expiry so that
/// expiring restores is a range read:
/// `R ++ until (i64 BE) ++ bucket id ++ null flag ++ version id ++ key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreEntry {
    pub until_ms: i64,
    pub bucket: u64,
    pub null_version: bool,
    pub version: VersionId,
    pub key: String,
}

impl RestoreEntry {
    pub fn of(until_ms: i64, bucket: u64, key: &str, s: &ObjectSummary) -> Self {
        RestoreEntry { until_ms, bucket, null_version: s.null_version, version: s.version, key: key.to_string() }
    }

    pub fn key(&self) -> Vec<u8> {
        let mut k = vec![KIND_RESTORE];
        k.extend_from_slice(&self.until_ms.max(0).to_be_bytes());
        k.extend_from_slice(&self.bucket.to_be_bytes());
        k.push(self.null_version as u8);
        k.extend_from_slice(&self.version.0);
        k.extend_from_slice(self.key.as_bytes());
        k
    }

    pub fn parse(k: &[u8]) -> Option<Self> {
        if k.first() != Some(&KIND_RESTORE) || k.len() < 34 {
            return None;
        }
        Some(RestoreEntry {
            until_ms: i64::from_be_bytes(k[1..9].try_into().ok()?),
            bucket: u64::from_be_bytes(k[9..17].try_into().ok()?),
            null_version: k[17] == 1,
            version: VersionId(k[18..34].try_into().ok()?),
            key: String::from_utf8(k[34..].to_vec()).ok()?,
        })
    }

    /// The version it names, as requests name versions.
    pub fn sel(&self) -> crate::meta::VersionSel {
        if self.null_version {
            crate::meta::VersionSel::Null
        } else {
            crate::meta::VersionSel::Id(self.version)
        }
    }

    pub fn put(&self) -> Mutation {
        Mutation::Put { table: T_TIER, key: self.key(), summary: vec![TIER_ENTRY_V1], meta: Vec::new(), body: Body::Inline(Vec::new()) }
    }

    pub fn delete(&self) -> Mutation {
        Mutation::Delete { table: T_TIER, key: self.key() }
    }
}

pub fn forget_prefix() -> Vec<u8> {
    vec![KIND_FORGET]
}

pub fn restore_prefix() -> Vec<u8> {
    vec![KIND_RESTORE]
}

/// The notification event of a change to a version's storage (its
/// transition, a restore, a restored copy dropped), when the bucket's
/// configuration selects it. `origin`: the request's, or None for the
/// lifecycle's own work.
pub fn storage_event(
    ctx: &crate::server::Ctx,
    b: &crate::buckets::BucketInfo,
    key: &str,
    name: tessera_proto::notification::EventName,
    origin: Option<crate::notify::Origin>,
) -> Option<crate::notify::Pending> {
    b.notification.as_ref()?;
    let origin = origin.unwrap_or_else(|| crate::notify::Origin { principal: "tessera:lifecycle".into(), ..Default::default() });
    crate::notify::prepare(&ctx.shared.config.notify_webhooks, b, key, name, origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_entries_and_keys() {
        let t = parse_tier_spec("COLD=http://127.0.0.1:9000/archive,AK,SK").unwrap();
        assert_eq!((t.class.as_str(), t.bucket.as_str(), t.remote.url.as_str()), ("COLD", "archive", "http://127.0.0.1:9000"));
        assert!(parse_tier_spec("COLD=http://127.0.0.1:9000,AK,SK").is_err(), "no bucket");
        assert!(parse_tier_spec("cold=http://127.0.0.1:9000/b,AK,SK").is_err(), "a class is upper case");
        assert!(parse_tier_spec("STANDARD=http://127.0.0.1:9000/b,AK,SK").is_err());
        assert!(check_tiers(&[t.clone(), t]).is_err());
        let f = Forget { class: "COLD".into(), remote_bucket: "a".into(), remote_key: "b/k/v".into() };
        assert_eq!(Forget::decode(&f.encode()), Some(f.clone()));
        let mut other = f.encode();
        other[0] = 2;
        assert_eq!(Forget::decode(&other), None);
        let s = ObjectSummary::new(1, 2, [3; 16], 0, VersionId::from_parts(5, [6; 8]), true);
        let r = RestoreEntry::of(1234, 7, "a/b", &s);
        assert_eq!(RestoreEntry::parse(&r.key()), Some(r.clone()));
        assert!(RestoreEntry::of(1, 9, "z", &s).key() < RestoreEntry::of(2, 0, "a", &s).key(), "restores sort by expiry");
    }
}
