//! The bucket record: `BucketInfo::encode` and `decode`. FORMAT BOUNDARY:
//! these bytes are on disk (every data dir's meta shard). The summary is
//! v1..v3 (v1: before versioning; v2: versioning, object lock and a meta
//! flag; v3: public access block and ownership controls); the meta bytes
//! are tags only (format 1) or sections (format 2). Older records stay
//! readable; an unknown version or section kind is refused, never skipped.

use std::sync::Arc;

use tessera_proto::cors::{CorsRule, MAX_CORS_RULES};
use tessera_proto::logging::{KeyFormat, LoggingConfig};
use tessera_proto::xml_access::PublicAccessBlock;

use super::info::{BucketInfo, BucketPolicy, DefaultRetention, LockConfig, RetentionPeriod, Versioning, MAX_BUCKET_TAGS};
use crate::acl::Ownership;
use crate::codec::{Dec, Enc};
use crate::meta::LockMode;

const BUCKET_V1: u8 = 1;
const BUCKET_V2: u8 = 2;
/// v3: v2 and the public access block and ownership controls in the
/// summary (the ACL and the policy are meta sections).
const BUCKET_V3: u8 = 3;
/// Encoding of the bucket tags kept in the record's meta bytes (v2 records).
const BUCKET_TAGS_V1: u8 = 1;
/// Meta bytes in sections (tags, CORS rules, logging), each a kind byte and
/// a length-prefixed payload; a kind this build does not know makes the
/// record unreadable rather than misread.
const BUCKET_META_V2: u8 = 2;
const SECTION_TAGS: u8 = 1;
const SECTION_CORS: u8 = 2;
const SECTION_LOGGING: u8 = 3;
const SECTION_ACL: u8 = 4;
const SECTION_POLICY: u8 = 5;
/// Default encryption (PutBucketEncryption).
const SECTION_ENCRYPTION: u8 = 6;
/// The lifecycle configuration, as its canonical XML (`lifecycle::render_config`).
const SECTION_LIFECYCLE: u8 = 7;
/// The notification configuration (PutBucketNotificationConfiguration):
/// its own version byte, then the configurations (`notify::encode_config`).
const SECTION_NOTIFICATION: u8 = 8;
/// The replication configuration (PutBucketReplication): its own version
/// byte, then its canonical XML (`replication::encode_config`).
const SECTION_REPLICATION: u8 = 9;
/// The lifecycle configuration's stamp (`BucketInfo::lifecycle_stamp`):
/// its own version byte, then the u64. Absent: stamp 0.
const SECTION_LIFECYCLE_STAMP: u8 = 10;
const LIFECYCLE_STAMP_V1: u8 = 1;

impl Versioning {
    fn code(self) -> u8 {
        match self {
            Versioning::Unversioned => 0,
            Versioning::Enabled => 1,
            Versioning::Suspended => 2,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        match c {
            0 => Some(Versioning::Unversioned),
            1 => Some(Versioning::Enabled),
            2 => Some(Versioning::Suspended),
            _ => None,
        }
    }
}

impl BucketInfo {
    /// The record: (summary kept in memory, meta bytes holding the tags,
    /// the ACL and the policy, which can be large).
    pub fn encode(&self) -> (Vec<u8>, Vec<u8>) {
        let mut e = Enc::new(BUCKET_V3);
        e.u64(self.id).str(&self.name).str(&self.owner_id).str(&self.owner_display).i64(self.created_ms);
        e.opt_str(self.location.as_deref());
        e.u8(self.versioning.code());
        match &self.object_lock {
            None => {
                e.u8(0);
            }
            Some(LockConfig { default_retention: None }) => {
                e.u8(1);
            }
            Some(LockConfig { default_retention: Some(d) }) => {
                let (kind, n) = match d.period {
                    RetentionPeriod::Days(n) => (1, n),
                    RetentionPeriod::Years(n) => (2, n),
                };
                e.u8(2).u8(match d.mode {
                    LockMode::Governance => 1,
                    LockMode::Compliance => 2,
                });
                e.u8(kind).u32(n);
            }
        }
        let meta = self.encode_meta();
        e.u8(u8::from(!meta.is_empty()));
        e.u8(match self.public_access_block {
            None => 0,
            Some(p) => {
                0x10 | u8::from(p.block_public_acls)
                    | u8::from(p.ignore_public_acls) << 1
                    | u8::from(p.block_public_policy) << 2
                    | u8::from(p.restrict_public_buckets) << 3
            }
        });
        e.u8(self.ownership.map_or(0, Ownership::code));
        (e.finish(), meta)
    }

