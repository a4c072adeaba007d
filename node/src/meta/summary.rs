//! Object summaries: what listings, deletes and lock checks need, kept
//! in the index per version (FORMAT BOUNDARY: `SUMMARY_V*`).

use super::*;

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
            out.extend(tessera_proto::http::decimal_digits(u64::from(self.parts), &mut [0; 20]).iter().map(|&d| char::from(d)));
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

