//! Multipart uploads in progress and their parts (FORMAT BOUNDARY:
//! `UPLOAD_V*`, `PART_V*`).

use super::*;

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
