//! The node's data model on top of the shard store: tables, key encodings,
//! object summaries (kept in the index) and object metadata (kept on disk).
//!
//! FORMAT BOUNDARY: these encodings are on disk. Each starts with a version
//! byte; a new version gets a new decoder beside the old one, and the old
//! decoders stay (a v1 object summary is read as the `null` version).
//!
//! Versions: `T_OBJECTS` holds the current version of each key (body
//! included), `T_VERSIONS` the noncurrent ones under [`version_key`], so the
//! versions of a key are contiguous and sort newest first.

use tessera_proto::checksum::ChecksumAlgo;
use tessera_proto::{S3Error, S3ErrorCode};

use crate::codec::{Dec, Enc};

/// Shard-store tables.
pub const T_OBJECTS: u8 = 0;
pub const T_UPLOADS: u8 = 1;
pub const T_PARTS: u8 = 2;
pub const T_BUCKETS: u8 = 3;
/// Noncurrent versions, keyed by [`version_key`].
pub const T_VERSIONS: u8 = 4;
/// Stamps of the records kept once per data dir (see `metastore`).
pub const T_META_STAMPS: u8 = 30;
/// IAM users, groups, roles, managed policies and access keys (meta shard
/// only; see `iam::store`).
pub const T_IAM: u8 = 5;
/// Bucket notification events waiting for delivery, on the shard of the
/// object they are about (see `notify`).
pub const T_EVENTS: u8 = 6;
/// Bucket replication work waiting to be sent, on the shard of the object
/// it is about (see `replication`; same design as `T_EVENTS`).
pub const T_REPLICATION: u8 = 7;
/// Tiering work: copies at a tier to delete, restored copies to drop when
/// they expire (see `tier`).
pub const T_TIER: u8 = 8;
/// The lifecycle age index: current versions by creation time, uploads
/// by initiation, keys whose current version is a delete marker, and the
/// walks' watermarks (see `lifecycle::index`).
pub const T_LCINDEX: u8 = 9;
/// Replication bookkeeping beside the queue: each bucket's existing-object
/// backfill position (see `replication::backfill`).
pub const T_REPLSTATE: u8 = 10;

/// Format 2 heal cursors, on the healing member shard only, never
/// mirrored (see `heal`).
pub const T_HEAL: u8 = 40;

/// The shard that keeps bucket records.
pub const META_SHARD: u32 = 0;

const SUMMARY_V1: u8 = 1;
const SUMMARY_V2: u8 = 2;
/// v3: v2 whose flags may carry a replication status (bits 3-5). Written
/// only for versions with a status, so others stay v2.
const SUMMARY_V3: u8 = 3;
/// v4: v3 whose flags may also carry `FLAG_TIERED` (the body lives on a
/// remote tier, see `tier`), followed then by the tier's storage class (so
/// listings name it without reading the meta). Written only for such
/// versions.
const SUMMARY_V4: u8 = 4;
const META_V1: u8 = 1;
const META_V2: u8 = 2;
/// v3: the version's owner and ACL.
const META_V3: u8 = 3;
/// v4: v3 and the encryption section (`sse::SseInfo`). Written only for
/// encrypted objects, so unencrypted ones stay v3.
const META_V4: u8 = 4;
/// v5: v3, a presence byte and the encryption section, then the tier
/// section (`tier::TierInfo`, its own version byte). Written only for
/// transitioned versions, so others stay v3 or v4.
const META_V5: u8 = 5;
const PART_V1: u8 = 1;
const PART_V2: u8 = 2;
/// v3: v2 and the salt of an encrypted part's key.
const PART_V3: u8 = 3;
const UPLOAD_V1: u8 = 1;
const UPLOAD_V2: u8 = 2;

/// Most parts an object records (S3's limit on parts per upload).
pub const MAX_PARTS: usize = 10_000;
/// Most `x-amz-meta-*` pairs a decoder accepts (their total size is capped
/// far lower at write time).
const MAX_USER_META_PAIRS: usize = 4096;
/// Most tags a decoder accepts (objects have at most 10, buckets 50).
pub const MAX_DECODED_TAGS: usize = 64;

