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

/// `bucket id ++ escaped(key) ++ terminator`: every version of `key`
/// (in `T_VERSIONS`) starts with this.
pub fn versions_prefix(bucket: u64, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len() + 2 + 16);
    k.extend_from_slice(&bucket.to_be_bytes());
    push_escaped(&mut k, key.as_bytes());
    k.extend_from_slice(&KEY_TERMINATOR);
    k
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

// ---- object summary ----------------------------------------------------------

const FLAG_NULL: u8 = 1;
const FLAG_DELETE_MARKER: u8 = 2;
const FLAG_LEGAL_HOLD: u8 = 4;
const KNOWN_FLAGS: u8 = FLAG_NULL | FLAG_DELETE_MARKER | FLAG_LEGAL_HOLD;
const REPL_SHIFT: u8 = 3;
const REPL_MASK: u8 = 7 << REPL_SHIFT;
/// v4: the version's body is on a remote tier (its meta says where).
const FLAG_TIERED: u8 = 64;

/// A version's `x-amz-replication-status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplStatus {
    #[default]
    None,
    /// Queued for the remote (source side).
    Pending,
    Completed,
    /// The remote refused it for good (source side; counted, logged).
    Failed,
    /// Written by replication (destination side): never replicated again.
    Replica,
}

impl ReplStatus {
    pub fn as_str(self) -> Option<&'static str> {
        match self {
            ReplStatus::None => None,
            ReplStatus::Pending => Some("PENDING"),
            ReplStatus::Completed => Some("COMPLETED"),
            ReplStatus::Failed => Some("FAILED"),
            ReplStatus::Replica => Some("REPLICA"),
        }
    }

    fn code(self) -> u8 {
        match self {
            ReplStatus::None => 0,
            ReplStatus::Pending => 1,
            ReplStatus::Completed => 2,
            ReplStatus::Failed => 3,
            ReplStatus::Replica => 4,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        [ReplStatus::None, ReplStatus::Pending, ReplStatus::Completed, ReplStatus::Failed, ReplStatus::Replica].get(c as usize).copied()
    }
}

/// What listings and deletes need, kept in memory per version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSummary {
    pub size: u64,
    pub mtime_ms: i64,
    pub md5: [u8; 16],
    /// 0 for a single PUT; N for a multipart object (ETag "<md5>-N").
    pub parts: u16,
    /// Orders the version among the key's versions; a `null` version has one
    /// too (its place in that order), rendered as `null`.
    pub version: VersionId,
    pub null_version: bool,
    pub delete_marker: bool,
    pub retention: Option<Retention>,
    pub legal_hold: bool,
    pub repl: ReplStatus,
    /// Transitioned to the remote tier of this storage class: the meta's
    /// `tier` says where, and the local body is empty unless restored.
    pub tier_class: Option<String>,
}