    /// The meta bytes: empty when the bucket has no tags, CORS or logging.
    fn encode_meta(&self) -> Vec<u8> {
        if self.tags.is_empty()
            && self.cors.is_empty()
            && self.logging.is_none()
            && self.acl.is_none()
            && self.policy.is_none()
            && self.encryption.is_none()
            && self.lifecycle.is_none()
            && self.notification.is_none()
            && self.replication.is_none()
        {
            return Vec::new();
        }
        let mut m = Enc::new(BUCKET_META_V2);
        if !self.tags.is_empty() {
            let mut t = Enc::default();
            t.u32(self.tags.len() as u32);
            for (k, v) in &self.tags {
                t.str(k).str(v);
            }
            m.u8(SECTION_TAGS).bytes(&t.buf);
        }
        if !self.cors.is_empty() {
            let mut c = Enc::default();
            c.u32(self.cors.len() as u32);
            for r in &self.cors {
                c.opt_str(r.id.as_deref());
                for list in [&r.allowed_methods, &r.allowed_origins, &r.allowed_headers, &r.expose_headers] {
                    c.u32(list.len() as u32);
                    for v in list {
                        c.str(v);
                    }
                }
                match r.max_age_secs {
                    None => c.u8(0),
                    Some(a) => c.u8(1).u32(a),
                };
            }
            m.u8(SECTION_CORS).bytes(&c.buf);
        }
        if let Some(l) = &self.logging {
            let mut c = Enc::default();
            c.str(&l.target_bucket).str(&l.target_prefix);
            match l.key_format {
                KeyFormat::Simple => c.u8(0),
                KeyFormat::Partitioned { event_time: true } => c.u8(1),
                KeyFormat::Partitioned { event_time: false } => c.u8(2),
            };
            m.u8(SECTION_LOGGING).bytes(&c.buf);
        }
        if let Some(acl) = &self.acl {
            let mut c = Enc::default();
            crate::acl::encode(&mut c, acl);
            m.u8(SECTION_ACL).bytes(&c.buf);
        }
        if let Some(policy) = &self.policy {
            let mut c = Enc::default();
            c.str(&policy.text);
            m.u8(SECTION_POLICY).bytes(&c.buf);
        }
        if let Some(enc) = &self.encryption {
            let mut c = Enc::default();
            c.u8(u8::from(enc.kms)).opt_str(enc.kms_key_id.as_deref()).u8(u8::from(enc.bucket_key));
            m.u8(SECTION_ENCRYPTION).bytes(&c.buf);
        }
        if let Some(lc) = &self.lifecycle {
            let mut c = Enc::default();
            c.str(&tessera_proto::lifecycle::render_config(lc));
            m.u8(SECTION_LIFECYCLE).bytes(&c.buf);
            if self.lifecycle_stamp != 0 {
                let mut c = Enc::default();
                c.u8(LIFECYCLE_STAMP_V1).u64(self.lifecycle_stamp);
                m.u8(SECTION_LIFECYCLE_STAMP).bytes(&c.buf);
            }
        }
        if let Some(nc) = &self.notification {
            m.u8(SECTION_NOTIFICATION).bytes(&crate::notify::encode_config(nc));
        }
        if let Some(rc) = &self.replication {
            m.u8(SECTION_REPLICATION).bytes(&crate::replication::encode_config(rc));
        }
        m.finish()
    }