/// `bucket id (8 bytes, big-endian) ++ key`: objects of a bucket are
/// contiguous and in key byte order. Keys carry the bucket's id, not its
/// name, so a bucket deleted and created again under the same name never
/// sees what the old one left behind.
pub fn object_key(bucket: u64, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&bucket.to_be_bytes());
    k.extend_from_slice(key.as_bytes());
    k
}

/// Prefix of every object/upload/part/version key of `bucket`.
pub fn bucket_prefix(bucket: u64) -> Vec<u8> {
    bucket.to_be_bytes().to_vec()
}

/// `bucket id ++ key \0 upload_id`
pub fn upload_key(bucket: u64, key: &str, upload_id: &str) -> Vec<u8> {
    let mut k = object_key(bucket, key);
    k.push(0);
    k.extend_from_slice(upload_id.as_bytes());
    k
}

/// Splits the part of a `T_UPLOADS` key after the bucket id into (object
/// key bytes, upload id bytes). Upload ids are hex: the last NUL ends the key.
pub fn split_upload_key(rest: &[u8]) -> Option<(&[u8], &[u8])> {
    let split = rest.iter().rposition(|&c| c == 0)?;
    Some((&rest[..split], &rest[split + 1..]))
}

/// `upload_key \0 part_number(BE)`: parts of an upload sort by number.
pub fn part_key(bucket: u64, key: &str, upload_id: &str, part: u32) -> Vec<u8> {
    let mut k = part_prefix(bucket, key, upload_id);
    k.extend_from_slice(&part.to_be_bytes());
    k
}

pub fn part_prefix(bucket: u64, key: &str, upload_id: &str) -> Vec<u8> {
    let mut k = upload_key(bucket, key, upload_id);
    k.push(0);
    k
}

// ---- composite keys --------------------------------------------------------

/// Ends an escaped key inside a composite key. No escaped key contains it,
/// so no key byte can make a composite key split at the wrong place.
pub const KEY_TERMINATOR: [u8; 2] = [0x00, 0x00];

/// Appends `key` escaped: `0x00` becomes `0x00 0xFF`, every other byte stays.
/// Order-preserving: escaped keys (each followed by [`KEY_TERMINATOR`])
/// compare as the keys do, and `escape(p)` is a prefix of `escape(k)`
/// exactly when `p` is a prefix of `k`.
pub fn push_escaped(out: &mut Vec<u8>, key: &[u8]) {
    for &b in key {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
}

/// Splits an escaped, terminated key off the front of `b`: the key and what
/// follows the terminator. `None` if `b` is not a well-formed escaped key.
pub fn split_escaped(b: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut key = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != 0 {
            key.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1)? {
            0xFF => key.push(0),
            0x00 => return Some((key, &b[i + 2..])),
            _ => return None,
        }
        i += 2;
    }
    None
}

/// [`versions_prefix`] of a key given as bytes.
pub fn versions_prefix_bytes(bucket: u64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len() + 2 + 16);
    k.extend_from_slice(&bucket.to_be_bytes());
    push_escaped(&mut k, key);
    k.extend_from_slice(&KEY_TERMINATOR);
    k
}

/// `bucket id ++ escaped(key) ++ terminator`: every version of `key`
/// (in `T_VERSIONS`) starts with this.
pub fn versions_prefix(bucket: u64, key: &str) -> Vec<u8> {
    versions_prefix_bytes(bucket, key.as_bytes())
}

/// `bucket id ++ escaped(prefix)`: the versions of every key starting with
/// `prefix` start with this.
pub fn versions_scan_prefix(bucket: u64, prefix: &str) -> Vec<u8> {
    let mut k = bucket.to_be_bytes().to_vec();
    push_escaped(&mut k, prefix.as_bytes());
    k
}