impl ObjectSummary {
    /// A new version of `size` bytes (lock fields empty).
    pub fn new(size: u64, mtime_ms: i64, md5: [u8; 16], parts: u16, version: VersionId, null_version: bool) -> Self {
        ObjectSummary {
            size,
            mtime_ms,
            md5,
            parts,
            version,
            null_version,
            delete_marker: false,
            retention: None,
            legal_hold: false,
            repl: ReplStatus::None,
            tier_class: None,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let v = if self.tier_class.is_some() {
            SUMMARY_V4
        } else if self.repl == ReplStatus::None {
            SUMMARY_V2
        } else {
            SUMMARY_V3
        };
        let mut e = Enc::new(v);
        e.u64(self.size).i64(self.mtime_ms);
        e.buf.extend_from_slice(&self.md5);
        e.u16(self.parts);
        e.buf.extend_from_slice(&self.version.0);
        let mut flags = 0;
        if self.null_version {
            flags |= FLAG_NULL;
        }
        if self.delete_marker {
            flags |= FLAG_DELETE_MARKER;
        }
        if self.legal_hold {
            flags |= FLAG_LEGAL_HOLD;
        }
        flags |= self.repl.code() << REPL_SHIFT;
        if self.tier_class.is_some() {
            flags |= FLAG_TIERED;
        }
        e.u8(flags);
        enc_retention(&mut e, self.retention.as_ref());
        if let Some(c) = &self.tier_class {
            e.str(c);
        }
        e.finish()
    }

    /// `None` for bytes of an unknown version or malformed: callers treat
    /// that as corrupt, and object lock checks refuse to remove it.
    pub fn decode(b: &[u8]) -> Option<Self> {
        match Dec::version_of(b)? {
            SUMMARY_V1 => Self::decode_v1(b),
            SUMMARY_V2 => Self::decode_v2(b, SUMMARY_V2),
            SUMMARY_V3 => Self::decode_v2(b, SUMMARY_V3),
            SUMMARY_V4 => Self::decode_v2(b, SUMMARY_V4),
            _ => None,
        }
    }

    /// v1 (before versioning): the object is the `null` version, ordered by
    /// its modification time.
    fn decode_v1(b: &[u8]) -> Option<Self> {
        let mut d = Dec::new(b, SUMMARY_V1)?;
        let (size, mtime_ms, md5, parts) = (d.u64()?, d.i64()?, d.fixed()?, d.u16()?);
        let micros = u64::try_from(mtime_ms).unwrap_or(0).saturating_mul(1000);
        Some(ObjectSummary::new(size, mtime_ms, md5, parts, VersionId::from_parts(micros, [0; 8]), true))
    }

    /// v2, or v3 (`v`): v2 with a replication status in the flags, or v4:
    /// v3 with the tiered flag.
    fn decode_v2(b: &[u8], v: u8) -> Option<Self> {
        let mut d = Dec::new(b, v)?;
        let (size, mtime_ms, md5, parts) = (d.u64()?, d.i64()?, d.fixed()?, d.u16()?);
        let version = VersionId(d.fixed()?);
        let flags = d.u8()?;
        let known = match v {
            SUMMARY_V2 => KNOWN_FLAGS,
            SUMMARY_V3 => KNOWN_FLAGS | REPL_MASK,
            _ => KNOWN_FLAGS | REPL_MASK | FLAG_TIERED,
        };
        if flags & !known != 0 {
            return None;
        }
        let repl = ReplStatus::from_code((flags & REPL_MASK) >> REPL_SHIFT)?;
        let retention = dec_retention(&mut d)?;
        let tier_class = if flags & FLAG_TIERED != 0 { Some(d.str()?) } else { None };
        d.end()?;
        Some(ObjectSummary {
            size,
            mtime_ms,
            md5,
            parts,
            version,
            null_version: flags & FLAG_NULL != 0,
            delete_marker: flags & FLAG_DELETE_MARKER != 0,
            retention,
            legal_hold: flags & FLAG_LEGAL_HOLD != 0,
            repl,
            tier_class,
        })
    }

    /// Whether the version was transitioned to a tier.
    pub fn tiered(&self) -> bool {
        self.tier_class.is_some()
    }

    /// The storage class listings and attributes report.
    pub fn storage_class(&self) -> &str {
        self.tier_class.as_deref().unwrap_or("STANDARD")
    }

    /// The ETag with its quotes.
    pub fn etag(&self) -> String {
        // By hand: on every GET and HEAD, twice (conditionals, the header).
        let mut out = String::with_capacity(40);
        out.push('"');
        tessera_proto::checksum::push_hex_lower(&mut out, &self.md5);
        if self.parts != 0 {
            out.push('-');
            out.push_str(itoa_u16(self.parts).as_str());
        }
        out.push('"');
        out
    }

    /// The version id as clients see it.
    pub fn version_id(&self) -> String {
        if self.null_version {
            "null".into()
        } else {
            self.version.render()
        }
    }

    /// Whether this version may be removed (deleted by id, or replaced as
    /// the null version) at `now_ms`: not under legal hold, not under an
    /// unexpired retention (GOVERNANCE gives way to `bypass_governance`).
    pub fn check_removable(&self, now_ms: i64, bypass_governance: bool) -> Result<(), S3Error> {
        if self.legal_hold {
            return Err(access_denied("Access Denied because object protected by object lock."));
        }
        match self.retention {
            Some(r) if r.until_ms > now_ms => match r.mode {
                LockMode::Compliance => Err(access_denied("Access Denied because object protected by object lock.")),
                LockMode::Governance if !bypass_governance => {
                    Err(access_denied("Access Denied because object protected by object lock."))
                }
                LockMode::Governance => Ok(()),
            },
            _ => Ok(()),
        }
    }
}

// ---- object meta -------------------------------------------------------------

/// Everything stored with an object besides its summary and body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectMeta {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    pub expires: Option<String>,
    /// `(header name, base64 value)`, e.g. ("x-amz-checksum-crc32", "...");
    /// a COMPOSITE value ends in `-N`.
    pub checksum: Option<(String, String)>,
    /// `x-amz-meta-*` pairs, names lowercased without the prefix.
    pub user: Vec<(String, String)>,
    /// Sizes of the parts of a multipart object (empty for a single PUT),
    /// for GET/HEAD with `partNumber`.
    pub part_sizes: Vec<u64>,
    /// What `checksum` covers (none in v1 records: FULL_OBJECT for a single
    /// PUT, COMPOSITE for a multipart object).
    pub checksum_type: Option<ChecksumType>,
    /// Each part's checksum (base64, the algorithm of `checksum`), when the
    /// object was uploaded in parts with a checksum algorithm.
    pub part_checksums: Vec<String>,
    /// Object tags, ordered by key (as S3 returns them).
    pub tags: Vec<(String, String)>,
    /// The version's owner and ACL; `None`: the bucket owner, private
    /// (every record before v3 reads so).
    pub acl: Option<tessera_policy::Acl>,
    /// How the body is encrypted (none: stored as sent; every record
    /// before v4 reads so).
    pub sse: Option<crate::sse::SseInfo>,
    /// Where a transitioned version's body is (none: here; every record
    /// before v5 reads so).
    pub tier: Option<crate::tier::TierInfo>,
}

