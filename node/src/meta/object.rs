//! Object metadata: everything stored with a version besides its summary
//! and body (FORMAT BOUNDARY: `META_V*`).

use super::*;

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