/// `versions_prefix(key) ++ !version id`: a key's versions are contiguous
/// and sort newest first (version ids are time-ordered).
pub fn version_key(bucket: u64, key: &str, v: &VersionId) -> Vec<u8> {
    let mut k = versions_prefix(bucket, key);
    k.extend(v.0.iter().map(|b| !b));
    k
}

/// A key past every version of `key` (an exclusive start for scans that
/// skip them all).
pub fn past_versions_of(bucket: u64, key: &str) -> Vec<u8> {
    let mut k = versions_prefix(bucket, key);
    k.extend_from_slice(&[0xFF; VersionId::BYTES + 1]);
    k
}

/// Decodes a `T_VERSIONS` key: (bucket id, object key bytes, version id).
pub fn parse_version_key(k: &[u8]) -> Option<(u64, Vec<u8>, VersionId)> {
    let bucket = u64::from_be_bytes(k.get(..8)?.try_into().ok()?);
    let (key, rest) = split_escaped(&k[8..])?;
    let inv: [u8; VersionId::BYTES] = rest.try_into().ok()?;
    Some((bucket, key, VersionId(inv.map(|b| !b))))
}

// ---- version ids -----------------------------------------------------------

/// An object version's id: big-endian microseconds since the epoch, then 8
/// random bytes. Rendered in 22 characters of an alphabet in ASCII order, so
/// the text sorts as the id does; opaque and URL-safe for clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VersionId(pub [u8; VersionId::BYTES]);

const VID_ALPHABET: &[u8; 64] = b"-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";

impl VersionId {
    pub const BYTES: usize = 16;
    /// Length of the rendered id.
    pub const CHARS: usize = 22;

    pub fn from_parts(micros: u64, random: [u8; 8]) -> Self {
        let mut b = [0u8; Self::BYTES];
        b[..8].copy_from_slice(&micros.to_be_bytes());
        b[8..].copy_from_slice(&random);
        VersionId(b)
    }

    pub fn micros(&self) -> u64 {
        let mut t = [0u8; 8];
        t.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(t)
    }

    /// The id of a version written at `now_micros` over `prev` (the key's
    /// current version): time-ordered, and strictly after `prev` even when
    /// the clock has not moved (or moved back).
    pub fn next(now_micros: u64, prev: Option<&VersionId>, random: [u8; 8]) -> Self {
        let floor = prev.map_or(0, |p| p.micros().saturating_add(1));
        Self::from_parts(now_micros.max(floor), random)
    }

    pub fn render(&self) -> String {
        let v = u128::from_be_bytes(self.0);
        (0..Self::CHARS)
            .map(|i| {
                let d = if i + 1 < Self::CHARS { (v >> (122 - 6 * i)) & 63 } else { (v & 3) << 4 };
                VID_ALPHABET[d as usize] as char
            })
            .collect()
    }

    /// Parses a rendered id; `None` for anything `render` cannot produce.
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != Self::CHARS {
            return None;
        }
        let mut v: u128 = 0;
        for (i, c) in b.iter().enumerate() {
            let d = VID_ALPHABET.iter().position(|a| a == c)? as u128;
            if i + 1 < Self::CHARS {
                v |= d << (122 - 6 * i);
            } else {
                if d & 0xF != 0 {
                    return None;
                }
                v |= d >> 4;
            }
        }
        Some(VersionId(v.to_be_bytes()))
    }
}

/// A version as a request names it: `versionId=null` or an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSel {
    Null,
    Id(VersionId),
}

impl VersionSel {
    /// `Err` for a value that cannot be a version id (S3 answers 400).
    pub fn parse(s: &str) -> Result<Self, S3Error> {
        if s == "null" {
            return Ok(VersionSel::Null);
        }
        VersionId::parse(s)
            .map(VersionSel::Id)
            .ok_or_else(|| S3Error::with_message(S3ErrorCode::InvalidArgument, "Invalid version id specified"))
    }