impl ObjectMeta {
    pub fn encode(&self) -> Vec<u8> {
        let v = if self.tier.is_some() {
            META_V5
        } else if self.sse.is_some() {
            META_V4
        } else {
            META_V3
        };
        let mut e = Enc::new(v);
        self.encode_v1_fields(&mut e);
        e.u8(ChecksumType::code(self.checksum_type));
        e.u32(self.part_checksums.len() as u32);
        for c in &self.part_checksums {
            e.str(c);
        }
        e.u32(self.tags.len() as u32);
        for (k, v) in &self.tags {
            e.str(k).str(v);
        }
        match &self.acl {
            None => {
                e.u8(0);
            }
            Some(acl) => {
                e.u8(1);
                crate::acl::encode(&mut e, acl);
            }
        }
        if v == META_V5 {
            e.u8(self.sse.is_some() as u8);
        }
        if let Some(sse) = &self.sse {
            sse.encode(&mut e);
        }
        if let Some(t) = &self.tier {
            t.encode(&mut e);
        }
        e.finish()
    }

    fn encode_v1_fields(&self, e: &mut Enc) {
        e.opt_str(self.content_type.as_deref())
            .opt_str(self.content_encoding.as_deref())
            .opt_str(self.content_disposition.as_deref())
            .opt_str(self.content_language.as_deref())
            .opt_str(self.cache_control.as_deref())
            .opt_str(self.expires.as_deref());
        match &self.checksum {
            Some((n, v)) => e.u8(1).str(n).str(v),
            None => e.u8(0),
        };
        e.u32(self.user.len() as u32);
        for (k, v) in &self.user {
            e.str(k).str(v);
        }
        e.u32(self.part_sizes.len() as u32);
        for n in &self.part_sizes {
            e.u64(*n);
        }
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        match Dec::version_of(b)? {
            META_V1 => Self::decode_v1(b),
            META_V2 => Self::decode_v2(b, META_V2),
            META_V3 => Self::decode_v2(b, META_V3),
            META_V4 => Self::decode_v2(b, META_V4),
            META_V5 => Self::decode_v2(b, META_V5),
            _ => None,
        }
    }

    fn decode_head(d: &mut Dec<'_>) -> Option<Self> {
        let mut m = ObjectMeta {
            content_type: d.opt_str()?,
            content_encoding: d.opt_str()?,
            content_disposition: d.opt_str()?,
            content_language: d.opt_str()?,
            cache_control: d.opt_str()?,
            expires: d.opt_str()?,
            ..Default::default()
        };
        m.checksum = match d.u8()? {
            0 => None,
            1 => Some((d.str()?, d.str()?)),
            _ => return None,
        };
        Some(m)
    }

    /// v1: part sizes are optional at the end (records written before they
    /// existed have none).
    fn decode_v1(b: &[u8]) -> Option<Self> {
        let mut d = Dec::new(b, META_V1)?;
        let mut m = Self::decode_head(&mut d)?;
        let n = d.u32()? as usize;
        for _ in 0..n.min(MAX_USER_META_PAIRS) {
            m.user.push((d.str()?, d.str()?));
        }
        if let Some(parts) = d.u32() {
            for _ in 0..parts.min(MAX_PARTS as u32) {
                m.part_sizes.push(d.u64()?);
            }
        }
        Some(m)
    }

    /// v2, and v3 (v2 followed by the ACL).
    fn decode_v2(b: &[u8], version: u8) -> Option<Self> {
        let mut d = Dec::new(b, version)?;
        let mut m = Self::decode_head(&mut d)?;
        for _ in 0..d.count(MAX_USER_META_PAIRS)? {
            m.user.push((d.str()?, d.str()?));
        }
        for _ in 0..d.count(MAX_PARTS)? {
            m.part_sizes.push(d.u64()?);
        }
        m.checksum_type = ChecksumType::from_code(d.u8()?)?;
        for _ in 0..d.count(MAX_PARTS)? {
            m.part_checksums.push(d.str()?);
        }
        for _ in 0..d.count(MAX_DECODED_TAGS)? {
            m.tags.push((d.str()?, d.str()?));
        }
        if version >= META_V3 {
            m.acl = match d.u8()? {
                0 => None,
                1 => Some(crate::acl::decode(&mut d)?),
                _ => return None,
            };
        }
        if version == META_V4 {
            m.sse = Some(crate::sse::SseInfo::decode(&mut d)?);
        }
        if version >= META_V5 {
            m.sse = match d.u8()? {
                0 => None,
                1 => Some(crate::sse::SseInfo::decode(&mut d)?),
                _ => return None,
            };
            m.tier = Some(crate::tier::TierInfo::decode(&mut d)?);
        }
        d.end()?;
        Some(m)
    }