    /// Reads the meta bytes into `self` (format 1: tags only; 2: sections).
    fn decode_meta(&mut self, meta: &[u8]) -> Option<()> {
        match Dec::version_of(meta)? {
            BUCKET_TAGS_V1 => {
                let mut d = Dec::new(meta, BUCKET_TAGS_V1)?;
                self.tags = decode_tags(&mut d)?;
                d.end()
            }
            BUCKET_META_V2 => {
                let mut d = Dec::new(meta, BUCKET_META_V2)?;
                while d.end().is_none() {
                    let kind = d.u8()?;
                    let payload = d.bytes()?;
                    let mut s = Dec::raw(payload);
                    match kind {
                        SECTION_TAGS => self.tags = decode_tags(&mut s)?,
                        SECTION_CORS => self.cors = decode_cors(&mut s)?,
                        SECTION_LOGGING => {
                            let target_bucket = s.str()?;
                            let target_prefix = s.str()?;
                            let key_format = match s.u8()? {
                                0 => KeyFormat::Simple,
                                1 => KeyFormat::Partitioned { event_time: true },
                                2 => KeyFormat::Partitioned { event_time: false },
                                _ => return None,
                            };
                            self.logging = Some(LoggingConfig { target_bucket, target_prefix, key_format });
                        }
                        SECTION_ACL => self.acl = Some(crate::acl::decode(&mut s)?),
                        // A stored policy was valid when stored; one that no
                        // longer parses makes the record corrupt (never
                        // silently dropped: its denies must hold).
                        SECTION_POLICY => self.policy = Some(Arc::new(BucketPolicy::new(s.str()?).ok()?)),
                        SECTION_ENCRYPTION => {
                            let flag = |v: u8| match v {
                                0 => Some(false),
                                1 => Some(true),
                                _ => None,
                            };
                            let kms = flag(s.u8()?)?;
                            let kms_key_id = s.opt_str()?;
                            let bucket_key = flag(s.u8()?)?;
                            self.encryption = Some(crate::sse::BucketEncryption { kms, kms_key_id, bucket_key });
                        }
                        // Stored rules were valid when stored and all carry
                        // IDs; one that no longer parses makes the record
                        // corrupt rather than silently losing its rules.
                        SECTION_LIFECYCLE => {
                            let text = s.str()?;
                            let mut no_id = || String::new();
                            let lc = tessera_proto::lifecycle::parse_config(text.as_bytes(), &mut no_id).ok()?;
                            self.lifecycle = Some(Arc::new(lc));
                        }
                        SECTION_LIFECYCLE_STAMP => {
                            if s.u8()? != LIFECYCLE_STAMP_V1 {
                                return None;
                            }
                            self.lifecycle_stamp = s.u64()?;
                        }
                        SECTION_NOTIFICATION => self.notification = Some(Arc::new(crate::notify::decode_config(&mut s)?)),
                        SECTION_REPLICATION => self.replication = Some(Arc::new(crate::replication::decode_config(&mut s)?)),
                        _ => return None,
                    }
                    s.end()?;
                }
                Some(())
            }
            _ => None,
        }
    }

    /// Whether the record's meta bytes must be read (tags, CORS, logging,
    /// ACL, policy).
    pub fn summary_has_meta(summary: &[u8]) -> bool {
        Self::decode_summary(summary).is_some_and(|(_, tags)| tags)
    }

    /// Decodes a record; `meta` is needed only when the summary says the
    /// bucket has meta bytes.
    pub fn decode(summary: &[u8], meta: &[u8]) -> Option<Self> {
        let (mut info, has_meta) = Self::decode_summary(summary)?;
        if has_meta {
            info.decode_meta(meta)?;
        }
        Some(info)
    }