    pub fn matches(&self, s: &ObjectSummary) -> bool {
        match self {
            VersionSel::Null => s.null_version,
            VersionSel::Id(v) => !s.null_version && s.version == *v,
        }
    }

    pub fn render(&self) -> String {
        match self {
            VersionSel::Null => "null".into(),
            VersionSel::Id(v) => v.render(),
        }
    }
}

// ---- object lock -----------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Governance,
    Compliance,
}

impl LockMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }

    /// Exactly as S3 spells them (lower case is refused, as S3 does).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "GOVERNANCE" => Some(LockMode::Governance),
            "COMPLIANCE" => Some(LockMode::Compliance),
            _ => None,
        }
    }

    fn code(self) -> u8 {
        match self {
            LockMode::Governance => 1,
            LockMode::Compliance => 2,
        }
    }

    fn from_code(c: u8) -> Option<Option<Self>> {
        match c {
            0 => Some(None),
            1 => Some(Some(LockMode::Governance)),
            2 => Some(Some(LockMode::Compliance)),
            _ => None,
        }
    }
}

/// A version's retention: it cannot be removed before `until_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub mode: LockMode,
    pub until_ms: i64,
}

fn enc_retention(e: &mut Enc, r: Option<&Retention>) {
    match r {
        None => {
            e.u8(0);
        }
        Some(r) => {
            e.u8(r.mode.code()).i64(r.until_ms);
        }
    }
}

fn dec_retention(d: &mut Dec<'_>) -> Option<Option<Retention>> {
    Some(match LockMode::from_code(d.u8()?)? {
        None => None,
        Some(mode) => Some(Retention { mode, until_ms: d.i64()? }),
    })
}

fn access_denied(msg: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::AccessDenied, msg)
}

// ---- checksums ---------------------------------------------------------------

/// How an object's checksum covers it: of its bytes (FULL_OBJECT) or of
/// its parts' checksums (COMPOSITE, value suffixed `-N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumType {
    Composite,
    FullObject,
}

impl ChecksumType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChecksumType::Composite => "COMPOSITE",
            ChecksumType::FullObject => "FULL_OBJECT",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "COMPOSITE" => Some(ChecksumType::Composite),
            "FULL_OBJECT" => Some(ChecksumType::FullObject),
            _ => None,
        }
    }

    fn code(t: Option<Self>) -> u8 {
        match t {
            None => 0,
            Some(ChecksumType::Composite) => 1,
            Some(ChecksumType::FullObject) => 2,
        }
    }

    fn from_code(c: u8) -> Option<Option<Self>> {
        match c {
            0 => Some(None),
            1 => Some(Some(ChecksumType::Composite)),
            2 => Some(Some(ChecksumType::FullObject)),
            _ => None,
        }
    }
}

/// Stable on-disk codes of the checksum algorithms.
pub fn algo_code(a: ChecksumAlgo) -> u8 {
    match a {
        ChecksumAlgo::Crc32 => 1,
        ChecksumAlgo::Crc32c => 2,
        ChecksumAlgo::Crc64Nvme => 3,
        ChecksumAlgo::Sha1 => 4,
        ChecksumAlgo::Sha256 => 5,
    }
}

pub fn algo_from_code(c: u8) -> Option<ChecksumAlgo> {
    ChecksumAlgo::ALL.into_iter().find(|a| algo_code(*a) == c)
}

fn enc_algo(e: &mut Enc, a: Option<ChecksumAlgo>) {
    e.u8(a.map_or(0, algo_code));
}

fn dec_algo(d: &mut Dec<'_>) -> Option<Option<ChecksumAlgo>> {
    match d.u8()? {
        0 => Some(None),
        c => Some(Some(algo_from_code(c)?)),
    }
}

mod object;
mod summary;
mod upload;
#[cfg(test)]
mod tests;

pub use object::ObjectMeta;
pub use summary::{ObjectSummary, ReplStatus};
pub use upload::{PartSummary, UploadInfo};