    /// The version's owner id: its ACL's, else the bucket owner's.
    pub fn owner_id<'a>(&'a self, bucket_owner: &'a str) -> &'a str {
        self.acl.as_ref().map_or(bucket_owner, |a| a.owner_id.as_str())
    }

    /// The checksum type to report: stored, or implied for v1 records.
    pub fn effective_checksum_type(&self) -> ChecksumType {
        self.checksum_type.unwrap_or(if self.part_sizes.is_empty() {
            ChecksumType::FullObject
        } else {
            ChecksumType::Composite
        })
    }
}

// ---- multipart uploads -------------------------------------------------------

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    pub initiated_ms: i64,
    pub owner_id: String,
    pub meta: ObjectMeta,
    /// `x-amz-checksum-algorithm` of CreateMultipartUpload: every part gets
    /// a checksum of it, and the object the COMPOSITE or FULL_OBJECT one.
    pub checksum_algo: Option<ChecksumAlgo>,
    pub checksum_type: Option<ChecksumType>,
    /// Object lock settings given at creation, applied at completion.
    pub retention: Option<Retention>,
    pub legal_hold: bool,
}

impl UploadInfo {
    pub fn new(initiated_ms: i64, owner_id: String, meta: ObjectMeta) -> Self {
        UploadInfo {
            initiated_ms,
            owner_id,
            meta,
            checksum_algo: None,
            checksum_type: None,
            retention: None,
            legal_hold: false,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new(UPLOAD_V2);
        e.i64(self.initiated_ms).str(&self.owner_id).bytes(&self.meta.encode());
        enc_algo(&mut e, self.checksum_algo);
        e.u8(ChecksumType::code(self.checksum_type));
        enc_retention(&mut e, self.retention.as_ref());
        e.u8(u8::from(self.legal_hold));
        e.finish()
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        match Dec::version_of(b)? {
            UPLOAD_V1 => {
                let mut d = Dec::new(b, UPLOAD_V1)?;
                Some(UploadInfo::new(d.i64()?, d.str()?, ObjectMeta::decode(d.bytes()?)?))
            }
            UPLOAD_V2 => {
                let mut d = Dec::new(b, UPLOAD_V2)?;
                let mut u = UploadInfo::new(d.i64()?, d.str()?, ObjectMeta::decode(d.bytes()?)?);
                u.checksum_algo = dec_algo(&mut d)?;
                u.checksum_type = ChecksumType::from_code(d.u8()?)?;
                u.retention = dec_retention(&mut d)?;
                u.legal_hold = match d.u8()? {
                    0 => false,
                    1 => true,
                    _ => return None,
                };
                d.end()?;
                Some(u)
            }
            _ => None,
        }
    }
}

/// An uploaded part (summary in the index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartSummary {
    pub size: u64,
    pub mtime_ms: i64,
    pub md5: [u8; 16],
    /// The part's checksum, raw digest (none in v1 records).
    pub checksum: Option<(ChecksumAlgo, Vec<u8>)>,
    /// The salt of the part's key when its upload is encrypted.
    pub salt: Option<[u8; crate::sse::cipher::SALT_BYTES]>,
}

impl PartSummary {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new(if self.salt.is_some() { PART_V3 } else { PART_V2 });
        e.u64(self.size).i64(self.mtime_ms);
        e.buf.extend_from_slice(&self.md5);
        match &self.checksum {
            None => enc_algo(&mut e, None),
            Some((a, raw)) => {
                enc_algo(&mut e, Some(*a));
                e.bytes(raw);
            }
        }
        if let Some(salt) = &self.salt {
            e.buf.extend_from_slice(salt);
        }
        e.finish()
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        match Dec::version_of(b)? {
            PART_V1 => {
                let mut d = Dec::new(b, PART_V1)?;
                Some(PartSummary { size: d.u64()?, mtime_ms: d.i64()?, md5: d.fixed()?, checksum: None, salt: None })
            }
            version @ (PART_V2 | PART_V3) => {
                let mut d = Dec::new(b, version)?;
                let (size, mtime_ms, md5) = (d.u64()?, d.i64()?, d.fixed()?);
                let checksum = match dec_algo(&mut d)? {
                    None => None,
                    Some(a) => {
                        let raw = d.bytes()?;
                        (raw.len() == a.digest_len()).then_some(())?;
                        Some((a, raw.to_vec()))
                    }
                };
                let salt = if version == PART_V3 { Some(d.fixed()?) } else { None };
                d.end()?;
                Some(PartSummary { size, mtime_ms, md5, checksum, salt })
            }
            _ => None,
        }
    }

    pub fn etag(&self) -> String {
        format!("\"{}\"", tessera_proto::checksum::hex_lower(&self.md5))
    }
}