    /// Decodes a record's summary alone (tags, kept in the meta bytes, are
    /// left empty): for tools that read the index only.
    pub fn decode_summary_only(summary: &[u8]) -> Option<Self> {
        Self::decode_summary(summary).map(|(info, _)| info)
    }

    fn decode_summary(b: &[u8]) -> Option<(Self, bool)> {
        let version = Dec::version_of(b)?;
        let mut d = Dec::new(b, version)?;
        let mut info = BucketInfo {
            id: d.u64()?,
            name: d.str()?,
            owner_id: d.str()?,
            owner_display: d.str()?,
            created_ms: d.i64()?,
            location: d.opt_str()?,
            versioning: Versioning::Unversioned,
            object_lock: None,
            tags: Vec::new(),
            cors: Vec::new(),
            logging: None,
            acl: None,
            policy: None,
            public_access_block: None,
            ownership: None,
            encryption: None,
            lifecycle: None,
            lifecycle_stamp: 0,
            notification: None,
            replication: None,
            gate: Arc::default(),
        };
        match version {
            BUCKET_V1 => return Some((info, false)),
            BUCKET_V2 | BUCKET_V3 => {}
            _ => return None,
        }
        info.versioning = Versioning::from_code(d.u8()?)?;
        info.object_lock = match d.u8()? {
            0 => None,
            1 => Some(LockConfig { default_retention: None }),
            2 => {
                let mode = match d.u8()? {
                    1 => LockMode::Governance,
                    2 => LockMode::Compliance,
                    _ => return None,
                };
                let period = match (d.u8()?, d.u32()?) {
                    (1, n) => RetentionPeriod::Days(n),
                    (2, n) => RetentionPeriod::Years(n),
                    _ => return None,
                };
                Some(LockConfig { default_retention: Some(DefaultRetention { mode, period }) })
            }
            _ => return None,
        };
        // v2 and v3: whether the meta bytes hold anything (v2 records of
        // older builds: tags in BUCKET_TAGS_V1; anything newer: sections).
        let has_meta = match d.u8()? {
            0 => false,
            1 => true,
            _ => return None,
        };
        if version == BUCKET_V3 {
            info.public_access_block = match d.u8()? {
                0 => None,
                p if p & 0xF0 == 0x10 => Some(PublicAccessBlock {
                    block_public_acls: p & 1 != 0,
                    ignore_public_acls: p & 2 != 0,
                    block_public_policy: p & 4 != 0,
                    restrict_public_buckets: p & 8 != 0,
                }),
                _ => return None,
            };
            info.ownership = match d.u8()? {
                0 => None,
                c => Some(Ownership::from_code(c)?),
            };
        }
        d.end()?;
        Some((info, has_meta))
    }
}

fn decode_tags(d: &mut Dec<'_>) -> Option<Vec<(String, String)>> {
    let mut tags = Vec::new();
    for _ in 0..d.count(MAX_BUCKET_TAGS)? {
        tags.push((d.str()?, d.str()?));
    }
    Some(tags)
}

/// Most values in one list of a stored CORS rule (bounded by the 64 KiB document).
const MAX_CORS_LIST: usize = 64 * 1024;

fn decode_cors(d: &mut Dec<'_>) -> Option<Vec<CorsRule>> {
    let mut rules = Vec::new();
    for _ in 0..d.count(MAX_CORS_RULES)? {
        let id = d.opt_str()?;
        let mut lists: [Vec<String>; 4] = Default::default();
        for list in lists.iter_mut() {
            for _ in 0..d.count(MAX_CORS_LIST)? {
                list.push(d.str()?);
            }
        }
        let max_age_secs = match d.u8()? {
            0 => None,
            1 => Some(d.u32()?),
            _ => return None,
        };
        let [allowed_methods, allowed_origins, allowed_headers, expose_headers] = lists;
        rules.push(CorsRule { id, allowed_methods, allowed_origins, allowed_headers, expose_headers, max_age_secs });
    }
    Some(rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_proto::notification::{NotificationConfig, TargetConfig, TargetKind};

    #[test]
    fn info_round_trip() {
        let i = BucketInfo {
            id: 7,
            name: "b".into(),
            owner_id: "o".into(),
            owner_display: "d".into(),
            created_ms: 5,
            location: Some("eu".into()),
            versioning: Versioning::Unversioned,
            object_lock: None,
            tags: Vec::new(),
            cors: Vec::new(),
            logging: None,
            acl: None,
            policy: None,
            public_access_block: None,
            ownership: None,
            encryption: None,
            lifecycle: None,
            lifecycle_stamp: 0,
            notification: None,
            replication: None,
            gate: Arc::default(),
        };
        let (s, m) = i.encode();
        assert!(m.is_empty());
        assert_eq!(BucketInfo::decode(&s, &m), Some(i.clone()));
        let mut j = i.clone();
        j.versioning = Versioning::Suspended;
        j.object_lock = Some(LockConfig {
            default_retention: Some(DefaultRetention { mode: LockMode::Compliance, period: RetentionPeriod::Years(3) }),
        });
        j.tags = vec![("k".into(), "v".into())];
        let (s, m) = j.encode();
        assert!(BucketInfo::summary_has_meta(&s));
        assert_eq!(BucketInfo::decode(&s, &m), Some(j.clone()));
        assert!(BucketInfo::decode(&s, b"").is_none(), "tags announced but missing");
        j.object_lock = Some(LockConfig::default());
        j.tags.clear();
        let (s, m) = j.encode();
        assert!(!BucketInfo::summary_has_meta(&s));
        assert_eq!(BucketInfo::decode(&s, &m), Some(j.clone()));
        j.acl = Some(tessera_policy::CannedAcl::PublicRead.expand(("o", "d"), ("o", "d")));
        j.policy = Some(Arc::new(
            BucketPolicy::new(r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#.into()).unwrap(),
        ));
        j.public_access_block = Some(PublicAccessBlock { block_public_acls: true, restrict_public_buckets: true, ..Default::default() });
        j.ownership = Some(Ownership::BucketOwnerPreferred);
        let (s, m) = j.encode();
        assert_eq!(BucketInfo::decode(&s, &m), Some(j.clone()));
        assert!(j.policy.as_ref().is_some_and(|p| p.public));
        assert!(BucketInfo::decode(&s, &m[..m.len() - 1]).is_none(), "truncated meta");
        j.notification = Some(Arc::new(NotificationConfig {
            configs: vec![TargetConfig {
                kind: TargetKind::Queue,
                id: "c".into(),
                arn: "arn:tessera:sqs::h:webhook".into(),
                events: vec!["s3:ObjectCreated:*".into(), "s3:ObjectRemoved:Delete".into()],
                prefix: Some("p/".into()),
                suffix: None,
            }],
        }));
        let (s, m) = j.encode();
        assert_eq!(BucketInfo::decode(&s, &m), Some(j.clone()));
    }

    /// The lifecycle stamp goes with the configuration; a configuration
    /// stored without one reads as stamp 0; a stamp of another version is
    /// refused.
    #[test]
    fn lifecycle_stamp_round_trips() {
        let mut e = Enc::new(1);
        e.u64(1).str("b").str("o").str("d").i64(5).opt_str(None);
        let mut i = BucketInfo::decode(&e.finish(), b"").expect("v1");
        let mut no_id = || String::from("id");
        let xml = b"<LifecycleConfiguration><Rule><ID>r</ID><Filter><Prefix>p</Prefix></Filter><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule></LifecycleConfiguration>";
        i.lifecycle = Some(Arc::new(tessera_proto::lifecycle::parse_config(xml, &mut no_id).expect("rules")));
        let (s, m) = i.encode();
        assert_eq!(BucketInfo::decode(&s, &m), Some(i.clone()), "stamp 0: no section");
        i.lifecycle_stamp = 0x0102_0304_0506_0708;
        let (s, m) = i.encode();
        assert_eq!(BucketInfo::decode(&s, &m), Some(i.clone()));
        let mut c = Enc::default();
        c.u8(LIFECYCLE_STAMP_V1).u64(i.lifecycle_stamp);
        let at = m.windows(c.buf.len()).position(|w| w == c.buf.as_slice()).expect("stamp section");
        let mut bad = m.clone();
        bad[at] = 2;
        assert!(BucketInfo::decode(&s, &bad).is_none(), "another stamp version is refused");
    }

    /// v2 records (tags in meta v1) stay readable.
    #[test]
    fn v2_records_stay_readable() {
        let mut e = Enc::new(2);
        e.u64(7).str("b").str("o").str("d").i64(5).opt_str(None).u8(1).u8(0).u8(1);
        let mut m = Enc::new(1);
        m.u32(1).str("k").str("v");
        let i = BucketInfo::decode(&e.finish(), &m.finish()).expect("v2 record");
        assert_eq!(i.versioning, Versioning::Enabled);
        assert_eq!(i.tags, vec![("k".to_string(), "v".to_string())]);
        assert!(i.acl.is_none() && i.policy.is_none() && i.ownership.is_none());
    }

    #[test]
    fn cors_and_logging_round_trip() {
        let rules = tessera_proto::cors::parse_config(
            b"<CORSConfiguration><CORSRule><ID>r</ID><AllowedMethod>GET</AllowedMethod><AllowedOrigin>*</AllowedOrigin><AllowedHeader>*</AllowedHeader><ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>9</MaxAgeSeconds></CORSRule><CORSRule><AllowedMethod>PUT</AllowedMethod><AllowedOrigin>https://a</AllowedOrigin></CORSRule></CORSConfiguration>",
        )
        .expect("cors");
        let mut e = Enc::new(1);
        e.u64(1).str("b").str("o").str("d").i64(5).opt_str(None);
        let mut i = BucketInfo::decode(&e.finish(), b"").expect("v1");
        i.cors = rules;
        i.tags = vec![("k".into(), "v".into())];
        i.encryption = Some(crate::sse::BucketEncryption { kms: true, kms_key_id: Some("k1".into()), bucket_key: true });
        i.logging = Some(LoggingConfig {
            target_bucket: "logs".into(),
            target_prefix: "p/".into(),
            key_format: KeyFormat::Partitioned { event_time: false },
        });
        let (s, m) = i.encode();
        assert!(BucketInfo::summary_has_meta(&s));
        assert_eq!(BucketInfo::decode(&s, &m), Some(i.clone()));
        // A section kind from a newer build is refused, never skipped.
        let mut bad = m.clone();
        bad[1] = 99;
        assert!(BucketInfo::decode(&s, &bad).is_none());
        assert!(BucketInfo::decode(&s, &m[..m.len() - 1]).is_none());
        // Meta format 1 (tags only) stays readable.
        let mut t = Enc::new(BUCKET_TAGS_V1);
        t.u32(1).str("a").str("b");
        i.cors.clear();
        i.logging = None;
        let (s, _) = i.encode();
        let old = BucketInfo::decode(&s, &t.finish()).expect("meta v1");
        assert_eq!(old.tags, vec![("a".to_string(), "b".to_string())]);
    }

    /// Records written before versioning decode as unversioned buckets.
    #[test]
    fn v1_records_stay_readable() {
        let mut e = Enc::new(1);
        e.u64(7).str("b").str("o").str("d").i64(5).opt_str(Some("eu"));
        let i = BucketInfo::decode(&e.finish(), b"").expect("v1 record");
        assert_eq!((i.id, i.name.as_str(), i.location.as_deref()), (7, "b", Some("eu")));
        assert_eq!(i.versioning, Versioning::Unversioned);
        assert!(i.object_lock.is_none() && i.tags.is_empty());
        let mut e = Enc::new(9);
        e.u64(7);
        assert!(BucketInfo::decode(&e.finish(), b"").is_none());
    }
}
