//! The node's data model on top of the shard store: tables, key encodings,
//! object summaries (kept in the index) and object metadata (kept on disk).
//!
//! FORMAT BOUNDARY: these encodings are on disk. Each starts with a version
//! byte; a new version gets a new decoder beside the old one.

use crate::codec::{Dec, Enc};

/// Shard-store tables.
pub const T_OBJECTS: u8 = 0;
pub const T_UPLOADS: u8 = 1;
pub const T_PARTS: u8 = 2;
pub const T_BUCKETS: u8 = 3;

/// The shard that keeps bucket records.
pub const META_SHARD: u32 = 0;

const SUMMARY_V1: u8 = 1;
const META_V1: u8 = 1;
const PART_V1: u8 = 1;
const UPLOAD_V1: u8 = 1;

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

/// Prefix of every object/upload/part key of `bucket`.
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

/// What listings need, kept in memory per object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSummary {
    pub size: u64,
    pub mtime_ms: i64,
    pub md5: [u8; 16],
    /// 0 for a single PUT; N for a multipart object (ETag "<md5>-N").
    pub parts: u16,
}

impl ObjectSummary {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new(SUMMARY_V1);
        e.u64(self.size).i64(self.mtime_ms);
        e.buf.extend_from_slice(&self.md5);
        e.u16(self.parts);
        e.finish()
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let mut d = Dec::new(b, SUMMARY_V1)?;
        Some(ObjectSummary { size: d.u64()?, mtime_ms: d.i64()?, md5: d.fixed()?, parts: d.u16()? })
    }

    /// The ETag with its quotes.
    pub fn etag(&self) -> String {
        if self.parts == 0 {
            format!("\"{}\"", hex::encode(self.md5))
        } else {
            format!("\"{}-{}\"", hex::encode(self.md5), self.parts)
        }
    }
}

/// Everything stored with an object besides its summary and body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectMeta {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    pub expires: Option<String>,
    /// `(header name, base64 value)`, e.g. ("x-amz-checksum-crc32", "...").
    pub checksum: Option<(String, String)>,
    /// `x-amz-meta-*` pairs, names lowercased without the prefix.
    pub user: Vec<(String, String)>,
    /// Sizes of the parts of a multipart object (empty for a single PUT),
    /// for GET/HEAD with `partNumber`. Encoded last and optional, so v1
    /// records written before it decode with no parts.
    pub part_sizes: Vec<u64>,
}

impl ObjectMeta {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new(META_V1);
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
        e.finish()
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let mut d = Dec::new(b, META_V1)?;
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
        let n = d.u32()? as usize;
        for _ in 0..n.min(4096) {
            m.user.push((d.str()?, d.str()?));
        }
        if let Some(parts) = d.u32() {
            for _ in 0..parts.min(10_000) {
                m.part_sizes.push(d.u64()?);
            }
        }
        Some(m)
    }
}

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    pub initiated_ms: i64,
    pub owner_id: String,
    pub meta: ObjectMeta,
}

impl UploadInfo {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new(UPLOAD_V1);
        e.i64(self.initiated_ms).str(&self.owner_id).bytes(&self.meta.encode());
        e.finish()
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let mut d = Dec::new(b, UPLOAD_V1)?;
        Some(UploadInfo {
            initiated_ms: d.i64()?,
            owner_id: d.str()?,
            meta: ObjectMeta::decode(d.bytes()?)?,
        })
    }
}

/// An uploaded part (summary in the index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartSummary {
    pub size: u64,
    pub mtime_ms: i64,
    pub md5: [u8; 16],
}

impl PartSummary {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new(PART_V1);
        e.u64(self.size).i64(self.mtime_ms);
        e.buf.extend_from_slice(&self.md5);
        e.finish()
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let mut d = Dec::new(b, PART_V1)?;
        Some(PartSummary { size: d.u64()?, mtime_ms: d.i64()?, md5: d.fixed()? })
    }

    pub fn etag(&self) -> String {
        format!("\"{}\"", hex::encode(self.md5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let s = ObjectSummary { size: 5, mtime_ms: 1_700_000_000_123, md5: [7; 16], parts: 3 };
        assert_eq!(ObjectSummary::decode(&s.encode()), Some(s.clone()));
        assert!(s.etag().ends_with("-3\""));
        let m = ObjectMeta {
            content_type: Some("text/plain".into()),
            checksum: Some(("x-amz-checksum-crc32".into(), "AAAAAA==".into())),
            user: vec![("a".into(), "b".into())],
            part_sizes: vec![5, 6],
            ..Default::default()
        };
        assert_eq!(ObjectMeta::decode(&m.encode()), Some(m.clone()));
        let u = UploadInfo { initiated_ms: 1, owner_id: "o".into(), meta: m };
        assert_eq!(UploadInfo::decode(&u.encode()), Some(u));
        assert!(ObjectMeta::decode(b"\x01\x05").is_none());
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
}