/// A part count in decimal (no formatting machinery).
fn itoa_u16(n: u16) -> String {
    let mut digits = [0u8; 5];
    let (mut i, mut n) = (digits.len(), n);
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    String::from_utf8_lossy(&digits[i..]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The v1 encoders exactly as they were, to prove old records stay readable.
    mod v1 {
        use crate::codec::Enc;

        pub fn summary(size: u64, mtime_ms: i64, md5: [u8; 16], parts: u16) -> Vec<u8> {
            let mut e = Enc::new(1);
            e.u64(size).i64(mtime_ms);
            e.buf.extend_from_slice(&md5);
            e.u16(parts);
            e.finish()
        }

        pub fn meta(ct: &str, user: &[(&str, &str)], part_sizes: Option<&[u64]>) -> Vec<u8> {
            let mut e = Enc::new(1);
            e.opt_str(Some(ct)).opt_str(None).opt_str(None).opt_str(None).opt_str(None).opt_str(None);
            e.u8(1).str("x-amz-checksum-crc32").str("AAAAAA==");
            e.u32(user.len() as u32);
            for (k, v) in user {
                e.str(k).str(v);
            }
            if let Some(p) = part_sizes {
                e.u32(p.len() as u32);
                for n in p {
                    e.u64(*n);
                }
            }
            e.finish()
        }

        pub fn part(size: u64, mtime_ms: i64, md5: [u8; 16]) -> Vec<u8> {
            let mut e = Enc::new(1);
            e.u64(size).i64(mtime_ms);
            e.buf.extend_from_slice(&md5);
            e.finish()
        }

        pub fn upload(initiated: i64, owner: &str, meta: &[u8]) -> Vec<u8> {
            let mut e = Enc::new(1);
            e.i64(initiated).str(owner).bytes(meta);
            e.finish()
        }
    }

    fn vid(micros: u64, r: u8) -> VersionId {
        VersionId::from_parts(micros, [r; 8])
    }

    #[test]
    fn round_trips() {
        let mut s = ObjectSummary::new(5, 1_700_000_000_123, [7; 16], 3, vid(42, 9), false);
        assert_eq!(ObjectSummary::decode(&s.encode()), Some(s.clone()));
        assert!(s.etag().ends_with("-3\""));
        s.delete_marker = true;
        s.legal_hold = true;
        s.null_version = true;
        s.retention = Some(Retention { mode: LockMode::Compliance, until_ms: 99 });
        assert_eq!(ObjectSummary::decode(&s.encode()), Some(s.clone()));
        let m = ObjectMeta {
            content_type: Some("text/plain".into()),
            checksum: Some(("x-amz-checksum-crc32".into(), "AAAAAA==-2".into())),
            user: vec![("a".into(), "b".into())],
            part_sizes: vec![5, 6],
            checksum_type: Some(ChecksumType::Composite),
            part_checksums: vec!["AAAAAA==".into(), "AAAAAB==".into()],
            tags: vec![("k".into(), "v".into()), ("k2".into(), String::new())],
            ..Default::default()
        };
        assert_eq!(ObjectMeta::decode(&m.encode()), Some(m.clone()));
        // A v2 record is a v3 one without the ACL byte.
        let mut v2 = m.encode();
        v2[0] = META_V2;
        v2.pop();
        assert_eq!(ObjectMeta::decode(&v2), Some(m.clone()));
        let mut with_acl = m.clone();
        with_acl.acl = Some(tessera_policy::CannedAcl::BucketOwnerRead.expand(("w", "W"), ("b", "B")));
        assert_eq!(ObjectMeta::decode(&with_acl.encode()), Some(with_acl.clone()));
        assert_eq!(with_acl.owner_id("b"), "w");
        assert_eq!(m.owner_id("b"), "b");
        let enc = with_acl.encode();
        assert!(ObjectMeta::decode(&enc[..enc.len() - 1]).is_none());
        let mut u = UploadInfo::new(1, "o".into(), m);
        assert_eq!(UploadInfo::decode(&u.encode()), Some(u.clone()));
        u.checksum_algo = Some(ChecksumAlgo::Crc32c);
        u.checksum_type = Some(ChecksumType::FullObject);
        u.retention = Some(Retention { mode: LockMode::Governance, until_ms: 5 });
        u.legal_hold = true;
        assert_eq!(UploadInfo::decode(&u.encode()), Some(u));
        let p = PartSummary { size: 1, mtime_ms: 2, md5: [3; 16], checksum: Some((ChecksumAlgo::Sha1, vec![1; 20])), salt: None };
        assert_eq!(PartSummary::decode(&p.encode()), Some(p));
        let p = PartSummary { size: 1, mtime_ms: 2, md5: [3; 16], checksum: None, salt: None };
        assert_eq!(PartSummary::decode(&p.encode()), Some(p));
        assert!(ObjectMeta::decode(b"\x01\x05").is_none());
    }

    #[test]
    fn encrypted_records_are_v4_and_plain_ones_stay_v3() {
        let plain = ObjectMeta { content_type: Some("t".into()), ..Default::default() };
        let enc = plain.encode();
        assert_eq!(enc[0], META_V3, "an unencrypted object keeps the v3 encoding older builds read");
        assert_eq!(ObjectMeta::decode(&enc), Some(plain.clone()));
        let sealed = ObjectMeta {
            sse: Some(crate::sse::SseInfo {
                mode: crate::sse::SseMode::S3 { key_id: "tessera/sse-s3".into() },
                sealed_key: vec![1; 61],
                segments: vec![(1, [2; 16])],
            }),
            ..plain
        };
        let enc = sealed.encode();
        assert_eq!(enc[0], META_V4);
        assert_eq!(ObjectMeta::decode(&enc), Some(sealed));
        // A v4 record cut short is refused, never read as unencrypted.
        for cut in 1..enc.len() {
            assert!(ObjectMeta::decode(&enc[..cut]).map_or(true, |m| m.sse.is_some()), "cut {cut}");
        }
        let mut tiered = sealed_clone_for_tier();
        assert_eq!(ObjectMeta::decode(&tiered.encode()), Some(tiered.clone()));
        tiered.sse = None;
        let enc = tiered.encode();
        assert_eq!(enc[0], META_V5);
        assert_eq!(ObjectMeta::decode(&enc), Some(tiered));
        for cut in 1..enc.len() {
            assert!(ObjectMeta::decode(&enc[..cut]).is_none_or(|m| m.tier.is_some()), "cut {cut}");
        }
        let mut s = ObjectSummary::new(5, 1, [7; 16], 0, vid(1, 2), false);
        assert_eq!(s.encode()[0], SUMMARY_V2);
        s.tier_class = Some("COLD".into());
        assert_eq!(s.encode()[0], SUMMARY_V4);
        assert_eq!(ObjectSummary::decode(&s.encode()), Some(s.clone()));
        let mut v3 = s.encode();
        v3[0] = SUMMARY_V3;
        assert!(ObjectSummary::decode(&v3).is_none(), "the tiered flag is unknown to v3");
        let p = PartSummary { size: 1, mtime_ms: 2, md5: [3; 16], checksum: None, salt: Some([4; 16]) };
        assert_eq!(p.encode()[0], PART_V3);
        assert_eq!(PartSummary::decode(&p.encode()), Some(p));
    }

    #[test]
    fn v1_records_stay_readable() {
        let s = ObjectSummary::decode(&v1::summary(5, 1_700_000_000_123, [7; 16], 3)).expect("v1 summary");
        assert_eq!((s.size, s.mtime_ms, s.md5, s.parts), (5, 1_700_000_000_123, [7; 16], 3));
        assert!(s.null_version && !s.delete_marker && !s.legal_hold && s.retention.is_none());
        assert_eq!(s.version_id(), "null");
        assert_eq!(s.version.micros(), 1_700_000_000_123_000);
        // A v1 summary of known bytes (as written by the old encoder).
        let fixture = hex::decode("0105000000000000007b68e5cf8b010000070707070707070707070707070707070300").unwrap();
        assert_eq!(ObjectSummary::decode(&fixture), Some(s));

        let m = ObjectMeta::decode(&v1::meta("text/plain", &[("a", "b")], Some(&[5, 6]))).expect("v1 meta");
        assert_eq!(m.content_type.as_deref(), Some("text/plain"));
        assert_eq!(m.user, vec![("a".to_string(), "b".to_string())]);
        assert_eq!(m.part_sizes, vec![5, 6]);
        assert_eq!(m.checksum_type, None);
        assert_eq!(m.effective_checksum_type(), ChecksumType::Composite);
        assert!(m.tags.is_empty() && m.part_checksums.is_empty());
        let m = ObjectMeta::decode(&v1::meta("t", &[], None)).expect("v1 meta without part sizes");
        assert!(m.part_sizes.is_empty());
        assert_eq!(m.effective_checksum_type(), ChecksumType::FullObject);

        let p = PartSummary::decode(&v1::part(9, 8, [1; 16])).expect("v1 part");
        assert_eq!(p, PartSummary { size: 9, mtime_ms: 8, md5: [1; 16], checksum: None, salt: None });
        let u = UploadInfo::decode(&v1::upload(3, "own", &v1::meta("t", &[], None))).expect("v1 upload");
        assert_eq!((u.initiated_ms, u.owner_id.as_str(), u.checksum_algo), (3, "own", None));
    }

    #[test]
    fn newer_or_damaged_records_are_refused() {
        let s = ObjectSummary::new(5, 1, [7; 16], 0, vid(1, 1), false).encode();
        let mut future = s.clone();
        future[0] = 5;
        assert!(ObjectSummary::decode(&future).is_none());
        // v3 (a replication status) round-trips; a v2 record with its bits is refused.
        let mut r = ObjectSummary::new(5, 1, [7; 16], 0, vid(1, 1), false);
        r.repl = ReplStatus::Replica;
        let v3 = r.encode();
        assert_eq!((v3[0], ObjectSummary::decode(&v3)), (3, Some(r)));
        let mut v2_with_status = v3.clone();
        v2_with_status[0] = 2;
        assert!(ObjectSummary::decode(&v2_with_status).is_none());
        let mut trailing = s.clone();
        trailing.push(0);
        assert!(ObjectSummary::decode(&trailing).is_none());
        for cut in 0..s.len() {
            assert!(ObjectSummary::decode(&s[..cut]).is_none(), "cut {cut}");
        }
        // Unknown flag bits or lock mode: refused, not read as "unlocked".
        let flags_at = 1 + 8 + 8 + 16 + 2 + 16;
        let mut bad = s.clone();
        bad[flags_at] = 0x80;
        assert!(ObjectSummary::decode(&bad).is_none());
        let mut bad = s.clone();
        bad[flags_at + 1] = 7;
        assert!(ObjectSummary::decode(&bad).is_none());
    }

    #[test]
    fn lock_checks() {
        let mut s = ObjectSummary::new(1, 1, [0; 16], 0, vid(1, 1), false);
        assert!(s.check_removable(100, false).is_ok());
        s.retention = Some(Retention { mode: LockMode::Governance, until_ms: 200 });
        assert!(s.check_removable(100, false).is_err());
        assert!(s.check_removable(100, true).is_ok());
        assert!(s.check_removable(200, false).is_ok());
        s.retention = Some(Retention { mode: LockMode::Compliance, until_ms: 200 });
        assert!(s.check_removable(100, true).is_err());
        assert!(s.check_removable(201, false).is_ok());
        s.legal_hold = true;
        assert!(s.check_removable(201, true).is_err());
    }

    #[test]
    fn keys_sort_within_bucket() {
        assert!(object_key(1, "a") < object_key(1, "a/"));
        assert!(object_key(1, "zzz") < object_key(2, ""));
        assert!(object_key(1, "k").starts_with(&bucket_prefix(1)));
        assert!(!object_key(2, "k").starts_with(&bucket_prefix(1)));
        assert!(part_key(1, "k", "u", 2) < part_key(1, "k", "u", 10));
        assert!(part_key(1, "k", "u", 1).starts_with(&part_prefix(1, "k", "u")));
    }

    fn vkey_bytes(bucket: u64, key: &[u8], v: &VersionId) -> Vec<u8> {
        let mut k = bucket.to_be_bytes().to_vec();
        push_escaped(&mut k, key);
        k.extend_from_slice(&KEY_TERMINATOR);
        k.extend(v.0.iter().map(|b| !b));
        k
    }

    #[test]
    fn escaping_round_trips_every_byte() {
        let keys: Vec<Vec<u8>> = vec![
            vec![],
            b"a".to_vec(),
            vec![0],
            vec![0, 0],
            vec![0xFF],
            vec![0, 0xFF],
            vec![0xFF, 0],
            vec![b'a', 0, 0, b'b', 0xFF, 0xFF, 0],
            (0..=255u8).collect(),
        ];
        for k in &keys {
            let mut e = Vec::new();
            push_escaped(&mut e, k);
            assert!(!e.windows(2).any(|w| w == KEY_TERMINATOR), "{k:?}");
            e.extend_from_slice(&KEY_TERMINATOR);
            e.extend_from_slice(b"tail");
            let (back, rest) = split_escaped(&e).expect("well-formed");
            assert_eq!(&back, k);
            assert_eq!(rest, b"tail");
            let v = vid(123, 4);
            assert_eq!(parse_version_key(&vkey_bytes(7, k, &v)), Some((7, k.clone(), v)));
        }
        assert!(split_escaped(&[b'a', 0]).is_none());
        assert!(split_escaped(&[b'a', 0, 1]).is_none());
        assert!(split_escaped(b"abc").is_none());
        assert!(parse_version_key(&[0; 7]).is_none());
    }

    #[test]
    fn version_keys_sort_by_key_then_newest_first() {
        // Keys in byte order, including NUL and 0xFF bytes and prefixes.
        let mut keys: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            vec![0],
            vec![0, 0],
            vec![0, 1],
            vec![0, 0xFF],
            b"a".to_vec(),
            vec![b'a', 0],
            vec![b'a', 0, 0],
            vec![b'a', 0, b'b'],
            vec![b'a', 1],
            b"ab".to_vec(),
            vec![b'a', 0xFF],
            vec![0xFF],
            vec![0xFF, 0],
            vec![0xFF, 0xFF],
        ];
        keys.sort();
        let versions = [vid(30, 0), vid(20, 9), vid(20, 1), vid(10, 0xFF)];
        let mut all = Vec::new();
        for k in &keys {
            for v in &versions {
                all.push(vkey_bytes(1, k, v));
            }
        }
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(sorted, all, "composite keys sort by key, then newest version first");
        // A key's versions share its prefix; no other key's do.
        for k in &keys {
            let mut p = 1u64.to_be_bytes().to_vec();
            push_escaped(&mut p, k);
            p.extend_from_slice(&KEY_TERMINATOR);
            let mine = all.iter().filter(|e| e.starts_with(&p)).count();
            assert_eq!(mine, versions.len(), "{k:?}");
        }
        // Escaped prefixes select exactly the keys with that prefix.
        for p in &keys {
            let mut ep = 1u64.to_be_bytes().to_vec();
            push_escaped(&mut ep, p);
            for k in &keys {
                assert_eq!(vkey_bytes(1, k, &versions[0]).starts_with(&ep), k.starts_with(p), "{p:?} {k:?}");
            }
        }
        let (b, k) = (9u64, "some/key");
        assert!(version_key(b, k, &vid(5, 0)) > versions_prefix(b, k));
        assert!(version_key(b, k, &vid(5, 0)) < past_versions_of(b, k));
        assert!(past_versions_of(b, k) < versions_prefix(b, "some/key0"));
        assert!(version_key(b, k, &vid(5, 0)).starts_with(&versions_scan_prefix(b, "some/")));
    }

    #[test]
    fn version_ids_render_in_order_and_parse_back() {
        let ids = [
            vid(0, 0),
            VersionId::from_parts(0, [0, 0, 0, 0, 0, 0, 0, 1]),
            vid(1, 0),
            vid(1_700_000_000_000_000, 3),
            vid(1_700_000_000_000_001, 0),
            VersionId([0xFF; 16]),
        ];
        for w in ids.windows(2) {
            assert!(w[0] < w[1]);
            assert!(w[0].render() < w[1].render(), "{} {}", w[0].render(), w[1].render());
        }
        for id in ids {
            let r = id.render();
            assert_eq!(r.len(), VersionId::CHARS);
            assert!(r.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'), "{r}");
            assert_eq!(VersionId::parse(&r), Some(id));
        }
        let good = vid(77, 7).render();
        assert!(VersionId::parse(&good[1..]).is_none());
        assert!(VersionId::parse(&format!("{good}x")).is_none());
        assert!(VersionId::parse(&good.replace(&good[..1], "+")).is_none());
        let mut last_digit_not_canonical = good.clone();
        last_digit_not_canonical.pop();
        last_digit_not_canonical.push('1');
        assert!(VersionId::parse(&last_digit_not_canonical).is_none());
        assert_eq!(VersionSel::parse("null"), Ok(VersionSel::Null));
        assert!(VersionSel::parse("nope").is_err());
    }

    #[test]
    fn version_ids_increase_per_key() {
        let prev = vid(1000, 0xFF);
        assert!(VersionId::next(999, Some(&prev), [0; 8]) > prev);
        assert!(VersionId::next(1000, Some(&prev), [0; 8]) > prev);
        assert_eq!(VersionId::next(5000, Some(&prev), [0; 8]).micros(), 5000);
        assert_eq!(VersionId::next(5, None, [0; 8]).micros(), 5);
    }

    fn sealed_clone_for_tier() -> ObjectMeta {
        ObjectMeta {
            content_type: Some("t".into()),
            tags: vec![("k".into(), "v".into())],
            sse: Some(crate::sse::SseInfo {
                mode: crate::sse::SseMode::S3 { key_id: "tessera/sse-s3".into() },
                sealed_key: vec![1; 61],
                segments: vec![(1, [2; 16])],
            }),
            tier: Some(crate::tier::TierInfo {
                class: "COLD".into(),
                remote_bucket: "tier".into(),
                remote_key: "b/k/v".into(),
                restored_until_ms: Some(9),
            }),
            ..Default::default()
        }
    }
}
